//! Where an inventory comes from: keywatch's own files and providers'
//! exports ([`SourceFormat`]), an owner mapping for what the providers do
//! not know, and how they merge into one [`Inventory`].
//!
//! Merging: a key listed by keywatch's own file keeps what that file says;
//! a provider fills the fields it leaves empty (creation, expiry, rotation,
//! principal), its last use is the later of the two, and a key the provider
//! switched off is switched off. A key only a provider lists comes in with
//! its owner from the mapping, or else its principal.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::load::Collector;
use super::owners::OwnerMap;
use super::provider::{aws, gcp, github};
use super::{Format, Inventory, InventoryError, KeyEntry};

/// What an inventory file is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceFormat {
    /// keywatch's own TOML, JSON or CSV (by the file's extension).
    #[default]
    Keywatch,
    /// `aws iam list-access-keys` JSON, with `credential_report`.
    Aws,
    /// `gcloud iam service-accounts keys list --format=json`.
    Gcp,
    /// GitHub's `GET /orgs/{org}/personal-access-tokens` JSON.
    Github,
}

impl SourceFormat {
    /// Name in configuration and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceFormat::Keywatch => "keywatch",
            SourceFormat::Aws => "aws",
            SourceFormat::Gcp => "gcp",
            SourceFormat::Github => "github",
        }
    }
}

/// One inventory file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The file.
    pub path: PathBuf,
    /// What it is.
    pub format: SourceFormat,
    /// `aws`: the IAM credential report joined with the listing.
    pub credential_report: Option<PathBuf>,
}

/// Every file an inventory is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// The files, keywatch's own first by convention (any order merges the same).
    pub files: Vec<Source>,
    /// The owner mapping applied to providers' keys.
    pub owners: Option<PathBuf>,
}

impl Sources {
    /// One keywatch-format file.
    pub fn file(path: impl Into<PathBuf>) -> Sources {
        Sources {
            files: vec![Source {
                path: path.into(),
                format: SourceFormat::Keywatch,
                credential_report: None,
            }],
            owners: None,
        }
    }

    /// Every file to read, in a fixed order (sources with their reports,
    /// then the mapping): what a reload reads and watches.
    pub fn paths(&self) -> Vec<&Path> {
        let mut out = Vec::new();
        for s in &self.files {
            out.push(s.path.as_path());
            if let Some(r) = &s.credential_report {
                out.push(r.as_path());
            }
        }
        if let Some(o) = &self.owners {
            out.push(o.as_path());
        }
        out
    }

    /// The first file, naming the inventory in logs.
    pub fn main_path(&self) -> &Path {
        self.files
            .first()
            .map(|s| s.path.as_path())
            .unwrap_or(Path::new(""))
    }
}

impl From<&Path> for Sources {
    fn from(p: &Path) -> Sources {
        Sources::file(p)
    }
}

impl From<PathBuf> for Sources {
    fn from(p: PathBuf) -> Sources {
        Sources::file(p)
    }
}

impl From<&PathBuf> for Sources {
    fn from(p: &PathBuf) -> Sources {
        Sources::file(p.clone())
    }
}

impl Inventory {
    /// Reads every source and merges them.
    pub fn load_sources(sources: &Sources) -> Result<Inventory, InventoryError> {
        let files = sources
            .paths()
            .into_iter()
            .map(|p| {
                std::fs::read(p).map_err(|source| InventoryError::Read {
                    path: p.to_owned(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Inventory::parse_sources(sources, &files)
    }

    /// Validates and merges sources held in memory: `files` holds each of
    /// [`Sources::paths`], in that order.
    pub fn parse_sources(
        sources: &Sources,
        files: &[Vec<u8>],
    ) -> Result<Inventory, InventoryError> {
        let mut files = files.iter();
        let mut next = || files.next().map(Vec::as_slice).unwrap_or_default();
        let mut read = Vec::with_capacity(sources.files.len());
        for s in &sources.files {
            let bytes = next();
            let report = s.credential_report.as_ref().map(|p| (p, next()));
            read.push((s, bytes, report));
        }
        let owners = match &sources.owners {
            Some(path) => Some(OwnerMap::parse(path, next())?),
            None => None,
        };
        let mut merged: Vec<KeyEntry> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (s, bytes, report) in read {
            let inventory = match s.format {
                SourceFormat::Keywatch => {
                    let format =
                        Format::of_path(&s.path).ok_or_else(|| InventoryError::UnknownFormat {
                            path: s.path.clone(),
                        })?;
                    Inventory::parse(bytes, format, &s.path)?
                }
                provider => {
                    let report = report
                        .map(|(path, bytes)| aws::report(path, bytes))
                        .transpose()?;
                    read_provider(provider, bytes, report.as_ref(), owners.as_ref(), &s.path)?
                }
            };
            for e in inventory.entries {
                match index.get(e.key_id.as_str()) {
                    Some(&i) => {
                        let first = std::mem::take(&mut merged[i]);
                        merged[i] = merge(first, e, s.format == SourceFormat::Keywatch);
                    }
                    None => {
                        index.insert(e.key_id.to_string(), merged.len());
                        merged.push(e);
                    }
                }
            }
        }
        Ok(Inventory::index_unique(merged, |_, _, _| {}))
    }
}

fn read_provider(
    format: SourceFormat,
    bytes: &[u8],
    report: Option<&aws::Report>,
    owners: Option<&OwnerMap>,
    path: &Path,
) -> Result<Inventory, InventoryError> {
    let text = std::str::from_utf8(bytes).map_err(|e| InventoryError::Syntax {
        path: path.to_owned(),
        line: Some(
            bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1,
        ),
        message: "not UTF-8 text".to_owned(),
    })?;
    let mut collect = Collector::new(Format::Json).with_owners(owners);
    let read = match format {
        SourceFormat::Aws => aws::read(text, report, &mut collect),
        SourceFormat::Gcp => gcp::read(text, &mut collect),
        SourceFormat::Github => github::read(text, &mut collect),
        SourceFormat::Keywatch => unreachable!("keywatch files are read by Inventory::parse"),
    };
    read.map_err(|(line, message)| InventoryError::Syntax {
        path: path.to_owned(),
        line,
        message: format!("{} export: {message}", format.as_str()),
    })?;
    collect.finish(path)
}

/// Merges a key's later listing `more` into its `first`. When `more` is
/// keywatch's own entry it wins where it speaks; otherwise it only fills.
fn merge(first: KeyEntry, more: KeyEntry, more_wins: bool) -> KeyEntry {
    let last_used = first.last_used.max(more.last_used);
    let disabled = first.disabled || more.disabled;
    let (win, lose) = if more_wins {
        (more, first)
    } else {
        (first, more)
    };
    KeyEntry {
        team: win.team.or(lose.team),
        system: win.system.or(lose.system),
        privilege: win.privilege.or(lose.privilege),
        created: win.created.or(lose.created),
        expires: win.expires.or(lose.expires),
        last_rotated: win.last_rotated.or(lose.last_rotated),
        principal: win.principal.or(lose.principal),
        allowed_cidrs: win.allowed_cidrs.or(lose.allowed_cidrs),
        allowed_actions: win.allowed_actions.or(lose.allowed_actions),
        usage_cap: win.usage_cap.or(lose.usage_cap),
        one_time: win.one_time || lose.one_time,
        last_used,
        disabled,
        key_id: win.key_id,
        owner: win.owner,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AWS: &str = r#"{"AccessKeyMetadata": [
  {"UserName": "alice", "AccessKeyId": "AKIA1", "Status": "Active", "CreateDate": "2025-01-01T00:00:00+00:00"},
  {"UserName": "alice", "AccessKeyId": "AKIA2", "Status": "Inactive", "CreateDate": "2025-03-01T00:00:00+00:00"},
  {"UserName": "nobody", "AccessKeyId": "AKIA3", "Status": "Active", "CreateDate": "2025-04-01T00:00:00+00:00"}
]}"#;

    const REPORT: &str = "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated
alice,arn:aws:iam::1:user/alice,2024-12-01T00:00:00+00:00,false,N/A,N/A,N/A,false,true,2025-01-01T00:00:00+00:00,2025-06-01T00:00:00+00:00,us-east-1,s3,false,2025-02-15T00:00:00+00:00,2025-05-01T00:00:00+00:00,us-east-1,s3,false,N/A,false,N/A
";

    fn sources(owners: bool) -> Sources {
        Sources {
            files: vec![
                Source {
                    path: "keys.toml".into(),
                    format: SourceFormat::Keywatch,
                    credential_report: None,
                },
                Source {
                    path: "keys.json".into(),
                    format: SourceFormat::Aws,
                    credential_report: Some("report.csv".into()),
                },
            ],
            owners: owners.then(|| "owners.csv".into()),
        }
    }

    fn day(d: &str) -> Option<u32> {
        Some(
            (chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp()) as u32,
        )
    }

    #[test]
    fn keywatch_wins_where_it_speaks_the_export_fills_the_rest() {
        let own =
            "[[keys]]\nkey_id = \"AKIA1\"\nowner = \"billing-team\"\nlast_used = \"2025-02-01\"\n";
        let inv =
            Inventory::parse_sources(&sources(false), &[own.into(), AWS.into(), REPORT.into()])
                .unwrap();
        let a1 = inv.get("AKIA1").unwrap();
        assert_eq!(&*a1.owner, "billing-team", "keywatch's own owner");
        assert_eq!(
            a1.principal.as_deref(),
            Some("alice"),
            "the export's principal"
        );
        assert_eq!(a1.created, day("2025-01-01"));
        assert_eq!(a1.last_used, day("2025-06-01"), "the later last use");
        // Slot 2's rotation is not AKIA2's creation: no report data for it.
        let a2 = inv.get("AKIA2").unwrap();
        assert!(a2.disabled);
        assert_eq!((a2.last_used, a2.last_rotated), (None, None));
        // A user the report does not know: the listing alone.
        let a3 = inv.get("AKIA3").unwrap();
        assert_eq!(&*a3.owner, "nobody");
        assert_eq!(a3.system.as_deref(), Some("aws"));
        assert_eq!(inv.len(), 3);
    }

    #[test]
    fn the_owner_mapping_fills_providers_keys_and_names_its_bad_rows() {
        let owners = "match,owner,team,system,privilege\nAKIA3,ops,infra,,\nali*,alice@x,payments,billing,admin\n";
        let inv = Inventory::parse_sources(
            &sources(true),
            &["".into(), AWS.into(), REPORT.into(), owners.into()],
        )
        .unwrap();
        let a1 = inv.get("AKIA1").unwrap();
        assert_eq!(
            (&*a1.owner, a1.team.as_deref()),
            ("alice@x", Some("payments"))
        );
        assert_eq!(a1.privilege, Some(crate::inventory::Privilege::Admin));
        let a3 = inv.get("AKIA3").unwrap();
        assert_eq!(
            (&*a3.owner, a3.system.as_deref()),
            ("ops", Some("aws")),
            "an empty cell keeps the export's"
        );
        let err = Inventory::parse_sources(
            &sources(true),
            &[
                "".into(),
                AWS.into(),
                REPORT.into(),
                "match,owner,privilege\nalice,a,root\n".into(),
            ],
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "inventory owners.csv, line 2: row 1: `privilege` = \"root\": must be one of read, write, admin"
        );
        let err = Inventory::parse_sources(
            &sources(true),
            &[
                "".into(),
                AWS.into(),
                REPORT.into(),
                "match,owner,colour\nalice,a,red\n".into(),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("owners.csv, line 2") && err.contains("colour"),
            "{err}"
        );
    }

    #[test]
    fn the_owner_mapping_may_be_toml() {
        let mut s = sources(true);
        s.owners = Some("owners.toml".into());
        let owners = "[[owners]]\nmatch = \"alice\"\nteam = \"payments\"\n\n[[owners]]\nmatch = \"*\"\nowner = \"security@x\"\nprivilege = \"sudo\"\n";
        let err =
            Inventory::parse_sources(&s, &["".into(), AWS.into(), REPORT.into(), owners.into()])
                .unwrap_err()
                .to_string();
        assert_eq!(
            err,
            "inventory owners.toml, line 5: row 2: `privilege` = \"sudo\": must be one of read, write, admin"
        );
        let owners = owners.replace("sudo", "read");
        let inv =
            Inventory::parse_sources(&s, &["".into(), AWS.into(), REPORT.into(), owners.into()])
                .unwrap();
        let a1 = inv.get("AKIA1").unwrap();
        assert_eq!(
            (&*a1.owner, a1.team.as_deref()),
            ("alice", Some("payments")),
            "the first match only"
        );
        assert_eq!(&*inv.get("AKIA3").unwrap().owner, "security@x");
    }

    #[test]
    fn a_credential_report_is_read_from_its_api_response_too() {
        use base64::Engine as _;
        let response = serde_json::json!({
            "Content": base64::engine::general_purpose::STANDARD.encode(REPORT),
            "ReportFormat": "text/csv",
        })
        .to_string();
        let inv =
            Inventory::parse_sources(&sources(false), &["".into(), AWS.into(), response.into()])
                .unwrap();
        assert_eq!(inv.get("AKIA1").unwrap().last_used, day("2025-06-01"));
        let err = Inventory::parse_sources(
            &sources(false),
            &["".into(), AWS.into(), "{\"Content\": \"%%%\"}".into()],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("inventory report.csv: `Content` is not base64"),
            "{err}"
        );
        let err = Inventory::parse_sources(
            &sources(false),
            &["".into(), AWS.into(), "user,arn\nalice,x\n".into()],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("report.csv, line 1") && err.contains("user_creation_time"),
            "{err}"
        );
    }
}
