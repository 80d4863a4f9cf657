//! Who is asking, and what they may do.
//!
//! An [`Identity`] is a user, a [`Role`] and the [`Method`] that proved it.
//! [`Access`] turns a request's credentials into one, in this order:
//!
//! 1. a trusted proxy's header (`http.access.proxy`): a single sign-on proxy
//!    such as oauth2-proxy names the user; the header counts only from the
//!    proxy's addresses, and from any other address the request is refused;
//! 2. `Authorization: Bearer`: the shared `http.api_token` (an admin, for
//!    automation deployed before per-user tokens) or a per-user token
//!    ([`tokens`], stored as SHA-256 hashes, revocable while the daemon runs);
//! 3. `Authorization: Basic` against bcrypt hashes in `http.access.users`;
//! 4. a client certificate signed by `http.tls.client_ca` (its subject's
//!    common name is the user).
//!
//! [`policy`] is the one table of which role each route needs; the HTTP
//! server's guard asks [`Access::admit`] before any handler runs, so no
//! handler checks access itself. Failed attempts are counted and, per
//! address, throttled ([`throttle`]).

pub mod config;
pub mod policy;
pub mod throttle;
pub mod tls;
pub mod tokens;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderName};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use config::{AccessConfig, ProxyConfig, Reads, UserConfig};
pub use policy::Need;
pub use tls::TlsConfig;

use crate::secret::Secret;
use keywatch_core::metrics::Metrics;

/// What a caller may do; each role may do everything the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads findings, incidents, keys, suppressions and the review.
    Viewer,
    /// Also gives verdicts, assigns findings, adds and removes suppressions.
    Responder,
    /// Also manages tokens and settings.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Responder, Role::Admin];

    /// The name used in configuration, the CLI and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Responder => "responder",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}: viewer, responder or admin"))
    }
}

/// How an identity was proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// A trusted proxy's user header.
    Proxy,
    /// A per-user API token.
    Token,
    /// Basic auth against a bcrypt hash in the configuration.
    Basic,
    /// The shared `http.api_token`.
    ApiToken,
    /// A client certificate.
    ClientCert,
}

impl Method {
    /// The name in the audit trail, the API and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Proxy => "proxy",
            Method::Token => "token",
            Method::Basic => "basic",
            Method::ApiToken => "api_token",
            Method::ClientCert => "client_cert",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The user's name: the proxy's header, the token's or basic-auth
    /// user, the certificate's common name; `api_token` for the shared token.
    pub user: String,
    /// What they may do.
    pub role: Role,
    /// How they proved it.
    pub method: Method,
}

impl Identity {
    /// Whether the identity names a person or a machine of its own. The
    /// shared `http.api_token` does not: whoever holds it may say who they
    /// are (`"by"`), and the audit trail marks such a name `api_token`.
    pub fn is_personal(&self) -> bool {
        self.method != Method::ApiToken
    }
}

/// The verified client certificate of a TLS connection: its subject's
/// common name (or the whole subject without one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert(pub String);

/// Why a request was not let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The route needs an identity and the request has none.
    Missing,
    /// Credentials were given and are wrong (or revoked).
    Invalid(Method),
    /// The proxy's user header came from an address that is not a trusted proxy.
    UntrustedProxy {
        /// The header's name.
        header: String,
    },
    /// Too many failed attempts from this address lately.
    Throttled {
        /// When the address may try again.
        retry_after: Duration,
    },
    /// The identity's role may not do this.
    Forbidden {
        /// Who asked.
        identity: Identity,
        /// The role the route needs.
        needs: Role,
    },
    /// A write, and no way to authenticate is configured at all.
    WritesDisabled,
    /// The route has no such method (not a refusal of the caller).
    NotAllowed {
        /// The route's methods, for `Allow`.
        allow: &'static str,
    },
}

impl Denied {
    /// The `reason` label of `keywatch_http_auth_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Denied::Missing => "missing",
            Denied::Invalid(_) => "invalid",
            Denied::UntrustedProxy { .. } => "untrusted_proxy",
            Denied::Throttled { .. } => "throttled",
            Denied::Forbidden { .. } => "forbidden",
            Denied::WritesDisabled => "writes_disabled",
            Denied::NotAllowed { .. } => "not_allowed",
        }
    }

    /// The `method` label: how the caller tried (`none` without credentials).
    fn method(&self) -> &'static str {
        match self {
            Denied::Invalid(m) => m.as_str(),
            Denied::UntrustedProxy { .. } => Method::Proxy.as_str(),
            Denied::Forbidden { identity, .. } => identity.method.as_str(),
            _ => "none",
        }
    }
}

/// Labels of `keywatch_http_auth_failures_total`, exported from the start.
const FAILURE_LABELS: [(&str, &str); 8] = [
    ("none", "missing"),
    ("token", "invalid"),
    ("api_token", "invalid"),
    ("basic", "invalid"),
    ("proxy", "untrusted_proxy"),
    ("none", "throttled"),
    ("none", "forbidden"),
    ("none", "writes_disabled"),
];

/// Successful basic-auth checks remembered, so a console polling every few
/// seconds pays for bcrypt once, not per request (as Prometheus'
/// exporter-toolkit caches them).
const BASIC_CACHE: usize = 1024;

/// Decides who a request comes from. Built once at start from `[http]`.
pub struct Access {
    reads_need_identity: bool,
    open_paths: Vec<String>,
    api_token: Option<Secret>,
    proxy: Option<Proxy>,
    users: HashMap<String, (Role, Secret)>,
    /// A bcrypt hash no password matches, checked for unknown users so
    /// that an answer's time does not tell which users exist.
    decoy_hash: Option<String>,
    basic_ok: Mutex<HashMap<[u8; 32], (String, Role)>>,
    tokens: Option<tokens::TokenIndex>,
    client_cert_role: Option<Role>,
    throttle: throttle::Throttle,
    metrics: Arc<Metrics>,
}

struct Proxy {
    header: HeaderName,
    /// The header's name as configured, for messages.
    name: String,
    trusted: Vec<ipnet::IpNet>,
    default_role: Role,
    roles: HashMap<String, Role>,
}

impl Access {
    /// Access for `[http.access]` on a server listening on `listen`, with
    /// client certificates when `tls` asks for them, and the shared token
    /// `api_token` (`http.api_token`). The configuration is validated already.
    pub fn new(
        a: &AccessConfig,
        listen: &str,
        tls: Option<&TlsConfig>,
        api_token: Option<Secret>,
        metrics: Arc<Metrics>,
    ) -> Access {
        for (method, reason) in FAILURE_LABELS {
            metrics
                .http_auth_failures
                .with_label_values(&[method, reason]);
        }
        let proxy = a.proxy.as_ref().map(|p| Proxy {
            header: HeaderName::try_from(p.header.as_str())
                .unwrap_or(HeaderName::from_static("x-forwarded-email")),
            name: p.header.clone(),
            trusted: p.trusted.iter().map(|c| c.0).collect(),
            default_role: p.default_role,
            roles: p.roles.clone().into_iter().collect(),
        });
        let users: HashMap<String, (Role, Secret)> = a
            .users
            .iter()
            .map(|u| (u.name.clone(), (u.role, u.password_hash.clone())))
            .collect();
        let decoy_hash = a.users.first().map(|u| {
            let cost = u
                .password_hash
                .expose()
                .parse::<bcrypt::HashParts>()
                .map(|p| p.get_cost())
                .unwrap_or(bcrypt::DEFAULT_COST);
            bcrypt::hash("keywatch decoy", cost).unwrap_or_default()
        });
        Access {
            reads_need_identity: a.reads_need_identity(listen),
            open_paths: a.open_paths.clone(),
            api_token: api_token.filter(|t| !t.expose().trim().is_empty()),
            proxy,
            users,
            decoy_hash,
            basic_ok: Mutex::new(HashMap::new()),
            tokens: (!a.tokens_path.as_os_str().is_empty())
                .then(|| tokens::TokenIndex::new(a.tokens_path.clone())),
            client_cert_role: tls
                .filter(|t| t.client_ca.is_some())
                .map(|t| t.client_cert_role),
            throttle: throttle::Throttle::new(a.max_failures_per_minute, Duration::from_secs(60)),
            metrics,
        }
    }

    /// Whether reads need an identity (`http.access.reads`).
    pub fn reads_need_identity(&self) -> bool {
        self.reads_need_identity
    }

    /// The per-user tokens file, when they are on.
    pub fn tokens_path(&self) -> Option<&std::path::Path> {
        self.tokens.as_ref().map(tokens::TokenIndex::path)
    }

    /// Whether any way to authenticate is configured.
    pub fn any_method(&self) -> bool {
        self.api_token.is_some()
            || self.proxy.is_some()
            || !self.users.is_empty()
            || self.tokens.is_some()
            || self.client_cert_role.is_some()
    }

    /// The ways to authenticate configured, for the console's sign-in.
    pub fn methods(&self) -> Vec<&'static str> {
        let mut m = Vec::new();
        if self.proxy.is_some() {
            m.push(Method::Proxy.as_str());
        }
        if self.tokens.is_some() {
            m.push(Method::Token.as_str());
        }
        if !self.users.is_empty() {
            m.push(Method::Basic.as_str());
        }
        if self.api_token.is_some() {
            m.push(Method::ApiToken.as_str());
        }
        if self.client_cert_role.is_some() {
            m.push(Method::ClientCert.as_str());
        }
        m
    }

    /// Decides a request to `path` (the route as registered, e.g.
    /// `/api/v1/findings/{id}`): its identity, if any, when it may go on.
    /// Every refusal is counted; wrong credentials count toward the
    /// address's throttle. A method the route does not have is
    /// [`Denied::NotAllowed`], whoever asks.
    pub async fn admit(
        &self,
        method: &axum::http::Method,
        path: &str,
        peer: Option<IpAddr>,
        headers: &HeaderMap,
        cert: Option<&ClientCert>,
    ) -> Result<Option<Identity>, Denied> {
        let decided = self.decide(method, path, peer, headers, cert).await;
        let refused = match &decided {
            // A wrong method is the client's mistake, not a refusal of who it is.
            Err(Denied::NotAllowed { .. }) | Ok(_) => None,
            Err(denied) => Some(denied),
        };
        if let Some(denied) = refused {
            self.metrics
                .http_auth_failures
                .with_label_values(&[denied.method(), denied.reason()])
                .inc();
            if matches!(denied, Denied::Invalid(_) | Denied::UntrustedProxy { .. }) {
                if let Some(ip) = peer {
                    self.throttle.failed(ip, Instant::now());
                }
            }
        }
        decided
    }

    async fn decide(
        &self,
        method: &axum::http::Method,
        path: &str,
        peer: Option<IpAddr>,
        headers: &HeaderMap,
        cert: Option<&ClientCert>,
    ) -> Result<Option<Identity>, Denied> {
        let need = match policy::need(method, path) {
            Need::NotAllowed(allow) => return Err(Denied::NotAllowed { allow }),
            Need::Open => return self.authenticate(peer, headers, cert).await,
            Need::Role(Role::Viewer)
                if !self.reads_need_identity || self.open_paths.iter().any(|p| p == path) =>
            {
                return self.authenticate(peer, headers, cert).await
            }
            Need::Role(role) if role > Role::Viewer && !self.any_method() => {
                return Err(Denied::WritesDisabled)
            }
            Need::Role(role) => role,
        };
        let identity = self.authenticate(peer, headers, cert).await?;
        match identity {
            Some(id) if id.role >= need => Ok(Some(id)),
            Some(id) => Err(Denied::Forbidden {
                identity: id,
                needs: need,
            }),
            None => Err(Denied::Missing),
        }
    }

    /// The request's identity: `None` without credentials, an error for
    /// wrong ones.
    pub async fn authenticate(
        &self,
        peer: Option<IpAddr>,
        headers: &HeaderMap,
        cert: Option<&ClientCert>,
    ) -> Result<Option<Identity>, Denied> {
        let proxied = self
            .proxy
            .as_ref()
            .and_then(|p| Some((p, headers.get(&p.header)?)));
        let authorization = headers.get(header::AUTHORIZATION);
        if proxied.is_none() && authorization.is_none() {
            return Ok(self.by_certificate(cert));
        }
        if let Some(ip) = peer {
            if let Some(retry_after) = self.throttle.blocked(ip, Instant::now()) {
                return Err(Denied::Throttled { retry_after });
            }
        }
        if let Some((proxy, value)) = proxied {
            let trusted = peer.is_some_and(|ip| proxy.trusted.iter().any(|n| n.contains(&ip)));
            let user = value.to_str().map(str::trim).unwrap_or_default();
            if !trusted {
                return Err(Denied::UntrustedProxy {
                    header: proxy.name.clone(),
                });
            }
            if user.is_empty() {
                return Err(Denied::Invalid(Method::Proxy));
            }
            let role = proxy.roles.get(user).copied().unwrap_or(proxy.default_role);
            return Ok(Some(Identity {
                user: user.chars().take(256).collect(),
                role,
                method: Method::Proxy,
            }));
        }
        let value = authorization
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if let Some(token) = strip_scheme(value, "Bearer") {
            return self.bearer(token.trim()).map(Some);
        }
        if let Some(encoded) = strip_scheme(value, "Basic") {
            return self.basic(encoded.trim()).await.map(Some);
        }
        Err(Denied::Invalid(Method::Token))
    }

    fn by_certificate(&self, cert: Option<&ClientCert>) -> Option<Identity> {
        let (role, cert) = (self.client_cert_role?, cert?);
        Some(Identity {
            user: cert.0.clone(),
            role,
            method: Method::ClientCert,
        })
    }

    fn bearer(&self, given: &str) -> Result<Identity, Denied> {
        if given.is_empty() {
            return Err(Denied::Invalid(Method::Token));
        }
        if let Some(shared) = &self.api_token {
            if constant_time_eq(given.as_bytes(), shared.expose().as_bytes()) {
                return Ok(Identity {
                    user: "api_token".to_owned(),
                    role: Role::Admin,
                    method: Method::ApiToken,
                });
            }
        }
        let Some(index) = &self.tokens else {
            return Err(Denied::Invalid(Method::ApiToken));
        };
        match index.lookup(given) {
            Some((user, role)) => Ok(Identity {
                user,
                role,
                method: Method::Token,
            }),
            None => Err(Denied::Invalid(Method::Token)),
        }
    }

    async fn basic(&self, encoded: &str) -> Result<Identity, Denied> {
        let invalid = Denied::Invalid(Method::Basic);
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or(invalid.clone())?;
        let (name, password) = decoded.split_once(':').ok_or(invalid.clone())?;
        let remembered: [u8; 32] = Sha256::new()
            .chain_update(name)
            .chain_update([0])
            .chain_update(password)
            .finalize()
            .into();
        if let Some((user, role)) = self.lock_basic().get(&remembered).cloned() {
            return Ok(Identity {
                user,
                role,
                method: Method::Basic,
            });
        }
        let (role, hash) = match self.users.get(name) {
            Some((role, hash)) => (Some(*role), hash.expose().to_owned()),
            None => (None, self.decoy_hash.clone().ok_or(invalid.clone())?),
        };
        let password = password.to_owned();
        // bcrypt takes tens of milliseconds by design: off the async threads.
        let matches = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        let Some(role) = role.filter(|_| matches) else {
            return Err(invalid);
        };
        let mut cache = self.lock_basic();
        if cache.len() >= BASIC_CACHE {
            cache.clear();
        }
        cache.insert(remembered, (name.to_owned(), role));
        Ok(Identity {
            user: name.to_owned(),
            role,
            method: Method::Basic,
        })
    }

    fn lock_basic(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (String, Role)>> {
        self.basic_ok.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `value` without its authorization scheme (case-insensitive, as RFC 9110 says).
fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = value.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then_some(rest)
}

/// Equal in time independent of where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests;
