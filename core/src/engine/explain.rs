//! A key's state and baselines for people (`/api/v1/keys/{key_id}`): what
//! keywatch has learned, and for each detector whether it would fire now and
//! why.

use serde_json::{json, Value};

use super::baseline::{RateModel, WARMUP_RATIO, WARM_DAYS};
use super::detect::share::{round3, share_text};
use super::detect::{hold, human_secs, new_source, source_fanout, DAY};
use super::finding::Detector;
use super::settings::Settings;
use super::source::SourceId;
use super::state::{HeldOn, KeyState, NetworkSummary, Novel, Secs, ValueKind};
use crate::decode::time::format_rfc3339;

/// Which line a rate model draws now, in words.
fn model_text(m: &RateModel) -> String {
    match m.seasonal() {
        Some(s) if s.warm() => format!(
            "the lower of the bucket and sustained tests of a seasonal model with {} days of hourly history",
            s.days()
        ),
        Some(s) => format!(
            "warm-up: {WARMUP_RATIO:.0}x the key's level until {WARM_DAYS} days of hourly history ({} so far)",
            s.days()
        ),
        None if m.level() > 0.0 => format!(
            "{WARMUP_RATIO:.0}x the key's level: too little volume for an hour-of-day model"
        ),
        None => "no baseline yet: the min_count floor".to_owned(),
    }
}

/// A rate model's expectation for the hour of `now`.
fn model_json(m: &RateModel, now: Secs) -> Value {
    match m.seasonal() {
        Some(s) => {
            let slot = s.slot_at(now);
            json!({
                "model": if s.warm() { "seasonal" } else { "warm_up" },
                "days_of_history": s.days(),
                "hour_slot_utc": (now / 3600) % 24,
                "weekday_aware": false,
                "expected_per_bucket_this_hour": (slot.lambda() as f64 * 10.0).round() / 10.0,
                "dispersion_this_hour": round3(slot.phi()),
            })
        }
        None => json!({
            "model": if m.level() > 0.0 { "warm_up" } else { "none" },
            "key_level": m.level(),
        }),
    }
}

fn at(t: Secs) -> String {
    format_rfc3339(t as i64 * 1000)
}

/// Explains `state` as of event time `now`.
pub fn explain(s: &Settings, key: &str, state: &KeyState, now: Secs) -> Value {
    let learned_for = now.saturating_sub(state.first_seen);
    let eligible = learned_for >= s.learning_s && state.events as u64 >= s.learning_events;
    let learning = if eligible {
        "past learning".to_owned()
    } else {
        format!(
            "learning: {}s of {}s and {} of {} events",
            learned_for, s.learning_s, state.events, s.learning_events
        )
    };
    let mut nets = state.sources.summary(now, s.forget_s, state.first_seen);
    (nets.return_days, nets.last_return) = state.returns(now, s.forget_s);
    let cfg = &s.detectors;
    let pool_churn = pool_churn(s, state, now);
    let net_rate = state.novelty.rate(Novel::Network);
    // A detector's state in words: off, still learning, or what it would do.
    let status = |enabled: bool, armed: &dyn Fn() -> String| {
        if !enabled {
            "disabled".to_owned()
        } else if !eligible {
            learning.clone()
        } else {
            armed()
        }
    };
    let new_source = status(cfg.new_source.enabled, &|| {
        new_source_armed(s, state, net_rate, &nets, &pool_churn, now)
    });
    let (new_nets, inside) = state.fanout.current();
    let (new_t, inside_t) = source_fanout::thresholds(&state.fanout, &cfg.source_fanout);
    let (count, threshold) = state.rate.current();
    let rate = status(cfg.rate_spike.enabled, &|| {
        format!(
            "armed: {count} requests in the current bucket, alerts at {threshold} ({})",
            model_text(&state.rate)
        )
    });
    let (failures, error_threshold) = state.errors.current();
    let errors = status(cfg.error_spike.enabled, &|| {
        format!(
            "armed: {failures} failures in the current bucket, alerts at {error_threshold} ({})",
            model_text(&state.errors)
        )
    });
    let families = state
        .values
        .fresh_len(ValueKind::UserAgent, now, s.forget_s);
    let user_agent = status(cfg.new_user_agent.enabled, &|| {
        user_agent_armed(families, cfg.new_user_agent.broad_after)
    });
    let action = status(cfg.new_action.enabled, &|| {
        "armed: an action outside the known set would alert".to_owned()
    });
    let fanout = status(cfg.source_fanout.enabled, &|| {
        format!("armed: {new_nets} new networks in the current window, high at {new_t}; {inside} addresses inside the key's networks, low at {inside_t}")
    });
    json!({
        "key_id": key,
        "first_seen": at(state.first_seen),
        "last_seen": at(state.last_seen),
        "events": state.events,
        "active_days": state.active_days,
        "eligible": eligible,
        "learning": learning,
        "baseline": {
            "networks": nets.sample_display(),
            "network_count": nets.networks,
            "networks_acquired_later": nets.acquired_later,
            "networks_acquired_in_bursts": nets.burst_networks,
            "new_network_days_share": round3(net_rate),
            "new_user_agent_days_share": round3(state.novelty.rate(Novel::UserAgent)),
            "new_action_days_share": round3(state.novelty.rate(Novel::Action)),
            "pool_churn": pool_churn,
            "sources_remembered": state.sources.entries().len(),
            "user_agent_families": families,
            "actions": state.values.fresh_len(ValueKind::Action, now, s.forget_s),
            "peak_requests_per_bucket": state.rate.level(),
            "hour_of_day_baseline": state.rate.seasonal().is_some_and(|m| m.warm()),
            "requests_model": model_json(&state.rate, now),
            "peak_failures_per_bucket": state.errors.level(),
            "failures_model": model_json(&state.errors, now),
            "peak_new_networks_per_window": state.fanout.peak(),
            "peak_addresses_inside_networks_per_window": state.fanout.inside_peak(),
            "longest_idle_gap_s": state.longest_gap,
        },
        "current": {
            "requests_in_bucket": count,
            "request_threshold": threshold,
            "failures_in_bucket": failures,
            "failure_threshold": error_threshold,
        },
        "open_runs": open_runs(s, state, now),
        "held": held(state, now),
        "detectors": {
            "new_source": new_source,
            "rate_spike": rate,
            "error_spike": errors,
            "new_user_agent": user_agent,
            "new_action": action,
            "source_fanout": fanout,
            "dormant_revival": dormant(s, state, now),
        },
    })
}

/// Wider networks where a new /24 would be pool churn (low) right now, each
/// with when that ends.
fn pool_churn(s: &Settings, state: &KeyState, now: Secs) -> Vec<String> {
    let expiry = s.detectors.new_source.roaming_expiry.as_secs_u32();
    let mut churning: Vec<(u64, String)> = Vec::new();
    for e in state.sources.entries() {
        if e.last_seen < now.saturating_sub(s.forget_s) || e.id.is_named() {
            continue;
        }
        // Any network of the wider one other than those the key holds.
        let probe = SourceId(e.id.wide_network() | 0xFFFF);
        let c = state
            .sources
            .wide_churn(probe, now, s.forget_s, state.first_seen);
        if c.siblings >= 2
            && c.last_acquired > 0
            && now.saturating_sub(c.last_acquired) < expiry
            && !churning.iter().any(|(w, _)| *w == e.id.wide_network())
        {
            churning.push((
                e.id.wide_network(),
                format!(
                    "{} until {}",
                    e.id.wide_display(),
                    at(c.last_acquired.saturating_add(expiry))
                ),
            ));
        }
    }
    churning.into_iter().map(|(_, s)| s).collect()
}

/// What `new_source` would do past learning: quiet on a key that meets new
/// networks by nature, else the severity a new network would get.
fn new_source_armed(
    s: &Settings,
    state: &KeyState,
    net_rate: f32,
    nets: &NetworkSummary,
    pool_churn: &[String],
    now: Secs,
) -> String {
    let cfg = &s.detectors.new_source;
    let expected = cfg.expected_novelty;
    let net_share = share_text(net_rate, state.novelty.days());
    let networks = nets.sample_display();
    let upper = state.novelty.upper(Novel::Network);
    let acquired_for = now.saturating_sub(nets.last_acquired());
    let held = if new_source::judged_alone(cfg, upper, acquired_for) {
        String::new()
    } else {
        format!(
            "; held for corroboration: a new network alone is raised only if, within {}, it calls what the key has not called, uses a client it has not used, or makes a sensitive call (share with one more {:.0}%, alone_below {}; newest network acquired {} ago, alone_after {})",
            cfg.corroborate_within,
            upper * 100.0,
            cfg.alone_below,
            human_secs(u64::from(acquired_for)),
            cfg.alone_after,
        )
    };
    match new_source::surprise(net_rate, expected) {
        None => format!(
            "quiet (novelty_expected): the key met a new network {net_share}, at or above expected_novelty {expected}; a key leaving its cloud ranges is still judged"
        ),
        Some(severity) => format!(
            "armed: the key met a new network {net_share}; a use from a network other than {} would alert ({}{}{})",
            networks.join(", "),
            severity.as_str(),
            if pool_churn.is_empty() {
                String::new()
            } else {
                format!("; low, pool_churn, inside {}", pool_churn.join(", "))
            },
            held,
        ),
    }
}

/// What `new_user_agent` would do past learning with `families` known.
fn user_agent_armed(families: usize, broad_after: u16) -> String {
    if families >= broad_after as usize {
        format!("quiet (broad): {families} client families known, at or above broad_after {broad_after}")
    } else if families == 0 {
        "quiet: no client family known yet; the first one is learned".to_owned()
    } else {
        format!(
            "armed: {families} client famil{} known; another would alert",
            if families == 1 { "y" } else { "ies" }
        )
    }
}

/// `dormant_revival` needs no learning: the key is idle past the line or not.
fn dormant(s: &Settings, state: &KeyState, now: Secs) -> String {
    let idle = now.saturating_sub(state.last_seen);
    if !s.detectors.dormant_revival.enabled {
        "disabled".to_owned()
    } else if idle >= s.dormant_s {
        format!("dormant for {}d: the next use alerts", idle / DAY)
    } else {
        format!("active: idle {}d of {}d", idle / DAY, s.dormant_s / DAY)
    }
}

/// The runs of findings still folding (see `engine.fold_after`).
fn open_runs(s: &Settings, state: &KeyState, now: Secs) -> Vec<Value> {
    let Some(rare) = state.rare.as_ref() else {
        return Vec::new();
    };
    rare.folds
        .iter()
        .filter(|f| now.saturating_sub(f.last) < s.fold_quiet_s)
        .map(|f| {
            json!({
                "detector": Detector::from_index(f.detector).map(|d| d.as_str()),
                "raised": f.raised,
                "folded": f.folded,
                "since": at(f.since),
                "latest": at(f.last),
                "ends_if_quiet_until": at(f.last.saturating_add(s.fold_quiet_s)),
            })
        })
        .collect()
}

/// Firsts whose finding waits for corroboration: the detector, what is
/// held (a network, a client, the actions gathered), when it was first
/// used, when the hold ends and the severity it would be raised at.
fn held(state: &KeyState, now: Secs) -> Vec<Value> {
    let Some(rare) = state.rare.as_ref() else {
        return Vec::new();
    };
    rare.held
        .iter()
        .filter(|h| h.until > now)
        .map(|h| {
            let mut v = json!({
                "detector": hold::detector_of(h.on).0.as_str(),
                "since": at(h.since),
                "until": at(h.until),
                "severity": h.report.severity.as_str(),
            });
            let (what, value) = match h.on {
                HeldOn::Network(id) => ("network", json!(id.network_display())),
                HeldOn::Client(_) => ("client", h.report.observed["family"].clone()),
                HeldOn::Actions(_) => ("action", h.report.observed["action"].clone()),
                HeldOn::Run(needed) => ("usual_run_requests", json!(needed)),
            };
            v[what] = value;
            // What a hold gathers: new actions, or for a run the requests
            // its job's hour brought so far.
            let gathered = match h.on {
                HeldOn::Run(_) => "requests_in_usual_hour",
                _ => "new_actions",
            };
            v[gathered] = json!(h.gathered);
            v
        })
        .collect()
}

/// The key's request rate for a chart: what its model expects per bucket at
/// each hour of the day (UTC; the key's level where it has no hourly model
/// yet) and the current bucket's count and alert line, as of `now`.
pub fn rate_profile(s: &Settings, state: &KeyState, now: Secs) -> Value {
    let day_start = now - now % DAY;
    let expected: Vec<f64> = (0..24)
        .map(|h| match state.rate.seasonal() {
            Some(m) => (m.slot_at(day_start + h * 3600).lambda() as f64 * 10.0).round() / 10.0,
            None => (state.rate.level() as f64 * 10.0).round() / 10.0,
        })
        .collect();
    let (count, threshold) = state.rate.current();
    json!({
        "bucket_s": s.rate.bucket_s,
        "expected_per_bucket_by_hour_utc": expected,
        "current": {
            "hour_utc": (now / 3600) % 24,
            "requests_in_bucket": count,
            "threshold": threshold,
        },
    })
}
