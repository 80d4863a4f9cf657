//! Per-user API tokens: created and revoked with `keywatch token`, kept in
//! one JSON file (`http.access.tokens_path`) as SHA-256 hashes.
//!
//! Why a file of its own and not the findings store: tokens must work with
//! the store off, an operator can provision or back up the file with the
//! rest of the configuration, and it holds nothing secret (a token is 256
//! random bits: its hash cannot be reversed or guessed, which is why a fast
//! hash is the right one here, as GitHub and others store tokens). The file
//! is replaced whole (written beside, synced, renamed) under an exclusive
//! lock, so two `keywatch token` runs never lose each other's change; the
//! daemon checks the file's identity (inode, size, modification time) on
//! every token it is shown and re-reads it when it changed, so a revoked
//! token is refused from the next request on.
//!
//! A token reads `kw_<id>_<secret>`: the id names it in `list` and `revoke`
//! (it is not secret), the secret is 32 random bytes, base64url.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use base64::Engine as _;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Role;

/// Largest tokens file read: a hundred thousand tokens fit far below it.
const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// The file's format version; a newer one is refused by name.
const VERSION: u32 = 1;

/// One token, as stored (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public id, part of the token: names it in `list` and `revoke`.
    pub id: String,
    /// Whom it authenticates.
    pub user: String,
    /// What they may do with it.
    pub role: Role,
    /// SHA-256 of the whole token, hex.
    pub sha256: String,
    /// When it was created (RFC 3339).
    pub created: String,
    /// When it was revoked (RFC 3339); a revoked token is kept for the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<String>,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    version: u32,
    tokens: Vec<TokenRecord>,
}

/// Why the tokens file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Reading or writing it failed.
    #[error("tokens file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// It is not a tokens file this version reads.
    #[error("tokens file {path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No token with this id (or of this user) to revoke.
    #[error("no token {0:?} in the tokens file (see `keywatch token list`)")]
    NotFound(String),
    /// A user name that cannot be one.
    #[error("user {0:?}: give a name without control characters, at most 256 characters")]
    BadUser(String),
}

/// The tokens file, as the `keywatch token` commands change it.
pub struct TokenFileStore {
    path: PathBuf,
}

impl TokenFileStore {
    /// The file at `path` (created by the first `create`).
    pub fn new(path: impl Into<PathBuf>) -> TokenFileStore {
        TokenFileStore { path: path.into() }
    }

    /// Creates a token for `user`; answers its record and the token, which
    /// is shown this once and stored only as its hash.
    pub fn create(&self, user: &str, role: Role) -> Result<(TokenRecord, String), TokenError> {
        if user.trim().is_empty() || user.len() > 256 || user.chars().any(char::is_control) {
            return Err(TokenError::BadUser(user.to_owned()));
        }
        self.change(|file| {
            let mut rng = rand::rngs::OsRng;
            let id = loop {
                let mut id = [0u8; 5];
                rng.fill_bytes(&mut id);
                let id = hex(&id);
                if !file.tokens.iter().any(|t| t.id == id) {
                    break id;
                }
            };
            let mut secret = [0u8; 32];
            rng.fill_bytes(&mut secret);
            let token = format!(
                "kw_{id}_{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
            );
            let record = TokenRecord {
                id,
                user: user.to_owned(),
                role,
                sha256: hex(&digest(&token)),
                created: now_rfc3339(),
                revoked: None,
            };
            file.tokens.push(record.clone());
            Ok((record, token))
        })
    }

    /// Revokes the token `id`, or every live token of the user `id` names;
    /// answers the records revoked.
    pub fn revoke(&self, id: &str) -> Result<Vec<TokenRecord>, TokenError> {
        self.change(|file| {
            let by_id = file.tokens.iter().any(|t| t.id == id);
            let now = now_rfc3339();
            let mut revoked = Vec::new();
            for t in &mut file.tokens {
                let hit = if by_id { t.id == id } else { t.user == id };
                if hit && t.revoked.is_none() {
                    t.revoked = Some(now.clone());
                    revoked.push(t.clone());
                }
            }
            if revoked.is_empty() {
                return Err(TokenError::NotFound(id.to_owned()));
            }
            Ok(revoked)
        })
    }

    /// Every token, revoked ones too, oldest first.
    pub fn list(&self) -> Result<Vec<TokenRecord>, TokenError> {
        Ok(read(&self.path)?.tokens)
    }

    /// Reads, changes and replaces the file under an exclusive lock.
    fn change<T>(
        &self,
        f: impl FnOnce(&mut TokenFile) -> Result<T, TokenError>,
    ) -> Result<T, TokenError> {
        let io = |source| TokenError::Io {
            path: self.path.clone(),
            source,
        };
        let _lock = FileLock::take(&self.path.with_extension("lock")).map_err(io)?;
        let mut file = read(&self.path)?;
        let out = f(&mut file)?;
        file.version = VERSION;
        let mut text = serde_json::to_vec_pretty(&file).map_err(|e| io(e.into()))?;
        text.push(b'\n');
        let tmp = self.path.with_extension("tmp");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut out_file = opts.open(&tmp).map_err(io)?;
        out_file.write_all(&text).map_err(io)?;
        out_file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        Ok(out)
    }
}

/// An exclusive `flock`, released when the file closes on drop.
struct FileLock {
    _held: std::fs::File,
}

impl FileLock {
    fn take(path: &Path) -> std::io::Result<FileLock> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::io::AsRawFd;
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(FileLock { _held: file })
    }
}

/// The file's tokens; a file not there yet has none.
fn read(path: &Path) -> Result<TokenFile, TokenError> {
    use std::io::Read as _;
    let io = |source| TokenError::Io {
        path: path.to_owned(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(TokenFile {
                version: VERSION,
                tokens: Vec::new(),
            })
        }
        Err(e) => return Err(io(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let format = |reason: String| TokenError::Format {
        path: path.to_owned(),
        reason,
    };
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format(format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    let parsed: TokenFile = serde_json::from_slice(&bytes).map_err(|e| format(e.to_string()))?;
    if parsed.version > VERSION {
        return Err(format(format!(
            "format version {} is newer than this keywatch reads ({VERSION})",
            parsed.version
        )));
    }
    Ok(parsed)
}

/// What identifies one version of the file: replaced whole, so a change
/// always gives a new inode.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Version {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

fn version_of(path: &Path) -> Option<Version> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Version {
        inode,
        len: meta.len(),
        modified: meta.modified().ok(),
    })
}

/// The daemon's view of the tokens file: live tokens by hash, re-read when
/// the file changes.
pub struct TokenIndex {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

struct Loaded {
    /// The version read; `None`: not read yet, or the file is not there.
    version: Option<Version>,
    /// Live tokens by hash. Empty when the file cannot be read: a file
    /// that cannot be read authorises nobody (a revocation must not be
    /// undone by a damaged file).
    by_hash: HashMap<[u8; 32], (String, Role)>,
}

impl TokenIndex {
    /// The index of the file at `path`, read on first use.
    pub fn new(path: PathBuf) -> TokenIndex {
        TokenIndex {
            path,
            loaded: Mutex::new(Loaded {
                version: None,
                by_hash: HashMap::new(),
            }),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The user and role of a live `token`.
    pub fn lookup(&self, token: &str) -> Option<(String, Role)> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        let now = version_of(&self.path);
        if now != loaded.version {
            loaded.by_hash = match read(&self.path) {
                Ok(file) => file
                    .tokens
                    .into_iter()
                    .filter(|t| t.revoked.is_none())
                    .filter_map(|t| Some((unhex(&t.sha256)?, (t.user, t.role))))
                    .collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "per-user tokens refused until the file can be read");
                    HashMap::new()
                }
            };
            loaded.version = now;
        }
        loaded.by_hash.get(&digest(token)).cloned()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_tokens_authenticate_until_revoked_and_only_hashes_are_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let store = TokenFileStore::new(&path);
        let index = TokenIndex::new(path.clone());
        let (alice, alice_token) = store.create("alice", Role::Responder).unwrap();
        let (_, bot_token) = store.create("ci-bot", Role::Viewer).unwrap();
        assert!(alice_token.starts_with(&format!("kw_{}_", alice.id)));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&alice_token) && !text.contains(&alice_token[14..]));
        assert_eq!(
            index.lookup(&alice_token),
            Some(("alice".to_owned(), Role::Responder))
        );
        assert_eq!(index.lookup("kw_nothing_here"), None);
        store.revoke(&alice.id).unwrap();
        assert_eq!(index.lookup(&alice_token), None, "revoked at once");
        assert!(index.lookup(&bot_token).is_some());
        let listed = store.list().unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed[0].revoked.is_some() && listed[1].revoked.is_none());
        assert!(matches!(
            store.revoke(&alice.id),
            Err(TokenError::NotFound(_))
        ));
        // By user: every live token of theirs.
        assert_eq!(store.revoke("ci-bot").unwrap().len(), 1);
        assert_eq!(index.lookup(&bot_token), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_damaged_file_authorises_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let store = TokenFileStore::new(&path);
        let (_, token) = store.create("alice", Role::Admin).unwrap();
        let index = TokenIndex::new(path.clone());
        assert!(index.lookup(&token).is_some());
        std::fs::write(&path, "{ not json").unwrap();
        assert_eq!(index.lookup(&token), None);
        assert!(matches!(store.list(), Err(TokenError::Format { .. })));
    }
}
