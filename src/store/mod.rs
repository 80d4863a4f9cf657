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
//! - this file: the store's types, opening it, recording and reading;
//! - `verdicts`: statuses, notes, teachings and suppressions, each with
//!   its audit entry, and the keys confirmed compromised;
//! - `reviews`: the scheduled key reviews, each with what changed since
//!   the one before;
//! - `schema`: the tables and opening the file;
//! - `writer`: the writer thread, its retries and its spill file;
//! - [`query`]: the filters of `/api/v1/findings`;
//! - [`ingest`]: the findings of other instances, read from
//!   `store.findings_topic`;
//! - `salvage`: a damaged file moved aside and what still reads copied.

pub mod ingest;
pub mod query;
mod reviews;
mod salvage;
mod schema;
#[cfg(test)]
mod tests;
mod verdicts;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::config::StoreConfig;
use keywatch_core::engine::Finding;
use keywatch_core::incident::{Filter, Incident};
use keywatch_core::metrics::Metrics;
use keywatch_core::owner::OwnerLookup;
use schema::*;
use writer::*;

pub use query::{FindingsQuery, Page};
pub use reviews::StoredReview;
pub use verdicts::compromised_keys_in;

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
    /// The signed-in user; with the shared `http.api_token`, the name the
    /// caller gave (`"by"`).
    pub who: String,
    /// How `who` was proved (`proxy`, `token`, `basic`, `client_cert`;
    /// `api_token`: a name given with the shared token, not proved).
    /// Empty in entries written before access control.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub method: String,
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

/// A message read from `store.findings_topic`: another instance's finding
/// (or nothing, for a message skipped), and the position after it.
#[derive(Debug, Clone)]
pub struct Ingested {
    /// The finding, when the message held one to store.
    pub finding: Option<Finding>,
    /// The incident, when the message was an incident event.
    pub incident: Option<Incident>,
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

    /// Queues an incident as it stands after a change; never waits. The
    /// newest revision of each incident is kept, pruned with the findings
    /// (`store.max_age`, counted from its last change).
    pub fn record_incident(&self, incident: &Incident) {
        if self
            .inner
            .queue
            .try_send(Msg::Incident(Box::new(incident.clone())))
            .is_err()
        {
            self.inner.metrics.store_dropped.inc();
        }
    }

    /// Incidents matching `filter`, the latest last finding first, at most
    /// `limit`.
    pub fn incidents(&self, filter: &Filter, limit: usize) -> Result<Vec<Incident>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT body FROM incidents WHERE last_ms >= ?1 AND first_ms < ?2 \
                 AND severity >= ?3 AND (?4 IS NULL OR identity = ?4) ORDER BY last_ms DESC, id",
            )?;
            let rows = stmt.query_map(
                params![
                    filter.since_ms.unwrap_or(i64::MIN),
                    filter.until_ms.unwrap_or(i64::MAX),
                    filter.severity.map_or(0, |s| s as i64),
                    filter.identity,
                ],
                |r| r.get::<_, String>(0),
            )?;
            let mut out = Vec::new();
            for body in rows {
                let mut incident: Incident = serde_json::from_str(&body?)?;
                incident.restore_times();
                if filter.matches(&incident) {
                    out.push(incident);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
    }

    /// One incident with its stored findings, in its timeline's order.
    pub fn incident(&self, id: &str) -> Result<(Incident, Vec<StoredFinding>), StoreError> {
        self.with_conn(|conn| {
            let body: String = conn
                .query_row("SELECT body FROM incidents WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()?
                .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
            let mut incident: Incident = serde_json::from_str(&body)?;
            incident.restore_times();
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {} FROM findings WHERE id = ?1",
                query::COLUMNS
            ))?;
            let mut findings = Vec::new();
            for step in &incident.timeline {
                if let Some(f) = stmt.query_row([&step.finding_id], query::row).optional()? {
                    findings.push(f?);
                }
            }
            Ok((incident, findings))
        })
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
                "SELECT at_ms, who, remote, user_agent, action, detail, method FROM audit \
                 WHERE finding_id = ?1 ORDER BY seq",
            )?;
            let trail = stmt
                .query_map([id], |r| {
                    Ok(AuditEntry {
                        at: keywatch_core::decode::time::format_rfc3339(r.get(0)?),
                        actor: Actor {
                            who: r.get(1)?,
                            method: r.get(6)?,
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
}
