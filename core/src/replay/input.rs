//! Which files a replay reads: inputs named on the command line, directories
//! walked for event logs (CloudTrail's digest and insight folders left
//! out), and what a file that cannot be read reports.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One input of a replay.
#[derive(Debug, Clone)]
pub enum Input {
    /// A file, or a directory walked recursively.
    Path(PathBuf),
    /// Standard input.
    Stdin,
    /// Bytes already in memory (generated fleets in tests and benchmarks).
    Bytes {
        /// Name shown in messages.
        name: String,
        /// The content, plain or gzip.
        bytes: Arc<[u8]>,
    },
}

impl Input {
    /// A path from the command line; `-` is standard input.
    pub fn path(path: &Path) -> Input {
        if path.as_os_str() == "-" {
            Input::Stdin
        } else {
            Input::Path(path.to_owned())
        }
    }

    /// In-memory content.
    pub fn bytes(name: impl Into<String>, bytes: impl Into<Arc<[u8]>>) -> Input {
        Input::Bytes {
            name: name.into(),
            bytes: bytes.into(),
        }
    }
}

/// One file to read.
#[derive(Debug, Clone)]
pub(super) struct File {
    pub name: String,
    pub(super) what: Source,
    /// Size on disk (compressed), when known: the progress line's total.
    pub size: Option<u64>,
}

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
pub(super) enum Source {
    Path(PathBuf),
    Stdin,
    Bytes(Arc<[u8]>),
}

impl File {
    pub fn is_stdin(&self) -> bool {
        matches!(self.what, Source::Stdin)
    }
}

/// A file that could not be read to its end.
#[derive(Debug, Clone, PartialEq)]
pub struct FileFailure {
    /// The file.
    pub name: String,
    /// What went wrong.
    pub reason: String,
    /// Events read from it before the failure (they were replayed).
    pub events_before: u64,
}

/// The inputs, expanded to files.
#[derive(Debug, Default)]
pub(super) struct Expanded {
    pub files: Vec<File>,
    /// Files inside directories that were not read, as not event logs.
    pub not_events: Vec<String>,
    pub failures: Vec<FileFailure>,
}

/// Directories of an S3 CloudTrail bucket that hold no key-usage events:
/// digest files (hashes of the log files) and Insights events.
const NOT_EVENT_DIRS: [&str; 2] = ["CloudTrail-Digest", "CloudTrail-Insight"];

/// Endings of event log files inside a directory (each also with `.gz`).
const EVENT_ENDINGS: [&str; 5] = [".json", ".jsonl", ".ndjson", ".log", ".txt"];

/// Expands the inputs: a directory is walked recursively in name order; in
/// directories only event log files are read (a file named on the command
/// line is always read).
pub(super) fn expand(inputs: &[Input]) -> Expanded {
    let mut out = Expanded::default();
    for input in inputs {
        match input {
            Input::Stdin => out.files.push(File {
                name: "-".into(),
                what: Source::Stdin,
                size: None,
            }),
            Input::Bytes { name, bytes } => out.files.push(File {
                name: name.clone(),
                what: Source::Bytes(bytes.clone()),
                size: Some(bytes.len() as u64),
            }),
            Input::Path(p) if p.is_dir() => walk(p, &mut out),
            Input::Path(p) => out.files.push(File {
                name: p.display().to_string(),
                what: Source::Path(p.clone()),
                size: std::fs::metadata(p).ok().map(|m| m.len()),
            }),
        }
    }
    out
}

fn walk(dir: &Path, out: &mut Expanded) {
    let entries = std::fs::read_dir(dir).and_then(|rd| {
        let mut v = rd
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<Vec<_>>>()?;
        v.sort();
        Ok(v)
    });
    let entries = match entries {
        Ok(v) => v,
        Err(e) => {
            out.failures.push(FileFailure {
                name: dir.display().to_string(),
                reason: format!("cannot list the directory: {e}"),
                events_before: 0,
            });
            return;
        }
    };
    for path in entries {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        // Symbolic links to directories are not followed: no loops.
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                std::fs::metadata(&path).ok().filter(|m| !m.is_dir())
            }
            Ok(m) => Some(m),
            Err(_) => None,
        };
        match meta {
            Some(m) if m.is_dir() => {
                if NOT_EVENT_DIRS.contains(&&*name) {
                    out.not_events.push(path.display().to_string());
                } else {
                    walk(&path, out);
                }
            }
            Some(m) if is_event_log(&name) => out.files.push(File {
                name: path.display().to_string(),
                what: Source::Path(path.clone()),
                size: Some(m.len()),
            }),
            _ => out.not_events.push(path.display().to_string()),
        }
    }
}

fn is_event_log(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    EVENT_ENDINGS.iter().any(|e| name.ends_with(e))
}
