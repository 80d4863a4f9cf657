//! The key inventory: every known key with its owner, system, privilege,
//! dates and runtime restrictions (allowed networks and actions, a usage cap,
//! a one-time flag).
//!
//! An [`Inventory`] is immutable once loaded (`load`: TOML, JSON or CSV,
//! validated with errors that name the file, line, entry and field). It may
//! also be made of providers' own exports (`provider`: AWS, Google Cloud,
//! GitHub), merged with keywatch's own file and completed by an owner
//! mapping (`source`, `owners`). The
//! engine reads it through an [`InventoryHandle`], which swaps in a new one
//! atomically when the file changes or on SIGHUP, and keeps the old one when
//! the new file is bad. Per-key engine state lives elsewhere and is never
//! touched by a reload.
//!
//! Sized for a million keys: entries sit in one vector indexed by a table of
//! `u32`s, and owners, teams, systems and restriction lists, which repeat
//! across keys, are shared rather than copied.

pub mod config;
mod entry;
mod handle;
mod load;
mod owners;
mod provider;
mod source;

use std::fmt;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;

use compact_str::CompactString;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use wildmatch::WildMatch;

pub use handle::InventoryHandle;
pub use load::{EntryError, Format, InventoryError};
pub use source::{Source, SourceFormat, Sources};

use crate::owner::{Owner, OwnerLookup};
use crate::types::Secs;

/// How much a key can do, as its inventory entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Privilege {
    /// Reads only.
    Read,
    /// Changes data.
    Write,
    /// Changes who can do what, or everything: its misuse is critical.
    Admin,
}

impl Privilege {
    /// Every level, least first.
    pub const ALL: [Privilege; 3] = [Privilege::Read, Privilege::Write, Privilege::Admin];

    /// Name in inventory files, reports and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Privilege::Read => "read",
            Privilege::Write => "write",
            Privilege::Admin => "admin",
        }
    }
}

impl fmt::Display for Privilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Privilege {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Privilege::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| "must be one of read, write, admin".to_owned())
    }
}

/// At most `count` uses per fixed window of `window_s` seconds (windows are
/// aligned to the Unix epoch, so a `1d` window is a UTC day).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageCap {
    /// Uses allowed per window (weighted by the events' `count`).
    pub count: u32,
    /// Window length, seconds.
    pub window_s: u32,
}

impl UsageCap {
    /// Start of the window holding `t`.
    pub fn window_start(self, t: Secs) -> Secs {
        t - t % self.window_s
    }
}

impl fmt::Display for UsageCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = std::time::Duration::from_secs(self.window_s as u64);
        write!(f, "{}/{}", self.count, humantime::format_duration(d))
    }
}

impl std::str::FromStr for UsageCap {
    type Err = String;

    /// `COUNT/WINDOW`: `1000/1d`, `50/1h`.
    fn from_str(s: &str) -> Result<Self, String> {
        let hint = "write COUNT/WINDOW, e.g. \"1000/1d\" or \"50/1h\"";
        let (count, window) = s.split_once('/').ok_or_else(|| hint.to_owned())?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("count {:?} is not a whole number; {hint}", count.trim()))?;
        if count == 0 {
            return Err(format!("count must be at least 1; {hint}"));
        }
        let window = humantime::parse_duration(window.trim())
            .map_err(|e| format!("window {:?}: {e}; {hint}", window.trim()))?;
        if window.as_secs() < 1 || window.as_secs() > u32::MAX as u64 {
            return Err(format!("window must be between 1s and 100 years; {hint}"));
        }
        Ok(UsageCap {
            count,
            window_s: window.as_secs() as u32,
        })
    }
}

/// An allowed-action glob (`*` any run, `?` one character; case-insensitive).
///
/// `service:Action` patterns (`s3:Get*`, `iam:*`) match an event's
/// `namespace:action` as shown in findings (`s3.amazonaws.com` counts as
/// `s3`); a pattern without a colon matches the action name whatever its
/// service. `*` alone allows everything.
#[derive(Debug)]
pub struct ActionPattern {
    text: Box<str>,
    namespace: Option<WildMatch>,
    action: WildMatch,
}

impl ActionPattern {
    /// Compiles a pattern.
    pub fn parse(text: &str) -> Result<ActionPattern, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("an empty action pattern matches nothing".to_owned());
        }
        let (namespace, action) = match text.split_once(':') {
            Some((ns, action)) if text != "*" => {
                if ns.is_empty() || action.is_empty() {
                    return Err("write service:Action, e.g. \"s3:Get*\"".to_owned());
                }
                (Some(WildMatch::new_case_insensitive(ns)), action)
            }
            _ => (None, text),
        };
        Ok(ActionPattern {
            text: text.into(),
            namespace,
            action: WildMatch::new_case_insensitive(action),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern allows `action` of service `namespace` (short form:
    /// `s3`, not `s3.amazonaws.com`).
    pub fn matches(&self, namespace: Option<&str>, action: &str) -> bool {
        match (&self.namespace, namespace) {
            (None, _) => self.action.matches(action),
            (Some(ns), Some(n)) => ns.matches(n) && self.action.matches(action),
            (Some(_), None) => false,
        }
    }

    /// A short stable hash of the pattern text, to remember which patterns a
    /// key's uses matched without keeping the text per key.
    pub fn id(&self) -> u32 {
        xxhash_rust::xxh3::xxh3_64(self.text.as_bytes()) as u32
    }
}

impl PartialEq for ActionPattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

/// One known key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyEntry {
    /// The credential's identifier, as events carry it.
    pub key_id: CompactString,
    /// Person or service account responsible for the key.
    pub owner: Arc<str>,
    /// Team or channel that gets the key's alerts.
    pub team: Option<Arc<str>>,
    /// System the key belongs to (billing, ci, data-platform).
    pub system: Option<Arc<str>>,
    /// What the key can do; severity of its misuse follows it.
    pub privilege: Option<Privilege>,
    /// When the key was created.
    pub created: Option<Secs>,
    /// When the key stops being valid; any use after it is `expired_key`.
    pub expires: Option<Secs>,
    /// When the key was last rotated.
    pub last_rotated: Option<Secs>,
    /// Last use as the provider reports it (an IAM credential report), so
    /// dormancy is known before keywatch has seen the key.
    pub last_used: Option<Secs>,
    /// Networks the key may be used from; `None`: anywhere.
    pub allowed_cidrs: Option<Arc<[IpNet]>>,
    /// Actions the key may call; `None`: any.
    pub allowed_actions: Option<Arc<[ActionPattern]>>,
    /// Most uses per window.
    pub usage_cap: Option<UsageCap>,
    /// The key is meant to be used once (a provisioning or enrolment key).
    pub one_time: bool,
    /// The identity the key belongs to at its provider (an IAM user name,
    /// a service account's email, a GitHub login): what an owner mapping
    /// matches, and whom a response action names to the provider.
    pub principal: Option<Arc<str>>,
    /// The provider says the key is switched off (AWS `Inactive`, Google
    /// Cloud `disabled`): it cannot be used, so it is neither stale nor
    /// overdue for rotation.
    pub disabled: bool,
}

impl KeyEntry {
    /// Whether `ip` is inside the allowed networks (true when none are listed).
    pub fn allows_source(&self, ip: IpAddr) -> bool {
        self.allowed_cidrs
            .as_ref()
            .is_none_or(|nets| nets.iter().any(|n| n.contains(&ip)))
    }

    /// Whether the key is past its expiry at `now`.
    pub fn expired_at(&self, now: Secs) -> bool {
        self.expires.is_some_and(|e| now >= e)
    }
}

/// The loaded inventory: known keys by id.
pub struct Inventory {
    entries: Vec<KeyEntry>,
    index: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::RandomState,
}

impl fmt::Debug for Inventory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inventory")
            .field("keys", &self.entries.len())
            .finish()
    }
}

impl Inventory {
    /// Indexes `entries` by key id. An id listed again is not indexed;
    /// `on_duplicate(first, again, entries)` hears of it.
    fn index_unique(
        entries: Vec<KeyEntry>,
        mut on_duplicate: impl FnMut(usize, usize, &[KeyEntry]),
    ) -> Inventory {
        let hasher = foldhash::fast::RandomState::default();
        let mut index = hashbrown::HashTable::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let hash = hasher.hash_one(e.key_id.as_str());
            match index.entry(
                hash,
                |&j: &u32| entries[j as usize].key_id == e.key_id,
                |&j| hasher.hash_one(entries[j as usize].key_id.as_str()),
            ) {
                hashbrown::hash_table::Entry::Occupied(first) => {
                    on_duplicate(*first.get() as usize, i, &entries)
                }
                hashbrown::hash_table::Entry::Vacant(slot) => {
                    slot.insert(i as u32);
                }
            }
        }
        Inventory {
            entries,
            index,
            hasher,
        }
    }

    /// The entry for `key_id`, if the key is known.
    pub fn get(&self, key_id: &str) -> Option<&KeyEntry> {
        let hash = self.hasher.hash_one(key_id);
        self.index
            .find(hash, |&i| self.entries[i as usize].key_id == key_id)
            .map(|&i| &self.entries[i as usize])
    }

    /// Every entry, in file order.
    pub fn entries(&self) -> &[KeyEntry] {
        &self.entries
    }

    /// Number of known keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is listed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl OwnerLookup for Inventory {
    fn owner_of(&self, key_id: &str) -> Option<Owner> {
        self.get(key_id).map(|e| Owner {
            owner: e.owner.to_string(),
            team: e.team.as_deref().map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_patterns() {
        let p = ActionPattern::parse("s3:Get*").unwrap();
        assert!(p.matches(Some("s3"), "GetObject"));
        assert!(p.matches(Some("S3"), "getobject"), "case-insensitive");
        assert!(!p.matches(Some("s3"), "PutObject"));
        assert!(!p.matches(Some("iam"), "GetUser"));
        assert!(
            !p.matches(None, "GetObject"),
            "a service pattern needs a service"
        );
        let bare = ActionPattern::parse("ListBucket").unwrap();
        assert!(bare.matches(Some("s3"), "ListBucket") && bare.matches(None, "ListBucket"));
        assert!(ActionPattern::parse("*")
            .unwrap()
            .matches(Some("iam"), "CreateUser"));
        assert!(ActionPattern::parse("read:secret/*")
            .unwrap()
            .matches(Some("read"), "secret/data/db"));
        assert!(ActionPattern::parse(":x").is_err());
        assert!(ActionPattern::parse(" ").is_err());
    }

    #[test]
    fn usage_caps() {
        let cap: UsageCap = "1000/1d".parse().unwrap();
        assert_eq!(
            cap,
            UsageCap {
                count: 1000,
                window_s: 86_400
            }
        );
        assert_eq!(cap.to_string(), "1000/1day");
        assert_eq!(cap.window_start(86_400 * 3 + 5), 86_400 * 3);
        assert!("0/1d".parse::<UsageCap>().is_err());
        assert!("lots/1d".parse::<UsageCap>().unwrap_err().contains("lots"));
        assert!("10".parse::<UsageCap>().is_err());
        assert!("10/soon".parse::<UsageCap>().unwrap_err().contains("soon"));
    }

    #[test]
    fn privileges_parse_any_case() {
        assert_eq!("Admin".parse::<Privilege>(), Ok(Privilege::Admin));
        assert!("root".parse::<Privilege>().is_err());
    }
}
