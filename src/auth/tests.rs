use super::*;

use axum::http::Method as Http;

use crate::config::HttpConfig;

const SHARED: &str = "t0ken-of-sixteen+";

fn access(toml_access: &str, listen: &str) -> (Access, Arc<Metrics>) {
    let mut cfg: HttpConfig =
        toml::from_str(&format!("listen = \"{listen}\"\n[access]\n{toml_access}")).unwrap();
    cfg.validate().unwrap();
    cfg.listen = listen.to_owned();
    let metrics = Arc::new(Metrics::new());
    let shared = Some(Secret::resolve(SHARED).unwrap());
    (access_for(&cfg, shared, metrics.clone()), metrics)
}

fn access_for(cfg: &HttpConfig, token: Option<Secret>, metrics: Arc<Metrics>) -> Access {
    Access::new(&cfg.access, &cfg.listen, cfg.tls.as_ref(), token, metrics)
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(HeaderName::try_from(*k).unwrap(), v.parse().unwrap());
    }
    h
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

fn failures(m: &Metrics, method: &str, reason: &str) -> u64 {
    m.http_auth_failures
        .with_label_values(&[method, reason])
        .get()
}

#[tokio::test]
async fn the_proxy_header_counts_only_from_the_proxy() {
    let (a, m) = access(
        "[access.proxy]\ntrusted = [\"10.0.0.5/32\"]\nroles = { \"bob@example.com\" = \"responder\" }\n",
        "0.0.0.0:9464",
    );
    let h = headers(&[("x-forwarded-email", "bob@example.com")]);
    let id = a
        .admit(
            &Http::POST,
            "/api/v1/suppressions",
            ip("10.0.0.5"),
            &h,
            None,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (id.user.as_str(), id.role, id.method),
        ("bob@example.com", Role::Responder, Method::Proxy)
    );
    // Anyone else named by the proxy is a viewer.
    let h = headers(&[("x-forwarded-email", "eve@example.com")]);
    let denied = a
        .admit(
            &Http::POST,
            "/api/v1/suppressions",
            ip("10.0.0.5"),
            &h,
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            denied,
            Denied::Forbidden {
                needs: Role::Responder,
                ..
            }
        ),
        "{denied:?}"
    );
    // The same header from another address is refused, even for a read,
    // even with a valid token beside it.
    let forged = headers(&[
        ("x-forwarded-email", "bob@example.com"),
        ("authorization", &format!("Bearer {SHARED}")),
    ]);
    let denied = a
        .admit(
            &Http::GET,
            "/api/v1/findings",
            ip("10.0.0.6"),
            &forged,
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(denied, Denied::UntrustedProxy { .. }),
        "{denied:?}"
    );
    assert_eq!(failures(&m, "proxy", "untrusted_proxy"), 1);
}

#[tokio::test]
async fn reads_need_an_identity_beyond_loopback_and_probes_stay_open() {
    let (beyond, m) = access("", "0.0.0.0:9464");
    let none = HeaderMap::new();
    for route in [
        "/api/v1/findings",
        "/api/v1/keys/{key_id}",
        "/api/v1/review",
    ] {
        assert_eq!(
            beyond
                .admit(&Http::GET, route, ip("192.0.2.1"), &none, None)
                .await,
            Err(Denied::Missing),
            "{route}"
        );
    }
    for route in ["/metrics", "/healthz", "/readyz", "/", "/api/v1/whoami"] {
        assert_eq!(
            beyond
                .admit(&Http::GET, route, ip("192.0.2.1"), &none, None)
                .await,
            Ok(None),
            "{route}"
        );
    }
    assert_eq!(failures(&m, "none", "missing"), 3);
    let (local, _) = access("", "127.0.0.1:9464");
    assert_eq!(
        local
            .admit(&Http::GET, "/api/v1/findings", ip("127.0.0.1"), &none, None)
            .await,
        Ok(None),
        "open on loopback by default"
    );
    // Writes need an identity there too.
    assert_eq!(
        local
            .admit(
                &Http::POST,
                "/api/v1/suppressions",
                ip("127.0.0.1"),
                &none,
                None
            )
            .await,
        Err(Denied::Missing)
    );
    let (closed, _) = access(
        "reads = \"identity\"\nopen_paths = [\"/healthz\"]\n",
        "127.0.0.1:9464",
    );
    assert_eq!(
        closed
            .admit(&Http::GET, "/metrics", ip("127.0.0.1"), &none, None)
            .await,
        Err(Denied::Missing),
        "/metrics closed when not listed"
    );
}

#[tokio::test]
async fn the_shared_token_is_an_admin_and_a_wrong_one_is_refused_and_throttled() {
    let (a, m) = access("max_failures_per_minute = 2\n", "0.0.0.0:9464");
    let ok = headers(&[("authorization", &format!("Bearer {SHARED}"))]);
    let id = a
        .admit(&Http::GET, "/api/v1/tokens", ip("192.0.2.9"), &ok, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((id.role, id.method), (Role::Admin, Method::ApiToken));
    assert!(!id.is_personal());
    for wrong in ["Bearer t0ken-of-sixteen", "Bearer ", "Basic !!!", "Token x"] {
        let h = headers(&[("authorization", wrong)]);
        let denied = a
            .admit(&Http::GET, "/api/v1/findings", ip("192.0.2.10"), &h, None)
            .await
            .unwrap_err();
        if let Denied::Throttled { retry_after } = denied {
            assert!(retry_after <= Duration::from_secs(60));
        } else {
            assert!(matches!(denied, Denied::Invalid(_)), "{wrong}: {denied:?}");
        }
    }
    // Two failures, then even the right token waits out the minute.
    let denied = a
        .admit(&Http::GET, "/api/v1/findings", ip("192.0.2.10"), &ok, None)
        .await
        .unwrap_err();
    assert!(matches!(denied, Denied::Throttled { .. }), "{denied:?}");
    assert!(failures(&m, "none", "throttled") >= 2);
    // Another address is not held off.
    assert!(a
        .admit(&Http::GET, "/api/v1/findings", ip("192.0.2.11"), &ok, None)
        .await
        .is_ok());
}

#[tokio::test]
async fn basic_auth_checks_the_bcrypt_hash() {
    let hash = bcrypt::hash("correct horse", 4).unwrap();
    let (a, _) = access(
        &format!(
            "[[access.users]]\nname = \"carol\"\nrole = \"viewer\"\npassword_hash = \"{hash}\"\n"
        ),
        "0.0.0.0:9464",
    );
    let basic = |user: &str, pass: &str| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        headers(&[("authorization", &format!("Basic {b64}"))])
    };
    for _ in 0..2 {
        // The second time from the cache.
        let id = a
            .admit(
                &Http::GET,
                "/api/v1/findings",
                ip("192.0.2.1"),
                &basic("carol", "correct horse"),
                None,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (id.user.as_str(), id.role, id.method),
            ("carol", Role::Viewer, Method::Basic)
        );
    }
    for (user, pass) in [
        ("carol", "wrong"),
        ("mallory", "correct horse"),
        ("carol", ""),
    ] {
        assert_eq!(
            a.admit(
                &Http::GET,
                "/api/v1/findings",
                ip("192.0.2.1"),
                &basic(user, pass),
                None
            )
            .await,
            Err(Denied::Invalid(Method::Basic)),
            "{user}:{pass}"
        );
    }
    // A viewer may not act.
    let denied = a
        .admit(
            &Http::POST,
            "/api/v1/findings/{id}/verdict",
            ip("192.0.2.2"),
            &basic("carol", "correct horse"),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(
        denied,
        Denied::Forbidden {
            needs: Role::Responder,
            ..
        }
    ));
}

#[tokio::test]
async fn per_user_tokens_from_the_file_and_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let (rec, token) = tokens::TokenFileStore::new(&path)
        .create("dave", Role::Responder)
        .unwrap();
    let (a, _) = access(
        &format!("tokens_path = \"{}\"\n", path.display()),
        "0.0.0.0:9464",
    );
    let h = headers(&[("authorization", &format!("Bearer {token}"))]);
    let id = a
        .admit(
            &Http::POST,
            "/api/v1/findings/{id}/verdict",
            ip("192.0.2.1"),
            &h,
            None,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!((id.user.as_str(), id.method), ("dave", Method::Token));
    tokens::TokenFileStore::new(&path).revoke(&rec.id).unwrap();
    assert_eq!(
        a.admit(&Http::GET, "/api/v1/findings", ip("192.0.2.1"), &h, None)
            .await,
        Err(Denied::Invalid(Method::Token))
    );
    // A certificate counts only when client certificates are configured.
    let cert = ClientCert("scraper-1".into());
    assert_eq!(
        a.admit(
            &Http::GET,
            "/api/v1/findings",
            ip("192.0.2.1"),
            &HeaderMap::new(),
            Some(&cert)
        )
        .await,
        Err(Denied::Missing)
    );
}

#[tokio::test]
async fn writes_without_any_way_to_sign_in_say_how_to_enable_them() {
    let cfg = HttpConfig::default();
    let a = access_for(&cfg, None, Arc::new(Metrics::new()));
    assert_eq!(
        a.admit(
            &Http::POST,
            "/api/v1/suppressions",
            ip("127.0.0.1"),
            &HeaderMap::new(),
            None
        )
        .await,
        Err(Denied::WritesDisabled)
    );
    // An empty shared token never authorises.
    let a = access_for(
        &cfg,
        Some(Secret::resolve("").unwrap()),
        Arc::new(Metrics::new()),
    );
    let h = headers(&[("authorization", "Bearer ")]);
    assert!(a
        .admit(
            &Http::POST,
            "/api/v1/suppressions",
            ip("127.0.0.1"),
            &h,
            None
        )
        .await
        .is_err());
}

#[test]
fn configuration_errors_name_the_key() {
    let err = |text: &str| {
        let cfg: HttpConfig = toml::from_str(text).unwrap();
        cfg.validate().unwrap_err().to_string()
    };
    let e = err("[access.proxy]\ntrusted = []\n");
    assert!(e.contains("http.access.proxy.trusted"), "{e}");
    let e = err("[access.proxy]\ntrusted = [\"0.0.0.0/0\"]\n");
    assert!(
        e.contains("http.access.proxy.trusted") && e.contains("0.0.0.0/0"),
        "{e}"
    );
    let e = err("[access.proxy]\nheader = \"Authorization\"\ntrusted = [\"10.0.0.1\"]\n");
    assert!(e.contains("http.access.proxy.header"), "{e}");
    let e = err("[access]\nopen_paths = [\"/metric\"]\n");
    assert!(
        e.contains("http.access.open_paths") && e.contains("/metric"),
        "{e}"
    );
    let e = err("[[access.users]]\nname = \"a\"\nrole = \"viewer\"\npassword_hash = \"hunter2\"\n");
    assert!(
        e.contains("http.access.users[0].password_hash") && !e.contains("hunter2"),
        "the hash is masked: {e}"
    );
    let bad_role: Result<HttpConfig, _> =
        toml::from_str("[[access.users]]\nname = \"a\"\nrole = \"root\"\npassword_hash = \"x\"\n");
    assert!(bad_role.unwrap_err().to_string().contains("root"));
}
