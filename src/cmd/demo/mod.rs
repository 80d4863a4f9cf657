//! `keywatch demo`: the whole pipeline with nothing to install. An embedded
//! Kafka broker (librdkafka's mock cluster), a generated fleet whose past
//! weeks warm the baselines in seconds and which then runs live with
//! attacks injected while the user watches, the daemon consuming it, and
//! its findings on stdout in event order.
//!
//! # Layout
//!
//! - `traffic`: the fleet, the warm-up and the live phase;
//! - `console`: the opening screen, the findings, the status line and the
//!   summary.
//!
//! Everything the demo writes goes to a temporary directory that is
//! removed when it ends, also at Ctrl-C.

mod console;
mod traffic;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use rdkafka::mocking::MockCluster;

use crate::cli::DemoArgs;
use crate::config::{
    Config, FileSinkConfig, HumanDuration, ListConfig, ListKind, SinkConfig, SinkKind,
};
use crate::daemon::{self, Daemon};

use super::Failure;

/// The demo's topic.
const TOPIC: &str = "audit-events";

/// Runs the demo until Ctrl-C or `--duration`.
pub fn run(args: DemoArgs) -> Result<(), Failure> {
    if !(args.rate.is_finite() && args.rate > 0.0 && args.rate <= traffic::MAX_RATE) {
        return Err(Failure::Usage(format!(
            "--rate {}: give events per second of the live phase, above 0 and at most {}: \
             the warm-up replays {} days of the fleet at that rate",
            args.rate,
            traffic::MAX_RATE,
            traffic::HISTORY_DAYS
        )));
    }
    if args.keys == 0 {
        return Err(Failure::Usage("--keys must be at least 1".into()));
    }
    let started = Instant::now();
    let deadline = args.duration.map(|d| started + d.0);
    port_free(&args.listen)?;
    let workdir = tempfile::Builder::new()
        .prefix("keywatch-demo-")
        .tempdir()
        .context("creating the demo's temporary directory")?;
    let alerts_path = workdir.path().join("alerts.jsonl");

    let mut cfg = match &args.config {
        Some(path) => Config::load(Some(path))?,
        None => Config::default(),
    };
    let rt = daemon::runtime()?;
    let cluster = MockCluster::new(1).context("starting the embedded Kafka broker")?;
    cluster
        .create_topic(TOPIC, 4, 1)
        .context("creating the demo topic")?;
    let bootstrap = cluster.bootstrap_servers();
    cfg.http.listen = args.listen.clone();
    cfg.kafka.brokers = bootstrap.clone();
    cfg.kafka.topics = vec![TOPIC.to_owned()];
    cfg.kafka.group_id = "keywatch-demo".to_owned();
    cfg.kafka.startup_timeout = HumanDuration::secs(10);
    cfg.alerts.dead_letter_path = workdir.path().join("dead-letter.jsonl");
    cfg.checkpoint.dir = workdir.path().join("checkpoints");
    // The console's findings and verdicts, removed with the rest (a
    // `store.path` in `--config` keeps them across runs and kill -9).
    let keep_store = cfg.store.enabled();
    if !keep_store {
        cfg.store.path = workdir.path().join("findings.db");
    }
    // Verdicts need a token: one for this run, in the console link (a token
    // from the user's configuration is a secret, never printed).
    let console_url = if cfg.http.api_token.is_none() {
        let token = demo_token();
        cfg.http.api_token =
            Some(crate::config::Secret::resolve(&token).context("the demo's write token")?);
        format!("http://{}/#token={token}", args.listen)
    } else {
        format!("http://{}/ (sign in with your http.api_token)", args.listen)
    };
    let mut file = SinkConfig::new(SinkKind::File(FileSinkConfig {
        path: alerts_path.clone(),
    }));
    file.name = Some("all-alerts".to_owned());
    cfg.alerts.sinks.insert(0, file);
    // The databases `keywatch netintel update` keeps, when nothing else is
    // configured and it has run (country and owner of every address).
    let updated = (!cfg.netintel.enabled())
        .then(crate::cmd::netintel::update::default_dir)
        .flatten()
        .filter(|d| d.is_dir());
    if let Some(dir) = &updated {
        cfg.netintel.dir = Some(dir.clone());
    }
    list_thieves(workdir.path(), &mut cfg)?;
    cfg.validate()?;

    let plan = traffic::Plan::new(args.seed, args.keys, args.rate);
    console::banner(
        &plan,
        &args.listen,
        args.duration.map(|d| d.0),
        &alerts_path,
    );
    eprintln!(
        "Triage console (open it in a browser; the link carries this run's write token):\n  {console_url}\n\
         Findings and verdicts are kept in {}{}.\n",
        cfg.store.path.display(),
        if keep_store {
            ""
        } else {
            " (removed when the demo ends; set store.path in a --config file to keep them)"
        }
    );

    eprintln!(
        "Network intelligence: the demo lists the thieves' networks as Tor exits and a \
         threat feed ({}), so listed_source also finds each use from them, from the first call.",
        workdir.path().display()
    );
    match &updated {
        Some(dir) => eprintln!(
            "Country and owner of every address: {} (from `keywatch netintel update`).\n",
            dir.display()
        ),
        None if cfg.netintel.dir.is_none() && cfg.netintel.city_db.is_none() => eprintln!(
            "No country or owner data: run `keywatch netintel update` once and the demo uses it.\n"
        ),
        None => eprintln!(),
    }
    let daemon = Daemon::new(&cfg)?;
    let progress = Arc::new(traffic::Progress::default());
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (status, progress, stop) = (daemon.status.clone(), progress.clone(), stop.clone());
        std::thread::Builder::new()
            .name("demo-traffic".into())
            .spawn(move || {
                traffic::produce(&bootstrap, TOPIC, plan, &status, &progress, &stop, deadline)
            })
            .context("starting the traffic generator")?
    };
    let console = {
        let console = console::Console {
            alerts: alerts_path,
            progress: progress.clone(),
            metrics: daemon.metrics.clone(),
            engine: daemon.engine.clone(),
            status: daemon.status.clone(),
        };
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("demo-console".into())
            .spawn(move || console.run(&stop))
            .context("starting the console")?
    };

    let shutdown = async move {
        match deadline {
            Some(at) => tokio::select! {
                () = daemon::signals() => {}
                () = tokio::time::sleep_until(at.into()) => {}
            },
            None => daemon::signals().await,
        }
    };
    let metrics = daemon.metrics.clone();
    let result = rt.block_on(daemon::run(cfg, daemon, shutdown));
    stop.store(true, Ordering::Relaxed);
    if let Ok(Err(e)) = producer.join() {
        eprintln!("keywatch demo: the traffic generator stopped: {e:#}");
    }
    let alerts = console.join().unwrap_or_default();
    let attacks = progress
        .attacks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if result.is_ok() {
        console::summary(&metrics, &attacks, &alerts, started.elapsed());
    }
    drop(rt);
    drop(cluster);
    drop(workdir);
    Ok(result?)
}

/// Fails before anything starts when the HTTP address is taken, naming the
/// flag that sets it.
fn port_free(listen: &str) -> Result<(), Failure> {
    match std::net::TcpListener::bind(listen) {
        Ok(_) => Ok(()),
        Err(e) => Err(Failure::Usage(format!(
            "--listen {listen}: {e} (another keywatch demo or daemon?); pick a free address, \
             e.g. --listen 127.0.0.1:9465"
        ))),
    }
}

/// A write token for one demo run: 32 random alphanumerics.
fn demo_token() -> String {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::SmallRng::from_entropy();
    (0..32)
        .map(|_| rng.sample(rand::distributions::Alphanumeric) as char)
        .collect()
}

/// Writes the generated thieves' networks as a Tor exit list (the first two,
/// which are Tor exit blocks in the real world too) and a threat feed into
/// `dir`, and configures them: the demo shows `listed_source` with nothing
/// installed.
fn list_thieves(dir: &std::path::Path, cfg: &mut Config) -> anyhow::Result<()> {
    let nets = keywatch_core::gen::attacker_networks();
    let (tor, threat) = nets.split_at(2.min(nets.len()));
    for (name, label, kind, nets) in [
        ("tor-exits.txt", "tor-exits", ListKind::Tor, tor),
        (
            "threat-feed.txt",
            "demo-threat-feed",
            ListKind::Threat,
            threat,
        ),
    ] {
        let path = dir.join(name);
        let text = format!("# written by keywatch demo\n{}\n", nets.join("\n"));
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        cfg.netintel.lists.push(ListConfig {
            path,
            label: label.to_owned(),
            kind,
        });
    }
    Ok(())
}
