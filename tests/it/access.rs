//! Team access end to end, on real loopback sockets: reads that need an
//! identity, roles, the audit trail under the signed-in user whatever the
//! body says, a forged proxy header refused, per-user tokens through the
//! CLI and revoked at once, TLS with a test CA (certificate reloads,
//! client certificates), and the console in Chromium through a single
//! sign-on proxy, over TLS, and with hostile strings that must stay text.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use keywatch::alert::{Alerts, Incidents};
use keywatch::auth::tokens::TokenFileStore;
use keywatch::auth::Role;
use keywatch::config::{Config, HttpConfig, Secret, StoreConfig};
use keywatch::decode::{AuditEvent, Outcome};
use keywatch::engine::{Engine, Finding};
use keywatch::http::{self, AppState, RecentFindings};
use keywatch::metrics::Metrics;
use keywatch::source::kafka::SourceStatus;
use keywatch::store::{FindingsStore, StoreWriter};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::helpers::*;
use crate::http::event;
use crate::triage::{screenshot_dir, Browser};

/// The shared `http.api_token` of every server here.
const SHARED: &str = "shared-api-token-0123456789";
const T0: i64 = 1_767_571_200_000;
const QUARTER_HOUR: i64 = 900_000;
const DAY: i64 = 86_400_000;

/// A keywatch HTTP server over a findings store holding findings.
struct Server {
    base: String,
    addr: SocketAddr,
    client: reqwest::Client,
    /// The stored findings' ids.
    ids: Vec<String>,
    _store: FindingsStore,
    _writer: StoreWriter,
    _stop: tokio_util::sync::DropGuard,
}

/// `[http]` from TOML, on a free loopback port, validated.
fn http_cfg(text: &str) -> HttpConfig {
    let mut cfg: HttpConfig = toml::from_str(text).unwrap();
    cfg.listen = "127.0.0.1:0".into();
    cfg.validate().unwrap();
    cfg
}

/// Twenty settled days of `key`, then one use from a new network: the
/// events, with `attack` shaping the last.
fn settled_then(key: &str, attack: impl FnOnce(&mut AuditEvent<'_>)) -> Vec<AuditEvent<'_>> {
    let mut events = Vec::new();
    let mut t = T0;
    while t < T0 + 20 * DAY {
        events.push(event(key, t, "203.0.113.10"));
        t += QUARTER_HOUR;
    }
    let mut last = event(key, T0 + 20 * DAY, "198.51.100.7");
    attack(&mut last);
    events.push(last);
    events
}

impl Server {
    /// Serves `cfg` over findings of `events`.
    async fn start(cfg: HttpConfig, dir: &Path, events: &[AuditEvent<'_>]) -> Server {
        let config = Config::default();
        let engine = Engine::new(&config);
        let metrics = Arc::new(Metrics::new());
        let stop = CancellationToken::new();
        let (store, writer) = FindingsStore::open(
            &StoreConfig {
                path: dir.join("findings.db"),
                ..StoreConfig::default()
            },
            metrics.clone(),
            None,
        )
        .unwrap();
        let incidents = Incidents::new(&config.incidents, true, metrics.clone());
        let (alerts, _) = Alerts::start_with(
            &config.alerts,
            Some(incidents),
            metrics.clone(),
            None,
            stop.clone(),
        )
        .unwrap();
        if let Some(incidents) = alerts.incidents() {
            let store = store.clone();
            incidents.listen(Arc::new(move |e| store.record_incident(&e.incident)));
        }
        let recent = Arc::new(RecentFindings::new(
            100,
            100,
            Duration::from_secs(3600),
            metrics.clone(),
        ));
        let mut found: Vec<Finding> = Vec::new();
        for e in events {
            engine.process(e, &mut found);
        }
        assert!(!found.is_empty(), "the events raise findings");
        for f in &found {
            store.store_now(f).unwrap();
            recent.record(f);
            alerts.submit(f);
        }
        let state = AppState {
            engine,
            metrics: metrics.clone(),
            status: Arc::new(SourceStatus::default()),
            recent,
            alerts,
            api_token: Some(Secret::resolve(SHARED).unwrap()),
            dormant_s: 30 * 86_400,
            inventory: None,
            inventory_cfg: Default::default(),
            checkpoint_max_age: None,
            last_checkpoint_ms: Arc::new(std::sync::atomic::AtomicI64::new(0)),
            started: Instant::now(),
            store: Some(store.clone()),
            feedback: None,
            responder: None,
        };
        let scheme = if cfg.tls.is_some() { "https" } else { "http" };
        let (addr, _) = http::serve(&cfg, state, stop.clone()).await.unwrap();
        Server {
            base: format!("{scheme}://{addr}"),
            addr,
            client: reqwest::Client::new(),
            ids: found.iter().map(|f| f.id.clone()).collect(),
            _store: store,
            _writer: writer,
            _stop: stop.drop_guard(),
        }
    }

    async fn get(
        &self,
        path: &str,
        auth: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self.client.get(format!("{}{path}", self.base));
        for (k, v) in auth {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        let text = r.text().await.unwrap();
        (
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn verdict(&self, id: &str, body: Value, auth: &[(&str, &str)]) -> (u16, Value) {
        let mut req = self
            .client
            .post(format!("{}/api/v1/findings/{id}/verdict", self.base))
            .json(&body);
        for (k, v) in auth {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// The finding's audit trail: (who, method, action) per change.
    async fn trail(&self, id: &str) -> Vec<(String, String, String)> {
        let (status, _, f) = self
            .get(
                &format!("/api/v1/findings/{id}"),
                &[("authorization", &bearer(SHARED))],
            )
            .await;
        assert_eq!(status, 200, "{f}");
        f["audit"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let s = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
                (s("who"), s("method"), s("action"))
            })
            .collect()
    }

    /// A counter's value on `/metrics` (the line starting with `series`).
    async fn metric(&self, series: &str) -> u64 {
        let (_, _, text) = self.get("/metrics", &[]).await;
        metric_in(text.as_str().unwrap_or_default(), series)
    }
}

/// The value of `series` in Prometheus text.
fn metric_in(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A token for `user` in the tokens file at `path`.
fn token(path: &Path, user: &str, role: Role) -> String {
    TokenFileStore::new(path).create(user, role).unwrap().1
}

#[tokio::test]
async fn with_access_control_on_every_read_route_needs_an_identity() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.json");
    let viewer = token(&tokens, "vera", Role::Viewer);
    let cfg = http_cfg(&format!(
        "[access]\nreads = \"identity\"\ntokens_path = \"{}\"\n",
        tokens.display()
    ));
    let s = Server::start(cfg, dir.path(), &settled_then("AKIAREAD", |_| {})).await;
    let id = s.ids[0].clone();
    let reads = [
        "/api/v1/findings".to_owned(),
        format!("/api/v1/findings/{id}"),
        "/api/v1/incidents".to_owned(),
        "/api/v1/incidents/nope".to_owned(),
        "/api/v1/keys/AKIAREAD".to_owned(),
        "/api/v1/keys/AKIAREAD/rate".to_owned(),
        "/api/v1/compromised".to_owned(),
        "/api/v1/review".to_owned(),
        "/api/v1/reviews".to_owned(),
        "/api/v1/reviews/1".to_owned(),
        "/api/v1/suppressions".to_owned(),
        "/api/v1/tokens".to_owned(),
    ];
    for path in &reads {
        let (status, headers, body) = s.get(path, &[]).await;
        assert_eq!(status, 401, "{path} without an identity: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("needs an identity"),
            "{body}"
        );
        assert_eq!(headers["www-authenticate"], "Bearer realm=\"keywatch\"");
        assert_eq!(headers["cache-control"], "no-store", "{path}");
    }
    // A viewer reads them all but the token list, an admin's.
    for path in &reads {
        let (status, _, body) = s.get(path, &[("authorization", &bearer(&viewer))]).await;
        let expected: &[u16] = match path.as_str() {
            "/api/v1/tokens" => &[403],
            // No such incident; no inventory for the review.
            "/api/v1/incidents/nope" | "/api/v1/review" | "/api/v1/reviews/1" => &[404],
            _ => &[200],
        };
        assert!(
            expected.contains(&status),
            "{path} as a viewer: {status} {body}"
        );
    }
    let (status, _, list) = s
        .get("/api/v1/findings", &[("authorization", &bearer(&viewer))])
        .await;
    assert_eq!(status, 200);
    assert!(!list["findings"].as_array().unwrap().is_empty());
    // The probes, the scrape and the console's own files stay open.
    for path in ["/metrics", "/healthz", "/", "/console/console.js"] {
        let (status, headers, _) = s.get(path, &[]).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'")
                && csp.contains("script-src 'self'")
                && !csp.contains("unsafe"),
            "{csp}"
        );
    }
    let (status, _, me) = s.get("/api/v1/whoami", &[]).await;
    assert_eq!(
        (status, &me["signed_in"], &me["reads_need_identity"]),
        (200, &json!(false), &json!(true))
    );
    let (_, _, me) = s
        .get("/api/v1/whoami", &[("authorization", &bearer(&viewer))])
        .await;
    assert_eq!(me["user"], "vera");
    assert_eq!(me["may"]["respond"], false);
    assert_eq!(
        s.metric("keywatch_http_auth_failures_total{method=\"none\",reason=\"missing\"}")
            .await,
        reads.len() as u64
    );
}

#[tokio::test]
async fn verdicts_are_audited_under_the_signed_in_user_whatever_by_says() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.json");
    let viewer = token(&tokens, "vera", Role::Viewer);
    let responder = token(&tokens, "dave", Role::Responder);
    let hash = bcrypt::hash("correct horse battery", 4).unwrap();
    let cfg = http_cfg(&format!(
        r#"
[access]
reads = "identity"
tokens_path = "{}"
[access.proxy]
header = "X-Forwarded-Email"
trusted = ["127.0.0.1/32"]
roles = {{ "alice@example.com" = "responder" }}
[[access.users]]
name = "carol"
role = "responder"
password_hash = "{hash}"
"#,
        tokens.display()
    ));
    let s = Server::start(cfg, dir.path(), &settled_then("AKIAAUDIT", |_| {})).await;
    let id = s.ids[0].clone();

    // A viewer's verdict: 403 in JSON, nothing changed.
    let (status, body) = s
        .verdict(
            &id,
            json!({"status": "resolved"}),
            &[("authorization", &bearer(&viewer))],
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        (&body["user"], &body["role"], &body["needs"]),
        (&json!("vera"), &json!("viewer"), &json!("responder"))
    );
    assert!(
        body["error"].as_str().unwrap().contains("may not POST"),
        "{body}"
    );
    // So is one from a proxy user the proxy does not name as a responder.
    let (status, _) = s
        .verdict(
            &id,
            json!({"status": "resolved"}),
            &[("x-forwarded-email", "eve@example.com")],
        )
        .await;
    assert_eq!(status, 403);
    assert!(s.trail(&id).await.is_empty());

    // The proxy's user, the token's and the basic-auth user: each under
    // their own name, whatever "by" claims.
    let (status, body) = s
        .verdict(
            &id,
            json!({"status": "acknowledged", "by": "mallory"}),
            &[("x-forwarded-email", "alice@example.com")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = s
        .verdict(
            &id,
            json!({"status": "resolved", "by": "mallory"}),
            &[("authorization", &bearer(&responder))],
        )
        .await;
    assert_eq!(status, 200);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("carol:correct horse battery")
    );
    let (status, _) = s
        .verdict(
            &id,
            json!({"status": "acknowledged", "by": "mallory"}),
            &[("authorization", &basic)],
        )
        .await;
    assert_eq!(status, 200);
    // The shared token names nobody: the name given is kept, marked as such.
    let (status, _) = s
        .verdict(
            &id,
            json!({"status": "resolved", "by": "ops-bot"}),
            &[("authorization", &bearer(SHARED))],
        )
        .await;
    assert_eq!(status, 200);
    let trail = s.trail(&id).await;
    let who: Vec<(&str, &str)> = trail
        .iter()
        .filter(|(_, _, action)| action == "status")
        .map(|(who, method, _)| (who.as_str(), method.as_str()))
        .collect();
    assert_eq!(
        who,
        [
            ("alice@example.com", "proxy"),
            ("dave", "token"),
            ("carol", "basic"),
            ("ops-bot", "api_token")
        ]
    );
    assert!(
        !trail.iter().any(|(who, _, _)| who == "mallory"),
        "{trail:?}"
    );
}

#[tokio::test]
async fn a_proxy_header_from_an_address_that_is_not_the_proxy_is_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    // The proxy is elsewhere; this test's requests come from 127.0.0.1.
    let cfg = http_cfg(
        "[access]\nreads = \"identity\"\n[access.proxy]\ntrusted = [\"10.0.0.0/8\"]\ndefault_role = \"admin\"\n",
    );
    let s = Server::start(cfg, dir.path(), &settled_then("AKIAFORGED", |_| {})).await;
    let forged = [("x-forwarded-email", "admin@example.com")];
    let (status, _, body) = s.get("/api/v1/findings", &forged).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("X-Forwarded-Email"),
        "{body}"
    );
    // Even with the shared token beside it: the forgery is the answer.
    let (status, _) = s
        .verdict(
            &s.ids[0],
            json!({"status": "expected"}),
            &[forged[0], ("authorization", &bearer(SHARED))],
        )
        .await;
    assert_eq!(status, 401);
    assert!(s.trail(&s.ids[0]).await.is_empty());
    assert_eq!(
        s.metric("keywatch_http_auth_failures_total{method=\"proxy\",reason=\"untrusted_proxy\"}")
            .await,
        2
    );
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = http_cfg("[access]\nreads = \"identity\"\nmax_failures_per_minute = 3\n");
    let s = Server::start(cfg, dir.path(), &settled_then("AKIAGUESS", |_| {})).await;
    for i in 0..3 {
        let (status, _, _) = s
            .get(
                "/api/v1/findings",
                &[("authorization", &bearer(&format!("guess-{i}")))],
            )
            .await;
        assert_eq!(status, 401);
    }
    // The fourth guess, and even the right token, wait out the minute.
    let (status, headers, body) = s
        .get("/api/v1/findings", &[("authorization", &bearer(SHARED))])
        .await;
    assert_eq!(status, 429, "{body}");
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(
        // No per-user tokens here: a wrong bearer token is a wrong shared one.
        s.metric("keywatch_http_auth_failures_total{method=\"api_token\",reason=\"invalid\"}")
            .await,
        3
    );
    assert_eq!(
        s.metric("keywatch_http_auth_failures_total{method=\"none\",reason=\"throttled\"}")
            .await,
        1
    );
    // Without credentials, a probe is not held off.
    assert_eq!(s.get("/healthz", &[]).await.0, 200);
}

#[tokio::test]
async fn tokens_created_listed_and_revoked_through_the_cli_hold_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.json");
    let config = dir.path().join("keywatch.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:9464\"\napi_token = \"{SHARED}\"\n[http.access]\nreads = \"identity\"\ntokens_path = \"{}\"\n",
            tokens.display()
        ),
    )
    .unwrap();
    let cfg = Config::load(Some(config.as_path())).unwrap();
    let s = Server::start(
        HttpConfig {
            listen: "127.0.0.1:0".into(),
            ..cfg.http
        },
        dir.path(),
        &settled_then("AKIACLI", |_| {}),
    )
    .await;
    let cli = |args: &[&str]| {
        let o = run(keywatch().arg("token").args(args));
        (o.status.code(), stdout(&o), stderr(&o))
    };
    let c = config.to_str().unwrap();
    let (code, token, err) = cli(&["create", "-c", c, "--user", "erin", "--role", "responder"]);
    assert_eq!(code, Some(0), "{err}");
    let token = token.trim().to_owned();
    assert!(
        token.starts_with("kw_") && err.contains("shown this once"),
        "{token} {err}"
    );
    // Only its hash is on disk.
    assert!(!std::fs::read_to_string(&tokens).unwrap().contains(&token));
    let auth = [("authorization", bearer(&token))];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, me) = s.get("/api/v1/whoami", &auth).await;
    assert_eq!(
        (status, &me["user"], &me["role"], &me["method"]),
        (200, &json!("erin"), &json!("responder"), &json!("token"))
    );
    let (status, body) = s
        .verdict(&s.ids[0], json!({"status": "acknowledged"}), &auth)
        .await;
    assert_eq!(status, 200, "{body}");

    let (code, list, _) = cli(&["list", "-c", c]);
    assert_eq!(code, Some(0));
    let row = list
        .lines()
        .find(|l| l.contains("erin"))
        .expect("erin listed");
    let id = row.split_whitespace().next().unwrap().to_owned();
    assert!(
        token.starts_with(&format!("kw_{id}_")) && row.contains("responder") && row.ends_with('-'),
        "{list}"
    );
    assert!(!list.contains(&token));
    // An admin sees the same list over the API, never a hash.
    let (_, _, api_list) = s
        .get("/api/v1/tokens", &[("authorization", &bearer(SHARED))])
        .await;
    assert_eq!(api_list["tokens"][0]["id"], id.as_str());
    assert!(api_list["tokens"][0].get("sha256").is_none());

    let (code, out, err) = cli(&["revoke", "-c", c, &id]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&format!("revoked {id} (erin, responder)")),
        "{out}"
    );
    // The running server refuses it from the very next request.
    let (status, _, _) = s.get("/api/v1/findings", &auth).await;
    assert_eq!(status, 401);
    let (status, _) = s
        .verdict(&s.ids[0], json!({"status": "resolved"}), &auth)
        .await;
    assert_eq!(status, 401);
    let (_, list, _) = cli(&["list", "-c", c]);
    assert!(
        !list
            .lines()
            .find(|l| l.contains("erin"))
            .unwrap()
            .ends_with('-'),
        "{list}"
    );

    // Mistakes are usage errors that say what to do.
    let (code, _, err) = cli(&["create", "-c", c, "--user", "x", "--role", "root"]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("root") && err.contains("responder"), "{err}");
    let (code, _, err) = cli(&["revoke", "-c", c, "nobody"]);
    assert_eq!(code, Some(64));
    assert!(err.contains("nobody"), "{err}");
    let bare = dir.path().join("bare.toml");
    std::fs::write(&bare, "").unwrap();
    let (code, _, err) = cli(&["list", "-c", bare.to_str().unwrap()]);
    assert_eq!(code, Some(64));
    assert!(err.contains("http.access.tokens_path"), "{err}");
}

#[tokio::test]
async fn an_existing_api_token_configuration_works_as_before() {
    let dir = tempfile::tempdir().unwrap();
    // A configuration from before access control, unchanged.
    let cfg = Config::from_toml_str(&format!(
        "[http]\nlisten = \"127.0.0.1:9464\"\napi_token = \"{SHARED}\"\n"
    ))
    .unwrap();
    let s = Server::start(
        HttpConfig {
            listen: "127.0.0.1:0".into(),
            ..cfg.http
        },
        dir.path(),
        &settled_then("AKIAOLD", |_| {}),
    )
    .await;
    // Reads open on loopback, as before.
    let (status, _, list) = s.get("/api/v1/findings", &[]).await;
    assert_eq!(status, 200);
    assert!(!list["findings"].as_array().unwrap().is_empty());
    // Writes with the token, as before; refused without it.
    let rule = json!({"key": "AKIAOLD", "reason": "pentest"});
    let url = format!("{}/api/v1/suppressions", s.base);
    let r = s.client.post(&url).json(&rule).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = s
        .client
        .post(&url)
        .bearer_auth(SHARED)
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let (status, _) = s
        .verdict(
            &s.ids[0],
            json!({"status": "expected", "by": "carol"}),
            &[("authorization", &bearer(SHARED))],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        s.trail(&s.ids[0]).await[1],
        ("carol".into(), "api_token".into(), "status".into())
    );
}

/// A test CA and what it signs, written as PEM files into a directory.
struct TestPki {
    dir: PathBuf,
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestPki {
    fn new(dir: &Path, name: &str) -> TestPki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("keywatch test CA {name}"),
        );
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
            .unwrap();
        let pki = TestPki {
            dir: dir.to_owned(),
            ca,
        };
        std::fs::write(pki.path(&format!("{name}-ca.pem")), pki.ca.pem()).unwrap();
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A certificate for `localhost` and 127.0.0.1 (or a client's, named
    /// `cn`): (certificate PEM, key PEM, base64 SHA-256 of its public key).
    fn issue(&self, cn: &str, server: bool) -> (String, String, String) {
        use rcgen::PublicKeyData;
        use sha2::Digest;
        let names = if server {
            vec!["localhost".to_owned()]
        } else {
            Vec::new()
        };
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        if server {
            params
                .subject_alt_names
                .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        } else {
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        }
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let spki = base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(key.subject_public_key_info()));
        (cert.pem(), key.serialize_pem(), spki)
    }

    /// Issues a server certificate into `server.pem` / `server.key`.
    fn write_server(&self) -> String {
        let (cert, key, spki) = self.issue("keywatch test server", true);
        std::fs::write(self.path("server.pem"), cert).unwrap();
        std::fs::write(self.path("server.key"), key).unwrap();
        spki
    }

    fn ca_cert(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(self.ca.pem().as_bytes()).unwrap()
    }
}

/// A client that trusts only `pki`'s CA.
fn tls_client(pki: &TestPki, identity: Option<reqwest::Identity>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_certs_only([pki.ca_cert()])
        .tls_info(true)
        .pool_max_idle_per_host(0);
    if let Some(id) = identity {
        b = b.identity(id);
    }
    b.build().unwrap()
}

#[tokio::test]
async fn tls_with_a_test_ca_reloads_its_certificate_and_signs_in_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "server");
    pki.write_server();
    let clients = TestPki::new(dir.path(), "clients");
    let cfg = http_cfg(&format!(
        "[access]\nreads = \"identity\"\n[tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\nclient_cert_role = \"viewer\"\n",
        pki.path("server.pem").display(),
        pki.path("server.key").display(),
        clients.path("clients-ca.pem").display(),
    ));
    let s = Server::start(cfg, dir.path(), &settled_then("AKIATLS", |_| {})).await;
    let port = s.addr.port();
    let https = |host: &str, path: &str| format!("https://{host}:{port}{path}");
    let client = tls_client(&pki, None);
    let peer_cert = |r: &reqwest::Response| {
        r.extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|i| i.peer_certificate().map(<[u8]>::to_vec))
            .expect("the server's certificate")
    };

    // Verified against the test CA, by name and by address.
    for host in ["localhost", "127.0.0.1"] {
        let r = client.get(https(host, "/healthz")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{host}");
        assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    }
    let r = client
        .get(https("localhost", "/api/v1/findings"))
        .bearer_auth(SHARED)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let first = peer_cert(&r);
    // TLS 1.2 is the oldest spoken: a client that offers nothing newer
    // than 1.1 gets no connection.
    let only = |v: reqwest::tls::Version| {
        reqwest::Client::builder()
            .tls_certs_only([pki.ca_cert()])
            .min_tls_version(v)
            .max_tls_version(v)
            .build()
            .unwrap()
    };
    let r = only(reqwest::tls::Version::TLS_1_2)
        .get(https("localhost", "/healthz"))
        .send()
        .await;
    assert_eq!(r.unwrap().status().as_u16(), 200, "TLS 1.2");
    assert!(only(reqwest::tls::Version::TLS_1_1)
        .get(https("localhost", "/healthz"))
        .send()
        .await
        .is_err());
    // A client that does not trust the CA, and plain HTTP, get nothing.
    assert!(reqwest::Client::new()
        .get(https("localhost", "/healthz"))
        .send()
        .await
        .is_err());
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    // A renewed certificate is served without a restart.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    pki.write_server();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = client
            .get(https("localhost", "/healthz"))
            .send()
            .await
            .unwrap();
        if peer_cert(&r) != first {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = || async {
        let r = client
            .get(https("localhost", "/metrics"))
            .send()
            .await
            .unwrap();
        r.text().await.unwrap()
    };
    assert_eq!(
        metric_in(
            &metrics().await,
            "keywatch_http_tls_reloads_total{result=\"ok\"}"
        ),
        1
    );
    // A broken renewal keeps the pair in use, and says so.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::write(pki.path("server.key"), "not a key").unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        client
            .get(https("localhost", "/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        metric_in(
            &metrics().await,
            "keywatch_http_tls_reloads_total{result=\"error\"}"
        ),
        1
    );

    // A machine with a client certificate of the clients' CA reads as its name.
    let (cert, key, _) = clients.issue("scraper-1", false);
    let machine = tls_client(
        &pki,
        Some(reqwest::Identity::from_pkcs8_pem(cert.as_bytes(), key.as_bytes()).unwrap()),
    );
    let me: Value = machine
        .get(https("localhost", "/api/v1/whoami"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&me["user"], &me["role"], &me["method"]),
        (&json!("scraper-1"), &json!("viewer"), &json!("client_cert"))
    );
    let r = machine
        .get(https("localhost", "/api/v1/findings"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = machine
        .post(https(
            "localhost",
            &format!("/api/v1/findings/{}/verdict", s.ids[0]),
        ))
        .json(&json!({"status": "resolved"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403, "a viewer certificate may not act");
    // A certificate from another CA does not get through the handshake.
    let stranger = TestPki::new(dir.path(), "stranger");
    let (cert, key, _) = stranger.issue("intruder", false);
    let intruder = tls_client(
        &pki,
        Some(reqwest::Identity::from_pkcs8_pem(cert.as_bytes(), key.as_bytes()).unwrap()),
    );
    assert!(intruder
        .get(https("localhost", "/healthz"))
        .send()
        .await
        .is_err());
    // Without a certificate, reads need another identity.
    let r = client
        .get(https("localhost", "/api/v1/findings"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

/// A single sign-on proxy for tests: forwards everything to `upstream`,
/// with `X-Forwarded-Email: user` (the client's own copy dropped).
async fn sso_proxy(upstream: String, user: &'static str) -> String {
    use axum::http::header;
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (client, upstream) = (client.clone(), upstream.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default();
            let target = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let mut headers = parts.headers;
            headers.remove(header::HOST);
            headers.insert("x-forwarded-email", user.parse().unwrap());
            let r = client
                .request(parts.method, format!("{upstream}{target}"))
                .headers(headers)
                .body(body)
                .send()
                .await
                .unwrap();
            let mut out = axum::http::Response::builder().status(r.status());
            for (k, v) in r.headers() {
                if k != header::TRANSFER_ENCODING
                    && k != header::CONNECTION
                    && k != header::CONTENT_LENGTH
                {
                    out = out.header(k, v);
                }
            }
            let bytes = r.bytes().await.unwrap_or_default();
            out.body(axum::body::Body::from(bytes)).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// chromium and chromedriver, or a skip (a failure under `CI=true`).
fn browser_tools() -> Option<String> {
    external_tool(&["chromium", "chromium-browser"])?;
    external_tool(&["chromedriver"])
}

/// Runs `script` in the page and answers its value.
fn script(b: &Browser, script: &str) -> Value {
    b.cmd(
        reqwest::Method::POST,
        "/execute/sync",
        json!({"script": script, "args": []}),
    )
}

/// Whether the element `css` matches first is shown.
fn displayed(b: &Browser, css: &str) -> bool {
    let el = b
        .find_all(css)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no {css}"));
    b.cmd(
        reqwest::Method::GET,
        &format!("/element/{el}/displayed"),
        json!(null),
    ) == json!(true)
}

/// The console's messages that report the page's policy refusing something.
fn csp_violations(b: &Browser) -> Vec<String> {
    b.cmd(reqwest::Method::POST, "/se/log", json!({"type": "browser"}))
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .filter(|m| m.contains("Content Security Policy"))
        .collect()
}

#[test]
fn the_console_through_a_single_sign_on_proxy_signs_in_and_gives_a_verdict() {
    let Some(driver) = browser_tools() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = http_cfg(
        "[access]\nreads = \"identity\"\n[access.proxy]\ntrusted = [\"127.0.0.1/32\"]\nroles = { \"alice@example.com\" = \"responder\" }\n",
    );
    let s = rt.block_on(Server::start(
        cfg,
        dir.path(),
        &settled_then("AKIASSO", |_| {}),
    ));
    let alice = rt.block_on(sso_proxy(s.base.clone(), "alice@example.com"));
    let vic = rt.block_on(sso_proxy(s.base.clone(), "vic@example.com"));
    let shots = screenshot_dir();
    let browser = Browser::start(&driver);

    // Straight to keywatch, no identity: nothing to read.
    browser.go(&format!("{}/#/findings", s.base));
    browser.wait_for("#who-label", "sign in to see findings");
    browser.wait_for("main", "needs an identity");

    // Through the proxy: signed in as the proxy's user, with the verdicts
    // a responder may give.
    browser.go(&format!("{alice}/#/findings"));
    browser.wait_for(
        "#who-label",
        "Signed in as alice@example.com (responder, proxy)",
    );
    assert!(
        !displayed(&browser, "#token"),
        "no token to give behind the proxy"
    );
    browser.wait_for("tr.finding", "AKIASSO");
    browser.click_css(
        "tr.finding[data-key=AKIASSO][data-detector=new_source] button[data-verdict=expected]",
    );
    browser.wait_for("tr.finding[data-status=expected]", "AKIASSO");
    browser.screenshot(&shots, "access-sso-verdict");
    // The finding's page (rows open on click: no inline handler) shows
    // who gave it.
    browser.go(&format!("{alice}/#/key/AKIASSO"));
    browser.wait_for("main", "taught by alice@example.com");
    browser.click_css("#timeline tr.finding");
    browser.wait_for("main", "Audit trail");
    browser.wait_for("main", "alice@example.com");
    let shared = [("authorization", bearer(SHARED))];
    let shared: Vec<(&str, &str)> = shared.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (_, _, list) =
        rt.block_on(s.get("/api/v1/findings?key_id=AKIASSO&status=expected", &shared));
    let id = list["findings"][0]["id"]
        .as_str()
        .expect("the finding given a verdict")
        .to_owned();
    let trail = rt.block_on(s.trail(&id));
    assert!(!trail.is_empty());
    assert!(
        trail
            .iter()
            .all(|(who, method, _)| who == "alice@example.com" && method == "proxy"),
        "{trail:?}"
    );
    assert_eq!(csp_violations(&browser), Vec::<String>::new());

    // A viewer through the same proxy sees no verdict buttons.
    browser.go(&format!("{vic}/#/findings"));
    browser.wait_for("#who-label", "Signed in as vic@example.com (viewer, proxy)");
    browser.wait_for("tr.finding", "AKIASSO");
    assert!(
        !displayed(&browser, "tr.finding .actions"),
        "a viewer is offered verdicts"
    );
    browser.screenshot(&shots, "access-sso-viewer");
}

#[test]
fn the_console_over_tls_signs_in_with_a_token_and_gives_a_verdict() {
    let Some(driver) = browser_tools() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "console");
    let spki = pki.write_server();
    let tokens = dir.path().join("tokens.json");
    let erin = token(&tokens, "erin", Role::Responder);
    let hash = bcrypt::hash("pässword with spaces", 4).unwrap();
    let cfg = http_cfg(&format!(
        "[access]\nreads = \"identity\"\ntokens_path = \"{}\"\n[[access.users]]\nname = \"carol\"\nrole = \"viewer\"\npassword_hash = \"{hash}\"\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        tokens.display(),
        pki.path("server.pem").display(),
        pki.path("server.key").display(),
    ));
    let s = rt.block_on(Server::start(
        cfg,
        dir.path(),
        &settled_then("AKIAHTTPS", |_| {}),
    ));
    // Chromium trusts exactly this server's key (its system store cannot
    // be given a CA without tools this machine may lack); the API client
    // below checks the whole chain against the test CA.
    let pin = format!("--ignore-certificate-errors-spki-list={spki}");
    let browser = Browser::start_with(&driver, &[pin.as_str()]);
    let base = format!("https://localhost:{}", s.addr.port());
    browser.go(&format!("{base}/#/findings"));
    browser.wait_for("#who-label", "sign in to see findings");
    let input = browser.find_all("#token")[0].clone();
    browser.type_into(&input, &erin);
    browser.click(&browser.find_all("#login-button")[0]);
    browser.wait_for("#who-label", "Signed in as erin (responder, token)");
    browser.wait_for("tr.finding", "AKIAHTTPS");
    browser.click_css(
        "tr.finding[data-key=AKIAHTTPS][data-detector=new_source] button[data-verdict=expected]",
    );
    browser.wait_for("tr.finding[data-status=expected]", "AKIAHTTPS");
    browser.screenshot(&screenshot_dir(), "access-tls-verdict");
    assert_eq!(csp_violations(&browser), Vec::<String>::new());
    // Signed out, then in again with a name and password (basic auth): a
    // viewer, offered no verdicts.
    browser.click(&browser.find_all("#logout")[0]);
    browser.wait_for("#who-label", "sign in to see findings");
    let who = browser.find_all("#who")[0].clone();
    browser.type_into(&who, "carol");
    let input = browser.find_all("#token")[0].clone();
    browser.type_into(&input, "pässword with spaces");
    browser.click(&browser.find_all("#login-button")[0]);
    browser.wait_for("#who-label", "Signed in as carol (viewer, basic)");
    browser.go(&format!("{base}/#/findings"));
    browser.wait_for("tr.finding", "AKIAHTTPS");
    assert!(!displayed(&browser, "tr.finding .actions"));
    let client = tls_client(&pki, None);
    let list: Value = rt.block_on(async {
        client
            .get(format!("{base}/api/v1/findings?key_id=AKIAHTTPS"))
            .bearer_auth(&erin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let f = list["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["detector"] == "new_source")
        .unwrap();
    assert_eq!(f["status"], "expected");
    let one: Value = rt.block_on(async {
        client
            .get(format!(
                "{base}/api/v1/findings/{}",
                f["id"].as_str().unwrap()
            ))
            .bearer_auth(&erin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let last = one["audit"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (&last["who"], &last["method"]),
        (&json!("erin"), &json!("token")),
        "{one}"
    );
}

/// Strings an attacker controls, each of which would set
/// `window.__pwned` if a page ran it.
const HOSTILE: [&str; 9] = [
    "AKIA<img src=x onerror=window.__pwned=1>",
    "\"><svg onload=window.__pwned=2>",
    "<script>window.__pwned=3</script>",
    "<img src=x onerror=window.__pwned=4>",
    "<iframe src=javascript:top.__pwned=5>",
    "<img src=x onerror=window.__pwned=6>note",
    "<script>window.__pwned=7</script>ua",
    "<b onmouseover=window.__pwned=8>carol</b>",
    "'><img src=x onerror=window.__pwned=9>",
];

#[test]
fn hostile_strings_stay_inert_in_every_console_page() {
    let Some(driver) = browser_tools() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = HOSTILE[0];
    let mut events = settled_then(key, |e| {
        e.principal = Some(HOSTILE[1].into());
        e.user_agent = Some(HOSTILE[2].into());
        e.action = Some(HOSTILE[3].into());
        e.outcome = Outcome::Failure {
            code: Some(HOSTILE[4].into()),
        };
    });
    for e in &mut events {
        e.principal = Some(HOSTILE[1].into());
    }
    let s = rt.block_on(Server::start(http_cfg(""), dir.path(), &events));
    // A verdict with a hostile note, name and user agent: the audit trail.
    let id = s.ids[0].clone();
    rt.block_on(async {
        let r = s
            .client
            .post(format!("{}/api/v1/findings/{}/verdict", s.base, urlencode(&id)))
            .bearer_auth(SHARED)
            .header("user-agent", HOSTILE[6])
            .json(&json!({"status": "false_positive", "scope": "key", "note": HOSTILE[5], "by": HOSTILE[7], "assignee": HOSTILE[8]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    });
    // Incidents are grouped on the alert pipeline's own task.
    let deadline = Instant::now() + Duration::from_secs(30);
    let incident = loop {
        let list = rt.block_on(s.get("/api/v1/incidents", &[])).2;
        if let Some(id) = list["incidents"][0]["id"].as_str() {
            break id.to_owned();
        }
        assert!(Instant::now() < deadline, "no incident: {list}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let browser = Browser::start(&driver);
    browser.go(&format!("{}/#token={SHARED}", s.base));
    browser.wait_for("#who-label", "Signed in with the API token");
    let pages = [
        // An incident is named by the principal.
        ("#/incidents".to_owned(), "tr.incident", HOSTILE[1]),
        (
            format!("#/incidents/{}", urlencode(&incident)),
            "main",
            HOSTILE[3],
        ),
        ("#/findings".to_owned(), "tr.finding", HOSTILE[0]),
        (format!("#/finding/{}", urlencode(&id)), "main", HOSTILE[2]),
        (format!("#/finding/{}", urlencode(&id)), "main", HOSTILE[5]),
        (format!("#/finding/{}", urlencode(&id)), "main", HOSTILE[6]),
        (format!("#/finding/{}", urlencode(&id)), "main", HOSTILE[7]),
        (format!("#/key/{}", urlencode(key)), "main", HOSTILE[0]),
        ("#/suppressions".to_owned(), "main", HOSTILE[0]),
        ("#/review".to_owned(), "main", "inventory"),
    ];
    for (page, css, text) in &pages {
        browser.go(&format!("{}/{page}", s.base));
        // The hostile text is shown as text...
        browser.wait_for(css, text);
        // ...and nothing ran, moving the pointer over it included.
        for el in browser.find_all("b, img, svg, iframe, script") {
            let _ = browser.try_cmd(
                reqwest::Method::POST,
                "/actions",
                json!({"actions": [{"type": "pointer", "id": "mouse", "actions": [
                    {"type": "pointerMove", "origin": {ELEMENT_KEY: el}, "x": 0, "y": 0}
                ]}]}),
            );
        }
        assert_eq!(
            script(&browser, "return window.__pwned === undefined"),
            json!(true),
            "{page}"
        );
        assert_eq!(
            script(&browser, "return document.querySelectorAll('main script, main iframe, main img[onerror], main svg[onload], main [onmouseover]').length"),
            json!(0),
            "{page}"
        );
    }
    browser.screenshot(&screenshot_dir(), "access-hostile");
    assert_eq!(csp_violations(&browser), Vec::<String>::new());
}

/// WebDriver's element reference key.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn check_config_masks_every_access_secret() {
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("correct horse battery", 4).unwrap();
    let path = dir.path().join("keywatch.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[http]
listen = "0.0.0.0:9464"
api_token = "{SHARED}"
[http.access]
tokens_path = "{}"
[http.access.proxy]
trusted = ["10.0.0.5/32"]
roles = {{ "alice@example.com" = "admin" }}
[[http.access.users]]
name = "carol"
role = "responder"
password_hash = "{hash}"
"#,
            dir.path().join("tokens.json").display()
        ),
    )
    .unwrap();
    let o = run(keywatch().args(["check-config", "-c"]).arg(&path));
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!out.contains(SHARED) && !out.contains(&hash), "{out}");
    assert!(!out.contains(&hash[7..]), "no part of the hash: {out}");
    assert!(out.contains("password_hash = \"********\""), "{out}");
    assert!(
        out.contains("alice@example.com") && out.contains("10.0.0.5/32"),
        "{out}"
    );
    // A bad one is refused by name, without showing it.
    std::fs::write(
        &path,
        "[[http.access.users]]\nname = \"carol\"\nrole = \"viewer\"\npassword_hash = \"plain-password\"\n",
    )
    .unwrap();
    let o = run(keywatch().args(["check-config", "-c"]).arg(&path));
    assert_eq!(o.status.code(), Some(64));
    let err = stderr(&o);
    assert!(
        err.contains("http.access.users[0].password_hash") && !err.contains("plain-password"),
        "{err}"
    );
}

#[test]
fn a_running_daemon_refuses_a_token_revoked_through_the_cli_at_once() {
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::DefaultProducerContext;
    let cluster: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1).unwrap();
    cluster.create_topic("audit", 1, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let listen = free_loopback_addr();
    let config = dir.path().join("keywatch.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[kafka]
brokers = "{}"
topics = ["audit"]
group_id = "access"
startup_timeout = "10s"
[http]
listen = "{listen}"
[http.access]
reads = "identity"
tokens_path = "{}"
[checkpoint]
dir = "{}"
[changelog]
enabled = false
"#,
            cluster.bootstrap_servers(),
            dir.path().join("tokens.json").display(),
            dir.path().join("state").display(),
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let cli = |args: &[&str]| {
        let o = run(keywatch().arg("token").args(args));
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let token = cli(&["create", "-c", c, "--user", "frank", "--role", "responder"]);
    let token = token.trim();
    let log = dir.path().join("run.log");
    let _daemon = KillOnDrop(
        keywatch()
            .args(["run", "-c", c])
            .env("KEYWATCH_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::blocking::Client::new();
    let findings = |token: &str| {
        client
            .get(format!("http://{listen}/api/v1/findings"))
            .bearer_auth(token)
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while findings(token) != 200 {
        assert!(
            Instant::now() < deadline,
            "the daemon never let the token read; its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let rule = json!({"key": "AKIADAEMON", "reason": "test"});
    let add = |token: &str| {
        client
            .post(format!("http://{listen}/api/v1/suppressions"))
            .bearer_auth(token)
            .json(&rule)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(add(token), 201, "a responder adds a suppression");
    // A token created while the daemon runs works at once too.
    let late = cli(&["create", "-c", c, "--user", "gina", "--role", "viewer"]);
    assert_eq!(findings(late.trim()), 200);
    assert_eq!(add(late.trim()), 403, "a viewer may not");
    let id = token.split('_').nth(1).unwrap();
    cli(&["revoke", "-c", c, id]);
    assert_eq!(
        findings(token),
        401,
        "revoked: refused from the next request"
    );
    assert_eq!(add(token), 401);
    assert_eq!(findings(late.trim()), 200, "other tokens unaffected");
}
