//! The types every floor of the core shares, at the bottom so that none of
//! them pulls in another component: event time in seconds, the kinds of
//! identity, networks as written in configuration and inventories,
//! durations as written, and the error a configuration check returns.

mod duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

pub use duration::HumanDuration;

/// Seconds since the Unix epoch, event time. `u32` lasts until 2106.
pub type Secs = u32;

/// Keeps the `cap` most recently used (`last_seen`) of the entries `pick`
/// selects, in their order; the rest of `pick`'s entries are dropped (on a
/// tie the earlier stay). Others are untouched. Returns how many went.
///
/// For state read back from a checkpoint or the changelog: a table written
/// under a larger cap, or a damaged one, would otherwise make every event
/// on the key pay for what the configuration says it never keeps.
pub fn keep_recent<A: smallvec::Array>(
    entries: &mut SmallVec<A>,
    cap: usize,
    last_seen: impl Fn(&A::Item) -> Secs,
    pick: impl Fn(&A::Item) -> bool,
) -> usize {
    // Every restored key passes here: within the cap (the rule) costs a count.
    if entries.iter().filter(|e| pick(e)).count() <= cap {
        return 0;
    }
    let mut times: Vec<Secs> = entries.iter().filter(|e| pick(e)).map(&last_seen).collect();
    times.sort_unstable_by(|a, b| b.cmp(a));
    let before = entries.len();
    if cap == 0 {
        entries.retain(|e| !pick(e));
        return before - entries.len();
    }
    let cut = times[cap - 1];
    let mut ties = times[..cap].iter().filter(|&&t| t == cut).count();
    entries.retain(|e| {
        if !pick(e) {
            return true;
        }
        let t = last_seen(e);
        if t == cut && ties > 0 {
            ties -= 1;
            return true;
        }
        t > cut
    });
    before - entries.len()
}

/// Reads a `SmallVec` without trusting the length its encoding states for
/// the allocation (smallvec's own `Deserialize` reserves all of it up front):
/// a corrupt length in a checkpoint must fail when the elements run out,
/// not reserve gigabytes first. Capacity still grows as elements arrive.
pub fn bounded_seq<'de, D, A>(d: D) -> Result<SmallVec<A>, D::Error>
where
    D: serde::Deserializer<'de>,
    A: smallvec::Array,
    A::Item: Deserialize<'de>,
{
    struct Visit<A>(std::marker::PhantomData<A>);
    impl<'de, A> serde::de::Visitor<'de> for Visit<A>
    where
        A: smallvec::Array,
        A::Item: Deserialize<'de>,
    {
        type Value = SmallVec<A>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a sequence")
        }
        fn visit_seq<S: serde::de::SeqAccess<'de>>(
            self,
            mut seq: S,
        ) -> Result<SmallVec<A>, S::Error> {
            // A real table holds at most its per-key cap (a u16): start small.
            let mut out = SmallVec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            while let Some(item) = seq.next_element()? {
                out.push(item);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Visit(std::marker::PhantomData))
}

/// An identity the engine keeps a baseline for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    /// The credential itself (always tracked).
    KeyId,
    /// The principal holding it: catches a stolen identity that mints fresh
    /// temporary keys, each too new to have a baseline of its own.
    Principal,
}

impl Entity {
    /// Name in configuration, findings and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::KeyId => "key_id",
            Entity::Principal => "principal",
        }
    }
}

/// A network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`); a bare
/// address means just that host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub IpNet);

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        s.parse::<IpNet>()
            .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
            .map(|n| Cidr(n.trunc()))
            .map_err(|_| {
                format!("invalid network {s:?}: write e.g. \"10.0.0.0/8\" or \"2001:db8::/32\"")
            })
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Configuration that cannot be used. Every variant names the key and value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed, or a key/value was refused by type.
    #[error("{0}")]
    Load(String),
    /// A value is out of range or inconsistent with another.
    #[error("`{key}` = {value}: {reason}")]
    Invalid {
        /// Dotted key path.
        key: String,
        /// The offending value as written.
        value: String,
        /// What is wrong and what would be right.
        reason: String,
    },
    /// An error of the configuration file named.
    #[error("{file}: {inner}")]
    InFile {
        /// The file.
        file: String,
        /// What is wrong in it.
        inner: Box<ConfigError>,
    },
}

/// A [`ConfigError::Invalid`]: `key` = `value`, and why not.
pub fn invalid(key: &str, value: impl std::fmt::Display, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        value: value.to_string(),
        reason: reason.into(),
    }
}
