//! `keywatch run -c FILE`: the daemon.

use crate::cli::RunArgs;
use crate::daemon::{self, Daemon};

use super::{load_config, Failure};

/// Loads the configuration (exit 64 on error) and runs until a signal.
pub fn run(args: RunArgs) -> Result<(), Failure> {
    let cfg = load_config(Some(&args.config))?;
    let rt = daemon::runtime()?;
    let d = Daemon::new(&cfg)?;
    rt.block_on(daemon::run(cfg, d, daemon::signals()))?;
    Ok(())
}
