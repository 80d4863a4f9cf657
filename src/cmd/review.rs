//! `keywatch review`: the key security review, from the inventory and
//! recorded events replayed through the engine, as Markdown or JSON on stdout.

use std::io::Write;

use anyhow::Context;

use crate::checkpoint::{Origins, Store};
use crate::cli::{ReviewArgs, ReviewFormat};
use keywatch_core::engine::state::Secs;
use keywatch_core::engine::Engine;
use keywatch_core::inventory::InventoryHandle;
use keywatch_core::replay::{replay_into, Input, Options};
use keywatch_core::review::{review, ReviewInput, Thresholds};

use super::{load_config, Failure};

/// Replays the events with the inventory enforced, then writes the review.
pub fn run(args: ReviewArgs) -> Result<(), Failure> {
    let mut cfg = load_config(args.config.as_deref())?;
    if let Some(path) = args.inventory {
        cfg.inventory.path = Some(path);
    }
    if let Some(profile) = args.profile {
        cfg.decode.profile = profile;
    }
    if let Some(d) = args.stale_after {
        cfg.inventory.stale_after = d;
    }
    if let Some(d) = args.rotation_after {
        cfg.inventory.rotation_after = d;
    }
    if let Some(path) = args.store {
        cfg.store.path = path;
    }
    cfg.validate()?;
    if args
        .fail_on
        .contains(&keywatch_core::review::Class::Compromised)
        && !cfg.store.enabled()
    {
        return Err(Failure::Usage(
            "--fail-on compromised needs the findings store: pass --store FILE or set store.path"
                .to_owned(),
        ));
    }
    let sources = cfg.inventory.sources().ok_or_else(|| {
        Failure::Usage(
            "review needs an inventory: pass --inventory FILE or set inventory.path".to_owned(),
        )
    })?;
    let now = args
        .now
        .as_deref()
        .map(|t| {
            keywatch_core::decode::time::parse_str(t)
                .map(|ms| (ms / 1000) as Secs)
                .ok_or_else(|| Failure::Usage(format!("--now {t:?}: not an RFC 3339 time")))
        })
        .transpose()?;
    // The keys responders confirmed compromised, from the findings store
    // (read before the replay: a wrong path fails at once).
    let compromised = cfg
        .store
        .enabled()
        .then(|| crate::store::compromised_keys_in(&cfg.store.path))
        .transpose()
        .map_err(Failure::Usage)?;
    let inventory = InventoryHandle::open(sources, None)?;
    let engine = Engine::with_inventory(&cfg, inventory.clone());
    if let Some(dir) = &args.checkpoint {
        let store = Store::open(dir, cfg.checkpoint.keep).context("--checkpoint")?;
        let (path, cp) = store.load_newest().ok_or_else(|| {
            Failure::Usage(format!("no readable checkpoint in {}", dir.display()))
        })?;
        let keys = cp.key_count();
        cp.restore(&engine, &Origins::default());
        tracing::info!(path = %path.display(), keys, "reviewing from checkpoint");
    }
    let inputs: Vec<Input> = args.files.iter().map(|p| Input::path(p)).collect();
    let mut findings = Vec::new();
    let summary = replay_into(&engine, &cfg, &Options::default(), &inputs, |f| {
        findings.push(f.clone());
        Ok(())
    })
    .context("replaying the events")?;
    if !summary.failed.is_empty() {
        eprint!("{}", summary.render());
        return Err(Failure::Runtime(anyhow::anyhow!(
            "{} of the event files could not be read to their end (listed above)",
            summary.failed.len()
        )));
    }
    let span = summary
        .span_ms
        .map(|(first, last)| ((first / 1000) as Secs, (last / 1000) as Secs));
    let watermark = engine
        .stats()
        .watermark_ms
        .load(std::sync::atomic::Ordering::Relaxed);
    let now = now
        .or(span.map(|s| s.1))
        .or((watermark > 0).then_some((watermark / 1000) as Secs))
        .unwrap_or_else(|| {
            let wall = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            wall.as_secs() as Secs
        });
    let report = review(&ReviewInput {
        engine: &engine,
        inventory: &inventory.current(),
        findings: &findings,
        now,
        observed_since: span.map(|s| s.0),
        thresholds: Thresholds::from_config(&cfg.inventory),
    });
    let report = match compromised {
        Some(keys) => report.with_compromised(keys),
        None => report,
    };
    let mut out = std::io::stdout().lock();
    match args.format {
        ReviewFormat::Markdown => out.write_all(report.to_markdown().as_bytes()),
        ReviewFormat::Json => serde_json::to_writer_pretty(&mut out, &report)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n")),
    }
    .context("writing the review")?;
    eprintln!(
        "reviewed {} keys ({} listed, {} unknown) from {} events; {} findings{}",
        report.keys.len(),
        report.summary.listed,
        report.summary.unknown,
        summary.events,
        findings.len(),
        report
            .compromised
            .as_ref()
            .map(|k| format!("; {} keys confirmed compromised (findings store)", k.len()))
            .unwrap_or_default()
    );
    gate(&report, &args.fail_on)
}

/// `--fail-on`: one line per offending key on stderr, then exit 2 when
/// there is any.
fn gate(
    report: &keywatch_core::review::Review,
    classes: &[keywatch_core::review::Class],
) -> Result<(), Failure> {
    if classes.is_empty() {
        return Ok(());
    }
    let offences = report.offences(classes);
    if offences.is_empty() {
        return Ok(());
    }
    let mut err = std::io::stderr().lock();
    for o in &offences {
        let _ = writeln!(err, "fail-on {o}");
    }
    let counts: Vec<String> = keywatch_core::review::Class::ALL
        .into_iter()
        .map(|class| (class, offences.iter().filter(|o| o.class == class).count()))
        .filter(|&(_, n)| n > 0)
        .map(|(class, n)| format!("{n} {class}"))
        .collect();
    Err(Failure::Gate(format!(
        "review gate failed: {} (--fail-on {})",
        counts.join(", "),
        classes
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(",")
    )))
}
