//! `[http.access]`: who may read and act, and how they sign in.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{policy, Role};
use crate::secret::Secret;
use keywatch_core::config::{invalid, Cidr, ConfigError};

/// `[http.access]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// Whether reading findings, incidents, keys, suppressions and the
    /// review needs an identity: `auto` (yes unless `http.listen` is a
    /// loopback address), `identity` (always) or `open` (never; the daemon
    /// warns at start when it listens beyond loopback). Writes always need
    /// an identity with a role that may make them.
    pub reads: Reads,
    /// Routes anyone may read even when reads need an identity: the
    /// probes and the scrape, as Prometheus and Kubernetes reach them.
    pub open_paths: Vec<String>,
    /// File of per-user API tokens (`keywatch token create`), stored as
    /// SHA-256 hashes; re-read when it changes, so a revocation holds at
    /// once. Empty: per-user tokens are off.
    pub tokens_path: PathBuf,
    /// Users signed in by a single sign-on proxy's header.
    pub proxy: Option<ProxyConfig>,
    /// Basic-auth users with bcrypt hashes of their passwords.
    pub users: Vec<UserConfig>,
    /// Failed sign-ins one address may make per minute; past it its
    /// requests with credentials answer 429 until the minute is over.
    pub max_failures_per_minute: u32,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            reads: Reads::Auto,
            // What probes and scrapers reach without credentials today.
            open_paths: ["/metrics", "/healthz", "/readyz"]
                .map(str::to_owned)
                .to_vec(),
            tokens_path: PathBuf::new(),
            proxy: None,
            users: Vec::new(),
            // A person mistyping a password a few times stays well under
            // it; guessing a bcrypt password or a 256-bit token at 10 a
            // minute is hopeless.
            max_failures_per_minute: 10,
        }
    }
}

/// Whether reads need an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reads {
    /// An identity unless `http.listen` is loopback.
    Auto,
    /// Always an identity.
    Identity,
    /// Open to anyone who reaches the port.
    Open,
}

/// `[http.access.proxy]`: a single sign-on proxy (oauth2-proxy, an
/// ingress with external auth) in front of keywatch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// The header the proxy sets to the signed-in user: oauth2-proxy's
    /// `X-Forwarded-Email` or `X-Auth-Request-User`, Grafana's
    /// `X-WEBAUTH-USER`.
    #[serde(default = "default_proxy_header")]
    pub header: String,
    /// The proxy's addresses (networks). A request carrying the header from
    /// any other address is refused and counted.
    pub trusted: Vec<Cidr>,
    /// The role of a user not named in `roles`.
    #[serde(default = "default_proxy_role")]
    pub default_role: Role,
    /// Roles of named users, by the header's value.
    #[serde(default)]
    pub roles: BTreeMap<String, Role>,
}

/// oauth2-proxy's header with `--set-xauthrequest` / `--pass-user-headers`.
fn default_proxy_header() -> String {
    "X-Forwarded-Email".to_owned()
}

/// Signed in through the organisation's SSO: may look, not act, until named.
fn default_proxy_role() -> Role {
    Role::Viewer
}

/// `[[http.access.users]]`: a basic-auth user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The user name.
    pub name: String,
    /// What the user may do.
    pub role: Role,
    /// bcrypt hash of the password (`htpasswd -nbBC 12 NAME PASSWORD`,
    /// the part after the colon), as Prometheus' `basic_auth_users`; may be
    /// `env:NAME` or `file:PATH` and is masked like every secret.
    pub password_hash: Secret,
}

impl AccessConfig {
    /// Whether reads need an identity for a server listening on `listen`.
    pub fn reads_need_identity(&self, listen: &str) -> bool {
        match self.reads {
            Reads::Identity => true,
            Reads::Open => false,
            Reads::Auto => !is_loopback(listen),
        }
    }

    /// Checks every field; errors name the key and the value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for path in &self.open_paths {
            if !policy::read_routes().any(|r| r == path) {
                return Err(invalid(
                    "http.access.open_paths",
                    format!("{path:?}"),
                    format!(
                        "is not a route that reads; one of {}",
                        policy::read_routes().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        if self.max_failures_per_minute == 0 {
            return Err(invalid(
                "http.access.max_failures_per_minute",
                0,
                "must be at least 1",
            ));
        }
        if let Some(proxy) = &self.proxy {
            let name = axum::http::HeaderName::try_from(proxy.header.as_str());
            if name.is_err() || proxy.header.eq_ignore_ascii_case("authorization") {
                return Err(invalid(
                    "http.access.proxy.header",
                    format!("{:?}", proxy.header),
                    "must be a header name other than Authorization, e.g. \"X-Forwarded-Email\"",
                ));
            }
            if proxy.trusted.is_empty() {
                return Err(invalid(
                    "http.access.proxy.trusted",
                    "[]",
                    "list the proxy's addresses (e.g. [\"10.0.0.5/32\"]): the header is believed only from them",
                ));
            }
            if let Some(all) = proxy.trusted.iter().find(|c| c.0.prefix_len() == 0) {
                return Err(invalid(
                    "http.access.proxy.trusted",
                    all.0,
                    "trusts every address: anyone could then name any user; list the proxy's own addresses",
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, user) in self.users.iter().enumerate() {
            let key = format!("http.access.users[{i}]");
            if user.name.is_empty() || user.name.contains(':') || user.name.trim() != user.name {
                return Err(invalid(
                    &format!("{key}.name"),
                    format!("{:?}", user.name),
                    "must be a name without colons or surrounding spaces (basic auth splits on the first colon)",
                ));
            }
            if !seen.insert(&user.name) {
                return Err(invalid(
                    &format!("{key}.name"),
                    format!("{:?}", user.name),
                    "is listed twice",
                ));
            }
            if user
                .password_hash
                .expose()
                .parse::<bcrypt::HashParts>()
                .is_err()
            {
                return Err(invalid(
                    &format!("{key}.password_hash"),
                    &user.password_hash,
                    "is not a bcrypt hash ($2b$12$... as `htpasswd -nbBC 12 NAME PASSWORD` prints after the colon)",
                ));
            }
        }
        Ok(())
    }
}

/// Whether `listen` (an address and port) is a loopback address.
pub fn is_loopback(listen: &str) -> bool {
    listen
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback())
}
