//! Handlers. Every error is JSON: `{"error": "..."}` with a fitting status.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use crate::config::{ConfigError, Entity, Secret, Suppression};
use crate::engine::{Detector, Severity};

/// A JSON error response: `{"error": ...}`, with the refused field and value
/// when one field is to blame.
pub struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<(String, String)>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.field {
            None => json!({ "error": self.message }),
            Some((field, value)) => {
                json!({ "error": self.message, "field": field, "value": value })
            }
        };
        (self.status, Json(body)).into_response()
    }
}

pub(super) fn error(status: StatusCode, msg: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: msg.into(),
        field: None,
    }
}

/// Turns an error response that is not JSON yet (an extractor's rejection of
/// the path, query or body, 405, 413) into one, keeping its status and text.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    // Rejection texts are one line; anything longer is cut, not buffered.
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        let reason = status.canonical_reason().unwrap_or("error").to_lowercase();
        match parts
            .headers
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
        {
            Some(allow) => format!("{method} {path}: {reason} (allowed: {allow})"),
            None => format!("{method} {path}: {reason}"),
        }
    } else {
        text
    };
    let mut json = error(status, message).into_response();
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        json.headers_mut().insert(header::ALLOW, allow.clone());
    }
    json
}

/// Answers 503 when a request takes longer than `timeout`.
pub async fn with_timeout(req: Request, next: Next, timeout: Duration) -> Response {
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "request timed out").into_response(),
    }
}

/// `GET /metrics`: Prometheus text. Only cheap gauges are refreshed here;
/// the ones that scan every key are kept current in the background.
pub async fn metrics(State(s): State<AppState>) -> Response {
    for entity in [Entity::KeyId, Entity::Principal] {
        if s.engine.settings().entities.contains(&entity) {
            s.metrics
                .keys_tracked
                .with_label_values(&[entity.as_str()])
                .set(s.engine.key_count(entity) as i64);
        }
    }
    if s.checkpoint_max_age.is_some() {
        s.metrics.checkpoint_age.set(checkpoint_age(&s));
    }
    let stats = s.engine.stats();
    let watermark = stats.watermark_ms.load(Ordering::Relaxed);
    if watermark > 0 {
        let lag = chrono::Utc::now().timestamp_millis() - watermark;
        s.metrics.event_time_lag.set(lag as f64 / 1000.0);
    }
    for (bound, n) in [
        ("max_keys", stats.keys_rejected.load(Ordering::Relaxed)),
        (
            "max_sources_per_key",
            stats.sources_evicted.load(Ordering::Relaxed),
        ),
        (
            "max_values_per_key",
            stats.actions_evicted.load(Ordering::Relaxed),
        ),
        (
            "max_user_agents_per_key",
            stats.user_agents_evicted.load(Ordering::Relaxed),
        ),
    ] {
        let c = s.metrics.bound_hits.with_label_values(&[bound]);
        c.inc_by(n.saturating_sub(c.get()));
    }
    // The engine's own quiet rules, beside the alert pipeline's mutes.
    for (rule, n) in [
        ("allowlist", &stats.suppressed_allowlist),
        ("cooldown", &stats.suppressed_cooldown),
        ("duplicate", &stats.suppressed_duplicate),
        ("folded", &stats.folded),
        ("taught", &stats.suppressed_taught),
    ] {
        let c = s.metrics.suppressed.with_label_values(&[rule]);
        c.inc_by(n.load(Ordering::Relaxed).saturating_sub(c.get()));
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Seconds since the last checkpoint, or since start when none was written.
fn checkpoint_age(s: &AppState) -> f64 {
    match s.last_checkpoint_ms.load(Ordering::Relaxed) {
        0 => s.started.elapsed().as_secs_f64(),
        ms => (chrono::Utc::now().timestamp_millis() - ms).max(0) as f64 / 1000.0,
    }
}

/// `GET /readyz`: consuming, a broker reachable within
/// `kafka.unreachable_after`, a partition assigned since start, no
/// partition still catching up after a handoff, the findings store (when
/// on) writing, and, with checkpoints on, checkpointing. Each failure says
/// why, as JSON.
pub async fn readyz(State(s): State<AppState>) -> Response {
    if !s.status.consuming.load(Ordering::Relaxed) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "not consuming yet").into_response();
    }
    let down_since = s.status.brokers_down_since_ms.load(Ordering::Relaxed);
    if down_since > 0 {
        let after = match s.status.unreachable_after_ms.load(Ordering::Relaxed) {
            0 => 30_000,
            ms => ms as i64,
        };
        let down = chrono::Utc::now().timestamp_millis() - down_since;
        if down >= after {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "no Kafka broker reachable for {}s (kafka.unreachable_after {}s)",
                    down / 1000,
                    after / 1000
                ),
            )
            .into_response();
        }
    }
    if !s.status.assigned_once.load(Ordering::Relaxed) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no partition assigned yet ({}s since start): the group has not given this instance a share",
                s.started.elapsed().as_secs()
            ),
        )
        .into_response();
    }
    let catching_up = s.status.catching_up.load(Ordering::Relaxed);
    if catching_up > 0 {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{catching_up} partition(s) still replaying from their restored state"),
        )
        .into_response();
    }
    if let Some(behind) = s.store.as_ref().and_then(|st| st.behind()) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the findings store cannot write for {}s ({} findings held for a retry): {}",
                behind.seconds, behind.unwritten, behind.error
            ),
        )
        .into_response();
    }
    if let Some(max_age) = s.checkpoint_max_age {
        let age = checkpoint_age(&s);
        if age > max_age.as_secs_f64() {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "last checkpoint {age:.0}s ago, over checkpoint.max_age ({}s)",
                    max_age.as_secs()
                ),
            )
            .into_response();
        }
    }
    Json(json!({ "status": "ready", "messages": s.status.messages.load(Ordering::Relaxed) }))
        .into_response()
}

/// `GET /api/v1/review[?format=markdown]`: the key security review from the
/// live state and the recent findings.
pub async fn review(
    State(s): State<AppState>,
    Query(q): Query<ReviewQuery>,
) -> Result<Response, ApiError> {
    let Some(inv) = &s.inventory else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "no inventory configured (inventory.path): the review needs one",
        ));
    };
    let inventory = inv.current();
    let findings: Vec<crate::engine::Finding> = s
        .recent
        .list(usize::MAX, |_| true)
        .iter()
        .map(|f| (**f).clone())
        .collect();
    let now = (s.engine.stats().watermark_ms.load(Ordering::Relaxed) / 1000).max(0) as u32;
    let input = crate::review::ReviewInput {
        engine: &s.engine,
        inventory: &inventory,
        findings: &findings,
        now,
        observed_since: None,
        thresholds: crate::review::Thresholds::from_config(&s.inventory_cfg),
    };
    let mut review = crate::review::review(&input);
    // Keys a responder confirmed compromised (a `confirmed` verdict not
    // resolved since), from the findings store.
    if let Some(store) = &s.store {
        let store = store.clone();
        let keys = tokio::task::spawn_blocking(move || store.compromised_keys())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        review = review.with_compromised(keys);
    }
    Ok(match q.format.as_deref() {
        Some("markdown") | Some("md") => (
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            review.to_markdown(),
        )
            .into_response(),
        _ => Json(review).into_response(),
    })
}

/// `?format=markdown|json`.
#[derive(Deserialize)]
pub struct ReviewQuery {
    format: Option<String>,
}

/// `?entity=principal` selects the principal baseline.
#[derive(Deserialize)]
pub struct KeyQuery {
    pub(super) entity: Option<Entity>,
}

/// `GET /api/v1/keys/{key_id}`: the key's baselines and each detector's stance.
pub async fn key(
    State(s): State<AppState>,
    Path(key_id): Path<String>,
    Query(q): Query<KeyQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let entity = q.entity.unwrap_or(Entity::KeyId);
    s.engine.explain(entity, &key_id).map(Json).ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            format!("no {} {key_id:?} is tracked", entity.as_str()),
        )
    })
}

/// Filters for `/api/v1/findings`.
#[derive(Deserialize)]
pub struct FindingsQuery {
    since: Option<String>,
    until: Option<String>,
    pub(super) detector: Option<Detector>,
    pub(super) severity: Option<Severity>,
    pub(super) key_id: Option<String>,
    pub(super) principal: Option<String>,
    pub(super) team: Option<String>,
    pub(super) status: Option<crate::store::Status>,
    pub(super) limit: Option<usize>,
    pub(super) cursor: Option<String>,
}

fn time_param(name: &str, t: &Option<String>) -> Result<Option<i64>, ApiError> {
    t.as_ref()
        .map(|t| {
            crate::decode::time::parse_str(t).ok_or_else(|| {
                error(
                    StatusCode::BAD_REQUEST,
                    format!("{name}={t:?} is not a time (RFC 3339 or epoch)"),
                )
            })
        })
        .transpose()
}

/// `GET /api/v1/findings?since=&until=&detector=&severity=&key_id=&principal=&team=&status=&limit=&cursor=`:
/// findings, oldest first; `severity` is a minimum. From the findings store
/// when it is on (with `next_cursor` for the older page), else the recent
/// ones in memory (no `team`, `status` or `cursor` there).
pub async fn findings(
    State(s): State<AppState>,
    Query(q): Query<FindingsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let since = time_param("since", &q.since)?;
    let until = time_param("until", &q.until)?;
    if let Some(store) = &s.store {
        return super::triage::findings(store, &q, since, until).await;
    }
    if q.team.is_some() || q.status.is_some() || q.cursor.is_some() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "team, status and cursor need the findings store (store.path)",
        ));
    }
    let (since, until) = (since.unwrap_or(i64::MIN), until.unwrap_or(i64::MAX));
    let list = s.recent.list(q.limit.unwrap_or(100).min(10_000), |f| {
        let at = f.observed_at_ms();
        at >= since
            && at < until
            && q.detector.is_none_or(|d| f.detector == d)
            && q.severity.is_none_or(|min| f.severity >= min)
            && q.key_id.as_ref().is_none_or(|k| &f.key_id == k)
            && q.principal
                .as_ref()
                .is_none_or(|p| f.principal.as_ref() == Some(p))
    });
    let findings: Vec<&crate::engine::Finding> = list.iter().map(|f| &**f).collect();
    Ok(Json(json!({ "findings": findings })))
}

/// `GET /api/v1/findings/{id}`: from the store (with its audit trail) when
/// it is on, else from the recent ones in memory.
pub async fn finding(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if let Some(store) = &s.store {
        return super::triage::finding(store, id).await;
    }
    let f = s
        .recent
        .get(&id)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("no recent finding {id:?}")))?;
    Ok(Json(serde_json::to_value(&*f).unwrap_or_default()))
}

/// `GET /api/v1/suppressions`.
pub async fn suppressions(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "suppressions": s.alerts.suppressions() }))
}

pub(super) fn authorize(api_token: Option<&Secret>, headers: &HeaderMap) -> Result<(), ApiError> {
    // An empty token never authorises (configuration refuses one too).
    let Some(token) = api_token.filter(|t| !t.expose().trim().is_empty()) else {
        return Err(error(
            StatusCode::FORBIDDEN,
            "writes are disabled: set http.api_token to allow them",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !given.is_empty() && constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        ))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `POST /api/v1/suppressions` (bearer token): adds a rule; answers its id.
pub async fn add_suppression(
    State(s): State<AppState>,
    req: Request,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    // The token before the body: a client without one cannot keep a
    // connection busy by sending a body slowly.
    authorize(s.api_token.as_ref(), req.headers())?;
    let body = axum::body::Bytes::from_request(req, &s)
        .await
        .map_err(|e| error(e.status(), e.body_text()))?;
    let rule: Suppression = serde_json::from_slice(&body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid suppression: {e}")))?;
    // The configuration file's rules pass the same check, so the API cannot
    // add what the file would refuse (`"key": "*"`, a 60 KB glob).
    rule.validate("suppression").map_err(|e| match e {
        ConfigError::Invalid { key, value, reason } => ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!("`{key}` = {value}: {reason}"),
            field: Some((
                key.strip_prefix("suppression.").unwrap_or(&key).to_owned(),
                value.trim_matches('"').to_owned(),
            )),
        },
        other => error(StatusCode::BAD_REQUEST, other.to_string()),
    })?;
    let id = s
        .alerts
        .add_suppression(rule)
        .map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))))
}

/// `DELETE /api/v1/suppressions/{id}` (bearer token).
pub async fn remove_suppression(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(s.api_token.as_ref(), &headers)?;
    let removed = s.alerts.remove_suppression(id).map_err(|e| {
        let status = match e {
            crate::alert::SuppressionError::NotFound(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::CONFLICT,
        };
        error(status, e.to_string())
    })?;
    Ok(Json(json!({ "removed": removed })))
}

/// Anything else.
pub async fn not_found() -> ApiError {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn no_header_never_matches_a_token() {
        let none = HeaderMap::new();
        let empty = Secret::resolve("").unwrap();
        let blank = Secret::resolve("   ").unwrap();
        let token = Secret::resolve("t0ken-of-sixteen+").unwrap();
        for (t, h) in [
            (Some(&empty), &none),
            (Some(&empty), &bearer("Bearer ")),
            (Some(&blank), &bearer("Bearer    ")),
            (None, &none),
            (Some(&token), &none),
            (Some(&token), &bearer("Bearer ")),
            (Some(&token), &bearer("t0ken-of-sixteen+")),
            (Some(&token), &bearer("Bearer t0ken-of-sixteen")),
        ] {
            assert!(authorize(t, h).is_err(), "{t:?} {h:?}");
        }
        assert!(authorize(Some(&token), &bearer("Bearer t0ken-of-sixteen+")).is_ok());
    }
}
