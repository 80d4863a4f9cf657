//! `new_source`: a settled key used from a network (/24, or /64 for IPv6) it
//! has not used within `forget_after`.
//!
//! Every rule that keeps a new network quiet or lowers its severity closes by
//! itself, is scoped to what the key itself did recently, and is named in the
//! finding's `observed.rules` (or, when it silences, in the key's explain
//! view):
//!
//! - **roaming** (silent): the key acquired new networks on `roaming_days`
//!   distinct days after its first day, the newest less than
//!   `roaming_expiry` ago. A day that brought [`BURST_NETWORKS`] or more
//!   networks (one fan-out) is a burst, not a move: it never counts as a
//!   roaming day, so an attacker cannot switch the detector off by using a
//!   few dozen addresses first.
//! - **pool_draws** (silent): bursts on [`POOL_DRAW_DAYS`] distinct days, the
//!   newest less than `roaming_expiry` ago (a key drawing from a provider's
//!   pool on every run; each of those bursts was a `source_fanout` finding
//!   unless the key learned them).
//! - **overflowing** (silent): on [`RETURN_DAYS`] distinct days within
//!   `forget_after`, the newest less than `roaming_expiry` ago, the key came
//!   back to a network it had forgotten for lack of room (making room for a
//!   new address evicted the network's last remembered address while the
//!   key still used it; `max_sources_per_key`). Such a key draws from a pool
//!   wider than its memory (a NAT or runner pool across many /24s), and a
//!   network it seems not to know may well be one it used last week. A key
//!   with hundreds of addresses inside a few networks forgets none, and a
//!   fan-out's networks, once forgotten, do not come back by themselves.
//!   The door: an attacker who overflows a key's memory with networks (a
//!   `source_fanout` burst) and then comes back to those networks on three
//!   days, the first two of which alert (`forgotten_for_room`).
//! - **forming** (silent): a key with two or more networks (bursts apart)
//!   in its first three weeks ([`FORMING_S`]) is still showing where it is
//!   used (home, office, a café); single-network keys are judged from the
//!   end of learning.
//! - **pool_churn** (low): the new /24 is in a /16 (/48 in a /48) where the key
//!   holds two or more /24s and itself acquired one of them after its first
//!   day, less than `roaming_expiry` ago.
//! - **same_wider_network** (at most medium): a /16 neighbour of a known /24
//!   without such churn.
//! - **named_source** (low): a named source, not an address.
//!
//! With network intelligence (`[netintel]`), the owner and place of the new
//! network then set the severity ([`judge`]), first rule that applies:
//!
//! - **cloud pool** (silent): a cloud label (provider, service, region) under
//!   which the key already acquired two or more networks: NAT pools churn
//!   across /16s of one provider. The door: a thief renting an instance in
//!   the same provider and region as such a key.
//! - **same_cloud_region** (low): the key's cloud label, one network so far.
//! - **outside_cloud** (high), **new_cloud_region** (medium): a key that
//!   only ever ran in cloud ranges, used outside them or under a cloud label
//!   it never used; judged even while the key roams within its pool.
//! - **new_country** (high).
//! - **hosting_vpn_or_tor** (high): an ASN the key does not use, owned by a
//!   hosting or VPN provider (by list, or by organisation name: a heuristic).
//! - **new_asn** (medium; low under `pool_churn`); **known_asn** (low).
//!
//! Severity otherwise follows how settled the key is, counting its networks
//! apart from bursts: two or fewer and none new for a week is high, up to
//! four (or a network change within the week, `recent_network_change`) is
//! medium, more is low. The client does not matter: thieves use the SDKs
//! everybody uses. One finding per key per cooldown: a fan-out's dozens of
//! networks are one incident. The cooldown is asked before anything else,
//! so during it every new network counts as a cooldown drop
//! (`keywatch_findings_suppressed_total{rule="cooldown"}`), a roaming key's
//! too, and costs no look at the key's networks.

use serde_json::json;

use super::{human_secs, Ctx, Report, DAY};
use crate::config::NewSourceConfig;
use crate::engine::finding::{Detector, Severity};
use crate::engine::source::SourceId;
use crate::engine::state::{
    KeyState, NetworkSummary, Secs, SourceFacts, BURST_NETWORKS, RETURN_DAYS,
};
use crate::netintel::{NetInfo, OwnerClass, Tables};

/// Burst days (recent) after which a key draws from a pool by design.
pub const POOL_DRAW_DAYS: u16 = 3;

/// A key with two or more networks is still showing its repertoire for this
/// long after its first use: a person's laptop meets home, office and a café
/// in its first weeks, and only then shows whether it roams.
pub const FORMING_S: Secs = 21 * DAY;

/// Why new networks are normal for a key right now, if they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roaming {
    /// New networks on several days, recently.
    Roaming {
        /// When the rule expires unless the key acquires another network.
        until: Secs,
    },
    /// Bursts of new networks on several days, recently.
    PoolDraws {
        /// When the rule expires unless the key has another burst.
        until: Secs,
    },
    /// A key that came back to networks it had forgotten for lack of room
    /// (`max_sources_per_key`) on several days, recently: it draws from a
    /// pool wider than its memory, so a network it seems not to know may be
    /// one it used last week.
    Overflowing {
        /// When the rule expires unless the key comes back to another.
        until: Secs,
    },
    /// A young key with several networks, still showing its repertoire.
    Forming {
        /// When the key is three weeks old.
        until: Secs,
    },
}

/// Whether `known` makes a key first seen at `first_seen` roam at `now`.
pub fn roaming(
    known: &NetworkSummary,
    cfg: &NewSourceConfig,
    now: Secs,
    first_seen: Secs,
) -> Option<Roaming> {
    let expiry = cfg.roaming_expiry.as_secs_u32();
    let roam_until = known.last_roam.saturating_add(expiry);
    let burst_until = known.last_burst.saturating_add(expiry);
    if known.roam_days >= cfg.roaming_days && now < roam_until {
        Some(Roaming::Roaming { until: roam_until })
    } else if known.burst_days >= POOL_DRAW_DAYS && now < burst_until {
        Some(Roaming::PoolDraws { until: burst_until })
    } else if let Some(until) = overflowing(known.return_days, known.last_return, cfg, now) {
        Some(Roaming::Overflowing { until })
    } else if known.settled_networks() >= 2 && now < first_seen.saturating_add(FORMING_S) {
        Some(Roaming::Forming {
            until: first_seen.saturating_add(FORMING_S),
        })
    } else {
        None
    }
}

/// Until when a key that came back to networks it had forgotten for lack of
/// room on `return_days` days, the latest beginning at `last_return`, is
/// quiet ([`Roaming::Overflowing`]), if it is at `now`.
fn overflowing(
    return_days: u16,
    last_return: Secs,
    cfg: &NewSourceConfig,
    now: Secs,
) -> Option<Secs> {
    let until = last_return.saturating_add(cfg.roaming_expiry.as_secs_u32());
    (return_days >= RETURN_DAYS as u16 && now < until).then_some(until)
}

/// What network intelligence says about a new network, when it is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    /// A new network under a cloud label (provider, service, region) where
    /// the key already acquired several networks: pool churn, silent.
    CloudPool,
    /// Severity from the owner and place, with the rule that set it.
    Rated(Severity, &'static str),
}

/// Whether a key that only ever ran in cloud ranges is used outside them or
/// under a cloud label (provider, service, region) it never used: roaming
/// within its pool does not cover that.
fn leaves_cloud(state: &KeyState, ctx: &Ctx<'_, '_>, info: &NetInfo) -> bool {
    let (now, forget_s) = (ctx.now, ctx.settings.forget_s);
    let min = ctx
        .settings
        .detectors
        .cloud_credential_outside_cloud
        .min_cloud_events;
    state.net.as_deref().is_some_and(|m| {
        m.cloud_only(min, now, forget_s)
            && (info.cloud == 0 || m.cloud(info.cloud, now, forget_s).is_none())
    })
}

/// Judges a new network by its owner and place against the key's memory.
/// `None` when nothing is known that changes the network rules' verdict.
pub fn judge(
    state: &KeyState,
    tables: &Tables,
    ip: std::net::IpAddr,
    info: &NetInfo,
    ctx: &Ctx<'_, '_>,
) -> Option<Judged> {
    let memory = state.net.as_deref()?;
    let (now, forget_s) = (ctx.now, ctx.settings.forget_s);
    if info.cloud != 0 {
        if let Some(c) = memory.cloud(info.cloud, now, forget_s) {
            return Some(if c.networks >= 2 {
                Judged::CloudPool
            } else {
                Judged::Rated(Severity::Low, "same_cloud_region")
            });
        }
    }
    let min_cloud = ctx
        .settings
        .detectors
        .cloud_credential_outside_cloud
        .min_cloud_events;
    if memory.cloud_only(min_cloud, now, forget_s) {
        return Some(if info.cloud == 0 {
            Judged::Rated(Severity::High, "outside_cloud")
        } else {
            Judged::Rated(Severity::Medium, "new_cloud_region")
        });
    }
    if info.country != [0, 0]
        && memory.has_countries(now, forget_s)
        && !memory.knows_country(info.country, now, forget_s)
    {
        return Some(Judged::Rated(Severity::High, "new_country"));
    }
    let asn_known = info.asn != 0 && memory.knows_asn(info.asn, now, forget_s);
    if !asn_known {
        match tables.class(ip, info) {
            OwnerClass::Hosting | OwnerClass::Vpn | OwnerClass::Tor => {
                return Some(Judged::Rated(Severity::High, "hosting_vpn_or_tor"))
            }
            _ => {}
        }
    }
    if info.asn != 0 && memory.has_asns(now, forget_s) {
        return Some(if asn_known {
            Judged::Rated(Severity::Low, "known_asn")
        } else {
            Judged::Rated(Severity::Medium, "new_asn")
        });
    }
    None
}

/// Checks the event's source against the key's remembered sources; with
/// network intelligence (`located`), also by its owner and place.
pub fn check(
    state: &mut KeyState,
    ctx: &mut Ctx<'_, '_>,
    id: SourceId,
    facts: &SourceFacts,
    returned: bool,
    located: Option<&(&Tables, std::net::IpAddr, NetInfo)>,
) {
    let cfg = &ctx.settings.detectors.new_source;
    if !cfg.enabled || !ctx.eligible || facts.network_known {
        return;
    }
    // A key cooling down on new_source raises nothing, whatever its networks
    // say: asked first, so a busy key moving through networks is not
    // summarised on every event. `quiet` counts the drop as it always does
    // (the allowlist or a teaching before the cooldown).
    if ctx.cooling(state, Detector::NewSource, 0) {
        ctx.quiet(state, Detector::NewSource, 0);
        return;
    }
    let forget_s = ctx.settings.forget_s;
    let now = ctx.now;
    let leaves = |state: &KeyState, ctx: &Ctx<'_, '_>| {
        located.is_some_and(|(_, _, info)| !id.is_named() && leaves_cloud(state, ctx, info))
    };
    // A key drawing from a pool wider than its memory meets a "new" network
    // on most events: asked before its networks are summarised.
    let (return_days, last_return) = state.returns(now, forget_s);
    if overflowing(return_days, last_return, cfg, now).is_some() && !leaves(state, ctx) {
        return;
    }
    let (mut known, churn) = state
        .sources
        .summary_and_churn(id, now, forget_s, state.first_seen);
    (known.return_days, known.last_return) = (return_days, last_return);
    if known.networks == 0 {
        return;
    }
    if roaming(&known, cfg, now, state.first_seen).is_some() && !leaves(state, ctx) {
        return;
    }
    let expiry = cfg.roaming_expiry.as_secs_u32();
    let pool_churn = churn.siblings >= 2
        && churn.last_acquired > 0
        && now.saturating_sub(churn.last_acquired) < expiry;
    let settled = known.settled_networks();
    let quiet_for = now.saturating_sub(known.newest_first_seen);
    let mut rules: Vec<&'static str> = Vec::new();
    let mut severity = if settled <= 2 && quiet_for >= 7 * DAY {
        Severity::High
    } else if settled <= 4 {
        Severity::Medium
    } else {
        Severity::Low
    };
    if quiet_for < 7 * DAY {
        rules.push("recent_network_change");
    }
    if known.burst_networks > 0 {
        rules.push("burst_networks_not_counted");
    }
    if returned {
        // Used within forget_after after all, then forgotten for lack of room.
        rules.push("forgotten_for_room");
    }
    if id.is_named() {
        rules.push("named_source");
        severity = Severity::Low;
    } else if pool_churn {
        rules.push("pool_churn");
        severity = Severity::Low;
    } else if churn.siblings > 0 {
        rules.push("same_wider_network");
        severity = severity.min(Severity::Medium);
    }
    if let Some((tables, ip, info)) = located.filter(|_| !id.is_named()) {
        match judge(state, tables, *ip, info, ctx) {
            Some(Judged::CloudPool) => return,
            // Never above what the network rules allow for churn within a
            // provider's pool, never below what the owner says otherwise.
            Some(Judged::Rated(s, rule)) => {
                rules.push(rule);
                severity = if pool_churn && s > Severity::Low && rule == "new_asn" {
                    Severity::Low
                } else {
                    s
                };
            }
            None => {}
        }
    }
    if ctx.quiet(state, Detector::NewSource, 0) {
        return;
    }
    // Evidence only: the client never lowers the severity.
    // The family's hash is worked out once per event (`Ctx::user_agent`);
    // a user agent that names no client is never recorded, so never usual.
    let usual_client = ctx
        .user_agent
        .is_some_and(|(_, hash)| state.values.knows(hash, now, forget_s));
    let source = ctx.source_text();
    let network = id.network_display();
    let networks = known.sample_display();
    let summary = format!(
        "{} was used from {source} ({network}), a network it has not used in {}; it normally uses {} network{} ({}).",
        ctx.who(),
        human_secs(forget_s as u64),
        known.networks,
        if known.networks == 1 { "" } else { "s" },
        networks.join(", "),
    );
    let report = Report {
        severity,
        summary,
        observed: json!({
            "source": source,
            "network": network,
            "same_wider_network": churn.siblings > 0,
            "usual_client": usual_client,
            "rules": rules,
        }),
        baseline: json!({
            "known_networks": known.networks,
            "settled_networks": settled,
            "networks": networks,
            "no_new_network_for_s": quiet_for,
            "roaming_days": known.roam_days,
            "burst_days": known.burst_days,
            "same_wider_networks": churn.siblings,
        }),
        threshold: json!({
            "forget_after_s": forget_s,
            "roaming_days": cfg.roaming_days,
            "roaming_expiry_s": expiry,
            "burst_networks": BURST_NETWORKS,
        }),
    };
    ctx.emit(state, Detector::NewSource, 0, report);
}
