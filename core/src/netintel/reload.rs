//! [`NetIntel`]: the handle to the tables in force, which loads them, and
//! reloads them when a configured file changes.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use prometheus::{IntCounter, IntGauge};
use tokio_util::sync::CancellationToken;

use super::config::NetIntelConfig;
use super::tables::{Counters, Tables};
use super::NetIntelError;
use crate::metrics::Metrics;

/// A cheap-to-clone handle to the tables in force and the files they came from.
#[derive(Clone)]
pub struct NetIntel {
    pub(super) inner: Arc<Shared>,
}

pub(super) struct Shared {
    cfg: NetIntelConfig,
    current: ArcSwap<Tables>,
    /// Modification time and size of each file as last read.
    seen: Mutex<Vec<(Option<SystemTime>, u64)>>,
    pub(super) counters: Counters,
    reloads: [IntCounter; 2],
    entries: Option<[IntGauge; 4]>,
}

impl std::fmt::Debug for NetIntel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetIntel")
            .field("tables", &*self.inner.current.load())
            .finish()
    }
}

impl NetIntel {
    /// Loads the files `cfg` names; with `metrics`, loads, reloads and
    /// lookups are exported.
    pub fn open(
        cfg: &NetIntelConfig,
        metrics: Option<&Metrics>,
    ) -> Result<NetIntel, NetIntelError> {
        let unregistered =
            |name: &str| IntCounter::new(name, "unregistered").expect("valid metric");
        let counters = match metrics {
            Some(m) => Counters {
                looked_up: m.netintel_lookups.with_label_values(&["looked_up"]),
                cached: m.netintel_lookups.with_label_values(&["cached"]),
            },
            None => Counters::detached(),
        };
        let reloads = match metrics {
            Some(m) => ["ok", "failed"].map(|r| m.netintel_reloads.with_label_values(&[r])),
            None => ["ok", "failed"].map(unregistered),
        };
        let entries = metrics.map(|m| {
            ["city", "asn", "cloud", "list"].map(|k| m.netintel_entries.with_label_values(&[k]))
        });
        if let Some(dir) = cfg.dir.as_deref().filter(|d| !d.is_dir()) {
            tracing::warn!(
                dir = %dir.display(),
                "netintel.dir does not exist yet: no country, ASN or cloud knowledge until \
                 `keywatch netintel update --dir` writes it (picked up without a restart)"
            );
        }
        for (path, age) in cfg.stale_files(SystemTime::now()) {
            tracing::warn!(
                path = %path.display(),
                age_days = age.as_secs() / 86_400,
                max_age = %cfg.max_age,
                "network intelligence file older than netintel.max_age: run `keywatch netintel update`"
            );
        }
        let seen = stamps(cfg);
        let tables = Tables::load(&cfg.in_force(), counters.clone())?;
        tracing::info!(entries = ?tables.entries, "network intelligence loaded");
        let handle = NetIntel {
            inner: Arc::new(Shared {
                cfg: cfg.clone(),
                current: ArcSwap::from_pointee(tables),
                seen: Mutex::new(seen),
                counters,
                reloads,
                entries,
            }),
        };
        handle.export_entries();
        Ok(handle)
    }

    /// Opens the files of `cfg` when any is configured.
    pub fn from_config(
        cfg: &NetIntelConfig,
        metrics: Option<&Metrics>,
    ) -> Result<Option<NetIntel>, NetIntelError> {
        cfg.enabled()
            .then(|| NetIntel::open(cfg, metrics))
            .transpose()
    }

    fn export_entries(&self) {
        if let Some(gauges) = &self.inner.entries {
            for (g, (_, n)) in gauges.iter().zip(self.inner.current.load().entries) {
                g.set(n as i64);
            }
        }
    }

    /// The tables in force now, without touching a reference count (the
    /// engine's per-event read).
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Tables>> {
        self.inner.current.load()
    }

    /// Reload results so far: (ok, failed).
    pub fn reloads(&self) -> (u64, u64) {
        (self.inner.reloads[0].get(), self.inner.reloads[1].get())
    }

    /// Re-reads every file now. Valid files replace the tables; a file that
    /// cannot be used is logged by name and counted, and the previous tables stay.
    pub fn reload(&self) -> Result<(), NetIntelError> {
        match Tables::load(&self.inner.cfg.in_force(), self.inner.counters.clone()) {
            Ok(tables) => {
                tracing::info!(entries = ?tables.entries, "network intelligence reloaded");
                self.inner.current.store(Arc::new(tables));
                self.inner.reloads[0].inc();
                self.export_entries();
                Ok(())
            }
            Err(e) => {
                self.inner.reloads[1].inc();
                tracing::error!(error = %e, "network intelligence reload rejected; the previous tables stay in force");
                Err(e)
            }
        }
    }

    /// Reloads when any file's modification time or size changed.
    pub fn reload_if_changed(&self) -> Option<Result<(), NetIntelError>> {
        let now = stamps(&self.inner.cfg);
        {
            let mut seen = self.inner.seen.lock().unwrap_or_else(|p| p.into_inner());
            if *seen == now {
                return None;
            }
            *seen = now;
        }
        Some(self.reload())
    }

    /// Polls the files every `every` until `shutdown`; loading runs on the
    /// blocking pool.
    pub async fn watch(self, every: Duration, shutdown: CancellationToken) {
        crate::poll::every(every, shutdown, move || {
            self.reload_if_changed();
        })
        .await;
    }
}

/// Every file in force, in order (see [`NetIntelConfig::in_force`]).
fn files(cfg: &NetIntelConfig) -> Vec<PathBuf> {
    cfg.city_db
        .iter()
        .chain(cfg.asn_db.iter())
        .chain(cfg.cloud_ranges.iter())
        .chain(cfg.lists.iter().map(|l| &l.path))
        .cloned()
        .collect()
}

/// Modification time and size of every file in force: a file that appears
/// in `netintel.dir` changes them as a modified one does.
fn stamps(cfg: &NetIntelConfig) -> Vec<(Option<SystemTime>, u64)> {
    files(&cfg.in_force())
        .into_iter()
        .map(|p| match std::fs::metadata(p) {
            Ok(m) => (m.modified().ok(), m.len()),
            Err(_) => (None, 0),
        })
        .collect()
}
