//! The checkpoint file format.
//!
//! ```text
//! magic   8 bytes  "KWCHKPT\0"
//! version u32 LE   FORMAT_VERSION
//! length  u64 LE   body length
//! crc32   u32 LE   CRC-32 (IEEE) of the body
//! body             postcard encoding of `Checkpoint`
//! ```
//!
//! A reader accepts every version up to its own, and refuses newer ones by
//! name: a downgrade must not misread a file it does not understand. When
//! the body changes, bump the version and keep a decoder for the old one.
//!
//! Version 1: the per-key state of the first wave ([`keywatch_core::engine::legacy`]),
//! read and converted. Version 2: the second wave's without the network
//! memory, read and converted (the memory starts empty). Version 3: the
//! state without the networks a key forgot for lack of room, read and
//! converted (noted again from the next eviction). Version 4: the state
//! without its novelty estimate and runs of folded findings, read and
//! converted (both start anew). Version 5: without the principals'
//! positions per partition, read as a checkpoint where no principal has a
//! position (their replayed events count again). Version 6: today's.

use std::path::Path;

use compact_str::CompactString;
use serde::Deserialize;

use super::{Checkpoint, Section};
use keywatch_core::engine::legacy::{KeyStateV1, KeyStateV2, KeyStateV3, KeyStateV4};
use keywatch_core::engine::KeyState;

/// A version 1 to 5 body: today's shape around an older per-key state
/// `S` ([`KeyStateV1`], [`KeyStateV2`] without the network memory,
/// [`KeyStateV3`] without the forgotten networks), each converted as it is
/// read.
#[derive(Deserialize)]
struct OldCheckpoint<S> {
    written_at_ms: i64,
    sections: Vec<OldSection<S>>,
    principals: Vec<(CompactString, S)>,
}

#[derive(Deserialize)]
struct OldSection<S> {
    topic: String,
    partition: i32,
    resume: Option<i64>,
    keys: Vec<(CompactString, S)>,
}

fn upgrade<S: Into<KeyState>>(keys: Vec<(CompactString, S)>) -> Vec<(CompactString, KeyState)> {
    keys.into_iter().map(|(k, s)| (k, s.into())).collect()
}

impl<S: Into<KeyState>> From<OldCheckpoint<S>> for Checkpoint {
    fn from(old: OldCheckpoint<S>) -> Checkpoint {
        Checkpoint {
            written_at_ms: old.written_at_ms,
            sections: old
                .sections
                .into_iter()
                .map(|s| Section {
                    topic: s.topic,
                    partition: s.partition,
                    resume: s.resume,
                    keys: upgrade(s.keys),
                })
                .collect(),
            principals: upgrade(old.principals),
            principal_positions: Vec::new(),
        }
    }
}

/// Encodes `cp` as the writer of `version` did, each state as `S` (version
/// 2: [`KeyStateV2`], version 3: [`KeyStateV3`]): for the tests of reading
/// old files.
#[cfg(test)]
pub(crate) fn encode_old<S: serde::Serialize + From<KeyState>>(
    cp: &Checkpoint,
    version: u32,
) -> Vec<u8> {
    use serde::Serialize;
    #[derive(Serialize)]
    struct SectionOut<S> {
        topic: String,
        partition: i32,
        resume: Option<i64>,
        keys: Vec<(CompactString, S)>,
    }
    #[derive(Serialize)]
    struct Out<S> {
        written_at_ms: i64,
        sections: Vec<SectionOut<S>>,
        principals: Vec<(CompactString, S)>,
    }
    let down = |keys: &[(CompactString, KeyState)]| {
        keys.iter()
            .map(|(k, s)| (k.clone(), S::from(s.clone())))
            .collect::<Vec<_>>()
    };
    let out = Out {
        written_at_ms: cp.written_at_ms,
        sections: cp
            .sections
            .iter()
            .map(|s| SectionOut {
                topic: s.topic.clone(),
                partition: s.partition,
                resume: s.resume,
                keys: down(&s.keys),
            })
            .collect(),
        principals: down(&cp.principals),
    };
    let body = postcard::to_stdvec(&out).expect("encodes");
    let mut bytes = Vec::new();
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    bytes.extend_from_slice(&body);
    bytes
}

/// Identifies a keywatch checkpoint.
pub const MAGIC: &[u8; 8] = b"KWCHKPT\0";
/// The version this build writes.
pub const FORMAT_VERSION: u32 = 6;
const HEADER: usize = 8 + 4 + 8 + 4;

/// Why a checkpoint could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A file operation failed.
    #[error("{path}: {error}")]
    Io {
        /// The file or directory.
        path: String,
        /// What the system said.
        error: std::io::Error,
    },
    /// Not a checkpoint at all.
    #[error("not a keywatch checkpoint (bad magic)")]
    BadMagic,
    /// Written by a newer keywatch.
    #[error("checkpoint format version {found} is newer than this keywatch understands (up to {supported}); upgrade keywatch or move the file away")]
    FutureVersion {
        /// Version in the file.
        found: u32,
        /// Newest this build reads.
        supported: u32,
    },
    /// Shorter than its header says.
    #[error("checkpoint truncated: {have} of {want} bytes")]
    Truncated {
        /// Bytes present.
        have: usize,
        /// Bytes the header promises.
        want: usize,
    },
    /// The body does not match its checksum.
    #[error("checkpoint corrupt: checksum {found:08x}, expected {expected:08x}")]
    Checksum {
        /// CRC of the body read.
        found: u32,
        /// CRC in the header.
        expected: u32,
    },
    /// The body could not be encoded or decoded.
    #[error("checkpoint body: {0}")]
    Body(String),
}

impl CheckpointError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, error: std::io::Error) -> CheckpointError {
        CheckpointError::Io {
            path: path.display().to_string(),
            error,
        }
    }
}

/// Encodes a checkpoint with its header.
pub fn encode(cp: &Checkpoint) -> Result<Vec<u8>, CheckpointError> {
    let body = postcard::to_stdvec(cp).map_err(|e| CheckpointError::Body(e.to_string()))?;
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes and verifies a checkpoint.
pub fn decode(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    if bytes.len() < HEADER {
        return Err(if bytes.starts_with(&MAGIC[..bytes.len().min(8)]) {
            CheckpointError::Truncated {
                have: bytes.len(),
                want: HEADER,
            }
        } else {
            CheckpointError::BadMagic
        });
    }
    if &bytes[..8] != MAGIC {
        return Err(CheckpointError::BadMagic);
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
    if version > FORMAT_VERSION {
        return Err(CheckpointError::FutureVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().unwrap_or_default()) as usize;
    let expected = u32::from_le_bytes(bytes[20..24].try_into().unwrap_or_default());
    let body = &bytes[HEADER..];
    if body.len() < len {
        return Err(CheckpointError::Truncated {
            have: bytes.len(),
            // The length is the file's word, up to u64::MAX: never add to it unchecked.
            want: HEADER.saturating_add(len),
        });
    }
    let body = &body[..len];
    let found = crc32fast::hash(body);
    if found != expected {
        return Err(CheckpointError::Checksum { found, expected });
    }
    if version == 1 {
        return postcard::from_bytes::<OldCheckpoint<KeyStateV1>>(body)
            .map(Checkpoint::from)
            .map_err(|e| CheckpointError::Body(format!("version 1: {e}")));
    }
    if version == 2 {
        return postcard::from_bytes::<OldCheckpoint<KeyStateV2>>(body)
            .map(Checkpoint::from)
            .map_err(|e| CheckpointError::Body(format!("version 2: {e}")));
    }
    if version == 3 {
        return postcard::from_bytes::<OldCheckpoint<KeyStateV3>>(body)
            .map(Checkpoint::from)
            .map_err(|e| CheckpointError::Body(format!("version 3: {e}")));
    }
    if version == 4 {
        return postcard::from_bytes::<OldCheckpoint<KeyStateV4>>(body)
            .map(Checkpoint::from)
            .map_err(|e| CheckpointError::Body(format!("version 4: {e}")));
    }
    if version == 5 {
        return postcard::from_bytes::<OldCheckpoint<KeyState>>(body)
            .map(Checkpoint::from)
            .map_err(|e| CheckpointError::Body(format!("version 5: {e}")));
    }
    postcard::from_bytes(body).map_err(|e| CheckpointError::Body(e.to_string()))
}
