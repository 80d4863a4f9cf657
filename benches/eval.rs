//! Detection over generated fleets with ground truth: recall per attack kind
//! and false positives per detector, per fleet (mean and worst).
//!
//! ```text
//! cargo bench --bench eval                       # the tuning seeds 1-20
//! cargo bench --bench eval -- --held-out         # seeds 9001-9020: report only, never tune on them
//! cargo bench --bench eval -- --seeds 100..140 --verbose
//! cargo bench --bench eval -- --config my.toml   # your own detector settings
//! ```
//!
//! `--verbose` lists every miss and false positive.

use std::ops::Range;
use std::time::Instant;

use keywatch::config::Config;
use keywatch::gen::eval::{evaluate, FleetShape, HELD_OUT_SEEDS, TUNING_SEEDS};

fn parse_range(s: &str) -> Range<u64> {
    let (a, b) = s
        .split_once("..")
        .unwrap_or_else(|| panic!("--seeds {s:?}: write A..B"));
    a.parse().expect("seed")..b.parse().expect("seed")
}

fn main() -> anyhow::Result<()> {
    let mut seeds = TUNING_SEEDS;
    let mut verbose = false;
    let mut shape = FleetShape::default();
    let mut cfg = Config::default();
    // `cargo test --all-targets` runs this without `--bench`, in a debug
    // build: the `eval` integration test covers that case.
    if !std::env::args().any(|a| a == "--bench") {
        println!("eval: run with `cargo bench --bench eval`");
        return Ok(());
    }
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--held-out" => seeds = HELD_OUT_SEEDS,
            "--seeds" => seeds = parse_range(&args.next().expect("--seeds A..B")),
            "--verbose" => verbose = true,
            "--keys" => shape.keys = args.next().expect("--keys N").parse()?,
            "--days" => shape.days = args.next().expect("--days N").parse()?,
            "--volume" => shape.volume = args.next().expect("--volume X").parse()?,
            "--config" => cfg = Config::load(Some(args.next().expect("--config FILE").as_ref()))?,
            // cargo bench passes --bench.
            _ => {}
        }
    }
    let started = Instant::now();
    let report = evaluate(&cfg, &shape, seeds.clone())?;
    println!(
        "seeds {}..{} ({} normal keys, {} days, volume {}), {:.1} s\n",
        seeds.start,
        seeds.end,
        shape.keys,
        shape.days,
        shape.volume,
        started.elapsed().as_secs_f64()
    );
    println!("{}", report.markdown());
    if verbose {
        for fleet in &report.fleets {
            for (attack, on_key) in &fleet.missed {
                println!(
                    "seed {}: missed {} on {} ({}..{}, deadline {:?}): {}",
                    fleet.seed,
                    attack.kind.name(),
                    attack.key_id,
                    attack.start_ms,
                    attack.end_ms,
                    attack.deadline_ms,
                    attack.description
                );
                for f in on_key {
                    println!(
                        "    found {} {} at {}: {}",
                        f.detector, f.severity, f.at_ms, f.summary
                    );
                }
            }
            for f in &fleet.false_positives {
                println!(
                    "seed {}: false positive {} {} on {} at {}: {}",
                    fleet.seed,
                    f.detector,
                    f.severity,
                    f.key,
                    chrono::DateTime::from_timestamp_millis(f.at_ms).unwrap_or_default(),
                    f.summary
                );
            }
        }
    }
    Ok(())
}
