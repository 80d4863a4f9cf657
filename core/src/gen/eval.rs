//! Detection judged against ground truth over many generated fleets: the
//! harness behind `benches/eval.rs` (any seeds, release speed, the README's
//! table) and the `eval` integration test (a few tuning seeds, in CI).
//!
//! A fleet is a [`Scenario`] with every [`AttackKind`] planted on keys of
//! their own among normal keys of every archetype, replayed through the
//! decoder and engine exactly as `keywatch replay` does. An attack is found
//! when its expected detector raised a finding on its key (or, for a role's
//! sessions, on any key of the role) between its first event and its
//! deadline (a ramp before 8x, a step in its first minutes, the first stolen
//! session; otherwise an hour after its last event). Every other finding is a
//! false positive, except those on an attacked key during its attack (a
//! second detector seeing the same incident).
//!
//! Seeds: [`TUNING_SEEDS`] are the ones we look at while tuning; the held-out
//! seeds ([`HELD_OUT_SEEDS`]) are only ever run to report, never to tune.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;

use super::{Attack, AttackKind, Format, GenConfig, Scenario};
use crate::config::Config;
use crate::engine::principal_identity;
use crate::replay::{replay, Input};

/// Seeds tuned on.
pub const TUNING_SEEDS: Range<u64> = 1..21;
/// Seeds never tuned on: run only to report.
pub const HELD_OUT_SEEDS: Range<u64> = 9001..9021;

/// One fleet's shape (the seed aside).
#[derive(Debug, Clone)]
pub struct FleetShape {
    /// Normal keys.
    pub keys: usize,
    /// Days of traffic.
    pub days: u32,
    /// Rate multiplier of the normal keys.
    pub volume: f64,
}

impl Default for FleetShape {
    /// 40 normal keys over 50 days (long enough for every family) at a fifth
    /// of the archetypes' rates: every archetype four times, five weeks of
    /// learning before the attacks.
    fn default() -> Self {
        FleetShape {
            keys: 40,
            days: 50,
            volume: 0.2,
        }
    }
}

/// A finding reduced to what judging needs.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Key id.
    pub key: String,
    /// Principal as tracked (a role session's role).
    pub principal: Option<String>,
    /// Detector name.
    pub detector: &'static str,
    /// Severity name.
    pub severity: &'static str,
    /// Event time, epoch ms.
    pub at_ms: i64,
    /// One-line summary.
    pub summary: String,
}

/// What one fleet gave.
#[derive(Debug, Clone)]
pub struct FleetResult {
    /// Its seed.
    pub seed: u64,
    /// Events replayed.
    pub events: u64,
    /// Per attack: its kind, and whether it was found in time.
    pub attacks: Vec<(AttackKind, bool)>,
    /// Findings that match no attack.
    pub false_positives: Vec<Seen>,
    /// For each attack not found in time: what was found on its key(s).
    pub missed: Vec<(Attack, Vec<Seen>)>,
}

fn matches_attack(f: &Seen, a: &Attack) -> bool {
    f.key == a.key_id
        || a.principal
            .as_deref()
            .is_some_and(|p| f.principal.as_deref() == Some(p))
}

/// Whether `f` is the attack found in time by its detector.
pub fn found_in_time(f: &Seen, a: &Attack) -> bool {
    let deadline = a.deadline_ms.unwrap_or(a.end_ms + 3_600_000);
    matches_attack(f, a)
        && f.detector == a.detector
        && f.at_ms >= a.start_ms - 1_000
        && f.at_ms <= deadline
}

/// Whether `f` belongs to an attack (any detector, during it).
fn during_attack(f: &Seen, attacks: &[Attack]) -> bool {
    attacks.iter().any(|a| {
        matches_attack(f, a) && f.at_ms >= a.start_ms - 1_000 && f.at_ms <= a.end_ms + 3_600_000
    })
}

/// Generates fleet `seed`, replays it with `cfg` and judges the findings.
/// Odd seeds are CloudTrail records, even ones the generic profile.
pub fn run_fleet(cfg: &Config, shape: &FleetShape, seed: u64) -> anyhow::Result<FleetResult> {
    let format = if seed % 2 == 1 {
        Format::CloudTrail
    } else {
        Format::Generic
    };
    let scenario = Scenario::new(GenConfig {
        seed,
        keys: shape.keys,
        days: shape.days,
        volume: shape.volume,
        attacks: true,
        format,
        ..GenConfig::default()
    });
    let mut bytes = Vec::new();
    for ev in scenario.events() {
        bytes.extend_from_slice(ev.json.as_bytes());
        bytes.push(b'\n');
    }
    let mut cfg = cfg.clone();
    cfg.decode.profile = format.profile().to_owned();
    let mut seen = Vec::new();
    let summary = replay(&cfg, &[Input::bytes(format!("fleet-{seed}"), bytes)], |f| {
        seen.push(Seen {
            key: f.key_id.clone(),
            principal: f
                .principal
                .as_deref()
                .map(|p| principal_identity(p).to_owned()),
            detector: f.detector.as_str(),
            severity: f.severity.as_str(),
            at_ms: f.observed_at_ms(),
            summary: f.summary.clone(),
        });
        Ok(())
    })?;
    let attacks = scenario.attacks();
    let missed = attacks
        .iter()
        .filter(|a| !seen.iter().any(|f| found_in_time(f, a)))
        .map(|a| {
            let on_key = seen
                .iter()
                .filter(|f| matches_attack(f, a))
                .cloned()
                .collect();
            (a.clone(), on_key)
        })
        .collect();
    Ok(FleetResult {
        missed,
        seed,
        events: summary.events,
        attacks: attacks
            .iter()
            .map(|a| (a.kind, seen.iter().any(|f| found_in_time(f, a))))
            .collect(),
        false_positives: seen
            .into_iter()
            .filter(|f| !during_attack(f, attacks))
            .collect(),
    })
}

/// Results over many fleets.
#[derive(Debug, Default)]
pub struct Report {
    /// Each fleet's result.
    pub fleets: Vec<FleetResult>,
}

impl Report {
    /// Attacks found in time, and planted, per kind.
    pub fn recall(&self) -> BTreeMap<&'static str, (usize, usize)> {
        let mut out: BTreeMap<&'static str, (usize, usize)> = BTreeMap::new();
        for (kind, found) in self.fleets.iter().flat_map(|f| &f.attacks) {
            let e = out.entry(kind.name()).or_default();
            e.0 += usize::from(*found);
            e.1 += 1;
        }
        out
    }

    /// False positives per detector: total and the worst fleet's count.
    pub fn false_positives(&self) -> BTreeMap<&'static str, (usize, usize)> {
        let mut out: BTreeMap<&'static str, (usize, usize)> = BTreeMap::new();
        for fleet in &self.fleets {
            let mut here: BTreeMap<&'static str, usize> = BTreeMap::new();
            for f in &fleet.false_positives {
                *here.entry(f.detector).or_default() += 1;
            }
            for (d, n) in here {
                let e = out.entry(d).or_default();
                e.0 += n;
                e.1 = e.1.max(n);
            }
        }
        out
    }

    /// Mean and worst false positives per fleet.
    pub fn per_fleet(&self) -> (f64, usize) {
        let counts: Vec<usize> = self
            .fleets
            .iter()
            .map(|f| f.false_positives.len())
            .collect();
        let mean = counts.iter().sum::<usize>() as f64 / counts.len().max(1) as f64;
        (mean, counts.into_iter().max().unwrap_or(0))
    }

    /// The report as Markdown tables.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let n = self.fleets.len();
        let events: u64 = self.fleets.iter().map(|f| f.events).sum();
        let _ = writeln!(s, "{n} fleets, {events} events\n");
        let _ = writeln!(s, "| attack | detector | found in time |\n|---|---|---|");
        for (kind, (found, total)) in self.recall() {
            let detector = AttackKind::ALL
                .iter()
                .find(|k| k.name() == kind)
                .map_or("", |k| k.detector());
            let _ = writeln!(s, "| {kind} | `{detector}` | {found} / {total} |");
        }
        let (mean, worst) = self.per_fleet();
        let _ = writeln!(
            s,
            "\n| false positives | total | worst fleet |\n|---|---|---|"
        );
        for (d, (total, max)) in self.false_positives() {
            let _ = writeln!(s, "| `{d}` | {total} | {max} |");
        }
        let _ = writeln!(s, "| **per fleet** | mean {mean:.2} | {worst} |");
        s
    }
}

/// Runs every seed of `seeds`.
pub fn evaluate(
    cfg: &Config,
    shape: &FleetShape,
    seeds: impl IntoIterator<Item = u64>,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    for seed in seeds {
        report.fleets.push(run_fleet(cfg, shape, seed)?);
    }
    Ok(report)
}
