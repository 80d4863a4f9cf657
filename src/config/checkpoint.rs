//! `[checkpoint]`: durable state.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError, HumanDuration};

/// `[checkpoint]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Directory for checkpoint files; empty turns checkpoints off (state is
    /// then lost on restart, and dormancy with it).
    pub dir: PathBuf,
    /// A checkpoint is written this often, and at graceful shutdown.
    pub interval: HumanDuration,
    /// Checkpoint files kept; the newest readable one is restored at start.
    pub keep: usize,
    /// `/readyz` fails when the last successful checkpoint is older than this.
    pub max_age: HumanDuration,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            // Beside the working directory, like the dead-letter file; use an
            // absolute path on a persistent volume in production.
            dir: PathBuf::from("keywatch-checkpoints"),
            // A minute of events to replay after a crash: seconds of work.
            interval: HumanDuration::secs(60),
            // The newest plus two to fall back on if it is damaged.
            keep: 3,
            // Five missed intervals: the disk is full or the process is stuck.
            max_age: HumanDuration::secs(300),
        }
    }
}

impl CheckpointConfig {
    /// Whether checkpoints are on.
    pub fn enabled(&self) -> bool {
        !self.dir.as_os_str().is_empty()
    }

    /// Cross-field checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.interval.0.as_secs_f64() < 1.0 {
            return Err(invalid(
                "checkpoint.interval",
                self.interval,
                "must be at least 1s",
            ));
        }
        if self.keep == 0 {
            return Err(invalid("checkpoint.keep", 0, "must be at least 1"));
        }
        if self.max_age < self.interval {
            return Err(invalid(
                "checkpoint.max_age",
                self.max_age,
                format!("must be at least checkpoint.interval ({})", self.interval),
            ));
        }
        Ok(())
    }
}
