//! Entry points that take arbitrary bytes, one per kind of untrusted input:
//! the fuzz targets beside this file and the hostile-input test
//! (`tests/it/hostile.rs`) include it and drive these same functions (it is
//! not part of the library, so a release build does not carry it). Each must return
//! (an error is a fine answer) and never panic, hang or allocate without
//! bound; what a successful read produces is pushed on through the code
//! that uses it in the daemon (engine, explain, alert shape), so a value
//! that reads well but breaks a later invariant is caught here too.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use keywatch::alert::{Alert, Redactor};
use keywatch::changelog::format as chunk;
use keywatch::checkpoint::{self, format as ckpt, Origins};
use keywatch::config::{Config, Entity, RedactConfig};
use keywatch::decode::{AuditEvent, Decoder};
use keywatch::engine::{Engine, KeyState};
use keywatch::inventory::{Format, Inventory};

/// The built-in profiles, in the order [`decode`]'s first byte picks them.
pub const PROFILES: [&str; 5] = ["generic", "cloudtrail", "vault", "kubernetes", "github"];

/// Most events of one input pushed through an engine (decoding sees them all).
const MAX_APPLIED: usize = 256;

/// One Kafka message: the first byte picks the profile ([`PROFILES`]), the
/// rest is the message. Decoded events are applied to a fresh engine.
pub fn decode(input: &[u8]) {
    let Some((&pick, message)) = input.split_first() else {
        return;
    };
    let decoder = &decoders()[usize::from(pick) % PROFILES.len()];
    let mut events = Vec::new();
    let _ = decoder.decode(message, |r| {
        if let Ok(ev) = r {
            let _ = (ev.action_display(), ev.action_parts(), ev.is_failure());
            if events.len() < MAX_APPLIED {
                events.push(ev);
            }
        }
    });
    if !events.is_empty() {
        apply(&Engine::new(&Config::default()), &events);
    }
}

/// A checkpoint file. An odd first byte frames the rest as a body of
/// version 1 or 2 with a valid header and checksum, so mutations reach the
/// body decoder instead of stopping at the CRC; an even one reads the rest
/// as a whole file. A checkpoint that reads is restored and used.
pub fn checkpoint(input: &[u8]) {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let framed;
    let bytes = if mode & 1 == 1 {
        let version = 1 + u32::from(mode >> 1 & 1);
        framed = frame_checkpoint(version, rest);
        &framed[..]
    } else {
        rest
    };
    let Ok(cp) = ckpt::decode(bytes) else {
        return;
    };
    let _ = (cp.key_count(), ckpt::encode(&cp));
    let engine = Engine::new(&Config::default());
    let keys: Vec<String> = cp
        .sections
        .iter()
        .flat_map(|s| s.keys.iter().map(|(k, _)| k.to_string()))
        .take(MAX_APPLIED)
        .collect();
    let origins = Origins::default();
    let _ = cp.restore(&engine, &origins);
    use_restored(&engine, &keys);
    let resume = engine
        .snapshot(Entity::KeyId)
        .iter()
        .filter_map(|(_, s)| s.applied_at())
        .map(|p| (p.origin, 0))
        .collect();
    let _ = ckpt::encode(&checkpoint::Checkpoint::capture(&engine, &origins, &resume));
}

/// A checkpoint file around `body`, with a valid header and checksum.
pub fn frame_checkpoint(version: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + body.len());
    out.extend_from_slice(ckpt::MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// A changelog chunk (a Kafka message value). An odd first byte frames the
/// rest as a body of version 1, 2 or 3 with a valid checksum (see
/// [`checkpoint`]); an even one reads the rest as a whole chunk. Entries that
/// read are restored and used.
pub fn changelog_chunk(input: &[u8]) {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let framed;
    let bytes = if mode & 1 == 1 {
        let version = 1 + u32::from(mode >> 1) % 3;
        framed = frame_chunk(version, rest);
        &framed[..]
    } else {
        rest
    };
    let Ok((header, entries)) = chunk::decode_header(bytes) else {
        return;
    };
    let _ = chunk::chunk_key(
        &header.group,
        &header.topic,
        header.partition,
        header.snapshot,
        header.index,
    );
    let Ok(entries) = chunk::decode_entries(entries, header.entries, chunk::version_of(bytes))
    else {
        return;
    };
    let engine = Engine::new(&Config::default());
    let mut keys = Vec::new();
    let mut principals = Vec::new();
    let mut positions = Vec::new();
    for entry in entries {
        match entry {
            chunk::Entry::Key(k, s) => keys.push((k, s)),
            chunk::Entry::Principal(k, s) => principals.push((k, s)),
            chunk::Entry::PrincipalAt(k, at) => positions.push((k, at)),
            chunk::Entry::Delivered(..) => {}
        }
    }
    let principals = checkpoint::with_positions(principals, positions, &Origins::default());
    let names: Vec<String> = keys
        .iter()
        .map(|(k, _)| k.to_string())
        .take(MAX_APPLIED)
        .collect();
    engine.restore(Entity::KeyId, keys);
    engine.restore(Entity::Principal, principals);
    use_restored(&engine, &names);
}

/// A changelog chunk around `body`, with a valid checksum.
pub fn frame_chunk(version: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(chunk::MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// An inventory file: the first byte picks the format (TOML, JSON, CSV).
/// An inventory that loads is queried as the policy detectors do.
pub fn inventory(input: &[u8]) {
    let Some((&pick, bytes)) = input.split_first() else {
        return;
    };
    let (format, name) = match pick % 3 {
        0 => (Format::Toml, "fuzz.toml"),
        1 => (Format::Json, "fuzz.json"),
        _ => (Format::Csv, "fuzz.csv"),
    };
    let Ok(inventory) = Inventory::parse(bytes, format, Path::new(name)) else {
        return;
    };
    let ips = [
        IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    for entry in inventory.entries().iter().take(MAX_APPLIED) {
        assert!(inventory.get(&entry.key_id).is_some());
        let _ = entry.expired_at(0) | entry.expired_at(u32::MAX);
        for ip in ips {
            let _ = entry.allows_source(ip);
        }
        for pattern in entry.allowed_actions.iter().flat_map(|a| a.iter()) {
            let _ = pattern.matches(Some("s3.amazonaws.com"), "GetObject");
        }
    }
}

/// A configuration file's text (no environment layer). A configuration
/// that loads is rendered as `check-config` prints it and builds an engine.
pub fn config(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let Ok(cfg) = Config::from_toml_str(text) else {
        return;
    };
    let _ = cfg.to_toml();
    let _ = Engine::new(&cfg);
    let _ = Redactor::new(&cfg.alerts.redact);
}

/// Pushes events through `engine`, then explains every key and shapes
/// every finding as an alert.
fn apply(engine: &Engine, events: &[AuditEvent<'_>]) {
    let mut findings = Vec::new();
    for ev in events {
        engine.process(ev, &mut findings);
    }
    for ev in events {
        let _ = engine.explain(Entity::KeyId, &ev.key_id);
    }
    for finding in &findings {
        let _ = serde_json::to_string(&Alert::from_finding(finding, None, redactor()));
    }
}

/// The built-in decoders, compiled once: they hold no state between
/// messages, and compiling them per input was most of an execution.
fn decoders() -> &'static [Decoder] {
    static DECODERS: std::sync::OnceLock<Vec<Decoder>> = std::sync::OnceLock::new();
    DECODERS.get_or_init(|| {
        PROFILES
            .iter()
            .map(|name| {
                let Ok(d) = Decoder::for_profile(name, &BTreeMap::new()) else {
                    unreachable!("built-in profile {name} compiles");
                };
                d
            })
            .collect()
    })
}

/// The default redaction, compiled once (its patterns are regular
/// expressions; it holds no state).
fn redactor() -> &'static Redactor {
    static REDACTOR: std::sync::OnceLock<Redactor> = std::sync::OnceLock::new();
    REDACTOR.get_or_init(|| {
        let Ok(r) = Redactor::new(&RedactConfig::default()) else {
            unreachable!("the default redaction patterns compile");
        };
        r
    })
}

/// Explains restored keys, then applies one event to each of them just
/// after its last one.
fn use_restored(engine: &Engine, keys: &[String]) {
    let mut events = Vec::with_capacity(keys.len());
    for key in keys {
        let _ = engine.explain(Entity::KeyId, key);
        let Some(last) = engine.with_key(Entity::KeyId, key, |s: &KeyState| s.last_seen) else {
            continue;
        };
        events.push(AuditEvent {
            time_ms: (i64::from(last) + 60) * 1000,
            key_id: key.as_str().into(),
            principal: Some("arn:aws:iam::123456789012:user/fuzz".into()),
            source: keywatch::decode::Source::parse("203.0.113.9".into()),
            user_agent: Some("aws-cli/2.15.0".into()),
            action: Some("GetObject".into()),
            action_namespace: Some("s3.amazonaws.com".into()),
            outcome: keywatch::decode::Outcome::Success,
            region: Some("us-east-1".into()),
            count: 1,
        });
    }
    apply(engine, &events);
}
