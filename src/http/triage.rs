//! The findings store over HTTP: filtered pages of findings, one finding
//! with its audit trail, verdicts (a responder), a key's rate for the
//! console's chart, and the console page itself.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::error::{error, ApiError};
use super::query::{FindingsQuery, KeyQuery};
use super::AppState;
use crate::auth::Identity;
use crate::config::Entity;
use crate::feedback::{self, Verdict, VerdictError};
use crate::store::{self, Actor, FindingsStore, StoreError};

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound(_) => error(StatusCode::NOT_FOUND, e.to_string()),
        other => error(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

fn no_store() -> ApiError {
    error(
        StatusCode::NOT_FOUND,
        "the findings store is off (store.path): verdicts and the audit trail need it",
    )
}

/// Runs a store call off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    store: &FindingsStore,
    f: impl FnOnce(&FindingsStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(store_error)
}

/// `/api/v1/findings` from the store: one page, oldest first as the
/// in-memory list answers, with `next_cursor` to the older page, and
/// `store_behind` while the store cannot write.
pub async fn findings(
    store: &FindingsStore,
    q: &FindingsQuery,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let query = store::FindingsQuery {
        key_id: q.key_id.clone(),
        principal: q.principal.clone(),
        team: q.team.clone(),
        detector: q.detector,
        severity: q.severity,
        status: q.status,
        since_ms,
        until_ms,
        limit: q.limit.unwrap_or(100),
        cursor: q.cursor.clone(),
    };
    let mut page = blocking(store, move |s| s.query(&query)).await?;
    page.findings.reverse();
    let mut body = serde_json::to_value(&page).unwrap_or_default();
    if let (Some(behind), Some(obj)) = (store.behind(), body.as_object_mut()) {
        // The console says the list may be missing findings, and why.
        obj.insert(
            "store_behind".into(),
            serde_json::to_value(behind).unwrap_or_default(),
        );
    }
    Ok(Json(body))
}

/// `GET /api/v1/findings/{id}` from the store, with `audit`: every change.
pub async fn finding(
    store: &FindingsStore,
    id: String,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (f, trail) = blocking(store, move |s| s.get(&id)).await?;
    let mut v = serde_json::to_value(&f).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("audit".into(), json!(trail));
    }
    Ok(Json(v))
}

/// `POST /api/v1/findings/{id}/verdict` (a responder): sets the status
/// and acts on it (see [`crate::feedback`]). The audit trail names the
/// signed-in user; a `"by"` in the body counts only with the shared
/// `http.api_token`, which names nobody.
pub async fn verdict(
    State(s): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Json<serde_json::Value>, ApiError> {
    let identity = req.extensions().get::<Identity>().cloned();
    let store = s.store.clone().ok_or_else(no_store)?;
    let remote = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .chars()
        .take(256)
        .collect::<String>();
    let body = axum::body::Bytes::from_request(req, &s)
        .await
        .map_err(|e| error(e.status(), e.body_text()))?;
    let v: Verdict = serde_json::from_slice(&body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid verdict: {e}")))?;
    let claimed = || {
        v.by.as_deref()
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .unwrap_or("api")
            .chars()
            .take(128)
            .collect()
    };
    let (who, method) = match &identity {
        Some(id) if id.is_personal() => (id.user.clone(), id.method.as_str()),
        Some(id) => (claimed(), id.method.as_str()),
        None => (claimed(), ""),
    };
    let actor = Actor {
        who,
        method: method.to_owned(),
        remote,
        user_agent,
    };
    let (engine, alerts, metrics) = (s.engine.clone(), s.alerts.clone(), s.metrics.clone());
    let topic = s.feedback.clone();
    let status = v.status;
    let (finding_id, by) = (id.clone(), actor.who.clone());
    let effect = tokio::task::spawn_blocking(move || {
        feedback::apply(&store, &engine, &alerts, topic.as_ref(), &id, &v, &actor)
    })
    .await
    .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| match e {
        VerdictError::Store(e) => store_error(e),
        VerdictError::Invalid(m) => error(StatusCode::UNPROCESSABLE_ENTITY, m),
    })?;
    metrics.verdicts.with_label_values(&[status.as_str()]).inc();
    // A confirmed compromise goes to the response rules, which act (or,
    // in a dry run, say what they would do) in the finding's audit trail.
    let mut body = json!({ "status": status, "effect": effect });
    if let (store::Status::Confirmed, Some(responder)) = (status, &s.responder) {
        responder.confirmed(&finding_id, &by);
        body["response"] = json!("queued");
    }
    Ok(Json(body))
}

/// `GET /api/v1/keys/{key_id}/rate`: what the key's model expects per
/// bucket at each hour and the current bucket, for the console's chart.
pub async fn rate(
    State(s): State<AppState>,
    Path(key_id): Path<String>,
    Query(q): Query<KeyQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let entity = q.entity.unwrap_or(Entity::KeyId);
    s.engine
        .rate_profile(entity, &key_id)
        .map(Json)
        .ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                format!("no {} {key_id:?} is tracked", entity.as_str()),
            )
        })
}

/// `GET /api/v1/compromised`: keys with a confirmed finding.
pub async fn compromised(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let store = s.store.clone().ok_or_else(no_store)?;
    let keys = blocking(&store, |s| s.compromised_keys()).await?;
    Ok(Json(json!({ "keys": keys })))
}

/// `GET /api/v1/reviews`: the scheduled reviews kept, newest first (at
/// most 100), each with its counts and what changed since the one before.
pub async fn reviews(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let store = s.store.clone().ok_or_else(no_store)?;
    let list = blocking(&store, |s| s.reviews(100)).await?;
    Ok(Json(json!({ "reviews": list })))
}

/// `GET /api/v1/reviews/{seq}`: one kept review, whole.
pub async fn stored_review(
    State(s): State<AppState>,
    Path(seq): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let store = s.store.clone().ok_or_else(no_store)?;
    blocking(&store, move |s| s.review(seq)).await.map(Json)
}

/// The console's files, built into the binary.
const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

/// `GET /`: the triage console.
pub async fn console_index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
        .into_response()
}

/// `GET /console/console.js`.
pub async fn console_script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

/// `GET /console/console.css`.
pub async fn console_style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}
