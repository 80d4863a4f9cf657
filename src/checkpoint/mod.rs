//! Checkpoints: the engine's state together with the Kafka offsets it
//! reflects, so a restart (or a crash, or an upgrade) resumes where it was.
//!
//! A checkpoint holds one section per topic-partition: the keys whose latest
//! event came from it, and the offset to resume the partition from. It is
//! taken while events keep flowing: each key carries the position of its last
//! applied event, the resume offset is the position every key had reached
//! when the copy began, and on replay a key skips what it already applied
//! ([`keywatch_core::engine::Engine::process_at`]) — each event reaches each key
//! exactly once. Files are written atomically (temporary file, fsync,
//! rename, fsync of the directory) in a versioned binary format with a
//! CRC-32 ([`format`](mod@format)).

pub mod format;
mod origins;
mod worker;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

pub use format::CheckpointError;
pub use origins::Origins;
pub use worker::{Checkpointer, Mirror, Resume};

use crate::config::Entity;
use keywatch_core::engine::{Engine, KeyState, Position};

/// One topic-partition's keys and where to resume it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Section {
    /// Topic; empty for keys that came from no partition (a replay).
    pub topic: String,
    /// Partition; -1 with an empty topic.
    pub partition: i32,
    /// Next offset to read; `None` when this instance never read the partition.
    pub resume: Option<i64>,
    /// Keys whose latest event came from this partition.
    pub keys: Vec<(CompactString, KeyState)>,
}

/// The engine's state and the offsets it reflects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Wall clock when the copy began, epoch ms.
    pub written_at_ms: i64,
    /// Keys by partition.
    pub sections: Vec<Section>,
    /// Principal baselines (they span partitions).
    pub principals: Vec<(CompactString, KeyState)>,
    /// Where each principal's latest event of each partition was, by topic
    /// and partition: a principal's events come from several partitions,
    /// and replaying any of them from its resume offset must not apply an
    /// event twice. A principal missing here has no position (its replayed
    /// events count again, as before format 6).
    pub principal_positions: Vec<(CompactString, Vec<At>)>,
}

/// A position in a named partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct At {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset of the event.
    pub offset: i64,
    /// Index of the record within its message.
    pub record: u16,
}

impl Checkpoint {
    /// Copies the engine's state; `resume` maps each origin this instance
    /// has read to the next offset, as of *before* the copy began.
    pub fn capture(engine: &Engine, origins: &Origins, resume: &HashMap<u16, i64>) -> Checkpoint {
        let written_at_ms = chrono::Utc::now().timestamp_millis();
        let mut by_origin: HashMap<u16, Vec<(CompactString, KeyState)>> = HashMap::new();
        for (key, state) in engine.snapshot(Entity::KeyId) {
            let origin = state.applied_at().map_or(0, |p| p.origin);
            by_origin.entry(origin).or_default().push((key, state));
        }
        for &origin in resume.keys() {
            by_origin.entry(origin).or_default();
        }
        let mut sections: Vec<Section> = by_origin
            .into_iter()
            .map(|(origin, keys)| {
                let (topic, partition) = origins.get(origin).unwrap_or_else(|| (String::new(), -1));
                Section {
                    topic,
                    partition,
                    resume: resume.get(&origin).copied(),
                    keys,
                }
            })
            .collect();
        sections.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        let principals = engine.snapshot(Entity::Principal);
        let principal_positions = principals
            .iter()
            .filter_map(|(name, state)| {
                let at = named_positions(state, origins);
                (!at.is_empty()).then(|| (name.clone(), at))
            })
            .collect();
        Checkpoint {
            written_at_ms,
            sections,
            principals,
            principal_positions,
        }
    }

    /// Loads the state into `engine` (renumbering partitions through
    /// `origins`) and returns where to resume each partition.
    pub fn restore(self, engine: &Engine, origins: &Origins) -> HashMap<(String, i32), i64> {
        let mut resume = HashMap::new();
        for section in self.sections {
            let origin = (!section.topic.is_empty())
                .then(|| origins.index(&section.topic, section.partition));
            if let (Some(offset), false) = (section.resume, section.topic.is_empty()) {
                resume.insert((section.topic.clone(), section.partition), offset);
            }
            let keys = section.keys.into_iter().map(|(k, mut state)| {
                match (origin, state.applied_at()) {
                    (Some(origin), Some(p)) => state.set_applied(Position { origin, ..p }),
                    _ => state.applied = 0,
                }
                (k, state)
            });
            engine.restore(Entity::KeyId, keys);
        }
        // This process numbers partitions its own way: every principal's
        // positions are renumbered by topic and partition.
        let principals = with_positions(self.principals, self.principal_positions, origins);
        engine.restore(Entity::Principal, principals);
        resume
    }

    /// Keys held, all sections together.
    pub fn key_count(&self) -> usize {
        self.sections.iter().map(|s| s.keys.len()).sum()
    }
}

/// A state's positions (a principal's, on every partition it came from) by
/// topic and partition, which outlive this process's numbering.
pub(crate) fn named_positions(state: &KeyState, origins: &Origins) -> Vec<At> {
    state
        .positions()
        .into_iter()
        .filter_map(|p| {
            let (topic, partition) = origins.get(p.origin)?;
            Some(At {
                topic,
                partition,
                offset: p.offset,
                record: p.record,
            })
        })
        .collect()
}

/// Principals with their positions put back in this process's numbering; a
/// principal without any has none (its replayed events count again).
pub fn with_positions(
    principals: Vec<(CompactString, KeyState)>,
    positions: Vec<(CompactString, Vec<At>)>,
    origins: &Origins,
) -> Vec<(CompactString, KeyState)> {
    let mut positions: HashMap<CompactString, Vec<At>> = positions.into_iter().collect();
    principals
        .into_iter()
        .map(|(k, mut state)| {
            let at: Vec<Position> = positions
                .remove(&k)
                .unwrap_or_default()
                .into_iter()
                .map(|a| Position {
                    origin: origins.index(&a.topic, a.partition),
                    offset: a.offset,
                    record: a.record,
                })
                .filter(|p| p.origin != 0)
                .collect();
            state.set_positions(&at);
            (k, state)
        })
        .collect()
}

/// What writing a checkpoint took.
#[derive(Debug, Clone)]
pub struct Written {
    /// The file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Encoding and writing (not the copy).
    pub duration: Duration,
}

/// A directory of checkpoints, newest last, the last `keep` retained.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    keep: usize,
}

const PREFIX: &str = "checkpoint-";
const SUFFIX: &str = ".kwc";

impl Store {
    /// A store in `dir` (created if missing) keeping `keep` files.
    pub fn open(dir: &Path, keep: usize) -> Result<Store, CheckpointError> {
        std::fs::create_dir_all(dir).map_err(|e| CheckpointError::io(dir, e))?;
        let store = Store {
            dir: dir.to_owned(),
            keep: keep.max(1),
        };
        store.remove_leftovers();
        Ok(store)
    }

    /// Removes half-written files of writes that died (a kill during a
    /// write, a full disk): each can be as large as a whole checkpoint.
    fn remove_leftovers(&self) {
        let half_written = format!(".{PREFIX}");
        for tmp in self.files(|n| n.starts_with(&half_written) && n.ends_with(".tmp")) {
            match std::fs::remove_file(&tmp) {
                Ok(()) => {
                    tracing::info!(path = %tmp.display(), "removed a half-written checkpoint")
                }
                Err(e) => {
                    tracing::warn!(path = %tmp.display(), error = %e, "removing a half-written checkpoint")
                }
            }
        }
    }

    /// Writes `cp` atomically and prunes old files.
    pub fn write(&self, cp: &Checkpoint) -> Result<Written, CheckpointError> {
        let started = Instant::now();
        let bytes = format::encode(cp)?;
        let name = format!("{PREFIX}{:013}{SUFFIX}", cp.written_at_ms.max(0));
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let written = (|| {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()
        })();
        if let Err(e) = written {
            // A full disk must not also keep the half-written copy.
            let _ = std::fs::remove_file(&tmp);
            return Err(CheckpointError::io(&tmp, e));
        }
        std::fs::rename(&tmp, &path).map_err(|e| CheckpointError::io(&path, e))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| CheckpointError::io(&self.dir, e))?;
        self.prune();
        Ok(Written {
            path,
            bytes: bytes.len() as u64,
            duration: started.elapsed(),
        })
    }

    /// Checkpoint files, oldest first.
    pub fn list(&self) -> Vec<PathBuf> {
        let mut files = self.files(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX));
        files.sort();
        files
    }

    /// Files of the directory whose name `wanted` accepts.
    fn files(&self, wanted: impl Fn(&str) -> bool) -> Vec<PathBuf> {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&wanted))
            .collect()
    }

    fn prune(&self) {
        let files = self.list();
        for old in files.iter().take(files.len().saturating_sub(self.keep)) {
            if let Err(e) = std::fs::remove_file(old) {
                tracing::warn!(path = %old.display(), error = %e, "removing an old checkpoint");
            }
        }
    }

    /// The newest checkpoint that reads back whole. A corrupt or truncated
    /// one is reported and the one before it used.
    pub fn load_newest(&self) -> Option<(PathBuf, Checkpoint)> {
        for path in self.list().into_iter().rev() {
            match load(&path) {
                Ok(cp) => return Some((path, cp)),
                Err(e) => tracing::error!(
                    path = %path.display(),
                    error = %e,
                    "checkpoint unreadable; trying the previous one"
                ),
            }
        }
        None
    }
}

/// Reads one checkpoint file.
pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|e| CheckpointError::io(path, e))?;
    format::decode(&bytes)
}

#[cfg(test)]
mod network_memory_tests;
#[cfg(test)]
mod tests;
