//! Configuration: a TOML file layered with `KEYWATCH__SECTION__KEY`
//! environment variables (the `config` crate), deserialised with unknown keys
//! refused, then checked across fields before anything starts.
//!
//! `config/keywatch.toml` is the documented example with every key.

mod changelog;
mod checkpoint;
mod http;
mod store;

use std::ops::{Deref, DerefMut};
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use crate::alert::config::{
    signing_key, AlertmanagerConfig, AlertsConfig, FileSinkConfig, KafkaSinkConfig,
    PagerDutyConfig, RedactConfig, SinkConfig, SinkKind, SlackConfig, SplunkHecConfig,
    StdoutSinkConfig, Suppression, Timestamp, WebhookConfig, SAMPLE_FIELDS,
};
pub use crate::cadence::config::ReviewConfig;
pub use crate::kafka::{KafkaConfig, SaslMechanism, SecurityProtocol};
pub use crate::response::config::ResponseRule;
pub use crate::secret::{Secret, SecretError};
pub use changelog::ChangelogConfig;
pub use checkpoint::CheckpointConfig;
pub use http::HttpConfig;
pub use keywatch_core::config::*;
pub use store::StoreConfig;

/// The whole configuration: the core's sections (what the engine reads,
/// reached through `Deref`: `cfg.detectors`, `cfg.engine`, …) and the I/O
/// around them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Sections", into = "Sections")]
pub struct Config {
    /// `[decode]`, `[engine]`, `[detectors]`, `[inventory]`, `[netintel]`.
    pub core: keywatch_core::config::Config,
    /// Where events come from (`keywatch run`).
    pub kafka: KafkaConfig,
    /// The metrics and API server.
    pub http: HttpConfig,
    /// Durable state.
    pub checkpoint: CheckpointConfig,
    /// How a partition's state moves between instances.
    pub changelog: ChangelogConfig,
    /// Where alerts go: suppression, redaction, sinks.
    pub alerts: AlertsConfig,
    /// The findings store behind the console.
    pub store: StoreConfig,
    /// `[[response]]`: what to do to a key confirmed compromised.
    pub response: Vec<ResponseRule>,
    /// `[review]`: the key review on a cadence, and where it goes.
    pub review: ReviewConfig,
}

impl Deref for Config {
    type Target = keywatch_core::config::Config;

    fn deref(&self) -> &Self::Target {
        &self.core
    }
}

impl DerefMut for Config {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.core
    }
}

/// The file's sections side by side, as written: one table of sections,
/// any unknown one refused by name.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sections {
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
    /// How findings are grouped into incidents.
    #[serde(default)]
    pub incidents: IncidentsConfig,
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
    /// `[[response]]`: what to do to a key confirmed compromised.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response: Vec<ResponseRule>,
    /// `[review]`: the key review on a cadence, and where it goes.
    #[serde(default)]
    pub review: ReviewConfig,
}

impl From<Sections> for Config {
    fn from(s: Sections) -> Config {
        Config {
            core: keywatch_core::config::Config {
                decode: s.decode,
                engine: s.engine,
                detectors: s.detectors,
                inventory: s.inventory,
                netintel: s.netintel,
                incidents: s.incidents,
            },
            kafka: s.kafka,
            http: s.http,
            checkpoint: s.checkpoint,
            changelog: s.changelog,
            alerts: s.alerts,
            store: s.store,
            response: s.response,
            review: s.review,
        }
    }
}

impl From<Config> for Sections {
    fn from(c: Config) -> Sections {
        let core = c.core;
        Sections {
            decode: core.decode,
            engine: core.engine,
            detectors: core.detectors,
            inventory: core.inventory,
            netintel: core.netintel,
            incidents: core.incidents,
            kafka: c.kafka,
            http: c.http,
            checkpoint: c.checkpoint,
            changelog: c.changelog,
            alerts: c.alerts,
            store: c.store,
            response: c.response,
            review: c.review,
        }
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
        self.core.validate()?;
        self.kafka.validate()?;
        self.http.validate()?;
        self.checkpoint.validate()?;
        self.changelog.validate()?;
        self.store.validate()?;
        self.alerts.validate()?;
        crate::response::validate(&self.response)?;
        self.review.validate(self.inventory.path.is_some())?;
        if self.response.iter().any(|r| !r.dry_run) && !self.store.enabled() {
            return Err(invalid(
                "store.path",
                "\"\"",
                "must be set when a [[response]] rule has dry_run = false: every action goes to the finding's audit trail",
            ));
        }
        if !self.store.findings_topic.is_empty() && self.findings_sink().is_none() {
            return Err(invalid(
                "store.findings_topic",
                format!("{:?}", self.store.findings_topic),
                "no alerts sink of type \"kafka\" writes this topic: it must be the `topic` of one (the findings every instance's Kafka sink writes)",
            ));
        }
        Ok(())
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn to_toml(&self) -> String {
        let rendered = toml::Value::try_from(self).and_then(|mut v| {
            crate::secret::mask_rendered(&mut v);
            toml::to_string_pretty(&v)
        });
        rendered.unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
mod tests;
