//! Network intelligence: who owns a source address, where it is, and whether
//! it belongs to a cloud provider, a VPN, an office or a known attacker.
//!
//! Everything comes from files the user supplies (`[netintel]`): MaxMind DB
//! files (`.mmdb`) for the place and for the ASN, the cloud providers'
//! published ranges, and labelled lists. [`NetIntel`] holds them as one
//! [`Tables`] value, swapped atomically when a file changes; a file that
//! cannot be read keeps the previous tables in force (logged, counted).
//!
//! The per-event cost is one [`Tables::lookup`] when a key's source changes
//! (the key's [`NetMemory`] keeps the last answer), and nothing at all when
//! no file is configured. An IPv4 address is answered from one table of
//! every table's IPv4 answers, flattened at load (`flat`: a few memory
//! reads, where walking a MaxMind tree costs a cache miss per level); an
//! IPv6 address from a cache of whole answers by /64 where every table
//! answers the same for the whole block, or from the tables. Names (city,
//! organisation, list labels) are read only when a finding is described
//! ([`Tables::describe`]).

pub mod config;
mod flat;
pub mod ranges;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use maxminddb::Reader;
use prometheus::{IntCounter, IntGauge};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use xxhash_rust::xxh3::xxh3_64;

pub use flat::FlatStats;
use ranges::{addr_key, RangeTable};

use crate::metrics::Metrics;
use config::{ListKind, NetIntelConfig};

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

/// How an address's owner is classed, for `new_source` and travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerClass {
    /// In a cloud provider's published ranges.
    Cloud,
    /// A hosting provider: by a `hosting` list, or by its organisation's name.
    Hosting,
    /// A VPN: by a `vpn` list, or by its organisation's name.
    Vpn,
    /// A Tor exit (by a `tor` list).
    Tor,
    /// An access network (an ISP: home, mobile, office lines).
    Isp,
    /// Nothing known.
    Unknown,
}

impl OwnerClass {
    /// Name in evidence.
    pub fn as_str(self) -> &'static str {
        match self {
            OwnerClass::Cloud => "cloud",
            OwnerClass::Hosting => "hosting",
            OwnerClass::Vpn => "vpn",
            OwnerClass::Tor => "tor",
            OwnerClass::Isp => "isp",
            OwnerClass::Unknown => "unknown",
        }
    }
}

/// Organisation-name fragments of VPN providers (a heuristic: a `vpn` list
/// is the reliable way).
const VPN_WORDS: &[&str] = &[
    "vpn",
    "proxy",
    "mullvad",
    "privax",
    "tefincom",
    "packethub",
    "datacamp",
    "anonymous",
];

/// Organisation-name fragments of hosting providers and data centres (a
/// heuristic: a `hosting` list is the reliable way).
const HOSTING_WORDS: &[&str] = &[
    "hosting",
    "host ",
    "server",
    "datacenter",
    "data center",
    "data-center",
    "colo",
    "vps",
    "dedicated",
    "cloud",
    "digitalocean",
    "linode",
    "akamai",
    "vultr",
    "choopa",
    "ovh",
    "hetzner",
    "leaseweb",
    "m247",
    "contabo",
    "scaleway",
    "amazon",
    "google",
    "microsoft",
    "oracle",
    "alibaba",
    "tencent",
    "frantech",
    "quadranet",
    "colocrossing",
    "psychz",
    "cdn77",
    "servers",
    "hostinger",
    "ionos",
    "kamatera",
];

/// Classes an organisation by its name alone.
pub fn class_of_org(org: &str) -> OwnerClass {
    let org = org.to_ascii_lowercase();
    if VPN_WORDS.iter().any(|w| org.contains(w)) {
        OwnerClass::Vpn
    } else if HOSTING_WORDS.iter().any(|w| org.contains(w)) {
        OwnerClass::Hosting
    } else if org.is_empty() {
        OwnerClass::Unknown
    } else {
        OwnerClass::Isp
    }
}

/// The fields read on every lookup, borrowed from the database.
#[derive(Deserialize)]
struct CityFast<'a> {
    #[serde(borrow)]
    country: Option<CountryCode<'a>>,
    #[serde(borrow)]
    registered_country: Option<CountryCode<'a>>,
    location: Option<Location>,
}

#[derive(Deserialize)]
struct CountryCode<'a> {
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Location {
    latitude: Option<f64>,
    longitude: Option<f64>,
    accuracy_radius: Option<u16>,
}

/// The names read when a finding is described.
#[derive(Deserialize)]
struct CityNames<'a> {
    #[serde(borrow)]
    city: Option<Named<'a>>,
}

#[derive(Deserialize)]
struct Named<'a> {
    #[serde(borrow)]
    names: Option<EnglishName<'a>>,
}

#[derive(Deserialize)]
struct EnglishName<'a> {
    en: Option<&'a str>,
}

#[derive(Deserialize)]
struct AsnFast {
    autonomous_system_number: Option<u32>,
}

#[derive(Deserialize)]
struct AsnNamed<'a> {
    autonomous_system_number: Option<u32>,
    autonomous_system_organization: Option<&'a str>,
}

/// The numbers of a decoded city record.
fn place(rec: CityFast<'_>) -> Place {
    let mut out = Place::default();
    let code = rec
        .country
        .and_then(|c| c.iso_code)
        .or_else(|| rec.registered_country.and_then(|c| c.iso_code));
    if let Some(&[a, b]) = code.map(str::as_bytes) {
        out.country = [a.to_ascii_uppercase(), b.to_ascii_uppercase()];
    }
    if let Some(Location {
        latitude: Some(lat),
        longitude: Some(lon),
        accuracy_radius,
    }) = rec.location
    {
        out.lat = lat as f32;
        out.lon = lon as f32;
        out.accuracy_km = accuracy_radius.unwrap_or(0);
        out.located = true;
    }
    out
}

/// The city fields of a record found by a lookup (the default when it
/// cannot be decoded, as when nothing is found).
fn decode_place(found: &maxminddb::LookupResult<'_, Vec<u8>>) -> Place {
    found
        .decode::<CityFast<'_>>()
        .ok()
        .flatten()
        .map_or_else(Place::default, place)
}

/// The ASN of a record found by a lookup (0: none or unreadable).
fn decode_asn(found: &maxminddb::LookupResult<'_, Vec<u8>>) -> u32 {
    found
        .decode::<AsnFast>()
        .ok()
        .flatten()
        .and_then(|rec| rec.autonomous_system_number)
        .unwrap_or(0)
}

/// Every table's IPv4 answers merged into one [`flat::FlatV4`].
fn flatten_v4(
    city: Option<&Reader<Vec<u8>>>,
    asn: Option<&Reader<Vec<u8>>>,
    cloud: &RangeTable<u32>,
    lists: &RangeTable<u64>,
) -> Option<flat::FlatV4> {
    let started = std::time::Instant::now();
    let city = match city {
        Some(r) => flat::mmdb_steps(r, decode_place)?,
        None => vec![(0, Place::default())],
    };
    let asn = match asn {
        Some(r) => flat::mmdb_steps(r, decode_asn)?,
        None => vec![(0, 0)],
    };
    Some(flat::FlatV4::build(
        &city,
        &asn,
        &cloud.v4_steps(),
        &lists.v4_steps(),
        |info, p: Place| {
            info.country = p.country;
            info.lat = p.lat;
            info.lon = p.lon;
            info.accuracy_km = p.accuracy_km;
            info.located = p.located;
        },
        started,
    ))
}

/// Numbers each load is tagged with, so a key's cached answer from older
/// tables is looked up again.
static GENERATION: AtomicU32 = AtomicU32::new(1);

/// Per-event counters, shared by every generation of tables.
#[derive(Debug, Clone)]
pub struct Counters {
    /// Lookups in the tables.
    pub looked_up: IntCounter,
    /// Events answered from the key's cached answer.
    pub cached: IntCounter,
}

/// Everything loaded from the enrichment files.
pub struct Tables {
    city: Option<Reader<Vec<u8>>>,
    asn: Option<Reader<Vec<u8>>>,
    cloud: RangeTable<u32>,
    cloud_labels: Vec<(u32, String)>,
    lists: RangeTable<u64>,
    list_labels: Vec<ListLabel>,
    /// Bits of `list_labels` whose kind alerts (tor, threat).
    alerting: u64,
    /// Bits whose kind excludes a place from travel (vpn, office, tor, hosting).
    unplaced: u64,
    /// Entries loaded per kind of file: `city`, `asn`, `cloud`, `list`.
    pub entries: [(&'static str, usize); 4],
    /// Which load this is.
    pub generation: u32,
    counters: Counters,
    /// Decoded city and ASN records by their place in the database.
    city_records: RecordCache<Place>,
    asn_records: RecordCache<u32>,
    /// Whole answers by /24 (IPv6 /64), where every table answers the
    /// same for the whole block.
    answers: AnswerCache,
    /// Every IPv4 answer, flattened at load (`None`: a MaxMind DB whose
    /// tree does not list its networks in order; IPv4 walks the trees).
    v4: Option<flat::FlatV4>,
    /// Whether [`Tables::lookup`] reads `v4` (see [`Tables::set_flat_v4`]).
    flat_on: std::sync::atomic::AtomicBool,
}

/// The block an address's answer may be shared in: its IPv4 /24 or IPv6
/// /64, as first and last address on the line of [`addr_key`].
fn block_of(ip: IpAddr) -> (u128, u128) {
    let key = addr_key(ip);
    let host_bits = if ip.is_ipv4() { 8 } else { 64 };
    let lo = key >> host_bits << host_bits;
    (lo, lo | ((1u128 << host_bits) - 1))
}

/// Whether a MaxMind DB's answer for `ip`, found in a network of
/// `prefix` bits (`v4`: an IPv4 network), holds for the whole block of `ip`
/// ([`block_of`]); `None`: the network is not known.
fn mmdb_covers_block(ip: IpAddr, network: Option<(bool, u8)>) -> bool {
    match (ip, network) {
        (IpAddr::V4(_), Some((true, prefix))) => prefix <= 24,
        // An IPv4 address answered above the database's IPv4 subtree.
        (IpAddr::V4(_), Some((false, prefix))) => prefix <= 96,
        (IpAddr::V6(_), Some((_, prefix))) => prefix <= 64,
        (_, None) => false,
    }
}

/// Whole answers ([`NetInfo`]) by the address block they hold for: the
/// addresses of one /64 (or /24, for [`Tables::lookup_blocks`]; IPv4
/// lookups use the flattened table) share one answer when every table (the
/// MaxMind DBs' networks, the cloud and list intervals) covers the whole
/// block, as a GeoLite2 network almost always does. An answer that differs inside
/// the block is never stored (those addresses are looked up each time), so
/// the cache is exact. Direct-mapped, [`AnswerCache::SLOTS`] slots each
/// behind its own lock; it belongs to one load of the tables, so a reload
/// starts empty.
struct AnswerCache {
    slots: Box<[Mutex<(u128, NetInfo)>]>,
}

impl AnswerCache {
    /// 32768 slots of 64 bytes: 2 MiB per load (a GeoLite2-City file is
    /// 30 times that); the busy /64s of a large fleet rarely share a slot.
    const SLOTS: usize = 32768;
    /// No block starts here (a block's low bits are zeros).
    const EMPTY: u128 = u128::MAX;

    fn new() -> AnswerCache {
        AnswerCache {
            slots: (0..Self::SLOTS)
                .map(|_| Mutex::new((Self::EMPTY, NetInfo::default())))
                .collect(),
        }
    }

    fn slot(&self, block: u128) -> &Mutex<(u128, NetInfo)> {
        let h = ((block >> 64) as u64 ^ block as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        &self.slots[(h >> 32) as usize & (Self::SLOTS - 1)]
    }

    fn get(&self, block: u128) -> Option<NetInfo> {
        let s = self.slot(block).lock().ok()?;
        (s.0 == block).then_some(s.1)
    }

    fn put(&self, block: u128, info: NetInfo) {
        if let Ok(mut s) = self.slot(block).lock() {
            *s = (block, info);
        }
    }
}

/// What a city record says, decoded.
#[derive(Debug, Clone, Copy, Default)]
struct Place {
    country: [u8; 2],
    lat: f32,
    lon: f32,
    accuracy_km: u16,
    located: bool,
}

/// Decoded MaxMind records by their offset in the database's data section:
/// the addresses of a network share one record, and decoding a GeoLite2
/// City record walks past its names in eight languages (~2 µs) where the
/// tree walk that finds it takes a tenth of that. Exact (a record is the
/// same whichever address found it); direct-mapped, 4096 slots, each behind
/// its own lock (threads meet on a slot rarely).
struct RecordCache<T> {
    slots: Box<[std::sync::Mutex<(usize, T)>]>,
}

impl<T: Copy + Default> RecordCache<T> {
    const SLOTS: usize = 4096;

    fn new() -> RecordCache<T> {
        RecordCache {
            slots: (0..Self::SLOTS)
                .map(|_| std::sync::Mutex::new((usize::MAX, T::default())))
                .collect(),
        }
    }

    /// The record at `offset`, decoded by `decode` when not cached.
    fn get(&self, offset: usize, decode: impl FnOnce() -> T) -> T {
        let slot =
            &self.slots[offset.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52 & (Self::SLOTS - 1)];
        if let Ok(s) = slot.lock() {
            if s.0 == offset {
                return s.1;
            }
        }
        let value = decode();
        if let Ok(mut s) = slot.lock() {
            *s = (offset, value);
        }
        value
    }
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tables")
            .field("entries", &self.entries)
            .field("generation", &self.generation)
            .finish()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, NetIntelError> {
    std::fs::read(path).map_err(|source| NetIntelError::Read {
        path: path.to_owned(),
        source,
    })
}

fn open_mmdb(path: &Path, probe: &[&str]) -> Result<Reader<Vec<u8>>, NetIntelError> {
    let bad = |reason: String| NetIntelError::Mmdb {
        path: path.to_owned(),
        reason,
    };
    let reader = Reader::from_source(read(path)?).map_err(|e| bad(e.to_string()))?;
    let kind = reader.metadata().database_type.to_ascii_lowercase();
    if !probe.iter().any(|p| kind.contains(p)) {
        return Err(bad(format!(
            "its database_type is {:?}; expected one containing {}",
            reader.metadata().database_type,
            probe.join(" or ")
        )));
    }
    Ok(reader)
}

/// Label hash as [`NetInfo::cloud`] carries it (never 0).
fn label_hash(label: &str) -> u32 {
    (xxh3_64(label.as_bytes()) as u32).max(1)
}

impl Tables {
    /// Loads every configured file; the first that cannot be used is the error.
    pub fn load(cfg: &NetIntelConfig, counters: Counters) -> Result<Tables, NetIntelError> {
        let city = match &cfg.city_db {
            Some(p) => Some(open_mmdb(p, &["city", "country", "geo", "location"])?),
            None => None,
        };
        let asn = match &cfg.asn_db {
            Some(p) => Some(open_mmdb(p, &["asn", "isp", "as"])?),
            None => None,
        };
        let mut cloud_prefixes = Vec::new();
        let mut cloud_labels: Vec<(u32, String)> = Vec::new();
        for path in &cfg.cloud_ranges {
            for (net, label) in ranges::parse_cloud(path, &read(path)?)? {
                let h = label_hash(&label);
                if !cloud_labels.iter().any(|(x, _)| *x == h) {
                    cloud_labels.push((h, label));
                }
                cloud_prefixes.push((net, h));
            }
        }
        let cloud_entries = cloud_prefixes.len();
        let cloud = RangeTable::build(cloud_prefixes, |_, inner| inner);
        let mut list_labels: Vec<ListLabel> = Vec::new();
        let mut list_prefixes = Vec::new();
        for list in &cfg.lists {
            for l in ranges::parse_list(&list.path, &read(&list.path)?, &list.label, list.kind)? {
                let bit = match list_labels
                    .iter()
                    .position(|x| x.label == l.label && x.kind == l.kind)
                {
                    Some(i) => i,
                    None => {
                        list_labels.push(ListLabel {
                            label: l.label,
                            kind: l.kind,
                        });
                        list_labels.len() - 1
                    }
                };
                if bit >= 64 {
                    return Err(NetIntelError::TooManyLabels(list_labels.len()));
                }
                list_prefixes.push((l.net, 1u64 << bit));
            }
        }
        let list_entries = list_prefixes.len();
        let lists = RangeTable::build(list_prefixes, |outer, inner| outer | inner);
        let mask = |f: fn(ListKind) -> bool| {
            list_labels
                .iter()
                .enumerate()
                .filter(|(_, l)| f(l.kind))
                .fold(0u64, |m, (i, _)| m | (1 << i))
        };
        let alerting = mask(ListKind::alerts);
        let unplaced = mask(|k| !matches!(k, ListKind::Threat));
        let v4 = flatten_v4(city.as_ref(), asn.as_ref(), &cloud, &lists);
        match v4.as_ref().map(flat::FlatV4::stats) {
            Some(s) => tracing::info!(
                intervals = s.intervals,
                answers = s.answers,
                mib = s.bytes as f64 / (1 << 20) as f64,
                ms = s.build.as_millis() as u64,
                "IPv4 answers flattened"
            ),
            None => tracing::warn!(
                "a MaxMind DB's IPv4 networks are not in order; IPv4 lookups walk its tree"
            ),
        }
        let mmdb_len = |r: &Option<Reader<Vec<u8>>>| {
            r.as_ref().map_or(0, |r| r.metadata().node_count as usize)
        };
        Ok(Tables {
            entries: [
                ("city", mmdb_len(&city)),
                ("asn", mmdb_len(&asn)),
                ("cloud", cloud_entries),
                ("list", list_entries),
            ],
            city,
            asn,
            cloud,
            cloud_labels,
            lists,
            list_labels,
            alerting,
            unplaced,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            counters,
            city_records: RecordCache::new(),
            asn_records: RecordCache::new(),
            answers: AnswerCache::new(),
            v4,
            flat_on: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// What `ip` is: the numbers the detectors judge on every new source.
    /// An IPv4 address is answered from the flattened table (a handful of
    /// memory reads); an IPv6 one from the block cache when its /64 is one
    /// answer throughout, looked up in every table otherwise.
    pub fn lookup(&self, ip: IpAddr) -> NetInfo {
        self.counters.looked_up.inc();
        match (ip, &self.v4) {
            (IpAddr::V4(a), Some(v4)) if self.flat_on.load(Ordering::Relaxed) => {
                v4.get(u32::from(a))
            }
            _ => self.lookup_blocks(ip),
        }
    }

    /// Whether [`Tables::lookup`] answers IPv4 from the flattened table
    /// (from the load on) or, `false`, as [`Tables::lookup_blocks`]: for
    /// measuring the engine with either; the answers are the same.
    #[doc(hidden)]
    pub fn set_flat_v4(&self, on: bool) {
        self.flat_on.store(on, Ordering::Relaxed);
    }

    /// [`Tables::lookup`] as it was before IPv4 was flattened: the block
    /// cache, then the MaxMind trees and the range tables (for measuring
    /// the flattened table against it).
    pub fn lookup_blocks(&self, ip: IpAddr) -> NetInfo {
        let (lo, hi) = block_of(ip);
        if let Some(info) = self.answers.get(lo) {
            return info;
        }
        let (info, whole) = self.lookup_tables(ip, lo, hi);
        if whole {
            self.answers.put(lo, info);
        }
        info
    }

    /// The MaxMind trees and the range tables alone, without the block
    /// cache or the flattened table: the answer both must give.
    pub fn lookup_uncached(&self, ip: IpAddr) -> NetInfo {
        let (lo, hi) = block_of(ip);
        self.lookup_tables(ip, lo, hi).0
    }

    /// What the flattened IPv4 table holds and how long it took to build.
    pub fn flat_v4_stats(&self) -> Option<FlatStats> {
        self.v4.as_ref().map(flat::FlatV4::stats)
    }

    /// Looks `ip` up in every table; says too whether the answer holds for
    /// every address of its block `lo..=hi`.
    fn lookup_tables(&self, ip: IpAddr, lo: u128, hi: u128) -> (NetInfo, bool) {
        let mut info = NetInfo::default();
        let mut whole = true;
        if let Some(r) = &self.city {
            match r.lookup(ip) {
                Ok(found) => {
                    whole &= mmdb_covers_block(
                        ip,
                        found.network().ok().map(|n| (n.is_ipv4(), n.prefix())),
                    );
                    if let Some(offset) = found.offset() {
                        let place = self.city_records.get(offset, || decode_place(&found));
                        info.country = place.country;
                        info.lat = place.lat;
                        info.lon = place.lon;
                        info.accuracy_km = place.accuracy_km;
                        info.located = place.located;
                    }
                }
                Err(_) => whole = false,
            }
        }
        if let Some(r) = &self.asn {
            match r.lookup(ip) {
                Ok(found) => {
                    whole &= mmdb_covers_block(
                        ip,
                        found.network().ok().map(|n| (n.is_ipv4(), n.prefix())),
                    );
                    if let Some(offset) = found.offset() {
                        info.asn = self.asn_records.get(offset, || decode_asn(&found));
                    }
                }
                Err(_) => whole = false,
            }
        }
        let key = addr_key(ip);
        let (cloud, cloud_whole) = self.cloud.get_block(key, lo, hi);
        let (lists, lists_whole) = self.lists.get_block(key, lo, hi);
        info.cloud = cloud.unwrap_or(0);
        info.lists = lists.unwrap_or(0);
        (info, whole && cloud_whole && lists_whole)
    }

    /// Counts an event answered from a key's cached lookup.
    pub fn count_cached(&self) {
        self.counters.cached.inc();
    }

    /// The cloud label a [`NetInfo::cloud`] hash stands for.
    pub fn cloud_label(&self, hash: u32) -> Option<&str> {
        self.cloud_labels
            .iter()
            .find(|(h, _)| *h == hash)
            .map(|(_, l)| l.as_str())
    }

    /// The list labels of a [`NetInfo::lists`] mask.
    pub fn labels(&self, mask: u64) -> impl Iterator<Item = &ListLabel> {
        self.list_labels
            .iter()
            .enumerate()
            .filter(move |(i, _)| mask & (1 << i) != 0)
            .map(|(_, l)| l)
    }

    /// The lists of `mask` whose kind alerts.
    pub fn alerting(&self, mask: u64) -> u64 {
        mask & self.alerting
    }

    /// Whether a place seen through `info` says where a person is: not a
    /// cloud range and not a VPN, office, Tor or hosting list.
    pub fn placed(&self, info: &NetInfo) -> bool {
        info.located && info.cloud == 0 && info.lists & self.unplaced == 0
    }

    /// The organisation owning `ip`, from the ASN database.
    pub fn org(&self, ip: IpAddr) -> Option<(u32, String)> {
        let r = self.asn.as_ref()?;
        let rec = r.lookup(ip).ok()?.decode::<AsnNamed<'_>>().ok()??;
        Some((
            rec.autonomous_system_number.unwrap_or(0),
            rec.autonomous_system_organization.unwrap_or("").to_owned(),
        ))
    }

    /// How the owner of `ip` (looked up as `info`) is classed: lists first,
    /// then cloud ranges, then the organisation's name (a heuristic).
    pub fn class(&self, ip: IpAddr, info: &NetInfo) -> OwnerClass {
        let kinds = || self.labels(info.lists).map(|l| l.kind);
        if kinds().any(|k| k == ListKind::Tor) {
            OwnerClass::Tor
        } else if kinds().any(|k| k == ListKind::Vpn) {
            OwnerClass::Vpn
        } else if info.cloud != 0 {
            OwnerClass::Cloud
        } else if kinds().any(|k| k == ListKind::Hosting) {
            OwnerClass::Hosting
        } else {
            self.org(ip)
                .map_or(OwnerClass::Unknown, |(_, org)| class_of_org(&org))
        }
    }

    /// Everything known about `ip`, for evidence and the API.
    pub fn describe(&self, ip: IpAddr) -> Value {
        let info = self.lookup(ip);
        let mut out = serde_json::Map::new();
        out.insert("address".into(), json!(ip.to_string()));
        if let Some((asn, org)) = self.org(ip) {
            out.insert("asn".into(), json!(asn));
            out.insert("org".into(), json!(org));
        }
        if let Some(c) = info.country_str() {
            out.insert("country".into(), json!(c));
        }
        if let Some(r) = &self.city {
            if let Ok(Some(n)) = r.lookup(ip).and_then(|l| l.decode::<CityNames<'_>>()) {
                if let Some(city) = n.city.and_then(|c| c.names).and_then(|n| n.en) {
                    out.insert("city".into(), json!(city));
                }
            }
        }
        if info.located {
            out.insert("lat".into(), json!(round2(info.lat)));
            out.insert("lon".into(), json!(round2(info.lon)));
            out.insert("accuracy_km".into(), json!(info.accuracy_km));
        }
        if let Some(label) = self.cloud_label(info.cloud) {
            out.insert("cloud".into(), json!(label));
        }
        let lists: Vec<Value> = self
            .labels(info.lists)
            .map(|l| json!({"label": l.label, "kind": l.kind.as_str()}))
            .collect();
        if !lists.is_empty() {
            out.insert("lists".into(), Value::Array(lists));
        }
        if self.asn.is_some() || info.lists != 0 || info.cloud != 0 {
            out.insert("class".into(), json!(self.class(ip, &info).as_str()));
        }
        Value::Object(out)
    }
}

fn round2(x: f32) -> f64 {
    (x as f64 * 100.0).round() / 100.0
}

/// Great-circle distance, km.
pub fn distance_km(lat1: f32, lon1: f32, lat2: f32, lon2: f32) -> f64 {
    let (p1, p2) = ((lat1 as f64).to_radians(), (lat2 as f64).to_radians());
    let dp = p2 - p1;
    let dl = (lon2 as f64 - lon1 as f64).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0 * a.sqrt().min(1.0).asin()
}

/// A cheap-to-clone handle to the tables in force and the files they came from.
#[derive(Clone)]
pub struct NetIntel {
    inner: Arc<Shared>,
}

struct Shared {
    cfg: NetIntelConfig,
    current: ArcSwap<Tables>,
    /// Modification time and size of each file as last read.
    seen: Mutex<Vec<(Option<SystemTime>, u64)>>,
    counters: Counters,
    reloads: [IntCounter; 2],
    entries: Option<[IntGauge; 4]>,
}

impl std::fmt::Debug for NetIntel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetIntel")
            .field("tables", &*self.inner.current.load())
            .finish()
    }
}

impl NetIntel {
    /// Loads the files `cfg` names; with `metrics`, loads, reloads and
    /// lookups are exported.
    pub fn open(
        cfg: &NetIntelConfig,
        metrics: Option<&Metrics>,
    ) -> Result<NetIntel, NetIntelError> {
        let unregistered =
            |name: &str| IntCounter::new(name, "unregistered").expect("valid metric");
        let counters = match metrics {
            Some(m) => Counters {
                looked_up: m.netintel_lookups.with_label_values(&["looked_up"]),
                cached: m.netintel_lookups.with_label_values(&["cached"]),
            },
            None => Counters {
                looked_up: unregistered("looked_up"),
                cached: unregistered("cached"),
            },
        };
        let reloads = match metrics {
            Some(m) => ["ok", "failed"].map(|r| m.netintel_reloads.with_label_values(&[r])),
            None => ["ok", "failed"].map(unregistered),
        };
        let entries = metrics.map(|m| {
            ["city", "asn", "cloud", "list"].map(|k| m.netintel_entries.with_label_values(&[k]))
        });
        let seen = stamps(cfg);
        let tables = Tables::load(cfg, counters.clone())?;
        tracing::info!(entries = ?tables.entries, "network intelligence loaded");
        let handle = NetIntel {
            inner: Arc::new(Shared {
                cfg: cfg.clone(),
                current: ArcSwap::from_pointee(tables),
                seen: Mutex::new(seen),
                counters,
                reloads,
                entries,
            }),
        };
        handle.export_entries();
        Ok(handle)
    }

    /// Opens the files of `cfg` when any is configured.
    pub fn from_config(
        cfg: &NetIntelConfig,
        metrics: Option<&Metrics>,
    ) -> Result<Option<NetIntel>, NetIntelError> {
        cfg.enabled()
            .then(|| NetIntel::open(cfg, metrics))
            .transpose()
    }

    fn export_entries(&self) {
        if let Some(gauges) = &self.inner.entries {
            for (g, (_, n)) in gauges.iter().zip(self.inner.current.load().entries) {
                g.set(n as i64);
            }
        }
    }

    /// The tables in force now, without touching a reference count (the
    /// engine's per-event read).
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Tables>> {
        self.inner.current.load()
    }

    /// Reload results so far: (ok, failed).
    pub fn reloads(&self) -> (u64, u64) {
        (self.inner.reloads[0].get(), self.inner.reloads[1].get())
    }

    /// Re-reads every file now. Valid files replace the tables; a file that
    /// cannot be used is logged by name and counted, and the previous tables stay.
    pub fn reload(&self) -> Result<(), NetIntelError> {
        match Tables::load(&self.inner.cfg, self.inner.counters.clone()) {
            Ok(tables) => {
                tracing::info!(entries = ?tables.entries, "network intelligence reloaded");
                self.inner.current.store(Arc::new(tables));
                self.inner.reloads[0].inc();
                self.export_entries();
                Ok(())
            }
            Err(e) => {
                self.inner.reloads[1].inc();
                tracing::error!(error = %e, "network intelligence reload rejected; the previous tables stay in force");
                Err(e)
            }
        }
    }

    /// Reloads when any file's modification time or size changed.
    pub fn reload_if_changed(&self) -> Option<Result<(), NetIntelError>> {
        let now = stamps(&self.inner.cfg);
        {
            let mut seen = self.inner.seen.lock().unwrap_or_else(|p| p.into_inner());
            if *seen == now {
                return None;
            }
            *seen = now;
        }
        Some(self.reload())
    }

    /// Polls the files every `every` until `shutdown`; loading runs on the
    /// blocking pool.
    pub async fn watch(self, every: Duration, shutdown: CancellationToken) {
        crate::poll::every(every, shutdown, move || {
            self.reload_if_changed();
        })
        .await;
    }
}

/// Every configured file, in order.
fn files(cfg: &NetIntelConfig) -> Vec<&Path> {
    cfg.city_db
        .iter()
        .chain(cfg.asn_db.iter())
        .chain(cfg.cloud_ranges.iter())
        .map(PathBuf::as_path)
        .chain(cfg.lists.iter().map(|l| l.path.as_path()))
        .collect()
}

fn stamps(cfg: &NetIntelConfig) -> Vec<(Option<SystemTime>, u64)> {
    files(cfg)
        .into_iter()
        .map(|p| match std::fs::metadata(p) {
            Ok(m) => (m.modified().ok(), m.len()),
            Err(_) => (None, 0),
        })
        .collect()
}

#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
