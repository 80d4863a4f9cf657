//! The commands behind the CLI. Each takes its parsed arguments and returns
//! a [`Failure`] that knows its exit code.

pub mod check_config;
pub mod demo;
pub mod gen;
pub mod netintel;
pub mod produce;
pub mod replay;
pub mod review;
pub mod run;
pub mod token;

use crate::config::{Config, ConfigError};
use keywatch_core::engine::Engine;
use keywatch_core::inventory::{InventoryError, InventoryHandle};

/// Why a command stopped.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Bad usage or configuration: exit 64.
    #[error("configuration error: {0}")]
    Config(#[from] ConfigError),
    /// Bad arguments: exit 64.
    #[error("{0}")]
    Usage(String),
    /// The configured inventory file cannot be used: exit 64.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// A configured network intelligence file cannot be used: exit 64.
    #[error(transparent)]
    NetIntel(#[from] keywatch_core::netintel::NetIntelError),
    /// `review --fail-on`: a list it gates on is not empty (the keys are
    /// already printed): exit 2.
    #[error("{0}")]
    Gate(String),
    /// Anything that went wrong while running: exit 1.
    #[error(transparent)]
    Runtime(#[from] anyhow::Error),
}

impl From<crate::daemon::StartError> for Failure {
    fn from(e: crate::daemon::StartError) -> Failure {
        match e {
            crate::daemon::StartError::Inventory(e) => Failure::Inventory(e),
            crate::daemon::StartError::NetIntel(e) => Failure::NetIntel(e),
        }
    }
}

impl Failure {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Config(_)
            | Failure::Usage(_)
            | Failure::Inventory(_)
            | Failure::NetIntel(_) => 64,
            Failure::Runtime(_) => 1,
            Failure::Gate(_) => 2,
        }
    }
}

/// Loads the configuration for a command that may run without a file.
pub fn load_config(path: Option<&std::path::Path>) -> Result<Config, Failure> {
    Ok(Config::load(path)?)
}

/// An engine for `cfg`, enforcing its inventory and reading its network
/// intelligence files when they are configured.
pub fn open_engine(cfg: &Config) -> Result<Engine, Failure> {
    let inventory = match cfg.inventory.sources() {
        Some(sources) => Some(InventoryHandle::open(sources, None)?),
        None => None,
    };
    let netintel = keywatch_core::netintel::NetIntel::from_config(&cfg.netintel, None)?;
    Ok(Engine::with_parts(cfg, inventory, netintel))
}
