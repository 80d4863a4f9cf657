//! `keywatch replay`: findings as JSON Lines on stdout, a summary on stderr.

use std::collections::HashMap;
use std::io::{BufWriter, IsTerminal, Write};

use anyhow::Context;

use crate::checkpoint::{Checkpoint, Origins, Store};
use crate::cli::ReplayArgs;
use keywatch_core::replay::{replay_into, Input, Options};

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
    let summary = replay_into(&engine, &cfg, &opts, &inputs, |f| {
        serde_json::to_writer(&mut out, f)?;
        out.write_all(b"\n")?;
        Ok(())
    })
    .context("replay failed")?;
    out.flush().context("writing findings")?;
    eprint!("{}", summary.render());
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
