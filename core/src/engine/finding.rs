//! Findings: what a detector reports, with the evidence a responder needs to
//! judge it without opening a dashboard.

use std::fmt;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

pub use super::detect::list::Detector;
use crate::decode::EventSample;
use crate::types::Entity;

/// How urgently a person should look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing; no action expected.
    Info,
    /// Look when convenient.
    Low,
    /// Look today.
    Medium,
    /// Look now.
    High,
    /// Page someone.
    Critical,
}

impl Severity {
    /// Name in findings and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the key was allowed to alert: how long and how much it has been learned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Eligibility {
    /// Seconds between the key's first use and this event.
    pub learned_for_s: u64,
    /// Events (weighted) seen before this one.
    pub events_learned: u64,
    /// Days on which the key was used.
    pub active_days: u32,
}

/// What was observed against what was expected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The value that tripped the detector.
    pub observed: serde_json::Value,
    /// What the key's history says is normal.
    pub baseline: serde_json::Value,
    /// The line the observation crossed.
    pub threshold: serde_json::Value,
    /// Why this key was past learning.
    pub eligibility: Eligibility,
    /// What network intelligence knows about the event's source (owner,
    /// place, cloud, lists), when enrichment files are configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<serde_json::Value>,
}

/// One anomaly on one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable id: the same events replayed give the same id.
    pub id: String,
    /// Which detector.
    pub detector: Detector,
    /// How urgent.
    pub severity: Severity,
    /// Which tracked identity the baseline belongs to (`key_id` or `principal`).
    pub entity: Entity,
    /// The credential used.
    pub key_id: String,
    /// Who holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Event time of the event that tripped the detector (RFC 3339).
    pub observed_at: String,
    /// One sentence for a responder.
    pub summary: String,
    /// The numbers behind it.
    pub evidence: Evidence,
    /// The event that tripped it, size-capped.
    pub sample: EventSample,
    /// Set when the finding folded into its detector's open run on the
    /// identity ([`crate::engine::KeyState::fold`]): it is that run's record,
    /// one id per run, updated by every finding folded into it (the store
    /// keeps the latest evidence and counts them in `repeats`), and it pages
    /// no one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folded: Option<Folded>,
    /// The source partition (process-local number, 0 for none) of the event
    /// that raised it; not part of the alert.
    #[serde(skip)]
    pub origin: u16,
}

/// The run a folded finding belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Folded {
    /// When the run began (RFC 3339).
    pub run_since: String,
    /// Findings of the run that were raised (and alerted).
    pub raised: u8,
    /// Findings folded into it so far, this one included.
    pub folded: u32,
}

impl Finding {
    /// Event time in epoch milliseconds.
    pub fn observed_at_ms(&self) -> i64 {
        chrono::DateTime::parse_from_rfc3339(&self.observed_at)
            .map(|t| t.timestamp_millis())
            .unwrap_or_default()
    }
}

/// A stable finding id from what makes the finding itself: the identity, the
/// detector, the dimension (network, action, ...) and the tripping event's
/// time. Replaying the same events finds the same things with the same ids.
pub fn finding_id(
    entity: Entity,
    subject: &str,
    detector: Detector,
    dim: u64,
    at_ms: i64,
) -> String {
    let mut buf = Vec::with_capacity(subject.len() + 40);
    buf.extend_from_slice(entity.as_str().as_bytes());
    buf.push(0);
    buf.extend_from_slice(subject.as_bytes());
    buf.push(0);
    buf.extend_from_slice(detector.as_str().as_bytes());
    buf.push(0);
    buf.extend_from_slice(&dim.to_le_bytes());
    buf.extend_from_slice(&at_ms.to_le_bytes());
    format!("{:032x}", xxh3_128(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = finding_id(Entity::KeyId, "AKIA1", Detector::NewSource, 7, 1000);
        assert_eq!(
            a,
            finding_id(Entity::KeyId, "AKIA1", Detector::NewSource, 7, 1000)
        );
        assert_eq!(a.len(), 32);
        assert_ne!(
            a,
            finding_id(Entity::KeyId, "AKIA1", Detector::NewSource, 8, 1000)
        );
        assert_ne!(
            a,
            finding_id(Entity::Principal, "AKIA1", Detector::NewSource, 7, 1000)
        );
        assert_ne!(
            a,
            finding_id(Entity::KeyId, "AKIA1", Detector::RateSpike, 7, 1000)
        );
        assert_ne!(
            a,
            finding_id(Entity::KeyId, "AKIA1", Detector::NewSource, 7, 1001)
        );
        // Pinned: an id must not change between releases, or receivers re-alert.
        assert_eq!(
            finding_id(
                Entity::KeyId,
                "AKIAEXAMPLE",
                Detector::RateSpike,
                0,
                1_700_000_000_000
            ),
            "96107457b8c0c37217fb9c611b263529"
        );
    }

    #[test]
    fn severities_order_by_urgency() {
        assert!(Severity::Critical > Severity::High);
        assert!(Severity::Low > Severity::Info);
    }
}
