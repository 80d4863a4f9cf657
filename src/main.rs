//! The `keywatch` binary: parse the command line, set up logging, run one
//! command, map its error to an exit code (0 ok, 64 usage/config, 1 runtime,
//! 2 a `review --fail-on` gate that found keys).

use std::process::ExitCode;

use clap::Parser;
use keywatch::cli::{Cli, Command};
use keywatch::cmd;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(64)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    keywatch::telemetry::init_logging(&cli.log_filter());
    let result = match cli.command {
        Command::Run(args) => cmd::run::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Replay(args) => cmd::replay::run(args),
        Command::CheckConfig(args) => cmd::check_config::run(args),
        Command::Review(args) => cmd::review::run(args),
        Command::Gen(args) => cmd::gen::run(args),
        Command::Token(args) => cmd::token::run(args),
        Command::NetIntel(args) => cmd::netintel::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("keywatch: {failure:#}");
            ExitCode::from(failure.exit_code())
        }
    }
}
