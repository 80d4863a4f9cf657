//! The core's configuration: the sections the engine and its parts read
//! (`[decode]`, `[engine]`, `[detectors]`, `[inventory]`, `[netintel]`,
//! `[incidents]`), each
//! deserialised with unknown keys refused and checked across fields by
//! [`Config::validate`]. The daemon's configuration (`keywatch::config`)
//! adds the I/O sections around it and loads the file and environment.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::engine::config::EngineConfig;
pub use crate::engine::detect::config::*;
use crate::engine::Sections;
pub use crate::incident::IncidentsConfig;
pub use crate::inventory::config::{InventoryConfig, PolicyDetectorsConfig};
pub use crate::netintel::config::{ListConfig, ListKind, NetIntelConfig};
pub use crate::types::{invalid, Cidr, ConfigError, Entity, HumanDuration};

use crate::decode::{self, ProfileSpec};

/// What the engine reads: how messages become events, per-key state, the
/// detectors, the inventory and network intelligence.
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
    /// How findings are grouped into incidents.
    #[serde(default)]
    pub incidents: IncidentsConfig,
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

impl Sections for Config {
    fn engine(&self) -> &EngineConfig {
        &self.engine
    }
    fn detectors(&self) -> &DetectorsConfig {
        &self.detectors
    }
    fn policy_detectors(&self) -> &PolicyDetectorsConfig {
        &self.inventory.detectors
    }
}

/// What dereferences to the core's configuration (the daemon's, an `Arc`)
/// builds an engine as it would.
impl<T: std::ops::Deref<Target = Config>> Sections for T {
    fn engine(&self) -> &EngineConfig {
        (**self).engine()
    }
    fn detectors(&self) -> &DetectorsConfig {
        (**self).detectors()
    }
    fn policy_detectors(&self) -> &PolicyDetectorsConfig {
        (**self).policy_detectors()
    }
}

impl Config {
    /// Cross-field checks of the core sections; each error names the key
    /// and its value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.engine.validate()?;
        self.detectors.validate()?;
        self.inventory.validate()?;
        self.netintel.validate()?;
        self.incidents.validate()?;
        decode::Decoder::for_profile(&self.decode.profile, &self.decode.profiles)
            .map_err(|err| invalid("decode.profile", &self.decode.profile, err.to_string()))?;
        for name in self.decode.profiles.keys() {
            decode::Decoder::for_profile(name, &self.decode.profiles).map_err(|err| {
                invalid(&format!("decode.profiles.{name}"), name, err.to_string())
            })?;
        }
        Ok(())
    }
}
