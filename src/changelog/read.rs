//! Reading snapshots back: each wanted partition's changelog partition read
//! to its end, chunks reassembled into snapshots, the newest complete one
//! kept per partition, and the older ones (complete or half-written)
//! deleted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::format::{self, ChunkHeader, Entry};
use super::{Changelog, PartitionState, Restored};

/// Times the end of a partition is read again when the read reached it,
/// for a snapshot written just before the end was first read.
const RECHECKS: u32 = 3;

impl Changelog {
    /// Reads the newest complete snapshot of each of `wanted`, within `timeout`.
    pub fn read(
        &self,
        wanted: &[(String, i32)],
        timeout: Duration,
    ) -> anyhow::Result<HashMap<(String, i32), Restored>> {
        let reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let mut homes: Vec<i32> = wanted.iter().map(|(_, p)| self.home(*p)).collect();
        homes.sort_unstable();
        homes.dedup();
        let mut snapshots = Snapshots::default();
        let result = self
            .assign(&reader, &homes, timeout)
            .and_then(|ends| self.read_to_end(&reader, ends, timeout, wanted, &mut snapshots));
        let _ = reader.unassign();
        drop(reader);
        result?;
        self.delete(&snapshots.stale());
        snapshots.warn_incomplete();
        let mut out = HashMap::new();
        for (tp, snapshot) in snapshots.best {
            let count = snapshot.header.count;
            let id = snapshot.header.snapshot;
            match snapshot.decode() {
                Ok(restored) => {
                    self.adopt(&restored.state, id, count);
                    out.insert(tp, restored);
                }
                Err(e) => {
                    tracing::error!(topic = %tp.0, partition = tp.1, error = %e, "a changelog snapshot does not decode; the partition starts without it")
                }
            }
        }
        Ok(out)
    }

    /// Assigns the non-empty partitions of `homes` from their beginning;
    /// returns each one's high watermark now. (Not an end-of-partition
    /// event: one left over from an earlier restore would end this one
    /// before it read anything.)
    fn assign(
        &self,
        reader: &BaseConsumer,
        homes: &[i32],
        timeout: Duration,
    ) -> anyhow::Result<HashMap<i32, i64>> {
        let mut ends = HashMap::new();
        let mut tpl = TopicPartitionList::new();
        for &p in homes {
            let (low, high) = reader
                .fetch_watermarks(&self.cfg.topic, p, timeout)
                .with_context(|| {
                    format!(
                        "reading the extent of changelog.topic `{}` partition {p}",
                        self.cfg.topic
                    )
                })?;
            if high > low {
                ends.insert(p, high);
                tpl.add_partition_offset(&self.cfg.topic, p, Offset::Beginning)
                    .context("assigning the changelog")?;
            }
        }
        reader.assign(&tpl).context("assigning the changelog")?;
        Ok(ends)
    }

    /// Polls until every partition in `pending` reached its end (read again
    /// a few times while the end moves), then drains what was already
    /// fetched, handing each of our chunks to `snapshots`.
    fn read_to_end(
        &self,
        reader: &BaseConsumer,
        mut pending: HashMap<i32, i64>,
        timeout: Duration,
        wanted: &[(String, i32)],
        snapshots: &mut Snapshots,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        // Where each partition was read to, to check the end once more.
        let mut reached: HashMap<i32, i64> = pending.clone();
        let mut rechecks = 0;
        // Read to the end: the records already fetched are taken too (a
        // broker that reports the end as the last batch's first record,
        // as tansu 0.6 does, would otherwise hide the rest of that batch).
        let mut draining = false;
        loop {
            if pending.is_empty() && !draining {
                if rechecks < RECHECKS {
                    rechecks += 1;
                    self.recheck_ends(reader, &mut reached, &mut pending);
                }
                draining = pending.is_empty();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() && draining {
                return Ok(());
            }
            if left.is_zero() {
                let mut left: Vec<&i32> = pending.keys().collect();
                left.sort();
                anyhow::bail!(
                    "reading changelog.topic `{}` partitions {left:?} took longer than changelog.handoff_timeout",
                    self.cfg.topic
                );
            }
            let wait = if draining {
                Duration::ZERO
            } else {
                left.min(Duration::from_millis(200))
            };
            let msg = match reader.poll(wait) {
                None if draining => return Ok(()),
                None | Some(Err(KafkaError::PartitionEOF(_))) => continue,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "reading the changelog");
                    continue;
                }
                Some(Ok(msg)) => msg,
            };
            if pending
                .get(&msg.partition())
                .is_some_and(|&high| msg.offset() + 1 >= high)
            {
                pending.remove(&msg.partition());
            }
            let Some(payload) = msg.payload() else {
                continue;
            };
            tracing::debug!(
                partition = msg.partition(),
                offset = msg.offset(),
                bytes = payload.len(),
                "changelog record"
            );
            let header = match format::decode_header(payload) {
                Ok((h, _)) => h,
                Err(e) => {
                    tracing::warn!(offset = msg.offset(), partition = msg.partition(), error = %e, "skipping a changelog record");
                    continue;
                }
            };
            let ours = header.group == self.group || header.group.is_empty();
            if ours && wanted.contains(&(header.topic.clone(), header.partition)) {
                snapshots.take(header, payload);
            }
        }
    }

    /// A snapshot written just before the end was read may end past it:
    /// partitions whose end moved are pending again.
    fn recheck_ends(
        &self,
        reader: &BaseConsumer,
        reached: &mut HashMap<i32, i64>,
        pending: &mut HashMap<i32, i64>,
    ) {
        for (&p, high) in reached.iter_mut() {
            if let Ok((_, now)) =
                reader.fetch_watermarks(&self.cfg.topic, p, Duration::from_secs(5))
            {
                if now > *high {
                    *high = now;
                    pending.insert(p, now);
                }
            }
        }
    }
}

/// Snapshots being reassembled from their chunks, and the newest complete
/// one per source partition.
#[derive(Default)]
struct Snapshots {
    /// Incomplete, by (topic, partition, snapshot id).
    partial: HashMap<(String, i32, u64), Partial>,
    /// The newest complete snapshot per (topic, partition).
    best: HashMap<(String, i32), Partial>,
    /// Complete snapshots a newer one replaces: deleted after the read.
    superseded: Vec<ChunkHeader>,
}

impl Snapshots {
    /// Takes one chunk of a wanted partition's snapshot.
    fn take(&mut self, header: ChunkHeader, payload: &[u8]) {
        if header.index >= header.count {
            return;
        }
        let tp = (header.topic.clone(), header.partition);
        let id = (header.topic.clone(), header.partition, header.snapshot);
        let index = header.index as usize;
        let slot = self.partial.entry(id.clone()).or_insert_with(|| Partial {
            chunks: vec![None; header.count as usize],
            header,
            have: 0,
        });
        if slot.chunks[index].is_none() {
            slot.chunks[index] = Some(payload.to_vec());
            slot.have += 1;
        }
        if slot.have < slot.chunks.len() {
            return;
        }
        let Some(done) = self.partial.remove(&id) else {
            return;
        };
        let newer = self.best.get(&tp).is_none_or(|b| {
            (done.header.resume, done.header.written_at_ms)
                > (b.header.resume, b.header.written_at_ms)
        });
        let loser = if newer {
            self.best.insert(tp, done)
        } else {
            Some(done)
        };
        if let Some(l) = loser {
            self.superseded.push(l.header);
        }
    }

    /// Older snapshots, complete or left half-written by a writer that
    /// died: nobody else knows their keys, and compaction keeps every
    /// distinct key, so they are deleted.
    fn stale(&self) -> Vec<ChunkHeader> {
        let order = |h: &ChunkHeader| (h.resume, h.written_at_ms);
        let mut stale = self.superseded.clone();
        for p in self.partial.values() {
            let tp = (p.header.topic.clone(), p.header.partition);
            if self
                .best
                .get(&tp)
                .is_some_and(|b| order(&p.header) < order(&b.header))
            {
                stale.push(p.header.clone());
            }
        }
        stale
    }

    /// Says which partitions had only an incomplete snapshot.
    fn warn_incomplete(&self) {
        for ((topic, partition, _), p) in &self.partial {
            if !self.best.contains_key(&(topic.clone(), *partition)) {
                tracing::warn!(%topic, partition, chunks = p.have, of = p.chunks.len(), "only an incomplete snapshot of the partition is on the changelog; skipped");
            }
        }
    }
}

/// A snapshot being reassembled.
pub(super) struct Partial {
    pub(super) header: ChunkHeader,
    pub(super) chunks: Vec<Option<Vec<u8>>>,
    pub(super) have: usize,
}

impl Partial {
    pub(super) fn decode(self) -> Result<Restored, format::ChunkError> {
        let h = self.header;
        let mut state = PartitionState {
            topic: h.topic,
            partition: h.partition,
            resume: h.resume,
            written_at_ms: h.written_at_ms,
            ..PartitionState::default()
        };
        let mut delivered: HashMap<String, Vec<u128>> = HashMap::new();
        let mut bytes = 0u64;
        for chunk in self.chunks.into_iter().flatten() {
            bytes += chunk.len() as u64;
            let (header, rest) = format::decode_header(&chunk)?;
            let version = format::version_of(&chunk);
            for entry in format::decode_entries(rest, header.entries, version)? {
                match entry {
                    Entry::Key(k, s) => state.keys.push((k, s)),
                    Entry::Principal(k, s) => state.principals.push((k, s)),
                    Entry::PrincipalAt(k, at) => state.principal_positions.push((k, at)),
                    Entry::Delivered(sink, id) => {
                        delivered.entry(sink.to_string()).or_default().push(id)
                    }
                }
            }
        }
        state.delivered = delivered.into_iter().collect();
        Ok(Restored { state, bytes })
    }
}
