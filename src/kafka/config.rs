//! `[kafka]`: where events come from and how to reach the brokers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use keywatch_core::types::HumanDuration;

/// `[kafka]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma-separated `host:port`.
    pub brokers: String,
    /// Consumer group; instances with the same group share the partitions.
    pub group_id: String,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Where undecodable messages are produced, unchanged, with headers naming
    /// the reason and their origin. Empty: counted only.
    pub dead_letter_topic: String,
    /// Fail at start when the brokers cannot be reached, or a topic is not
    /// found, within this time.
    pub startup_timeout: HumanDuration,
    /// On SIGTERM/SIGINT: stop fetching, finish what was fetched, commit, and
    /// exit within this time.
    pub shutdown_timeout: HumanDuration,
    /// `/readyz` reports not ready once no broker has been reachable for
    /// this long (a WARN line says so when it starts).
    pub unreachable_after: HumanDuration,
    /// Stored offsets are committed in the background this often.
    pub commit_interval: HumanDuration,
    /// Threads that decode and apply messages; each partition is applied on
    /// one of them, in order. 1: the polling thread itself; more: that many
    /// apply threads, and the polling thread only polls and hands over.
    /// Default 0: one per core (at most 8).
    pub apply_threads: u16,
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub security_protocol: SecurityProtocol,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (with a `sasl_*` protocol).
    pub sasl_mechanism: Option<SaslMechanism>,
    /// SASL user name.
    pub sasl_username: Option<String>,
    /// SASL password (`env:NAME` or `file:PATH` keeps it out of the file).
    pub sasl_password: Option<Secret>,
    /// CA bundle to verify the brokers (PEM file).
    pub ssl_ca_location: Option<String>,
    /// Client certificate for mutual TLS (PEM file).
    pub ssl_certificate_location: Option<String>,
    /// Client key for mutual TLS (PEM file).
    pub ssl_key_location: Option<String>,
    /// Password of the client key.
    pub ssl_key_password: Option<Secret>,
    /// Any other librdkafka property, passed as is (they win over the above).
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".to_owned(),
            group_id: "keywatch".to_owned(),
            topics: vec!["audit-events".to_owned()],
            dead_letter_topic: String::new(),
            // Long enough for a broker restart, short enough that a typo in
            // `brokers` fails the rollout instead of hanging it.
            startup_timeout: HumanDuration::secs(30),
            // Kubernetes' default termination grace period.
            shutdown_timeout: HumanDuration::secs(30),
            // As startup_timeout: a broker restart, not an outage.
            unreachable_after: HumanDuration::secs(30),
            // librdkafka's default auto-commit interval.
            commit_interval: HumanDuration::secs(5),
            apply_threads: 0,
            security_protocol: SecurityProtocol::Plaintext,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            ssl_key_password: None,
            properties: BTreeMap::new(),
        }
    }
}

/// Transport security to the brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    /// No TLS, no SASL.
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL without TLS.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// librdkafka's name.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// SASL mechanisms librdkafka supports without extra libraries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaslMechanism {
    /// User name and password in the clear (use with TLS).
    #[serde(rename = "PLAIN")]
    Plain,
    /// Salted challenge-response, SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// Salted challenge-response, SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// librdkafka's name.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl KafkaConfig {
    /// How many threads apply messages: `apply_threads`, or one per core
    /// (at most 8) when it is 0.
    pub fn apply_lanes(&self) -> usize {
        match self.apply_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
            n => n as usize,
        }
    }

    /// How many pipelines the Kafka source takes: the polling thread's, and
    /// one per apply thread when there is more than one (the polling thread
    /// then only dispatches).
    pub fn pipelines(&self) -> usize {
        match self.apply_lanes() {
            0 | 1 => 1,
            n => n + 1,
        }
    }

    /// Cross-field checks.
    pub fn validate(&self) -> Result<(), keywatch_core::types::ConfigError> {
        use keywatch_core::types::invalid;
        if self.apply_threads > 64 {
            return Err(invalid(
                "kafka.apply_threads",
                self.apply_threads,
                "must be at most 64 (0 picks one per core)",
            ));
        }
        if self.brokers.trim().is_empty() {
            return Err(invalid(
                "kafka.brokers",
                "\"\"",
                "must name at least one broker",
            ));
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            return Err(invalid(
                "kafka.topics",
                format!("{:?}", self.topics),
                "must list at least one non-empty topic",
            ));
        }
        if self.group_id.trim().is_empty() {
            return Err(invalid("kafka.group_id", "\"\"", "must not be empty"));
        }
        if self.security_protocol.sasl() {
            if self.sasl_mechanism.is_none() {
                return Err(invalid(
                    "kafka.sasl_mechanism",
                    "(unset)",
                    format!(
                        "is required with security_protocol = {:?}",
                        self.security_protocol.as_str()
                    ),
                ));
            }
            if self.sasl_username.is_none() || self.sasl_password.is_none() {
                return Err(invalid(
                    "kafka.sasl_username / kafka.sasl_password",
                    "(unset)",
                    "are required with SASL",
                ));
            }
        } else if self.sasl_mechanism.is_some() {
            return Err(invalid(
                "kafka.sasl_mechanism",
                self.sasl_mechanism.map_or("", SaslMechanism::as_str),
                format!(
                    "needs security_protocol = \"sasl_plaintext\" or \"sasl_ssl\", not {:?}",
                    self.security_protocol.as_str()
                ),
            ));
        }
        for (key, d, min, max) in [
            ("kafka.startup_timeout", self.startup_timeout, 1, 3600),
            ("kafka.shutdown_timeout", self.shutdown_timeout, 1, 3600),
            ("kafka.unreachable_after", self.unreachable_after, 1, 3600),
            ("kafka.commit_interval", self.commit_interval, 1, 3600),
        ] {
            if !(min..=max).contains(&d.0.as_secs()) {
                return Err(invalid(key, d, "must be between 1s and 1h"));
            }
        }
        for key in ["enable.auto.offset.store", "group.id", "bootstrap.servers"] {
            if self.properties.contains_key(key) {
                return Err(invalid(
                    &format!("kafka.properties.\"{key}\""),
                    &self.properties[key],
                    "is managed by keywatch (at-least-once needs it); use the [kafka] keys instead",
                ));
            }
        }
        Ok(())
    }

    /// The librdkafka properties for a consumer: security first, keywatch's
    /// defaults next, the user's `properties` last.
    pub fn client_properties(&self) -> Vec<(String, String)> {
        let mut p = vec![
            ("bootstrap.servers".to_owned(), self.brokers.clone()),
            (
                "security.protocol".to_owned(),
                self.security_protocol.as_str().to_owned(),
            ),
        ];
        let mut opt = |k: &str, v: Option<&str>| {
            if let Some(v) = v {
                p.push((k.to_owned(), v.to_owned()));
            }
        };
        opt(
            "sasl.mechanism",
            self.sasl_mechanism.map(SaslMechanism::as_str),
        );
        opt("sasl.username", self.sasl_username.as_deref());
        opt(
            "sasl.password",
            self.sasl_password.as_ref().map(Secret::expose),
        );
        // OpenSSL is compiled into keywatch, so its built-in CA path is not
        // the system's: without a CA file named, librdkafka looks for the
        // system's CA bundle in the usual places.
        let probe = matches!(
            self.security_protocol,
            SecurityProtocol::Ssl | SecurityProtocol::SaslSsl
        )
        .then_some("probe");
        opt("ssl.ca.location", self.ssl_ca_location.as_deref().or(probe));
        opt(
            "ssl.certificate.location",
            self.ssl_certificate_location.as_deref(),
        );
        opt("ssl.key.location", self.ssl_key_location.as_deref());
        opt(
            "ssl.key.password",
            self.ssl_key_password.as_ref().map(Secret::expose),
        );
        p
    }
}
