//! `[inventory]`: the key inventory file and how often it is re-read, the
//! policy detectors it switches on, and the thresholds of `keywatch review`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Format, Source, SourceFormat, Sources};
use crate::types::{invalid, ConfigError, HumanDuration};

/// `[inventory]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InventoryConfig {
    /// The inventory: a `.toml`, `.json` or `.csv` file, relative to the
    /// working directory. Unset: no inventory, and the policy detectors are off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// What `path` is: `keywatch` (keywatch's own TOML, JSON or CSV, by
    /// extension), `aws` (`aws iam list-access-keys` JSON), `gcp` (`gcloud
    /// iam service-accounts keys list --format=json`) or `github` (the
    /// organization's fine-grained personal access tokens, REST JSON).
    pub format: SourceFormat,
    /// `format = "aws"`: the IAM credential report (the CSV, or
    /// `aws iam get-credential-report`'s JSON), joined for last use and rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_report: Option<PathBuf>,
    /// More files merged with `path` (`[[inventory.sources]]`, each with
    /// its own `path`, `format` and `credential_report`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceConfig>,
    /// Owner mapping (`.csv` or `.toml`): owner, team, system and privilege
    /// for providers' keys, by key id or principal (globs allowed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owners: Option<PathBuf>,
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

/// `[[inventory.sources]]`: one more inventory file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The file.
    pub path: PathBuf,
    /// What it is (see `inventory.format`).
    #[serde(default)]
    pub format: SourceFormat,
    /// `format = "aws"`: the IAM credential report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_report: Option<PathBuf>,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig {
            path: None,
            format: SourceFormat::Keywatch,
            credential_report: None,
            sources: Vec::new(),
            owners: None,
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
    /// Every inventory file, when `path` is set.
    pub fn sources(&self) -> Option<Sources> {
        let path = self.path.clone()?;
        let first = Source {
            path,
            format: self.format,
            credential_report: self.credential_report.clone(),
        };
        let more = self.sources.iter().map(|s| Source {
            path: s.path.clone(),
            format: s.format,
            credential_report: s.credential_report.clone(),
        });
        Some(Sources {
            files: std::iter::once(first).chain(more).collect(),
            owners: self.owners.clone(),
        })
    }

    /// Checks each value; errors name the key and the value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.path.is_none() && (!self.sources.is_empty() || self.owners.is_some()) {
            return Err(invalid(
                "inventory.path",
                "(unset)",
                "is required with inventory.sources or inventory.owners: it is the first inventory file",
            ));
        }
        let first = self.path.as_ref().map(|p| {
            (
                "inventory".to_owned(),
                p,
                self.format,
                self.credential_report.as_ref(),
            )
        });
        let more = self.sources.iter().enumerate().map(|(i, s)| {
            (
                format!("inventory.sources[{i}]"),
                &s.path,
                s.format,
                s.credential_report.as_ref(),
            )
        });
        for (at, path, format, report) in first.into_iter().chain(more) {
            if format == SourceFormat::Keywatch && Format::of_path(path).is_none() {
                return Err(invalid(
                    &format!("{at}.path"),
                    path.display(),
                    "must end in .toml, .json or .csv (the format is read from the extension), or set format = \"aws\", \"gcp\" or \"github\" for a provider's export",
                ));
            }
            if let (Some(report), false) = (report, format == SourceFormat::Aws) {
                return Err(invalid(
                    &format!("{at}.credential_report"),
                    report.display(),
                    format!(
                        "is read with format = \"aws\" only (this source is {})",
                        format.as_str()
                    ),
                ));
            }
        }
        if let Some(owners) = &self.owners {
            let ext = owners
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or_default();
            if !ext.eq_ignore_ascii_case("csv") && !ext.eq_ignore_ascii_case("toml") {
                return Err(invalid(
                    "inventory.owners",
                    owners.display(),
                    "must end in .csv or .toml",
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
