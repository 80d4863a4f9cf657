//! `[store]`: the findings store behind the console and `/api/v1/findings`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError, HumanDuration};

/// `[store]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// SQLite file holding every finding, its status, the audit trail of
    /// verdicts and what they taught; empty turns the store off (the API
    /// then lists the last `http.recent_findings` from memory, and verdicts
    /// are refused).
    pub path: PathBuf,
    /// Findings stored longer ago than this are deleted.
    pub max_age: HumanDuration,
    /// Most findings kept; the oldest go first.
    pub max_rows: usize,
    /// Findings waiting to be written; past it they are dropped and counted
    /// (`keywatch_store_dropped_total`), never waited for.
    pub queue: usize,
    /// Kafka topic every verdict's effect (a teaching, a suppression) is
    /// published to and every instance applies, so feedback reaches the
    /// instance that owns the key with several instances; created (one
    /// partition, compacted) when missing. Empty: verdicts act on the
    /// instance that receives them only.
    pub feedback_topic: String,
    /// Several instances: the Kafka topic of a `type = "kafka"` alert sink
    /// (the sink's `topic`), read by this instance so that its store, and
    /// so its console and `/api/v1/findings`, holds the findings of every
    /// instance. Each instance reads every partition without a consumer
    /// group and keeps its position in its own store. Empty: the store
    /// holds this instance's findings only.
    pub findings_topic: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            // Off unless asked for: a file beside the working directory is a
            // choice the operator makes (`keywatch demo` turns it on).
            path: PathBuf::new(),
            // A quarter of findings to look back over in a review.
            max_age: HumanDuration::days(90),
            // Queries stay in milliseconds at a million (docs/performance.md, measured).
            max_rows: 1_000_000,
            // Seconds of a finding storm at the writer's ~50k/s.
            queue: 10_000,
            // Off: one instance needs no topic.
            feedback_topic: String::new(),
            // Off: one instance's findings are all there is.
            findings_topic: String::new(),
        }
    }
}

impl StoreConfig {
    /// Whether the store is on.
    pub fn enabled(&self) -> bool {
        !self.path.as_os_str().is_empty()
    }

    /// Checks the bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_rows == 0 {
            return Err(invalid("store.max_rows", 0, "must be at least 1"));
        }
        if self.queue == 0 {
            return Err(invalid("store.queue", 0, "must be at least 1"));
        }
        if !self.feedback_topic.is_empty() && !self.enabled() {
            return Err(invalid(
                "store.feedback_topic",
                format!("{:?}", self.feedback_topic),
                "needs the findings store: set store.path too",
            ));
        }
        if !self.findings_topic.is_empty() && !self.enabled() {
            return Err(invalid(
                "store.findings_topic",
                format!("{:?}", self.findings_topic),
                "needs the findings store: set store.path too",
            ));
        }
        if self.max_age.0.is_zero() {
            return Err(invalid("store.max_age", "\"0s\"", "must be longer than 0s"));
        }
        Ok(())
    }
}
