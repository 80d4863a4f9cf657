//! Configuration: a TOML file layered with `KEYWATCH__SECTION__KEY`
//! environment variables (the `config` crate), deserialised with unknown keys
//! refused, then checked across fields before anything starts.
//!
//! `config/keywatch.toml` is the documented example with every key.

mod alerts;
mod changelog;
mod checkpoint;
mod detectors;
mod duration;
mod http;
mod inventory;
mod kafka;
mod netintel;
mod secret;
mod store;

use std::collections::BTreeMap;
use std::path::Path;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use alerts::{
    AlertmanagerConfig, AlertsConfig, FileSinkConfig, KafkaSinkConfig, PagerDutyConfig,
    RedactConfig, SinkConfig, SinkKind, SlackConfig, StdoutSinkConfig, Suppression, Timestamp,
    WebhookConfig, SAMPLE_FIELDS,
};
pub use changelog::ChangelogConfig;
pub use checkpoint::CheckpointConfig;
pub use detectors::*;
pub use duration::HumanDuration;
pub use http::HttpConfig;
pub use inventory::{InventoryConfig, PolicyDetectorsConfig};
pub use kafka::{KafkaConfig, SaslMechanism, SecurityProtocol};
pub use netintel::{ListConfig, ListKind, NetIntelConfig};
pub use secret::{Secret, SecretError};
pub use store::StoreConfig;

use crate::decode::{self, ProfileSpec};

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How messages become events.
    #[serde(default)]
    pub decode: DecodeConfig,
    /// Per-key state: what is tracked, learning, bounds, suppression.
    #[serde(default)]
    pub engine: EngineConfig,
    /// Detector switches and thresholds.
    #[serde(default)]
    pub detectors: DetectorsConfig,
    /// The key inventory, its policy detectors and the review's thresholds.
    #[serde(default)]
    pub inventory: InventoryConfig,
    /// Network intelligence: geolocation, ASN, cloud ranges, labelled lists.
    #[serde(default)]
    pub netintel: NetIntelConfig,
    /// Where events come from (`keywatch run`).
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// The metrics and API server.
    #[serde(default)]
    pub http: HttpConfig,
    /// Durable state.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// How a partition's state moves between instances.
    #[serde(default)]
    pub changelog: ChangelogConfig,
    /// Where alerts go: suppression, redaction, sinks.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// The findings store behind the console.
    #[serde(default)]
    pub store: StoreConfig,
}

/// `[decode]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecodeConfig {
    /// Mapping profile: `generic`, `cloudtrail`, `vault`, `kubernetes`,
    /// `github`, or one defined under `[decode.profiles.NAME]`.
    pub profile: String,
    /// Largest message accepted, in bytes; larger ones are dead-lettered as `too_large`.
    pub max_message_bytes: usize,
    /// Longest key identifier accepted, in bytes.
    pub max_key_bytes: usize,
    /// Custom profiles, each optionally `extends` a built-in one.
    pub profiles: BTreeMap<String, ProfileSpec>,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        DecodeConfig {
            profile: "generic".to_owned(),
            max_message_bytes: decode::DEFAULT_MAX_MESSAGE_BYTES,
            max_key_bytes: decode::DEFAULT_MAX_KEY_BYTES,
            profiles: BTreeMap::new(),
        }
    }
}

/// An identity the engine keeps a baseline for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    /// The credential itself (always tracked).
    KeyId,
    /// The principal holding it: catches a stolen identity that mints fresh
    /// temporary keys, each too new to have a baseline of its own.
    Principal,
}

impl Entity {
    /// Name in configuration, findings and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::KeyId => "key_id",
            Entity::Principal => "principal",
        }
    }
}

/// `[engine]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// What to keep baselines for: `["key_id"]`, or `["key_id", "principal"]`.
    pub entities: Vec<Entity>,
    /// Most entities tracked per kind; past it new ones are counted and not tracked.
    pub max_keys: usize,
    /// Most source addresses remembered per key (least recently used are forgotten).
    pub max_sources_per_key: u16,
    /// Most actions remembered per key.
    pub max_values_per_key: u16,
    /// Most user-agent families remembered per key (a table of their own:
    /// a key with many actions never evicts its clients).
    pub max_user_agents_per_key: u16,
    /// A key alerts on novelty and rates only after being known this long...
    pub learning_period: HumanDuration,
    /// ...and after this many events.
    pub learning_min_events: u64,
    /// A source, user agent or action unused this long is forgotten (new again).
    pub forget_after: HumanDuration,
    /// Peaks learned by the spike detectors halve over this time, so a baseline
    /// follows a key that has calmed down.
    pub baseline_half_life: HumanDuration,
    /// One finding per (key, detector, dimension) per cooldown: one incident, one alert.
    pub cooldown: HumanDuration,
    /// After this many findings of one detector on one key without a
    /// verdict, further ones fold into the open finding (counted, not
    /// raised) unless more severe than all before them; 0 never folds.
    pub fold_after: u8,
    /// A run of findings that fold ends after this long without one (or at a
    /// verdict); the next finding is raised again.
    pub fold_quiet: HumanDuration,
    /// Trusted networks (CI, corporate egress): their events update baselines
    /// but never raise findings of their own.
    pub allowlist_networks: Vec<Cidr>,
    /// Named sources (glob, `*` wildcard) that are the provider acting for the
    /// key, not a place: never new, never counted as fan-out.
    pub ignore_named_sources: Vec<String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            // The principal beside the key: a new credential (an STS session,
            // a fresh token, a rotated key) is judged through its principal
            // from its first event.
            entities: vec![Entity::KeyId, Entity::Principal],
            // One million keys at ~200 B each is ~200 MB: a large fleet on a small pod.
            max_keys: 1_000_000,
            // A service key uses 1-3 addresses; 64 keeps a fan-out's worth of evidence.
            max_sources_per_key: 64,
            max_values_per_key: 64,
            // Above new_user_agent.broad_after (12), so a shared key's count reaches it.
            max_user_agents_per_key: 16,
            // The design's defaults: learning 7d and ≥ 20 events, forget after 30d.
            learning_period: HumanDuration::days(7),
            learning_min_events: 20,
            forget_after: HumanDuration::days(30),
            // Two weeks: covers a weekly cycle twice, so weekend lows don't erase weekday peaks.
            baseline_half_life: HumanDuration::days(14),
            cooldown: HumanDuration::secs(3600),
            // Two findings: the second shows the first was no fluke; a third
            // of the same kind on the same key, unanswered, is a broken model
            // or one incident, and either way one open item for a person.
            fold_after: 2,
            // As long as the key remembers what it used (forget_after): a
            // person whose trips come every two to four weeks is one run,
            // and no benign key raises one detector more than twice a month.
            fold_quiet: HumanDuration::days(30),
            allowlist_networks: Vec::new(),
            // CloudTrail writes these when AWS services call on the key's behalf.
            ignore_named_sources: vec!["AWS Internal".to_owned(), "*.amazonaws.com".to_owned()],
        }
    }
}

/// A network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`); a bare
/// address means just that host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub IpNet);

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        s.parse::<IpNet>()
            .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
            .map(|n| Cidr(n.trunc()))
            .map_err(|_| {
                format!("invalid network {s:?}: write e.g. \"10.0.0.0/8\" or \"2001:db8::/32\"")
            })
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Configuration that cannot be used. Every variant names the key and value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed, or a key/value was refused by type.
    #[error("{0}")]
    Load(String),
    /// A value is out of range or inconsistent with another.
    #[error("`{key}` = {value}: {reason}")]
    Invalid {
        /// Dotted key path.
        key: String,
        /// The offending value as written.
        value: String,
        /// What is wrong and what would be right.
        reason: String,
    },
    /// An error of the configuration file named.
    #[error("{file}: {inner}")]
    InFile {
        /// The file.
        file: String,
        /// What is wrong in it.
        inner: Box<ConfigError>,
    },
}

pub(crate) fn invalid(
    key: &str,
    value: impl std::fmt::Display,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// The `config` crate's message for `where_` (the file, or "environment"),
/// named once, with the dot its key paths lose after an array index put
/// back (`alerts.sinks[0]min_severity` → `alerts.sinks[0].min_severity`).
fn load_error(where_: &str, message: &str) -> String {
    let mut fixed = String::with_capacity(message.len() + 8);
    let mut chars = message.chars().peekable();
    while let Some(c) = chars.next() {
        fixed.push(c);
        if c == ']'
            && chars
                .peek()
                .is_some_and(|n| n.is_ascii_alphabetic() || *n == '_')
        {
            fixed.push('.');
        }
    }
    // The crate may end with ` in NAME` (the file's name, or its path).
    let name = Path::new(where_)
        .file_name()
        .map_or_else(|| where_.to_owned(), |n| n.to_string_lossy().into_owned());
    let trimmed = fixed.trim_end();
    if let Some((kept, file)) = trimmed.rsplit_once(" in ") {
        if file.ends_with(name.as_str()) && !file.contains('\n') {
            return format!("{where_}: {}", kept.trim_end());
        }
    }
    if fixed.contains(where_) {
        fixed
    } else {
        format!("{where_}: {fixed}")
    }
}

/// Environment prefix: `KEYWATCH__ENGINE__MAX_KEYS=10` sets `engine.max_keys`.
pub const ENV_PREFIX: &str = "KEYWATCH";

impl Config {
    /// Loads `path` (if any) with environment overrides, then validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_with_env(path, std::env::vars())
    }

    /// As [`Config::load`], with the environment given explicitly (for tests).
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = path {
            if !path.exists() {
                return Err(ConfigError::Load(format!(
                    "configuration file `{}` does not exist",
                    path.display()
                )));
            }
            if path.is_dir() {
                return Err(ConfigError::Load(format!(
                    "configuration file `{}` is a directory, not a file",
                    path.display()
                )));
            }
            builder = builder.add_source(
                config::File::from(path)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("engine.entities")
                .with_list_parse_key("engine.allowlist_networks")
                .with_list_parse_key("engine.ignore_named_sources")
                .with_list_parse_key("kafka.topics")
                .source(Some(env)),
        );
        let where_ = path.map_or_else(|| "environment".to_owned(), |p| p.display().to_string());
        Config::build(builder, &where_, path.is_some())
    }

    /// Loads a configuration held in memory (no environment layer), then
    /// validates it: what a file's text alone makes of the loader.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let builder = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml));
        Config::build(builder, "text", false)
    }

    /// Builds and validates; `in_file`: errors name `where_`, a file.
    fn build(
        builder: config::ConfigBuilder<config::builder::DefaultState>,
        where_: &str,
        in_file: bool,
    ) -> Result<Config, ConfigError> {
        let cfg: Config = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError::Load(load_error(where_, &e.to_string())))?;
        match cfg.validate() {
            Ok(()) => Ok(cfg),
            Err(e) if in_file => Err(ConfigError::InFile {
                file: where_.to_owned(),
                inner: Box::new(e),
            }),
            Err(e) => Err(e),
        }
    }

    /// The Kafka alert sink whose topic `store.findings_topic` names: its
    /// brokers and client properties are how the topic is read.
    pub fn findings_sink(&self) -> Option<&KafkaSinkConfig> {
        if self.store.findings_topic.is_empty() {
            return None;
        }
        self.alerts.sinks.iter().find_map(|s| match &s.kind {
            SinkKind::Kafka(k) if k.topic == self.store.findings_topic => Some(k),
            _ => None,
        })
    }

    /// Cross-field checks; each error names the key and its value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let e = &self.engine;
        if !e.entities.contains(&Entity::KeyId) {
            return Err(invalid(
                "engine.entities",
                format!("{:?}", e.entities),
                "must include \"key_id\"",
            ));
        }
        if e.max_keys == 0 {
            return Err(invalid("engine.max_keys", 0, "must be at least 1"));
        }
        if e.max_sources_per_key == 0 || e.max_values_per_key == 0 || e.max_user_agents_per_key == 0
        {
            return Err(invalid(
                "engine.max_sources_per_key / engine.max_values_per_key / engine.max_user_agents_per_key",
                format!(
                    "{} / {} / {}",
                    e.max_sources_per_key, e.max_values_per_key, e.max_user_agents_per_key
                ),
                "must be at least 1",
            ));
        }
        if e.forget_after < e.learning_period {
            return Err(invalid(
                "engine.forget_after",
                e.forget_after,
                format!(
                    "must be at least engine.learning_period ({}), or sources are forgotten before they are learned",
                    e.learning_period
                ),
            ));
        }
        if e.fold_after > 0 && e.fold_quiet.0 < e.cooldown.0 {
            return Err(invalid(
                "engine.fold_quiet",
                e.fold_quiet,
                format!(
                    "must be at least engine.cooldown ({}), or a run of findings ends between two of them",
                    e.cooldown
                ),
            ));
        }
        if e.baseline_half_life.0.as_secs() < 3600 {
            return Err(invalid(
                "engine.baseline_half_life",
                e.baseline_half_life,
                "must be at least 1h",
            ));
        }
        let d = &self.detectors;
        for (key, bucket) in [
            ("detectors.rate_spike.bucket", d.rate_spike.bucket),
            ("detectors.error_spike.bucket", d.error_spike.bucket),
        ] {
            let s = bucket.0.as_secs();
            if !(10..=3600).contains(&s) || 3600 % s != 0 {
                return Err(invalid(
                    key,
                    bucket,
                    "must be between 10s and 1h and divide an hour evenly (e.g. 1m, 5m, 15m)",
                ));
            }
        }
        let travel = &d.impossible_travel;
        if !(travel.max_speed_kmh.is_finite() && travel.max_speed_kmh >= 100.0) {
            return Err(invalid(
                "detectors.impossible_travel.max_speed_kmh",
                travel.max_speed_kmh,
                "must be a number of at least 100",
            ));
        }
        if !(travel.min_distance_km.is_finite() && travel.min_distance_km >= 0.0) {
            return Err(invalid(
                "detectors.impossible_travel.min_distance_km",
                travel.min_distance_km,
                "must be a number of at least 0",
            ));
        }
        if d.cloud_credential_outside_cloud.min_cloud_events == 0 {
            return Err(invalid(
                "detectors.cloud_credential_outside_cloud.min_cloud_events",
                0,
                "must be at least 1",
            ));
        }
        let ratio = d.source_fanout.ratio;
        if !(ratio.is_finite() && ratio > 1.0) {
            return Err(invalid(
                "detectors.source_fanout.ratio",
                ratio,
                "must be a number greater than 1",
            ));
        }
        for (key, score) in [
            ("detectors.rate_spike.min_score", d.rate_spike.min_score),
            ("detectors.error_spike.min_score", d.error_spike.min_score),
        ] {
            if !(0.5..1.0).contains(&score) {
                return Err(invalid(
                    key,
                    score,
                    "must be at least 0.5 and below 1 (e.g. 0.999999)",
                ));
            }
        }
        for (key, after) in [
            (
                "detectors.rate_spike.accept_after",
                d.rate_spike.accept_after,
            ),
            (
                "detectors.error_spike.accept_after",
                d.error_spike.accept_after,
            ),
        ] {
            if !(1..=7).contains(&(after.0.as_secs() / 86_400)) {
                return Err(invalid(
                    key,
                    after,
                    "must be between 1d and 7d (days of the last week)",
                ));
            }
        }
        for (key, min) in [
            ("detectors.rate_spike.min_count", d.rate_spike.min_count),
            ("detectors.error_spike.min_count", d.error_spike.min_count),
            (
                "detectors.source_fanout.min_sources",
                d.source_fanout.min_sources,
            ),
            (
                "detectors.source_fanout.known_network_min_sources",
                d.source_fanout.known_network_min_sources,
            ),
        ] {
            if min == 0 {
                return Err(invalid(key, min, "must be at least 1"));
            }
        }
        let n = d.new_source.expected_novelty;
        if !(n > 0.0 && n <= 1.0) {
            return Err(invalid(
                "detectors.new_source.expected_novelty",
                n,
                "must be a share of days above 0 and at most 1 (1: only keys that meet a new network every day are quiet)",
            ));
        }
        let w = d.source_fanout.window.0.as_secs();
        if !(60..=86_400).contains(&w) {
            return Err(invalid(
                "detectors.source_fanout.window",
                d.source_fanout.window,
                "must be between 1m and 1d",
            ));
        }
        if d.dormant_revival.dormant_after.0.as_secs() < 86_400 {
            return Err(invalid(
                "detectors.dormant_revival.dormant_after",
                d.dormant_revival.dormant_after,
                "must be at least 1d",
            ));
        }
        self.kafka.validate()?;
        self.http.validate()?;
        self.checkpoint.validate()?;
        self.changelog.validate()?;
        self.inventory.validate()?;
        self.store.validate()?;
        self.netintel.validate()?;
        self.alerts.validate()?;
        if !self.store.findings_topic.is_empty() && self.findings_sink().is_none() {
            return Err(invalid(
                "store.findings_topic",
                format!("{:?}", self.store.findings_topic),
                "no alerts sink of type \"kafka\" writes this topic: it must be the `topic` of one (the findings every instance's Kafka sink writes)",
            ));
        }
        decode::Decoder::for_profile(&self.decode.profile, &self.decode.profiles)
            .map_err(|err| invalid("decode.profile", &self.decode.profile, err.to_string()))?;
        for name in self.decode.profiles.keys() {
            decode::Decoder::for_profile(name, &self.decode.profiles).map_err(|err| {
                invalid(&format!("decode.profiles.{name}"), name, err.to_string())
            })?;
        }
        Ok(())
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn to_toml(&self) -> String {
        let rendered = toml::Value::try_from(self).and_then(|mut v| {
            secret::mask_rendered(&mut v);
            toml::to_string_pretty(&v)
        });
        rendered.unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
mod tests;
