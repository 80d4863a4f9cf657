//! The writer thread: drains the queue in batches (one transaction each),
//! retries a batch that cannot be written with backoff while the queue waits
//! behind it, prunes by age and count, and on a stop that finds it still
//! failing spills what it holds to `<path>.unwritten.jsonl`, which the next
//! start writes first.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};

use super::{now_ms, Health, Ingested, StoreError};
use keywatch_core::engine::Finding;
use keywatch_core::incident::Incident;
use keywatch_core::metrics::Metrics;
use keywatch_core::owner::OwnerLookup;

pub(super) enum Msg {
    Finding(Box<Finding>),
    Ingest(Box<Ingested>),
    /// An incident as it stands after a change; the newest revision wins.
    Incident(Box<Incident>),
    Stop,
}

/// Messages read from the findings topic in a batch.
fn ingest_count(batch: &[Msg]) -> usize {
    batch.iter().filter(|m| matches!(m, Msg::Ingest(_))).count()
}

/// Stores an incident unless a newer revision of it is stored already.
pub(super) fn upsert_incident(
    conn: &Connection,
    incident: &Incident,
    now: i64,
) -> Result<(), StoreError> {
    let body = serde_json::to_string(incident)?;
    conn.prepare_cached(
        "INSERT INTO incidents (id, first_ms, last_ms, stored_ms, identity, severity, status, \
         revision, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT(id) DO UPDATE SET first_ms = excluded.first_ms, last_ms = excluded.last_ms, \
         stored_ms = excluded.stored_ms, severity = excluded.severity, status = excluded.status, \
         revision = excluded.revision, body = excluded.body \
         WHERE excluded.revision >= incidents.revision",
    )?
    .execute(params![
        incident.id,
        incident.first_seen_ms(),
        incident.last_seen_ms(),
        now,
        incident.identity,
        incident.severity as i64,
        incident.status.as_str(),
        incident.revision,
        body
    ])?;
    Ok(())
}

/// The instance's own findings in a batch (the rest are ingested messages).
pub(super) fn own_findings(batch: &[Msg]) -> usize {
    batch
        .iter()
        .filter(|m| matches!(m, Msg::Finding(_)))
        .count()
}

/// Writes the spill file whole (a temporary file renamed over it).
pub(super) fn write_spill(path: &Path, findings: &[&Finding]) -> std::io::Result<()> {
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

/// Inserts a finding or counts a repeat of it, keeping its latest body (a
/// run's record shows the latest finding folded into it); `true` when it
/// was new.
pub(super) fn upsert(
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
pub(super) fn insert_new(
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

pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) rx: Receiver<Msg>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) owners: Option<Arc<dyn OwnerLookup>>,
    pub(super) max_age_ms: i64,
    pub(super) max_rows: i64,
    pub(super) rows: i64,
    pub(super) ingest_pending: Arc<AtomicUsize>,
    pub(super) health: Arc<Health>,
    pub(super) stopping: Arc<AtomicBool>,
    /// Where findings still unwritten at a stop are kept for the next start.
    pub(super) spill_path: PathBuf,
    /// Findings read from the spill file at start, written first.
    pub(super) spilled: Vec<Finding>,
    /// When the last WARN about failing writes was logged.
    pub(super) last_warn: Instant,
}

/// Findings written per transaction, at most.
pub(super) const BATCH: usize = 512;

/// How often retention runs.
pub(super) const PRUNE_EVERY: Duration = Duration::from_secs(30);

/// The first retry of a failed batch comes this soon; each further one
/// twice as late, up to [`RETRY_MAX`].
pub(super) const RETRY_FIRST: Duration = Duration::from_millis(100);

/// The longest wait between two tries of a failed batch.
pub(super) const RETRY_MAX: Duration = Duration::from_secs(5);

/// While writes fail, a WARN line this often (and one at the first failure).
pub(super) const WARN_EVERY: Duration = Duration::from_secs(60);

/// `<store>.unwritten.jsonl`: findings the writer held when it stopped
/// while the store could not write.
pub(super) fn spill_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".unwritten.jsonl");
    PathBuf::from(name)
}

/// The findings a previous run spilled; a line that does not read is
/// logged and skipped (the file is rewritten or removed once they are in).
pub(super) fn read_spill(path: &Path) -> Vec<Finding> {
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
    pub(super) fn run(mut self) {
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
        self.ingest_pending
            .fetch_sub(ingest_count(batch), Ordering::AcqRel);
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
            .fetch_sub(ingest_count(&held), Ordering::AcqRel);
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
                    if let Some(incident) = &i.incident {
                        upsert_incident(&tx, incident, now)?;
                    }
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
                Msg::Incident(incident) => upsert_incident(&tx, incident, now)?,
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
            tx.execute("DELETE FROM incidents WHERE stored_ms < ?1", [cutoff])?;
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
