//! What a replay read, skipped and found: `Summary` (with `Refused`), the
//! table it prints for people, and the helpers that fill it in and log a
//! file that could not be read.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::Entity;
use crate::engine::{Detector, Severity};

use super::bytesize::ByteSize;
use super::input::FileFailure;
use super::window::MAX_HELD;

/// Identities `max_keys` kept out of the engine.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Refused {
    /// The configured bound.
    pub max_keys: usize,
    /// Refusals the engine counted (one per event and identity kind).
    pub refusals: u64,
    /// Distinct key ids refused.
    pub keys: u64,
    /// Distinct principals refused.
    pub principals: u64,
    /// More distinct identities were refused than were counted.
    pub at_least: bool,
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
    /// Findings raised, by detector and severity.
    pub findings: BTreeMap<(Detector, Severity), u64>,
    /// Findings folded into an open run (printed as the run's record, one
    /// id per run), not counted in `findings`.
    pub folded: u64,
    /// Event times of the first and last event applied, epoch ms.
    pub span_ms: Option<(i64, i64)>,
    /// Wall time of the whole replay.
    pub elapsed: Duration,
    /// Files read.
    pub files: u64,
    /// Bytes read from the files as stored (compressed).
    pub bytes_read: u64,
    /// Files in the walked directories that were not read, as not event logs.
    pub not_events: Vec<String>,
    /// Files that could not be read to their end.
    pub failed: Vec<FileFailure>,
    /// The reorder window.
    pub window: Duration,
    /// Events more than the reorder window behind the latest event read
    /// before them from their file: applied when read, perhaps after later ones.
    pub late: u64,
    /// The furthest such an event was behind.
    pub late_by_ms: i64,
    /// Most events the reorder window held at once.
    pub peak_held: usize,
    /// Events applied early because the window held `MAX_HELD` (2,000,000).
    pub forced: u64,
    /// Identities refused by `max_keys`.
    pub refused: Refused,
    /// When nearly every record was skipped for one reason: what would fit.
    pub profile_hint: Option<String>,
}

fn human_ms(ms: i64) -> String {
    humantime::format_duration(Duration::from_secs((ms.max(0) / 1000) as u64)).to_string()
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
        let _ = write!(
            s,
            "inputs: {} files, {} read",
            self.files,
            ByteSize(self.bytes_read)
        );
        if !self.not_events.is_empty() {
            let _ = write!(
                s,
                "; {} not read as not event logs (e.g. {})",
                self.not_events.len(),
                self.not_events[0]
            );
        }
        if !self.failed.is_empty() {
            let _ = write!(s, "; {} failed", self.failed.len());
        }
        let _ = writeln!(s);
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
        let window = humantime::format_duration(self.window);
        if self.late == 0 {
            let _ = writeln!(s, "late events: none (reorder window {window})");
        } else {
            let _ = writeln!(
                s,
                "late events: {} more than the reorder window {window} behind their file, applied late (up to {} behind; see --reorder-window)",
                self.late,
                human_ms(self.late_by_ms)
            );
        }
        if self.forced > 0 {
            let _ = writeln!(
                s,
                "reorder window full: {} events applied early to hold at most {MAX_HELD}",
                self.forced
            );
        }
        for (entity, n) in &self.keys {
            let _ = writeln!(s, "{} tracked: {n}", entity.as_str());
        }
        let r = &self.refused;
        if r.refusals > 0 {
            let at_least = if r.at_least { "at least " } else { "" };
            let _ = writeln!(
                s,
                "refused by engine.max_keys = {}: {at_least}{} new key ids and {at_least}{} new principals ({} events not tracked for them)",
                r.max_keys, r.keys, r.principals, r.refusals
            );
        }
        let total: u64 = self.findings.values().sum();
        if self.folded > 0 {
            let _ = writeln!(
                s,
                "findings: {total} (and {} folded into open runs: printed as their run's record, no alert)",
                self.folded
            );
        } else {
            let _ = writeln!(s, "findings: {total}");
        }
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
        if !self.failed.is_empty() {
            let _ = writeln!(s, "failed files: {}", self.failed.len());
            for f in &self.failed {
                let _ = writeln!(
                    s,
                    "  {}: {} ({} events read before were replayed)",
                    f.name, f.reason, f.events_before
                );
            }
        }
        s
    }
}

pub(super) fn merge_counts(
    into: &mut BTreeMap<&'static str, u64>,
    from: BTreeMap<&'static str, u64>,
) {
    for (k, v) in from {
        *into.entry(k).or_default() += v;
    }
}

pub(super) fn report_failure(f: &FileFailure) {
    tracing::error!(
        file = %f.name,
        reason = %f.reason,
        events_before = f.events_before,
        "skipping the rest of this file"
    );
}
