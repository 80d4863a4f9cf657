//! In front of every route: who the request comes from and whether they
//! may (the one decision, [`crate::auth::Access::admit`], before any
//! handler runs or any body is read), and the security headers on every
//! response.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::error::error;
use crate::auth::{Access, ClientCert, Denied};

/// Lets a request through with its identity (an [`crate::auth::Identity`]
/// extension), or answers why not, in JSON.
pub async fn admit(State(access): State<Arc<Access>>, mut req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let cert = req.extensions().get::<ClientCert>();
    match access
        .admit(req.method(), &route, peer, req.headers(), cert)
        .await
    {
        Ok(identity) => {
            if let Some(identity) = identity {
                req.extensions_mut().insert(identity);
            }
            next.run(req).await
        }
        Err(denied) => refusal(&denied, req.method(), &route),
    }
}

/// The answer to a refused request.
fn refusal(denied: &Denied, method: &axum::http::Method, route: &str) -> Response {
    match denied {
        Denied::Missing => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                format!("{method} {route} needs an identity: sign in (a bearer token, basic auth or the single sign-on proxy)"),
            )
            .into_response();
            // Bearer, never Basic: a Basic challenge would make a browser's
            // own password prompt pop up over the console.
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"keywatch\""),
            );
            r
        }
        Denied::Invalid(m) => error(
            StatusCode::UNAUTHORIZED,
            format!("missing or wrong credentials ({}): the token may be wrong or revoked, or the password wrong", m.as_str()),
        )
        .into_response(),
        Denied::UntrustedProxy { header } => error(
            StatusCode::UNAUTHORIZED,
            format!("the {header} header is believed only from the proxy's addresses (http.access.proxy.trusted); this request came from another"),
        )
        .into_response(),
        Denied::Throttled { retry_after } => {
            let secs = retry_after.as_secs().max(1);
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many failed sign-ins from this address: try again in {secs}s"),
            )
            .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            r
        }
        Denied::Forbidden { identity, needs } => (
            StatusCode::FORBIDDEN,
            Json(json!({
                "error": format!(
                    "{} ({}, signed in by {}) may not {method} {route}: it needs the {needs} role",
                    identity.user, identity.role, identity.method.as_str()
                ),
                "user": identity.user,
                "role": identity.role,
                "needs": needs,
            })),
        )
            .into_response(),
        Denied::NotAllowed { allow } => {
            let mut r = error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} {route}: method not allowed (allowed: {allow})"),
            )
            .into_response();
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            r
        }
        Denied::WritesDisabled => error(
            StatusCode::FORBIDDEN,
            "writes are disabled: set http.api_token (or per-user tokens, users or a proxy in [http.access]) to allow them",
        )
        .into_response(),
    }
}

/// The console's policy: everything from keywatch itself, no inline script
/// or style, no plugin, never framed. It holds for every response (a JSON
/// body opened as a page runs nothing either).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Security headers on every response; `no-store` on the API's (findings,
/// keys, audit trails must not stay in a shared or browser cache).
pub async fn security_headers(tls: bool, req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if api {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if tls {
        // A year, as the HSTS preload list asks; only ever sent over TLS.
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}
