//! `new_source`: a settled key used from a network (/24, or /56 for IPv6) it
//! has not used within `forget_after`.
//!
//! How surprising a new network is depends on the key: it is estimated from
//! the key's own recent history ([`Novelty`](crate::engine::state::Novelty): the share of its active days
//! that brought a new network, decayed by the baseline half-life). A key
//! that meets new networks on at least `expected_novelty` of its days
//! (serverless workers, mobile carriers, VPN pools, runner pools) says
//! nothing by meeting another /24 and does not alert, unless the network is
//! in a wider network (/16, /48) it has not used and its days seldom bring
//! one of those (`new_wider_network`, judged by the same shares) (its fan-outs are
//! `source_fanout`'s, its owners and places netintel's); below that, the
//! severity follows the surprise: high when fewer than 3% of its recent
//! days brought a new network, medium under 10%, low above. The evidence
//! says the share in words. A fan-out day counts as one day, so an attacker
//! cannot make a key look like one that roams without raising the findings
//! of the days it takes.
//!
//! A new network alone is a finding only on a key that has shown new
//! networks are rare for it ([`judged_alone`]: its share of days with one,
//! counting one more, under `alone_below`, or no network acquired for
//! `alone_after`). On any other key (a person, a young key, a key that met
//! a new network this month) the finding is written and **held** for
//! `corroborate_within`: the first call from that network that the key
//! does not make ([`hold::corroboration`]: an action it has not called, a client
//! family it has not used, a sensitive call) raises it, naming the call;
//! without one it is dropped and counted (`uncorroborated`). A place
//! netintel says the key never used, or leaving its cloud ranges, is
//! corroboration enough. The door: a careful thief on such a key who makes
//! only the key's own calls with its own client.
//!
//! The rules that lower the severity close by themselves, are scoped to what
//! the key itself did recently, and are named in the finding's
//! `observed.rules`:
//!
//! - **pool_churn** (low): the new /24 is in a /16 (/48 in a /48) where the key
//!   holds two or more /24s and itself acquired one of them after its first
//!   day, less than `roaming_expiry` ago.
//! - **same_ipv6_site** (low): a new /56 inside a /48 the key uses (a
//!   site's allocation). The door: a thief in the victim's own /48.
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
//! The client does not matter: thieves use the SDKs
//! everybody uses. One finding per key per cooldown: a fan-out's dozens of
//! networks are one incident. The cooldown is asked before anything else,
//! so during it every new network counts as a cooldown drop
//! (`keywatch_findings_suppressed_total{rule="cooldown"}`) and costs no
//! look at the key's networks.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::share::{habitual, round3, share_text};
use super::{hold, human_secs, Ctx, Report};
use crate::engine::finding::{Detector, Severity};
use crate::engine::source::SourceId;
use crate::engine::state::{HeldOn, KeyState, Novel, SourceFacts};
use crate::netintel::{NetInfo, OwnerClass, Tables};
use crate::types::{invalid, ConfigError, HumanDuration};

/// `[detectors.new_source]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NewSourceConfig {
    /// Switch the detector on or off.
    pub enabled: bool,
    /// A key whose recent active days brought a new network (/24, /56) at
    /// least this often (the share of days, decayed by the baseline
    /// half-life) meets new networks by nature: one more says nothing and
    /// does not alert. Below it, the rarer new networks are for the key, the
    /// higher the severity.
    pub expected_novelty: f64,
    /// Pool churn's span: a new /24 beside the key's /24s of one /16 is churn
    /// (low) only if the key itself acquired one of them this recently.
    pub roaming_expiry: HumanDuration,
    /// A new network alone is a finding only on a key that has shown new
    /// networks are rarer than this for it ([`Novelty::upper`]: its share
    /// of days with a new network, counting one more). On any other key it
    /// is held until the network does something the key does not: 0 holds
    /// every new network, 1 none. The same share holds a new client
    /// (`new_user_agent`) and, on keys whose days have brought new actions
    /// this often, a new action (`new_action`): see
    /// [`hold`](super::hold).
    ///
    /// [`Novelty::upper`]: crate::engine::state::Novelty::upper
    pub alone_below: f64,
    /// How long a held first (a network, a client, actions) waits for
    /// corroboration.
    pub corroborate_within: HumanDuration,
    /// A key that has not acquired a network for this long is judged on a
    /// new network alone, however few its active days (a weekly job on its
    /// one network for a month).
    pub alone_after: HumanDuration,
}

/// About one day in seven. Keys that meet new networks as a matter of
/// course (a mobile carrier, a VPN pool, serverless workers) measure
/// 0.6-1.0; a service on its few networks stays under 0.02 and a person
/// between home, office and an occasional cafe at 0.02-0.1, judged at
/// medium or low. Chosen by the evaluation's own rule, leaving each kind of
/// key out in turn: on the independent fleets (`benches/fleets`, tuning
/// seeds 1-3) 0.3, 0.2 and 0.15 gave 92, 77 and 73 false positives a fleet
/// with the same recall, whichever kind was left out. The door: a key that
/// meets a new network on one day in seven or more is not judged on a new
/// /24 (only on a new /16, and by the other detectors).
fn default_expected_novelty() -> f64 {
    0.15
}

/// Two weeks: longer than the gap between a travelling person's trips, far
/// shorter than "for good".
fn default_roaming_expiry() -> HumanDuration {
    HumanDuration::days(14)
}

/// One in fifteen. A key used every day (or every weekday) for a month
/// without meeting a new network measures 1/24 (1/18) and is judged on a
/// new network alone; a key a week old (1/10), or one that met a new
/// network on one of its last 20 days (2/23), has not shown that a new
/// network is news for it, and its new network waits for corroboration.
fn default_alone_below() -> f64 {
    0.066
}

/// An hour: a thief's first session from a new network makes calls the key
/// does not within minutes (the evaluation's: 1 to 4); a person's cafe
/// session is over in one.
fn default_corroborate_within() -> HumanDuration {
    HumanDuration::secs(3600)
}

/// As long as a key remembers networks (`engine.forget_after`'s default):
/// the key's whole memory shows no new network.
fn default_alone_after() -> HumanDuration {
    HumanDuration::days(30)
}

impl Default for NewSourceConfig {
    fn default() -> Self {
        NewSourceConfig {
            enabled: true,
            expected_novelty: default_expected_novelty(),
            roaming_expiry: default_roaming_expiry(),
            alone_below: default_alone_below(),
            corroborate_within: default_corroborate_within(),
            alone_after: default_alone_after(),
        }
    }
}

impl NewSourceConfig {
    /// Checks the section's values; an error names the key and its value.
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        let n = self.expected_novelty;
        if !(n > 0.0 && n <= 1.0) {
            return Err(invalid(
                &format!("{section}.expected_novelty"),
                n,
                "must be a share of days above 0 and at most 1 (1: only keys that meet a new network every day are quiet)",
            ));
        }
        let a = self.alone_below;
        if !(0.0..=1.0).contains(&a) {
            return Err(invalid(
                &format!("{section}.alone_below"),
                a,
                "must be a share of days from 0 (hold every new network for corroboration) to 1 (never)",
            ));
        }
        if self.corroborate_within.as_secs_u32() == 0 {
            return Err(invalid(
                &format!("{section}.corroborate_within"),
                self.corroborate_within,
                "must be longer than zero (alone_below = 0 holds every new network; this is how long)",
            ));
        }
        Ok(())
    }
}

/// Below this share of days bringing a new network, a new one is high.
pub const HIGH_BELOW: f32 = 0.03;
/// Below this share (and from [`HIGH_BELOW`]), medium; above it, low.
pub const MEDIUM_BELOW: f32 = 0.10;

/// The severity a new network deserves on a key whose recent days brought
/// one at `rate`; `None` when new networks are what the key does
/// ([`habitual`]).
pub fn surprise(rate: f32, expected: f64) -> Option<Severity> {
    if habitual(rate, expected) {
        None
    } else if rate < HIGH_BELOW {
        Some(Severity::High)
    } else if rate < MEDIUM_BELOW {
        Some(Severity::Medium)
    } else {
        Some(Severity::Low)
    }
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
    let days = state.novelty.days();
    // A key that meets new networks by nature is still judged on a wider
    // network (/16, /48) it has not used, by how often it meets those: a
    // key churning through the /24s of its provider's few /16s does not
    // churn through the world.
    let levels = [(Novel::Network, true), (Novel::Wide, !facts.wide_known)];
    let (mut rate, mut level) = (0.0, Novel::Network);
    let mut by_rate = None;
    for (kind, new) in levels {
        if !new || (kind != Novel::Network && id.is_named()) {
            break;
        }
        (rate, level) = (state.novelty.rate(kind), kind);
        by_rate = surprise(rate, cfg.expected_novelty);
        if by_rate.is_some() {
            break;
        }
    }
    // A key that only ever ran in cloud ranges and now leaves them (or its
    // cloud label) is judged however often it meets new networks.
    let leaves =
        located.is_some_and(|(_, _, info)| !id.is_named() && leaves_cloud(state, ctx, info));
    let Some(mut severity) = by_rate.or(leaves.then_some(Severity::Low)) else {
        return;
    };
    let (known, churn) = state
        .sources
        .summary_and_churn(id, now, forget_s, state.first_seen);
    if known.networks == 0 {
        return;
    }
    let expiry = cfg.roaming_expiry.as_secs_u32();
    let pool_churn = churn.siblings >= 2
        && churn.last_acquired > 0
        && now.saturating_sub(churn.last_acquired) < expiry;
    let quiet_for = now.saturating_sub(known.newest_first_seen);
    let mut rules: Vec<&'static str> = Vec::new();
    if by_rate.is_none() {
        rules.push("novelty_expected_but_leaves_cloud");
    }
    let wide = level == Novel::Wide;
    if wide {
        rules.push("new_wider_network");
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
    } else if !id.is_v4() && churn.siblings > 0 {
        // A /48 is one site's allocation (RFC 6177): a new /56 inside one
        // the key uses is its own site renumbering or a new subnet of it.
        rules.push("same_ipv6_site");
        severity = Severity::Low;
    } else if churn.siblings > 0 {
        rules.push("same_wider_network");
        severity = severity.min(Severity::Medium);
    }
    // The key leaving its cloud ranges, or a place it never used (by
    // netintel), is news on its own: it is raised without waiting.
    let mut placed = leaves;
    if let Some((tables, ip, info)) = located.filter(|_| !id.is_named()) {
        match judge(state, tables, *ip, info, ctx) {
            Some(Judged::CloudPool) => return,
            // Never above what the network rules allow for churn within a
            // provider's pool, never below what the owner says otherwise.
            Some(Judged::Rated(s, rule)) => {
                placed |= PLACED.contains(&rule);
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
    let share = share_text(rate, days);
    let (what, noun) = if wide {
        (
            format!("a wider network ({}) it has not used", id.wide_display()),
            "wider network",
        )
    } else {
        ("a network it has not used".to_owned(), "network")
    };
    let summary = format!(
        "{} was used from {source} ({network}), {what} in {}; it normally uses {} network{} ({}) and met a new {noun} {share}.",
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
            "networks": networks,
            "new_network_days_share": round3(state.novelty.rate(Novel::Network)),
            "new_wider_network_days_share": round3(state.novelty.rate(Novel::Wide)),
            "active_days_weighed": (days as f64 * 10.0).round() / 10.0,
            "no_new_network_for_s": quiet_for,
            "same_wider_networks": churn.siblings,
        }),
        threshold: json!({
            "forget_after_s": forget_s,
            "expected_novelty": cfg.expected_novelty,
            "high_below": HIGH_BELOW,
            "medium_below": MEDIUM_BELOW,
            "roaming_expiry_s": expiry,
        }),
    };
    let upper = state.novelty.upper(level);
    let acquired_for = now.saturating_sub(known.last_acquired());
    let alone = judged_alone(cfg, upper, acquired_for);
    let mut report = report;
    report.baseline["new_network_days_share_upper"] = json!(round3(upper));
    report.threshold["alone_below"] = json!(cfg.alone_below);
    report.threshold["alone_after_s"] = json!(cfg.alone_after.as_secs_u32());
    match hold::corroboration(state, ctx, hold::NETWORK) {
        Some(c) => {
            hold::corroborated(&mut report, &c, 0, "From it");
            ctx.emit(state, Detector::NewSource, 0, report);
        }
        None if alone || placed => ctx.emit(state, Detector::NewSource, 0, report),
        None => {
            let gathered = u16::from(hold::new_action_called(state, ctx).is_some());
            hold::hold(state, ctx, HeldOn::Network(id), gathered, report)
        }
    }
}

/// Whether a new network alone is a finding on a key whose share of days
/// bringing one, counting one more, is `upper` ([`Novelty::upper`]), and
/// which acquired its newest network (a fan-out's included) `acquired_for`
/// seconds ago. Otherwise it is held for corroboration.
///
/// [`Novelty::upper`]: crate::engine::state::Novelty::upper
pub fn judged_alone(cfg: &NewSourceConfig, upper: f32, acquired_for: u32) -> bool {
    f64::from(upper) < cfg.alone_below || acquired_for >= cfg.alone_after.as_secs_u32()
}

/// Rules of netintel's [`judge`] that name a place the key never used:
/// corroboration enough.
const PLACED: [&str; 4] = [
    "new_country",
    "hosting_vpn_or_tor",
    "outside_cloud",
    "new_cloud_region",
];
