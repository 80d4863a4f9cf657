//! Network-intelligence fixtures and a small event vocabulary, shared by
//! the core's tests and, through the `testing` feature, the shell's (a
//! checkpoint or changelog round trip of the network memory).

use std::borrow::Cow;
use std::path::PathBuf;

use super::config::NetIntelConfig;
use super::NetIntel;
use crate::config::{Config, ListConfig, ListKind};
use crate::decode::{AuditEvent, Outcome, Source};
use crate::engine::{Detector, Engine, Finding};

pub const DAY: i64 = 86_400;
pub const HOUR: i64 = 3_600;
/// 2026-01-05 00:00:00 UTC.
pub const T0: i64 = 1_767_571_200;

/// A file of `tests/data/netintel/` (at the workspace root).
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/netintel")
        .join(name)
}

/// Every fixture file configured.
pub fn fixture_config() -> NetIntelConfig {
    NetIntelConfig {
        city_db: Some(fixture("city.mmdb")),
        asn_db: Some(fixture("asn.mmdb")),
        cloud_ranges: vec![
            fixture("ip-ranges.json"),
            fixture("cloud.json"),
            fixture("ServiceTags_Public.json"),
        ],
        lists: vec![
            ListConfig {
                path: fixture("tor-exits.txt"),
                label: "tor-exits".into(),
                kind: ListKind::Tor,
            },
            ListConfig {
                path: fixture("lists.csv"),
                label: "feeds".into(),
                kind: ListKind::Threat,
            },
        ],
        ..Default::default()
    }
}

/// One use of a key: when (seconds), which key, whose, from where.
pub struct Ev {
    pub t: i64,
    pub key: String,
    pub principal: Option<String>,
    pub source: String,
    /// The S3 action called (`GetObject` unless [`Ev::calling`] says).
    pub action: &'static str,
}

/// A use of `key` from `source` at `t`.
pub fn ev(t: i64, key: &str, source: &str) -> Ev {
    Ev {
        t,
        key: key.to_owned(),
        principal: None,
        source: source.to_owned(),
        action: "GetObject",
    }
}

impl Ev {
    /// The same use, calling `action` instead.
    pub fn calling(mut self, action: &'static str) -> Ev {
        self.action = action;
        self
    }

    /// The event the engine sees.
    pub fn audit(&self) -> AuditEvent<'_> {
        AuditEvent {
            time_ms: self.t * 1000,
            key_id: Cow::Borrowed(&self.key),
            principal: self.principal.as_deref().map(Cow::Borrowed),
            source: Source::parse(Cow::Borrowed(&self.source)),
            user_agent: Some(Cow::Borrowed("aws-cli/2.15.0 Python/3.11.6 Linux/6.1")),
            action: Some(Cow::Borrowed(self.action)),
            action_namespace: Some(Cow::Borrowed("s3.amazonaws.com")),
            outcome: Outcome::Success,
            region: None,
            count: 1,
        }
    }
}

/// An engine with default configuration; `enriched`: with every fixture file.
pub fn engine(enriched: bool) -> Engine {
    let cfg = Config::default();
    let netintel = enriched.then(|| NetIntel::open(&fixture_config(), None).unwrap());
    Engine::with_parts(&cfg, None, netintel)
}

/// Runs `events` in time order through `engine`; the findings.
pub fn run_on(engine: &Engine, mut events: Vec<Ev>) -> Vec<Finding> {
    events.sort_by_key(|e| e.t);
    let mut out = Vec::new();
    for e in &events {
        engine.process(&e.audit(), &mut out);
    }
    out
}

/// A key used every day from one Berlin /24 for `days` days.
pub fn settled_in_berlin(key: &str, days: i64) -> Vec<Ev> {
    (0..days * 4)
        .map(|i| ev(T0 + i * 6 * HOUR, key, &format!("81.0.7.{}", 10 + i % 5)))
        .collect()
}

/// A key shared by an office in Berlin and one in the US, used from both
/// within the hour, every day for `days` days.
pub fn two_offices(key: &str, days: i64) -> Vec<Ev> {
    (0..days)
        .flat_map(|d| {
            let t = T0 + d * DAY + 9 * HOUR;
            [
                ev(t, key, &format!("81.0.7.{}", 10 + d % 5)),
                ev(t + HOUR / 2, key, "24.0.3.3"),
            ]
        })
        .collect()
}

/// The findings of detector `d`.
pub fn of(findings: &[Finding], d: Detector) -> Vec<&Finding> {
    findings.iter().filter(|f| f.detector == d).collect()
}
