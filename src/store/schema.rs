//! The store's schema, and opening its file: WAL, foreign keys, the checks
//! that tell a damaged file from a good one.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use super::{salvage, StoreError};

pub(super) const SCHEMA: &str = r#"
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
    detail TEXT NOT NULL,
    method TEXT NOT NULL DEFAULT ''
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
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    first_ms INTEGER NOT NULL,
    last_ms INTEGER NOT NULL,
    stored_ms INTEGER NOT NULL,
    identity TEXT NOT NULL,
    severity INTEGER NOT NULL,
    status TEXT NOT NULL,
    revision INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_last ON incidents(last_ms);
CREATE INDEX IF NOT EXISTS incidents_identity ON incidents(identity, last_ms);
CREATE TABLE IF NOT EXISTS reviews (
    seq INTEGER PRIMARY KEY,
    generated_ms INTEGER NOT NULL,
    summary TEXT NOT NULL,
    digest TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ingest_offsets (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
"#;

pub(super) fn open_conn(path: &Path) -> rusqlite::Result<Connection> {
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
pub(super) enum OpenError {
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

/// Columns added since a table was first created: a file written by an
/// older keywatch gains them (with their defaults) when opened.
const ADDED_COLUMNS: [(&str, &str, &str); 1] = [
    // How the audit trail's `who` was proved (access control).
    ("audit", "method", "TEXT NOT NULL DEFAULT ''"),
];

fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    for (table, column, decl) in ADDED_COLUMNS {
        let has: bool = conn.query_row(
            &format!("SELECT count(*) > 0 FROM pragma_table_info('{table}') WHERE name = ?1"),
            [column],
            |r| r.get(0),
        )?;
        if !has {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
        }
    }
    Ok(())
}

/// Opens `path` with the schema and checks it (`PRAGMA quick_check`: a
/// few seconds for a million findings, once at start). `Err` only for
/// damage; other errors (a directory that is not there, no permission)
/// are returned as they are, for the operator.
pub(super) fn open_checked(path: &Path) -> Result<Connection, OpenError> {
    let conn = open_conn(path).map_err(OpenError::from)?;
    conn.execute_batch(SCHEMA).map_err(OpenError::from)?;
    migrate(&conn).map_err(OpenError::from)?;
    salvage::check(&conn).map_err(OpenError::Damaged)?;
    Ok(conn)
}
