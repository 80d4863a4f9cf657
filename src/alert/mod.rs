//! Alerts: every finding reaches the people on call once, in a form they
//! can act on, even when a receiver is slow, down or rate-limiting.
//!
//! # Flow
//!
//! [`Alerts::submit`] takes a finding from the detection hot path and never
//! waits:
//!
//! 1. suppression rules ([`suppress`]: key glob, principal, detector, source
//!    network, optional expiry) may mute it;
//! 2. with incidents on, it joins its identity's incident (`incidents.rs`,
//!    the tracker of [`keywatch_core::incident`]), whose events follow it;
//!    it becomes an [`Alert`] ([`shape`]): the one JSON shape every sink
//!    carries, with the key's owner attached and secrets masked ([`redact`]),
//!    and its incident's id; incident events become [`IncidentAlert`]s;
//! 3. what the sink takes (findings, incident events or both:
//!    `SinkConfig::takes`), its route (minimum severity, detectors, teams)
//!    and memory of delivered ids decide whether it wants it;
//! 4. it joins that sink's bounded queue; a full queue sends it to the
//!    dead-letter file (`dead_letter.rs`) instead.
//!
//! A worker per sink (`worker.rs`) delivers with a timeout, retries with
//! backoff and jitter or as `Retry-After` says (`retry.rs`), and
//! dead-letters what it gives up on. One sink per file under `sink/`:
//! webhook, Splunk HTTP Event Collector, Slack, PagerDuty, Alertmanager,
//! Kafka, file and stdout. The sinks that carry the alert as JSON write it
//! in the sink's [`format`]: keywatch's own, OCSF or ECS.
//!
//! What a sink delivers is also recorded per source partition
//! (`ledger.rs`): [`Alerts::delivered`] lists it for the partition's
//! snapshot, and the instance that restores the snapshot
//! [`Alerts::adopt`]s it, so findings re-found while catching up are not
//! delivered twice.

pub mod config;
mod dead_letter;
mod delivery;
pub mod format;
mod incidents;
mod ledger;
mod pipeline;
pub mod redact;
mod retry;
mod seen;
pub mod shape;
mod sink;
mod sink_metrics;
pub mod suppress;
mod worker;

pub use delivery::DeliveryError;
pub use incidents::{IncidentListener, Incidents};
pub use pipeline::Alerts;
pub use redact::Redactor;
pub use shape::{Alert, IncidentAlert};
pub use sink::{http_client, pretty, send};
pub use suppress::{Origin, SuppressionEntry, SuppressionError};

#[cfg(test)]
pub(crate) mod tests {
    use keywatch_core::decode::EventSample;
    use keywatch_core::engine::finding::finding_id;
    use keywatch_core::engine::{Detector, Eligibility, Evidence, Finding, Severity};
    use keywatch_core::types::Entity;

    /// A high-severity finding on `key_id` from `source`.
    pub fn finding(key_id: &str, detector: Detector, source: &str) -> Finding {
        Finding {
            id: finding_id(Entity::KeyId, key_id, detector, 0, 1_770_606_764_000),
            detector,
            severity: Severity::High,
            entity: Entity::KeyId,
            key_id: key_id.to_owned(),
            principal: Some("arn:aws:iam::123456789012:user/ci-deploy".to_owned()),
            observed_at: "2026-02-09T03:12:44.000Z".to_owned(),
            summary: format!("key {key_id} was used from {source}"),
            evidence: Evidence {
                observed: serde_json::json!({ "source": source }),
                baseline: serde_json::json!({ "known_networks": 1 }),
                threshold: serde_json::json!({ "roaming_days": 2 }),
                eligibility: Eligibility {
                    learned_for_s: 2_635_200,
                    events_learned: 18_233,
                    active_days: 31,
                },
                network: None,
            },
            sample: EventSample {
                time: "2026-02-09T03:12:44.000Z".to_owned(),
                key_id: key_id.to_owned(),
                principal: None,
                source: Some(source.to_owned()),
                user_agent: Some("aws-cli/2.15.0".to_owned()),
                action: Some("sts:GetCallerIdentity".to_owned()),
                outcome: "success".to_owned(),
                error_code: None,
                region: Some("eu-west-1".to_owned()),
                count: 1,
            },
            folded: None,
            origin: 0,
        }
    }
}
