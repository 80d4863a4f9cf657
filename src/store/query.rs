//! The filters of `/api/v1/findings` as SQL: every filter is an indexed
//! column, and pages are keyed by (time, id) so page 1000 costs what page 1
//! does.

use rusqlite::types::Value;
use rusqlite::{Connection, Row};
use serde::{Deserialize, Serialize};

use super::{Status, StoreError, StoredFinding};
use keywatch_core::engine::{Detector, Finding, Severity};

/// Filters; each one given narrows the result.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FindingsQuery {
    /// Key id.
    pub key_id: Option<String>,
    /// Principal.
    pub principal: Option<String>,
    /// Owning team.
    pub team: Option<String>,
    /// Detector.
    pub detector: Option<Detector>,
    /// Lowest severity.
    pub severity: Option<Severity>,
    /// Status.
    pub status: Option<Status>,
    /// Observed at or after (epoch ms).
    pub since_ms: Option<i64>,
    /// Observed before (epoch ms).
    pub until_ms: Option<i64>,
    /// Most findings in the page.
    pub limit: usize,
    /// Continue after this cursor (from the previous page's `next_cursor`).
    pub cursor: Option<String>,
}

/// One page of findings, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    /// The findings.
    pub findings: Vec<StoredFinding>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Columns [`row`] reads, in order.
pub const COLUMNS: &str = "body, status, assignee, repeats, last_seen_ms, team, observed_ms, id";

/// Reads a row selected with [`COLUMNS`].
pub fn row(r: &Row<'_>) -> rusqlite::Result<Result<StoredFinding, StoreError>> {
    let body: String = r.get(0)?;
    let finding: Finding = match serde_json::from_str(&body) {
        Ok(f) => f,
        Err(e) => return Ok(Err(e.into())),
    };
    Ok(Ok(StoredFinding {
        finding,
        status: Status::parse(&r.get::<_, String>(1)?),
        assignee: r.get(2)?,
        repeats: r.get::<_, i64>(3)? as u32,
        last_seen: keywatch_core::decode::time::format_rfc3339(r.get(4)?),
        team: r.get(5)?,
    }))
}

fn parse_cursor(c: &str) -> Option<(i64, String)> {
    let (t, id) = c.split_once('.')?;
    Some((t.parse().ok()?, id.to_owned()))
}

/// Runs `q`.
///
/// A minimum severity is asked level by level (`severity = 4`, `= 3`, ...),
/// each the newest page from the (severity, time) index, merged newest
/// first: one range on severity would make SQLite sort every matching
/// finding before it could return the first page (seconds at a million).
pub fn run(conn: &Connection, q: &FindingsQuery) -> Result<Page, StoreError> {
    let limit = q.limit.clamp(1, 10_000);
    let mut args: Vec<Value> = Vec::new();
    let filters = filters(q, &mut args);
    let order = format!(" ORDER BY observed_ms DESC, id DESC LIMIT {}", limit + 1);
    let sql = match q.severity.filter(|s| *s > Severity::Info) {
        None => format!("SELECT {COLUMNS} FROM findings WHERE 1=1{filters}{order}"),
        Some(min) => {
            let levels: Vec<String> = (min as i64..=Severity::Critical as i64)
                .map(|level| {
                    format!(
                        "SELECT * FROM (SELECT {COLUMNS} FROM findings WHERE severity = {level}{filters}{order})"
                    )
                })
                .collect();
            format!("{}{order}", levels.join(" UNION ALL "))
        }
    };
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
    let mut findings = Vec::new();
    let mut last = None;
    let mut more = false;
    while let Some(r) = rows.next()? {
        if findings.len() == limit {
            more = true;
            break;
        }
        last = Some((r.get::<_, i64>(6)?, r.get::<_, String>(7)?));
        findings.push(row(r)??);
    }
    Ok(Page {
        findings,
        next_cursor: more
            .then(|| last.map(|(t, id)| format!("{t}.{id}")))
            .flatten(),
    })
}

/// The `AND ...` clauses of every filter but severity, numbering their
/// parameters into `args`.
fn filters(q: &FindingsQuery, args: &mut Vec<Value>) -> String {
    let mut sql = String::new();
    let mut arg = |sql: &mut String, clause: &str, v: Value| {
        args.push(v);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(k) = &q.key_id {
        arg(&mut sql, " AND key_id = ?", Value::Text(k.clone()));
    }
    if let Some(p) = &q.principal {
        arg(&mut sql, " AND principal = ?", Value::Text(p.clone()));
    }
    if let Some(t) = &q.team {
        arg(&mut sql, " AND team = ?", Value::Text(t.clone()));
    }
    if let Some(d) = q.detector {
        arg(
            &mut sql,
            " AND detector = ?",
            Value::Text(d.as_str().into()),
        );
    }
    if let Some(s) = q.status {
        arg(&mut sql, " AND status = ?", Value::Text(s.as_str().into()));
    }
    if let Some(t) = q.since_ms {
        arg(&mut sql, " AND observed_ms >= ?", Value::Integer(t));
    }
    if let Some(t) = q.until_ms {
        arg(&mut sql, " AND observed_ms < ?", Value::Integer(t));
    }
    if let Some((t, id)) = q.cursor.as_deref().and_then(parse_cursor) {
        args.push(Value::Integer(t));
        args.push(Value::Text(id));
        let (a, b) = (args.len() - 1, args.len());
        sql.push_str(&format!(
            " AND (observed_ms < ?{a} OR (observed_ms = ?{a} AND id < ?{b}))"
        ));
    }
    sql
}
