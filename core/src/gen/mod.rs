//! A deterministic generator of realistic key-usage audit traffic, with
//! injected attacks and their ground truth.
//!
//! A [`Scenario`] is a fleet of access keys over a number of days. Normal
//! keys each follow one [`Archetype`] of legitimate use, chosen so that the
//! traffic holds what fools naive detectors: daily and weekly rhythms, CI
//! bursts at fixed times from churning runner addresses, DHCP churn inside
//! a /24, multi-region egress, steady growth, nightly batch jobs, monthly
//! gaps, daily peaks with throttling, and a roaming person who really does
//! show up from new networks. With [`GenConfig::attacks`], each
//! [`AttackKind`] is injected on a key of its own after weeks of normal use;
//! [`Scenario::attacks`] is the truth a detector is judged against.
//!
//! Everything is a pure function of [`GenConfig`]: every key draws from its
//! own random streams (seeded from the scenario seed and its index, and per
//! day), so the same configuration gives byte-identical events, and turning
//! attacks on adds keys without changing the normal ones.
//! [`Scenario::events`] generates one day at a time, so memory holds one
//! day of traffic, never the whole scenario.
//!
//! ```
//! use keywatch_core::gen::{Format, GenConfig, Scenario};
//!
//! let scenario = Scenario::new(GenConfig { keys: 16, days: 3, volume: 0.1, ..GenConfig::default() });
//! let first = scenario.events().next().unwrap();
//! assert!(first.json.contains(&first.key_id));
//! ```

mod agent;
mod archetype;
mod attack;
mod catalog;
pub mod eval;
mod format;
mod key;
mod net;
pub use net::attacker_networks;
mod traffic;

#[cfg(test)]
mod tests;

use std::collections::HashSet;

use rand::rngs::SmallRng;
use rand::SeedableRng;

pub use archetype::Archetype;
pub use attack::{Attack, AttackKind};

use archetype::ROTATION;
use attack::Setting;
use key::Key;
use traffic::{mix, stream, Call, Sink, Span};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenConfig {
    /// Seed of every random choice: same seed, same events.
    pub seed: u64,
    /// Number of normal keys. Archetypes are handed out in a fixed weighted
    /// cycle; the first ten keys cover all of them (so any `keys >= 16`
    /// has every archetype).
    pub keys: usize,
    /// Event time of the start of day 0 (epoch ms; midnight UTC).
    pub start_ms: i64,
    /// Length of the scenario in days.
    pub days: u32,
    /// Inject the attacks, each on an extra key of its own. They happen
    /// from day 35 on when `days >= 45` (else in the last quarter);
    /// [`AttackKind::DormantRevival`] needs `days >= 50` and is left out of
    /// shorter scenarios.
    pub attacks: bool,
    /// Serialization of [`GenEvent::json`].
    pub format: Format,
    /// Multiplier on per-key event rates (1.0 = the archetypes' own rates).
    /// Negative or non-finite values count as 0.
    pub volume: f64,
    /// Which attacks [`GenConfig::attacks`] injects.
    pub attack_set: AttackSet,
}

/// A set of attack kinds to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttackSet {
    /// The six kinds of [`AttackKind::CLASSIC`].
    Classic,
    /// Every kind ([`AttackKind::ALL`]): also ramps, steps, a settled roamer
    /// stolen with its own client, a role's stolen sessions, a daily key
    /// gone quiet and a brand-new identity minting credentials.
    #[default]
    Full,
}

impl AttackSet {
    /// The kinds, in injection order.
    pub fn kinds(self) -> &'static [AttackKind] {
        match self {
            AttackSet::Classic => &AttackKind::CLASSIC,
            AttackSet::Full => &AttackKind::ALL,
        }
    }
}

impl Default for GenConfig {
    /// Forty keys over fifty days from 2026-03-01, with attacks, generic format.
    fn default() -> Self {
        GenConfig {
            seed: 1,
            keys: 40,
            start_ms: 1_772_323_200_000, // 2026-03-01T00:00:00Z
            days: 50,
            attacks: true,
            format: Format::Generic,
            volume: 1.0,
            attack_set: AttackSet::Full,
        }
    }
}

/// Output format of generated events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// The flat `generic` mapping profile: `time`, `key_id`, `principal`,
    /// `source`, `user_agent`, `action`, `outcome`, `error_code` (failures
    /// only), `region`.
    #[default]
    Generic,
    /// One AWS CloudTrail record per event (as in a `Records` array).
    CloudTrail,
    /// One Google Cloud Audit Log entry per event, as a log sink writes it.
    Gcp,
    /// One Entra ID service-principal sign-in record per event, as Azure
    /// diagnostic settings write it.
    Azure,
    /// One Okta System Log event per event, as the System Log API returns it.
    Okta,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 5] = [
        Format::Generic,
        Format::CloudTrail,
        Format::Gcp,
        Format::Azure,
        Format::Okta,
    ];

    /// The built-in mapping profile that decodes this format.
    pub fn profile(self) -> &'static str {
        match self {
            Format::Generic => "generic",
            Format::CloudTrail => "cloudtrail",
            Format::Gcp => "gcp",
            Format::Azure => "azure",
            Format::Okta => "okta",
        }
    }
}

/// One generated event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenEvent {
    /// Event time, epoch ms.
    pub time_ms: i64,
    /// The key used (also inside `json`).
    pub key_id: String,
    /// The event serialized in the configured format: one line, no newline.
    pub json: String,
}

/// A generated fleet of keys over time, with its ground truth.
#[derive(Debug)]
pub struct Scenario {
    cfg: GenConfig,
    span: Span,
    volume: f64,
    /// Normal keys first, then one key per attack.
    keys: Vec<Key>,
    normal: usize,
    attacks: Vec<Attack>,
    /// The attacks' own calls, sorted by time.
    attack_calls: Vec<Call>,
}

/// Random stream purposes, so a key's streams never overlap.
const STEADY: u64 = 1;
const EPISODE: u64 = 2;
const NONCES: u64 = 3;
/// Salts the seeds of attacked keys (independent of the number of keys).
const ATTACK_SALT: u64 = 0xA77A_C4ED_5EED;

impl Scenario {
    /// Plans the scenario: keys, their behaviour and the attacks. Cheap: no
    /// event is generated until [`Scenario::events`] is iterated.
    pub fn new(cfg: GenConfig) -> Scenario {
        let span = Span {
            start_ms: cfg.start_ms,
            days: cfg.days,
        };
        let volume = if cfg.volume.is_finite() {
            cfg.volume.max(0.0)
        } else {
            0.0
        };
        let accounts = key::accounts(&mut SmallRng::seed_from_u64(mix(cfg.seed, u64::MAX)));
        let mut names = HashSet::new();
        let mut keys: Vec<Key> = (0..cfg.keys)
            .map(|i| {
                let archetype = ROTATION[i % ROTATION.len()];
                let seed = mix(cfg.seed, i as u64);
                let mut rng = SmallRng::seed_from_u64(seed);
                let built = archetype::build(archetype, &mut rng, &span);
                Key::new(
                    archetype, seed, built, &accounts, &mut names, &mut rng, cfg.days,
                )
            })
            .collect();
        let normal = keys.len();
        let mut attacks = Vec::new();
        let mut attack_calls = Vec::new();
        if cfg.attacks {
            for (i, &kind) in AttackKind::ALL.iter().enumerate() {
                if !cfg.attack_set.kinds().contains(&kind) {
                    continue;
                }
                if !attack::fits(kind, cfg.days) {
                    continue;
                }
                let index = u32::try_from(keys.len()).expect("fewer than 2^32 keys");
                let setting = Setting {
                    span,
                    volume,
                    accounts: &accounts,
                    names: &mut names,
                };
                let planted =
                    attack::plant(kind, index, mix(cfg.seed ^ ATTACK_SALT, i as u64), setting);
                keys.push(planted.key);
                attacks.push(planted.attack);
                attack_calls.extend(planted.calls);
            }
        }
        attack_calls.sort_by_key(|c: &Call| (c.time_ms, c.key));
        Scenario {
            cfg,
            span,
            volume,
            keys,
            normal,
            attacks,
            attack_calls,
        }
    }

    /// The configuration the scenario was made from.
    pub fn config(&self) -> &GenConfig {
        &self.cfg
    }

    /// Ground truth: the injected attacks, in [`AttackKind::ALL`] order.
    pub fn attacks(&self) -> &[Attack] {
        &self.attacks
    }

    /// The index of the key an attack was planted on (for a role's stolen
    /// sessions, the role's).
    pub fn attack_key(&self, attack: &Attack) -> Option<usize> {
        self.keys.iter().position(|k| {
            k.identity.key_id == attack.key_id
                || (attack.principal.is_some() && k.identity.role_arn() == attack.principal)
        })
    }

    /// Keys that carry no attack at all.
    pub fn normal_keys(&self) -> Vec<String> {
        self.keys[..self.normal]
            .iter()
            .map(|k| k.identity.key_id.clone())
            .collect()
    }

    /// The archetype of a key's normal behaviour (attacked keys behave as
    /// office-hours or low-volume keys outside their attack).
    pub fn archetype(&self, key_id: &str) -> Option<Archetype> {
        self.keys
            .iter()
            .find(|k| k.identity.key_id == key_id)
            .map(|k| k.archetype)
    }

    /// Every event of the scenario in non-decreasing time order, generated
    /// lazily one day at a time.
    pub fn events(&self) -> impl Iterator<Item = GenEvent> + '_ {
        self.calls().map(move |call| self.render(&call))
    }

    /// The events from `from_ms` on, in non-decreasing time order,
    /// generated lazily one day at a time.
    pub fn events_from(&self, from_ms: i64) -> impl Iterator<Item = GenEvent> + '_ {
        let first = (from_ms.saturating_sub(self.span.start_ms).max(0) / traffic::DAY_MS)
            .min(i64::from(self.span.days)) as u32;
        (first..self.span.days)
            .flat_map(move |day| self.calls_of_day(day))
            .filter(move |c| c.time_ms >= from_ms)
            .map(move |call| self.render(&call))
    }

    /// Mean calls per second of the whole fleet over `days`.
    pub fn calls_per_second(&self, days: std::ops::Range<u32>) -> f64 {
        let days = days.start.min(self.span.days)..days.end.min(self.span.days);
        let calls: usize = days.clone().map(|d| self.calls_of_day(d).len()).sum();
        calls as f64 / (days.len().max(1) as f64 * 86_400.0)
    }

    /// Moves the attacks in time: attack `i` (in [`Scenario::attacks`]
    /// order) then starts at `first_ms + i * every_ms`, its calls and its
    /// truth moved alike and `squeeze` times closer together (1: as
    /// planned; 15: a 15-minute burst in one minute). Its key's normal
    /// traffic stays where it was.
    pub fn retime_attacks(&mut self, first_ms: i64, every_ms: i64, squeeze: f64) {
        let squeeze = if squeeze.is_finite() {
            squeeze.max(1.0)
        } else {
            1.0
        };
        let mut at = first_ms;
        for (i, attack) in self.attacks.iter_mut().enumerate() {
            let key = (self.normal + i) as u32;
            let old = attack.start_ms;
            let moved = |t: i64| at + ((t - old) as f64 / squeeze).round() as i64;
            for call in self.attack_calls.iter_mut().filter(|c| c.key == key) {
                call.time_ms = moved(call.time_ms);
            }
            attack.start_ms = at;
            attack.end_ms = moved(attack.end_ms);
            if let Some(d) = attack.deadline_ms.as_mut() {
                *d = moved(*d);
            }
            at += every_ms;
        }
        self.attack_calls.sort_by_key(|c| (c.time_ms, c.key));
    }

    /// One call as an event.
    fn render(&self, call: &Call) -> GenEvent {
        let key = &self.keys[call.key as usize];
        let identity = key.identity.for_call(call);
        GenEvent {
            time_ms: call.time_ms,
            key_id: identity.key_id.clone(),
            json: format::render(
                self.cfg.format,
                call,
                &identity,
                &key.agents[usize::from(call.agent)],
            ),
        }
    }

    /// Every call, in time order, a day at a time.
    pub(crate) fn calls(&self) -> impl Iterator<Item = Call> + '_ {
        (0..self.span.days).flat_map(move |day| self.calls_of_day(day))
    }

    /// The calls of UTC day `day`, sorted by time (then key).
    fn calls_of_day(&self, day: u32) -> Vec<Call> {
        let window = self.span.day_start(day)..self.span.day_start(day + 1);
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        for (index, key) in (0u32..).zip(&self.keys) {
            self.steady(index, key, day, &mut out);
            // Episodes belong to the local day they are scheduled on, which
            // may start or end in the neighbouring UTC day.
            let last = day.saturating_add(1).min(self.span.days.saturating_sub(1));
            for scheduled in day.saturating_sub(1)..=last {
                scratch.clear();
                self.episodes(index, key, scheduled, &mut scratch);
                out.extend(
                    scratch
                        .iter()
                        .filter(|c| window.contains(&c.time_ms))
                        .cloned(),
                );
            }
        }
        let from = self
            .attack_calls
            .partition_point(|c| c.time_ms < window.start);
        let to = self
            .attack_calls
            .partition_point(|c| c.time_ms < window.end);
        out.extend_from_slice(&self.attack_calls[from..to]);
        out.sort_by_key(|c| (c.time_ms, c.key));
        out
    }

    /// Key `index`'s rate-driven calls of UTC day `day`.
    fn steady(&self, index: u32, key: &Key, day: u32, out: &mut Vec<Call>) {
        if !key.active.contains(&day) {
            return;
        }
        let mut rng = stream(key.seed, day, STEADY);
        let nonces = mix(mix(key.seed, u64::from(day)), STEADY + NONCES);
        let mut sink = Sink::new(index, day, &key.habits, nonces, out);
        key.pattern
            .steady(&self.span.day(day, self.volume), &mut rng, &mut sink);
    }

    /// Key `index`'s episodes scheduled on day `day`, wherever they end.
    fn episodes(&self, index: u32, key: &Key, day: u32, out: &mut Vec<Call>) {
        if !key.active.contains(&day) {
            return;
        }
        let mut rng = stream(key.seed, day, EPISODE);
        let nonces = mix(mix(key.seed, u64::from(day)), EPISODE + NONCES);
        let mut sink = Sink::new(index, day, &key.habits, nonces, out);
        key.pattern
            .episodes(&self.span.day(day, self.volume), &mut rng, &mut sink);
    }
}
