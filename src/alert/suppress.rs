//! Suppression rules: from the configuration file at start, added and
//! removed at run time (the HTTP API), each with an optional expiry.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};
use wildmatch::WildMatch;

use super::config::{Suppression, Timestamp};
use keywatch_core::engine::Finding;

/// Where a rule came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// `[[alerts.suppress]]`: lives as long as the file says it.
    Config,
    /// Added at run time; gone on restart.
    Api,
}

/// A rule in force, as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuppressionEntry {
    /// Handle for removal.
    pub id: u64,
    /// Where the rule came from.
    pub origin: Origin,
    /// The rule.
    #[serde(flatten)]
    pub rule: Suppression,
}

/// Why a rule could not be added or removed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SuppressionError {
    /// No rule in force has this id (it may have expired).
    #[error("no suppression with id {0}")]
    NotFound(u64),
    /// Rules from the configuration file are removed by editing the file.
    #[error("suppression {0} comes from the configuration file; remove it there")]
    FromConfig(u64),
    /// The rule matches everything, or has an empty glob.
    #[error("{0}")]
    Invalid(String),
    /// The rule's expiry has already passed.
    #[error("the rule expired at {0}, which has already passed")]
    AlreadyExpired(Timestamp),
}

struct Rule {
    entry: SuppressionEntry,
    key: Option<WildMatch>,
    principal: Option<WildMatch>,
}

impl Rule {
    fn new(id: u64, origin: Origin, rule: Suppression) -> Rule {
        Rule {
            key: rule.key.as_deref().map(WildMatch::new),
            principal: rule.principal.as_deref().map(WildMatch::new),
            entry: SuppressionEntry { id, origin, rule },
        }
    }

    fn expired(&self, now: Timestamp) -> bool {
        self.entry.rule.expires.is_some_and(|t| t <= now)
    }

    fn matches(&self, f: &Finding, source: Option<IpAddr>) -> bool {
        let rule = &self.entry.rule;
        self.key.as_ref().is_none_or(|g| g.matches(&f.key_id))
            && self
                .principal
                .as_ref()
                .is_none_or(|g| f.principal.as_deref().is_some_and(|p| g.matches(p)))
            && rule.detector.is_none_or(|d| d == f.detector)
            && rule
                .source_network
                .is_none_or(|n| source.is_some_and(|ip| n.0.contains(&ip)))
    }
}

/// The rules in force.
pub struct Suppressions {
    rules: RwLock<Vec<Rule>>,
    next_id: AtomicU64,
}

impl Suppressions {
    /// The configuration file's rules (already validated).
    pub fn new(config: &[Suppression]) -> Suppressions {
        let rules = config
            .iter()
            .enumerate()
            .map(|(i, r)| Rule::new(i as u64 + 1, Origin::Config, r.clone()))
            .collect::<Vec<_>>();
        Suppressions {
            next_id: AtomicU64::new(rules.len() as u64 + 1),
            rules: RwLock::new(rules),
        }
    }

    /// Whether a rule in force mutes `finding`.
    pub fn mutes(&self, finding: &Finding) -> bool {
        let rules = self.rules.read().unwrap_or_else(|e| e.into_inner());
        if rules.is_empty() {
            return false;
        }
        let now = Timestamp::now();
        let source = finding
            .sample
            .source
            .as_deref()
            .and_then(|s| s.parse::<IpAddr>().ok());
        rules
            .iter()
            .any(|r| !r.expired(now) && r.matches(finding, source))
    }

    /// Adds a rule; returns its id.
    pub fn add(&self, rule: Suppression) -> Result<u64, SuppressionError> {
        rule.validate("suppression")
            .map_err(|e| SuppressionError::Invalid(e.to_string()))?;
        let now = Timestamp::now();
        if let Some(t) = rule.expires.filter(|t| *t <= now) {
            return Err(SuppressionError::AlreadyExpired(t));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut rules = self.rules.write().unwrap_or_else(|e| e.into_inner());
        rules.retain(|r| !r.expired(now));
        rules.push(Rule::new(id, Origin::Api, rule));
        Ok(id)
    }

    /// Removes a rule added at run time.
    pub fn remove(&self, id: u64) -> Result<SuppressionEntry, SuppressionError> {
        let now = Timestamp::now();
        let mut rules = self.rules.write().unwrap_or_else(|e| e.into_inner());
        rules.retain(|r| !r.expired(now));
        let at = rules
            .iter()
            .position(|r| r.entry.id == id)
            .ok_or(SuppressionError::NotFound(id))?;
        if rules[at].entry.origin == Origin::Config {
            return Err(SuppressionError::FromConfig(id));
        }
        Ok(rules.remove(at).entry)
    }

    /// The rules in force, oldest first.
    pub fn list(&self) -> Vec<SuppressionEntry> {
        let now = Timestamp::now();
        let rules = self.rules.read().unwrap_or_else(|e| e.into_inner());
        rules
            .iter()
            .filter(|r| !r.expired(now))
            .map(|r| r.entry.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::alert::tests::finding;
    use keywatch_core::engine::Detector;
    use keywatch_core::types::Cidr;

    #[test]
    fn every_condition_given_must_match() {
        let s = Suppressions::new(&[Suppression {
            key: Some("AKIACI*".into()),
            detector: Some(Detector::NewSource),
            source_network: Some("10.0.0.0/8".parse::<Cidr>().unwrap()),
            ..Suppression::default()
        }]);
        let mut f = finding("AKIACI0001", Detector::NewSource, "10.1.2.3");
        assert!(s.mutes(&f));
        f.sample.source = Some("203.0.113.9".into());
        assert!(!s.mutes(&f), "outside the network");
        let f = finding("AKIACI0001", Detector::RateSpike, "10.1.2.3");
        assert!(!s.mutes(&f), "another detector");
        let f = finding("AKIAPROD01", Detector::NewSource, "10.1.2.3");
        assert!(!s.mutes(&f), "another key");
    }

    #[test]
    fn runtime_rules_are_added_listed_removed_and_expire() {
        let s = Suppressions::new(&[Suppression {
            principal: Some("*:user/build-*".into()),
            ..Suppression::default()
        }]);
        let f = finding("AKIA0000000000000001", Detector::NewAction, "203.0.113.9");
        assert!(!s.mutes(&f));
        let id = s
            .add(Suppression {
                key: Some(f.key_id.clone()),
                reason: Some("rotation in progress".into()),
                ..Suppression::default()
            })
            .unwrap();
        assert!(s.mutes(&f));
        let listed = s.list();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[1].id, id);
        assert_eq!(listed[1].origin, Origin::Api);
        assert_eq!(
            s.remove(listed[0].id),
            Err(SuppressionError::FromConfig(listed[0].id))
        );
        assert_eq!(
            s.remove(id).unwrap().rule.reason.as_deref(),
            Some("rotation in progress")
        );
        assert!(!s.mutes(&f));
        assert_eq!(s.remove(id), Err(SuppressionError::NotFound(id)));

        let past = Timestamp::now();
        assert!(matches!(
            s.add(Suppression {
                key: Some("x".into()),
                expires: Some(past),
                ..Suppression::default()
            }),
            Err(SuppressionError::AlreadyExpired(_))
        ));
        assert!(matches!(
            s.add(Suppression::default()),
            Err(SuppressionError::Invalid(_))
        ));
        s.add(Suppression {
            key: Some(f.key_id.clone()),
            expires: Some(Timestamp::now().after(Duration::from_millis(50))),
            ..Suppression::default()
        })
        .unwrap();
        assert!(s.mutes(&f));
        std::thread::sleep(Duration::from_millis(80));
        assert!(!s.mutes(&f), "expired");
        assert_eq!(s.list().len(), 1, "expired rules are not listed");
    }
}
