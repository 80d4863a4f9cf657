//! [`Tables`]: everything loaded from the enrichment files in one value,
//! its lookups and descriptions, the per-event [`Counters`] it counts on,
//! and [`distance_km`].

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use maxminddb::Reader;
use prometheus::IntCounter;
use serde_json::{json, Value};
use xxhash_rust::xxh3::xxh3_64;

use super::asn_ranges::AsnRanges;
use super::cache::{AnswerCache, RecordCache};
use super::config::{ListKind, NetIntelConfig};
use super::flat::{self, FlatStats};
use super::mmdb::{
    block_of, decode_asn, decode_place, flatten_v4, found_covers_block, open_mmdb, read, AsnNamed,
    CityNames, Place,
};
use super::owner_class::{class_of_org, OwnerClass};
use super::ranges::{self, addr_key, RangeTable};
use super::{ListLabel, NetInfo, NetIntelError};

/// Numbers each load is tagged with, so a key's cached answer from older
/// tables is looked up again.
static GENERATION: AtomicU32 = AtomicU32::new(1);

/// Per-event counters, shared by every generation of tables.
#[derive(Debug, Clone)]
pub struct Counters {
    /// Lookups in the tables.
    pub looked_up: IntCounter,
    /// Events answered from the key's cached answer.
    pub cached: IntCounter,
}

impl Counters {
    /// Counters no registry exports: for loading the tables only to check
    /// or measure them (`check-config`, `netintel update`).
    pub fn detached() -> Counters {
        let counter = |name: &str| IntCounter::new(name, "unregistered").expect("valid metric");
        Counters {
            looked_up: counter("looked_up"),
            cached: counter("cached"),
        }
    }
}

/// Everything loaded from the enrichment files.
pub struct Tables {
    pub(super) city: Option<Reader<Vec<u8>>>,
    pub(super) asn: Option<Owners>,
    pub(super) cloud: RangeTable<u32>,
    cloud_labels: Vec<(u32, String)>,
    pub(super) lists: RangeTable<u64>,
    list_labels: Vec<ListLabel>,
    /// Bits of `list_labels` whose kind alerts (tor, threat).
    alerting: u64,
    /// Bits whose kind excludes a place from travel (vpn, office, tor, hosting).
    unplaced: u64,
    /// Entries loaded per kind of file: `city`, `asn`, `cloud`, `list`.
    pub entries: [(&'static str, usize); 4],
    /// Which load this is.
    pub generation: u32,
    counters: Counters,
    /// Decoded city and ASN records by their place in the database.
    city_records: RecordCache<Place>,
    asn_records: RecordCache<u32>,
    /// Whole answers by /24 (IPv6 /64), where every table answers the
    /// same for the whole block.
    answers: AnswerCache,
    /// Every IPv4 answer, flattened at load (`None`: a MaxMind DB whose
    /// tree does not list its networks in order; IPv4 walks the trees).
    pub(super) v4: Option<flat::FlatV4>,
    /// Whether [`Tables::lookup`] reads `v4` (see [`Tables::set_flat_v4`]).
    flat_on: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tables")
            .field("entries", &self.entries)
            .field("generation", &self.generation)
            .finish()
    }
}

/// Where the owners of addresses come from: a MaxMind DB, or a range file.
pub(super) enum Owners {
    /// GeoLite2-ASN and compatible.
    Mmdb(Reader<Vec<u8>>),
    /// `first,last,asn[,organisation]` lines.
    Ranges(AsnRanges),
}

impl Owners {
    /// Opens `path` by its extension: `.csv` is a range file.
    fn open(path: &std::path::Path) -> Result<Owners, NetIntelError> {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        {
            Ok(Owners::Ranges(AsnRanges::parse(path, &read(path)?)?))
        } else {
            open_mmdb(path, &["asn", "isp", "as"]).map(Owners::Mmdb)
        }
    }

    /// The MaxMind DB, when the owners come from one.
    pub(super) fn mmdb(&self) -> Option<&Reader<Vec<u8>>> {
        match self {
            Owners::Mmdb(r) => Some(r),
            Owners::Ranges(_) => None,
        }
    }

    /// Entries held: the database's nodes, or the ranges.
    fn len(&self) -> usize {
        match self {
            Owners::Mmdb(r) => r.metadata().node_count as usize,
            Owners::Ranges(t) => t.len(),
        }
    }
}

/// Label hash as [`NetInfo::cloud`] carries it (never 0).
fn label_hash(label: &str) -> u32 {
    (xxh3_64(label.as_bytes()) as u32).max(1)
}

impl Tables {
    /// Loads every configured file; the first that cannot be used is the error.
    pub fn load(cfg: &NetIntelConfig, counters: Counters) -> Result<Tables, NetIntelError> {
        let city = match &cfg.city_db {
            Some(p) => Some(open_mmdb(p, &["city", "country", "geo", "location"])?),
            None => None,
        };
        let asn = cfg.asn_db.as_deref().map(Owners::open).transpose()?;
        let mut cloud_prefixes = Vec::new();
        let mut cloud_labels: Vec<(u32, String)> = Vec::new();
        for path in &cfg.cloud_ranges {
            for (net, label) in ranges::parse_cloud(path, &read(path)?)? {
                let h = label_hash(&label);
                if !cloud_labels.iter().any(|(x, _)| *x == h) {
                    cloud_labels.push((h, label));
                }
                cloud_prefixes.push((net, h));
            }
        }
        let cloud_entries = cloud_prefixes.len();
        let cloud = RangeTable::build(cloud_prefixes, |_, inner| inner);
        let mut list_labels: Vec<ListLabel> = Vec::new();
        let mut list_prefixes = Vec::new();
        for list in &cfg.lists {
            for l in ranges::parse_list(&list.path, &read(&list.path)?, &list.label, list.kind)? {
                let bit = match list_labels
                    .iter()
                    .position(|x| x.label == l.label && x.kind == l.kind)
                {
                    Some(i) => i,
                    None => {
                        list_labels.push(ListLabel {
                            label: l.label,
                            kind: l.kind,
                        });
                        list_labels.len() - 1
                    }
                };
                if bit >= 64 {
                    return Err(NetIntelError::TooManyLabels(list_labels.len()));
                }
                list_prefixes.push((l.net, 1u64 << bit));
            }
        }
        let list_entries = list_prefixes.len();
        let lists = RangeTable::build(list_prefixes, |outer, inner| outer | inner);
        let mask = |f: fn(ListKind) -> bool| {
            list_labels
                .iter()
                .enumerate()
                .filter(|(_, l)| f(l.kind))
                .fold(0u64, |m, (i, _)| m | (1 << i))
        };
        let alerting = mask(ListKind::alerts);
        let unplaced = mask(|k| !matches!(k, ListKind::Threat));
        let v4 = flatten_v4(city.as_ref(), asn.as_ref(), &cloud, &lists);
        match v4.as_ref().map(flat::FlatV4::stats) {
            Some(s) => tracing::info!(
                intervals = s.intervals,
                answers = s.answers,
                mib = s.bytes as f64 / (1 << 20) as f64,
                ms = s.build.as_millis() as u64,
                "IPv4 answers flattened"
            ),
            None => tracing::warn!(
                "a MaxMind DB's IPv4 networks are not in order; IPv4 lookups walk its tree"
            ),
        }

        Ok(Tables {
            entries: [
                (
                    "city",
                    city.as_ref()
                        .map_or(0, |r| r.metadata().node_count as usize),
                ),
                ("asn", asn.as_ref().map_or(0, Owners::len)),
                ("cloud", cloud_entries),
                ("list", list_entries),
            ],
            city,
            asn,
            cloud,
            cloud_labels,
            lists,
            list_labels,
            alerting,
            unplaced,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            counters,
            city_records: RecordCache::new(),
            asn_records: RecordCache::new(),
            answers: AnswerCache::new(),
            v4,
            flat_on: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// What `ip` is: the numbers the detectors judge on every new source.
    /// An IPv4 address is answered from the flattened table (a handful of
    /// memory reads); an IPv6 one from the block cache when its /64 is one
    /// answer throughout, looked up in every table otherwise.
    pub fn lookup(&self, ip: IpAddr) -> NetInfo {
        self.counters.looked_up.inc();
        match (ip, &self.v4) {
            (IpAddr::V4(a), Some(v4)) if self.flat_on.load(Ordering::Relaxed) => {
                v4.get(u32::from(a))
            }
            _ => self.lookup_blocks(ip),
        }
    }

    /// Whether [`Tables::lookup`] answers IPv4 from the flattened table
    /// (from the load on) or, `false`, as [`Tables::lookup_blocks`]: for
    /// measuring the engine with either; the answers are the same.
    #[doc(hidden)]
    pub fn set_flat_v4(&self, on: bool) {
        self.flat_on.store(on, Ordering::Relaxed);
    }

    /// [`Tables::lookup`] as it was before IPv4 was flattened: the block
    /// cache, then the MaxMind trees and the range tables (for measuring
    /// the flattened table against it).
    pub fn lookup_blocks(&self, ip: IpAddr) -> NetInfo {
        let (lo, hi) = block_of(ip);
        if let Some(info) = self.answers.get(lo) {
            return info;
        }
        let (info, whole) = self.lookup_tables(ip, lo, hi);
        if whole {
            self.answers.put(lo, info);
        }
        info
    }

    /// The MaxMind trees and the range tables alone, without the block
    /// cache or the flattened table: the answer both must give.
    pub fn lookup_uncached(&self, ip: IpAddr) -> NetInfo {
        let (lo, hi) = block_of(ip);
        self.lookup_tables(ip, lo, hi).0
    }

    /// What the flattened IPv4 table holds and how long it took to build.
    pub fn flat_v4_stats(&self) -> Option<FlatStats> {
        self.v4.as_ref().map(flat::FlatV4::stats)
    }

    /// Looks `ip` up in every table; says too whether the answer holds for
    /// every address of its block `lo..=hi`.
    fn lookup_tables(&self, ip: IpAddr, lo: u128, hi: u128) -> (NetInfo, bool) {
        let mut info = NetInfo::default();
        let mut whole = true;
        if let Some(r) = &self.city {
            match r.lookup(ip) {
                Ok(found) => {
                    whole &= found_covers_block(ip, &found);
                    if let Some(offset) = found.offset() {
                        let place = self.city_records.get(offset, || decode_place(&found));
                        info.country = place.country;
                        info.lat = place.lat;
                        info.lon = place.lon;
                        info.accuracy_km = place.accuracy_km;
                        info.located = place.located;
                    }
                }
                Err(_) => whole = false,
            }
        }
        if let Some(Owners::Ranges(t)) = &self.asn {
            let (asn, asn_whole) = t.table.get_block(addr_key(ip), lo, hi);
            info.asn = asn.unwrap_or(0);
            whole &= asn_whole;
        }
        if let Some(r) = self.asn.as_ref().and_then(Owners::mmdb) {
            match r.lookup(ip) {
                Ok(found) => {
                    whole &= found_covers_block(ip, &found);
                    if let Some(offset) = found.offset() {
                        info.asn = self.asn_records.get(offset, || decode_asn(&found));
                    }
                }
                Err(_) => whole = false,
            }
        }
        let key = addr_key(ip);
        let (cloud, cloud_whole) = self.cloud.get_block(key, lo, hi);
        let (lists, lists_whole) = self.lists.get_block(key, lo, hi);
        info.cloud = cloud.unwrap_or(0);
        info.lists = lists.unwrap_or(0);
        (info, whole && cloud_whole && lists_whole)
    }

    /// Counts an event answered from a key's cached lookup.
    pub fn count_cached(&self) {
        self.counters.cached.inc();
    }

    /// The cloud label a [`NetInfo::cloud`] hash stands for.
    pub fn cloud_label(&self, hash: u32) -> Option<&str> {
        self.cloud_labels
            .iter()
            .find(|(h, _)| *h == hash)
            .map(|(_, l)| l.as_str())
    }

    /// The list labels of a [`NetInfo::lists`] mask.
    pub fn labels(&self, mask: u64) -> impl Iterator<Item = &ListLabel> {
        self.list_labels
            .iter()
            .enumerate()
            .filter(move |(i, _)| mask & (1 << i) != 0)
            .map(|(_, l)| l)
    }

    /// The lists of `mask` whose kind alerts.
    pub fn alerting(&self, mask: u64) -> u64 {
        mask & self.alerting
    }

    /// Whether a place seen through `info` says where a person is: not a
    /// cloud range and not a VPN, office, Tor or hosting list.
    pub fn placed(&self, info: &NetInfo) -> bool {
        info.located && info.cloud == 0 && info.lists & self.unplaced == 0
    }

    /// The organisation owning `ip`, from the ASN database.
    pub fn org(&self, ip: IpAddr) -> Option<(u32, String)> {
        let r = match self.asn.as_ref()? {
            Owners::Ranges(t) => {
                let asn = t.asn(ip);
                return (asn != 0).then(|| (asn, t.org(asn).unwrap_or("").to_owned()));
            }
            Owners::Mmdb(r) => r,
        };
        let rec = r.lookup(ip).ok()?.decode::<AsnNamed<'_>>().ok()??;
        Some((
            rec.autonomous_system_number.unwrap_or(0),
            rec.autonomous_system_organization.unwrap_or("").to_owned(),
        ))
    }

    /// How the owner of `ip` (looked up as `info`) is classed: lists first,
    /// then cloud ranges, then the organisation's name (a heuristic).
    pub fn class(&self, ip: IpAddr, info: &NetInfo) -> OwnerClass {
        let kinds = || self.labels(info.lists).map(|l| l.kind);
        if kinds().any(|k| k == ListKind::Tor) {
            OwnerClass::Tor
        } else if kinds().any(|k| k == ListKind::Vpn) {
            OwnerClass::Vpn
        } else if info.cloud != 0 {
            OwnerClass::Cloud
        } else if kinds().any(|k| k == ListKind::Hosting) {
            OwnerClass::Hosting
        } else {
            self.org(ip)
                .map_or(OwnerClass::Unknown, |(_, org)| class_of_org(&org))
        }
    }

    /// Everything known about `ip`, for evidence and the API.
    pub fn describe(&self, ip: IpAddr) -> Value {
        let info = self.lookup(ip);
        let mut out = serde_json::Map::new();
        out.insert("address".into(), json!(ip.to_string()));
        if let Some((asn, org)) = self.org(ip) {
            out.insert("asn".into(), json!(asn));
            out.insert("org".into(), json!(org));
        }
        if let Some(c) = info.country_str() {
            out.insert("country".into(), json!(c));
        }
        if let Some(r) = &self.city {
            if let Ok(Some(n)) = r.lookup(ip).and_then(|l| l.decode::<CityNames<'_>>()) {
                if let Some(city) = n.city.and_then(|c| c.names).and_then(|n| n.en) {
                    out.insert("city".into(), json!(city));
                }
            }
        }
        if info.located {
            out.insert("lat".into(), json!(round2(info.lat)));
            out.insert("lon".into(), json!(round2(info.lon)));
            out.insert("accuracy_km".into(), json!(info.accuracy_km));
        }
        if let Some(label) = self.cloud_label(info.cloud) {
            out.insert("cloud".into(), json!(label));
        }
        let lists: Vec<Value> = self
            .labels(info.lists)
            .map(|l| json!({"label": l.label, "kind": l.kind.as_str()}))
            .collect();
        if !lists.is_empty() {
            out.insert("lists".into(), Value::Array(lists));
        }
        if self.asn.is_some() || info.lists != 0 || info.cloud != 0 {
            out.insert("class".into(), json!(self.class(ip, &info).as_str()));
        }
        Value::Object(out)
    }
}

fn round2(x: f32) -> f64 {
    (x as f64 * 100.0).round() / 100.0
}

/// Great-circle distance, km.
pub fn distance_km(lat1: f32, lon1: f32, lat2: f32, lon2: f32) -> f64 {
    let (p1, p2) = ((lat1 as f64).to_radians(), (lat2 as f64).to_radians());
    let dp = p2 - p1;
    let dl = (lon2 as f64 - lon1 as f64).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0 * a.sqrt().min(1.0).asin()
}
