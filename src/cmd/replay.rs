//! `keywatch replay`: findings as JSON Lines on stdout, a summary on stderr;
//! with `--incidents FILE`, the incidents they make in FILE.

use std::collections::HashMap;
use std::io::{BufWriter, IsTerminal, Write};

use anyhow::Context;

use crate::checkpoint::{Checkpoint, Origins, Store};
use crate::cli::ReplayArgs;
use keywatch_core::engine::Severity;
use keywatch_core::incident::{Incident, Tracker};
use keywatch_core::replay::{replay_into, Input, Options};
use keywatch_core::types::Entity;

use super::{load_config, open_engine, Failure};

/// Runs a replay. Files that fail are reported and skipped; the command
/// fails (exit 1) after replaying the rest.
pub fn run(args: ReplayArgs) -> Result<(), Failure> {
    let mut cfg = load_config(args.config.as_deref())?;
    if let Some(profile) = args.profile {
        cfg.decode.profile = profile;
        cfg.validate()?;
    }
    let inputs: Vec<Input> = args.files.iter().map(|p| Input::path(p)).collect();
    let opts = Options {
        reorder_window: args.reorder_window.0,
        max_decompressed: args.max_decompressed.0,
        jobs: usize::from(args.jobs),
        progress: std::io::stderr().is_terminal(),
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let engine = open_engine(&cfg)?;
    let mut incidents = match &args.incidents {
        Some(path) => Some(IncidentFile {
            out: BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            ),
            tracker: Tracker::new(
                &cfg.incidents,
                cfg.engine.entities.contains(&Entity::Principal),
            ),
            by_severity: [0; 5],
            sequences: 0,
        }),
        None => None,
    };
    let summary = replay_into(&engine, &cfg, &opts, &inputs, |f| {
        serde_json::to_writer(&mut out, f)?;
        out.write_all(b"\n")?;
        if let Some(file) = incidents.as_mut() {
            if f.folded.is_none() {
                // Findings arrive in event-time order: their time is the clock.
                for event in file.tracker.resolve_idle(f.observed_at_ms()) {
                    file.write(&event.incident)?;
                }
                file.tracker.observe(f);
            }
        }
        Ok(())
    })
    .context("replay failed")?;
    out.flush().context("writing findings")?;
    eprint!("{}", summary.render());
    if let Some(mut file) = incidents {
        for event in file.tracker.resolve_all() {
            file.write(&event.incident).context("writing incidents")?;
        }
        file.out.flush().context("writing incidents")?;
        let [info, low, medium, high, critical] = file.by_severity;
        eprintln!(
            "incidents: {} (critical {critical}, high {high}, medium {medium}, low {low}, info {info}); attack sequences {}",
            file.by_severity.iter().sum::<u64>(),
            file.sequences
        );
    }
    if let Some(hint) = &summary.profile_hint {
        eprintln!("warning: {hint}");
    }
    if let Some(dir) = &args.write_checkpoint {
        let store = Store::open(dir, cfg.checkpoint.keep).context("--write-checkpoint")?;
        let cp = Checkpoint::capture(&engine, &Origins::default(), &HashMap::new());
        let written = store.write(&cp).context("writing the checkpoint")?;
        eprintln!(
            "checkpoint of {} keys written to {} ({} bytes); `keywatch run` with checkpoint.dir = {:?} starts from it",
            cp.key_count(),
            written.path.display(),
            written.bytes,
            dir.display().to_string()
        );
    }
    if !summary.failed.is_empty() {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "{} of the inputs could not be read to their end (listed above); the rest was replayed",
            summary.failed.len()
        )));
    }
    Ok(())
}

/// `--incidents FILE`: the tracker, and each incident as it finally stood.
struct IncidentFile {
    out: BufWriter<std::fs::File>,
    tracker: Tracker,
    /// Incidents by final severity, info first.
    by_severity: [u64; 5],
    sequences: u64,
}

impl IncidentFile {
    fn write(&mut self, incident: &Incident) -> std::io::Result<()> {
        let i = match incident.severity {
            Severity::Info => 0,
            Severity::Low => 1,
            Severity::Medium => 2,
            Severity::High => 3,
            Severity::Critical => 4,
        };
        self.by_severity[i] += 1;
        self.sequences += u64::from(incident.attack_sequence);
        serde_json::to_writer(&mut self.out, incident)?;
        self.out.write_all(b"\n")
    }
}
