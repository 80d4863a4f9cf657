//! `keywatch gen`: realistic traffic as JSON Lines to stdout or a file, and
//! the ground truth as JSON: the injected attacks, and each normal key's
//! traffic archetype.

use std::io::{BufWriter, Write};

use anyhow::Context;
use chrono::NaiveDate;

use crate::cli::{GenArgs, GenAttackSet, GenFormat};
use crate::cmd::produce::{EventProducer, Pacer};
use keywatch_core::gen::{AttackSet, Format, GenConfig, Scenario};

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
            GenFormat::Gcp => Format::Gcp,
            GenFormat::Azure => Format::Azure,
            GenFormat::Okta => Format::Okta,
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
        write_inventory(&args, &scenario)?;
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
    write_inventory(&args, &scenario)?;
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

/// Keys of the generated fleet the inventory leaves out, so that `review`
/// lists them as unknown.
const UNLISTED: usize = 2;

/// Writes the inventory `--inventory` asks for: every key with an owner,
/// system, privilege and dates, a few deliberately wrong (see
/// [`GenArgs::inventory`]). Dates are relative to the scenario's end, so
/// `review` of the generated events (as of their last day) finds exactly
/// the planted problems.
fn write_inventory(args: &GenArgs, scenario: &Scenario) -> Result<(), Failure> {
    let Some(path) = &args.inventory else {
        return Ok(());
    };
    let end = i64::from(scenario.config().days);
    let day = |offset: i64| {
        chrono::DateTime::from_timestamp_millis(scenario.config().start_ms + offset * 86_400_000)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default()
    };
    let mut keys: Vec<(String, &str)> = scenario
        .normal_keys()
        .into_iter()
        .map(|k| {
            let archetype = scenario.archetype(&k).map_or("unknown", |a| a.name());
            (k, archetype)
        })
        .collect();
    // The first keys (office hours, CI) are busy every weekday.
    keys.drain(..keys.len().min(UNLISTED));
    // Sessions' keys change every hour; the attacked role is not a key.
    keys.extend(
        scenario
            .attacks()
            .iter()
            .filter(|a| a.principal.is_none())
            .map(|a| (a.key_id.clone(), "attacked")),
    );
    let mut out = csv::Writer::from_writer(Vec::new());
    let header = [
        "key_id",
        "owner",
        "team",
        "system",
        "privilege",
        "created",
        "last_rotated",
        "last_used",
    ];
    let write = |out: &mut csv::Writer<Vec<u8>>, row: [&str; 8]| {
        out.write_record(row).context("encoding the inventory")
    };
    write(&mut out, header)?;
    const PRIVILEGES: [&str; 3] = ["read", "write", "admin"];
    for (i, (key, system)) in keys.iter().enumerate() {
        // Two keys last rotated 200 days before the end: overdue.
        let rotated = if i < 2 { day(end - 200) } else { day(end - 30) };
        let owner = format!("{system}-owner@example.com");
        let team = format!("team-{}", i % 4 + 1);
        write(
            &mut out,
            [
                key,
                &owner,
                &team,
                system,
                PRIVILEGES[i % 3],
                &day(end - 400),
                &rotated,
                "",
            ],
        )?;
    }
    // Listed, valid and unused for months: stale.
    for n in 1..=2 {
        let key = format!("AKIASTALE{n:011}");
        write(
            &mut out,
            [
                &key,
                "former-owner@example.com",
                "team-legacy",
                "legacy",
                "write",
                &day(end - 500),
                &day(end - 60),
                &day(end - 150),
            ],
        )?;
    }
    let bytes = out.into_inner().context("encoding the inventory")?;
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
