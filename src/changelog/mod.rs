//! The state changelog: how a partition's detector state moves between
//! instances of one consumer group, through a Kafka topic and nothing else.
//!
//! Every instance writes, with each checkpoint, a snapshot of each source
//! partition it owns to the changelog topic, and a final one when a
//! partition is revoked. A snapshot is the partition's keys (and the alert
//! ids already delivered for them), tagged with the source offset it
//! reflects and cut into chunks under the broker's message size
//! ([`format`](mod@format)). The instance assigned the partition next reads the newest
//! complete snapshot, loads it, seeks the partition to its offset and
//! replays the rest ("catch-up") before the partition counts as live.
//! Because each key remembers the position of its last applied event, the
//! replay reaches each key exactly once, and findings re-found during it
//! keep their ids ([`handoff`]).
//!
//! Changelog partition `p % n` holds the snapshots of source partition `p`
//! (`n` is the changelog's partition count; it is created with one per
//! source partition), so a restore reads one small partition.

pub mod format;
pub mod handoff;
mod read;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use compact_str::CompactString;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

use crate::config::{ChangelogConfig, KafkaConfig};
use crate::kafka::{self, Role};
use format::{ChunkHeader, EntryRef};
use keywatch_core::engine::KeyState;

pub use handoff::Handoff;

/// One partition's state as it travels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartitionState {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Next source offset to read after loading this state.
    pub resume: i64,
    /// When the copy began, epoch ms.
    pub written_at_ms: i64,
    /// Keys whose latest event came from the partition.
    pub keys: Vec<(CompactString, KeyState)>,
    /// Principals whose latest event came from the partition.
    pub principals: Vec<(CompactString, KeyState)>,
    /// Their positions on every partition they came from, by name.
    pub principal_positions: Vec<(CompactString, Vec<crate::checkpoint::At>)>,
    /// Alert ids (hashed) delivered for the partition's findings, per sink.
    pub delivered: Vec<(String, Vec<u128>)>,
}

impl PartitionState {
    /// Adds a principal whose latest event came from this partition, with
    /// its positions on every partition when it has them.
    pub(crate) fn add_principal(
        &mut self,
        name: CompactString,
        state: KeyState,
        positions: Option<Vec<crate::checkpoint::At>>,
    ) {
        if let Some(at) = positions {
            self.principal_positions.push((name.clone(), at));
        }
        self.principals.push((name, state));
    }

    /// Which of two states of one partition is newer: the one reflecting
    /// more of the partition, then the later copy.
    fn newer_than(&self, other: &PartitionState) -> bool {
        (self.resume, self.written_at_ms) > (other.resume, other.written_at_ms)
    }
}

/// What a snapshot write produced.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteStats {
    /// Snapshots fully delivered.
    pub ok: usize,
    /// Snapshots with a chunk not delivered.
    pub failed: usize,
    /// Bytes delivered.
    pub bytes: u64,
}

/// A restored snapshot and its size on the wire.
#[derive(Debug)]
pub struct Restored {
    /// The state.
    pub state: PartitionState,
    /// Chunk bytes read for it.
    pub bytes: u64,
}

/// Counts failed deliveries for the write in progress.
#[derive(Default)]
pub struct WriteContext {
    failed: AtomicU64,
}

impl ClientContext for WriteContext {}

impl ProducerContext for WriteContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "a changelog chunk was not delivered");
        }
    }
}

/// The changelog topic's producer and reader.
pub struct Changelog {
    cfg: ChangelogConfig,
    /// The consumer group whose snapshots these are (`kafka.group_id`).
    group: String,
    partitions: i32,
    producer: Mutex<Writer>,
    /// Reads snapshots back (assigned only while a restore reads).
    reader: Mutex<BaseConsumer>,
}

/// A snapshot on the topic: its id, chunk count and (resume, written_at) order.
#[derive(Clone, Copy)]
struct Written {
    snapshot: u64,
    count: u32,
    order: (i64, i64),
}

struct Writer {
    producer: BaseProducer<WriteContext>,
    /// The newest snapshot written or restored per source partition: its
    /// id, chunk count and order, so the next one can delete its chunks.
    last: HashMap<(String, i32), Written>,
    seq: u64,
}

impl Changelog {
    /// Connects, and creates the topic (compacted, `source_partitions`
    /// partitions) when it is missing. Blocking.
    pub fn connect(
        kafka: &KafkaConfig,
        cfg: &ChangelogConfig,
        source_partitions: i32,
    ) -> anyhow::Result<Changelog> {
        let timeout = kafka.startup_timeout.0;
        let topic = kafka::OwnTopic {
            name: &cfg.topic,
            key: "changelog.topic",
            partitions: source_partitions.max(1),
            replication: cfg.replication_factor,
            otherwise: "create it yourself, compacted, or set changelog.enabled = false",
        };
        kafka::ensure_topic(
            &kafka::client(kafka, Role::Producer, &[], &[]),
            &topic,
            timeout,
        )?;
        let producer: BaseProducer<WriteContext> = kafka::client(
            kafka,
            Role::Producer,
            &[("linger.ms", "5".into())],
            &[
                ("message.max.bytes", (cfg.chunk_bytes + 65_536).to_string()),
                ("acks", "all".into()),
            ],
        )
        .create_with_context(WriteContext::default())
        .context("creating the changelog producer")?;
        let reader: BaseConsumer = kafka::client(
            kafka,
            Role::Reader,
            &[],
            &[
                ("group.id", format!("{}.changelog-reader", kafka.group_id)),
                ("auto.offset.reset", "earliest".into()),
                ("fetch.wait.max.ms", "10".into()),
                // A snapshot is a few large records: fetch many per round trip.
                ("max.partition.fetch.bytes", (32 << 20).to_string()),
                ("fetch.max.bytes", (64 << 20).to_string()),
            ],
        )
        .create()
        .context("creating the changelog reader")?;
        let metadata = reader
            .fetch_metadata(Some(&cfg.topic), timeout)
            .with_context(|| format!("reading the metadata of changelog.topic `{}`", cfg.topic))?;
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == cfg.topic)
            .map_or(0, |t| t.partitions().len() as i32);
        if partitions == 0 {
            anyhow::bail!(
                "changelog.topic `{}` has no partitions on {}",
                cfg.topic,
                kafka.brokers
            );
        }
        Ok(Changelog {
            cfg: cfg.clone(),
            group: kafka.group_id.clone(),
            partitions,
            producer: Mutex::new(Writer {
                producer,
                last: HashMap::new(),
                seq: 0,
            }),
            reader: Mutex::new(reader),
        })
    }

    /// The changelog partition holding `partition`'s snapshots.
    fn home(&self, partition: i32) -> i32 {
        partition.rem_euclid(self.partitions)
    }

    /// Writes one snapshot per state and waits for every chunk, up to
    /// `timeout`; then deletes the chunks of the snapshots they replace.
    pub fn write(&self, states: &[PartitionState], timeout: Duration) -> WriteStats {
        let mut w = self.producer.lock().unwrap_or_else(|e| e.into_inner());
        let mut stats = WriteStats::default();
        let deadline = Instant::now() + timeout;
        w.producer.context().failed.store(0, Ordering::Relaxed);
        let mut written = Vec::with_capacity(states.len());
        for state in states {
            w.seq += 1;
            let snapshot = ((state.written_at_ms.max(0) as u64) << 20)
                | ((std::process::id() as u64 & 0xff) << 12)
                | (w.seq & 0xfff);
            let chunks = match encode(state, &self.group, snapshot, self.cfg.chunk_bytes) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(topic = %state.topic, partition = state.partition, error = %e, "encoding a snapshot");
                    stats.failed += 1;
                    continue;
                }
            };
            let count = chunks.len() as u32;
            let mut bytes = 0u64;
            for (index, chunk) in chunks.iter().enumerate() {
                let key = format::chunk_key(
                    &self.group,
                    &state.topic,
                    state.partition,
                    snapshot,
                    index as u32,
                );
                bytes += chunk.len() as u64;
                send(
                    &w.producer,
                    &self.cfg.topic,
                    self.home(state.partition),
                    &key,
                    Some(chunk),
                    deadline,
                );
            }
            written.push((state, snapshot, count, bytes));
        }
        let flushed = drain(&w.producer, deadline);
        let failed = w.producer.context().failed.load(Ordering::Relaxed);
        if flushed.is_err() || failed > 0 {
            tracing::error!(
                snapshots = written.len(),
                undelivered_chunks = failed,
                "changelog write incomplete; the partitions' previous snapshots stay"
            );
            stats.failed += written.len();
            return stats;
        }
        let mut stale = Vec::new();
        for (state, snapshot, count, bytes) in written {
            stats.ok += 1;
            stats.bytes += bytes;
            let order = (state.resume, state.written_at_ms);
            let tp = (state.topic.clone(), state.partition);
            match w.last.get(&tp) {
                Some(newest) if newest.order > order => {
                    // A newer snapshot of this partition is already out: this
                    // one is the stale copy; delete it, not the newer one.
                    stale.push((tp, snapshot, count));
                }
                previous => {
                    if let Some(old) = previous {
                        stale.push((tp.clone(), old.snapshot, old.count));
                    }
                    w.last.insert(
                        tp,
                        Written {
                            snapshot,
                            count,
                            order,
                        },
                    );
                }
            }
        }
        for ((topic, partition), snapshot, count) in stale {
            for index in 0..count {
                let key = format::chunk_key(&self.group, &topic, partition, snapshot, index);
                send(
                    &w.producer,
                    &self.cfg.topic,
                    self.home(partition),
                    &key,
                    None,
                    deadline,
                );
            }
        }
        // Tombstones are housekeeping: a later drain delivers what this one misses.
        let _ = drain(&w.producer, deadline);
        stats
    }

    /// A partition's high watermark, from the reader's connection.
    pub fn high_watermark(&self, topic: &str, partition: i32) -> Option<i64> {
        let reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        match reader.fetch_watermarks(topic, partition, Duration::from_secs(5)) {
            Ok((_, high)) => Some(high),
            Err(e) => {
                tracing::warn!(%topic, partition, error = %e, "cannot read the high watermark; the partition is live at once");
                None
            }
        }
    }

    /// Sends tombstones for every chunk of `snapshots` (delivered with the
    /// next write, or now if the broker is quick).
    fn delete(&self, snapshots: &[ChunkHeader]) {
        if snapshots.is_empty() {
            return;
        }
        let w = self.producer.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = Instant::now() + Duration::from_secs(1);
        for h in snapshots {
            for index in 0..h.count {
                let key = format::chunk_key(&h.group, &h.topic, h.partition, h.snapshot, index);
                send(
                    &w.producer,
                    &self.cfg.topic,
                    self.home(h.partition),
                    &key,
                    None,
                    deadline,
                );
            }
        }
        w.producer.poll(Duration::ZERO);
        tracing::debug!(snapshots = snapshots.len(), "deleting superseded snapshots");
    }

    /// Remembers a snapshot restored from the changelog, so the next write
    /// of its partition deletes it.
    fn adopt(&self, state: &PartitionState, snapshot: u64, count: u32) {
        let mut w = self.producer.lock().unwrap_or_else(|e| e.into_inner());
        let order = (state.resume, state.written_at_ms);
        w.last.insert(
            (state.topic.clone(), state.partition),
            Written {
                snapshot,
                count,
                order,
            },
        );
    }
}

/// Cuts a state into framed chunks of at most about `chunk_bytes`.
fn encode(
    state: &PartitionState,
    group: &str,
    snapshot: u64,
    chunk_bytes: usize,
) -> Result<Vec<Vec<u8>>, postcard::Error> {
    // Room for the header (topic name included) inside the limit.
    let limit = chunk_bytes
        .saturating_sub(1024 + state.topic.len() + group.len())
        .max(1024);
    let mut bodies: Vec<(Vec<u8>, u32)> = Vec::new();
    let mut body = Vec::new();
    let mut n = 0u32;
    let mut push = |entry: EntryRef<'_>| -> Result<(), postcard::Error> {
        let bytes = postcard::to_stdvec(&entry)?;
        if n > 0 && body.len() + bytes.len() > limit {
            bodies.push((std::mem::take(&mut body), n));
            n = 0;
        }
        body.extend_from_slice(&bytes);
        n += 1;
        Ok(())
    };
    for (k, s) in &state.keys {
        push(EntryRef::Key(k, s))?;
    }
    for (k, s) in &state.principals {
        push(EntryRef::Principal(k, s))?;
    }
    for (k, at) in &state.principal_positions {
        push(EntryRef::PrincipalAt(k, at))?;
    }
    for (sink, ids) in &state.delivered {
        for &id in ids {
            push(EntryRef::Delivered(sink, id))?;
        }
    }
    if n > 0 || bodies.is_empty() {
        bodies.push((body, n));
    }
    let count = bodies.len() as u32;
    bodies
        .into_iter()
        .enumerate()
        .map(|(index, (entries, n))| {
            let header = ChunkHeader {
                topic: state.topic.clone(),
                partition: state.partition,
                snapshot,
                index: index as u32,
                count,
                resume: state.resume,
                written_at_ms: state.written_at_ms,
                entries: n,
                group: group.to_owned(),
            };
            format::encode_chunk(&header, &entries)
        })
        .collect()
}

/// Waits until every record sent is acknowledged (or failed), up to
/// `deadline`. (`flush` polls in 100 ms steps: a handoff would wait them out.)
fn drain(producer: &BaseProducer<WriteContext>, deadline: Instant) -> Result<(), ()> {
    loop {
        producer.poll(Duration::ZERO);
        if producer.in_flight_count() == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(());
        }
        producer.poll(Duration::from_millis(1));
    }
}

/// Sends one record, waiting while the local queue is full.
fn send(
    producer: &BaseProducer<WriteContext>,
    topic: &str,
    partition: i32,
    key: &str,
    payload: Option<&Vec<u8>>,
    deadline: Instant,
) {
    loop {
        let mut record = BaseRecord::to(topic).key(key).partition(partition);
        if let Some(p) = payload {
            record = record.payload(p.as_slice());
        }
        match producer.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                if Instant::now() < deadline =>
            {
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => {
                producer.context().failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, %key, "cannot send a changelog record");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::read::Partial;
    use super::*;
    use crate::config::Config;
    use keywatch_core::engine::{Engine, Position};

    /// A state of `n` keys with real detector state, as the engine makes it.
    fn state(n: usize) -> PartitionState {
        let cfg = Config::default();
        let engine = Engine::new(&cfg);
        let decoder =
            keywatch_core::decode::Decoder::for_profile("generic", &Default::default()).unwrap();
        let mut out = Vec::new();
        for k in 0..n {
            for i in 0..3 {
                let line = format!(
                    r#"{{"time":{},"key_id":"AKIA{k:08}","principal":"svc-{k}","source":"10.0.{}.{i}","action":"s3:GetObject"}}"#,
                    1_767_571_200 + i * 3600,
                    k % 250
                );
                decoder
                    .decode(line.as_bytes(), |r| {
                        let at = Position {
                            origin: 1,
                            offset: (k * 3) as i64 + i,
                            record: 0,
                        };
                        engine.process_at(&r.unwrap(), Some(at), &mut out)
                    })
                    .unwrap();
            }
        }
        let mut keys = engine.snapshot(crate::config::Entity::KeyId);
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        PartitionState {
            topic: "audit".into(),
            partition: 7,
            resume: (n * 3) as i64,
            written_at_ms: 1_767_600_000_000,
            principals: keys[..2].to_vec(),
            principal_positions: vec![(
                keys[0].0.clone(),
                vec![
                    crate::checkpoint::At {
                        topic: "audit".into(),
                        partition: 7,
                        offset: (n * 3) as i64 - 1,
                        record: 0,
                    },
                    crate::checkpoint::At {
                        topic: "audit".into(),
                        partition: 2,
                        offset: 40,
                        record: 1,
                    },
                ],
            )],
            keys,
            delivered: vec![("pager".into(), vec![1, 2, u128::MAX])],
        }
    }

    fn reassemble(chunks: &[Vec<u8>]) -> PartitionState {
        let (first, _) = format::decode_header(&chunks[0]).unwrap();
        let partial = Partial {
            chunks: chunks.iter().cloned().map(Some).collect(),
            have: chunks.len(),
            header: first,
        };
        let mut got = partial.decode().unwrap().state;
        got.keys.sort_by(|a, b| a.0.cmp(&b.0));
        got
    }

    #[test]
    fn a_snapshot_is_cut_under_the_chunk_size_and_reads_back_whole() {
        let want = state(3_000);
        let chunks = encode(&want, "g", 42, 16_384).unwrap();
        assert!(chunks.len() > 5, "{} chunks", chunks.len());
        for (i, c) in chunks.iter().enumerate() {
            assert!(c.len() <= 16_384, "chunk {i} is {} bytes", c.len());
            let (h, _) = format::decode_header(c).unwrap();
            assert_eq!(
                (h.index, h.count, h.snapshot),
                (i as u32, chunks.len() as u32, 42)
            );
            assert_eq!((h.resume, h.partition), (want.resume, 7));
        }
        assert_eq!(reassemble(&chunks), want);
    }

    #[test]
    fn an_empty_partition_is_one_chunk() {
        let want = PartitionState {
            topic: "audit".into(),
            partition: 0,
            resume: 12,
            written_at_ms: 1,
            ..PartitionState::default()
        };
        let chunks = encode(&want, "g", 1, 16_384).unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(reassemble(&chunks), want);
    }

    #[test]
    fn damaged_foreign_and_future_chunks_are_refused_by_name() {
        let chunks = encode(&state(10), "g", 1, 16_384).unwrap();
        let mut flipped = chunks[0].clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        assert!(matches!(
            format::decode_header(&flipped),
            Err(format::ChunkError::Checksum)
        ));
        assert!(matches!(
            format::decode_header(b"{\"not\":\"a chunk\"}"),
            Err(format::ChunkError::BadMagic)
        ));
        let mut future = chunks[0].clone();
        future[8..12].copy_from_slice(&(format::VERSION + 1).to_le_bytes());
        let err = format::decode_header(&future).unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[test]
    fn a_version_1_chunk_still_reads_and_belongs_to_no_group() {
        let mut body = postcard::to_stdvec(&format::ChunkHeaderV1 {
            topic: "audit".into(),
            partition: 3,
            snapshot: 7,
            index: 0,
            count: 1,
            resume: 99,
            written_at_ms: 5,
            entries: 1,
        })
        .unwrap();
        body.extend(postcard::to_stdvec(&format::EntryRef::Delivered("pager", 42)).unwrap());
        let mut chunk = format::MAGIC.to_vec();
        chunk.extend(1u32.to_le_bytes());
        chunk.extend(crc32fast::hash(&body).to_le_bytes());
        chunk.extend(&body);
        let (h, rest) = format::decode_header(&chunk).unwrap();
        assert_eq!((h.topic.as_str(), h.partition, h.resume), ("audit", 3, 99));
        assert_eq!(h.group, "", "no group: read by any");
        assert_eq!(
            format::chunk_key(&h.group, &h.topic, h.partition, h.snapshot, 0),
            "audit/3/0000000000000007/0",
            "tombstoned under its version 1 key"
        );
        assert_eq!(
            format::decode_entries(rest, 1, 1).unwrap(),
            vec![format::Entry::Delivered("pager".into(), 42)]
        );
    }

    #[test]
    fn the_newer_state_reflects_more_of_the_partition_then_is_the_later_copy() {
        let at = |resume, written_at_ms| PartitionState {
            resume,
            written_at_ms,
            ..PartitionState::default()
        };
        assert!(at(10, 1).newer_than(&at(9, 5)));
        assert!(at(10, 2).newer_than(&at(10, 1)));
        assert!(!at(10, 1).newer_than(&at(10, 1)));
        assert!(!at(9, 9).newer_than(&at(10, 1)));
    }
}
