//! `[detectors]`: one section per behavioural detector, generated from
//! [the list](super::list). Each section's type and checks sit in its
//! detector's file; every detector can be switched off, and every threshold
//! has a default with the reasoning behind it.

use serde::{Deserialize, Serialize};

pub use super::cloud_credential_outside_cloud::CloudOutsideConfig;
pub use super::dormant_revival::DormantConfig;
pub use super::error_spike::ErrorSpikeConfig;
pub use super::impossible_travel::ImpossibleTravelConfig;
pub use super::new_action::ActionConfig;
pub use super::new_source::NewSourceConfig;
pub use super::new_user_agent::UserAgentConfig;
pub use super::rate_spike::RateSpikeConfig;
pub use super::source_fanout::FanoutConfig;
use crate::types::ConfigError;

/// A detector with no settings but its switch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SwitchConfig {
    /// Switch the detector on or off.
    pub enabled: bool,
}

impl Default for SwitchConfig {
    fn default() -> Self {
        SwitchConfig { enabled: true }
    }
}

impl SwitchConfig {
    /// A switch is always valid.
    pub fn validate(&self, _section: &str) -> Result<(), ConfigError> {
        Ok(())
    }
}

macro_rules! detectors_config {
    (
        behavioural { $( $(#[$doc:meta])* $B:ident = $bi:literal, $name:ident : $cfg:ty; )* }
        policy { $( $(#[$pdoc:meta])* $P:ident = $pi:literal, $pname:ident; )* }
    ) => {
        /// All detector sections, `[detectors.NAME]` each.
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct DetectorsConfig {
            $( $(#[$doc])* #[serde(default)] pub $name: $cfg, )*
        }

        impl DetectorsConfig {
            /// Checks every section; an error names the key and its value.
            pub fn validate(&self) -> Result<(), ConfigError> {
                $( self.$name.validate(concat!("detectors.", stringify!($name)))?; )*
                Ok(())
            }
        }
    };
}

crate::detector_list!(detectors_config);

#[cfg(test)]
mod tests {
    use super::DetectorsConfig;
    use crate::engine::Detector;

    #[test]
    fn every_behavioural_detector_has_its_section() {
        let sections = serde_json::to_value(DetectorsConfig::default()).unwrap();
        let names: Vec<&str> = sections
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected: Vec<&str> = Detector::ALL.iter().map(|d| d.as_str()).collect();
        expected.sort_unstable();
        assert_eq!(names, expected);
    }
}
