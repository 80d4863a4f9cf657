//! The one table of what each route needs. The HTTP server's guard asks it
//! for every request before the handler runs.

use axum::http::Method;

use super::Role;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: anyone may.
    Open,
    /// An identity with at least this role. `Viewer` routes are open too
    /// when reads are (`http.access.reads`) or listed in
    /// `http.access.open_paths`.
    Role(Role),
}

/// Routes that read, as registered: the ones `http.access.open_paths` may name.
pub const READ_ROUTES: [&str; 14] = [
    "/metrics",
    "/healthz",
    "/readyz",
    "/api/v1/whoami",
    "/api/v1/keys/{key_id}",
    "/api/v1/keys/{key_id}/rate",
    "/api/v1/incidents",
    "/api/v1/incidents/{id}",
    "/api/v1/findings",
    "/api/v1/findings/{id}",
    "/api/v1/compromised",
    "/api/v1/review",
    "/api/v1/suppressions",
    "/api/v1/tokens",
];

/// The console's own files: no data in them, so a browser can load the
/// page that asks how to sign in.
const CONSOLE_FILES: [&str; 4] = [
    "/",
    "/console/",
    "/console/console.js",
    "/console/console.css",
];

/// What `method` on `route` (as registered, e.g. `/api/v1/findings/{id}`) needs.
pub fn need(method: &Method, route: &str) -> Need {
    let read = *method == Method::GET || *method == Method::HEAD;
    match route {
        _ if read && CONSOLE_FILES.contains(&route) => Need::Open,
        // Who am I: answers anyone, signed in or not.
        "/api/v1/whoami" if read => Need::Open,
        "/api/v1/tokens" if read => Need::Role(Role::Admin),
        _ if read => Need::Role(Role::Viewer),
        "/api/v1/findings/{id}/verdict" | "/api/v1/suppressions" if *method == Method::POST => {
            Need::Role(Role::Responder)
        }
        "/api/v1/suppressions/{id}" if *method == Method::DELETE => Need::Role(Role::Responder),
        // Anything else that changes something is the admin's.
        _ => Need::Role(Role::Admin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_need_a_viewer_writes_a_responder_tokens_an_admin() {
        for route in READ_ROUTES {
            let expected = match route {
                "/api/v1/whoami" => Need::Open,
                "/api/v1/tokens" => Need::Role(Role::Admin),
                _ => Need::Role(Role::Viewer),
            };
            assert_eq!(need(&Method::GET, route), expected, "{route}");
        }
        assert_eq!(need(&Method::GET, "/console/console.js"), Need::Open);
        for (m, route) in [
            (Method::POST, "/api/v1/findings/{id}/verdict"),
            (Method::POST, "/api/v1/suppressions"),
            (Method::DELETE, "/api/v1/suppressions/{id}"),
        ] {
            assert_eq!(need(&m, route), Need::Role(Role::Responder), "{m} {route}");
        }
        // A method the table does not know is the admin's, never open.
        assert_eq!(
            need(&Method::PUT, "/api/v1/findings"),
            Need::Role(Role::Admin)
        );
        assert_eq!(need(&Method::POST, "/"), Need::Role(Role::Admin));
    }
}
