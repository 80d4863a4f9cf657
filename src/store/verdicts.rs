//! What responders say of findings: statuses, assignees and notes, the
//! teachings and suppressions they derive, each change with its audit
//! entry; and the keys confirmed compromised.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection};

use super::{now_ms, Actor, FindingsStore, Status, StoreError};
use crate::config::Suppression;
use keywatch_core::engine::Teaching;

impl FindingsStore {
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
        "INSERT INTO audit (finding_id, at_ms, who, remote, user_agent, action, detail, method) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        id,
        now_ms(),
        actor.who,
        actor.remote,
        actor.user_agent,
        action,
        detail.to_string(),
        actor.method
    ])?;
    Ok(())
}
