//! `[detectors.*]`: one section per detector. Every detector can be switched
//! off; every threshold has a default with the reasoning behind it.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError, HumanDuration};

/// All detector sections.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorsConfig {
    /// A settled key used from a network it has not used within `engine.forget_after`.
    #[serde(default)]
    pub new_source: NewSourceConfig,
    /// A settled key used with a user-agent family it has not used before.
    #[serde(default)]
    pub new_user_agent: UserAgentConfig,
    /// A settled key calling an action it has not called before (scope creep).
    #[serde(default)]
    pub new_action: ActionConfig,
    /// Requests in the current bucket far above the key's own peak.
    #[serde(default)]
    pub rate_spike: RateSpikeConfig,
    /// Failed requests in the current bucket far above the key's own norm.
    #[serde(default)]
    pub error_spike: ErrorSpikeConfig,
    /// Networks new to the key (or addresses inside its own) in a window far above its norm.
    #[serde(default)]
    pub source_fanout: FanoutConfig,
    /// A key unused for a long time used again.
    #[serde(default)]
    pub dormant_revival: DormantConfig,
    /// An identity with no history calling a sensitive action.
    #[serde(default)]
    pub new_identity_sensitive_action: SwitchConfig,
    /// Two uses of one key or principal farther apart than anyone can travel
    /// in the time between them (needs `netintel.city_db`).
    #[serde(default)]
    pub impossible_travel: ImpossibleTravelConfig,
    /// A credential seen only from cloud provider ranges used from outside
    /// them (needs `netintel.cloud_ranges`).
    #[serde(default)]
    pub cloud_credential_outside_cloud: CloudOutsideConfig,
    /// Any use from a network listed as `tor` or `threat` (needs `netintel.lists`).
    #[serde(default)]
    pub listed_source: SwitchConfig,
}

/// `[detectors.impossible_travel]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImpossibleTravelConfig {
    /// Switch the detector on or off.
    pub enabled: bool,
    /// The fastest a person travels, km/h.
    pub max_speed_kmh: f64,
    /// Distances at or below this (after both accuracy radii are taken off)
    /// never alert: geolocation of neighbouring cities is not precise enough.
    pub min_distance_km: f64,
}

/// 1000 km/h: an airliner's cruising speed with a margin; Datadog's impossible
/// travel rule uses the same order of magnitude.
fn default_max_speed_kmh() -> f64 {
    1000.0
}

/// 500 km: city-level geolocation of one ISP's addresses is often a few
/// hundred kilometres off even inside its accuracy radius.
fn default_min_distance_km() -> f64 {
    500.0
}

impl Default for ImpossibleTravelConfig {
    fn default() -> Self {
        ImpossibleTravelConfig {
            enabled: true,
            max_speed_kmh: default_max_speed_kmh(),
            min_distance_km: default_min_distance_km(),
        }
    }
}

/// `[detectors.cloud_credential_outside_cloud]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudOutsideConfig {
    /// Switch the detector on or off.
    pub enabled: bool,
    /// Uses from cloud ranges (and none from outside them within
    /// `engine.forget_after`) before a credential counts as a cloud one.
    pub min_cloud_events: u32,
}

/// 20: the learning minimum of `engine.learning_min_events`; a role's
/// sessions reach it within minutes, so a workload credential is judged
/// through its role from its first use.
fn default_min_cloud_events() -> u32 {
    20
}

impl Default for CloudOutsideConfig {
    fn default() -> Self {
        CloudOutsideConfig {
            enabled: true,
            min_cloud_events: default_min_cloud_events(),
        }
    }
}

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

/// `[detectors.new_source]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NewSourceConfig {
    /// Switch the detector on or off.
    pub enabled: bool,
    /// A key whose recent active days brought a new network (/24, /64) at
    /// least this often (the share of days, decayed by the baseline
    /// half-life) meets new networks by nature: one more says nothing and
    /// does not alert. Below it, the rarer new networks are for the key, the
    /// higher the severity.
    pub expected_novelty: f64,
    /// Pool churn's span: a new /24 beside the key's /24s of one /16 is churn
    /// (low) only if the key itself acquired one of them this recently.
    pub roaming_expiry: HumanDuration,
}

/// About one day in seven. Keys that meet new networks as a matter of
/// course (a mobile carrier, a VPN pool, serverless workers) measure
/// 0.6-1.0; a service on its few networks stays under 0.02 and a person
/// between home, office and an occasional cafe at 0.02-0.1, judged at
/// medium or low. Chosen by the evaluation's own rule, leaving each kind of
/// key out in turn: on the independent fleets (`benches/fleets`, tuning
/// seeds 1-3) 0.3, 0.2 and 0.15 gave 92, 77 and 73 false positives a fleet
/// with the same recall, whichever kind was left out. The door: a key that
/// meets a new network on one day in seven or more is not judged on a new
/// /24 (only on a new /16, and by the other detectors).
fn default_expected_novelty() -> f64 {
    0.15
}

/// Two weeks: longer than the gap between a travelling person's trips, far
/// shorter than "for good".
fn default_roaming_expiry() -> HumanDuration {
    HumanDuration::days(14)
}

impl Default for NewSourceConfig {
    fn default() -> Self {
        NewSourceConfig {
            enabled: true,
            expected_novelty: default_expected_novelty(),
            roaming_expiry: default_roaming_expiry(),
        }
    }
}

/// `[detectors.new_user_agent]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserAgentConfig {
    /// Switch the detector on or off.
    pub enabled: bool,
    /// A key that has used this many user-agent families is shared by design
    /// and does not alert on one more.
    pub broad_after: u16,
}

/// Most automation uses one or two SDK families; a dozen means a shared key.
impl Default for UserAgentConfig {
    fn default() -> Self {
        UserAgentConfig {
            enabled: true,
            broad_after: 12,
        }
    }
}

/// `[detectors.new_action]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActionConfig {
    /// Switch the detector on or off.
    pub enabled: bool,
    /// A key that has called this many distinct actions is broad by design
    /// (an admin or CI key) and does not alert on one more.
    pub broad_after: u16,
}

/// Service keys call a handful of APIs; 40 distinct actions is an admin key.
impl Default for ActionConfig {
    fn default() -> Self {
        ActionConfig {
            enabled: true,
            broad_after: 40,
        }
    }
}

/// `[detectors.rate_spike]`.
///
/// The rate model (see `engine::baseline`): an expected count per bucket for
/// each hour of the day, learned from previous days only and winsorised at
/// its upper band; a bucket alerts when its count is improbable under that
/// expectation (bucket test) or when the key stays above it across buckets
/// (sustained test, a CUSUM). Every finding carries a score in [0, 1].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateSpikeConfig {
    /// Switch the detector on or off.
    pub enabled: bool,
    /// Counting bucket (divides an hour).
    pub bucket: HumanDuration,
    /// Never alert below this many requests in one bucket.
    pub min_count: u32,
    /// The sensitivity knob: a bucket alerts when its score (one less the
    /// probability of a count at least this high under the key's model)
    /// reaches it; the sustained test's decision interval is derived from
    /// the same probability. Lower is more sensitive.
    pub min_score: f64,
    /// A new level is learned as it is once an hour of the day has been
    /// above its band on this many of its last seven days (whole days,
    /// 1d-7d): what recurs at the same hour is the key's, a one-off or a
    /// ramp is not; until then it is learned only up to the band, so it
    /// keeps alerting.
    pub accept_after: HumanDuration,
}

/// Five minutes: short enough to alert while an attack runs, long enough to
/// smooth per-second jitter (the design's default). 15 calls in 5 minutes:
/// a burst of a few dozen calls in a quarter hour from a key that normally
/// makes one or two is an enumeration script, and on the generated fleets
/// 15 found every such burst with no more false positives than 20 (which
/// missed a quarter of them); below it a "spike" of a low-volume key is
/// noise. A score of 1 - 1e-6: at 288 buckets a day a key whose traffic
/// matched its model exactly would cross by chance about once in ten years
/// of buckets, which keeps a fleet of thousands of keys quiet while a 5x step
/// on a key at 10 calls per bucket scores 1 - 1e-14. Three of the last seven
/// days: a new nightly job alerts on its first nights and is accepted on
/// the third even when it skips a night (in a row, a job that skipped one
/// night in three was never learned); an attacker repeating the same hour
/// is seen at least three times.
impl Default for RateSpikeConfig {
    fn default() -> Self {
        RateSpikeConfig {
            enabled: true,
            bucket: default_bucket(),
            min_count: 15,
            min_score: default_min_score(),
            accept_after: default_accept_after(),
        }
    }
}

/// `[detectors.error_spike]`: the same rate model on failed requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ErrorSpikeConfig {
    /// Switch the detector on or off.
    pub enabled: bool,
    /// Counting bucket.
    pub bucket: HumanDuration,
    /// Never alert below this many failed requests in one bucket.
    pub min_count: u32,
    /// As `rate_spike.min_score`, on failures.
    pub min_score: f64,
    /// As `rate_spike.accept_after`, on failures.
    pub accept_after: HumanDuration,
}

/// 20 failures in 5 minutes: a failing deploy retries a few times, a
/// permission probe fails dozens of times. Score and acceptance as
/// `rate_spike`.
impl Default for ErrorSpikeConfig {
    fn default() -> Self {
        ErrorSpikeConfig {
            enabled: true,
            bucket: default_bucket(),
            min_count: 20,
            min_score: default_min_score(),
            accept_after: default_accept_after(),
        }
    }
}

fn default_min_score() -> f64 {
    0.999_999
}

fn default_accept_after() -> HumanDuration {
    HumanDuration::days(3)
}

fn default_bucket() -> HumanDuration {
    HumanDuration::secs(300)
}

/// `[detectors.source_fanout]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FanoutConfig {
    /// Switch the detector on or off.
    pub enabled: bool,
    /// Window over which distinct sources are counted.
    pub window: HumanDuration,
    /// Never alert (high) below this many networks in one window that the
    /// key had not established (used for a day) before.
    pub min_sources: u32,
    /// Alert above this multiple of the key's usual count per window.
    pub ratio: f64,
    /// Addresses inside the key's own established networks (CI runners,
    /// fleet hosts) alert only above this many in one window (and `ratio`
    /// times their peak), and only as low.
    pub known_network_min_sources: u32,
}

/// One hour, from the design.
fn default_fanout_window() -> HumanDuration {
    HumanDuration::secs(3600)
}

/// Ten networks: a service key is used from a few; a leaked key pasted into a
/// botnet or public CI shows up in dozens within minutes.
fn default_fanout_min() -> u32 {
    10
}

/// Three times the key's peak per window.
fn default_fanout_ratio() -> f64 {
    3.0
}

/// Fifty addresses inside the key's own networks: a CI pool of a few dozen
/// runners stays below it even before the key has shown its largest run.
fn default_known_network_min() -> u32 {
    50
}

impl Default for FanoutConfig {
    fn default() -> Self {
        FanoutConfig {
            enabled: true,
            window: default_fanout_window(),
            min_sources: default_fanout_min(),
            ratio: default_fanout_ratio(),
            known_network_min_sources: default_known_network_min(),
        }
    }
}

/// `[detectors.dormant_revival]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DormantConfig {
    /// Switch the detector on or off.
    pub enabled: bool,
    /// Idle this long, a key is dormant; its next use alerts (design default 30d).
    pub dormant_after: HumanDuration,
}

fn default_dormant_after() -> HumanDuration {
    HumanDuration::days(30)
}

impl Default for DormantConfig {
    fn default() -> Self {
        DormantConfig {
            enabled: true,
            dormant_after: default_dormant_after(),
        }
    }
}

impl DetectorsConfig {
    /// Cross-field checks of `[detectors]`; each error names the key and its value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let d = self;
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
        Ok(())
    }
}
