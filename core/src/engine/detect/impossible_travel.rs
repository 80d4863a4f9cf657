//! `impossible_travel`: two uses of one key (or principal) whose distance
//! over the time between them needs a speed no traveller has.
//!
//! The distance is the great-circle distance between the two geolocated
//! places minus both accuracy radii; it must also exceed `min_distance_km`.
//! The elapsed time is floored at a minute. Places that do not say where a
//! person is are never judged, neither as the origin nor as the destination
//! (as Datadog's rule does): cloud ranges, networks on a `vpn`, `office`,
//! `tor` or `hosting` list, and addresses whose ASN organisation reads as a
//! VPN or hosting provider (a name heuristic). That is the door this
//! detector leaves open: a thief who works from a cloud instance or a VPN is
//! not judged here (`new_source` and `cloud_credential_outside_cloud` are).
//!
//! Judged only for a key past learning, used in at most three countries
//! within `forget_after`, now in a country it has not used within it:
//! keys that alternate between regions or whose addresses span the world
//! (pools, fleets) are not one traveller. The door: a thief in a country
//! the key already uses.
//!
//! Nor for a key whose places already jumped between countries at such a
//! speed within `forget_after` without a finding (while it was learning,
//! between countries it uses, or past three countries): a key shared
//! between two sites, or whose user tethers, tunnels or works from networks
//! geolocated far from each other, is not one traveller either. The door: a
//! thief using such a key (closed again `forget_after` after its last
//! jump; the key view shows `places_jumped_at`). A jump that raised a
//! finding is not remembered, so a thief's own jumps do not open it.
//!
//! A role's sessions (an `assumed-role` principal) are not judged together:
//! they are many people or machines; each session key is judged alone.
//!
//! Severity: `high` at 3000 km or more (another continent), `medium` below.
//! One finding per key, pair of countries and cooldown.

use serde::{Deserialize, Serialize};
use serde_json::json;
use xxhash_rust::xxh3::xxh3_64;

use super::{human_secs, Ctx, Report};
use crate::engine::finding::{Detector, Severity};
use crate::engine::state::KeyState;
use crate::netintel::{distance_km, NetInfo, OwnerClass, Tables};
use crate::types::Entity;
use crate::types::{invalid, ConfigError};

/// `[detectors.impossible_travel]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImpossibleTravelConfig {
    /// Switch the detector on or off.
    pub enabled: bool,
    /// The fastest a person travels, km/h.
    pub max_speed_kmh: f64,
    /// Distances at or below this (after both accuracy radii are taken off)
    /// never alert: geolocation of neighbouring cities is not precise enough.
    pub min_distance_km: f64,
}

/// 1000 km/h: an airliner's cruising speed with a margin; Datadog's impossible
/// travel rule uses the same order of magnitude.
fn default_max_speed_kmh() -> f64 {
    1000.0
}

/// 500 km: city-level geolocation of one ISP's addresses is often a few
/// hundred kilometres off even inside its accuracy radius.
fn default_min_distance_km() -> f64 {
    500.0
}

impl Default for ImpossibleTravelConfig {
    fn default() -> Self {
        ImpossibleTravelConfig {
            enabled: true,
            max_speed_kmh: default_max_speed_kmh(),
            min_distance_km: default_min_distance_km(),
        }
    }
}

impl ImpossibleTravelConfig {
    /// Checks the section's values; an error names the key and its value.
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        if !(self.max_speed_kmh.is_finite() && self.max_speed_kmh >= 100.0) {
            return Err(invalid(
                &format!("{section}.max_speed_kmh"),
                self.max_speed_kmh,
                "must be a number of at least 100",
            ));
        }
        if !(self.min_distance_km.is_finite() && self.min_distance_km >= 0.0) {
            return Err(invalid(
                &format!("{section}.min_distance_km"),
                self.min_distance_km,
                "must be a number of at least 0",
            ));
        }
        Ok(())
    }
}

/// A key seen in more countries than this within `forget_after` is not one
/// traveller's.
pub const MAX_COUNTRIES: usize = 3;

/// A distance past which the two places are on different continents, km.
pub const FAR_KM: f64 = 3000.0;

/// Whether the identity is a role whose sessions are different people or
/// machines (its sessions share one history, see `principal_identity`):
/// their places are not one traveller's. The session keys themselves are
/// still judged one by one.
fn shared_role(ctx: &Ctx<'_, '_>) -> bool {
    ctx.entity == Entity::Principal && ctx.subject.contains(":assumed-role/")
}

/// Checks the event's place against the key's previous one.
pub fn check(
    state: &mut KeyState,
    ctx: &mut Ctx<'_, '_>,
    tables: &Tables,
    info: &NetInfo,
    ip: std::net::IpAddr,
) {
    let cfg = &ctx.settings.detectors.impossible_travel;
    if !cfg.enabled || !tables.placed(info) || shared_role(ctx) {
        return;
    }
    let Some(memory) = state.net.as_deref() else {
        return;
    };
    let Some(prev) = memory.place else {
        return;
    };
    if prev.country == info.country {
        return;
    }
    let distance = distance_km(prev.lat, prev.lon, info.lat, info.lon);
    let slack = prev.accuracy_km as f64 + info.accuracy_km as f64;
    let effective = (distance - slack).max(0.0);
    if effective <= cfg.min_distance_km {
        return;
    }
    let elapsed = ctx.now.abs_diff(prev.at).max(60);
    let speed = effective / (elapsed as f64 / 3600.0);
    if speed <= cfg.max_speed_kmh {
        return;
    }
    let hides = |ip, info: &NetInfo| {
        matches!(
            tables.class(ip, info),
            OwnerClass::Vpn | OwnerClass::Hosting
        )
    };
    if hides(ip, info) || hides(prev.addr, &tables.lookup(prev.addr)) {
        return;
    }
    // A jump no traveller makes. Judged only for one traveller's key: past
    // learning, seen in few countries, now in a country it has not used
    // recently, and whose places have not jumped like this before within
    // `forget_after` (a key shared between sites, or whose user tethers or
    // tunnels, is not one traveller).
    let forget_s = ctx.settings.forget_s;
    if !ctx.eligible
        || memory.knows_country(info.country, ctx.now, forget_s)
        || memory.fresh_countries(ctx.now, forget_s) > MAX_COUNTRIES
        || memory.jumps(ctx.now, forget_s)
    {
        // Not judged, but remembered: the key's places jump.
        if let Some(m) = state.net.as_deref_mut() {
            m.jumped = m.jumped.max(ctx.now);
        }
        return;
    }
    let (max_speed, min_distance) = (cfg.max_speed_kmh, cfg.min_distance_km);
    let pair = [prev.country, info.country].concat();
    let dim = xxh3_64(&pair);
    if ctx.quiet(state, Detector::ImpossibleTravel, dim) {
        return;
    }
    let from = tables.describe(prev.addr);
    let to = tables.describe(ip);
    let place = |v: &serde_json::Value| match (
        v.get("city").and_then(|c| c.as_str()),
        v.get("country").and_then(|c| c.as_str()),
    ) {
        (Some(city), Some(c)) => format!("{city}, {c}"),
        (None, Some(c)) => c.to_owned(),
        _ => "an unknown place".to_owned(),
    };
    let at = |s: u32| crate::decode::time::format_rfc3339(s as i64 * 1000);
    let report = Report {
        severity: if effective >= FAR_KM {
            Severity::High
        } else {
            Severity::Medium
        },
        summary: format!(
            "{} was used from {} ({}) {} after a use from {} ({}): {:.0} km apart, {:.0} km/h.",
            ctx.who(),
            place(&to),
            ctx.source_text(),
            human_secs(elapsed as u64),
            place(&from),
            prev.addr,
            distance,
            speed
        ),
        observed: json!({
            "to": {"place": to, "at": at(ctx.now)},
            "from": {"place": from, "at": at(prev.at)},
            "distance_km": distance.round(),
            "distance_beyond_accuracy_km": effective.round(),
            "elapsed_s": elapsed,
            "speed_kmh": speed.round(),
        }),
        baseline: json!({
            "previous_place": place(&from),
            "previous_use": at(prev.at),
        }),
        threshold: json!({
            "max_speed_kmh": max_speed,
            "min_distance_km": min_distance,
            "excluded": ["cloud", "vpn", "office", "tor", "hosting"],
        }),
    };
    ctx.emit(state, Detector::ImpossibleTravel, dim, report);
}
