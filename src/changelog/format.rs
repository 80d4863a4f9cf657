//! A snapshot chunk on the changelog topic.
//!
//! ```text
//! key     "{group}/{topic}/{partition}/{snapshot:016x}/{index}"
//! value   magic "KWSTATE\0" | version u32 LE | crc32 u32 LE of the rest |
//!         postcard ChunkHeader | `header.entries` postcard Entry values
//! ```
//!
//! A snapshot is `count` chunks with the same snapshot id; it is usable only
//! when every chunk is present. Keys carry the snapshot id, so a newer
//! snapshot never overwrites part of an older one under compaction; the
//! writer deletes (tombstones) the older snapshot's chunks once the newer
//! one is complete.
//!
//! A chunk names the consumer group that wrote it: groups sharing a
//! changelog topic (two deployments with their own settings, a staging
//! copy) never restore each other's state. Version 1 chunks had no group
//! (and keys without one); they are still read, by any group. Versions 1
//! and 2 hold the per-key state of checkpoint format 1
//! ([`keywatch_core::engine::legacy`]); version 3 that of checkpoint format 2
//! (without the network memory); version 4 that of checkpoint format 3
//! (without the forgotten networks); version 5 that of checkpoint format 4
//! (without novelty and folds); version 6 today's state without the
//! principals' positions (its entries read as version 7's, which only adds
//! [`Entry::PrincipalAt`]); version 7 today's.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::checkpoint::At;
use keywatch_core::engine::legacy::{KeyStateV1, KeyStateV2, KeyStateV3, KeyStateV4};
use keywatch_core::engine::KeyState;

/// Identifies a keywatch changelog chunk.
pub const MAGIC: &[u8; 8] = b"KWSTATE\0";
/// The version this build writes.
pub const VERSION: u32 = 7;
const PREFIX: usize = 8 + 4 + 4;

/// What a chunk says about itself and its snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkHeader {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Snapshot id, unique per write.
    pub snapshot: u64,
    /// This chunk's place, from 0.
    pub index: u32,
    /// Chunks in the snapshot.
    pub count: u32,
    /// Next source offset to read after restoring the snapshot.
    pub resume: i64,
    /// When the copy began, epoch ms.
    pub written_at_ms: i64,
    /// Entries in this chunk.
    pub entries: u32,
    /// The consumer group that wrote it (empty: a version 1 chunk).
    pub group: String,
}

/// A version 1 header: no group. (Serialize: the tests write one.)
#[derive(Serialize, Deserialize)]
pub(crate) struct ChunkHeaderV1 {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) snapshot: u64,
    pub(crate) index: u32,
    pub(crate) count: u32,
    pub(crate) resume: i64,
    pub(crate) written_at_ms: i64,
    pub(crate) entries: u32,
}

/// One piece of a partition's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Entry {
    /// A key's state.
    Key(CompactString, KeyState),
    /// A principal's state (keyed by principal: see docs/state.md on scale-out).
    Principal(CompactString, KeyState),
    /// An alert id (hashed) a sink has delivered for the partition's findings.
    Delivered(CompactString, u128),
    /// A principal's latest event on each partition it came from (version
    /// 7): replaying any of them applies each event to it once.
    PrincipalAt(CompactString, Vec<At>),
}

/// An [`Entry`] of chunk versions 1 and 2.
#[derive(Deserialize)]
enum EntryV1 {
    Key(CompactString, KeyStateV1),
    Principal(CompactString, KeyStateV1),
    Delivered(CompactString, u128),
}

impl From<EntryV1> for Entry {
    fn from(e: EntryV1) -> Entry {
        match e {
            EntryV1::Key(k, s) => Entry::Key(k, s.into()),
            EntryV1::Principal(k, s) => Entry::Principal(k, s.into()),
            EntryV1::Delivered(sink, id) => Entry::Delivered(sink, id),
        }
    }
}

/// An [`Entry`] of chunk version 3: the state without its network memory.
/// (Serialize: the tests write one.)
#[derive(Serialize, Deserialize)]
pub(crate) enum EntryV3 {
    Key(CompactString, KeyStateV2),
    Principal(CompactString, KeyStateV2),
    Delivered(CompactString, u128),
}

impl From<EntryV3> for Entry {
    fn from(e: EntryV3) -> Entry {
        match e {
            EntryV3::Key(k, s) => Entry::Key(k, s.into()),
            EntryV3::Principal(k, s) => Entry::Principal(k, s.into()),
            EntryV3::Delivered(sink, id) => Entry::Delivered(sink, id),
        }
    }
}

/// An [`Entry`] of chunk version 4: the state without the networks its
/// key forgot for lack of room. (Serialize: the tests write one.)
#[derive(Serialize, Deserialize)]
pub(crate) enum EntryV4 {
    Key(CompactString, KeyStateV3),
    Principal(CompactString, KeyStateV3),
    Delivered(CompactString, u128),
}

impl From<EntryV4> for Entry {
    fn from(e: EntryV4) -> Entry {
        match e {
            EntryV4::Key(k, s) => Entry::Key(k, s.into()),
            EntryV4::Principal(k, s) => Entry::Principal(k, s.into()),
            EntryV4::Delivered(sink, id) => Entry::Delivered(sink, id),
        }
    }
}

/// An [`Entry`] of chunk version 5: the state without its novelty estimate
/// and runs of folded findings. (Serialize: the tests write one.)
#[derive(Serialize, Deserialize)]
pub(crate) enum EntryV5 {
    Key(CompactString, KeyStateV4),
    Principal(CompactString, KeyStateV4),
    Delivered(CompactString, u128),
}

impl From<EntryV5> for Entry {
    fn from(e: EntryV5) -> Entry {
        match e {
            EntryV5::Key(k, s) => Entry::Key(k, s.into()),
            EntryV5::Principal(k, s) => Entry::Principal(k, s.into()),
            EntryV5::Delivered(sink, id) => Entry::Delivered(sink, id),
        }
    }
}

/// Serialises like [`Entry`] without copying the state.
#[derive(Serialize)]
pub enum EntryRef<'a> {
    /// As [`Entry::Key`].
    Key(&'a str, &'a KeyState),
    /// As [`Entry::Principal`].
    Principal(&'a str, &'a KeyState),
    /// As [`Entry::Delivered`].
    Delivered(&'a str, u128),
    /// As [`Entry::PrincipalAt`].
    PrincipalAt(&'a str, &'a [At]),
}

/// Why a chunk could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// Not a keywatch chunk.
    #[error("not a keywatch changelog chunk (bad magic)")]
    BadMagic,
    /// Written by a newer keywatch.
    #[error("changelog chunk version {0} is newer than this keywatch understands ({VERSION})")]
    FutureVersion(u32),
    /// The bytes do not match their checksum.
    #[error("changelog chunk corrupt: checksum mismatch")]
    Checksum,
    /// The body could not be decoded.
    #[error("changelog chunk body: {0}")]
    Body(#[from] postcard::Error),
}

/// The message key of a chunk (a version 1 chunk's when `group` is empty).
pub fn chunk_key(group: &str, topic: &str, partition: i32, snapshot: u64, index: u32) -> String {
    if group.is_empty() {
        format!("{topic}/{partition}/{snapshot:016x}/{index}")
    } else {
        format!("{group}/{topic}/{partition}/{snapshot:016x}/{index}")
    }
}

/// Frames a header and its pre-encoded entries.
pub fn encode_chunk(header: &ChunkHeader, entries: &[u8]) -> Result<Vec<u8>, postcard::Error> {
    let mut body = postcard::to_stdvec(header)?;
    body.extend_from_slice(entries);
    let mut out = Vec::with_capacity(PREFIX + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Checks a chunk and reads its header; returns the entries' bytes too.
pub fn decode_header(bytes: &[u8]) -> Result<(ChunkHeader, &[u8]), ChunkError> {
    if bytes.len() < PREFIX || &bytes[..8] != MAGIC {
        return Err(ChunkError::BadMagic);
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
    if version > VERSION {
        return Err(ChunkError::FutureVersion(version));
    }
    let crc = u32::from_le_bytes(bytes[12..16].try_into().unwrap_or_default());
    let body = &bytes[PREFIX..];
    if crc32fast::hash(body) != crc {
        return Err(ChunkError::Checksum);
    }
    if version == 1 {
        let (h, rest) = postcard::take_from_bytes::<ChunkHeaderV1>(body)?;
        let header = ChunkHeader {
            topic: h.topic,
            partition: h.partition,
            snapshot: h.snapshot,
            index: h.index,
            count: h.count,
            resume: h.resume,
            written_at_ms: h.written_at_ms,
            entries: h.entries,
            group: String::new(),
        };
        return Ok((header, rest));
    }
    let (header, rest) = postcard::take_from_bytes::<ChunkHeader>(body)?;
    Ok((header, rest))
}

/// The version a chunk was written in (0 when it is too short to say).
pub fn version_of(chunk: &[u8]) -> u32 {
    chunk
        .get(8..12)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

/// Decodes `n` entries of a chunk of `version`.
pub fn decode_entries(mut bytes: &[u8], n: u32, version: u32) -> Result<Vec<Entry>, ChunkError> {
    // A count from the header is not trusted for the allocation.
    let mut out = Vec::with_capacity((n as usize).min(bytes.len()));
    for _ in 0..n {
        let entry = if version <= 2 {
            let (entry, rest) = postcard::take_from_bytes::<EntryV1>(bytes)?;
            bytes = rest;
            entry.into()
        } else if version == 3 {
            let (entry, rest) = postcard::take_from_bytes::<EntryV3>(bytes)?;
            bytes = rest;
            entry.into()
        } else if version == 4 {
            let (entry, rest) = postcard::take_from_bytes::<EntryV4>(bytes)?;
            bytes = rest;
            entry.into()
        } else if version == 5 {
            let (entry, rest) = postcard::take_from_bytes::<EntryV5>(bytes)?;
            bytes = rest;
            entry.into()
        } else {
            let (entry, rest) = postcard::take_from_bytes::<Entry>(bytes)?;
            bytes = rest;
            entry
        };
        out.push(entry);
    }
    Ok(out)
}
