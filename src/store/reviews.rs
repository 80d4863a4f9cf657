//! The scheduled key reviews: each review as made, its summary, and what
//! changed since the previous one, for the console's Key review page and
//! the next review's comparison.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{FindingsStore, StoreError};
use keywatch_core::review::{Changes, Digest, Review, Summary};

/// One stored review, as the console lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredReview {
    /// Its number, in the order reviews were made.
    pub seq: i64,
    /// When it was made (RFC 3339).
    pub generated_at: String,
    /// Its counts.
    pub summary: Summary,
    /// What changed since the review before it.
    pub changes: Changes,
}

#[derive(serde::Deserialize, Serialize)]
struct Head {
    summary: serde_json::Value,
    changes: Changes,
}

impl FindingsStore {
    /// Keeps a review made at `generated_ms` with what changed since the
    /// previous one; returns its number.
    pub fn add_review(
        &self,
        generated_ms: i64,
        review: &Review,
        changes: &Changes,
    ) -> Result<i64, StoreError> {
        let head = serde_json::to_string(&serde_json::json!({
            "summary": review.summary,
            "changes": changes,
        }))?;
        let digest = serde_json::to_string(&review.digest())?;
        let body = serde_json::to_string(review)?;
        self.with_conn(|conn| {
            conn.execute(
                "INSERT INTO reviews (generated_ms, summary, digest, body) VALUES (?1, ?2, ?3, ?4)",
                params![generated_ms, head, digest, body],
            )?;
            Ok(conn.last_insert_rowid())
        })
    }

    /// The newest review's time (epoch ms) and digest, if any.
    pub fn latest_review(&self) -> Result<Option<(i64, Digest)>, StoreError> {
        self.with_conn(|conn| {
            let row = conn
                .query_row(
                    "SELECT generated_ms, digest FROM reviews ORDER BY seq DESC LIMIT 1",
                    [],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
                )
                .optional()?;
            match row {
                Some((ms, digest)) => Ok(Some((ms, serde_json::from_str(&digest)?))),
                None => Ok(None),
            }
        })
    }

    /// The newest `limit` reviews, newest first.
    pub fn reviews(&self, limit: usize) -> Result<Vec<StoredReview>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, generated_ms, summary FROM reviews ORDER BY seq DESC LIMIT ?1",
            )?;
            let rows = stmt
                .query_map([limit as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(seq, ms, head)| {
                    let head: Head = serde_json::from_str(&head)?;
                    Ok(StoredReview {
                        seq,
                        generated_at: keywatch_core::decode::time::format_rfc3339(ms),
                        summary: serde_json::from_value(head.summary)?,
                        changes: head.changes,
                    })
                })
                .collect()
        })
    }

    /// One stored review, whole (its JSON as delivered).
    pub fn review(&self, seq: i64) -> Result<serde_json::Value, StoreError> {
        self.with_conn(|conn| {
            let body: String = conn
                .query_row("SELECT body FROM reviews WHERE seq = ?1", [seq], |r| {
                    r.get(0)
                })
                .optional()?
                .ok_or_else(|| StoreError::NotFound(format!("review {seq}")))?;
            Ok(serde_json::from_str(&body)?)
        })
    }
}
