//! Longest-prefix match over networks from files: the published cloud
//! ranges (AWS, GCP, Azure) and labelled lists (text or CSV).
//!
//! Prefixes nest (a provider's /10 holds a service's /16), so the table is
//! flattened at load into disjoint address intervals, each carrying the value
//! of the most specific prefix covering it (or, for lists, every list that
//! covers it): a lookup is one binary search.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde_json::Value;

use super::config::ListKind;
use super::NetIntelError;

/// An address as a point on one line: IPv4 as its IPv4-mapped IPv6 form.
pub fn addr_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn net_bounds(net: &IpNet) -> (u128, u128) {
    (addr_key(net.network()), addr_key(net.broadcast()))
}

/// Disjoint intervals with a value each, searched by start.
#[derive(Debug, Clone, Default)]
pub struct RangeTable<V> {
    starts: Vec<u128>,
    ends: Vec<u128>,
    values: Vec<V>,
}

impl<V: Copy> RangeTable<V> {
    /// Flattens `prefixes`; where prefixes nest, the inner one's value is
    /// `nest(outer, inner)`.
    pub fn build(mut prefixes: Vec<(IpNet, V)>, nest: impl Fn(V, V) -> V) -> RangeTable<V> {
        prefixes.sort_by_key(|(n, _)| {
            let (s, e) = net_bounds(n);
            (s, std::cmp::Reverse(e))
        });
        let mut out = RangeTable {
            starts: Vec::with_capacity(prefixes.len()),
            ends: Vec::with_capacity(prefixes.len()),
            values: Vec::with_capacity(prefixes.len()),
        };
        let mut emit = |s: u128, e: u128, v: V| {
            out.starts.push(s);
            out.ends.push(e);
            out.values.push(v);
        };
        // Open prefixes, innermost last, and the first address not yet emitted.
        let mut open: Vec<(u128, V)> = Vec::new();
        let mut cursor: u128 = 0;
        let mut done = false;
        for (net, v) in prefixes {
            let (s, e) = net_bounds(&net);
            while let Some(&(top_end, top_v)) = open.last() {
                if top_end >= s {
                    break;
                }
                if cursor <= top_end && !done {
                    emit(cursor, top_end, top_v);
                }
                open.pop();
                match top_end.checked_add(1) {
                    Some(c) => cursor = cursor.max(c),
                    None => done = true,
                }
            }
            if let Some(&(_, top_v)) = open.last() {
                if cursor < s {
                    emit(cursor, s - 1, top_v);
                }
            }
            cursor = cursor.max(s);
            let v = match open.last() {
                Some(&(_, outer)) => nest(outer, v),
                None => v,
            };
            open.push((e, v));
        }
        while let Some((top_end, top_v)) = open.pop() {
            if !done && cursor <= top_end {
                emit(cursor, top_end, top_v);
            }
            match top_end.checked_add(1) {
                Some(c) => cursor = cursor.max(c),
                None => done = true,
            }
        }
        out
    }

    /// The value of the interval holding `key`.
    #[inline]
    pub fn get(&self, key: u128) -> Option<V> {
        let i = self.starts.partition_point(|&s| s <= key);
        (i > 0 && key <= self.ends[i - 1]).then(|| self.values[i - 1])
    }

    /// The value of the interval holding `key`, and whether that answer
    /// holds for every address of `lo..=hi` (a block holding `key`): the
    /// interval, or the gap between two, spans the whole block.
    #[inline]
    pub fn get_block(&self, key: u128, lo: u128, hi: u128) -> (Option<V>, bool) {
        let i = self.starts.partition_point(|&s| s <= key);
        if i > 0 && key <= self.ends[i - 1] {
            let whole = self.starts[i - 1] <= lo && self.ends[i - 1] >= hi;
            return (Some(self.values[i - 1]), whole);
        }
        let after_prev = i == 0 || self.ends[i - 1] < lo;
        let before_next = i == self.starts.len() || self.starts[i] > hi;
        (None, after_prev && before_next)
    }

    /// The table over the IPv4 addresses as a step function: from each
    /// start (an IPv4 address, the first at 0) up to the next, the value
    /// ([`None`] in a gap), as [`RangeTable::get`] answers for the
    /// IPv4-mapped key.
    pub fn v4_steps(&self) -> Vec<(u32, Option<V>)> {
        let base = addr_key(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let top = base + u128::from(u32::MAX);
        let mut out: Vec<(u32, Option<V>)> = vec![(0, None)];
        for i in 0..self.starts.len() {
            let (s, e) = (self.starts[i], self.ends[i]);
            if e < base || s > top {
                continue;
            }
            let (s, e) = ((s.max(base) - base) as u32, (e.min(top) - base) as u32);
            match out.last_mut() {
                Some(last) if last.0 == s => *last = (s, Some(self.values[i])),
                _ => out.push((s, Some(self.values[i]))),
            }
            if let Some(after) = e.checked_add(1) {
                out.push((after, None));
            }
        }
        out
    }

    /// Disjoint intervals held.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }
}

/// A cloud range's label and how specific its entry is (for a prefix listed
/// twice, as AWS lists EC2 prefixes under `AMAZON` too, the more specific wins).
struct CloudEntry {
    label: String,
    rank: u8,
}

/// Reads one published cloud ranges file into `(network, label)` pairs,
/// recognising AWS `ip-ranges.json`, GCP `cloud.json` and Azure service tags.
pub fn parse_cloud(path: &Path, bytes: &[u8]) -> Result<Vec<(IpNet, String)>, NetIntelError> {
    let bad = |what: String| NetIntelError::Parse {
        path: path.to_owned(),
        what,
    };
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    let mut by_net: HashMap<IpNet, CloudEntry> = HashMap::new();
    let mut put = |net: &str, label: String, rank: u8| -> Result<(), NetIntelError> {
        let net: IpNet = net
            .trim()
            .parse()
            .map_err(|_| bad(format!("bad prefix {net:?} for {label}")))?;
        let net = net.trunc();
        match by_net.get(&net) {
            Some(e) if e.rank >= rank => {}
            _ => {
                by_net.insert(net, CloudEntry { label, rank });
            }
        }
        Ok(())
    };
    let lower = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
            .replace(' ', "_")
    };
    if let Some(values) = doc.get("values").and_then(Value::as_array) {
        // Azure service tags: {"values":[{"name","properties":{"region","systemService","addressPrefixes"}}]}
        for v in values {
            let props = v.get("properties");
            let region = lower(props.and_then(|p| p.get("region")));
            let mut service = lower(props.and_then(|p| p.get("systemService")));
            if service.is_empty() {
                service = lower(v.get("name"));
                service.truncate(service.find('.').unwrap_or(service.len()));
            }
            let rank = u8::from(!region.is_empty()) + u8::from(service != "azurecloud");
            let region = if region.is_empty() {
                "global".to_owned()
            } else {
                region
            };
            let label = format!("azure:{service}:{region}");
            let prefixes = props
                .and_then(|p| p.get("addressPrefixes"))
                .and_then(Value::as_array)
                .ok_or_else(|| bad(format!("service tag {label} has no addressPrefixes")))?;
            for p in prefixes.iter().filter_map(Value::as_str) {
                put(p, label.clone(), rank)?;
            }
        }
    } else if let Some(prefixes) = doc.get("prefixes").and_then(Value::as_array) {
        let aws = doc.get("ipv6_prefixes").is_some()
            || prefixes
                .first()
                .is_some_and(|p| p.get("ip_prefix").is_some());
        // AWS ip-ranges.json: {"prefixes":[{"ip_prefix","service","region"}],
        // "ipv6_prefixes":[{"ipv6_prefix",…}]}; the `AMAZON` superset ranks
        // below the service that owns an address.
        let aws_prefix = |p: &'_ Value, field: &str| {
            let service = lower(p.get("service"));
            let region = lower(p.get("region"));
            let net = p
                .get(field)
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("an AWS prefix without {field}")))?;
            let rank = u8::from(service != "amazon");
            Ok::<_, NetIntelError>((net.to_owned(), format!("aws:{service}:{region}"), rank))
        };
        for p in prefixes {
            if aws {
                let (net, label, rank) = aws_prefix(p, "ip_prefix")?;
                put(&net, label, rank)?;
            } else {
                // GCP cloud.json: {"prefixes":[{"ipv4Prefix"|"ipv6Prefix","service","scope"}]}
                let service = lower(p.get("service"));
                let scope = lower(p.get("scope"));
                let net = p
                    .get("ipv4Prefix")
                    .or_else(|| p.get("ipv6Prefix"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        bad("a GCP prefix without ipv4Prefix or ipv6Prefix".to_owned())
                    })?;
                put(net, format!("gcp:{service}:{scope}"), 1)?;
            }
        }
        if let Some(v6) = doc.get("ipv6_prefixes").and_then(Value::as_array) {
            for p in v6 {
                let (net, label, rank) = aws_prefix(p, "ipv6_prefix")?;
                put(&net, label, rank)?;
            }
        }
    } else {
        return Err(bad(
            "neither AWS ip-ranges.json, GCP cloud.json nor Azure service tags (no \"prefixes\" or \"values\")"
                .to_owned(),
        ));
    }
    if by_net.is_empty() {
        return Err(bad("no prefixes".to_owned()));
    }
    Ok(by_net.into_iter().map(|(n, e)| (n, e.label)).collect())
}

/// One network of a list, with the label and kind its row gives (or the list's).
#[derive(Debug)]
pub struct Listed {
    /// The network.
    pub net: IpNet,
    /// Label shown in evidence.
    pub label: String,
    /// What it is.
    pub kind: ListKind,
}

fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .map(|n| n.trunc())
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// Reads a list: a `.csv` file (`network,label[,kind]`, an optional header
/// row) or text (one address or CIDR per line, `#` comments).
pub fn parse_list(
    path: &Path,
    bytes: &[u8],
    label: &str,
    kind: ListKind,
) -> Result<Vec<Listed>, NetIntelError> {
    let bad = |line: usize, what: String| NetIntelError::Parse {
        path: path.to_owned(),
        what: format!("line {line}: {what}"),
    };
    let text = std::str::from_utf8(bytes).map_err(|e| NetIntelError::Parse {
        path: path.to_owned(),
        what: format!("not UTF-8: {e}"),
    })?;
    let csv = path.extension().and_then(|e| e.to_str()) == Some("csv");
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if !csv {
            let net = parse_net(line)
                .ok_or_else(|| bad(i + 1, format!("{line:?} is not an address or CIDR")))?;
            out.push(Listed {
                net,
                label: label.to_owned(),
                kind,
            });
            continue;
        }
        let mut cols = line.split(',').map(|c| c.trim().trim_matches('"'));
        let first = cols.next().unwrap_or("");
        let Some(net) = parse_net(first) else {
            if out.is_empty() && first.eq_ignore_ascii_case("network") {
                continue; // the header row
            }
            return Err(bad(i + 1, format!("{first:?} is not an address or CIDR")));
        };
        let row_label = cols.next().filter(|l| !l.is_empty()).unwrap_or(label);
        let row_kind = match cols.next().filter(|k| !k.is_empty()) {
            Some(k) => ListKind::parse(k).ok_or_else(|| {
                bad(
                    i + 1,
                    format!("kind {k:?} is not one of tor, threat, vpn, office, hosting"),
                )
            })?,
            None => kind,
        };
        out.push(Listed {
            net,
            label: row_label.chars().take(64).collect(),
            kind: row_kind,
        });
    }
    if out.is_empty() {
        return Err(NetIntelError::Parse {
            path: path.to_owned(),
            what: "no networks".to_owned(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> u128 {
        addr_key(s.parse().unwrap())
    }

    #[test]
    fn the_most_specific_prefix_wins() {
        let t = RangeTable::build(
            vec![
                ("10.0.0.0/8".parse().unwrap(), 1u32),
                ("10.1.0.0/16".parse().unwrap(), 2),
                ("10.1.2.0/24".parse().unwrap(), 3),
                ("192.168.0.0/16".parse().unwrap(), 4),
                ("::/0".parse().unwrap(), 9),
            ],
            |_, inner| inner,
        );
        assert_eq!(t.get(key("10.0.0.1")), Some(1));
        assert_eq!(t.get(key("10.1.0.1")), Some(2));
        assert_eq!(t.get(key("10.1.2.200")), Some(3));
        assert_eq!(t.get(key("10.1.3.0")), Some(2));
        assert_eq!(t.get(key("10.2.0.0")), Some(1));
        assert_eq!(t.get(key("192.168.255.255")), Some(4));
        assert_eq!(
            t.get(key("11.0.0.0")),
            Some(9),
            "::/0 holds the IPv4-mapped space"
        );
        let lists = RangeTable::build(
            vec![
                ("10.0.0.0/8".parse().unwrap(), 1u64),
                ("10.1.2.3/32".parse().unwrap(), 2),
            ],
            |outer, inner| outer | inner,
        );
        assert_eq!(lists.get(key("10.1.2.3")), Some(3), "lists add up");
        assert_eq!(lists.get(key("10.1.2.4")), Some(1));
        assert_eq!(lists.get(key("9.255.255.255")), None);
    }

    #[test]
    fn reads_each_published_cloud_format() {
        let aws = br#"{"syncToken":"1","createDate":"2026-01-01-00-00-00","prefixes":[
            {"ip_prefix":"3.80.0.0/12","region":"us-east-1","service":"AMAZON","network_border_group":"us-east-1"},
            {"ip_prefix":"3.80.0.0/12","region":"us-east-1","service":"EC2","network_border_group":"us-east-1"}],
            "ipv6_prefixes":[{"ipv6_prefix":"2600:1f18::/33","region":"us-east-1","service":"EC2","network_border_group":"us-east-1"}]}"#;
        let mut got = parse_cloud(Path::new("ip-ranges.json"), aws).unwrap();
        got.sort();
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|(_, l)| l == "aws:ec2:us-east-1"), "{got:?}");
        let gcp = br#"{"syncToken":"1","creationTime":"x","prefixes":[{"ipv4Prefix":"34.80.0.0/15","service":"Google Cloud","scope":"asia-east1"}]}"#;
        let got = parse_cloud(Path::new("cloud.json"), gcp).unwrap();
        assert_eq!(got[0].1, "gcp:google_cloud:asia-east1");
        let azure = br#"{"changeNumber":1,"cloud":"Public","values":[
            {"name":"AzureCloud","id":"AzureCloud","properties":{"region":"","systemService":"","addressPrefixes":["13.64.0.0/11"]}},
            {"name":"AzureCloud.westeurope","id":"AzureCloud.westeurope","properties":{"region":"westeurope","systemService":"","addressPrefixes":["13.69.0.0/17"]}}]}"#;
        let mut got = parse_cloud(Path::new("ServiceTags_Public.json"), azure).unwrap();
        got.sort();
        assert_eq!(got[0].1, "azure:azurecloud:global");
        assert_eq!(got[1].1, "azure:azurecloud:westeurope");
        let err = parse_cloud(Path::new("x.json"), b"{\"foo\":1}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.json") && err.contains("Azure"), "{err}");
    }

    #[test]
    fn reads_text_and_csv_lists() {
        let text = b"# Tor exits\n185.220.101.1\n185.220.102.0/24 # a block\n\n";
        let got = parse_list(Path::new("tor.txt"), text, "tor", ListKind::Tor).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].net.to_string(), "185.220.101.1/32");
        let csv = b"network,label,kind\n198.51.100.0/24,corp-vpn,vpn\n192.0.2.7,feodo,threat\n";
        let got = parse_list(Path::new("feed.csv"), csv, "feed", ListKind::Threat).unwrap();
        assert_eq!(
            (got[0].label.as_str(), got[0].kind),
            ("corp-vpn", ListKind::Vpn)
        );
        assert_eq!(got[1].kind, ListKind::Threat);
        let err = parse_list(
            Path::new("tor.txt"),
            b"1.2.3.4\nnot-an-ip\n",
            "tor",
            ListKind::Tor,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("tor.txt") && err.contains("line 2"), "{err}");
    }
}
