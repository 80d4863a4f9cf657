//! The review as it is serialised and rendered: its lists and their rows.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::engine::{Detector, Severity};
use crate::inventory::Privilege;

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
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
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

    pub(super) fn add(&mut self, age_days: Option<u32>) {
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
    /// Every list the key is on: `unknown`, `expired`, `disabled`, `expired_in_use`,
    /// `stale`, `rotation_overdue`, `least_privilege`.
    pub status: Vec<&'static str>,
    /// Risk score (see [`Ranked`]).
    pub risk: u32,
}
