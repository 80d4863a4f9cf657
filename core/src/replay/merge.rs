//! The merge: each file is opened when the merge reaches the time of its
//! first event, the open files are read in turn by watermark, and their
//! events go through the reorder window to `Apply` in (time, file,
//! position) order.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::iter::Peekable;
use std::vec;

use crate::engine::Finding;

use super::apply::Apply;
use super::input::File;
use super::report::merge_counts;
use super::stream::{Batch, Opener, Stream};
use super::window::{Held, Window, MAX_HELD};

/// A file being merged.
struct Open {
    stream: Stream,
    /// Latest event time read from it.
    max_ms: i64,
    events: u64,
    seq: u64,
}

/// The files of a replay, merged in event time through the reorder window.
pub(super) struct Merge<'a> {
    opener: &'a Opener,
    files: &'a [File],
    /// The reorder window, in ms.
    window_ms: i64,
    /// Files not opened yet, by (event time at which the merge opens them,
    /// index), earliest first.
    pending: Peekable<vec::IntoIter<(i64, u32)>>,
    /// How many files are opened ahead of the merge.
    read_ahead: usize,
    /// Files opened ahead of the merge, in `pending` order.
    ahead: VecDeque<(i64, u32, Result<Stream, String>)>,
    held: Window,
    /// The files being merged, by index.
    open: Vec<Option<Open>>,
    /// Open files by their watermark: no event below it is still to come.
    laggards: BinaryHeap<Reverse<(i64, u32)>>,
}

impl<'a> Merge<'a> {
    /// Finds where each of `files` starts in event time (with `jobs`
    /// threads) to open it when the merge gets there.
    pub(super) fn new(
        opener: &'a Opener,
        files: &'a [File],
        jobs: usize,
        window_ms: i64,
    ) -> Merge<'a> {
        // Where each file starts in event time: it is opened when the merge
        // gets there (standard input at once: it cannot be read twice).
        let mut pending: Vec<(i64, u32)> = opener
            .first_times(files, jobs)
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
        // With `--jobs` 2 or more, the next files in line are opened ahead of
        // the merge: a file is needed as soon as the merge reaches its start,
        // so without this one decode thread would work at a time. Each holds at
        // most a document and two batches until the merge takes it.
        let read_ahead = match jobs {
            0 | 1 => 0,
            n => 2 * n,
        };
        Merge {
            opener,
            files,
            window_ms,
            pending: pending.into_iter().peekable(),
            read_ahead,
            ahead: VecDeque::new(),
            held: Window::default(),
            open: (0..files.len()).map(|_| None).collect(),
            laggards: BinaryHeap::new(),
        }
    }

    /// Reads every file to its end (or its failure) and applies every event.
    pub(super) fn run<F: FnMut(&Finding) -> anyhow::Result<()>>(
        mut self,
        apply: &mut Apply<'_, F>,
    ) -> anyhow::Result<()> {
        loop {
            let next_file = self
                .ahead
                .front()
                .map(|a| a.0)
                .or_else(|| self.pending.peek().map(|&(bound, _)| bound));
            let next_open = self.laggards.peek().map(|Reverse((wm, _))| *wm);
            let frontier = next_file
                .unwrap_or(i64::MAX)
                .min(next_open.unwrap_or(i64::MAX));
            self.apply_before(frontier, apply)?;
            let take_file = match (next_file, next_open) {
                (None, None) => break,
                (Some(f), Some(o)) => f <= o,
                (Some(_), None) => true,
                (None, Some(_)) => false,
            };
            if take_file {
                if !self.open_next(apply) {
                    break;
                }
                continue;
            }
            let Some(Reverse((wm, index))) = self.laggards.pop() else {
                break;
            };
            self.read_next(wm, index, frontier, apply)?;
        }
        while let Some(h) = self.held.pop() {
            apply.apply(h)?;
        }
        Ok(())
    }

    /// Applies the held events before `frontier`, then the earliest while
    /// the window holds more than [`MAX_HELD`].
    fn apply_before<F: FnMut(&Finding) -> anyhow::Result<()>>(
        &mut self,
        frontier: i64,
        apply: &mut Apply<'_, F>,
    ) -> anyhow::Result<()> {
        while let Some(h) = self.held.pop_before(frontier) {
            apply.apply(h)?;
        }
        while self.held.len() > MAX_HELD {
            let Some(h) = self.held.pop() else { break };
            apply.summary.forced += 1;
            apply.apply(h)?;
        }
        Ok(())
    }

    /// Opens the next file in line, and the files to open ahead of the
    /// merge; false if no file is left.
    fn open_next<F: FnMut(&Finding) -> anyhow::Result<()>>(
        &mut self,
        apply: &mut Apply<'_, F>,
    ) -> bool {
        let (bound, index, stream) = match self.ahead.pop_front() {
            Some(a) => a,
            None => {
                let Some((bound, index)) = self.pending.next() else {
                    return false;
                };
                (
                    bound,
                    index,
                    self.opener.stream(&self.files[index as usize], index),
                )
            }
        };
        while self.ahead.len() < self.read_ahead {
            let Some((b, i)) = self.pending.next() else {
                break;
            };
            self.ahead
                .push_back((b, i, self.opener.stream(&self.files[i as usize], i)));
        }
        let file = &self.files[index as usize];
        match stream {
            Ok(stream) => {
                self.open[index as usize] = Some(Open {
                    stream,
                    max_ms: bound.saturating_add(self.window_ms),
                    events: 0,
                    seq: 0,
                });
                self.laggards.push(Reverse((bound, index)));
            }
            Err(reason) => apply.fail(&file.name, reason, 0),
        }
        true
    }

    /// Reads the next batch of file `index` (at watermark `wm`): events
    /// before `frontier` are applied at once, the others held in the window.
    fn read_next<F: FnMut(&Finding) -> anyhow::Result<()>>(
        &mut self,
        wm: i64,
        index: u32,
        frontier: i64,
        apply: &mut Apply<'_, F>,
    ) -> anyhow::Result<()> {
        let window_ms = self.window_ms;
        let Some(o) = self.open[index as usize].as_mut() else {
            return Ok(());
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
                        self.held.push(index, o.seq, ev);
                    }
                }
                apply.summary.peak_held = apply.summary.peak_held.max(self.held.len());
                let wm = wm.max(o.max_ms.saturating_sub(window_ms));
                self.laggards.push(Reverse((wm, index)));
            }
            Some(Err(reason)) => {
                let events = o.events;
                self.open[index as usize] = None;
                apply.fail(&self.files[index as usize].name, reason, events);
            }
            None => self.open[index as usize] = None,
        }
        Ok(())
    }
}
