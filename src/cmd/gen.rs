//! `keywatch gen`: realistic traffic as JSON Lines to stdout or a file, and
//! the ground truth as JSON: the injected attacks, and each normal key's
//! traffic archetype.

use std::io::{BufWriter, Write};

use anyhow::Context;
use chrono::NaiveDate;

use crate::cli::{GenArgs, GenAttackSet, GenFormat};
use crate::gen::{AttackSet, Format, GenConfig, Scenario};
use crate::source::produce::{EventProducer, Pacer};

use super::Failure;

/// How long `gen --brokers` waits for a broker to answer before it gives up
/// (`run`'s `kafka.startup_timeout` has the same role).
const BROKER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Builds the scenario the arguments describe.
pub fn scenario(args: &GenArgs) -> Result<Scenario, Failure> {
    let start = NaiveDate::parse_from_str(&args.start, "%Y-%m-%d").map_err(|e| {
        Failure::Usage(format!(
            "--start {:?}: {e}; write e.g. 2026-01-05",
            args.start
        ))
    })?;
    if args.days == 0 || args.keys == 0 {
        return Err(Failure::Usage(
            "--days and --keys must be at least 1".into(),
        ));
    }
    Ok(Scenario::new(GenConfig {
        seed: args.seed,
        keys: args.keys,
        start_ms: start
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp_millis(),
        days: args.days,
        attacks: args.attacks,
        format: match args.format {
            GenFormat::Generic => Format::Generic,
            GenFormat::Cloudtrail => Format::CloudTrail,
        },
        volume: args.volume,
        attack_set: match args.attack_set {
            GenAttackSet::Classic => AttackSet::Classic,
            GenAttackSet::Full => AttackSet::Full,
        },
    }))
}

/// Writes (or produces) the events, then the truth file.
pub fn run(args: GenArgs) -> Result<(), Failure> {
    let scenario = scenario(&args)?;
    if let (Some(brokers), Some(topic)) = (&args.brokers, &args.topic) {
        let mut producer = EventProducer::checked(brokers, topic, BROKER_TIMEOUT)?;
        let mut pacer = Pacer::new(args.rate);
        for ev in scenario.events() {
            producer.send(&ev)?;
            pacer.tick();
        }
        producer.flush(std::time::Duration::from_secs(60))?;
        tracing::info!(events = producer.sent(), topic, "produced");
        return write_truth(&args, &scenario);
    }
    let sink: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(1 << 20, sink);
    let mut n = 0u64;
    let mut pacer = Pacer::new(args.rate);
    for ev in scenario.events() {
        out.write_all(ev.json.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .context("writing events")?;
        n += 1;
        pacer.tick();
    }
    out.flush().context("writing events")?;
    tracing::info!(events = n, attacks = scenario.attacks().len(), "generated");
    write_truth(&args, &scenario)
}

fn write_truth(args: &GenArgs, scenario: &Scenario) -> Result<(), Failure> {
    if let Some(path) = &args.truth {
        let normal: std::collections::BTreeMap<String, &str> = scenario
            .normal_keys()
            .into_iter()
            .filter_map(|k| scenario.archetype(&k).map(|a| (k, a.name())))
            .collect();
        let truth = serde_json::to_vec_pretty(&serde_json::json!({
            "attacks": scenario.attacks(),
            "normal_keys": normal,
        }))
        .context("encoding truth")?;
        std::fs::write(path, truth).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
