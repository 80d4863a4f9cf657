//! What one key remembers about the networks it was used from: the owners
//! (ASNs), countries and cloud ranges, whether it has ever run outside a
//! cloud, and its latest place (for impossible travel). Kept in a box of its
//! own, allocated only when enrichment files are configured.
//!
//! Part of the key's state in checkpoints (format 3) and changelog chunks
//! (version 4), so a restart or a partition handoff judges a key against
//! what it had learned. What it holds means the same across restarts and
//! reloads: ASN numbers, country codes, coordinates, and cloud labels by a
//! hash of their text. The last lookup's answer is not written (it is
//! looked up again after a restore). A state written before (checkpoint
//! format 2, changelog version 3) restores with an empty memory: learned
//! again from the next events, and until then the detectors that read it
//! judge as if nothing were known (no `impossible_travel` without a
//! previous place, no `cloud_credential_outside_cloud` before
//! `min_cloud_events` cloud uses).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use smallvec::SmallVec;

use super::source::SourceId;
use crate::netintel::{NetInfo, Tables};
use crate::types::Secs;

/// Most ASNs, countries and cloud labels remembered per key (least recently
/// used forgotten first).
pub const MAX_REMEMBERED: usize = 16;

/// Where a key was last used from, when that says where a person is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Place {
    /// The address.
    pub addr: IpAddr,
    /// Latitude, degrees.
    pub lat: f32,
    /// Longitude, degrees.
    pub lon: f32,
    /// Accuracy radius, km.
    pub accuracy_km: u16,
    /// Country code.
    pub country: [u8; 2],
    /// Event time.
    pub at: Secs,
}

/// A cloud label a key used.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CloudSeen {
    /// Label hash ([`NetInfo::cloud`]).
    pub label: u32,
    /// Latest use.
    pub last_seen: Secs,
    /// Networks (/24, /56) new to the key first seen under this label.
    pub networks: u16,
}

/// A key's network memory.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetMemory {
    /// The source last looked up, the tables it was looked up in, and the
    /// answer; not written (generation 0 is no load's, so a restored memory
    /// looks its next source up).
    #[serde(skip)]
    last_id: u64,
    #[serde(skip)]
    last_generation: u32,
    #[serde(skip)]
    last: NetInfo,
    /// Latest place (see [`Tables::placed`]).
    pub place: Option<Place>,
    /// ASNs used, with their latest use.
    #[serde(deserialize_with = "crate::types::bounded_seq")]
    pub asns: SmallVec<[(u32, Secs); 2]>,
    /// Countries used, with their latest use.
    #[serde(deserialize_with = "crate::types::bounded_seq")]
    pub countries: SmallVec<[([u8; 2], Secs); 2]>,
    /// Cloud labels used.
    #[serde(deserialize_with = "crate::types::bounded_seq")]
    pub clouds: SmallVec<[CloudSeen; 1]>,
    /// Uses (weighted) from cloud ranges.
    pub cloud_uses: u32,
    /// Latest use from an address outside every cloud range (0: none).
    pub outside_last: Secs,
    /// Latest time the key's places jumped between countries faster than
    /// a traveller can without a finding (while learning, between countries
    /// it uses, or past three countries): its places are not one
    /// traveller's (see `impossible_travel`). 0: never.
    pub jumped: Secs,
}

impl PartialEq for NetMemory {
    /// The same memory: what it learned, not which lookup it kept last.
    fn eq(&self, other: &NetMemory) -> bool {
        self.place == other.place
            && self.asns == other.asns
            && self.countries == other.countries
            && self.clouds == other.clouds
            && self.cloud_uses == other.cloud_uses
            && self.outside_last == other.outside_last
            && self.jumped == other.jumped
    }
}

fn touch<K: PartialEq + Copy>(list: &mut SmallVec<[(K, Secs); 2]>, k: K, now: Secs) {
    if let Some(e) = list.iter_mut().find(|e| e.0 == k) {
        e.1 = e.1.max(now);
        return;
    }
    if list.len() >= MAX_REMEMBERED {
        if let Some(i) = list
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| e.1)
            .map(|(i, _)| i)
        {
            list.swap_remove(i);
        }
    }
    list.push((k, now));
}

impl NetMemory {
    /// What the event's source is: the cached answer when it is the key's
    /// previous source (and the tables did not change), a lookup otherwise.
    pub fn locate(&mut self, tables: &Tables, id: SourceId, ip: IpAddr) -> NetInfo {
        if self.last_id == id.0 && self.last_generation == tables.generation {
            tables.count_cached();
            return self.last;
        }
        self.last = tables.lookup(ip);
        self.last_id = id.0;
        self.last_generation = tables.generation;
        self.last
    }

    /// Whether the key used `asn` within `forget_s`.
    pub fn knows_asn(&self, asn: u32, now: Secs, forget_s: u32) -> bool {
        let fresh = now.saturating_sub(forget_s);
        self.asns.iter().any(|e| e.0 == asn && e.1 >= fresh)
    }

    /// Whether the key used any known ASN within `forget_s`.
    pub fn has_asns(&self, now: Secs, forget_s: u32) -> bool {
        let fresh = now.saturating_sub(forget_s);
        self.asns.iter().any(|e| e.1 >= fresh)
    }

    /// Whether the key was used from `country` within `forget_s`.
    pub fn knows_country(&self, country: [u8; 2], now: Secs, forget_s: u32) -> bool {
        let fresh = now.saturating_sub(forget_s);
        self.countries
            .iter()
            .any(|e| e.0 == country && e.1 >= fresh)
    }

    /// Countries the key was used from within `forget_s`.
    pub fn fresh_countries(&self, now: Secs, forget_s: u32) -> usize {
        let fresh = now.saturating_sub(forget_s);
        self.countries.iter().filter(|e| e.1 >= fresh).count()
    }

    /// Whether the key was used from any known country within `forget_s`.
    pub fn has_countries(&self, now: Secs, forget_s: u32) -> bool {
        let fresh = now.saturating_sub(forget_s);
        self.countries.iter().any(|e| e.1 >= fresh)
    }

    /// The key's use of cloud label `label` within `forget_s`.
    pub fn cloud(&self, label: u32, now: Secs, forget_s: u32) -> Option<CloudSeen> {
        let fresh = now.saturating_sub(forget_s);
        self.clouds
            .iter()
            .find(|c| c.label == label && c.last_seen >= fresh)
            .copied()
    }

    /// Whether the key has run only inside cloud ranges (at least
    /// `min_uses` times, none outside within `forget_s`).
    pub fn cloud_only(&self, min_uses: u32, now: Secs, forget_s: u32) -> bool {
        self.cloud_uses >= min_uses
            && (self.outside_last == 0 || now.saturating_sub(self.outside_last) >= forget_s)
    }

    /// Whether the key's places jumped (see [`NetMemory::jumped`]) within `forget_s`.
    pub fn jumps(&self, now: Secs, forget_s: u32) -> bool {
        self.jumped != 0 && now.saturating_sub(self.jumped) < forget_s
    }

    /// Folds one use in: `network_new` when its /24 (/56) was new to the key.
    pub fn learn(
        &mut self,
        tables: &Tables,
        info: &NetInfo,
        ip: IpAddr,
        now: Secs,
        weight: u32,
        network_new: bool,
    ) {
        if info.asn != 0 {
            touch(&mut self.asns, info.asn, now);
        }
        if info.country != [0, 0] {
            touch(&mut self.countries, info.country, now);
        }
        if info.cloud != 0 {
            self.cloud_uses = self.cloud_uses.saturating_add(weight);
            match self.clouds.iter_mut().find(|c| c.label == info.cloud) {
                Some(c) => {
                    c.last_seen = c.last_seen.max(now);
                    c.networks = c.networks.saturating_add(u16::from(network_new));
                }
                None => {
                    if self.clouds.len() >= MAX_REMEMBERED {
                        if let Some(i) = self
                            .clouds
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, c)| c.last_seen)
                            .map(|(i, _)| i)
                        {
                            self.clouds.swap_remove(i);
                        }
                    }
                    self.clouds.push(CloudSeen {
                        label: info.cloud,
                        last_seen: now,
                        networks: 1,
                    });
                }
            }
        } else {
            self.outside_last = self.outside_last.max(now);
        }
        if tables.placed(info) && self.place.is_none_or(|p| p.at <= now) {
            self.place = Some(Place {
                addr: ip,
                lat: info.lat,
                lon: info.lon,
                accuracy_km: info.accuracy_km,
                country: info.country,
                at: now,
            });
        }
    }

    /// The memory for people (the key's explain view).
    pub fn explain(&self, tables: &Tables, now: Secs, forget_s: u32) -> Value {
        let fresh = now.saturating_sub(forget_s);
        let country = |c: [u8; 2]| String::from_utf8_lossy(&c).into_owned();
        json!({
            "asns": self.asns.iter().filter(|e| e.1 >= fresh).map(|e| e.0).collect::<Vec<_>>(),
            "countries": self.countries.iter().filter(|e| e.1 >= fresh).map(|e| country(e.0)).collect::<Vec<_>>(),
            "clouds": self.clouds.iter().filter(|c| c.last_seen >= fresh).map(|c| json!({
                "label": tables.cloud_label(c.label),
                "networks": c.networks,
            })).collect::<Vec<_>>(),
            "cloud_uses": self.cloud_uses,
            "outside_cloud_last_seen": (self.outside_last > 0).then(|| crate::decode::time::format_rfc3339(self.outside_last as i64 * 1000)),
            "places_jumped_at": (self.jumped > 0 && self.jumped >= fresh).then(|| crate::decode::time::format_rfc3339(self.jumped as i64 * 1000)),
            "last_place": self.place.map(|p| json!({
                "address": p.addr.to_string(),
                "country": country(p.country),
                "lat": p.lat,
                "lon": p.lon,
                "accuracy_km": p.accuracy_km,
                "at": crate::decode::time::format_rfc3339(p.at as i64 * 1000),
            })),
        })
    }
}
