//! How an address's owner is classed ([`OwnerClass`]), and the heuristic
//! that classes an organisation by its name alone ([`class_of_org`]).

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
