//! `[http]`: the metrics and API server.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError, HumanDuration, Secret};

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address the server binds: loopback by default, so nothing is exposed
    /// until you choose to (`0.0.0.0:9464` in a container).
    pub listen: String,
    /// Bearer token that allows adding and removing suppressions through the
    /// API (`env:NAME` / `file:PATH`). Unset: the API is read-only.
    pub api_token: Option<Secret>,
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
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            // Prometheus' registered default port for keywatch-like exporters' range; loopback only.
            listen: "127.0.0.1:9464".to_owned(),
            api_token: None,
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
        let t = self.request_timeout.0.as_secs_f64();
        if !(0.1..=300.0).contains(&t) {
            return Err(invalid(
                "http.request_timeout",
                self.request_timeout,
                "must be between 100ms and 5m",
            ));
        }
        Ok(())
    }
}
