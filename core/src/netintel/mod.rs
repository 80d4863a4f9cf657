//! Network intelligence: who owns a source address, where it is, and whether
//! it belongs to a cloud provider, a VPN, an office or a known attacker.
//!
//! Everything comes from files (`[netintel]`), written by `keywatch
//! netintel update` into `netintel.dir` or supplied by the user: MaxMind DB
//! files (`.mmdb`) for the place, a MaxMind DB or a range file (`.csv`) for
//! the ASN, the cloud providers' published ranges, and labelled lists. [`NetIntel`] holds them as one
//! [`Tables`] value, swapped atomically when a file changes; a file that
//! cannot be read keeps the previous tables in force (logged, counted).
//!
//! The per-event cost is one [`Tables::lookup`] when a key's source changes
//! (the key's [`NetMemory`](crate::engine::net_memory::NetMemory) keeps the last answer), and nothing at all when
//! no file is configured. An IPv4 address is answered from one table of
//! every table's IPv4 answers, flattened at load (`flat`: a few memory
//! reads, where walking a MaxMind tree costs a cache miss per level); an
//! IPv6 address from a cache of whole answers by /64 where every table
//! answers the same for the whole block, or from the tables. Names (city,
//! organisation, list labels) are read only when a finding is described
//! ([`Tables::describe`]).
//!
//! The files: `mod.rs` holds the error, [`NetInfo`] and [`ListLabel`];
//! `owner_class` the owner classes and the organisation-name heuristic;
//! `mmdb` the reading of MaxMind DBs; `asn_ranges` the ASN range files; `tables` the [`Tables`] and their
//! lookups, with `cache` for their per-load caches; `reload` the
//! [`NetIntel`] handle, which loads and reloads the tables; `ranges` the
//! cloud ranges and lists; `flat` the flattened IPv4 table; `config` the
//! `[netintel]` section.

mod asn_ranges;
mod cache;
pub mod config;
mod flat;
mod mmdb;
mod owner_class;
pub mod ranges;
mod reload;
mod tables;

use std::path::PathBuf;

pub use flat::FlatStats;
pub use owner_class::{class_of_org, OwnerClass};
pub use reload::NetIntel;
pub use tables::{distance_km, Counters, Tables};

use config::ListKind;

/// Why an enrichment file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NetIntelError {
    /// The file cannot be read.
    #[error("netintel file {}: cannot read it: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a MaxMind DB, or not one with the fields needed.
    #[error("netintel file {}: not a usable MaxMind DB: {reason}", path.display())]
    Mmdb {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A cloud ranges file or a list that does not parse.
    #[error("netintel file {}: {what}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line where there is one.
        what: String,
    },
    /// More distinct list labels than a lookup can carry.
    #[error("netintel.lists: {0} distinct labels; at most 64 are supported")]
    TooManyLabels(usize),
}

/// What one address is, as the detectors need it on every event: numbers
/// only, names are read when a finding is described.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NetInfo {
    /// Autonomous system number (0: unknown).
    pub asn: u32,
    /// ISO 3166 country code (zeros: unknown).
    pub country: [u8; 2],
    /// Latitude, degrees.
    pub lat: f32,
    /// Longitude, degrees.
    pub lon: f32,
    /// How far off the coordinates may be, km.
    pub accuracy_km: u16,
    /// Whether coordinates are known.
    pub located: bool,
    /// Hash of the cloud label (`aws:ec2:us-east-1`); 0: no cloud range.
    /// A hash, not an index, so it means the same across reloads.
    pub cloud: u32,
    /// The lists holding the address, one bit per [`ListLabel`].
    pub lists: u64,
}

impl NetInfo {
    /// The country code as text, if known.
    pub fn country_str(&self) -> Option<&str> {
        (self.country != [0, 0])
            .then(|| std::str::from_utf8(&self.country).ok())
            .flatten()
    }
}

/// A list label and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListLabel {
    /// Label shown in evidence.
    pub label: String,
    /// What the networks are.
    pub kind: ListKind,
}

#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
