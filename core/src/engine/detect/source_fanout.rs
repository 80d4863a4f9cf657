//! `source_fanout`: a key used from many places at once — a leaked key pasted
//! into a botnet or a public CI.
//!
//! What counts is what is new. Per window the detector counts two things:
//!
//! - **new networks**: distinct networks (/24, /56) the key had not
//!   *established* (used for at least a day, within `forget_after`) before
//!   this window's first use of them. An outsider can produce these and only
//!   these. Far above the key's own peak (`ratio`, never below
//!   `min_sources`) is HIGH. The peak is learned only from windows that did
//!   not cross their threshold (and freely while the key learns), so an
//!   attack never teaches the baseline to accept the next one.
//! - **addresses inside established networks**: runners of a CI pool, hosts
//!   of a fleet, DHCP leases. An outsider cannot produce addresses inside the
//!   key's own networks, so this peak is learned from every window at its
//!   real size, and decays four times slower than other peaks (sporadic
//!   nightly bursts keep their size between runs). Far above it (`ratio`,
//!   never below `known_network_min_sources`) is only LOW.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{human_secs, Ctx, Report, DAY};
use crate::engine::finding::{Detector, Severity};
use crate::engine::state::{KeyState, SourceFacts};
use crate::types::{invalid, ConfigError, HumanDuration};

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

impl FanoutConfig {
    /// Checks the section's values; an error names the key and its value.
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        if !(self.ratio.is_finite() && self.ratio > 1.0) {
            return Err(invalid(
                &format!("{section}.ratio"),
                self.ratio,
                "must be a number greater than 1",
            ));
        }
        for (key, min) in [
            ("min_sources", self.min_sources),
            ("known_network_min_sources", self.known_network_min_sources),
        ] {
            if min == 0 {
                return Err(invalid(
                    &format!("{section}.{key}"),
                    min,
                    "must be at least 1",
                ));
            }
        }
        if !(60..=86_400).contains(&self.window.0.as_secs()) {
            return Err(invalid(
                &format!("{section}.window"),
                self.window,
                "must be between 1m and 1d",
            ));
        }
        Ok(())
    }
}

/// Fixed-point scale of the stored peaks (1/16 of a source).
const SCALE: f32 = 16.0;
/// Top bit of a window counter: the window crossed its threshold.
const ALERTED: u16 = 0x8000;
const COUNT: u16 = !ALERTED;

/// The current window's counts and the key's two decayed peaks, in 12 bytes
/// (the per-key budget has no room for more).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FanoutState {
    window: u32,
    /// New networks in the window; [`ALERTED`] once it crossed.
    new_nets: u16,
    /// Addresses inside established networks in the window; [`ALERTED`] likewise.
    inside: u16,
    /// Peak new networks per window (fixed point, [`SCALE`]).
    new_peak: u16,
    /// Peak addresses inside established networks per window (fixed point).
    inside_peak: u16,
}

fn to_fixed(x: f32) -> u16 {
    (x * SCALE).round().clamp(0.0, u16::MAX as f32) as u16
}

fn from_fixed(x: u16) -> f32 {
    x as f32 / SCALE
}

impl FanoutState {
    /// The key's decayed peak of new networks per window.
    pub fn peak(&self) -> f32 {
        from_fixed(self.new_peak)
    }

    /// The key's decayed peak of addresses inside its established networks
    /// per window.
    pub fn inside_peak(&self) -> f32 {
        from_fixed(self.inside_peak)
    }

    /// The current window's counts: (new networks, addresses inside).
    pub fn current(&self) -> (u16, u16) {
        (self.new_nets & COUNT, self.inside & COUNT)
    }

    /// One active day passes: the new-network peak decays by `factor`, the
    /// inside peak by its fourth root (a four times longer half-life).
    pub fn decay(&mut self, factor: f32) {
        self.new_peak = (self.new_peak as f32 * factor) as u16;
        self.inside_peak = (self.inside_peak as f32 * factor.sqrt().sqrt()) as u16;
    }

    /// Moves to `window`, learning the finished one.
    fn roll(&mut self, window: u32) {
        if window == self.window {
            return;
        }
        // Learned only when the window did not cross: an attack must not
        // raise the bar for the next one.
        if self.new_nets & ALERTED == 0 {
            self.new_peak = self.new_peak.max(to_fixed(self.new_nets as f32));
        }
        // Learned at its real size: only the key's own hosts get in here.
        self.inside_peak = self.inside_peak.max(to_fixed((self.inside & COUNT) as f32));
        self.window = window;
        self.new_nets = 0;
        self.inside = 0;
    }
}

/// Thresholds for the current window: (new networks, addresses inside).
pub fn thresholds(f: &FanoutState, cfg: &FanoutConfig) -> (u16, u16) {
    let t = |min: u32, peak: f32| {
        (min as f32)
            .max((cfg.ratio as f32 * peak).ceil())
            .min(COUNT as f32) as u16
    };
    (
        t(cfg.min_sources, f.peak()),
        t(cfg.known_network_min_sources, f.inside_peak()),
    )
}

/// Counts the event's source (`countable`: an address, not allowlisted) and
/// checks the window's counts.
pub fn check(state: &mut KeyState, ctx: &mut Ctx<'_, '_>, countable: bool, facts: &SourceFacts) {
    let s = ctx.settings;
    if !s.detectors.source_fanout.enabled {
        return;
    }
    state.fanout.roll(ctx.now / s.fanout_window_s);
    if !countable {
        return;
    }
    let established =
        facts.network_known && facts.network_first_seen.saturating_add(DAY) <= ctx.now;
    let (new_t, inside_t) = thresholds(&state.fanout, &s.detectors.source_fanout);
    let f = &mut state.fanout;
    if established {
        if !facts.first_in_window {
            return;
        }
        f.inside = (f.inside & ALERTED) | (f.inside & COUNT).saturating_add(1).min(COUNT);
        if f.inside & ALERTED != 0 || f.inside < inside_t || !ctx.eligible {
            return;
        }
        f.inside |= ALERTED;
        let (n, peak) = (f.inside & COUNT, f.inside_peak());
        report(state, ctx, false, n, peak, inside_t);
    } else {
        if facts.network_in_window {
            return;
        }
        f.new_nets = (f.new_nets & ALERTED) | (f.new_nets & COUNT).saturating_add(1).min(COUNT);
        if f.new_nets & ALERTED != 0 || f.new_nets < new_t || !ctx.eligible {
            return;
        }
        f.new_nets |= ALERTED;
        let (n, peak) = (f.new_nets & COUNT, f.peak());
        report(state, ctx, true, n, peak, new_t);
    }
}

fn report(
    state: &mut KeyState,
    ctx: &mut Ctx<'_, '_>,
    new_networks: bool,
    n: u16,
    peak: f32,
    threshold: u16,
) {
    if ctx.quiet(state, Detector::SourceFanout, u64::from(!new_networks)) {
        return;
    }
    let window_s = ctx.settings.fanout_window_s;
    let within = human_secs(window_s as u64);
    let (severity, summary, observed, baseline) = if new_networks {
        (
            Severity::High,
            format!(
                "{} was used from {n} networks it had not established within {within}, against a usual peak of {peak:.0} new networks per window (threshold {threshold}).",
                ctx.who(),
            ),
            json!({ "new_networks": n, "window_s": window_s, "rule": "new_networks" }),
            json!({ "peak_new_networks_per_window": (peak * 10.0).round() / 10.0 }),
        )
    } else {
        (
            Severity::Low,
            format!(
                "{} was used from {n} addresses inside its own networks within {within}, far above its peak of {peak:.0} (threshold {threshold}).",
                ctx.who(),
            ),
            json!({ "addresses_inside_known_networks": n, "window_s": window_s, "rule": "inside_known_networks" }),
            json!({ "peak_addresses_inside_known_networks_per_window": (peak * 10.0).round() / 10.0 }),
        )
    };
    let report = Report {
        severity,
        summary,
        observed,
        baseline,
        threshold: json!(threshold),
    };
    ctx.emit_sized(
        state,
        Detector::SourceFanout,
        u64::from(!new_networks),
        report,
        u32::from(n),
    );
}
