//! `keywatch netintel`: keeping the network intelligence files current.
//! `update` fetches them from their publishers into a directory (see
//! [`update`]); `npm` is how a package is read from an npm registry.

mod npm;
pub mod update;

use crate::cli::{NetIntelArgs, NetIntelCommand};

use super::{load_config, Failure};

/// Runs a `netintel` subcommand.
pub fn run(args: NetIntelArgs) -> Result<(), Failure> {
    match args.command {
        NetIntelCommand::Update(a) => {
            let dir = match a.dir {
                Some(d) => d,
                None => match &a.config {
                    Some(_) => load_config(a.config.as_deref())?
                        .netintel
                        .dir
                        .clone()
                        .ok_or_else(|| {
                            Failure::Usage(
                            "netintel update: pass --dir, or set netintel.dir in the --config file"
                                .to_owned(),
                        )
                        })?,
                    None => update::default_dir().ok_or_else(|| {
                        Failure::Usage("netintel update: pass --dir (HOME is not set)".to_owned())
                    })?,
                },
            };
            let mut origins = update::Origins::default();
            if let Some(r) = a.registry {
                origins.registry = r;
            }
            for (name, url) in [("aws", a.aws_url), ("gcp", a.gcp_url)] {
                if let Some(url) = url {
                    origins.urls.push((name.to_owned(), url));
                }
            }
            let outcomes = update::update(&dir, &a.only, &origins, a.force)?;
            let mut failed = 0;
            for o in &outcomes {
                match &o.result {
                    Ok(w) => eprintln!(
                        "{}: {} <- {}{} ({} bytes, {} entries)",
                        o.source,
                        w.path.display(),
                        w.from,
                        w.licence
                            .as_deref()
                            .map(|l| format!(", licence {l}"))
                            .unwrap_or_default(),
                        w.bytes,
                        w.entries
                    ),
                    Err(e) => {
                        failed += 1;
                        eprintln!("{}: not updated: {e:#}", o.source);
                    }
                }
            }
            if failed > 0 {
                return Err(Failure::Runtime(anyhow::anyhow!(
                    "{failed} of {} sources not updated (their previous files, if any, stay in {})",
                    outcomes.len(),
                    dir.display()
                )));
            }
            Ok(())
        }
    }
}
