//! `/api/v1/incidents`: the incidents, from the findings store when it is
//! on (every instance's, with `store.findings_topic`), else the recent ones
//! in memory.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::error::{error, ApiError};
use super::query::time_param;
use super::triage::blocking;
use super::AppState;
use keywatch_core::engine::Severity;
use keywatch_core::incident::{Filter, Status, Tactic};

/// Filters for `/api/v1/incidents`.
#[derive(Deserialize)]
pub struct IncidentsQuery {
    status: Option<Status>,
    severity: Option<Severity>,
    identity: Option<String>,
    key_id: Option<String>,
    tactic: Option<Tactic>,
    attack_sequence: Option<bool>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
}

fn off() -> ApiError {
    error(
        StatusCode::NOT_FOUND,
        "incidents are off (incidents.enabled = false)",
    )
}

/// `GET /api/v1/incidents`: the latest last finding first; `status`
/// (open, resolved), lowest `severity`, `identity`, `key_id`, `tactic`,
/// `attack_sequence`, `since` (last finding at or after), `until` (first
/// finding before), `limit` (100).
pub async fn list(
    State(s): State<AppState>,
    Query(q): Query<IncidentsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let incidents = s.alerts.incidents().ok_or_else(off)?;
    let filter = Filter {
        status: q.status,
        severity: q.severity,
        identity: q.identity,
        key_id: q.key_id,
        tactic: q.tactic,
        attack_sequence: q.attack_sequence,
        since_ms: time_param("since", &q.since)?,
        until_ms: time_param("until", &q.until)?,
    };
    let limit = q.limit.unwrap_or(100).min(10_000);
    let list = match &s.store {
        Some(store) => blocking(store, move |st| st.incidents(&filter, limit)).await?,
        None => incidents.list(&filter, limit),
    };
    Ok(Json(json!({ "incidents": list })))
}

/// `GET /api/v1/incidents/{id}`: the incident and its findings, in its
/// timeline's order (from the store with their status, else those still
/// in memory).
pub async fn one(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let incidents = s.alerts.incidents().ok_or_else(off)?;
    if let Some(store) = &s.store {
        let (incident, findings) = blocking(store, move |st| st.incident(&id)).await?;
        return Ok(Json(json!({ "incident": incident, "findings": findings })));
    }
    let incident = incidents
        .get(&id)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("no recent incident {id:?}")))?;
    let findings: Vec<_> = incident
        .timeline
        .iter()
        .filter_map(|step| s.recent.get(&step.finding_id))
        .map(|f| (*f).clone())
        .collect();
    Ok(Json(json!({ "incident": incident, "findings": findings })))
}
