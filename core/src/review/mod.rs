//! The key security review: every key classified by system, privilege and
//! age; stale keys (valid but unused); rotation overdue; expired keys still
//! in use; unknown keys seen in traffic; keys allowed actions they never use
//! (least-privilege candidates); the keys with the most findings; all ranked
//! by risk, each rank with its reasons.
//!
//! [`review`] is a pure function of the engine's state, the inventory, the
//! period's findings and the time of the review ([`ReviewInput`]), so
//! `keywatch review` (over replayed events), the daemon's API and a
//! checkpoint file can all feed it. Its serde form is the JSON for machines;
//! [`Review::to_markdown`] is the report for people. [`status`] counts the
//! same classification for the inventory metrics.

mod markdown;

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::config::{Entity, InventoryConfig};
use crate::engine::detect::DAY;
use crate::engine::state::{Secs, ValueKind};
use crate::engine::{Detector, Engine, Finding, Severity};
use crate::inventory::{Inventory, KeyEntry, Privilege};
use crate::metrics::Metrics;

/// How many keys "keys with the most findings" lists.
const MOST_FINDINGS: usize = 20;

/// The review's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// A valid key unused this long is stale, seconds.
    pub stale_after_s: u32,
    /// A key not rotated (or created) within this long is overdue, seconds.
    pub rotation_after_s: u32,
}

impl Thresholds {
    /// The thresholds `[inventory]` configures.
    pub fn from_config(cfg: &InventoryConfig) -> Thresholds {
        Thresholds {
            stale_after_s: cfg.stale_after.as_secs_u32(),
            rotation_after_s: cfg.rotation_after.as_secs_u32(),
        }
    }
}

/// Everything a review is made from.
pub struct ReviewInput<'a> {
    /// Per-key state: what traffic showed of each key.
    pub engine: &'a Engine,
    /// The known keys.
    pub inventory: &'a Inventory,
    /// The findings of the period reviewed.
    pub findings: &'a [Finding],
    /// The time of the review (for recorded events, the newest event's time).
    pub now: Secs,
    /// Since when the engine has watched traffic: a listed key it never saw
    /// is known to be unused since then (or since its creation, if later).
    /// `None`: nothing is known of unseen keys' use.
    pub observed_since: Option<Secs>,
    /// Stale and rotation thresholds.
    pub thresholds: Thresholds,
}

/// The review, ready to serialise as JSON or render as Markdown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Review {
    /// Time of the review (RFC 3339).
    pub generated_at: String,
    /// Start of the traffic observed (RFC 3339), if any.
    pub observed_since: Option<String>,
    /// Days unused after which a valid key is stale.
    pub stale_after_days: u32,
    /// Days after which a key is due for rotation.
    pub rotation_after_days: u32,
    /// Counts of each list.
    pub summary: Summary,
    /// Keys with any risk, highest first, with the reasons.
    pub ranked: Vec<Ranked>,
    /// Keys used at or after their expiry.
    pub expired_in_use: Vec<ExpiredInUse>,
    /// Keys seen in traffic that the inventory does not list.
    pub unknown: Vec<UnknownKey>,
    /// Valid keys unused for at least `stale_after_days`.
    pub stale: Vec<Stale>,
    /// Valid keys not rotated within `rotation_after_days`.
    pub rotation_overdue: Vec<RotationOverdue>,
    /// Keys allowed actions they never used in the period.
    pub least_privilege: Vec<LeastPrivilege>,
    /// The keys with the most findings, most first.
    pub most_findings: Vec<MostFindings>,
    /// Listed keys counted by system, privilege and age.
    pub classification: Vec<ClassRow>,
    /// Every key, listed or seen.
    pub keys: Vec<KeyRow>,
    /// Keys a responder confirmed compromised (a `confirmed` verdict on one
    /// of their findings, not resolved since), from the findings store;
    /// absent when the review was made without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compromised: Option<Vec<CompromisedKey>>,
}

/// A key confirmed compromised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompromisedKey {
    /// The key.
    pub key_id: String,
    /// Its owner, when the inventory lists it.
    pub owner: Option<String>,
    /// Its system, when the inventory lists it.
    pub system: Option<String>,
    /// Whether the inventory lists it.
    pub listed: bool,
}

impl Review {
    /// Adds the keys confirmed compromised (from the findings store), with
    /// what the inventory says of each.
    pub fn with_compromised(mut self, keys: Vec<String>) -> Review {
        let rows: HashMap<&str, &KeyRow> =
            self.keys.iter().map(|k| (k.key_id.as_str(), k)).collect();
        let list = keys
            .into_iter()
            .map(|key_id| {
                let row = rows.get(key_id.as_str());
                CompromisedKey {
                    owner: row.and_then(|r| r.owner.clone()),
                    system: row.and_then(|r| r.system.clone()),
                    listed: row.is_some_and(|r| r.listed),
                    key_id,
                }
            })
            .collect();
        self.compromised = Some(list);
        self
    }
}

/// How many keys each list holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Keys in the inventory.
    pub listed: usize,
    /// Keys seen in traffic (listed or not).
    pub seen: usize,
    /// Unknown keys seen.
    pub unknown: usize,
    /// Expired keys still in use.
    pub expired_in_use: usize,
    /// Stale keys.
    pub stale: usize,
    /// Keys overdue for rotation.
    pub rotation_overdue: usize,
    /// Least-privilege candidates.
    pub least_privilege: usize,
    /// Findings in the period.
    pub findings: usize,
}

/// One key's place in the risk ranking.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ranked {
    /// 1 is the riskiest.
    pub rank: usize,
    /// The key.
    pub key_id: String,
    /// Its owner, if listed.
    pub owner: Option<String>,
    /// The score: the reasons' points times the privilege factor.
    pub risk: u32,
    /// Why, one phrase per reason, with its points.
    pub reasons: Vec<String>,
}

/// A key used at or after its expiry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpiredInUse {
    /// The key.
    pub key_id: String,
    /// Its owner.
    pub owner: String,
    /// Its system.
    pub system: Option<String>,
    /// When it expired.
    pub expires: String,
    /// Its latest use.
    pub last_used: String,
    /// Days between expiry and that use.
    pub days_after_expiry: u32,
}

/// A key seen in traffic that the inventory does not list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnknownKey {
    /// The key.
    pub key_id: String,
    /// First use seen.
    pub first_seen: String,
    /// Latest use seen.
    pub last_seen: String,
    /// Uses seen.
    pub uses: u64,
    /// Distinct source addresses remembered.
    pub sources: usize,
    /// Findings in the period.
    pub findings: u32,
}

/// A valid key unused for at least the stale threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stale {
    /// The key.
    pub key_id: String,
    /// Its owner.
    pub owner: String,
    /// Its system.
    pub system: Option<String>,
    /// Its privilege.
    pub privilege: Option<Privilege>,
    /// Its latest known use; `None`: never used while observed.
    pub last_used: Option<String>,
    /// Days since that use (or since observation or creation began).
    pub unused_days: u32,
    /// Where the latest use is known from: `traffic`, `inventory`, or `never_seen`.
    pub basis: &'static str,
    /// Its expiry, if any: how long it stays a liability.
    pub expires: Option<String>,
}

/// A valid key not rotated within the rotation threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RotationOverdue {
    /// The key.
    pub key_id: String,
    /// Its owner.
    pub owner: String,
    /// Its system.
    pub system: Option<String>,
    /// Its privilege.
    pub privilege: Option<Privilege>,
    /// When it was last rotated (or created).
    pub rotated: String,
    /// `last_rotated` or `created`.
    pub basis: &'static str,
    /// Days since then.
    pub days_since: u32,
    /// Days past the threshold.
    pub overdue_days: u32,
}

/// A key allowed actions it never used: a candidate for narrower scope.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeastPrivilege {
    /// The key.
    pub key_id: String,
    /// Its owner.
    pub owner: String,
    /// Its system.
    pub system: Option<String>,
    /// Every allowed pattern.
    pub allowed_actions: Vec<String>,
    /// The patterns no use matched.
    pub never_used: Vec<String>,
}

/// A key's findings in the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MostFindings {
    /// The key.
    pub key_id: String,
    /// Its owner, if listed.
    pub owner: Option<String>,
    /// Findings in all.
    pub findings: u32,
    /// By severity.
    pub by_severity: BTreeMap<Severity, u32>,
    /// By detector.
    pub by_detector: BTreeMap<Detector, u32>,
}

/// Listed keys of one system and privilege, by age since creation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassRow {
    /// The system (`-` when the entry names none).
    pub system: String,
    /// The privilege (`unspecified` when the entry names none).
    pub privilege: String,
    /// Counts by age.
    pub by_age: ByAge,
    /// All of them.
    pub total: u64,
}

/// Key counts by age since creation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ByAge {
    /// Created less than 30 days ago.
    pub lt_30d: u64,
    /// 30 to 90 days.
    #[serde(rename = "30d_90d")]
    pub d30_90: u64,
    /// 90 days to a year.
    #[serde(rename = "90d_1y")]
    pub d90_1y: u64,
    /// A year or more.
    pub ge_1y: u64,
    /// No creation date.
    pub unknown: u64,
}

impl ByAge {
    /// Bucket labels, as in metrics and JSON, youngest first.
    pub const LABELS: [&'static str; 5] = ["lt_30d", "30d_90d", "90d_1y", "ge_1y", "unknown"];

    /// The counts in [`ByAge::LABELS`] order.
    pub fn counts(&self) -> [u64; 5] {
        [
            self.lt_30d,
            self.d30_90,
            self.d90_1y,
            self.ge_1y,
            self.unknown,
        ]
    }

    fn add(&mut self, age_days: Option<u32>) {
        let slot = match age_days {
            None => &mut self.unknown,
            Some(d) if d < 30 => &mut self.lt_30d,
            Some(d) if d < 90 => &mut self.d30_90,
            Some(d) if d < 365 => &mut self.d90_1y,
            Some(_) => &mut self.ge_1y,
        };
        *slot += 1;
    }
}

/// One key, listed or seen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyRow {
    /// The key.
    pub key_id: String,
    /// Whether the inventory lists it.
    pub listed: bool,
    /// Owner.
    pub owner: Option<String>,
    /// Team.
    pub team: Option<String>,
    /// System.
    pub system: Option<String>,
    /// Privilege.
    pub privilege: Option<Privilege>,
    /// Created (RFC 3339).
    pub created: Option<String>,
    /// Days since creation.
    pub age_days: Option<u32>,
    /// Expiry (RFC 3339).
    pub expires: Option<String>,
    /// Last rotation (RFC 3339).
    pub last_rotated: Option<String>,
    /// Latest known use (RFC 3339).
    pub last_used: Option<String>,
    /// Distinct source addresses remembered.
    pub sources: usize,
    /// Uses seen in traffic.
    pub uses: u64,
    /// Findings in the period.
    pub findings: u32,
    /// Every list the key is on: `unknown`, `expired`, `expired_in_use`,
    /// `stale`, `rotation_overdue`, `least_privilege`.
    pub status: Vec<&'static str>,
    /// Risk score (see [`Ranked`]).
    pub risk: u32,
}

/// What traffic showed of one key.
struct Traffic {
    first_seen: Secs,
    last_seen: Secs,
    uses: u64,
    sources: usize,
    used_actions: bool,
}

fn traffic(engine: &Engine, key_id: &str) -> Option<Traffic> {
    engine.with_key(Entity::KeyId, key_id, |s| Traffic {
        first_seen: s.first_seen,
        last_seen: s.last_seen,
        uses: s.events as u64,
        sources: s.sources.entries().len(),
        used_actions: s.values.fresh_len(ValueKind::Action, s.last_seen, u32::MAX) > 0,
    })
}

/// One listed key judged against the thresholds.
struct Judgement {
    last_use: Option<(Secs, &'static str)>,
    age_days: Option<u32>,
    expired: bool,
    /// Days unused, and where the last use is known from.
    stale: Option<(u32, &'static str)>,
    /// Last rotation (or creation), its basis, days since.
    overdue: Option<(Secs, &'static str, u32)>,
    /// Days between expiry and the latest use.
    expired_in_use: Option<u32>,
}

fn days(s: u32) -> u32 {
    s / DAY
}

fn judge(entry: &KeyEntry, seen: Option<&Traffic>, input: &ReviewInput<'_>) -> Judgement {
    let now = input.now;
    let t = &input.thresholds;
    let last_use = [
        seen.map(|s| (s.last_seen, "traffic")),
        entry.last_used.map(|u| (u, "inventory")),
    ]
    .into_iter()
    .flatten()
    .max_by_key(|u| u.0);
    let expired = entry.expired_at(now);
    let idle_since = match last_use {
        Some((t, basis)) => Some((t, basis)),
        None => input
            .observed_since
            .map(|o| (entry.created.map_or(o, |c| c.max(o)), "never_seen")),
    };
    let stale = idle_since
        .map(|(since, basis)| (now.saturating_sub(since), basis))
        .filter(|&(idle, _)| !expired && idle >= t.stale_after_s)
        .map(|(idle, basis)| (days(idle), basis));
    let overdue = [
        entry.last_rotated.map(|r| (r, "last_rotated")),
        entry.created.map(|c| (c, "created")),
    ]
    .into_iter()
    .flatten()
    .next()
    .map(|(r, basis)| (r, basis, now.saturating_sub(r)))
    .filter(|&(_, _, since)| !expired && since >= t.rotation_after_s)
    .map(|(r, basis, since)| (r, basis, days(since)));
    let expired_in_use = match (entry.expires, last_use) {
        (Some(e), Some((used, _))) if expired && used >= e => Some(days(used - e)),
        _ => None,
    };
    Judgement {
        last_use,
        age_days: entry.created.map(|c| days(now.saturating_sub(c))),
        expired,
        stale,
        overdue,
        expired_in_use,
    }
}

/// Findings of one key in the period.
#[derive(Default)]
struct Tally {
    total: u32,
    by_severity: BTreeMap<Severity, u32>,
    by_detector: BTreeMap<Detector, u32>,
}

fn tally(findings: &[Finding]) -> HashMap<&str, Tally> {
    let mut by_key: HashMap<&str, Tally> = HashMap::new();
    for f in findings {
        let t = by_key.entry(f.key_id.as_str()).or_default();
        t.total += 1;
        *t.by_severity.entry(f.severity).or_default() += 1;
        *t.by_detector.entry(f.detector).or_default() += 1;
    }
    by_key
}

/// Risk points, and the reasons that earned them.
#[derive(Default)]
struct Risk {
    points: u32,
    reasons: Vec<String>,
}

impl Risk {
    fn add(&mut self, points: u32, reason: String) {
        self.points += points;
        self.reasons.push(format!("{reason} (+{points})"));
    }

    fn findings(&mut self, t: &Tally) {
        let points: u32 = t
            .by_severity
            .iter()
            .map(|(s, n)| {
                n * match s {
                    Severity::Critical => 25,
                    Severity::High => 10,
                    Severity::Medium => 4,
                    Severity::Low => 1,
                    Severity::Info => 0,
                }
            })
            .sum();
        let detail: Vec<String> = t
            .by_severity
            .iter()
            .rev()
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        // One noisy key should not outrank every policy breach: findings count up to 50.
        let noun = if t.total == 1 { "finding" } else { "findings" };
        self.add(
            points.min(50),
            format!("{} {noun} ({})", t.total, detail.join(", ")),
        );
    }

    /// The score: points times the privilege factor (admin ×3, write or
    /// unstated ×2, read ×1).
    fn score(mut self, privilege: Option<Privilege>) -> (u32, Vec<String>) {
        if self.points == 0 {
            return (0, Vec::new());
        }
        let (factor, why) = match privilege {
            Some(Privilege::Admin) => (3, "admin privilege"),
            Some(Privilege::Read) => (1, "read privilege"),
            Some(Privilege::Write) => (2, "write privilege"),
            None => (2, "privilege not stated"),
        };
        self.reasons.push(format!("×{factor} for {why}"));
        (self.points * factor, self.reasons)
    }
}

/// Builds the review.
pub fn review(input: &ReviewInput<'_>) -> Review {
    let mut b = Builder::new(input);
    for entry in input.inventory.entries() {
        b.listed(entry);
    }
    let mut unknown = Vec::new();
    input.engine.for_each_key(Entity::KeyId, |key, _| {
        if input.inventory.get(key).is_none() {
            unknown.push(key.to_owned());
        }
    });
    unknown.sort();
    for key in unknown {
        b.unknown(key);
    }
    b.finish()
}

fn date(t: Secs) -> String {
    crate::decode::time::format_rfc3339(t as i64 * 1000)
}

/// A review in the making: one key at a time, then sorted and ranked.
struct Builder<'a> {
    input: &'a ReviewInput<'a>,
    tallies: HashMap<&'a str, Tally>,
    classes: BTreeMap<(String, String), ByAge>,
    /// Risk, key, owner, reasons.
    risks: Vec<(u32, String, Option<String>, Vec<String>)>,
    out: Review,
}

impl<'a> Builder<'a> {
    fn new(input: &'a ReviewInput<'a>) -> Builder<'a> {
        Builder {
            input,
            tallies: tally(input.findings),
            classes: BTreeMap::new(),
            risks: Vec::new(),
            out: Review {
                generated_at: date(input.now),
                observed_since: input.observed_since.map(date),
                stale_after_days: days(input.thresholds.stale_after_s),
                rotation_after_days: days(input.thresholds.rotation_after_s),
                summary: Summary {
                    listed: input.inventory.len(),
                    findings: input.findings.len(),
                    ..Summary::default()
                },
                ranked: Vec::new(),
                expired_in_use: Vec::new(),
                unknown: Vec::new(),
                stale: Vec::new(),
                rotation_overdue: Vec::new(),
                least_privilege: Vec::new(),
                most_findings: Vec::new(),
                classification: Vec::new(),
                keys: Vec::new(),
                compromised: None,
            },
        }
    }

    /// Judges a listed key and puts it on every list it belongs to.
    fn listed(&mut self, entry: &KeyEntry) {
        let key = entry.key_id.as_str();
        let owner = entry.owner.to_string();
        let system = entry.system.as_deref().map(str::to_owned);
        let seen = traffic(self.input.engine, key);
        let j = judge(entry, seen.as_ref(), self.input);
        let out = &mut self.out;
        let mut status = Vec::new();
        let mut risk = Risk::default();
        if j.expired {
            status.push("expired");
        }
        if let (Some(after), Some(expires), Some((used, _))) =
            (j.expired_in_use, entry.expires, j.last_use)
        {
            status.push("expired_in_use");
            risk.add(
                40,
                format!("expired {}, used {after}d after", &date(expires)[..10]),
            );
            out.expired_in_use.push(ExpiredInUse {
                key_id: key.to_owned(),
                owner: owner.clone(),
                system: system.clone(),
                expires: date(expires),
                last_used: date(used),
                days_after_expiry: after,
            });
        }
        if let Some((unused_days, basis)) = j.stale {
            status.push("stale");
            risk.add(15, format!("valid but unused for {unused_days}d"));
            out.stale.push(Stale {
                key_id: key.to_owned(),
                owner: owner.clone(),
                system: system.clone(),
                privilege: entry.privilege,
                last_used: j.last_use.map(|(t, _)| date(t)),
                unused_days,
                basis,
                expires: entry.expires.map(date),
            });
        }
        if let Some((rotated, basis, days_since)) = j.overdue {
            status.push("rotation_overdue");
            let overdue_days = days_since - out.rotation_after_days;
            risk.add(
                10,
                format!(
                    "rotation {overdue_days}d overdue ({basis} {})",
                    &date(rotated)[..10]
                ),
            );
            out.rotation_overdue.push(RotationOverdue {
                key_id: key.to_owned(),
                owner: owner.clone(),
                system: system.clone(),
                privilege: entry.privilege,
                rotated: date(rotated),
                basis,
                days_since,
                overdue_days,
            });
        }
        if let Some(never_used) = unused_patterns(entry, seen.as_ref(), self.input.engine) {
            status.push("least_privilege");
            let allowed: Vec<String> = entry
                .allowed_actions
                .iter()
                .flat_map(|p| p.iter())
                .map(|p| p.as_str().to_owned())
                .collect();
            risk.add(
                5,
                format!(
                    "{} of {} allowed action patterns never used",
                    never_used.len(),
                    allowed.len()
                ),
            );
            out.least_privilege.push(LeastPrivilege {
                key_id: key.to_owned(),
                owner: owner.clone(),
                system: system.clone(),
                allowed_actions: allowed,
                never_used,
            });
        }
        let found = self.tallies.get(key);
        if let Some(t) = found {
            risk.findings(t);
        }
        let (score, reasons) = risk.score(entry.privilege);
        if score > 0 {
            self.risks
                .push((score, key.to_owned(), Some(owner.clone()), reasons));
        }
        let privilege = entry.privilege.map_or("unspecified", Privilege::as_str);
        self.classes
            .entry((
                system.clone().unwrap_or_else(|| "-".to_owned()),
                privilege.to_owned(),
            ))
            .or_default()
            .add(j.age_days);
        out.summary.seen += usize::from(seen.is_some());
        out.keys.push(KeyRow {
            key_id: key.to_owned(),
            listed: true,
            owner: Some(owner),
            team: entry.team.as_deref().map(str::to_owned),
            system,
            privilege: entry.privilege,
            created: entry.created.map(date),
            age_days: j.age_days,
            expires: entry.expires.map(date),
            last_rotated: entry.last_rotated.map(date),
            last_used: j.last_use.map(|(t, _)| date(t)),
            sources: seen.as_ref().map_or(0, |s| s.sources),
            uses: seen.as_ref().map_or(0, |s| s.uses),
            findings: found.map_or(0, |t| t.total),
            status,
            risk: score,
        });
    }

    /// Lists a key seen in traffic that the inventory does not list.
    fn unknown(&mut self, key: String) {
        let Some(seen) = traffic(self.input.engine, &key) else {
            return;
        };
        let found = self.tallies.get(key.as_str());
        let mut risk = Risk::default();
        let plural = if seen.uses == 1 { "" } else { "s" };
        risk.add(
            30,
            format!("not in the inventory, used {} time{plural}", seen.uses),
        );
        if let Some(t) = found {
            risk.findings(t);
        }
        let (score, reasons) = risk.score(None);
        self.risks.push((score, key.clone(), None, reasons));
        let out = &mut self.out;
        out.summary.seen += 1;
        out.unknown.push(UnknownKey {
            key_id: key.clone(),
            first_seen: date(seen.first_seen),
            last_seen: date(seen.last_seen),
            uses: seen.uses,
            sources: seen.sources,
            findings: found.map_or(0, |t| t.total),
        });
        out.keys.push(KeyRow {
            key_id: key,
            listed: false,
            owner: None,
            team: None,
            system: None,
            privilege: None,
            created: None,
            age_days: None,
            expires: None,
            last_rotated: None,
            last_used: Some(date(seen.last_seen)),
            sources: seen.sources,
            uses: seen.uses,
            findings: found.map_or(0, |t| t.total),
            status: vec!["unknown"],
            risk: score,
        });
    }

    /// Ranks, sorts every list worst first, and counts.
    fn finish(mut self) -> Review {
        let out = &mut self.out;
        self.risks
            .sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        out.ranked = self
            .risks
            .into_iter()
            .enumerate()
            .map(|(i, (risk, key_id, owner, reasons))| Ranked {
                rank: i + 1,
                key_id,
                owner,
                risk,
                reasons,
            })
            .collect();
        out.expired_in_use.sort_by(|a, b| {
            (b.days_after_expiry, &a.key_id).cmp(&(a.days_after_expiry, &b.key_id))
        });
        out.unknown
            .sort_by(|a, b| (b.uses, &a.key_id).cmp(&(a.uses, &b.key_id)));
        out.stale
            .sort_by(|a, b| (b.unused_days, &a.key_id).cmp(&(a.unused_days, &b.key_id)));
        out.rotation_overdue
            .sort_by(|a, b| (b.overdue_days, &a.key_id).cmp(&(a.overdue_days, &b.key_id)));
        out.least_privilege
            .sort_by(|a, b| (b.never_used.len(), &a.key_id).cmp(&(a.never_used.len(), &b.key_id)));
        let mut most: Vec<(&str, &Tally)> = self.tallies.iter().map(|(k, t)| (*k, t)).collect();
        most.sort_by(|a, b| (b.1.total, a.0).cmp(&(a.1.total, b.0)));
        let inventory = self.input.inventory;
        out.most_findings = most
            .into_iter()
            .take(MOST_FINDINGS)
            .map(|(key, t)| MostFindings {
                key_id: key.to_owned(),
                owner: inventory.get(key).map(|e| e.owner.to_string()),
                findings: t.total,
                by_severity: t.by_severity.clone(),
                by_detector: t.by_detector.clone(),
            })
            .collect();
        out.classification = std::mem::take(&mut self.classes)
            .into_iter()
            .map(|((system, privilege), by_age)| ClassRow {
                system,
                privilege,
                total: by_age.counts().iter().sum(),
                by_age,
            })
            .collect();
        out.keys.sort_by(|a, b| {
            (!a.listed, &a.system, &a.key_id).cmp(&(!b.listed, &b.system, &b.key_id))
        });
        out.summary.unknown = out.unknown.len();
        out.summary.expired_in_use = out.expired_in_use.len();
        out.summary.stale = out.stale.len();
        out.summary.rotation_overdue = out.rotation_overdue.len();
        out.summary.least_privilege = out.least_privilege.len();
        self.out
    }
}

/// The allowed-action patterns a key seen using actions never matched;
/// `None` when it has none to report.
fn unused_patterns(
    entry: &KeyEntry,
    seen: Option<&Traffic>,
    engine: &Engine,
) -> Option<Vec<String>> {
    let patterns = entry.allowed_actions.as_ref()?;
    if !seen?.used_actions {
        return None;
    }
    let used = engine
        .policy()?
        .usage(&entry.key_id)
        .map(|u| u.patterns_used)
        .unwrap_or_default();
    let never: Vec<String> = patterns
        .iter()
        .filter(|p| !used.contains(&p.id()))
        .map(|p| p.as_str().to_owned())
        .collect();
    (!never.is_empty()).then_some(never)
}

/// Keys by inventory status, privilege and age: what the inventory metrics show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InventoryStatus {
    /// Listed keys.
    pub known: u64,
    /// Keys seen in traffic and not listed.
    pub unknown: u64,
    /// Listed keys past their expiry.
    pub expired: u64,
    /// Listed keys valid but unused past the stale threshold.
    pub stale: u64,
    /// Listed keys valid and due for rotation.
    pub rotation_overdue: u64,
    /// Listed keys by privilege: read, write, admin, unspecified.
    pub by_privilege: [u64; 4],
    /// Listed keys by age since creation.
    pub by_age: ByAge,
}

/// Counts the review's classification without building the report (for
/// metrics, refreshed periodically by the daemon). `input.findings` is not read.
pub fn status(input: &ReviewInput<'_>) -> InventoryStatus {
    let mut s = InventoryStatus::default();
    for entry in input.inventory.entries() {
        let seen = traffic(input.engine, &entry.key_id);
        let j = judge(entry, seen.as_ref(), input);
        s.known += 1;
        s.expired += u64::from(j.expired);
        s.stale += u64::from(j.stale.is_some());
        s.rotation_overdue += u64::from(j.overdue.is_some());
        let slot = match entry.privilege {
            Some(Privilege::Read) => 0,
            Some(Privilege::Write) => 1,
            Some(Privilege::Admin) => 2,
            None => 3,
        };
        s.by_privilege[slot] += 1;
        s.by_age.add(j.age_days);
    }
    input.engine.for_each_key(Entity::KeyId, |key, _| {
        s.unknown += u64::from(input.inventory.get(key).is_none());
    });
    s
}

impl InventoryStatus {
    /// Sets the `keywatch_inventory_keys*` gauges.
    pub fn export(&self, m: &Metrics) {
        for (status, n) in [
            ("known", self.known),
            ("unknown", self.unknown),
            ("expired", self.expired),
            ("stale", self.stale),
            ("rotation_overdue", self.rotation_overdue),
        ] {
            m.inventory_keys.with_label_values(&[status]).set(n as i64);
        }
        for (label, n) in ["read", "write", "admin", "unspecified"]
            .into_iter()
            .zip(self.by_privilege)
        {
            m.inventory_keys_by_privilege
                .with_label_values(&[label])
                .set(n as i64);
        }
        for (label, n) in ByAge::LABELS.into_iter().zip(self.by_age.counts()) {
            m.inventory_keys_by_age
                .with_label_values(&[label])
                .set(n as i64);
        }
    }
}

#[cfg(test)]
mod tests;
