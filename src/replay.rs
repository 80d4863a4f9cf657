//! Replay: recorded events through the engine in event-time order, for
//! backtesting and tuning. Used by `keywatch replay`.
//!
//! A file is read whole (gzip is detected by its magic bytes) and laid out as
//! one JSON document (an array, a CloudTrail `{"Records":[…]}` file, a
//! pretty-printed object) or as JSON Lines. Events are decoded borrowing from
//! the file buffers, sorted by event time (stably, so equal times keep file
//! order) and applied one by one.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::{Config, Entity};
use crate::decode::{AuditEvent, Decoder};
use crate::engine::{Detector, Engine, Finding, Severity};

/// One input file in memory.
pub struct Input {
    /// Name shown in messages (`-` for stdin).
    pub name: String,
    /// The decompressed bytes.
    pub bytes: Vec<u8>,
}

impl Input {
    /// Reads a file, or standard input for `-`; un-gzips when needed.
    pub fn read(path: &Path) -> anyhow::Result<Input> {
        let name = path.display().to_string();
        let raw = if name == "-" {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading standard input")?;
            buf
        } else {
            std::fs::read(path).with_context(|| format!("reading {name}"))?
        };
        let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::with_capacity(raw.len() * 8);
            flate2::read::MultiGzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .with_context(|| format!("decompressing {name}"))?;
            out
        } else {
            raw
        };
        Ok(Input { name, bytes })
    }
}

/// Splits a file into messages: the whole file when it is one JSON document,
/// else one message per non-empty line.
pub fn messages(bytes: &[u8]) -> Vec<&[u8]> {
    let body = bytes.trim_ascii();
    if body.is_empty() {
        return Vec::new();
    }
    let lines: Vec<&[u8]> = body
        .split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|l| !l.is_empty())
        .collect();
    let whole = body[0] == b'['
        || (body[0] == b'{'
            && lines.len() > 1
            && serde_json::from_slice::<serde::de::IgnoredAny>(lines[0]).is_err());
    if whole {
        vec![body]
    } else {
        lines
    }
}

/// What a replay read, skipped and found.
#[derive(Debug, Default)]
pub struct Summary {
    /// Messages (lines or documents) read.
    pub messages: u64,
    /// Events applied to the engine.
    pub events: u64,
    /// Records skipped inside good messages, by reason.
    pub skipped: BTreeMap<&'static str, u64>,
    /// Messages that could not be decoded, by reason.
    pub decode_errors: BTreeMap<&'static str, u64>,
    /// Identities tracked at the end, by kind.
    pub keys: Vec<(Entity, usize)>,
    /// Findings by detector and severity.
    pub findings: BTreeMap<(Detector, Severity), u64>,
    /// Event times of the first and last event applied, epoch ms.
    pub span_ms: Option<(i64, i64)>,
    /// Wall time of decode + sort + detection.
    pub elapsed: Duration,
}

/// Replays `inputs` through a fresh engine; every finding goes to `on_finding`
/// in the order found.
pub fn replay(
    cfg: &Config,
    inputs: &[Input],
    on_finding: impl FnMut(&Finding) -> anyhow::Result<()>,
) -> anyhow::Result<Summary> {
    replay_into(&Engine::new(cfg), cfg, inputs, on_finding)
}

/// Replays `inputs` through `engine` (built from `cfg`, perhaps with an
/// inventory), which keeps the resulting state for the caller to read.
pub fn replay_into(
    engine: &Engine,
    cfg: &Config,
    inputs: &[Input],
    mut on_finding: impl FnMut(&Finding) -> anyhow::Result<()>,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let decoder = Decoder::for_profile(&cfg.decode.profile, &cfg.decode.profiles)?
        .with_limits(usize::MAX, cfg.decode.max_key_bytes);
    let mut summary = Summary::default();
    let mut events: Vec<AuditEvent<'_>> = Vec::new();
    for input in inputs {
        for msg in messages(&input.bytes) {
            summary.messages += 1;
            let decoded = decoder.decode(msg, |r| match r {
                Ok(ev) => events.push(ev),
                Err(reason) => *summary.skipped.entry(reason.as_str()).or_default() += 1,
            });
            if let Err(e) = decoded {
                *summary.decode_errors.entry(e.as_str()).or_default() += 1;
                if summary.decode_errors.values().sum::<u64>() <= 5 {
                    tracing::warn!(file = %input.name, error = %e, "skipping undecodable message");
                }
            }
        }
    }
    events.sort_by_key(|e| e.time_ms);
    summary.span_ms = events
        .first()
        .zip(events.last())
        .map(|(a, b)| (a.time_ms, b.time_ms));
    let mut found = Vec::new();
    for ev in &events {
        engine.process(ev, &mut found);
        for f in found.drain(..) {
            *summary
                .findings
                .entry((f.detector, f.severity))
                .or_default() += 1;
            on_finding(&f)?;
        }
    }
    summary.events = events.len() as u64;
    summary.keys = cfg
        .engine
        .entities
        .iter()
        .map(|&e| (e, engine.key_count(e)))
        .collect();
    summary.elapsed = started.elapsed();
    Ok(summary)
}

impl Summary {
    /// The summary as a small table for people.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let _ = writeln!(
            s,
            "replayed {} events from {} messages in {:.2}s ({:.0} events/s)",
            self.events,
            self.messages,
            secs,
            self.events as f64 / secs
        );
        let list = |m: &BTreeMap<&'static str, u64>| {
            if m.is_empty() {
                "none".to_owned()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let _ = writeln!(s, "skipped records: {}", list(&self.skipped));
        let _ = writeln!(s, "undecodable messages: {}", list(&self.decode_errors));
        for (entity, n) in &self.keys {
            let _ = writeln!(s, "{} tracked: {n}", entity.as_str());
        }
        let total: u64 = self.findings.values().sum();
        let _ = writeln!(s, "findings: {total}");
        if total > 0 {
            let sevs = [
                Severity::Info,
                Severity::Low,
                Severity::Medium,
                Severity::High,
                Severity::Critical,
            ];
            let _ = write!(s, "  {:<18}", "detector");
            for sev in sevs {
                let _ = write!(s, "{:>9}", sev.as_str());
            }
            let _ = writeln!(s);
            for d in Detector::ALL.into_iter().chain(Detector::POLICY) {
                let row: Vec<u64> = sevs
                    .iter()
                    .map(|&sev| self.findings.get(&(d, sev)).copied().unwrap_or(0))
                    .collect();
                if row.iter().all(|&n| n == 0) {
                    continue;
                }
                let _ = write!(s, "  {:<18}", d.as_str());
                for n in row {
                    let _ = write!(s, "{n:>9}");
                }
                let _ = writeln!(s);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        assert_eq!(messages(b"{\"a\":1}\n{\"a\":2}\n\n").len(), 2);
        assert_eq!(messages(b"[{\"a\":1},\n{\"a\":2}]").len(), 1);
        assert_eq!(
            messages(b"{\n  \"Records\": [\n {\"a\":1}\n ]\n}\n").len(),
            1
        );
        assert_eq!(messages(b"{\"a\":1}").len(), 1);
        assert!(messages(b"  \n ").is_empty());
        // A broken line stays one bad message, the rest are read.
        assert_eq!(messages(b"{\"a\":1}\n{\"a\":\n{\"a\":3}").len(), 3);
    }

    #[test]
    fn gzip_is_detected() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"key_id\":\"k\"}\n").unwrap();
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        assert_eq!(Input::read(&path).unwrap().bytes, b"{\"key_id\":\"k\"}\n");
    }
}
