//! `[http]`: the metrics and API server.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError, HumanDuration, Secret};
use crate::auth::{AccessConfig, TlsConfig};

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address the server binds: loopback by default, so nothing is exposed
    /// until you choose to (`0.0.0.0:9464` in a container).
    pub listen: String,
    /// Shared bearer token for automation (`env:NAME` / `file:PATH`): an
    /// admin, named `api_token` in the audit trail (with the `"by"` the
    /// caller gives). Per-user tokens, users and a proxy are in
    /// `[http.access]`.
    pub api_token: Option<Secret>,
    /// Who may read and act, and how they sign in.
    pub access: AccessConfig,
    /// TLS on the listener; unset: plain HTTP.
    pub tls: Option<TlsConfig>,
    /// Findings kept for `/api/v1/findings`.
    pub recent_findings: usize,
    /// Series `keywatch_anomaly_active` may hold at once; past it findings are
    /// still alerted but not exported (counted in
    /// `keywatch_anomaly_active_dropped_total`).
    pub max_active_anomalies: usize,
    /// Gauges that need a scan of every key (dormant keys, keys by age) are
    /// refreshed this often, off the scrape path.
    pub gauges_interval: HumanDuration,
    /// A request taking longer is answered 503.
    pub request_timeout: HumanDuration,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Time a client has to send a request's line and headers, counted from
    /// when the server starts waiting for them: when the connection opens,
    /// and after each response on a keep-alive connection. A silent or
    /// slow-header client (slowloris) is disconnected after it.
    pub header_read_timeout: HumanDuration,
    /// A keep-alive connection with no request being handled is closed after
    /// this long (also a client that stops reading its response). At most
    /// `header_read_timeout`, which bounds the same wait.
    pub idle_timeout: HumanDuration,
    /// Connections open at once. A new connection past it closes the one
    /// idle the longest (no request being handled); when every connection is
    /// busy it is refused. Lowered at start to fit the open-files limit.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            // Prometheus' registered default port for keywatch-like exporters' range; loopback only.
            listen: "127.0.0.1:9464".to_owned(),
            api_token: None,
            access: AccessConfig::default(),
            tls: None,
            // A day of findings for a large fleet; ~2 KB each.
            recent_findings: 1000,
            // A thousand keys in trouble at once is an incident of its own;
            // beyond it a per-key series helps nobody and costs Prometheus.
            max_active_anomalies: 1000,
            // Faster than any sane scrape interval, cheap even at a million keys.
            gauges_interval: HumanDuration::secs(15),
            request_timeout: HumanDuration::secs(10),
            // Suppression rules are a few hundred bytes.
            max_body_bytes: 64 * 1024,
            // A real client sends its headers in one packet; hyper's own
            // default (30s) leaves a slowloris client three times as long.
            header_read_timeout: HumanDuration::secs(10),
            // Scrapers and API clients reconnect cheaply; an idle socket is
            // only a file descriptor an attacker holds.
            idle_timeout: HumanDuration::secs(5),
            // Far above the scrapers, dashboards and operators of one daemon,
            // far below the usual open-files limit once raised at start.
            max_connections: 1024,
        }
    }
}

/// Shortest write token accepted: 16 characters is ~95 bits of a random
/// alphanumeric token, far past guessing over HTTP.
pub const MIN_TOKEN_CHARS: usize = 16;

impl HttpConfig {
    /// Checks the listen address and limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "http.listen",
                format!("{:?}", self.listen),
                "must be an address and port, e.g. \"127.0.0.1:9464\"",
            ));
        }
        if self.recent_findings == 0 {
            return Err(invalid("http.recent_findings", 0, "must be at least 1"));
        }
        if let Some(token) = &self.api_token {
            // An empty token (an unset variable, an empty file) would let a
            // missing Authorization header through: refuse it by name.
            if token.expose().trim().len() < MIN_TOKEN_CHARS {
                return Err(invalid(
                    "http.api_token",
                    token,
                    format!(
                        "resolves to {} characters; a write token needs at least {MIN_TOKEN_CHARS} (or remove the key: the API is then read-only)",
                        token.expose().trim().len()
                    ),
                ));
            }
        }
        for (key, d) in [
            ("http.request_timeout", self.request_timeout),
            ("http.header_read_timeout", self.header_read_timeout),
            ("http.idle_timeout", self.idle_timeout),
        ] {
            if !(0.1..=300.0).contains(&d.0.as_secs_f64()) {
                return Err(invalid(key, d, "must be between 100ms and 5m"));
            }
        }
        if self.idle_timeout.0 > self.header_read_timeout.0 {
            return Err(invalid(
                "http.idle_timeout",
                self.idle_timeout,
                format!(
                    "must be at most http.header_read_timeout ({}): waiting for a keep-alive connection's next request is waiting for its headers",
                    self.header_read_timeout
                ),
            ));
        }
        if self.max_connections == 0 {
            return Err(invalid("http.max_connections", 0, "must be at least 1"));
        }
        self.access.validate()?;
        if let Some(tls) = &self.tls {
            tls.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HttpConfig, String> {
        let cfg: HttpConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(cfg)
    }

    #[test]
    fn connection_limits_read_and_checked() {
        let cfg =
            parse("header_read_timeout = \"2s\"\nidle_timeout = \"500ms\"\nmax_connections = 64\n")
                .unwrap();
        assert_eq!(cfg.header_read_timeout, HumanDuration::secs(2));
        assert_eq!(cfg.max_connections, 64);
        let err = parse("idle_timeout = \"30s\"\n").unwrap_err();
        assert!(
            err.contains("http.idle_timeout") && err.contains("30s") && err.contains("10s"),
            "{err}"
        );
        let err = parse("header_read_timeout = \"1h\"\n").unwrap_err();
        assert!(err.contains("http.header_read_timeout"), "{err}");
        let err = parse("max_connections = 0\n").unwrap_err();
        assert!(err.contains("http.max_connections"), "{err}");
        let err = parse("max_conections = 10\n").unwrap_err();
        assert!(err.contains("max_conections"), "{err}");
    }
}
