//! `keywatch replay`: findings as JSON Lines on stdout, a summary on stderr.

use std::io::{BufWriter, Write};

use anyhow::Context;

use std::collections::HashMap;

use crate::checkpoint::{Checkpoint, Origins, Store};
use crate::cli::ReplayArgs;
use crate::replay::{replay_into, Input};

use super::{load_config, open_engine, Failure};

/// Runs a replay.
pub fn run(args: ReplayArgs) -> Result<(), Failure> {
    let mut cfg = load_config(args.config.as_deref())?;
    if let Some(profile) = args.profile {
        cfg.decode.profile = profile;
        cfg.validate()?;
    }
    let inputs = args
        .files
        .iter()
        .map(|p| Input::read(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let engine = open_engine(&cfg)?;
    let summary = replay_into(&engine, &cfg, &inputs, |f| {
        serde_json::to_writer(&mut out, f)?;
        out.write_all(b"\n")?;
        Ok(())
    })
    .context("replay failed")?;
    out.flush().context("writing findings")?;
    eprint!("{}", summary.render());
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
    Ok(())
}
