//! Compact identities for sources: an address, its network (/24 for IPv4,
//! /56 for IPv6) and its wider network (/16, /48), packed into a `u64` so a
//! key's remembered sources cost 16 bytes each.
//!
//! Why /56: a network is the unit a new use is judged at, and it should hold
//! about as many subscribers in both families. An IPv4 /24 holds up to 254
//! addresses, often as many households of one ISP. ISPs delegate a /56 to
//! a household or small site (the RIPE-690 recommendation), a /60 (16 per
//! /56) or a /64 (256 per /56, mobile carriers) to some: a /56 holds one to
//! 256 subscribers, at most what a /24 does. A /64 would make every prefix
//! the ISP rotates within a household's delegation a new network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use xxhash_rust::xxh3::xxh3_64;

use crate::decode::Source;

/// Top byte marking a named source's hash (no IPv6 /64 starts with 0xff:
/// that is multicast, never a source).
const NAMED_TAG: u64 = 0xFF00_0000_0000_0000;

/// A source packed into 64 bits.
///
/// IPv4 addresses sit in the low 32 bits (high bits zero). IPv6 sources are
/// identified by their /64 prefix: hosts rotate interface ids (privacy
/// extensions), so the /64 is the stable "address". Named sources are a hash.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct SourceId(pub u64);

impl SourceId {
    /// Packs an event's source.
    pub fn of(source: &Source<'_>) -> SourceId {
        match source {
            Source::Ip(IpAddr::V4(v4)) => SourceId(u32::from(*v4) as u64),
            Source::Ip(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => SourceId(u32::from(v4) as u64),
                None => {
                    let prefix = (u128::from(*v6) >> 64) as u64;
                    // A prefix with a zero top half or a 0xff top byte would
                    // collide with the IPv4 or named spaces; neither is routable.
                    SourceId(if prefix >> 32 == 0 || prefix & NAMED_TAG == NAMED_TAG {
                        prefix | 0x0100_0000_0000_0000
                    } else {
                        prefix
                    })
                }
            },
            Source::Named(name) => SourceId(NAMED_TAG | (xxh3_64(name.as_bytes()) >> 8)),
        }
    }

    /// Whether this is an IPv4 address.
    pub fn is_v4(self) -> bool {
        self.0 >> 32 == 0
    }

    /// Whether this is a named (non-address) source.
    pub fn is_named(self) -> bool {
        self.0 & NAMED_TAG == NAMED_TAG
    }

    /// The source's network: /24 for IPv4, /56 for IPv6, itself for names.
    pub fn network(self) -> u64 {
        self.0 & self.network_mask()
    }

    /// The wider network: /16 for IPv4, /48 for IPv6, itself for names.
    pub fn wide_network(self) -> u64 {
        if self.is_v4() {
            self.0 & 0xFFFF_0000
        } else if self.is_named() {
            self.0
        } else {
            self.0 & 0xFFFF_FFFF_FFFF_0000
        }
    }

    /// A mask that gives, from any other source's packed id, what compares
    /// equal to this one's [`SourceId::network`] exactly when their networks
    /// are equal: the spaces never overlap (IPv4 below 2^32, a named
    /// source's top byte 0xff), so one AND per remembered source tells it
    /// without branching on that source's kind.
    pub fn network_mask(self) -> u64 {
        if self.is_named() {
            !0
        } else {
            // The low byte: an IPv4 /24, or the /64s of an IPv6 /56.
            !0xFF
        }
    }

    /// As [`SourceId::network_mask`], for [`SourceId::wide_network`]: an
    /// IPv4 /16 and an IPv6 /48 are both the id less its low 16 bits.
    pub fn wide_mask(self) -> u64 {
        if self.is_named() {
            !0
        } else {
            !0xFFFF
        }
    }

    /// The network as text, for evidence (`203.0.113.0/24`, `2001:db8:1:200::/56`).
    pub fn network_display(self) -> String {
        if self.is_named() {
            "named source".to_owned()
        } else if self.is_v4() {
            format!("{}/24", Ipv4Addr::from(self.network() as u32))
        } else {
            format!("{}/56", Ipv6Addr::from((self.network() as u128) << 64))
        }
    }
}

impl SourceId {
    /// The wider network as text (`203.0.0.0/16`, `2001:db8:1::/48`).
    pub fn wide_display(self) -> String {
        if self.is_named() {
            "named source".to_owned()
        } else if self.is_v4() {
            format!("{}/16", Ipv4Addr::from(self.wide_network() as u32))
        } else {
            format!("{}/48", Ipv6Addr::from((self.wide_network() as u128) << 64))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn id(s: &'static str) -> SourceId {
        SourceId::of(&Source::parse(Cow::Borrowed(s)).unwrap())
    }

    #[test]
    fn v4_networks() {
        let a = id("203.0.113.7");
        assert!(a.is_v4() && !a.is_named());
        assert_eq!(a.network(), id("203.0.113.200").network());
        assert_ne!(a.network(), id("203.0.114.7").network());
        assert_eq!(a.wide_network(), id("203.0.114.7").wide_network());
        assert_eq!(a.network_display(), "203.0.113.0/24");
    }

    #[test]
    fn v6_networks() {
        let a = id("2001:db8:1:2::10");
        assert!(!a.is_v4() && !a.is_named());
        assert_eq!(a, id("2001:db8:1:2:aaaa::1"), "same /64 is the same source");
        assert_ne!(a, id("2001:db8:1:3::10"), "another /64 is another source");
        assert_eq!(
            a.network(),
            id("2001:db8:1:3::10").network(),
            "a household's /56 is one network"
        );
        assert_ne!(a.network(), id("2001:db8:1:100::10").network());
        assert_eq!(a.wide_network(), id("2001:db8:1:100::10").wide_network());
        assert_eq!(a.network_display(), "2001:db8:1::/56");
        assert_eq!(
            id("2001:db8:1:1ff::1").network_display(),
            "2001:db8:1:100::/56"
        );
        assert_eq!(id("::ffff:203.0.113.7"), id("203.0.113.7"));
    }

    #[test]
    fn the_mask_compares_networks_across_kinds() {
        let ids = [
            id("203.0.113.7"),
            id("203.0.113.200"),
            id("203.0.114.7"),
            id("203.1.113.7"),
            id("0.0.0.1"),
            id("2001:db8:1:2::10"),
            id("2001:db8:1:3::10"),
            id("2001:db9:1:2::10"),
            id("::1"),
            id("AWS Internal"),
            id("s3.amazonaws.com"),
        ];
        for a in ids {
            for b in ids {
                assert_eq!(
                    b.0 & a.network_mask() == a.network(),
                    b.network() == a.network(),
                    "{a:?} against {b:?}"
                );
            }
        }
    }

    #[test]
    fn the_wide_mask_compares_wider_networks_across_kinds() {
        let ids = [
            id("203.0.113.7"),
            id("203.0.114.7"),
            id("203.1.113.7"),
            id("2001:db8:1:2::10"),
            id("2001:db8:1:3::10"),
            id("2001:db9:1:2::10"),
            id("AWS Internal"),
            id("s3.amazonaws.com"),
        ];
        for a in ids {
            for b in ids {
                assert_eq!(
                    b.0 & a.wide_mask() == a.wide_network(),
                    b.wide_network() == a.wide_network() && a.is_v4() == b.is_v4(),
                    "{a:?} against {b:?}"
                );
            }
        }
    }

    #[test]
    fn names_never_collide_with_addresses() {
        let n = id("AWS Internal");
        assert!(n.is_named() && !n.is_v4());
        assert_ne!(n, id("s3.amazonaws.com"));
        assert_eq!(n.network(), n.0);
    }
}
