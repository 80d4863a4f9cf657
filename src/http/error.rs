//! Every error the HTTP server answers is JSON: `{"error": ...}`, with the
//! refused field and value when one field is to blame. The helpers that
//! make them, the middleware that turns other rejections into them, and the
//! bearer-token check for writes, in one place.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::config::Secret;

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

/// Writes need `Authorization: Bearer <http.api_token>`; without a token
/// configured they are refused.
pub fn authorize(api_token: Option<&Secret>, headers: &HeaderMap) -> Result<(), ApiError> {
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
