//! A damaged store file (a disk fault, a partial copy, another program's
//! write): detection must go on and the verdicts it holds must not be lost
//! whole. The file is moved aside as `<path>.damaged-<epoch ms>` (with its
//! WAL), a new one is created, and every row that still reads is copied
//! into it, table by table, in rowid order, stepping over the ranges a
//! damaged page makes unreadable.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rusqlite::types::Value;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::{open_conn, StoreError, SCHEMA};

/// The tables copied, in this order.
const TABLES: [&str; 5] = [
    "findings",
    "audit",
    "teachings",
    "suppressions",
    "ingest_offsets",
];
/// Rows read per query.
const CHUNK: i64 = 512;
/// Unreadable rowids (or ranges) stepped over per table before giving the
/// rest up.
const MAX_SKIPS: u32 = 4_096;
/// Rowids tried one by one past a damaged spot before the steps grow.
const LINEAR_STEPS: u32 = 256;

/// What a salvage kept.
#[derive(Debug)]
pub struct Salvaged {
    /// Where the damaged file went.
    pub moved_to: PathBuf,
    /// Rows copied, all tables together.
    pub rows: u64,
    /// Ranges of rows that could not be read.
    pub unreadable_ranges: u32,
}

/// Whether SQLite's error says the file is damaged (not, say, missing
/// permissions, which moving it aside would not cure).
pub fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

/// `PRAGMA quick_check`: `Err` with SQLite's first complaint when damaged.
pub fn check(conn: &Connection) -> Result<(), String> {
    let first: String = conn
        .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if first == "ok" {
        Ok(())
    } else {
        Err(first)
    }
}

/// Moves the damaged file at `path` aside and builds a new one from what
/// still reads.
pub fn salvage(path: &Path) -> Result<Salvaged, StoreError> {
    let stamp = chrono::Utc::now().timestamp_millis();
    let with = |suffix: &str| {
        let mut s = path.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    let moved_to = with(&format!(".damaged-{stamp}"));
    std::fs::rename(path, &moved_to).map_err(io)?;
    for side in ["-wal", "-shm"] {
        let from = with(side);
        if from.exists() {
            let mut to = moved_to.as_os_str().to_owned();
            to.push(side);
            std::fs::rename(&from, PathBuf::from(to)).map_err(io)?;
        }
    }
    let new = open_conn(path)?;
    new.execute_batch(SCHEMA)?;
    let mut out = Salvaged {
        moved_to,
        rows: 0,
        unreadable_ranges: 0,
    };
    // Nothing to copy when even the header is gone.
    let Ok(old) = Connection::open_with_flags(&out.moved_to, OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return Ok(out);
    };
    for table in TABLES {
        let (rows, skips) = copy_table(&old, &new, table)?;
        out.rows += rows;
        out.unreadable_ranges += skips;
    }
    Ok(out)
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Sql(rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// Copies the rows of `table` that read; returns (rows, ranges skipped).
fn copy_table(old: &Connection, new: &Connection, table: &str) -> Result<(u64, u32), StoreError> {
    let columns_of = |conn: &Connection| -> rusqlite::Result<Vec<String>> {
        conn.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?
            .query_map([], |r| r.get(0))?
            .collect()
    };
    let mut columns = columns_of(new)?;
    // A file from an older keywatch lacks the columns added since: they
    // take their defaults. (Unreadable, its schema is taken to be current.)
    if let Ok(old_columns) = columns_of(old).map(|c| c.into_iter().collect::<HashSet<_>>()) {
        if !old_columns.is_empty() {
            columns.retain(|c| old_columns.contains(c));
        }
    }
    let list = columns.join(", ");
    // `>=` the next candidate, not `>` the last read: seeking past a row
    // lands on that row's own page, which may be the damaged one.
    let select =
        format!("SELECT rowid, {list} FROM {table} WHERE rowid >= ?1 ORDER BY rowid LIMIT {CHUNK}");
    let marks = vec!["?"; columns.len() + 1].join(", ");
    let insert = format!("INSERT OR IGNORE INTO {table} (rowid, {list}) VALUES ({marks})");
    let (mut cursor, mut copied, mut skips, mut stuck) = (i64::MIN, 0u64, 0u32, 0u32);
    loop {
        let (rows, failed) = read_chunk(old, &select, cursor, columns.len() + 1);
        if let Some(last) = rows.last() {
            if let Value::Integer(id) = last[0] {
                // The next rowid to read.
                cursor = id.saturating_add(1);
            }
        }
        let mut stmt = new.prepare_cached(&insert)?;
        for row in &rows {
            copied += stmt.execute(rusqlite::params_from_iter(row.iter()))? as u64;
        }
        if !rows.is_empty() {
            stuck = 0;
        }
        if !failed {
            if rows.is_empty() {
                return Ok((copied, skips));
            }
            continue;
        }
        // A damaged row or page: step over it one rowid at a time (a page
        // holds a few findings), and after LINEAR_STEPS in a row without a
        // row read, over a growing range (a table's interior page).
        skips += 1;
        stuck += 1;
        if skips > MAX_SKIPS || cursor == i64::MAX {
            return Ok((copied, skips));
        }
        let step = if stuck <= LINEAR_STEPS {
            1
        } else {
            1i64 << (stuck - LINEAR_STEPS).min(62)
        };
        cursor = if cursor == i64::MIN {
            1
        } else {
            cursor.saturating_add(step)
        };
    }
}

/// The rows after `cursor` that read, and whether reading stopped on an error.
fn read_chunk(
    old: &Connection,
    select: &str,
    cursor: i64,
    width: usize,
) -> (Vec<Vec<Value>>, bool) {
    let mut out = Vec::new();
    let Ok(mut stmt) = old.prepare(select) else {
        return (out, true);
    };
    let Ok(mut rows) = stmt.query([cursor]) else {
        return (out, true);
    };
    loop {
        match rows.next() {
            Ok(Some(r)) => match (0..width).map(|i| r.get::<_, Value>(i)).collect() {
                Ok(row) => out.push(row),
                Err(_) => return (out, true),
            },
            Ok(None) => return (out, false),
            Err(_) => return (out, true),
        }
    }
}
