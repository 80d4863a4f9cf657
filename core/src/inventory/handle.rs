//! [`InventoryHandle`]: the inventory the engine reads, swapped atomically on
//! reload. A reload parses the new file aside and only a valid one replaces
//! the current inventory, so a bad edit never takes the policy away; readers
//! never wait for a reload, and per-key state is never touched by one.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use prometheus::IntCounter;
use tokio_util::sync::CancellationToken;

use super::{Inventory, InventoryError, Sources};
use crate::metrics::Metrics;
use crate::owner::{Owner, OwnerLookup};

/// A cheap-to-clone handle to the current inventory and the file it came from.
#[derive(Clone)]
pub struct InventoryHandle {
    inner: Arc<Shared>,
}

struct Shared {
    sources: Sources,
    current: ArcSwap<Inventory>,
    /// The files as last read (loaded or rejected), so polling re-reads only
    /// changed files and reports a bad one once.
    seen: Mutex<Vec<Seen>>,
    reloads: Option<[IntCounter; 2]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Seen {
    modified: Option<SystemTime>,
    len: u64,
    content: u64,
    missing: bool,
}

impl std::fmt::Debug for InventoryHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InventoryHandle")
            .field("sources", &self.inner.sources)
            .field("keys", &self.inner.current.load().len())
            .finish()
    }
}

/// Reads every file with what identifies this version of it.
fn read(sources: &Sources) -> Result<(Vec<Vec<u8>>, Vec<Seen>), InventoryError> {
    let mut files = Vec::new();
    let mut seen = Vec::new();
    for path in sources.paths() {
        let fail = |source| InventoryError::Read {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(fail)?;
        let bytes = std::fs::read(path).map_err(fail)?;
        seen.push(Seen {
            modified: meta.modified().ok(),
            len: meta.len(),
            content: xxhash_rust::xxh3::xxh3_64(&bytes),
            missing: false,
        });
        files.push(bytes);
    }
    Ok((files, seen))
}

fn parse(sources: &Sources, files: &[Vec<u8>]) -> Result<Inventory, InventoryError> {
    Inventory::parse_sources(sources, files)
}

impl InventoryHandle {
    /// Loads the inventory from `sources` (a path: one keywatch-format
    /// file). With `metrics`, every later reload is counted in
    /// `keywatch_inventory_reloads_total` by result.
    pub fn open(
        sources: impl Into<Sources>,
        metrics: Option<&Metrics>,
    ) -> Result<InventoryHandle, InventoryError> {
        let sources = sources.into();
        let (files, seen) = read(&sources)?;
        let inventory = parse(&sources, &files)?;
        tracing::info!(path = %sources.main_path().display(), files = files.len(), keys = inventory.len(), "inventory loaded");
        Ok(InventoryHandle {
            inner: Arc::new(Shared {
                current: ArcSwap::from_pointee(inventory),
                seen: Mutex::new(seen),
                reloads: metrics
                    .map(|m| ["ok", "failed"].map(|r| m.inventory_reloads.with_label_values(&[r]))),
                sources,
            }),
        })
    }

    /// The inventory's (first) file.
    pub fn path(&self) -> &Path {
        self.inner.sources.main_path()
    }

    /// Every file the inventory is read from.
    pub fn sources(&self) -> &Sources {
        &self.inner.sources
    }

    /// The inventory in force now; it stays valid however many reloads follow.
    pub fn current(&self) -> Arc<Inventory> {
        self.inner.current.load_full()
    }

    /// The inventory in force now, without touching its reference count (the
    /// engine's per-event read).
    pub(crate) fn snapshot(&self) -> arc_swap::Guard<Arc<Inventory>> {
        self.inner.current.load()
    }

    /// Re-reads the file now. A valid file replaces the inventory; an invalid
    /// one is rejected, logged and counted, and the previous inventory stays.
    pub fn reload(&self) -> Result<Arc<Inventory>, InventoryError> {
        let sources = &self.inner.sources;
        let read = read(sources).inspect(|(_, seen)| *self.lock_seen() = seen.clone());
        self.apply(read.and_then(|(files, _)| parse(sources, &files)))
    }

    /// Reloads if the file's modification time or size changed and its
    /// content did too; `None` when there was nothing new.
    fn reload_if_changed(&self) -> Option<Result<Arc<Inventory>, InventoryError>> {
        let sources = &self.inner.sources;
        let mut seen = self.lock_seen();
        let mut changed_meta = seen.len() != sources.paths().len();
        for (i, path) in sources.paths().into_iter().enumerate() {
            let meta = match std::fs::metadata(path) {
                Ok(meta) => meta,
                Err(e) => {
                    // Editors that save by delete-and-write leave a moment without
                    // a file: wait for the next poll, and say so once.
                    if let Some(s) = seen.get_mut(i).filter(|s| !s.missing) {
                        s.missing = true;
                        tracing::warn!(path = %path.display(), error = %e, "inventory file unreadable; keeping the current inventory");
                    }
                    return None;
                }
            };
            changed_meta |= seen.get(i).is_none_or(|s| {
                s.missing || (meta.modified().ok(), meta.len()) != (s.modified, s.len)
            });
        }
        if !changed_meta {
            return None;
        }
        let (files, now) = read(sources).ok()?;
        let changed = now.len() != seen.len()
            || now
                .iter()
                .zip(seen.iter())
                .any(|(a, b)| a.content != b.content);
        *seen = now;
        drop(seen);
        changed.then(|| self.apply(parse(sources, &files)))
    }

    fn lock_seen(&self) -> std::sync::MutexGuard<'_, Vec<Seen>> {
        self.inner.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn apply(
        &self,
        parsed: Result<Inventory, InventoryError>,
    ) -> Result<Arc<Inventory>, InventoryError> {
        let started = Instant::now();
        let counter = |i: usize| {
            if let Some(c) = &self.inner.reloads {
                c[i].inc();
            }
        };
        match parsed {
            Ok(inventory) => {
                let inventory = Arc::new(inventory);
                let old = self.inner.current.swap(inventory.clone());
                counter(0);
                tracing::info!(
                    path = %self.path().display(),
                    keys = inventory.len(),
                    previous_keys = old.len(),
                    swap_ms = started.elapsed().as_millis() as u64,
                    "inventory reloaded"
                );
                Ok(inventory)
            }
            Err(e) => {
                counter(1);
                tracing::error!(
                    error = %e,
                    keeping_keys = self.inner.current.load().len(),
                    "inventory reload rejected; the previous inventory stays in force"
                );
                Err(e)
            }
        }
    }

    /// Polls the file every `every` and reloads it when it changed, until
    /// `shutdown`. Parsing runs on the blocking pool: a million-key CSV
    /// file takes about two seconds (JSON three, TOML half a minute). A
    /// changed file is detected by modification time or size, then confirmed
    /// by content; SIGHUP ([`InventoryHandle::reload_on_sighup`]) forces a
    /// reload regardless.
    pub async fn watch(self, every: Duration, shutdown: CancellationToken) {
        crate::poll::every(every, shutdown, move || {
            self.reload_if_changed();
        })
        .await;
    }

    /// Registers for SIGHUP now (so a signal sent once this returns is not
    /// lost) and returns the task that reloads on each one until `shutdown`.
    /// Must be called within a Tokio runtime.
    pub fn reload_on_sighup(
        self,
        shutdown: CancellationToken,
    ) -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = signal(SignalKind::hangup())?;
        Ok(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    got = hangups.recv() => if got.is_none() { return },
                }
                tracing::info!(path = %self.path().display(), "SIGHUP: reloading the inventory");
                let handle = self.clone();
                let _ = tokio::task::spawn_blocking(move || handle.reload()).await;
            }
        })
    }
}

impl OwnerLookup for InventoryHandle {
    fn owner_of(&self, key_id: &str) -> Option<Owner> {
        self.snapshot().owner_of(key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "key_id,owner,team\nAKIA1,alice,payments\n";
    const V2: &str = "key_id,owner,team\nAKIA1,alice,payments\nAKIA2,bob,\n";
    const BAD: &str = "key_id,owner,team\nAKIA1,alice,payments\nAKIA2,,x\n";

    fn write(path: &Path, text: &str) {
        // A different length guarantees the change is visible even where the
        // file system keeps whole-second modification times.
        std::fs::write(path, text).unwrap();
    }

    async fn until(what: &str, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ok() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn polling_picks_up_a_good_file_and_refuses_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inventory.csv");
        write(&path, V1);
        let metrics = Metrics::new();
        let handle = InventoryHandle::open(&path, Some(&metrics)).unwrap();
        assert_eq!(
            handle.owner_of("AKIA1"),
            Some(Owner {
                owner: "alice".into(),
                team: Some("payments".into())
            })
        );
        let stop = CancellationToken::new();
        let task = tokio::spawn(
            handle
                .clone()
                .watch(Duration::from_millis(20), stop.clone()),
        );
        write(&path, V2);
        until("the new file", || handle.current().len() == 2).await;
        write(&path, BAD);
        let failed = metrics.inventory_reloads.with_label_values(&["failed"]);
        until("the rejection", || failed.get() == 1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            failed.get(),
            1,
            "a bad file is reported once, not every poll"
        );
        assert_eq!(handle.current().len(), 2, "the previous inventory stays");
        assert_eq!(handle.owner_of("AKIA2").unwrap().owner, "bob");
        let ok = metrics.inventory_reloads.with_label_values(&["ok"]);
        assert_eq!(ok.get(), 1);
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn sighup_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inventory.csv");
        write(&path, V1);
        let handle = InventoryHandle::open(&path, None).unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(handle.clone().reload_on_sighup(stop.clone()).unwrap());
        write(&path, V2);
        let status = std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        until("the reload", || handle.current().len() == 2).await;
        stop.cancel();
        task.await.unwrap();
    }

    #[test]
    fn a_changed_credential_report_alone_reloads_the_inventory() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys.json");
        let report = dir.path().join("report.csv");
        write(
            &keys,
            r#"{"AccessKeyMetadata": [{"UserName": "alice", "AccessKeyId": "AKIA1", "Status": "Active", "CreateDate": "2025-01-01T00:00:00+00:00"}]}"#,
        );
        let header = "user,user_creation_time,access_key_1_last_rotated,access_key_1_last_used_date,access_key_2_last_rotated,access_key_2_last_used_date,access_key_1_active,access_key_2_active\n";
        write(
            &report,
            &format!("{header}alice,N/A,2025-01-01T00:00:00+00:00,N/A,N/A,N/A,true,false\n"),
        );
        let sources = Sources {
            files: vec![crate::inventory::Source {
                path: keys,
                format: crate::inventory::SourceFormat::Aws,
                credential_report: Some(report.clone()),
            }],
            owners: None,
        };
        let handle = InventoryHandle::open(sources, None).unwrap();
        assert_eq!(handle.current().get("AKIA1").unwrap().last_used, None);
        assert!(handle.reload_if_changed().is_none(), "nothing changed");
        write(&report, &format!("{header}alice,N/A,2025-01-01T00:00:00+00:00,2025-06-01T10:00:00+00:00,N/A,N/A,true,false\n"));
        assert!(handle.reload_if_changed().unwrap().is_ok());
        assert_eq!(
            handle.current().get("AKIA1").unwrap().last_used,
            Some(1_748_772_000)
        );
    }

    #[test]
    fn reload_keeps_the_old_inventory_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inventory.csv");
        write(&path, V1);
        let handle = InventoryHandle::open(&path, None).unwrap();
        let before = handle.current();
        write(&path, BAD);
        let err = handle.reload().unwrap_err().to_string();
        assert!(
            err.contains("inventory.csv")
                && err.contains("line 3, row 2")
                && err.contains("`owner`"),
            "{err}"
        );
        assert!(Arc::ptr_eq(&before, &handle.current()));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(handle.reload(), Err(InventoryError::Read { .. })));
        assert_eq!(handle.current().len(), 1);
    }
}
