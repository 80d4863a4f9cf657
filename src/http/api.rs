//! Handlers. Every error is JSON: `{"error": "..."}` with a fitting status.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::error::{error, field_error, ApiError};
use super::query::{time_param, FindingsQuery, KeyQuery};
use super::AppState;
use crate::auth::{Access, Identity, Role};
use crate::config::{ConfigError, Entity, Suppression};

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
        ("uncorroborated", &stats.uncorroborated),
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
    let findings: Vec<keywatch_core::engine::Finding> = s
        .recent
        .list(usize::MAX, |_| true)
        .iter()
        .map(|f| (**f).clone())
        .collect();
    let now = (s.engine.stats().watermark_ms.load(Ordering::Relaxed) / 1000).max(0) as u32;
    let input = keywatch_core::review::ReviewInput {
        engine: &s.engine,
        inventory: &inventory,
        findings: &findings,
        now,
        observed_since: None,
        thresholds: keywatch_core::review::Thresholds::from_config(&s.inventory_cfg),
    };
    let mut review = keywatch_core::review::review(&input);
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
    let findings: Vec<&keywatch_core::engine::Finding> = list.iter().map(|f| &**f).collect();
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

/// `POST /api/v1/suppressions` (a responder): adds a rule; answers its id.
/// The guard has checked who asks before the body is read: a client
/// without the right cannot keep a connection busy sending a body slowly.
pub async fn add_suppression(
    State(s): State<AppState>,
    req: Request,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let body = axum::body::Bytes::from_request(req, &s)
        .await
        .map_err(|e| error(e.status(), e.body_text()))?;
    let rule: Suppression = serde_json::from_slice(&body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid suppression: {e}")))?;
    // The configuration file's rules pass the same check, so the API cannot
    // add what the file would refuse (`"key": "*"`, a 60 KB glob).
    rule.validate("suppression").map_err(|e| match e {
        ConfigError::Invalid { key, value, reason } => field_error(
            StatusCode::BAD_REQUEST,
            format!("`{key}` = {value}: {reason}"),
            key.strip_prefix("suppression.").unwrap_or(&key),
            value.trim_matches('"'),
        ),
        other => error(StatusCode::BAD_REQUEST, other.to_string()),
    })?;
    let id = s
        .alerts
        .add_suppression(rule)
        .map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))))
}

/// `DELETE /api/v1/suppressions/{id}` (a responder).
pub async fn remove_suppression(
    State(s): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let removed = s.alerts.remove_suppression(id).map_err(|e| {
        let status = match e {
            crate::alert::SuppressionError::NotFound(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::CONFLICT,
        };
        error(status, e.to_string())
    })?;
    Ok(Json(json!({ "removed": removed })))
}

/// `GET /api/v1/whoami`: who the request is signed in as and what they
/// may do, for the console (anyone may ask; wrong credentials answer 401).
pub async fn whoami(
    Extension(access): Extension<Arc<Access>>,
    identity: Option<Extension<Identity>>,
) -> Json<serde_json::Value> {
    let reads = !access.reads_need_identity();
    let mut body = match identity {
        Some(Extension(id)) => json!({
            "signed_in": true,
            "user": id.user,
            "role": id.role,
            "method": id.method,
            "may": {
                "read": true,
                "respond": id.role >= Role::Responder,
                "admin": id.role >= Role::Admin,
            },
        }),
        None => json!({
            "signed_in": false,
            "may": { "read": reads, "respond": false, "admin": false },
        }),
    };
    body["reads_need_identity"] = json!(!reads);
    body["methods"] = json!(access.methods());
    Json(body)
}

/// `GET /api/v1/tokens` (an admin): the per-user tokens, never their hashes.
pub async fn tokens(
    Extension(access): Extension<Arc<Access>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(path) = access.tokens_path().map(|p| p.to_owned()) else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "per-user tokens are off (http.access.tokens_path)",
        ));
    };
    let list =
        tokio::task::spawn_blocking(move || crate::auth::tokens::TokenFileStore::new(path).list())
            .await
            .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let tokens: Vec<serde_json::Value> = list
        .iter()
        .map(|t| json!({"id": t.id, "user": t.user, "role": t.role, "created": t.created, "revoked": t.revoked}))
        .collect();
    Ok(Json(json!({ "tokens": tokens })))
}

/// Anything else.
pub async fn not_found() -> ApiError {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}
