//! `keywatch check-config`: validate and print the effective configuration.

use crate::cli::CheckConfigArgs;

use keywatch_core::inventory::Inventory;
use keywatch_core::netintel::config::NetIntelConfig;
use keywatch_core::netintel::{Counters, Tables};

use super::{load_config, Failure};

/// Loads, validates and prints; secrets are masked by their own `Serialize`.
/// The configured inventory files (providers' exports, their credential
/// reports and the owner mapping included) and the network intelligence
/// files are loaded too (a file that does not load is the error), and files
/// older than `netintel.max_age` are warned about.
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
    check_netintel(&cfg.netintel)?;
    println!(
        "# effective configuration of {} (file + KEYWATCH__* environment), secrets masked",
        args.config.display()
    );
    print!("{}", cfg.to_toml());
    Ok(())
}

/// Loads the network intelligence files in force and says what they hold,
/// what is missing from `netintel.dir`, and which are older than
/// `netintel.max_age`.
fn check_netintel(cfg: &NetIntelConfig) -> Result<(), Failure> {
    if !cfg.enabled() {
        eprintln!(
            "netintel: no files configured (no country, ASN or cloud knowledge); \
             set netintel.dir and run `keywatch netintel update`"
        );
        return Ok(());
    }
    if let Some(dir) = &cfg.dir {
        let found = cfg.in_force();
        if found.city_db.is_none() && found.asn_db.is_none() && found.cloud_ranges.is_empty() {
            eprintln!(
                "warning: netintel.dir {} holds no database yet: run `keywatch netintel update --dir {}`",
                dir.display(),
                dir.display()
            );
        }
    }
    // The tables alone: the daemon's start-up warnings are this command's
    // own lines below, said once.
    let entries = Tables::load(&cfg.in_force(), Counters::detached())?.entries;
    eprintln!(
        "netintel: {}",
        entries
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (path, age) in cfg.stale_files(std::time::SystemTime::now()) {
        eprintln!(
            "warning: {} is {} days old, older than netintel.max_age ({}): \
             run `keywatch netintel update`",
            path.display(),
            age.as_secs() / 86_400,
            cfg.max_age
        );
    }
    Ok(())
}
