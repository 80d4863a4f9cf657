//! Every error the HTTP server answers is JSON: `{"error": ...}`, with the
//! refused field and value when one field is to blame. The helpers that
//! make them and the middleware that turns other rejections into them, in
//! one place.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

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

/// An error response with a message.
pub fn error(status: StatusCode, msg: impl Into<String>) -> ApiError {
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

/// An error response that names the one field to blame and its value.
pub fn field_error(
    status: StatusCode,
    message: impl Into<String>,
    field: &str,
    value: &str,
) -> ApiError {
    ApiError {
        status,
        message: message.into(),
        field: Some((field.to_owned(), value.to_owned())),
    }
}
