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
