//! Replay: recorded events through the engine in event-time order, for
//! backtesting and tuning. Used by `keywatch replay` and `keywatch review`.
//!
//! Inputs are streams, never read whole: a directory is walked recursively
//! (an S3 CloudTrail bucket's `AWSLogs/…/CloudTrail/<region>/<yyyy>/<mm>/<dd>/`
//! layout reads as it is), a gzip file is decompressed as it is read (up to a
//! per-file limit), JSON Lines are decoded line by line and a JSON array or
//! CloudTrail `{"Records":[…]}` document record by record.
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
//!
//! The files: `input` expands the inputs into files; `stream` opens,
//! decompresses and decodes each file; `merge` schedules them and merges their events in event time
//! through the reorder window of `window`; `apply` applies the events to the
//! engine, on this thread or on the threads of `shards`, while `progress`
//! draws the progress line; `report` holds the [`Summary`] and prints it, and
//! `hint` finds a profile that fits better when nearly every record was
//! skipped; `bytesize` is the [`ByteSize`] the command line reads and the
//! summary prints. This file holds the [`Options`] and [`replay_into`], which
//! runs those steps in order.

mod apply;
mod bytesize;
mod hint;
mod input;
mod merge;
mod progress;
mod report;
mod shards;
mod stream;
mod window;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::decode::Decoder;
use crate::engine::{Engine, Finding};

use apply::Apply;
use hint::profile_hint;
use input::Expanded;
use merge::Merge;
use progress::Progress;
use report::report_failure;
use stream::Opener;

pub use bytesize::ByteSize;
pub use input::{FileFailure, Input};
pub use report::{Refused, Summary};

/// How a replay reads its inputs.
#[derive(Debug, Clone)]
pub struct Options {
    /// How far out of event-time order a file may be.
    pub reorder_window: Duration,
    /// Per-file cap on decompressed bytes.
    pub max_decompressed: u64,
    /// Threads decoding files (1: everything on the calling thread, except
    /// JSON documents, which always have a decode thread of their own), and,
    /// from 2, threads applying events (see `shards`); from 2 too, files
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
    let opener = new_opener(cfg, opts)?;
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
    let merge = Merge::new(&opener, &files, opts.jobs, window_ms);
    let progress = Progress::new(opts.progress, total_bytes, opener.bytes_read.clone());
    let mut apply = Apply::new(engine, on_finding, opts.jobs, progress, &mut summary)?;
    merge.run(&mut apply)?;
    let refused = apply.close(cfg.engine.max_keys)?;
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

/// The decoder `cfg` names and what opening a file needs, shared by the
/// threads that open, decompress and decode.
fn new_opener(cfg: &Config, opts: &Options) -> anyhow::Result<Opener> {
    let decoder = Decoder::for_profile(&cfg.decode.profile, &cfg.decode.profiles)?
        .with_limits(stream::MAX_LINE_BYTES, cfg.decode.max_key_bytes);
    Ok(Opener {
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
    })
}

#[cfg(test)]
mod tests;
