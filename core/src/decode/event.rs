//! The normalised audit event every profile decodes into.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

/// One use of a credential, borrowed from the message it was decoded from.
///
/// Strings are `Cow` so the common case (no JSON escapes) points into the
/// input buffer and costs no allocation.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent<'a> {
    /// Event time, milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The credential's identifier (access key ID, token accessor, hashed token).
    pub key_id: Cow<'a, str>,
    /// Who holds the key (ARN, user name, service account).
    pub principal: Option<Cow<'a, str>>,
    /// Where the call came from.
    pub source: Option<Source<'a>>,
    /// The raw user agent string.
    pub user_agent: Option<Cow<'a, str>>,
    /// What was done (`GetObject`, `read`, `get`).
    pub action: Option<Cow<'a, str>>,
    /// The service the action belongs to (`s3.amazonaws.com`, `secrets`), if the profile maps one.
    pub action_namespace: Option<Cow<'a, str>>,
    /// Whether the call succeeded.
    pub outcome: Outcome<'a>,
    /// Cloud region or cluster, when known.
    pub region: Option<Cow<'a, str>>,
    /// How many uses this record stands for (pre-aggregated usage records); at least 1.
    pub count: u32,
}

impl AuditEvent<'_> {
    /// The action with its namespace, as shown to people: `iam:CreateUser`.
    pub fn action_display(&self) -> Option<String> {
        let action = self.action.as_deref()?;
        Some(match self.action_namespace.as_deref() {
            Some(ns) => format!("{}:{action}", namespace_short(ns)),
            None => action.to_owned(),
        })
    }

    /// The action's service (short form: `s3`, `iam`) and name. A flat
    /// action field that names its service (`iam:CreateUser`) is split.
    pub fn action_parts(&self) -> Option<(Option<&str>, &str)> {
        let action = self.action.as_deref()?;
        Some(match self.action_namespace.as_deref() {
            Some(ns) => (Some(namespace_short(ns)), action),
            None => match memchr::memchr(b':', action.as_bytes()) {
                Some(i) if i > 0 && i + 1 < action.len() => (Some(&action[..i]), &action[i + 1..]),
                _ => (None, action),
            },
        })
    }

    /// Whether the call failed.
    pub fn is_failure(&self) -> bool {
        matches!(self.outcome, Outcome::Failure { .. })
    }
}

/// `s3.amazonaws.com` → `s3`; names without a dot are kept whole.
pub fn namespace_short(ns: &str) -> &str {
    // Bytes: this runs for every event, and `.` is ASCII.
    memchr::memchr(b'.', ns.as_bytes()).map_or(ns, |i| &ns[..i])
}

/// Where a call came from: an IP address, or a named source such as
/// `AWS Internal` or `s3.amazonaws.com` (a provider service acting for the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source<'a> {
    /// A network address.
    Ip(IpAddr),
    /// Anything that is not an address.
    Named(Cow<'a, str>),
}

impl fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Ip(ip) => ip.fmt(f),
            Source::Named(name) => f.write_str(name),
        }
    }
}

impl<'a> Source<'a> {
    /// Parses a source field. Addresses are accepted with a port (`1.2.3.4:443`,
    /// `[2001:db8::1]:443`) and with zero-padded octets (`035.249.7.1`, as some
    /// log pipelines write them); everything else is a named source.
    pub fn parse(raw: Cow<'a, str>) -> Option<Source<'a>> {
        let s = raw.trim();
        if s.is_empty() {
            return None;
        }
        if let Some(ip) = parse_ip(s) {
            return Some(Source::Ip(ip));
        }
        if s.len() == raw.len() {
            Some(Source::Named(raw))
        } else {
            Some(Source::Named(Cow::Owned(s.to_owned())))
        }
    }
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    if let Some(v4) = dotted_quad(s.as_bytes()) {
        return Some(IpAddr::V4(v4));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    if let Some((host, port)) = s.rsplit_once(':') {
        if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) {
            return parse_padded_v4(host).map(IpAddr::V4);
        }
    }
    parse_padded_v4(s).map(IpAddr::V4)
}

/// Dotted quad whose octets may carry leading zeros (read as decimal, not octal).
fn parse_padded_v4(s: &str) -> Option<std::net::Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    parts
        .next()
        .is_none()
        .then_some(std::net::Ipv4Addr::from(octets))
}

/// The result of the call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Outcome<'a> {
    /// The call succeeded (or the log does not say otherwise).
    #[default]
    Success,
    /// The call failed; `code` is the provider's error code (`AccessDenied`, `403`).
    Failure {
        /// Provider error code, when the log has one.
        code: Option<Cow<'a, str>>,
    },
}

/// An owned, size-capped copy of an event, carried by findings as the sample a
/// responder looks at. Long strings are cut so a hostile event cannot bloat alerts.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct EventSample {
    /// Event time, RFC 3339.
    pub time: String,
    /// Credential identifier.
    pub key_id: String,
    /// Principal, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Source address or name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// User agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Action with namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// `success` or `failure`.
    pub outcome: String,
    /// Error code of a failed call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Weight of the record.
    pub count: u32,
}

/// Longest string a sample keeps, in bytes.
const SAMPLE_FIELD_MAX: usize = 512;

fn capped(s: &str) -> String {
    if s.len() <= SAMPLE_FIELD_MAX {
        return s.to_owned();
    }
    let mut end = SAMPLE_FIELD_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl From<&AuditEvent<'_>> for EventSample {
    fn from(e: &AuditEvent<'_>) -> Self {
        let (outcome, error_code) = match &e.outcome {
            Outcome::Success => ("success", None),
            Outcome::Failure { code } => ("failure", code.as_deref().map(capped)),
        };
        EventSample {
            time: crate::decode::time::format_rfc3339(e.time_ms),
            key_id: capped(&e.key_id),
            principal: e.principal.as_deref().map(capped),
            source: e.source.as_ref().map(|s| capped(&s.to_string())),
            user_agent: e.user_agent.as_deref().map(capped),
            action: e.action_display().as_deref().map(capped),
            outcome: outcome.to_owned(),
            error_code,
            region: e.region.as_deref().map(capped),
            count: e.count,
        }
    }
}

/// A plain dotted-quad IPv4 address exactly as the standard library reads
/// one (four octets of one to three digits, at most 255, no leading zero),
/// without its general parser: this is most sources, on every event.
/// `None` for anything else, which then goes the general way.
fn dotted_quad(b: &[u8]) -> Option<Ipv4Addr> {
    if !(7..=15).contains(&b.len()) {
        return None;
    }
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (n, octet) in octets.iter_mut().enumerate() {
        if n > 0 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let start = i;
        let mut value = 0u32;
        while let Some(d) = b.get(i).map(|c| c.wrapping_sub(b'0')).filter(|&d| d <= 9) {
            if i - start == 3 {
                return None;
            }
            value = value * 10 + u32::from(d);
            i += 1;
        }
        let digits = i - start;
        if digits == 0 || value > 255 || (digits > 1 && b[start] == b'0') {
            return None;
        }
        *octet = value as u8;
    }
    (i == b.len()).then(|| Ipv4Addr::from(octets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_addresses_ports_and_names() {
        let ip = |s: &'static str| Source::parse(Cow::Borrowed(s));
        assert_eq!(
            ip("203.0.113.9"),
            Some(Source::Ip("203.0.113.9".parse().unwrap()))
        );
        assert_eq!(
            ip("203.0.113.9:443"),
            Some(Source::Ip("203.0.113.9".parse().unwrap()))
        );
        assert_eq!(
            ip("[2001:db8::1]:443"),
            Some(Source::Ip("2001:db8::1".parse().unwrap()))
        );
        assert_eq!(
            ip("035.249.253.07"),
            Some(Source::Ip("35.249.253.7".parse().unwrap()))
        );
        assert_eq!(
            ip("AWS Internal"),
            Some(Source::Named(Cow::Borrowed("AWS Internal")))
        );
        assert_eq!(
            ip("s3.amazonaws.com"),
            Some(Source::Named(Cow::Borrowed("s3.amazonaws.com")))
        );
        assert_eq!(ip("   "), None);
        assert_eq!(
            ip("256.1.1.1"),
            Some(Source::Named(Cow::Borrowed("256.1.1.1")))
        );
    }

    #[test]
    fn samples_cap_hostile_lengths() {
        let huge = "A".repeat(100_000);
        let e = AuditEvent {
            time_ms: 0,
            key_id: Cow::Borrowed("k"),
            principal: None,
            source: None,
            user_agent: Some(Cow::Owned(huge)),
            action: Some(Cow::Borrowed("GetObject")),
            action_namespace: Some(Cow::Borrowed("s3.amazonaws.com")),
            outcome: Outcome::Success,
            region: None,
            count: 1,
        };
        let s = EventSample::from(&e);
        assert!(s.user_agent.unwrap().len() <= SAMPLE_FIELD_MAX + 3);
        assert_eq!(s.action.as_deref(), Some("s3:GetObject"));
    }

    #[test]
    fn dotted_quads_read_as_the_standard_library_reads_them() {
        use rand::{Rng, SeedableRng};
        let same = |s: &str| {
            assert_eq!(
                dotted_quad(s.as_bytes()),
                s.parse::<Ipv4Addr>().ok(),
                "{s:?}"
            );
        };
        for s in [
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.",
            ".1.2.3.4",
            "01.2.3.4",
            "1.2.3.04",
            "1.2.3.0",
            "1..2.3",
            "1.2.3.4 ",
            "1.2.3.1000",
            "1.2.3.4:80",
            "000.1.2.3",
            "1.2.3.255",
            "1.2.3.260",
            "203.0.113.7",
        ] {
            same(s);
        }
        let mut rng = rand::rngs::SmallRng::seed_from_u64(4);
        let alphabet = b"0123456789.....:x ";
        for _ in 0..1_000_000 {
            let len = rng.gen_range(0..17);
            let s: String = (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
                .collect();
            same(&s);
        }
        // Every octet value, and every leading-zero form of it, in each place.
        for v in 0..1000u32 {
            for text in [v.to_string(), format!("0{v}"), format!("00{v}")] {
                for at in 0..4 {
                    let mut parts = ["10", "1", "2", "3"].map(String::from);
                    parts[at] = text.clone();
                    same(&parts.join("."));
                }
            }
        }
    }
}
