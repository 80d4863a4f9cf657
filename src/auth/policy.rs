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
    /// The route has no such method: answered 405 with these, whoever asks.
    NotAllowed(&'static str),
}

const READ: Need = Need::Role(Role::Viewer);
const RESPOND: Need = Need::Role(Role::Responder);

/// Every route as registered, with what each of its methods needs (`HEAD`
/// is `GET`'s). A method not listed here is never handled: the guard
/// answers 405 before the router sees it, so a handler added to the router
/// but not here cannot be reached; a route not listed at all is an admin's.
const ROUTES: &[(&str, &[(&str, Need)])] = &[
    ("/metrics", &[("GET", READ)]),
    ("/healthz", &[("GET", READ)]),
    ("/readyz", &[("GET", READ)]),
    // The console's own files hold no data: a browser loads the page
    // that asks how to sign in.
    ("/", &[("GET", Need::Open)]),
    ("/console/", &[("GET", Need::Open)]),
    ("/console/console.js", &[("GET", Need::Open)]),
    ("/console/console.css", &[("GET", Need::Open)]),
    // Who am I: answers anyone.
    ("/api/v1/whoami", &[("GET", Need::Open)]),
    ("/api/v1/keys/{key_id}", &[("GET", READ)]),
    ("/api/v1/keys/{key_id}/rate", &[("GET", READ)]),
    ("/api/v1/incidents", &[("GET", READ)]),
    ("/api/v1/incidents/{id}", &[("GET", READ)]),
    ("/api/v1/findings", &[("GET", READ)]),
    ("/api/v1/findings/{id}", &[("GET", READ)]),
    ("/api/v1/findings/{id}/verdict", &[("POST", RESPOND)]),
    ("/api/v1/compromised", &[("GET", READ)]),
    ("/api/v1/review", &[("GET", READ)]),
    ("/api/v1/reviews", &[("GET", READ)]),
    ("/api/v1/reviews/{seq}", &[("GET", READ)]),
    ("/api/v1/suppressions", &[("GET", READ), ("POST", RESPOND)]),
    ("/api/v1/suppressions/{id}", &[("DELETE", RESPOND)]),
    ("/api/v1/tokens", &[("GET", Need::Role(Role::Admin))]),
];

/// The routes a viewer reads: the ones `http.access.open_paths` may name.
pub fn read_routes() -> impl Iterator<Item = &'static str> {
    ROUTES
        .iter()
        .filter(|(_, methods)| methods.iter().any(|(_, n)| *n == READ))
        .map(|(path, _)| *path)
}

/// What `method` on `route` (as registered, e.g. `/api/v1/findings/{id}`) needs.
pub fn need(method: &Method, route: &str) -> Need {
    let method = if *method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    let Some((_, methods)) = ROUTES.iter().find(|(path, _)| *path == route) else {
        return Need::Role(Role::Admin);
    };
    methods
        .iter()
        .find(|(m, _)| *m == method)
        .map(|(_, need)| *need)
        .unwrap_or(Need::NotAllowed(allowed(methods)))
}

/// The `Allow` header of a route: its methods, `HEAD` with `GET`.
fn allowed(methods: &[(&str, Need)]) -> &'static str {
    match methods
        .iter()
        .map(|(m, _)| *m)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["GET"] => "GET,HEAD",
        ["GET", "POST"] => "GET,HEAD,POST",
        ["POST"] => "POST",
        ["DELETE"] => "DELETE",
        _ => "GET,HEAD",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_need_a_viewer_writes_a_responder_tokens_an_admin() {
        for route in read_routes() {
            assert_eq!(
                need(&Method::GET, route),
                Need::Role(Role::Viewer),
                "{route}"
            );
            assert_eq!(
                need(&Method::HEAD, route),
                Need::Role(Role::Viewer),
                "{route}"
            );
        }
        assert!(read_routes().any(|r| r == "/api/v1/findings/{id}"));
        assert!(!read_routes().any(|r| r == "/api/v1/tokens" || r == "/"));
        assert_eq!(
            need(&Method::GET, "/api/v1/tokens"),
            Need::Role(Role::Admin)
        );
        assert_eq!(need(&Method::GET, "/api/v1/whoami"), Need::Open);
        assert_eq!(need(&Method::GET, "/console/console.js"), Need::Open);
        for (m, route) in [
            (Method::POST, "/api/v1/findings/{id}/verdict"),
            (Method::POST, "/api/v1/suppressions"),
            (Method::DELETE, "/api/v1/suppressions/{id}"),
        ] {
            assert_eq!(need(&m, route), Need::Role(Role::Responder), "{m} {route}");
        }
        // A method a route does not have is answered 405, never handled.
        assert_eq!(
            need(&Method::PUT, "/api/v1/findings"),
            Need::NotAllowed("GET,HEAD")
        );
        assert_eq!(
            need(&Method::PUT, "/api/v1/suppressions"),
            Need::NotAllowed("GET,HEAD,POST")
        );
        assert_eq!(need(&Method::POST, "/"), Need::NotAllowed("GET,HEAD"));
        // A route the table does not know is the admin's, never open.
        assert_eq!(need(&Method::GET, "/api/v2/new"), Need::Role(Role::Admin));
    }
}
