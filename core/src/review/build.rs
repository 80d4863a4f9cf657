//! Building the review: every listed key judged and placed on its lists,
//! unknown keys added, then everything sorted and ranked by risk.

use std::collections::{BTreeMap, HashMap};

use super::input::ReviewInput;
use super::judge::{days, judge, tally, traffic, Risk, Tally, Traffic};
use super::report::*;
use crate::config::Entity;
use crate::engine::state::Secs;
use crate::engine::Engine;
use crate::inventory::{KeyEntry, Privilege};

/// How many keys "keys with the most findings" lists.
const MOST_FINDINGS: usize = 20;

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
        if entry.disabled {
            status.push("disabled");
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
