//! Replay: recorded events through the engine in event-time order, for
//! backtesting and tuning. Used by `keywatch replay` and `keywatch review`.
//!
//! Inputs are streams, never read whole: a directory is walked recursively
//! (an S3 CloudTrail bucket's `AWSLogs/…/CloudTrail/<region>/<yyyy>/<mm>/<dd>/`
//! layout reads as it is), a gzip file is decompressed as it is read (up to a
//! per-file limit), JSON Lines are decoded line by line and a JSON array or
//! CloudTrail `{"Records":[…]}` document record by record ([`input`]).
//!
//! The files are merged in event time through a reorder window: each file
//! may be out of order by up to the window, and an event is applied once no
//! file can still produce an earlier one. Events held are those within the
//! window of the slowest file, so memory depends on the window and the event
//! rate, not on the length of the history. A file is opened only when the
//! merge reaches the time of its first event. Events are applied in (time,
//! file, position) order — the order of a stable sort of everything, which
//! is what the replay did before it streamed. An event later than the window
//! allows is applied at once and counted as late, never dropped.

mod input;
mod progress;
mod shards;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, Entity};
use crate::decode::{profile, Decoder, OwnedEvent};
use crate::engine::{principal_identity, Detector, Engine, Finding, Severity};

use input::{Batch, Expanded, Opener, Stream};
pub use input::{FileFailure, Input};
use progress::Progress;
use shards::Shards;

/// How a replay reads its inputs.
#[derive(Debug, Clone)]
pub struct Options {
    /// How far out of event-time order a file may be.
    pub reorder_window: Duration,
    /// Per-file cap on decompressed bytes.
    pub max_decompressed: u64,
    /// Threads decoding files (1: everything on the calling thread, except
    /// JSON documents, which always have a decode thread of their own), and,
    /// from 2, threads applying events (see [`shards`]); from 2 too, files
    /// are opened, decompressed and decoded on up to 4 threads per job, and
    /// their first events found on `jobs` threads, so the calling thread
    /// only merges.
    pub jobs: usize,
    /// Draw a progress line on stderr.
    pub progress: bool,
}

/// Default reorder window: CloudTrail delivers a file about every 5 minutes
/// and an event within 15 minutes of the call (AWS's stated typical delay),
/// so files of neighbouring deliveries overlap by up to that.
pub const DEFAULT_REORDER_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Default per-file decompressed-size limit: 4 GiB, about 40 times a large
/// CloudTrail file and far above what a day of one busy key writes; a 3.6 MB
/// gzip bomb that expands to 4.3 GB passes it and fails there.
pub const DEFAULT_MAX_DECOMPRESSED: u64 = 4 << 30;

/// Events held at most in the reorder window whatever the window holds at
/// the input's rate (about 250 bytes each): past it the oldest are applied
/// early, and what then arrives earlier is late.
const MAX_HELD: usize = 2_000_000;

/// Distinct refused identities counted exactly, per kind; past it "at least".
const MAX_REFUSED_COUNTED: usize = 1 << 20;

impl Default for Options {
    fn default() -> Self {
        Options {
            reorder_window: DEFAULT_REORDER_WINDOW,
            max_decompressed: DEFAULT_MAX_DECOMPRESSED,
            jobs: 1,
            progress: false,
        }
    }
}

/// A size in bytes, written `4GiB`, `512MiB`, `100MB` or a plain number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<ByteSize, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let unit = unit.trim().to_ascii_lowercase();
        let mult: u64 = match unit.as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "m" | "mb" => 1_000_000,
            "g" | "gb" => 1_000_000_000,
            "t" | "tb" => 1_000_000_000_000,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "tib" => 1 << 40,
            _ => return Err(format!("{s:?}: unknown unit (write e.g. 4GiB, 500MB)")),
        };
        let n: f64 = num
            .parse()
            .map_err(|_| format!("{s:?}: not a size (write e.g. 4GiB, 500MB)"))?;
        let bytes = n * mult as f64;
        if !(1.0..1.8e19).contains(&bytes) {
            return Err(format!("{s:?}: must be at least 1 byte"));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut v = self.0 as f64;
        let mut unit = 0;
        while v >= 1024.0 && unit < UNITS.len() - 1 {
            v /= 1024.0;
            unit += 1;
        }
        if unit == 0 {
            write!(f, "{} B", self.0)
        } else if v.fract() == 0.0 {
            write!(f, "{v:.0} {}", UNITS[unit])
        } else {
            write!(f, "{v:.1} {}", UNITS[unit])
        }
    }
}

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
    /// Events applied early because the window held [`MAX_HELD`].
    pub forced: u64,
    /// Identities refused by `max_keys`.
    pub refused: Refused,
    /// When nearly every record was skipped for one reason: what would fit.
    pub profile_hint: Option<String>,
}

/// Replays `inputs` through a fresh engine (with the network intelligence
/// files `cfg` names); every finding goes to `on_finding` in the order found.
pub fn replay(
    cfg: &Config,
    inputs: &[Input],
    on_finding: impl FnMut(&Finding) -> anyhow::Result<()>,
) -> anyhow::Result<Summary> {
    let netintel = crate::netintel::NetIntel::from_config(&cfg.netintel, None)?;
    replay_into(
        &Engine::with_parts(cfg, None, netintel),
        cfg,
        &Options::default(),
        inputs,
        on_finding,
    )
}

/// Replays `inputs` through `engine` (built from `cfg`, perhaps with an
/// inventory), which keeps the resulting state for the caller to read. A file
/// that cannot be read to its end is reported in [`Summary::failed`], and the
/// rest are replayed.
pub fn replay_into(
    engine: &Engine,
    cfg: &Config,
    opts: &Options,
    inputs: &[Input],
    on_finding: impl FnMut(&Finding) -> anyhow::Result<()>,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let decoder = Decoder::for_profile(&cfg.decode.profile, &cfg.decode.profiles)?
        .with_limits(input::MAX_LINE_BYTES, cfg.decode.max_key_bytes);
    let opener = Opener {
        decoder: Arc::new(decoder),
        max_decompressed: opts.max_decompressed,
        bytes_read: Arc::new(AtomicU64::new(0)),
        warned: Arc::new(AtomicU64::new(0)),
        // With one job everything runs on this thread. With more, every
        // file being merged (several at once: the window spans a few of
        // CloudTrail's 5-minute files) is decoded on a thread of its own,
        // up to 4 per job; this thread only merges.
        spare_threads: Arc::new(AtomicUsize::new(match opts.jobs {
            0 | 1 => 0,
            n => 4 * n,
        })),
    };
    let Expanded {
        files,
        not_events,
        failures,
    } = input::expand(inputs);
    let window_ms = opts.reorder_window.as_millis().min(i64::MAX as u128 / 4) as i64;
    let total_bytes = files.iter().map(|f| f.size).sum::<Option<u64>>();
    let mut summary = Summary {
        not_events,
        failed: failures,
        window: opts.reorder_window,
        files: files.len() as u64,
        ..Summary::default()
    };
    for f in &summary.failed {
        report_failure(f);
    }
    // Where each file starts in event time: it is opened when the merge
    // gets there (standard input at once: it cannot be read twice).
    let mut pending: Vec<(i64, u32)> = opener
        .first_times(&files, opts.jobs)
        .into_iter()
        .enumerate()
        .map(|(i, first)| {
            (
                first.map_or(i64::MIN, |t| t.saturating_sub(window_ms)),
                i as u32,
            )
        })
        .collect();
    pending.sort_unstable();
    let mut pending = pending.into_iter().peekable();
    // With `--jobs` 2 or more, the next files in line are opened ahead of
    // the merge: a file is needed as soon as the merge reaches its start,
    // so without this one decode thread would work at a time. Each holds at
    // most a document and two batches until the merge takes it.
    let read_ahead = match opts.jobs {
        0 | 1 => 0,
        n => 2 * n,
    };
    let mut ahead: VecDeque<(i64, u32, Result<Stream, String>)> = VecDeque::new();

    let mut apply = Apply {
        engine,
        on_finding,
        found: Vec::new(),
        reached_ms: i64::MIN,
        refused_before: engine.stats().keys_rejected.load(Ordering::Relaxed),
        refused_keys: HashSet::new(),
        refused_principals: HashSet::new(),
        progress: Progress::new(opts.progress, total_bytes, opener.bytes_read.clone()),
        shards: match opts.jobs {
            0 | 1 => None,
            n => Some(Shards::start(engine, n)?),
        },
        summary: &mut summary,
    };
    let mut held = Window::default();
    let mut open: Vec<Option<Open>> = (0..files.len()).map(|_| None).collect();
    // Open files by their watermark: no event below it is still to come.
    let mut laggards: BinaryHeap<Reverse<(i64, u32)>> = BinaryHeap::new();
    loop {
        let next_file = ahead
            .front()
            .map(|a| a.0)
            .or_else(|| pending.peek().map(|&(bound, _)| bound));
        let next_open = laggards.peek().map(|Reverse((wm, _))| *wm);
        let frontier = next_file
            .unwrap_or(i64::MAX)
            .min(next_open.unwrap_or(i64::MAX));
        while let Some(h) = held.pop_before(frontier) {
            apply.apply(h)?;
        }
        while held.len() > MAX_HELD {
            let Some(h) = held.pop() else { break };
            apply.summary.forced += 1;
            apply.apply(h)?;
        }
        let take_file = match (next_file, next_open) {
            (None, None) => break,
            (Some(f), Some(o)) => f <= o,
            (Some(_), None) => true,
            (None, Some(_)) => false,
        };
        if take_file {
            let (bound, index, stream) = match ahead.pop_front() {
                Some(a) => a,
                None => {
                    let Some((bound, index)) = pending.next() else {
                        break;
                    };
                    (bound, index, opener.stream(&files[index as usize], index))
                }
            };
            while ahead.len() < read_ahead {
                let Some((b, i)) = pending.next() else { break };
                ahead.push_back((b, i, opener.stream(&files[i as usize], i)));
            }
            let file = &files[index as usize];
            match stream {
                Ok(stream) => {
                    open[index as usize] = Some(Open {
                        stream,
                        max_ms: bound.saturating_add(window_ms),
                        events: 0,
                        seq: 0,
                    });
                    laggards.push(Reverse((bound, index)));
                }
                Err(reason) => apply.fail(&file.name, reason, 0),
            }
            continue;
        }
        let Some(Reverse((wm, index))) = laggards.pop() else {
            break;
        };
        let Some(o) = open[index as usize].as_mut() else {
            continue;
        };
        match o.stream.next_batch() {
            Some(Ok(Batch { events, tally })) => {
                let s = &mut *apply.summary;
                s.messages += tally.messages;
                merge_counts(&mut s.skipped, tally.skipped);
                merge_counts(&mut s.decode_errors, tally.decode_errors);
                o.events += events.len() as u64;
                for ev in events {
                    let behind = o.max_ms.saturating_sub(ev.time_ms());
                    if behind > window_ms {
                        let s = &mut *apply.summary;
                        s.late += 1;
                        s.late_by_ms = s.late_by_ms.max(behind);
                    }
                    o.max_ms = o.max_ms.max(ev.time_ms());
                    o.seq += 1;
                    if ev.time_ms() < frontier {
                        // Events up to the frontier may already be applied:
                        // this one cannot wait in the window.
                        apply.apply(Held {
                            time_ms: ev.time_ms(),
                            ev,
                        })?;
                    } else {
                        held.push(index, o.seq, ev);
                    }
                }
                apply.summary.peak_held = apply.summary.peak_held.max(held.len());
                let wm = wm.max(o.max_ms.saturating_sub(window_ms));
                laggards.push(Reverse((wm, index)));
            }
            Some(Err(reason)) => {
                let events = o.events;
                open[index as usize] = None;
                apply.fail(&files[index as usize].name, reason, events);
            }
            None => open[index as usize] = None,
        }
    }
    while let Some(h) = held.pop() {
        apply.apply(h)?;
    }
    apply.finish()?;
    apply.progress.finish();
    let refused = Refused {
        max_keys: cfg.engine.max_keys,
        refusals: engine.stats().keys_rejected.load(Ordering::Relaxed) - apply.refused_before,
        keys: apply.refused_keys.len() as u64,
        principals: apply.refused_principals.len() as u64,
        at_least: apply.refused_keys.len() >= MAX_REFUSED_COUNTED
            || apply.refused_principals.len() >= MAX_REFUSED_COUNTED,
    };
    drop(apply);
    summary.refused = refused;
    summary.bytes_read = opener.bytes_read.load(Ordering::Relaxed);
    summary.keys = cfg
        .engine
        .entities
        .iter()
        .map(|&e| (e, engine.key_count(e)))
        .collect();
    summary.profile_hint = profile_hint(&cfg.decode.profile, &opener, &files, &summary);
    summary.elapsed = started.elapsed();
    Ok(summary)
}

fn merge_counts(into: &mut BTreeMap<&'static str, u64>, from: BTreeMap<&'static str, u64>) {
    for (k, v) in from {
        *into.entry(k).or_default() += v;
    }
}

fn report_failure(f: &FileFailure) {
    tracing::error!(
        file = %f.name,
        reason = %f.reason,
        events_before = f.events_before,
        "skipping the rest of this file"
    );
}

/// An event read, in (time, file, position) order.
struct Held {
    time_ms: i64,
    ev: OwnedEvent,
}

/// The reorder window: the heap orders small keys, the events wait in a
/// slab (moving a key is cheaper than moving an event at every heap level).
#[derive(Default)]
struct Window {
    /// (time, file, position in file, slot).
    order: BinaryHeap<Reverse<(i64, u32, u64, u32)>>,
    slots: Vec<Option<OwnedEvent>>,
    free: Vec<u32>,
}

impl Window {
    fn len(&self) -> usize {
        self.order.len()
    }

    fn push(&mut self, file: u32, seq: u64, ev: OwnedEvent) {
        let time = ev.time_ms();
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(ev);
                slot
            }
            None => {
                self.slots.push(Some(ev));
                (self.slots.len() - 1) as u32
            }
        };
        self.order.push(Reverse((time, file, seq, slot)));
    }

    /// The earliest event if it is before `before`.
    fn pop_before(&mut self, before: i64) -> Option<Held> {
        if self.order.peek()?.0 .0 >= before {
            return None;
        }
        self.pop()
    }

    fn pop(&mut self) -> Option<Held> {
        let Reverse((time_ms, _, _, slot)) = self.order.pop()?;
        let ev = self.slots[slot as usize].take()?;
        self.free.push(slot);
        Some(Held { time_ms, ev })
    }
}

/// A file being merged.
struct Open {
    stream: Stream,
    /// Latest event time read from it.
    max_ms: i64,
    events: u64,
    seq: u64,
}

/// Applies events to the engine in order, counting what the summary says.
struct Apply<'a, F> {
    engine: &'a Engine,
    on_finding: F,
    found: Vec<Finding>,
    /// Latest event time applied.
    reached_ms: i64,
    refused_before: u64,
    refused_keys: HashSet<u64>,
    refused_principals: HashSet<u64>,
    progress: Progress,
    /// With `--jobs` 2 or more: the threads that apply.
    shards: Option<Shards>,
    summary: &'a mut Summary,
}

impl<F: FnMut(&Finding) -> anyhow::Result<()>> Apply<'_, F> {
    fn apply(&mut self, h: Held) -> anyhow::Result<()> {
        self.reached_ms = self.reached_ms.max(h.time_ms);
        self.summary.span_ms = Some(match self.summary.span_ms {
            None => (h.time_ms, h.time_ms),
            Some((a, b)) => (a.min(h.time_ms), b.max(h.time_ms)),
        });
        if let Some(mut shards) = self.shards.take() {
            let pushed = shards.push(h.ev, &mut |f| self.found(&f));
            self.take_refused(&mut shards);
            self.shards = Some(shards);
            pushed?;
        } else {
            let ev = h.ev.event();
            let stats = self.engine.stats();
            let rejected = stats.keys_rejected.load(Ordering::Relaxed);
            self.engine.process(&ev, &mut self.found);
            if stats.keys_rejected.load(Ordering::Relaxed) != rejected {
                self.note_refused(&ev.key_id, ev.principal.as_deref());
            }
            let found = std::mem::take(&mut self.found);
            for f in &found {
                self.found(f)?;
            }
            self.found = found;
            self.found.clear();
        }
        self.summary.events += 1;
        if self.summary.events % 4096 == 0 {
            self.progress
                .tick(self.summary.events, Some(self.reached_ms));
        }
        Ok(())
    }

    /// Hands a finding on and counts it.
    fn found(&mut self, f: &Finding) -> anyhow::Result<()> {
        if f.folded.is_some() {
            self.summary.folded += 1;
        } else {
            *self
                .summary
                .findings
                .entry((f.detector, f.severity))
                .or_default() += 1;
        }
        (self.on_finding)(f)
    }

    /// Applies what the shards still hold (nothing to do on one thread).
    fn finish(&mut self) -> anyhow::Result<()> {
        let Some(mut shards) = self.shards.take() else {
            return Ok(());
        };
        let finished = shards.finish(&mut |f| self.found(&f));
        self.take_refused(&mut shards);
        finished
    }

    fn take_refused(&mut self, shards: &mut Shards) {
        let refused = std::mem::take(&mut shards.refused);
        for (ids, seen) in [
            (refused.keys, &mut self.refused_keys),
            (refused.principals, &mut self.refused_principals),
        ] {
            for id in ids {
                if seen.len() < MAX_REFUSED_COUNTED {
                    seen.insert(id);
                }
            }
        }
    }

    /// Which of the event's identities `max_keys` refused, counted once each.
    fn note_refused(&mut self, key_id: &str, principal: Option<&str>) {
        let hash = |s: &str| xxhash_rust::xxh3::xxh3_64(s.as_bytes());
        let untracked = |entity, id: &str| self.engine.with_key(entity, id, |_| ()).is_none();
        let key_refused = untracked(Entity::KeyId, key_id);
        let principal = principal.map(principal_identity);
        let principal_refused = principal.filter(|&p| untracked(Entity::Principal, p));
        if key_refused && self.refused_keys.len() < MAX_REFUSED_COUNTED {
            self.refused_keys.insert(hash(key_id));
        }
        if let Some(p) = principal_refused {
            if self.refused_principals.len() < MAX_REFUSED_COUNTED {
                self.refused_principals.insert(hash(p));
            }
        }
    }

    fn fail(&mut self, name: &str, reason: String, events_before: u64) {
        let f = FileFailure {
            name: name.to_owned(),
            reason,
            events_before,
        };
        report_failure(&f);
        self.summary.failed.push(f);
    }
}

/// Records sampled per profile when looking for one that fits better.
const HINT_SAMPLE: u64 = 1000;

/// When nearly every record was skipped for one reason, which built-in
/// profile decodes a sample of the files better.
fn profile_hint(
    current: &str,
    opener: &Opener,
    files: &[input::File],
    summary: &Summary,
) -> Option<String> {
    let skipped: u64 = summary
        .skipped
        .iter()
        .filter(|(r, _)| **r != "filtered")
        .map(|(_, n)| n)
        .sum();
    let records = summary.events + skipped;
    let (reason, &most) = summary
        .skipped
        .iter()
        .filter(|(r, _)| **r != "filtered")
        .max_by_key(|(_, n)| **n)?;
    if records < 10 || (most as f64) < 0.9 * records as f64 {
        return None;
    }
    let sample = |decoder: &Decoder| {
        let (mut records, mut events) = (0, 0);
        for f in files.iter().filter(|f| !f.is_stdin()) {
            records += opener.sample(f, decoder, HINT_SAMPLE - records, |_| {
                events += 1;
                true
            });
            if records >= HINT_SAMPLE {
                break;
            }
        }
        (records, events)
    };
    let (sampled, _) = sample(&opener.decoder);
    if sampled == 0 {
        // Standard input cannot be read again to try the others on.
        return None;
    }
    let mut best: Option<(&str, u64)> = None;
    for name in profile::BUILTIN.iter().filter(|&&n| n != current) {
        let Ok(decoder) = Decoder::for_profile(name, &BTreeMap::new()) else {
            continue;
        };
        let (_, events) = sample(&decoder);
        if events > best.map_or(0, |b| b.1) {
            best = Some((name, events));
        }
    }
    let head =
        format!("{most} of {records} records were skipped as {reason} with profile `{current}`");
    Some(match best {
        Some((name, events)) if events * 2 >= sampled => format!(
            "{head}; profile `{name}` decodes {events} of {sampled} sampled records: try --profile {name}"
        ),
        _ => format!(
            "{head}; no built-in profile decodes them either ({}): a profile of your own in decode.profiles can map them",
            profile::BUILTIN.join(", ")
        ),
    })
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

#[cfg(test)]
mod tests;
