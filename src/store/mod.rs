//! The findings store: every finding the engine raises, with its evidence,
//! the responder's status, assignee and notes, and an audit trail of every
//! change, in one SQLite file.
//!
//! SQLite (bundled, so the binary still links only libc): one file to back
//! up, indexed queries on every column the console filters by (key,
//! principal, team, detector, severity, status, time), WAL so a reader never
//! waits for the writer and a `kill -9` loses no committed transaction, and
//! SQL for the retention deletes. An embedded key-value store would need a
//! hand-made secondary index per filter.
//!
//! Detection never waits for the disk: [`FindingsStore::record`] puts the
//! finding on a bounded queue that a writer thread drains in batches (one
//! transaction per batch); a full queue drops the finding and counts it.
//! A batch that cannot be written (a full disk, a locked or damaged file)
//! is retried with backoff, holding back the queue behind it, so nothing
//! is dropped until the queue itself is full; meanwhile [`FindingsStore::behind`]
//! says so (to `/readyz` and the console). Stopped while still failing,
//! the writer spills what it holds to `<path>.unwritten.jsonl`, written
//! first at the next start.
//! The same finding id again (a replay, a redelivery, a finding folded into
//! its run's record) updates the row: `repeats`, `last_seen` and the body
//! (the latest evidence), never a second row.
//!
//! # Layout
//!
//! - this file: the schema, the writer, queries and verdicts;
//! - [`query`]: the filters of `/api/v1/findings`;
//! - [`ingest`]: the findings of other instances, read from
//!   `store.findings_topic`;
//! - `salvage`: a damaged file moved aside and what still reads copied.

pub mod ingest;
pub mod query;
mod salvage;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::config::{StoreConfig, Suppression};
use keywatch_core::engine::{Finding, Teaching};
use keywatch_core::metrics::Metrics;
use keywatch_core::owner::OwnerLookup;

pub use query::{FindingsQuery, Page};

/// What a responder says a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Nobody has looked yet.
    Open,
    /// Someone is looking.
    Acknowledged,
    /// Dealt with.
    Resolved,
    /// Normal for this key: the key's baseline is taught so it never alerts again.
    Expected,
    /// The detector was wrong: muted for a while, in a chosen scope.
    FalsePositive,
    /// A real compromise: re-notified at `critical`, the key marked compromised.
    Confirmed,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 6] = [
        Status::Open,
        Status::Acknowledged,
        Status::Resolved,
        Status::Expected,
        Status::FalsePositive,
        Status::Confirmed,
    ];

    /// Name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Acknowledged => "acknowledged",
            Status::Resolved => "resolved",
            Status::Expected => "expected",
            Status::FalsePositive => "false_positive",
            Status::Confirmed => "confirmed",
        }
    }

    fn parse(s: &str) -> Status {
        Status::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .unwrap_or(Status::Open)
    }
}

/// Who made a change, for the audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The name the responder gave (the console asks for one).
    pub who: String,
    /// The client's address.
    pub remote: String,
    /// The client's `User-Agent`.
    pub user_agent: String,
}

/// A stored finding with what responders made of it.
#[derive(Debug, Clone, Serialize)]
pub struct StoredFinding {
    /// The finding, as raised.
    #[serde(flatten)]
    pub finding: Finding,
    /// Status.
    pub status: Status,
    /// Who is on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    /// Times the same finding (same id) was raised.
    pub repeats: u32,
    /// When it was last raised (wall clock, RFC 3339).
    pub last_seen: String,
    /// The owning team (from the inventory), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
}

/// One change to a finding.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    /// When (RFC 3339).
    pub at: String,
    /// Who, from where.
    #[serde(flatten)]
    pub actor: Actor,
    /// What changed: `status`, `assignee`, `note`, `taught`, `suppressed`, `renotified`.
    pub action: String,
    /// The details (new status, the note's text, the suppression id ...).
    pub detail: serde_json::Value,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused.
    #[error("findings store: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A stored row could not be read back.
    #[error("findings store: a stored finding is unreadable: {0}")]
    Corrupt(#[from] serde_json::Error),
    /// No finding with this id.
    #[error("no stored finding {0:?}")]
    NotFound(String),
    /// The file is damaged, and so is the one rebuilt from what read.
    #[error("findings store: damaged beyond repair: {0}")]
    Damaged(String),
    /// The lock around the reader connection was poisoned.
    #[error("findings store: a previous query panicked")]
    Poisoned,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS findings (
    id TEXT PRIMARY KEY,
    observed_ms INTEGER NOT NULL,
    stored_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    repeats INTEGER NOT NULL DEFAULT 1,
    key_id TEXT NOT NULL,
    principal TEXT,
    team TEXT,
    detector TEXT NOT NULL,
    severity INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    assignee TEXT,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS findings_time ON findings(observed_ms);
CREATE INDEX IF NOT EXISTS findings_stored ON findings(stored_ms);
CREATE INDEX IF NOT EXISTS findings_key ON findings(key_id, observed_ms);
CREATE INDEX IF NOT EXISTS findings_principal ON findings(principal, observed_ms);
CREATE INDEX IF NOT EXISTS findings_team ON findings(team, observed_ms);
CREATE INDEX IF NOT EXISTS findings_detector ON findings(detector, observed_ms);
CREATE INDEX IF NOT EXISTS findings_severity ON findings(severity, observed_ms);
CREATE INDEX IF NOT EXISTS findings_status ON findings(status, observed_ms);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    finding_id TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    who TEXT NOT NULL,
    remote TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_finding ON audit(finding_id, seq);
CREATE TABLE IF NOT EXISTS teachings (
    seq INTEGER PRIMARY KEY,
    entity TEXT NOT NULL,
    subject TEXT NOT NULL,
    principal TEXT,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS teachings_once ON teachings(entity, subject, body);
CREATE TABLE IF NOT EXISTS suppressions (
    seq INTEGER PRIMARY KEY,
    finding_id TEXT NOT NULL,
    rule TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS suppressions_once ON suppressions(finding_id, rule);
CREATE TABLE IF NOT EXISTS ingest_offsets (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
"#;

/// A cheap-to-clone handle to the findings store.
#[derive(Clone)]
pub struct FindingsStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Reads and verdicts (WAL: they never wait for the writer's batches
    /// longer than one commit).
    conn: Mutex<Connection>,
    queue: SyncSender<Msg>,
    metrics: Arc<Metrics>,
    path: PathBuf,
    /// Ingested messages queued and not yet written: kept under
    /// [`INGEST_IN_FLIGHT`] so the queue keeps room for this instance's own
    /// findings.
    ingest_pending: Arc<AtomicUsize>,
    max_age_ms: i64,
    queue_cap: usize,
    health: Arc<Health>,
}

/// How the writer is doing, shared with the readers.
#[derive(Default)]
struct Health {
    /// Wall clock (ms) of the first failed write of the failure under way;
    /// 0 while writes succeed.
    failing_since_ms: AtomicI64,
    /// The last write's error.
    last_error: Mutex<String>,
    /// Tests: the writer's `max_page_count` (0: SQLite's default), so that
    /// SQLite itself answers "database or disk is full".
    #[cfg(test)]
    page_limit: AtomicI64,
}

/// The store cannot write: what `/readyz` and the console say.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Behind {
    /// Since when (RFC 3339).
    pub failing_since: String,
    /// For how long, in seconds.
    pub seconds: i64,
    /// Findings accepted and not yet written: queued, or held for a retry.
    pub unwritten: i64,
    /// Why the last write failed.
    pub error: String,
}

enum Msg {
    Finding(Box<Finding>),
    Ingest(Box<Ingested>),
    Stop,
}

/// The instance's own findings in a batch (the rest are ingested messages).
fn own_findings(batch: &[Msg]) -> usize {
    batch
        .iter()
        .filter(|m| matches!(m, Msg::Finding(_)))
        .count()
}

/// Writes the spill file whole (a temporary file renamed over it).
fn write_spill(path: &Path, findings: &[&Finding]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    for f in findings {
        serde_json::to_writer(&mut out, f)?;
        out.write_all(b"\n")?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A message read from `store.findings_topic`: another instance's finding
/// (or nothing, for a message skipped), and the position after it.
#[derive(Debug, Clone)]
pub struct Ingested {
    /// The finding, when the message held one to store.
    pub finding: Option<Finding>,
    /// Its team, from the alert.
    pub team: Option<String>,
    /// When it was stored by the instance that raised it (the message's
    /// timestamp): retention counts from there on every instance.
    pub stored_ms: i64,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The message's offset.
    pub offset: i64,
}

/// Most ingested messages queued at once (the rest of `store.queue` stays
/// free for the instance's own findings).
const INGEST_IN_FLIGHT: usize = 1_024;

/// The writer thread: on drop it writes what is queued (or, when the store
/// still cannot write, spills it to `<path>.unwritten.jsonl`), then stops.
pub struct StoreWriter {
    queue: SyncSender<Msg>,
    stopping: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        // A writer retrying a failed batch gives up and spills; a healthy
        // one writes what is queued ahead of the stop.
        self.stopping.store(true, Ordering::Release);
        // Behind whatever is queued; waits for room when the queue is full.
        let _ = self.queue.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn open_conn(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // WAL: readers never block the writer; NORMAL: a committed transaction
    // survives the process dying (only a power loss can undo the last ones).
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // 64 MiB of pages per connection (SQLite's default is 2 MiB): the
    // indexes' inner pages of a million findings stay in memory, so an
    // insert or a page of results reads few pages from disk.
    conn.pragma_update(None, "cache_size", -65_536)?;
    Ok(conn)
}

/// Why a store file could not be opened.
enum OpenError {
    /// It is damaged: SQLite's complaint.
    Damaged(String),
    /// Anything else, for the operator.
    Other(StoreError),
}

impl From<rusqlite::Error> for OpenError {
    fn from(e: rusqlite::Error) -> OpenError {
        if salvage::is_damage(&e) {
            OpenError::Damaged(e.to_string())
        } else {
            OpenError::Other(e.into())
        }
    }
}

/// Opens `path` with the schema and checks it (`PRAGMA quick_check`: a
/// few seconds for a million findings, once at start). `Err` only for
/// damage; other errors (a directory that is not there, no permission)
/// are returned as they are, for the operator.
fn open_checked(path: &Path) -> Result<Connection, OpenError> {
    let conn = open_conn(path).map_err(OpenError::from)?;
    conn.execute_batch(SCHEMA).map_err(OpenError::from)?;
    salvage::check(&conn).map_err(OpenError::Damaged)?;
    Ok(conn)
}

impl FindingsStore {
    /// Opens (creating) the store at `cfg.path` and starts its writer. The
    /// handle stops accepting findings once every clone is dropped; the
    /// writer then drains and ends. A damaged file is moved aside and
    /// rebuilt from what still reads (logged at ERROR), so detection and
    /// the verdicts that read are not lost with it.
    pub fn open(
        cfg: &StoreConfig,
        metrics: Arc<Metrics>,
        owners: Option<Arc<dyn OwnerLookup>>,
    ) -> Result<(FindingsStore, StoreWriter), StoreError> {
        let conn = match open_checked(&cfg.path) {
            Ok(conn) => conn,
            Err(OpenError::Other(e)) => return Err(e),
            Err(OpenError::Damaged(why)) => {
                let s = salvage::salvage(&cfg.path)?;
                tracing::error!(
                    path = %cfg.path.display(),
                    damage = %why,
                    moved_to = %s.moved_to.display(),
                    rows_kept = s.rows,
                    unreadable_ranges = s.unreadable_ranges,
                    "the findings store was damaged: moved aside, and every row that still reads copied into a new one"
                );
                match open_checked(&cfg.path) {
                    Ok(conn) => conn,
                    Err(OpenError::Other(e)) => return Err(e),
                    Err(OpenError::Damaged(why)) => return Err(StoreError::Damaged(why)),
                }
            }
        };
        let rows: i64 = conn.query_row("SELECT count(*) FROM findings", [], |r| r.get(0))?;
        metrics.store_findings.set(rows);
        for result in ["inserted", "repeated", "failed"] {
            metrics.store_writes.with_label_values(&[result]);
        }
        for reason in ["max_age", "max_rows"] {
            metrics.store_pruned.with_label_values(&[reason]);
        }
        for result in ["inserted", "known", "expired", "renotification"] {
            metrics.store_ingested.with_label_values(&[result]);
        }
        for reason in ["empty", "not_json", "not_an_alert"] {
            metrics.store_ingest_rejected.with_label_values(&[reason]);
        }
        let writer_conn = open_conn(&cfg.path)?;
        let ingest_pending = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = sync_channel(cfg.queue);
        let tx2 = tx.clone();
        let health = Arc::new(Health::default());
        let stopping = Arc::new(AtomicBool::new(false));
        let spill_path = spill_path(&cfg.path);
        let spilled = read_spill(&spill_path);
        metrics.store_unwritten.set(spilled.len() as i64);
        let writer = Writer {
            conn: writer_conn,
            rx,
            metrics: metrics.clone(),
            owners,
            max_age_ms: cfg.max_age.0.as_millis() as i64,
            max_rows: cfg.max_rows as i64,
            rows,
            ingest_pending: ingest_pending.clone(),
            health: health.clone(),
            stopping: stopping.clone(),
            spill_path,
            spilled,
            last_warn: Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name("findings-store".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Sql(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        Ok((
            FindingsStore {
                inner: Arc::new(Inner {
                    conn: Mutex::new(conn),
                    queue: tx,
                    metrics,
                    path: cfg.path.clone(),
                    ingest_pending,
                    max_age_ms: cfg.max_age.0.as_millis() as i64,
                    queue_cap: cfg.queue,
                    health,
                }),
            },
            StoreWriter {
                queue: tx2,
                stopping,
                thread: Some(thread),
            },
        ))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Queues a finding for storage; never waits (the caller is detection).
    pub fn record(&self, f: &Finding) {
        match self.inner.queue.try_send(Msg::Finding(Box::new(f.clone()))) {
            Ok(()) => self.inner.metrics.store_unwritten.inc(),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.inner.metrics.store_dropped.inc();
            }
        }
    }

    /// Tests: limits the writer's file to `pages` (0: no limit); SQLite
    /// keeps it at least at its current size, so writes that need room
    /// fail as on a full disk.
    #[cfg(test)]
    pub(crate) fn limit_pages(&self, pages: i64) {
        self.inner.health.page_limit.store(pages, Ordering::Release);
    }

    /// `Some` while the writer cannot write: since when, why, and how many
    /// findings wait. `None` while writes succeed.
    pub fn behind(&self) -> Option<Behind> {
        let since = self.inner.health.failing_since_ms.load(Ordering::Acquire);
        if since == 0 {
            return None;
        }
        let error = self
            .inner
            .health
            .last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default();
        Some(Behind {
            failing_since: keywatch_core::decode::time::format_rfc3339(since),
            seconds: (now_ms() - since).max(0) / 1000,
            unwritten: self.inner.metrics.store_unwritten.get(),
            error,
        })
    }

    /// Queues a message read from the findings topic: its finding is
    /// stored unless that id is stored already (this instance's own
    /// findings, queued by [`FindingsStore::record`] before their alert was
    /// even sent, are always ahead of their copy from the topic), and its
    /// position is kept in the same transaction. Waits while many are
    /// queued; `false` once the writer has stopped.
    pub fn ingest(&self, item: Ingested) -> bool {
        let pending = &self.inner.ingest_pending;
        let limit = INGEST_IN_FLIGHT.min(self.inner.queue_cap / 2).max(1);
        while pending.load(Ordering::Acquire) >= limit {
            std::thread::sleep(Duration::from_millis(5));
        }
        pending.fetch_add(1, Ordering::AcqRel);
        if self.inner.queue.send(Msg::Ingest(Box::new(item))).is_err() {
            pending.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Where reading `topic` resumes: partition → the next offset to read.
    pub fn ingest_offsets(
        &self,
        topic: &str,
    ) -> Result<std::collections::HashMap<i32, i64>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt =
                conn.prepare("SELECT partition, next FROM ingest_offsets WHERE topic = ?1")?;
            let rows = stmt
                .query_map([topic], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

    /// `store.max_age` in milliseconds.
    pub fn max_age_ms(&self) -> i64 {
        self.inner.max_age_ms
    }

    /// The metrics the store counts in.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let mut conn = self.inner.conn.lock().map_err(|_| StoreError::Poisoned)?;
        let out = f(&mut conn);
        self.inner
            .metrics
            .store_query_seconds
            .observe(started.elapsed().as_secs_f64());
        out
    }

    /// Findings matching `q`, newest first, one page.
    pub fn query(&self, q: &FindingsQuery) -> Result<Page, StoreError> {
        self.with_conn(|conn| query::run(conn, q))
    }

    /// One finding with its audit trail, oldest change first.
    pub fn get(&self, id: &str) -> Result<(StoredFinding, Vec<AuditEntry>), StoreError> {
        self.with_conn(|conn| {
            let f = conn
                .query_row(
                    &format!("SELECT {} FROM findings WHERE id = ?1", query::COLUMNS),
                    [id],
                    query::row,
                )
                .optional()?
                .ok_or_else(|| StoreError::NotFound(id.to_owned()))??;
            let mut stmt = conn.prepare_cached(
                "SELECT at_ms, who, remote, user_agent, action, detail FROM audit \
                 WHERE finding_id = ?1 ORDER BY seq",
            )?;
            let trail = stmt
                .query_map([id], |r| {
                    Ok(AuditEntry {
                        at: keywatch_core::decode::time::format_rfc3339(r.get(0)?),
                        actor: Actor {
                            who: r.get(1)?,
                            remote: r.get(2)?,
                            user_agent: r.get(3)?,
                        },
                        action: r.get(4)?,
                        detail: serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or_default(),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok((f, trail))
        })
    }

    /// Writes the finding now, bypassing the queue (a verdict on a finding
    /// the writer has not stored yet, a test). Same upsert as the writer.
    pub fn store_now(&self, f: &Finding) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            upsert(conn, f, None, now_ms())?;
            Ok(())
        })
    }

    /// Sets a finding's status (and assignee, note), with one audit entry
    /// per change, in one transaction.
    pub fn set_status(
        &self,
        id: &str,
        status: Status,
        assignee: Option<&str>,
        note: Option<&str>,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            let changed = tx.execute(
                "UPDATE findings SET status = ?2 WHERE id = ?1",
                params![id, status.as_str()],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound(id.to_owned()));
            }
            audit(&tx, id, actor, "status", serde_json::json!(status))?;
            if let Some(a) = assignee {
                tx.execute(
                    "UPDATE findings SET assignee = ?2 WHERE id = ?1",
                    params![id, a],
                )?;
                audit(&tx, id, actor, "assignee", serde_json::json!(a))?;
            }
            if let Some(n) = note.filter(|n| !n.trim().is_empty()) {
                audit(&tx, id, actor, "note", serde_json::json!(n))?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Adds an audit entry (what a verdict did: taught, suppressed, renotified).
    pub fn note(
        &self,
        id: &str,
        actor: &Actor,
        action: &str,
        detail: serde_json::Value,
    ) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            audit(conn, id, actor, action, detail)?;
            Ok(())
        })
    }

    /// Keeps a teaching, to give back to the engine at start (once: the same
    /// teaching again, from the feedback topic, is ignored).
    pub fn add_teaching(
        &self,
        entity: crate::config::Entity,
        subject: &str,
        principal: Option<&str>,
        t: &Teaching,
    ) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            conn.execute(
                "INSERT OR IGNORE INTO teachings (entity, subject, principal, body) VALUES (?1, ?2, ?3, ?4)",
                params![
                    entity.as_str(),
                    subject,
                    principal,
                    serde_json::to_string(t)?
                ],
            )?;
            Ok(())
        })
    }

    /// Every teaching kept: (entity, subject, principal, teaching), oldest first.
    #[allow(clippy::type_complexity)]
    pub fn teachings(
        &self,
    ) -> Result<Vec<(crate::config::Entity, String, Option<String>, Teaching)>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare("SELECT entity, subject, principal, body FROM teachings ORDER BY seq")?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut out = Vec::with_capacity(rows.len());
            for (entity, subject, principal, body) in rows {
                let entity = match entity.as_str() {
                    "principal" => crate::config::Entity::Principal,
                    _ => crate::config::Entity::KeyId,
                };
                out.push((entity, subject, principal, serde_json::from_str(&body)?));
            }
            Ok(out)
        })
    }

    /// Keeps a suppression a verdict created, to add again at start (once).
    pub fn add_suppression(&self, finding_id: &str, rule: &Suppression) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            conn.execute(
                "INSERT OR IGNORE INTO suppressions (finding_id, rule) VALUES (?1, ?2)",
                params![finding_id, serde_json::to_string(rule)?],
            )?;
            Ok(())
        })
    }

    /// Suppressions verdicts created, oldest first (expired ones included:
    /// the alert pipeline refuses those).
    pub fn suppressions(&self) -> Result<Vec<Suppression>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare("SELECT rule FROM suppressions ORDER BY seq")?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            rows.iter()
                .map(|r| serde_json::from_str(r).map_err(StoreError::from))
                .collect()
        })
    }

    /// Keys with a finding confirmed as a compromise and not resolved since.
    pub fn compromised_keys(&self) -> Result<Vec<String>, StoreError> {
        self.with_conn(|conn| Ok(compromised(conn)?))
    }
}

/// [`FindingsStore::compromised_keys`] of the store file at `path`, read
/// without starting a writer or changing anything (`keywatch review`; a
/// daemon may be writing it meanwhile). A missing file, or one that is
/// not a findings store, is an error naming it.
pub fn compromised_keys_in(path: &Path) -> Result<Vec<String>, String> {
    use rusqlite::OpenFlags;
    let shown = path.display();
    if !path.is_file() {
        return Err(format!(
            "no findings store at {shown} (store.path): the file does not exist"
        ));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("opening the findings store {shown}: {e}"))?;
    let _ = conn.busy_timeout(Duration::from_secs(5));
    compromised(&conn).map_err(|e| match e {
        rusqlite::Error::SqliteFailure(_, Some(m)) if m.contains("no such table") => {
            format!("{shown} is not a keywatch findings store ({m})")
        }
        e => format!("reading the findings store {shown}: {e}"),
    })
}

fn compromised(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT key_id FROM findings WHERE status = 'confirmed' ORDER BY key_id",
    )?;
    let keys = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(keys)
}

fn audit(
    conn: &Connection,
    id: &str,
    actor: &Actor,
    action: &str,
    detail: serde_json::Value,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit (finding_id, at_ms, who, remote, user_agent, action, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        id,
        now_ms(),
        actor.who,
        actor.remote,
        actor.user_agent,
        action,
        detail.to_string()
    ])?;
    Ok(())
}

/// Inserts a finding or counts a repeat of it, keeping its latest body (a
/// run's record shows the latest finding folded into it); `true` when it
/// was new.
fn upsert(
    conn: &Connection,
    f: &Finding,
    team: Option<&str>,
    now: i64,
) -> Result<bool, StoreError> {
    let body = serde_json::to_string(f)?;
    let repeats: i64 = conn
        .prepare_cached(
            "INSERT INTO findings (id, observed_ms, stored_ms, last_seen_ms, key_id, principal, \
             team, detector, severity, body) VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
             ON CONFLICT(id) DO UPDATE SET repeats = repeats + 1, last_seen_ms = excluded.last_seen_ms, \
             body = excluded.body, severity = excluded.severity \
             RETURNING repeats",
        )?
        .query_row(
            params![
                f.id,
                f.observed_at_ms(),
                now,
                f.key_id,
                f.principal,
                team,
                f.detector.as_str(),
                f.severity as i64,
                body
            ],
            |r| r.get(0),
        )?;
    Ok(repeats == 1)
}

/// Inserts another instance's finding unless its id is stored already;
/// `true` when it was new. Its row says when the instance that raised it
/// stored it (`stored_ms`) and when this one saw it (`now`).
fn insert_new(
    conn: &Connection,
    f: &Finding,
    team: Option<&str>,
    stored_ms: i64,
    now: i64,
) -> Result<bool, StoreError> {
    let body = serde_json::to_string(f)?;
    let changed = conn
        .prepare_cached(
            "INSERT INTO findings (id, observed_ms, stored_ms, last_seen_ms, key_id, principal, \
             team, detector, severity, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
             ON CONFLICT(id) DO NOTHING",
        )?
        .execute(params![
            f.id,
            f.observed_at_ms(),
            stored_ms,
            now,
            f.key_id,
            f.principal,
            team,
            f.detector.as_str(),
            f.severity as i64,
            body
        ])?;
    Ok(changed == 1)
}

struct Writer {
    conn: Connection,
    rx: Receiver<Msg>,
    metrics: Arc<Metrics>,
    owners: Option<Arc<dyn OwnerLookup>>,
    max_age_ms: i64,
    max_rows: i64,
    rows: i64,
    ingest_pending: Arc<AtomicUsize>,
    health: Arc<Health>,
    stopping: Arc<AtomicBool>,
    /// Where findings still unwritten at a stop are kept for the next start.
    spill_path: PathBuf,
    /// Findings read from the spill file at start, written first.
    spilled: Vec<Finding>,
    /// When the last WARN about failing writes was logged.
    last_warn: Instant,
}

/// Findings written per transaction, at most.
const BATCH: usize = 512;
/// How often retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(30);
/// The first retry of a failed batch comes this soon; each further one
/// twice as late, up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between two tries of a failed batch.
const RETRY_MAX: Duration = Duration::from_secs(5);
/// While writes fail, a WARN line this often (and one at the first failure).
const WARN_EVERY: Duration = Duration::from_secs(60);

/// `<store>.unwritten.jsonl`: findings the writer held when it stopped
/// while the store could not write.
fn spill_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".unwritten.jsonl");
    PathBuf::from(name)
}

/// The findings a previous run spilled; a line that does not read is
/// logged and skipped (the file is rewritten or removed once they are in).
fn read_spill(path: &Path) -> Vec<Finding> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "could not read the findings a previous run could not store");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        match serde_json::from_str(line) {
            Ok(f) => out.push(f),
            Err(e) => {
                tracing::error!(path = %path.display(), line = n + 1, error = %e, "skipping an unreadable spilled finding")
            }
        }
    }
    tracing::info!(path = %path.display(), findings = out.len(), "storing the findings a previous run could not");
    out
}

impl Writer {
    fn run(mut self) {
        let mut last_prune = Instant::now();
        self.prune();
        if !self.spilled.is_empty() {
            let batch: Vec<Msg> = std::mem::take(&mut self.spilled)
                .into_iter()
                .map(|f| Msg::Finding(Box::new(f)))
                .collect();
            if !self.write_retrying(&batch) {
                return self.give_up(batch);
            }
            if let Err(e) = std::fs::remove_file(&self.spill_path) {
                tracing::warn!(path = %self.spill_path.display(), error = %e, "could not remove the spilled findings, now stored (they would be stored again, as repeats)");
            }
        }
        loop {
            let first = match self.rx.recv_timeout(PRUNE_EVERY) {
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    self.prune();
                    return;
                }
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
            };
            if let Some(first) = first {
                let mut batch = vec![first];
                let mut stop = false;
                while batch.len() < BATCH {
                    match self.rx.try_recv() {
                        Ok(Msg::Stop) => {
                            stop = true;
                            break;
                        }
                        Ok(m) => batch.push(m),
                        Err(_) => break,
                    }
                }
                if !self.write_retrying(&batch) {
                    return self.give_up(batch);
                }
                if stop {
                    self.prune();
                    return;
                }
            }
            if last_prune.elapsed() >= PRUNE_EVERY || self.rows > self.max_rows {
                self.prune();
                last_prune = Instant::now();
            }
        }
    }

    /// Writes `batch`, trying again with backoff until it is in; `false`
    /// when told to stop while it still fails. The queue waits behind it
    /// (and past its bound, [`FindingsStore::record`] drops and counts).
    fn write_retrying(&mut self, batch: &[Msg]) -> bool {
        let own = own_findings(batch);
        let mut delay = RETRY_FIRST;
        let mut counted = false;
        loop {
            match self.write(batch) {
                Ok(n) => {
                    self.written(batch, own, n);
                    return true;
                }
                Err(e) => {
                    if !counted {
                        counted = true;
                        self.metrics
                            .store_writes
                            .with_label_values(&["failed"])
                            .inc_by(own as u64);
                    }
                    self.failing(&e);
                    let until = Instant::now() + delay;
                    while Instant::now() < until {
                        if self.stopping.load(Ordering::Acquire) {
                            return false;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
    }

    fn failing(&mut self, e: &StoreError) {
        let now = now_ms();
        let since = self.health.failing_since_ms.load(Ordering::Acquire);
        if let Ok(mut last) = self.health.last_error.lock() {
            *last = e.to_string();
        }
        let unwritten = self.metrics.store_unwritten.get();
        if since == 0 {
            self.health.failing_since_ms.store(now, Ordering::Release);
            self.last_warn = Instant::now();
            tracing::warn!(error = %e, unwritten, "could not store findings: holding them and retrying; /readyz reports not ready until a write succeeds");
        } else if self.last_warn.elapsed() >= WARN_EVERY {
            self.last_warn = Instant::now();
            tracing::warn!(error = %e, unwritten, failing_for_s = (now - since) / 1000, "still cannot store findings");
        }
    }

    fn written(
        &mut self,
        batch: &[Msg],
        own: usize,
        [inserted, repeated, ingested, known]: [u64; 4],
    ) {
        let ingests = batch.len() - own;
        self.ingest_pending.fetch_sub(ingests, Ordering::AcqRel);
        self.metrics.store_unwritten.sub(own as i64);
        self.rows += (inserted + ingested) as i64;
        self.metrics.store_findings.set(self.rows);
        let w = &self.metrics.store_writes;
        w.with_label_values(&["inserted"]).inc_by(inserted);
        w.with_label_values(&["repeated"]).inc_by(repeated);
        let i = &self.metrics.store_ingested;
        i.with_label_values(&["inserted"]).inc_by(ingested);
        i.with_label_values(&["known"]).inc_by(known);
        let since = self.health.failing_since_ms.swap(0, Ordering::AcqRel);
        if since != 0 {
            tracing::info!(
                failed_for_s = (now_ms() - since) / 1000,
                "the findings store writes again"
            );
        }
    }

    /// Stopped while the store still cannot write: one last try of all
    /// that is held and queued, then the findings go to the spill file
    /// (ingested messages are read again from their topic: their position
    /// was not stored); only what cannot even be spilled is dropped, and
    /// counted.
    fn give_up(mut self, mut held: Vec<Msg>) {
        while let Ok(m) = self.rx.recv_timeout(Duration::from_millis(200)) {
            match m {
                Msg::Stop => break,
                m => held.push(m),
            }
        }
        let own = own_findings(&held);
        if let Ok(n) = self.write(&held) {
            self.written(&held, own, n);
            let _ = std::fs::remove_file(&self.spill_path);
            return;
        }
        self.ingest_pending
            .fetch_sub(held.len() - own, Ordering::AcqRel);
        let findings: Vec<&Finding> = held
            .iter()
            .filter_map(|m| match m {
                Msg::Finding(f) => Some(&**f),
                _ => None,
            })
            .collect();
        match write_spill(&self.spill_path, &findings) {
            Ok(()) => {
                tracing::warn!(path = %self.spill_path.display(), findings = own, "the findings store still cannot write: the unwritten findings are kept in a file and stored at the next start")
            }
            Err(e) => {
                tracing::error!(path = %self.spill_path.display(), error = %e, findings = own, "the findings store cannot write and the unwritten findings could not be kept: they are lost from the store (the alert sinks had them)");
                self.metrics.store_dropped.inc_by(own as u64);
            }
        }
        self.metrics.store_unwritten.sub(own as i64);
    }

    fn write(&mut self, batch: &[Msg]) -> Result<[u64; 4], StoreError> {
        let now = now_ms();
        #[cfg(test)]
        {
            let limit = self.health.page_limit.load(Ordering::Acquire);
            let limit = if limit > 0 { limit } else { 1_073_741_823 };
            self.conn
                .execute_batch(&format!("PRAGMA max_page_count = {limit}"))?;
        }
        let tx = self.conn.transaction()?;
        // inserted, repeated (own); inserted, known (ingested)
        let mut n = [0u64; 4];
        for m in batch {
            match m {
                Msg::Finding(f) => {
                    let team = self
                        .owners
                        .as_ref()
                        .and_then(|o| o.owner_of(&f.key_id))
                        .and_then(|o| o.team.or(Some(o.owner)));
                    if upsert(&tx, f, team.as_deref(), now)? {
                        n[0] += 1;
                    } else {
                        n[1] += 1;
                    }
                }
                Msg::Ingest(i) => {
                    if let Some(f) = &i.finding {
                        if insert_new(&tx, f, i.team.as_deref(), i.stored_ms, now)? {
                            n[2] += 1;
                        } else {
                            n[3] += 1;
                        }
                    }
                    tx.prepare_cached(
                        "INSERT INTO ingest_offsets (topic, partition, next) VALUES (?1, ?2, ?3) \
                         ON CONFLICT(topic, partition) DO UPDATE SET next = max(next, excluded.next)",
                    )?
                    .execute(params![i.topic, i.partition, i.offset + 1])?;
                }
                Msg::Stop => {}
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// Deletes findings stored longer than `max_age` ago, then the oldest
    /// past `max_rows`; their audit trails go with them.
    fn prune(&mut self) {
        let cutoff = now_ms() - self.max_age_ms;
        let result = (|| -> rusqlite::Result<(usize, usize)> {
            let tx = self.conn.transaction()?;
            tx.execute(
                "DELETE FROM audit WHERE finding_id IN (SELECT id FROM findings WHERE stored_ms < ?1)",
                [cutoff],
            )?;
            let aged = tx.execute("DELETE FROM findings WHERE stored_ms < ?1", [cutoff])?;
            let rows: i64 = tx.query_row("SELECT count(*) FROM findings", [], |r| r.get(0))?;
            let excess = (rows - self.max_rows).max(0);
            let mut over = 0;
            if excess > 0 {
                tx.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS doomed (id TEXT PRIMARY KEY)",
                    [],
                )?;
                tx.execute("DELETE FROM doomed", [])?;
                tx.execute(
                    "INSERT INTO doomed SELECT id FROM findings ORDER BY stored_ms, observed_ms LIMIT ?1",
                    [excess],
                )?;
                tx.execute(
                    "DELETE FROM audit WHERE finding_id IN (SELECT id FROM doomed)",
                    [],
                )?;
                over = tx.execute(
                    "DELETE FROM findings WHERE id IN (SELECT id FROM doomed)",
                    [],
                )?;
            }
            tx.commit()?;
            self.rows = rows - over as i64;
            // Fresh statistics (sampled: milliseconds) let the planner pick
            // the narrowest index when filters combine: a key's hundred
            // findings, not a detector's hundred thousand.
            self.conn
                .execute_batch("PRAGMA analysis_limit = 400; ANALYZE;")?;
            Ok((aged, over))
        })();
        match result {
            Ok((aged, over)) => {
                let p = &self.metrics.store_pruned;
                p.with_label_values(&["max_age"]).inc_by(aged as u64);
                p.with_label_values(&["max_rows"]).inc_by(over as u64);
                self.metrics.store_findings.set(self.rows);
            }
            Err(e) => tracing::warn!(error = %e, "could not prune the findings store"),
        }
    }
}
