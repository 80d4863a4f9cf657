//! `[netintel]`: the files that say who owns a source address, where it is,
//! and whether it belongs to a cloud provider, a VPN or a known attacker.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::types::{invalid, ConfigError, HumanDuration};

/// `[netintel]`. Every file is optional; with none set, enrichment is off
/// and costs nothing per event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetIntelConfig {
    /// A directory of files as `keywatch netintel update` writes them:
    /// `country.mmdb` (or `city.mmdb`), `asn.csv` (or `asn.mmdb`) and
    /// `cloud-*.json`. Each file found there is used where the matching key
    /// below is not set; a file that appears later (the first update) is
    /// loaded at the next check, like a changed one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// A MaxMind DB (`.mmdb`) with country, city, coordinates and accuracy
    /// radius (GeoLite2-City, GeoIP2-City, DB-IP City Lite, IPinfo Lite...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city_db: Option<PathBuf>,
    /// Who owns each address: a MaxMind DB with `autonomous_system_number`
    /// and `autonomous_system_organization` (GeoLite2-ASN and compatible),
    /// or a `.csv` of address ranges, `first,last,asn[,organisation]` per
    /// line (ip-location-db's `asn`, DB-IP's IP-to-ASN Lite).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn_db: Option<PathBuf>,
    /// Cloud provider ranges in their published formats: AWS
    /// `ip-ranges.json`, GCP `cloud.json`, Azure service tags JSON (the
    /// format is recognised from the content).
    pub cloud_ranges: Vec<PathBuf>,
    /// Labelled networks: Tor exits, threat feeds, the organisation's VPN
    /// and office ranges.
    pub lists: Vec<ListConfig>,
    /// How often the files are checked for changes.
    pub check_interval: HumanDuration,
    /// Files older than this (by modification time) are reported by
    /// `check-config` and at start: addresses change hands, and a stale
    /// database places them wrongly.
    pub max_age: HumanDuration,
}

/// One labelled list of networks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListConfig {
    /// A text file (one address or CIDR per line, `#` comments) or a `.csv`
    /// file (`network,label[,kind]`; a row's label and kind override the list's).
    pub path: PathBuf,
    /// The label evidence shows for its networks (`tor`, `corp-vpn`, ...).
    pub label: String,
    /// What the networks are: `tor` and `threat` alert (`listed_source`);
    /// `vpn`, `office` and `hosting` never alert by themselves, they explain
    /// (impossible travel is not judged from a VPN or office; a hosting or VPN
    /// network is a strong signal for `new_source`).
    pub kind: ListKind,
}

/// What a listed network is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListKind {
    /// Tor exit nodes: alerts.
    Tor,
    /// A threat feed: alerts.
    Threat,
    /// The organisation's (or a commercial) VPN egress.
    Vpn,
    /// The organisation's office egress.
    Office,
    /// Hosting providers (rented servers).
    Hosting,
}

impl ListKind {
    /// Name in configuration and evidence.
    pub fn as_str(self) -> &'static str {
        match self {
            ListKind::Tor => "tor",
            ListKind::Threat => "threat",
            ListKind::Vpn => "vpn",
            ListKind::Office => "office",
            ListKind::Hosting => "hosting",
        }
    }

    /// Parses a name as written in a list file.
    pub fn parse(s: &str) -> Option<ListKind> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "tor" => ListKind::Tor,
            "threat" => ListKind::Threat,
            "vpn" => ListKind::Vpn,
            "office" => ListKind::Office,
            "hosting" => ListKind::Hosting,
            _ => return None,
        })
    }

    /// Whether a use from such a network is a finding by itself.
    pub fn alerts(self) -> bool {
        matches!(self, ListKind::Tor | ListKind::Threat)
    }
}

/// A minute: the published files change daily at most, and a `stat` of a
/// handful of files each minute costs nothing.
fn default_check_interval() -> HumanDuration {
    HumanDuration::secs(60)
}

/// The published databases change daily; a month without an update means
/// the update job has stopped.
fn default_max_age() -> HumanDuration {
    HumanDuration::secs(30 * 86_400)
}

/// The names `keywatch netintel update` writes in [`NetIntelConfig::dir`].
pub mod dir_files {
    /// Country (or city) database.
    pub const COUNTRY: &str = "country.mmdb";
    /// A city database placed there by hand is preferred to the country one.
    pub const CITY: &str = "city.mmdb";
    /// Address ranges and their autonomous systems.
    pub const ASN_CSV: &str = "asn.csv";
    /// An ASN MaxMind DB placed there by hand.
    pub const ASN_MMDB: &str = "asn.mmdb";
    /// Cloud ranges: `cloud-<provider>.json`.
    pub const CLOUD_PREFIX: &str = "cloud-";
}

impl Default for NetIntelConfig {
    fn default() -> Self {
        NetIntelConfig {
            dir: None,
            city_db: None,
            asn_db: None,
            cloud_ranges: Vec::new(),
            lists: Vec::new(),
            check_interval: default_check_interval(),
            max_age: default_max_age(),
        }
    }
}

impl NetIntelConfig {
    /// Whether any file is configured.
    pub fn enabled(&self) -> bool {
        self.dir.is_some()
            || self.city_db.is_some()
            || self.asn_db.is_some()
            || !self.cloud_ranges.is_empty()
            || !self.lists.is_empty()
    }

    /// The files in force now: the configured ones, and where a key is not
    /// set, what [`NetIntelConfig::dir`] holds at this moment (read again on
    /// every check, so the first `netintel update` is picked up).
    pub fn in_force(&self) -> NetIntelConfig {
        let mut cfg = self.clone();
        let Some(dir) = &self.dir else {
            return cfg;
        };
        let found = |names: &[&str]| names.iter().map(|n| dir.join(n)).find(|p| p.is_file());
        if cfg.city_db.is_none() {
            cfg.city_db = found(&[dir_files::CITY, dir_files::COUNTRY]);
        }
        if cfg.asn_db.is_none() {
            cfg.asn_db = found(&[dir_files::ASN_MMDB, dir_files::ASN_CSV]);
        }
        if cfg.cloud_ranges.is_empty() {
            let mut cloud: Vec<PathBuf> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.is_file()
                        && p.extension().is_some_and(|e| e == "json")
                        && p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with(dir_files::CLOUD_PREFIX))
                })
                .collect();
            cloud.sort();
            cfg.cloud_ranges = cloud;
        }
        cfg
    }

    /// Every file in force (see [`NetIntelConfig::in_force`]) last modified
    /// more than [`NetIntelConfig::max_age`] before `now`, with its age.
    pub fn stale_files(&self, now: std::time::SystemTime) -> Vec<(PathBuf, std::time::Duration)> {
        let cfg = self.in_force();
        cfg.city_db
            .iter()
            .chain(cfg.asn_db.iter())
            .chain(cfg.cloud_ranges.iter())
            .chain(cfg.lists.iter().map(|l| &l.path))
            .filter_map(|p| {
                let modified = std::fs::metadata(p).ok()?.modified().ok()?;
                let age = now.duration_since(modified).ok()?;
                (age > self.max_age.0).then(|| (p.clone(), age))
            })
            .collect()
    }

    /// Checks each value; errors name the key and the value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(p) = &self.city_db {
            if p.extension().and_then(|e| e.to_str()) != Some("mmdb") {
                return Err(invalid(
                    "netintel.city_db",
                    p.display(),
                    "must be a MaxMind DB file ending in .mmdb",
                ));
            }
        }
        if let Some(p) = &self.asn_db {
            if !matches!(p.extension().and_then(|e| e.to_str()), Some("mmdb" | "csv")) {
                return Err(invalid(
                    "netintel.asn_db",
                    p.display(),
                    "must be a MaxMind DB file ending in .mmdb or a range file ending in .csv",
                ));
            }
        }
        for (i, list) in self.lists.iter().enumerate() {
            if list.label.trim().is_empty() || list.label.len() > 64 {
                return Err(invalid(
                    &format!("netintel.lists[{i}].label"),
                    format!("{:?}", list.label),
                    "must be 1 to 64 characters",
                ));
            }
        }
        if self.check_interval.0.as_secs() < 1 {
            return Err(invalid(
                "netintel.check_interval",
                self.check_interval,
                "must be at least 1s",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_key_and_value() {
        let cfg = NetIntelConfig {
            city_db: Some("GeoLite2-City.csv".into()),
            ..Default::default()
        };
        let err = cfg.validate().unwrap_err().to_string();
        assert!(
            err.contains("netintel.city_db") && err.contains("GeoLite2-City.csv"),
            "{err}"
        );
        let cfg = NetIntelConfig {
            lists: vec![ListConfig {
                path: "tor.txt".into(),
                label: String::new(),
                kind: ListKind::Tor,
            }],
            ..Default::default()
        };
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("netintel.lists[0].label"), "{err}");
        assert!(NetIntelConfig::default().validate().is_ok());
        assert!(!NetIntelConfig::default().enabled());
    }
}
