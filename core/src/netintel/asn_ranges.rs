//! Who owns each address, from a file of address ranges: one
//! `first,last,asn[,organisation]` line per range, as ip-location-db's
//! `asn` package and DB-IP's IP-to-ASN Lite publish it (IPv4 and IPv6 ranges
//! in one file or its parts concatenated; an optional header line).
//!
//! The ranges become one [`RangeTable`] of ASNs, looked up like the cloud
//! ranges, and a table of organisation names read only when a finding is
//! described. Published files are not always clean: where two ranges
//! overlap, each is cut into the CIDR blocks that cover it (two such blocks
//! either nest or are apart), and the more specific block answers, as a
//! routing table would; of two equal blocks, the later line's.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Subnets, Ipv6Subnets};
use std::path::Path;

use super::ranges::{addr_key, RangeTable};
use super::NetIntelError;

/// Address ranges and their autonomous systems.
pub(super) struct AsnRanges {
    pub(super) table: RangeTable<u32>,
    names: HashMap<u32, Box<str>>,
}

impl AsnRanges {
    /// Reads a range file; an error names the line and what is wrong.
    pub(super) fn parse(path: &Path, bytes: &[u8]) -> Result<AsnRanges, NetIntelError> {
        let bad = |what: String| NetIntelError::Parse {
            path: path.to_owned(),
            what,
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(bytes);
        let mut blocks = Vec::new();
        let mut names: HashMap<u32, Box<str>> = HashMap::new();
        for (i, row) in reader.records().enumerate() {
            let line = i + 1;
            let row = row.map_err(|e| bad(format!("line {line}: {e}")))?;
            let field = |n: usize| row.get(n).map(str::trim).unwrap_or("");
            let (first, last) = (field(0), field(1));
            if line == 1 && first.parse::<IpAddr>().is_err() && !first.is_empty() {
                continue; // a header
            }
            let addr = |s: &str, which: &str| {
                s.parse::<IpAddr>().map_err(|_| {
                    bad(format!(
                        "line {line}: {which} address {s:?} is not an IP address \
                         (expected first,last,asn[,organisation])"
                    ))
                })
            };
            let (a, b) = (addr(first, "first")?, addr(last, "last")?);
            if a.is_ipv4() != b.is_ipv4() || addr_key(a) > addr_key(b) {
                return Err(bad(format!(
                    "line {line}: {first}..{last} is not a range (both ends of one family, first <= last)"
                )));
            }
            let asn_text = field(2);
            let asn: u32 = asn_text
                .strip_prefix("AS")
                .unwrap_or(asn_text)
                .parse()
                .map_err(|_| bad(format!("line {line}: ASN {asn_text:?} is not a number")))?;
            if asn == 0 {
                continue; // "not routed": no owner to learn
            }
            let org = field(3);
            if !org.is_empty() {
                names.entry(asn).or_insert_with(|| org.into());
            }
            match (a, b) {
                (IpAddr::V4(a), IpAddr::V4(b)) => {
                    blocks.extend(Ipv4Subnets::new(a, b, 0).map(|n| (IpNet::V4(n), asn)));
                }
                (IpAddr::V6(a), IpAddr::V6(b)) => {
                    blocks.extend(Ipv6Subnets::new(a, b, 0).map(|n| (IpNet::V6(n), asn)));
                }
                _ => unreachable!("families checked above"),
            }
        }
        let table = RangeTable::build(blocks, |_, inner| inner);
        Ok(AsnRanges { table, names })
    }

    /// The ASN holding `ip` (0: none).
    pub(super) fn asn(&self, ip: IpAddr) -> u32 {
        self.table.get(addr_key(ip)).unwrap_or(0)
    }

    /// The organisation's name, when the file gives one.
    pub(super) fn org(&self, asn: u32) -> Option<&str> {
        self.names.get(&asn).map(|n| &**n)
    }

    /// Disjoint intervals held.
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AsnRanges, NetIntelError> {
        AsnRanges::parse(Path::new("asn.csv"), text.as_bytes())
    }

    #[test]
    fn reads_the_published_range_lines_of_both_families() {
        let t = parse(
            "1.0.0.0,1.0.0.255,13335,\"Cloudflare, Inc.\"\n\
             1.0.4.0,1.0.7.255,38803,Gtelecom Pty Ltd\n\
             2001:200::,2001:200:1b9:ffff:ffff:ffff:ffff:ffff,2500,WIDE Project\n",
        )
        .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(t.asn(ip("1.0.0.1")), 13335);
        assert_eq!(
            t.org(13335),
            Some("Cloudflare, Inc."),
            "a quoted name keeps its comma"
        );
        assert_eq!(t.asn(ip("1.0.5.9")), 38803);
        assert_eq!(t.asn(ip("1.0.3.1")), 0, "between ranges: no owner");
        assert_eq!(t.asn(ip("2001:200:1b9::1")), 2500);
        assert_eq!(t.asn(ip("2001:200:1ba::1")), 0);
    }

    #[test]
    fn where_ranges_overlap_the_more_specific_answers() {
        // A /16 with a more specific /24 inside it, and a range that runs
        // past the /16's end (published files have both).
        let t = parse(
            "214.0.0.0,214.0.255.255,721,DoD\n\
             214.0.7.0,214.0.7.255,64500,Inner\n\
             214.0.200.0,214.1.0.255,64501,Across\n",
        )
        .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(t.asn(ip("214.0.1.1")), 721);
        assert_eq!(t.asn(ip("214.0.7.1")), 64500, "the /24 inside the /16");
        assert_eq!(
            t.asn(ip("214.0.201.1")),
            64501,
            "the later, more specific blocks"
        );
        assert_eq!(t.asn(ip("214.1.0.9")), 64501, "past the /16's end");
        assert_eq!(t.asn(ip("214.1.1.0")), 0);
    }

    #[test]
    fn a_bad_line_is_named() {
        let err = parse("1.0.0.0,1.0.0.255,13335,A\n1.0.1.0,1.0.1.x,7,B\n")
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("asn.csv") && err.contains("line 2") && err.contains("1.0.1.x"),
            "{err}"
        );
        let err = parse("1.0.0.0,1.0.0.255,thirteen,A\n")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("line 1") && err.contains("thirteen"), "{err}");
        let err = parse("1.0.0.9,1.0.0.1,1,A\n").err().unwrap().to_string();
        assert!(err.contains("not a range"), "{err}");
    }
}
