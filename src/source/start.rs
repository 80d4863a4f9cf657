//! Making sure a partition is read from the offset its state reflects.
//!
//! A restored state reflects a partition up to an offset; the partition must
//! be read from exactly there. Kafka answers a fetch at an offset inside a
//! record batch with that whole batch (the client drops the records before
//! the offset). Some brokers answer with the *next* batch instead (tansu 0.6
//! does), which would silently skip the rest of the batch. That happens
//! after a restore, and also to a partition that stays: after a rebalance
//! librdkafka may fetch it again from the last record the application took,
//! inside a batch. So the first records read after a restore, and after each
//! rebalance for the partitions kept, are checked:
//!
//! - a record before the offset is already in the state: it is skipped;
//! - the record at the offset: the read position is right;
//! - a record past it, as the first one read: the partition is sought back
//!   further (by the gap seen, then twice as far each time) and the records
//!   before the offset are skipped, until a record at or before the offset
//!   arrives. Once one has, a later first record is a real gap in the
//!   partition (compaction, transaction markers) and is applied; so is one
//!   read from the partition's start.
//! - no record at all for a while: such a broker answers a fetch inside the
//!   partition's *last* batch with nothing, so the partition is sought back
//!   the same way until a record at or before the offset arrives. On a
//!   broker that keeps to the protocol this only happens to a partition
//!   with nothing new, and costs one read of a few records.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The smallest step back.
const MIN_STEP: i64 = 64;

/// How long a partition being checked may show no record before it is
/// sought back.
pub const QUIET: Duration = Duration::from_millis(500);

/// What to do with a record of a partition being checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartCheck {
    /// Apply it (the position is right, or nothing is being checked).
    Apply,
    /// Skip it: the restored state already holds it.
    Skip,
    /// Skip it and read the partition again from this offset.
    SeekBack {
        /// Where to read from.
        to: i64,
        /// The offset the state reflects.
        expected: i64,
        /// Whether this is the first step back for this restore.
        first: bool,
    },
}

/// A seek back: where to read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Back {
    /// The partition's number.
    pub origin: u16,
    /// Where to read from.
    pub to: i64,
    /// The offset the state reflects.
    pub expected: i64,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    expected: i64,
    /// How far back the last seek went (0: not sought back yet).
    step: i64,
    /// A record before `expected` arrived since the last seek: the broker
    /// serves from at or before it.
    reached: bool,
    /// When the partition was pointed at its offset or last sought back.
    since: Instant,
    /// The first record served past `expected`, if one was.
    past: Option<i64>,
}

impl Pending {
    /// Read from the partition's start already: nowhere further back.
    fn exhausted(&self) -> bool {
        self.step > 0 && self.step >= self.expected
    }

    /// The next step back, at least `gap` (records seen skipped).
    fn back(&mut self, origin: u16, gap: i64, now: Instant) -> Back {
        self.step = if self.step == 0 {
            gap.max(MIN_STEP)
        } else {
            self.step.saturating_mul(2)
        };
        self.since = now;
        Back {
            origin,
            to: (self.expected - self.step).max(0),
            expected: self.expected,
        }
    }
}

/// Records a broker skipped and that were read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// The partition's number.
    pub origin: u16,
    /// The first record skipped.
    pub from: i64,
    /// How many the broker skipped.
    pub records: i64,
}

/// Partitions whose first records are still to be checked, by origin.
#[derive(Debug, Default)]
pub struct Starts {
    pending: Mutex<HashMap<u16, Pending>>,
    /// Entries in `pending`, read on every record without the lock.
    count: AtomicUsize,
}

impl Starts {
    /// The partition numbered `origin` is to be read from `offset`.
    pub fn expect(&self, origin: u16, offset: i64) {
        self.expect_at(origin, offset, Instant::now(), true);
    }

    /// As [`Starts::expect`], unless the partition is being checked already.
    pub fn expect_unless_pending(&self, origin: u16, offset: i64) {
        self.expect_at(origin, offset, Instant::now(), false);
    }

    fn expect_at(&self, origin: u16, offset: i64, now: Instant, replace: bool) {
        let mut pending = self.lock();
        if !replace && pending.contains_key(&origin) {
            return;
        }
        pending.insert(
            origin,
            Pending {
                expected: offset,
                step: 0,
                reached: false,
                since: now,
                past: None,
            },
        );
        self.count.store(pending.len(), Ordering::Relaxed);
    }

    /// Whether the partition numbered `origin` is being checked.
    pub fn is_pending(&self, origin: u16) -> bool {
        self.lock().contains_key(&origin)
    }

    /// The partition left this instance: nothing to check.
    pub fn forget(&self, origin: u16) {
        let mut pending = self.lock();
        pending.remove(&origin);
        self.count.store(pending.len(), Ordering::Relaxed);
    }

    /// Checks a record at `offset` of the partition numbered `origin`.
    pub fn check(&self, origin: u16, offset: i64) -> StartCheck {
        self.check_recovered(origin, offset).0
    }

    /// As [`Starts::check`], and the records the broker had skipped when
    /// this record is the first of them read again.
    pub fn check_recovered(&self, origin: u16, offset: i64) -> (StartCheck, Option<Recovered>) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return (StartCheck::Apply, None);
        }
        let mut pending = self.lock();
        let Some(p) = pending.get_mut(&origin) else {
            return (StartCheck::Apply, None);
        };
        if offset < p.expected {
            p.reached = true;
            if offset + 1 == p.expected && p.past.is_none() {
                // The record just before: whatever comes next is applied
                // (an idle partition stops being checked here).
                pending.remove(&origin);
                self.count.store(pending.len(), Ordering::Relaxed);
            }
            return (StartCheck::Skip, None);
        }
        if offset > p.expected && !p.reached && !p.exhausted() {
            let first = p.step == 0;
            p.past.get_or_insert(offset);
            let back = p.back(origin, offset - p.expected, Instant::now());
            let seek = StartCheck::SeekBack {
                to: back.to,
                expected: back.expected,
                first,
            };
            return (seek, None);
        }
        // At the offset; or past it, but the broker was seen to serve from
        // before it (a real gap: compaction, transaction markers), or it
        // was read from its start (the records in between are gone).
        let recovered = p.past.filter(|&past| offset < past).map(|past| Recovered {
            origin,
            from: p.expected,
            records: past - p.expected,
        });
        pending.remove(&origin);
        self.count.store(pending.len(), Ordering::Relaxed);
        (StartCheck::Apply, recovered)
    }

    /// Partitions being checked that showed no record at or before their
    /// offset for [`QUIET`] since they were pointed at it (or last sought
    /// back): each is to be sought back further.
    pub fn quiet(&self) -> Vec<Back> {
        self.quiet_at(Instant::now())
    }

    fn quiet_at(&self, now: Instant) -> Vec<Back> {
        if self.count.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        let mut pending = self.lock();
        pending
            .iter_mut()
            .filter(|(_, p)| !p.reached && !p.exhausted() && now.duration_since(p.since) >= QUIET)
            .map(|(&origin, p)| p.back(origin, 0, now))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u16, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds a broker's answers: `serve(from)` is the records a fetch at
    /// `from` returns. Returns the offsets applied and the seeks made.
    fn read(
        starts: &Starts,
        mut from: i64,
        serve: impl Fn(i64) -> Vec<i64>,
        end: i64,
    ) -> (Vec<i64>, Vec<i64>) {
        let (mut applied, mut seeks) = (Vec::new(), Vec::new());
        'fetch: loop {
            for offset in serve(from) {
                match starts.check(1, offset) {
                    StartCheck::Apply => applied.push(offset),
                    StartCheck::Skip => {}
                    StartCheck::SeekBack { to, .. } => {
                        seeks.push(to);
                        from = to;
                        continue 'fetch;
                    }
                }
                if offset + 1 >= end {
                    break 'fetch;
                }
            }
            break;
        }
        (applied, seeks)
    }

    /// Batches of 100 records, offsets 0..1000, optionally served the way
    /// tansu 0.6 does: a fetch inside a batch gets the next one.
    fn batches(next_batch: bool) -> impl Fn(i64) -> Vec<i64> {
        move |from| {
            let base = if next_batch && from % 100 != 0 {
                (from / 100 + 1) * 100
            } else {
                from / 100 * 100
            };
            (base..1000).collect()
        }
    }

    #[test]
    fn a_broker_that_serves_the_next_batch_is_read_again_from_before_the_offset() {
        let starts = Starts::default();
        starts.expect(1, 537);
        let (applied, seeks) = read(&starts, 537, batches(true), 1000);
        assert_eq!(applied, (537..1000).collect::<Vec<_>>(), "nothing skipped");
        assert_eq!(
            seeks,
            vec![473],
            "one step back, by the gap seen (63, at least 64)"
        );
        let again = Starts::default();
        again.expect(1, 537);
        assert_eq!(
            again.check_recovered(1, 600).1,
            None,
            "the first record past the offset: not yet known"
        );
        assert_eq!(again.check_recovered(1, 500).1, None);
        assert_eq!(
            again.check_recovered(1, 537).1,
            Some(Recovered {
                origin: 1,
                from: 537,
                records: 63
            }),
            "the skipped records came: reported once"
        );
    }

    #[test]
    fn a_broker_that_serves_the_containing_batch_needs_no_seek() {
        let starts = Starts::default();
        starts.expect(1, 537);
        let (applied, seeks) = read(&starts, 537, batches(false), 1000);
        assert_eq!(applied, (537..1000).collect::<Vec<_>>());
        assert!(seeks.is_empty());
    }

    #[test]
    fn steps_back_grow_until_the_broker_serves_from_before_the_offset() {
        let starts = Starts::default();
        starts.expect(1, 1_000);
        // One batch of 1100 records at 400..1500: any fetch inside it gets 1500.
        let serve = |from: i64| -> Vec<i64> {
            if from > 400 {
                (1_500..1_600).collect()
            } else {
                (400..1_600).collect()
            }
        };
        let (applied, seeks) = read(&starts, 1_000, serve, 1_600);
        assert_eq!(applied, (1_000..1_600).collect::<Vec<_>>());
        assert_eq!(seeks, vec![500, 0], "the gap seen, then twice as far");
    }

    #[test]
    fn a_real_gap_is_applied_once_the_broker_was_seen_to_serve_from_before() {
        let starts = Starts::default();
        starts.expect(1, 50);
        // Offsets 50..60 hold no records (compacted away, transaction markers).
        let serve =
            |from: i64| -> Vec<i64> { (from..100).filter(|o| !(50..60).contains(o)).collect() };
        let (applied, seeks) = read(&starts, 50, serve, 100);
        assert_eq!(applied, (60..100).collect::<Vec<_>>());
        assert_eq!(seeks, vec![0], "sought back once, then the gap is real");
    }

    #[test]
    fn records_deleted_by_retention_end_the_search_at_the_partition_start() {
        let starts = Starts::default();
        starts.expect(1, 200);
        // The partition starts at 300 now.
        let serve = |from: i64| -> Vec<i64> { (from.max(300)..400).collect() };
        let (applied, seeks) = read(&starts, 200, serve, 400);
        assert_eq!(applied, (300..400).collect::<Vec<_>>());
        assert_eq!(seeks, vec![100, 0]);
    }

    #[test]
    fn a_quiet_partition_is_sought_back_until_a_record_before_the_offset_arrives() {
        let starts = Starts::default();
        let t0 = Instant::now();
        starts.expect_at(1, 1_000, t0, true);
        assert!(starts.quiet_at(t0 + QUIET / 2).is_empty(), "not quiet yet");
        // A fetch inside the last batch (900..1050) is answered with nothing.
        let back = starts.quiet_at(t0 + QUIET);
        assert_eq!(
            back,
            vec![Back {
                origin: 1,
                to: 936,
                expected: 1_000
            }]
        );
        assert!(
            starts.quiet_at(t0 + QUIET + QUIET / 2).is_empty(),
            "waits again"
        );
        let back = starts.quiet_at(t0 + QUIET * 2);
        assert_eq!(back[0].to, 872, "twice as far");
        // 872 is inside the batch before; its records come, then the last batch.
        for offset in 800..1_000 {
            assert_eq!(starts.check(1, offset), StartCheck::Skip);
        }
        assert!(
            starts.quiet_at(t0 + QUIET * 10).is_empty(),
            "reached: no more seeks"
        );
        assert_eq!(
            starts.count.load(Ordering::Relaxed),
            0,
            "the record before the offset came: checked, no lock per record from here"
        );
        assert_eq!(starts.check(1, 1_000), StartCheck::Apply);
        assert_eq!(starts.check(1, 1_001), StartCheck::Apply);
    }

    #[test]
    fn an_idle_partition_at_its_offset_stops_being_probed_at_the_start() {
        let starts = Starts::default();
        let t0 = Instant::now();
        starts.expect_at(1, 100, t0, true);
        let mut seeks = Vec::new();
        for i in 1..10 {
            seeks.extend(starts.quiet_at(t0 + QUIET * i).into_iter().map(|b| b.to));
        }
        assert_eq!(
            seeks,
            vec![36, 0],
            "then read from the start: nothing further"
        );
        // A record past the offset after that is a real gap.
        assert_eq!(starts.check(1, 105), StartCheck::Apply);
    }

    #[test]
    fn a_partition_kept_through_a_rebalance_is_checked_once() {
        let starts = Starts::default();
        starts.expect(1, 500);
        starts.expect_unless_pending(1, 900);
        assert_eq!(
            starts.check(1, 500),
            StartCheck::Apply,
            "the restore's offset stays"
        );
        starts.expect_unless_pending(1, 501);
        assert_eq!(starts.check(1, 501), StartCheck::Apply);
        assert_eq!(
            starts.check(1, 700),
            StartCheck::Apply,
            "only the first record after the rebalance is checked"
        );
    }

    #[test]
    fn only_the_partitions_expected_are_checked() {
        let starts = Starts::default();
        starts.expect(1, 10);
        assert_eq!(starts.check(2, 99), StartCheck::Apply);
        starts.forget(1);
        assert_eq!(starts.check(1, 99), StartCheck::Apply);
    }
}
