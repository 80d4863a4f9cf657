//! Command-line interface: the subcommands of the one `keywatch` binary.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::HumanDuration;

/// keywatch: watches how credentials are used and alerts the moment a key is
/// used in a way that does not fit its own history.
#[derive(Debug, Parser)]
#[command(name = "keywatch", version, about, long_about = None)]
pub struct Cli {
    /// Log filter (`error`, `warn`, `info`, `debug`, or a tracing
    /// directive). Default: `info`; `warn` for `demo`, which shows its own
    /// progress.
    #[arg(long, global = true, env = "KEYWATCH_LOG")]
    pub log: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The log filter to use: `--log` or the command's default, and for
    /// the demo without the per-finding log lines (it prints each finding
    /// once, on stdout).
    pub fn log_filter(&self) -> String {
        match (&self.command, &self.log) {
            (Command::Demo(_), log) => {
                format!("{},keywatch::finding=off", log.as_deref().unwrap_or("warn"))
            }
            (_, Some(log)) => log.clone(),
            (_, None) => "info".to_owned(),
        }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The daemon: consume Kafka, detect, alert.
    Run(RunArgs),
    /// The whole pipeline with nothing to install: an embedded Kafka broker,
    /// weeks of realistic traffic with injected attacks, alerts on stdout.
    Demo(DemoArgs),
    /// Run the detectors over recorded events (JSON Lines, JSON arrays,
    /// CloudTrail `{"Records":[…]}` files, gzip or plain; `-` is stdin) in
    /// event-time order. Findings go to stdout as JSON Lines, a summary to stderr.
    Replay(ReplayArgs),
    /// Validate a configuration and print the effective result (secrets masked).
    CheckConfig(CheckConfigArgs),
    /// The key security review: every key by system, privilege and age;
    /// stale, overdue, expired-but-used and unknown keys; least-privilege
    /// candidates; ranked by risk. From the inventory and recorded events.
    Review(ReviewArgs),
    /// Generate realistic key-usage traffic, optionally with injected attacks.
    Gen(GenArgs),
    /// Per-user API tokens (the file `http.access.tokens_path` names):
    /// create one (shown once, stored hashed), list them, revoke one. The
    /// running daemon sees each change from its next request on.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Network intelligence files: `update` fetches current country, ASN
    /// and cloud range data from their publishers.
    #[command(name = "netintel")]
    NetIntel(NetIntelArgs),
}

/// `keywatch token`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token for a user and print it (only this once).
    Create {
        /// Configuration file (the same one `run` uses).
        #[arg(short, long)]
        config: PathBuf,
        /// Whom the token signs in: the name the audit trail records.
        #[arg(long)]
        user: String,
        /// What the token may do: viewer, responder or admin.
        #[arg(long)]
        role: crate::auth::Role,
    },
    /// List the tokens (never the tokens themselves): id, user, role,
    /// created, revoked.
    List {
        /// Configuration file (the same one `run` uses).
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Revoke a token by its id, or every token of a user by the user's name.
    Revoke {
        /// Configuration file (the same one `run` uses).
        #[arg(short, long)]
        config: PathBuf,
        /// The token's id (as `list` shows it) or a user name.
        id: String,
    },
}

/// `keywatch netintel`.
#[derive(Debug, clap::Args)]
pub struct NetIntelArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: NetIntelCommand,
}

/// `keywatch netintel` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum NetIntelCommand {
    /// Fetch the country database, the ASN ranges and the AWS and Google
    /// Cloud ranges into a directory, each checked by the daemon's loader
    /// and swapped in atomically; a running daemon with `netintel.dir`
    /// there picks them up without a restart. Exit 1 when any source
    /// failed (its previous file stays).
    Update(NetIntelUpdateArgs),
}

/// `keywatch netintel update`.
#[derive(Debug, clap::Args)]
pub struct NetIntelUpdateArgs {
    /// Directory to write (default: `netintel.dir` of `--config`, else
    /// `$XDG_DATA_HOME/keywatch/netintel`, i.e. `~/.local/share/keywatch/netintel`).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Configuration file whose `netintel.dir` is the directory.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Only these sources (comma-separated): country, asn, aws, gcp.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// npm registry (or mirror) to fetch the country and ASN packages from.
    #[arg(long)]
    pub registry: Option<String>,
    /// Where AWS publishes its ranges (a mirror's address instead).
    #[arg(long)]
    pub aws_url: Option<String>,
    /// Where Google Cloud publishes its ranges (a mirror's address instead).
    #[arg(long)]
    pub gcp_url: Option<String>,
    /// Accept a new file even when it holds less than half the entries of
    /// the one it replaces.
    #[arg(long)]
    pub force: bool,
}

/// `keywatch run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Configuration file.
    #[arg(short, long)]
    pub config: PathBuf,
}

/// `keywatch demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// A configuration whose `[engine]`, `[detectors]`, `[alerts]` and
    /// `[http]` sections the demo uses (its Kafka settings are the demo's own).
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Address of the metrics and API server.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: String,
    /// Stop after this long (e.g. `2m`); default: run until Ctrl-C.
    #[arg(long)]
    pub duration: Option<crate::config::HumanDuration>,
    /// Events per second of the live phase, at most 1.5. The warm-up
    /// replays 36 days of the same fleet at the same rate (about 3 million
    /// events per event/s), as fast as the daemon takes them.
    #[arg(long, default_value_t = 0.5)]
    pub rate: f64,
    /// Normal keys in the generated fleet.
    #[arg(long, default_value_t = 40)]
    pub keys: usize,
    /// Random seed of the traffic.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// `keywatch replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Configuration file (the same one `run` uses); defaults apply without it.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Mapping profile, overriding `decode.profile`: generic, cloudtrail,
    /// vault, kubernetes, github, gcp, azure, okta or a configured one.
    #[arg(short, long)]
    pub profile: Option<String>,
    /// Files to replay, or directories walked recursively for event logs
    /// (`*.json`, `*.jsonl`, `*.ndjson`, `*.log`, `*.txt`, each also `.gz`);
    /// `-` reads standard input.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Write the learned state as a checkpoint into this directory, so a new
    /// deployment of `run` (with `checkpoint.dir` pointing there) starts with
    /// baselines instead of blind.
    #[arg(long, value_name = "DIR")]
    pub write_checkpoint: Option<PathBuf>,
    /// How far out of event-time order the files may be: events later than
    /// this are applied late and counted in the summary.
    #[arg(long, value_name = "DURATION", default_value = "15m")]
    pub reorder_window: HumanDuration,
    /// Per-file limit on decompressed bytes (a gzip file expanding past it
    /// fails with this limit named, and the others are replayed).
    #[arg(long, value_name = "SIZE", default_value = "4GiB")]
    pub max_decompressed: keywatch_core::replay::ByteSize,
    /// Threads: with 1 everything runs on one; with N, up to N - 1 files are
    /// decoded on threads of their own and N threads apply the events, each
    /// identity on one of them in event-time order (same findings, same order).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,
    /// Also group the findings into incidents (as `[incidents]` says, even
    /// when it is off) and write each, as it finally stood, to this JSON
    /// Lines file; their count goes to the summary.
    #[arg(long, value_name = "FILE")]
    pub incidents: Option<PathBuf>,
}

/// `keywatch review`.
#[derive(Debug, clap::Args)]
pub struct ReviewArgs {
    /// Configuration file (the same one `run` uses); defaults apply without it.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Inventory file (.toml, .json, .csv), overriding `inventory.path`.
    #[arg(short, long)]
    pub inventory: Option<PathBuf>,
    /// Mapping profile of the events, overriding `decode.profile`.
    #[arg(short, long)]
    pub profile: Option<String>,
    /// Markdown for people, JSON for machines.
    #[arg(long, value_enum, default_value_t = ReviewFormat::Markdown)]
    pub format: ReviewFormat,
    /// The findings store to read the keys confirmed compromised from
    /// (overrides `store.path`; without either, the review has no such section).
    #[arg(long, value_name = "FILE")]
    pub store: Option<PathBuf>,
    /// A valid key unused this long is stale (overrides `inventory.stale_after`, default 90d).
    #[arg(long)]
    pub stale_after: Option<HumanDuration>,
    /// A key not rotated within this long is overdue (overrides `inventory.rotation_after`, default 90d).
    #[arg(long)]
    pub rotation_after: Option<HumanDuration>,
    /// Time of the review, RFC 3339. Default: the newest event's time (the
    /// end of the recording), or the current time without events.
    #[arg(long)]
    pub now: Option<String>,
    /// Start from the newest checkpoint in this directory (the daemon's
    /// `checkpoint.dir`): the review then covers everything the daemon has
    /// learned; FILES, if any, are replayed on top.
    #[arg(long, value_name = "DIR")]
    pub checkpoint: Option<PathBuf>,
    /// A gate for CI/CD: exit 2 when any of these lists is non-empty
    /// (comma-separated: expired-in-use, unknown, stale, rotation-overdue,
    /// compromised), with one line per offending key on stderr.
    #[arg(long, value_delimiter = ',', value_name = "CLASSES")]
    pub fail_on: Vec<keywatch_core::review::Class>,
    /// Recorded events, as `replay` reads them; `-` is stdin. None: the
    /// inventory alone.
    pub files: Vec<PathBuf>,
}

/// Formats `review` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReviewFormat {
    /// A summary, then tables.
    Markdown,
    /// The whole review as one JSON document.
    Json,
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
    /// Multiplier on every key's rate. At the defaults (40 keys, 50 days,
    /// 0.25) that is about 550,000 events, 190 MB of generic JSON Lines
    /// (CloudTrail about 2.5 times that); size grows with keys, days and
    /// volume alike.
    #[arg(long, default_value_t = 0.25, value_parser = positive_rate)]
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
    /// Which attacks `--attacks` injects.
    #[arg(long, value_enum, default_value_t = GenAttackSet::Full)]
    pub attack_set: GenAttackSet,
    /// Write the ground truth to this JSON file: the injected attacks, and
    /// the archetype of every normal key.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Write a key inventory (CSV) for `keywatch review` here: the
    /// generated keys with owners and dates, except two left out (unknown
    /// in traffic), plus two listed keys unused for months (stale) and two
    /// whose rotation is overdue.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Write events here instead of stdout.
    #[arg(short, long, conflicts_with = "brokers")]
    pub output: Option<PathBuf>,
    /// Produce to Kafka at these brokers instead (keyed by key id).
    #[arg(long, requires = "topic")]
    pub brokers: Option<String>,
    /// Topic to produce to.
    #[arg(long)]
    pub topic: Option<String>,
    /// Events per second (0 = as fast as possible).
    #[arg(long, default_value_t = 0.0, value_parser = non_negative_rate)]
    pub rate: f64,
}

/// A rate or multiplier above zero.
fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => Err("must be a number above 0".to_owned()),
        Err(_) => Err("not a number".to_owned()),
    }
}

/// A rate of zero (as fast as possible) or above.
fn non_negative_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(0.0) => Ok(0.0),
        _ => positive_rate(s)
            .map_err(|_| "must be 0 (as fast as possible) or a number above 0".to_owned()),
    }
}

/// Attack sets `gen --attacks` can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GenAttackSet {
    /// The six classic kinds: stolen key, burst, dormant revival, error
    /// storm, fan-out, scope creep.
    Classic,
    /// Every kind: also ramps, steps, a 3x evening rise, a settled roamer
    /// stolen with its own client, a role's stolen sessions, a daily key gone
    /// quiet and a brand-new identity minting credentials.
    Full,
}

/// Formats `gen` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GenFormat {
    /// Flat JSON, the `generic` profile.
    Generic,
    /// CloudTrail records, the `cloudtrail` profile.
    Cloudtrail,
    /// Google Cloud Audit Log entries, the `gcp` profile.
    Gcp,
    /// Entra ID service-principal sign-ins, the `azure` profile.
    Azure,
    /// Okta System Log events, the `okta` profile.
    Okta,
}
