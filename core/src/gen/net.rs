//! Addresses: the public networks normal keys live in, and the disjoint
//! ones attacks come from.

use std::net::Ipv4Addr;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

/// First octets of routable, non-reserved space that normal keys live in.
/// Disjoint from [`FANOUT_OCTETS`] and from every network in
/// [`ATTACKER_NETWORKS`], so attack traffic never lands in a normal network.
pub(crate) static PUBLIC_OCTETS: [u8; 40] = [
    3, 13, 18, 20, 23, 34, 35, 40, 44, 50, 52, 54, 63, 64, 66, 68, 71, 73, 76, 81, 82, 84, 86, 87,
    88, 92, 94, 95, 98, 99, 104, 107, 108, 109, 130, 146, 151, 162, 199, 212,
];

/// First octets of the many unrelated networks a leaked key is used from.
pub(crate) static FANOUT_OCTETS: [u8; 24] = [
    31, 37, 41, 46, 49, 58, 59, 61, 77, 78, 79, 80, 83, 85, 90, 93, 101, 103, 110, 114, 177, 186,
    189, 201,
];

/// /24s known for abuse: Tor exits and bulletproof hosting.
pub(crate) static ATTACKER_NETWORKS: [[u8; 3]; 5] = [
    [185, 220, 101],
    [185, 220, 100],
    [45, 155, 205],
    [193, 142, 146],
    [89, 248, 165],
];

/// The networks the generated thieves use, as CIDRs (the demo lists them as
/// Tor exits and a threat feed, as a team's feeds would).
pub fn attacker_networks() -> Vec<String> {
    ATTACKER_NETWORKS
        .iter()
        .map(|n| format!("{}.{}.{}.0/24", n[0], n[1], n[2]))
        .collect()
}

/// An IPv4 /24, by its first three octets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Net24(pub [u8; 3]);

impl Net24 {
    /// A random /24 of ordinary public space.
    pub fn random(rng: &mut SmallRng) -> Net24 {
        let first = *PUBLIC_OCTETS.choose(rng).expect("non-empty");
        Net24([first, rng.gen(), rng.gen()])
    }

    /// A random /24 of public space outside the given /16s.
    pub fn random_outside(rng: &mut SmallRng, taken: &[[u8; 2]]) -> Net24 {
        loop {
            let net = Net24::random(rng);
            if !taken.contains(&net.slash16()) {
                return net;
            }
        }
    }

    /// Host `n` (1..=254) of this network.
    pub fn host(self, n: u8) -> Ipv4Addr {
        let [a, b, c] = self.0;
        Ipv4Addr::new(a, b, c, n)
    }

    /// A random usable host of this network.
    pub fn random_host(self, rng: &mut SmallRng) -> Ipv4Addr {
        self.host(rng.gen_range(2..=254))
    }

    /// The /16 this network belongs to.
    pub fn slash16(self) -> [u8; 2] {
        [self.0[0], self.0[1]]
    }
}

/// `n` distinct hosts of `net`.
pub(crate) fn distinct_hosts(net: Net24, n: usize, rng: &mut SmallRng) -> Vec<Ipv4Addr> {
    let mut last: Vec<u8> = (2..=254).collect();
    last.shuffle(rng);
    last.truncate(n);
    last.into_iter().map(|h| net.host(h)).collect()
}
