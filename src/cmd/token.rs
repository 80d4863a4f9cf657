//! `keywatch token`: per-user API tokens in `http.access.tokens_path`.

use std::path::{Path, PathBuf};

use crate::auth::tokens::{TokenError, TokenFileStore};
use crate::cli::TokenCommand;

use super::{load_config, Failure};

/// Runs one `token` subcommand.
pub fn run(command: TokenCommand) -> Result<(), Failure> {
    match command {
        TokenCommand::Create { config, user, role } => {
            let (record, token) = store(&config)?.create(&user, role).map_err(failure)?;
            // The token alone on stdout, for `$(keywatch token create ...)`.
            println!("{token}");
            eprintln!(
                "token {} for {} ({role}) created. It is shown this once and stored only as its hash: keep it in a secret store. The daemon accepts it from now on; `keywatch token revoke -c {} {}` ends it.",
                record.id,
                record.user,
                config.display(),
                record.id
            );
        }
        TokenCommand::List { config } => {
            let tokens = store(&config)?.list().map_err(failure)?;
            println!(
                "{:<12} {:<32} {:<10} {:<21} REVOKED",
                "ID", "USER", "ROLE", "CREATED"
            );
            for t in tokens {
                println!(
                    "{:<12} {:<32} {:<10} {:<21} {}",
                    t.id,
                    t.user,
                    t.role,
                    t.created,
                    t.revoked.as_deref().unwrap_or("-")
                );
            }
        }
        TokenCommand::Revoke { config, id } => {
            for t in store(&config)?.revoke(&id).map_err(failure)? {
                println!("revoked {} ({}, {})", t.id, t.user, t.role);
            }
        }
    }
    Ok(())
}

/// The tokens file the configuration names.
fn store(config: &Path) -> Result<TokenFileStore, Failure> {
    let cfg = load_config(Some(config))?;
    let path: PathBuf = cfg.http.access.tokens_path.clone();
    if path.as_os_str().is_empty() {
        return Err(Failure::Usage(format!(
            "{}: http.access.tokens_path is not set; per-user tokens need a file for their hashes (e.g. tokens_path = \"/var/lib/keywatch/tokens.json\" under [http.access])",
            config.display()
        )));
    }
    Ok(TokenFileStore::new(path))
}

fn failure(e: TokenError) -> Failure {
    match e {
        TokenError::NotFound(_) | TokenError::BadUser(_) => Failure::Usage(e.to_string()),
        other => Failure::Runtime(other.into()),
    }
}
