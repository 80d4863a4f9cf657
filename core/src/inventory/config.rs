//! `[inventory]`: the key inventory file and how often it is re-read, the
//! policy detectors it switches on, and the thresholds of `keywatch review`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Format;
use crate::types::{invalid, ConfigError, HumanDuration};

/// `[inventory]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InventoryConfig {
    /// The inventory: a `.toml`, `.json` or `.csv` file, relative to the
    /// working directory. Unset: no inventory, and the policy detectors are off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// How often the file is checked for changes (it is also re-read on SIGHUP).
    pub check_interval: HumanDuration,
    /// `keywatch review`: a key still valid but unused this long is stale.
    pub stale_after: HumanDuration,
    /// `keywatch review`: a key last rotated (or, never rotated, created)
    /// longer ago than this is overdue for rotation.
    pub rotation_after: HumanDuration,
    /// Which policy detectors run once `path` is set.
    pub detectors: PolicyDetectorsConfig,
}

/// Ten seconds: an edit takes effect before anyone goes looking for it, and a
/// `stat` every ten seconds costs nothing.
fn default_check_interval() -> HumanDuration {
    HumanDuration::secs(10)
}

/// 90 days, the quarterly review's threshold for stale keys and rotation
/// (the defaults; also what CIS and AWS guidance use for access keys).
fn default_review_days() -> HumanDuration {
    HumanDuration::days(90)
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig {
            path: None,
            check_interval: default_check_interval(),
            stale_after: default_review_days(),
            rotation_after: default_review_days(),
            detectors: PolicyDetectorsConfig::default(),
        }
    }
}

macro_rules! policy_switches {
    (
        behavioural { $( $(#[$bdoc:meta])* $B:ident = $bi:literal, $bname:ident : $bcfg:ty; )* }
        policy { $( $(#[$doc:meta])* $P:ident = $pi:literal, $name:ident; )* }
    ) => {
        /// `[inventory.detectors]`: each policy detector on or off (all on by
        /// default: an inventory that lists a restriction wants it enforced).
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct PolicyDetectorsConfig {
            $( $(#[$doc])* pub $name: bool, )*
        }

        impl Default for PolicyDetectorsConfig {
            fn default() -> Self {
                PolicyDetectorsConfig { $( $name: true, )* }
            }
        }
    };
}

crate::detector_list!(policy_switches);

impl InventoryConfig {
    /// Checks each value; errors name the key and the value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(path) = &self.path {
            if Format::of_path(path).is_none() {
                return Err(invalid(
                    "inventory.path",
                    path.display(),
                    "must end in .toml, .json or .csv (the format is read from the extension)",
                ));
            }
        }
        if self.check_interval.0.as_secs() < 1 {
            return Err(invalid(
                "inventory.check_interval",
                self.check_interval,
                "must be at least 1s",
            ));
        }
        for (key, d) in [
            ("inventory.stale_after", self.stale_after),
            ("inventory.rotation_after", self.rotation_after),
        ] {
            if d.0.as_secs() < 86_400 {
                return Err(invalid(key, d, "must be at least 1d"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_key_and_value() {
        let cfg = InventoryConfig {
            path: Some("keys.yaml".into()),
            ..Default::default()
        };
        let err = cfg.validate().unwrap_err().to_string();
        assert!(
            err.contains("inventory.path") && err.contains("keys.yaml"),
            "{err}"
        );
        let cfg = InventoryConfig {
            stale_after: HumanDuration::secs(3600),
            ..Default::default()
        };
        let err = cfg.validate().unwrap_err().to_string();
        assert!(
            err.contains("inventory.stale_after") && err.contains("1h"),
            "{err}"
        );
        assert!(InventoryConfig::default().validate().is_ok());
    }
}
