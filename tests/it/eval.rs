//! The evaluation harness on a few tuning seeds: every planted attack of
//! every family found in time by its detector, and false positives within
//! what a team would keep a monitor switched on for (at most 3 in any fleet,
//! at most 1 a fleet on average). `cargo bench --bench eval` runs the same
//! over 20 tuning and 20 held-out seeds at release speed.

use keywatch::config::Config;
use keywatch::gen::eval::{evaluate, FleetShape, TUNING_SEEDS};
use keywatch::gen::AttackKind;

#[test]
fn every_attack_family_found_in_time_with_few_false_positives() {
    // One CloudTrail fleet (odd seed) and one generic, with every archetype
    // at least once (a debug build replays them in well under a minute).
    let shape = FleetShape {
        keys: 16,
        ..FleetShape::default()
    };
    let report = evaluate(&Config::default(), &shape, TUNING_SEEDS.take(2)).unwrap();
    let table = report.markdown();
    for fleet in &report.fleets {
        assert_eq!(
            fleet.attacks.len(),
            AttackKind::ALL.len(),
            "every family planted"
        );
        for (kind, found) in &fleet.attacks {
            assert!(
                found,
                "seed {}: {} not found in time by {}\n{table}",
                fleet.seed,
                kind.name(),
                kind.detector()
            );
        }
        let fps: Vec<String> = fleet
            .false_positives
            .iter()
            .map(|f| format!("{} {} {}: {}", f.detector, f.severity, f.key, f.summary))
            .collect();
        assert!(fps.len() <= 3, "seed {}: {fps:#?}", fleet.seed);
    }
    let (mean, _) = report.per_fleet();
    assert!(mean <= 1.0, "{table}");
}
