//! `keywatch check-config`: validate and print the effective configuration.

use crate::cli::CheckConfigArgs;

use keywatch_core::inventory::Inventory;

use super::{load_config, Failure};

/// Loads, validates and prints; secrets are masked by their own `Serialize`.
/// The configured inventory files (providers' exports and the owner
/// mapping included) are validated too.
pub fn run(args: CheckConfigArgs) -> Result<(), Failure> {
    let cfg = load_config(Some(&args.config))?;
    if let Some(sources) = cfg.inventory.sources() {
        let inventory = Inventory::load_sources(&sources)?;
        let files: Vec<String> = sources
            .paths()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        eprintln!("inventory {}: {} keys", files.join(" + "), inventory.len());
    }
    println!(
        "# effective configuration of {} (file + KEYWATCH__* environment), secrets masked",
        args.config.display()
    );
    print!("{}", cfg.to_toml());
    Ok(())
}
