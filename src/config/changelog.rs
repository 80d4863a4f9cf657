//! `[changelog]`: the Kafka topic a partition's state travels through when
//! the partition moves to another instance.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError, HumanDuration};

/// `[changelog]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChangelogConfig {
    /// Write snapshots of owned partitions and restore moved ones from them.
    pub enabled: bool,
    /// The changelog topic; created (compacted, one partition per source
    /// partition) when missing.
    pub topic: String,
    /// Largest snapshot chunk, in bytes: below the broker's and topic's
    /// `max.message.bytes` (Kafka's default is 1 MB).
    pub chunk_bytes: usize,
    /// Replication factor when creating the topic; -1 takes the broker's default.
    pub replication_factor: i32,
    /// Time allowed for the final snapshot when partitions are revoked, and
    /// for reading a snapshot back when they are assigned.
    pub handoff_timeout: HumanDuration,
}

impl Default for ChangelogConfig {
    fn default() -> Self {
        ChangelogConfig {
            enabled: true,
            topic: "keywatch-state".into(),
            // Under Kafka's 1 MB default with room for the message overhead.
            chunk_bytes: 900_000,
            replication_factor: -1,
            // Well within the consumer's max.poll.interval.ms (300 s).
            handoff_timeout: HumanDuration::secs(30),
        }
    }
}

impl ChangelogConfig {
    /// Cross-field checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled && self.topic.trim().is_empty() {
            return Err(invalid("changelog.topic", "\"\"", "must name a topic"));
        }
        if !(16 * 1024..=64 * 1024 * 1024).contains(&self.chunk_bytes) {
            return Err(invalid(
                "changelog.chunk_bytes",
                self.chunk_bytes,
                "must be between 16384 and 67108864",
            ));
        }
        if self.replication_factor == 0 || self.replication_factor < -1 {
            return Err(invalid(
                "changelog.replication_factor",
                self.replication_factor,
                "must be -1 (broker default) or at least 1",
            ));
        }
        if self.handoff_timeout.0.as_secs_f64() < 1.0 {
            return Err(invalid(
                "changelog.handoff_timeout",
                self.handoff_timeout,
                "must be at least 1s",
            ));
        }
        Ok(())
    }
}
