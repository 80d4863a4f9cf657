//! The one list of detectors. Everything that names them is generated from
//! it: the [`Detector`] enum and its names (in configuration, findings and
//! metric labels), the `[detectors.*]` sections
//! ([`super::DetectorsConfig`]) and the `[inventory.detectors]` switches
//! ([`crate::inventory::config::PolicyDetectorsConfig`]).
//!
//! Adding a detector: a line here, its file (the code and its `…Config`
//! with a `validate(section)`), and its call in [`super::observe`].
//!
//! The number beside each is the index per-key state stores (`detector as
//! u8`) in checkpoints and the changelog: never reuse or renumber one.

use serde::{Deserialize, Serialize};

/// Calls `$then! { behavioural { … } policy { … } }` with every detector:
/// behavioural ones with their `[detectors.NAME]` config type, policy ones
/// (a switch each under `[inventory.detectors]`). Config types are resolved
/// where the callback expands.
#[doc(hidden)]
#[macro_export]
macro_rules! detector_list {
    ($then:ident) => {
        $then! {
            behavioural {
                /// A settled key used from a network it has not used within `engine.forget_after`.
                NewSource = 0, new_source: NewSourceConfig;
                /// A settled key used with a user-agent family it has not used before.
                NewUserAgent = 1, new_user_agent: UserAgentConfig;
                /// A settled key calling an action it has not called before (scope creep).
                NewAction = 2, new_action: ActionConfig;
                /// Requests in the current bucket far above the key's own norm.
                RateSpike = 3, rate_spike: RateSpikeConfig;
                /// Failed requests in the current bucket far above the key's own norm.
                ErrorSpike = 4, error_spike: ErrorSpikeConfig;
                /// Networks new to the key (or addresses inside its own) in a window far above its norm.
                SourceFanout = 5, source_fanout: FanoutConfig;
                /// A key unused for a long time used again.
                DormantRevival = 6, dormant_revival: DormantConfig;
                /// An identity with no history (a new key of a new principal)
                /// minting credentials, changing permissions or reading secrets.
                NewIdentitySensitiveAction = 13, new_identity_sensitive_action: SwitchConfig;
                /// Two uses of one key or principal farther apart than anyone can
                /// travel in the time between them (needs `netintel.city_db`).
                ImpossibleTravel = 14, impossible_travel: ImpossibleTravelConfig;
                /// A credential seen only from cloud provider ranges used from
                /// outside them (needs `netintel.cloud_ranges`).
                CloudCredentialOutsideCloud = 15, cloud_credential_outside_cloud: CloudOutsideConfig;
                /// Any use from a network listed as `tor` or `threat` (needs `netintel.lists`).
                ListedSource = 16, listed_source: SwitchConfig;
            }
            policy {
                /// A key used that the inventory does not list (once per key).
                UnknownKey = 7, unknown_key;
                /// A key used at or after its `expires`.
                ExpiredKey = 8, expired_key;
                /// A key used from an address outside its `allowed_cidrs`.
                OutsideAllowlist = 9, outside_allowlist;
                /// A key used more than its `usage_cap` in one window.
                UsageCap = 10, usage_cap;
                /// A `one_time` key used a second time.
                OneTimeReuse = 11, one_time_reuse;
                /// A key calling an action outside its `allowed_actions`.
                ScopeViolation = 12, scope_violation;
            }
        }
    };
}

macro_rules! detector_enum {
    (
        behavioural { $( $(#[$bdoc:meta])* $B:ident = $bi:literal, $bname:ident : $bcfg:ty; )* }
        policy { $( $(#[$pdoc:meta])* $P:ident = $pi:literal, $pname:ident; )* }
    ) => {
        /// The detector that raised a finding.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Detector {
            $( $(#[$bdoc])* $B = $bi, )*
            $( $(#[$pdoc])* $P = $pi, )*
        }

        impl Detector {
            /// Every behavioural detector (each has a `[detectors.NAME]` section).
            pub const ALL: [Detector; [$(stringify!($B)),*].len()] = [$(Detector::$B),*];

            /// Every policy detector: they judge a use against the key's
            /// inventory entry, and run only when an inventory is configured.
            pub const POLICY: [Detector; [$(stringify!($P)),*].len()] = [$(Detector::$P),*];

            /// The detector whose index (`detector as u8`) is `i`, as per-key
            /// state stores it.
            pub fn from_index(i: u8) -> Option<Detector> {
                match i {
                    $( $bi => Some(Detector::$B), )*
                    $( $pi => Some(Detector::$P), )*
                    _ => None,
                }
            }

            /// Name in configuration, findings and metrics.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Detector::$B => stringify!($bname), )*
                    $( Detector::$P => stringify!($pname), )*
                }
            }
        }
    };
}

crate::detector_list!(detector_enum);

impl std::fmt::Display for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Detector;

    fn every() -> impl Iterator<Item = Detector> {
        Detector::ALL.into_iter().chain(Detector::POLICY)
    }

    #[test]
    fn findings_and_configuration_spell_a_detector_the_same() {
        for d in every() {
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str(), "{d:?}");
            let back: Detector = serde_json::from_value(d.as_str().into()).unwrap();
            assert_eq!(back, d);
        }
    }

    #[test]
    fn every_stored_index_names_one_detector() {
        let mut seen = std::collections::BTreeSet::new();
        for d in every() {
            assert!(seen.insert(d as u8), "{d:?} reuses index {}", d as u8);
            assert_eq!(Detector::from_index(d as u8), Some(d));
        }
        // Indices are dense: a gap would be a detector removed without a note.
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            (0..17).collect::<Vec<u8>>()
        );
        assert_eq!(Detector::from_index(17), None);
    }
}
