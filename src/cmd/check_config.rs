//! `keywatch check-config`: validate and print the effective configuration.

use crate::cli::CheckConfigArgs;

use keywatch_core::inventory::Inventory;

use super::{load_config, Failure};

/// Loads, validates and prints; secrets are masked by their own `Serialize`.
/// A configured inventory file is validated too.
pub fn run(args: CheckConfigArgs) -> Result<(), Failure> {
    let cfg = load_config(Some(&args.config))?;
    if let Some(path) = &cfg.inventory.path {
        let inventory = Inventory::load(path)?;
        eprintln!("inventory {}: {} keys", path.display(), inventory.len());
    }
    println!(
        "# effective configuration of {} (file + KEYWATCH__* environment), secrets masked",
        args.config.display()
    );
    print!("{}", cfg.to_toml());
    Ok(())
}
