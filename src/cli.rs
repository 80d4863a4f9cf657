//! Command-line interface: the subcommands of the one `keywatch` binary.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// keywatch: watches how credentials are used and alerts the moment a key is
/// used in a way that does not fit its own history.
#[derive(Debug, Parser)]
#[command(name = "keywatch", version, about, long_about = None)]
pub struct Cli {
    /// Log filter (`error`, `warn`, `info`, `debug`, or a tracing directive).
    #[arg(long, global = true, env = "KEYWATCH_LOG", default_value = "info")]
    pub log: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the detectors over recorded events (JSON Lines, JSON arrays,
    /// CloudTrail `{"Records":[…]}` files, gzip or plain; `-` is stdin) in
    /// event-time order. Findings go to stdout as JSON Lines, a summary to stderr.
    Replay(ReplayArgs),
    /// Validate a configuration and print the effective result (secrets masked).
    CheckConfig(CheckConfigArgs),
    /// Generate realistic key-usage traffic, optionally with injected attacks.
    Gen(GenArgs),
}

/// `keywatch replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Configuration file (the same one `run` uses); defaults apply without it.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Mapping profile, overriding `decode.profile`: generic, cloudtrail,
    /// vault, kubernetes, github or a configured one.
    #[arg(short, long)]
    pub profile: Option<String>,
    /// Files to replay; `-` reads standard input.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// `keywatch check-config`.
#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// Configuration file.
    #[arg(short, long)]
    pub config: PathBuf,
}

/// `keywatch gen`.
#[derive(Debug, clap::Args)]
pub struct GenArgs {
    /// Event format.
    #[arg(long, value_enum, default_value_t = GenFormat::Generic)]
    pub format: GenFormat,
    /// Normal keys.
    #[arg(long, default_value_t = 40)]
    pub keys: usize,
    /// Days of traffic.
    #[arg(long, default_value_t = 50)]
    pub days: u32,
    /// Multiplier on every key's rate.
    #[arg(long, default_value_t = 1.0)]
    pub volume: f64,
    /// Random seed; the same seed gives the same traffic.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// First day, as a date (`2026-01-05`).
    #[arg(long, default_value = "2026-01-05")]
    pub start: String,
    /// Inject attacks on dedicated keys in the last days.
    #[arg(long)]
    pub attacks: bool,
    /// Write the ground truth to this JSON file: the injected attacks, and
    /// the archetype of every normal key.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Write events here instead of stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// Formats `gen` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GenFormat {
    /// Flat JSON, the `generic` profile.
    Generic,
    /// CloudTrail records, the `cloudtrail` profile.
    Cloudtrail,
}
