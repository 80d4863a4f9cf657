//! Reading the MaxMind DB files: opening and checking them, the record
//! fields decoded on lookups and for descriptions, and the flattening of
//! their IPv4 answers with the range tables into one table at load.

use std::net::IpAddr;
use std::path::Path;

use maxminddb::Reader;
use serde::Deserialize;

use super::flat;
use super::ranges::{addr_key, RangeTable};
use super::tables::Owners;
use super::NetIntelError;

/// The fields read on every lookup, borrowed from the database.
#[derive(Deserialize)]
struct CityFast<'a> {
    /// ip-location-db's and IPinfo Lite's country databases: the code alone.
    #[serde(borrow)]
    country_code: Option<&'a str>,
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
pub(super) struct CityNames<'a> {
    #[serde(borrow)]
    pub(super) city: Option<Named<'a>>,
}

#[derive(Deserialize)]
pub(super) struct Named<'a> {
    #[serde(borrow)]
    pub(super) names: Option<EnglishName<'a>>,
}

#[derive(Deserialize)]
pub(super) struct EnglishName<'a> {
    pub(super) en: Option<&'a str>,
}

#[derive(Deserialize)]
struct AsnFast {
    autonomous_system_number: Option<u32>,
}

#[derive(Deserialize)]
pub(super) struct AsnNamed<'a> {
    pub(super) autonomous_system_number: Option<u32>,
    pub(super) autonomous_system_organization: Option<&'a str>,
}

/// The numbers of a decoded city record.
fn place(rec: CityFast<'_>) -> Place {
    let mut out = Place::default();
    let code = rec
        .country
        .and_then(|c| c.iso_code)
        .or_else(|| rec.registered_country.and_then(|c| c.iso_code))
        .or(rec.country_code);
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
pub(super) fn decode_place(found: &maxminddb::LookupResult<'_, Vec<u8>>) -> Place {
    found
        .decode::<CityFast<'_>>()
        .ok()
        .flatten()
        .map_or_else(Place::default, place)
}

/// The ASN of a record found by a lookup (0: none or unreadable).
pub(super) fn decode_asn(found: &maxminddb::LookupResult<'_, Vec<u8>>) -> u32 {
    found
        .decode::<AsnFast>()
        .ok()
        .flatten()
        .and_then(|rec| rec.autonomous_system_number)
        .unwrap_or(0)
}

/// Every table's IPv4 answers merged into one [`flat::FlatV4`].
pub(super) fn flatten_v4(
    city: Option<&Reader<Vec<u8>>>,
    asn: Option<&Owners>,
    cloud: &RangeTable<u32>,
    lists: &RangeTable<u64>,
) -> Option<flat::FlatV4> {
    let started = std::time::Instant::now();
    let city = match city {
        Some(r) => flat::mmdb_steps(r, decode_place)?,
        None => vec![(0, Place::default())],
    };
    let asn = match asn {
        Some(Owners::Mmdb(r)) => flat::mmdb_steps(r, decode_asn)?,
        Some(Owners::Ranges(t)) => t
            .table
            .v4_steps()
            .into_iter()
            .map(|(s, v)| (s, v.unwrap_or(0)))
            .collect(),
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

/// What a city record says, decoded.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Place {
    pub(super) country: [u8; 2],
    pub(super) lat: f32,
    pub(super) lon: f32,
    pub(super) accuracy_km: u16,
    pub(super) located: bool,
}

/// The block an address's answer may be shared in: its IPv4 /24 or IPv6
/// /64, as first and last address on the line of [`addr_key`].
pub(super) fn block_of(ip: IpAddr) -> (u128, u128) {
    let key = addr_key(ip);
    let host_bits = if ip.is_ipv4() { 8 } else { 64 };
    let lo = key >> host_bits << host_bits;
    (lo, lo | ((1u128 << host_bits) - 1))
}

/// Whether a MaxMind DB's answer for `ip` holds for the whole block of `ip`
/// ([`block_of`]), from the network it was found in (an unknown network:
/// no).
pub(super) fn found_covers_block(ip: IpAddr, found: &maxminddb::LookupResult<'_, Vec<u8>>) -> bool {
    let network = found.network().ok().map(|n| (n.is_ipv4(), n.prefix()));
    match (ip, network) {
        (IpAddr::V4(_), Some((true, prefix))) => prefix <= 24,
        // An IPv4 address answered above the database's IPv4 subtree.
        (IpAddr::V4(_), Some((false, prefix))) => prefix <= 96,
        (IpAddr::V6(_), Some((_, prefix))) => prefix <= 64,
        (_, None) => false,
    }
}

pub(super) fn read(path: &Path) -> Result<Vec<u8>, NetIntelError> {
    std::fs::read(path).map_err(|source| NetIntelError::Read {
        path: path.to_owned(),
        source,
    })
}

pub(super) fn open_mmdb(path: &Path, probe: &[&str]) -> Result<Reader<Vec<u8>>, NetIntelError> {
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
