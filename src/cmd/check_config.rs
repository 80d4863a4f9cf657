//! `keywatch check-config`: validate and print the effective configuration.

use crate::cli::CheckConfigArgs;

use super::{load_config, Failure};

/// Loads, validates and prints; secrets are masked by their own `Serialize`.
pub fn run(args: CheckConfigArgs) -> Result<(), Failure> {
    let cfg = load_config(Some(&args.config))?;
    println!(
        "# effective configuration of {} (file + KEYWATCH__* environment), secrets masked",
        args.config.display()
    );
    print!("{}", cfg.to_toml());
    Ok(())
}
