//! Reviews on a cadence: the daemon makes the key review itself
//! (`[review] every`), keeps it in the findings store with what changed
//! since the previous one, and delivers it: a summary to Slack, the JSON to
//! a signed webhook or a Kafka topic, the Markdown to a file.
//!
//! The cadence survives restarts: the next review is due one period after
//! the newest stored one (at once when none is stored or it is overdue).
//! `keywatch_review_last_run_timestamp_seconds` and
//! `keywatch_review_interval_seconds` let a Prometheus rule page when
//! reviews stop (`config/prometheus/rules.yml`: `KeywatchReviewOverdue`).

pub mod config;
mod deliver;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::http::RecentFindings;
use crate::store::FindingsStore;
use config::ReviewConfig;
use keywatch_core::config::InventoryConfig;
use keywatch_core::engine::{Engine, Finding};
use keywatch_core::inventory::InventoryHandle;
use keywatch_core::metrics::Metrics;
use keywatch_core::review::{review, Changes, Digest, Review, ReviewInput, Thresholds};

/// What the scheduled review is made from and where it goes.
pub struct Scheduler {
    /// `[review]`.
    pub cfg: ReviewConfig,
    /// Review thresholds.
    pub inventory_cfg: InventoryConfig,
    /// Per-key state.
    pub engine: Engine,
    /// The inventory.
    pub inventory: InventoryHandle,
    /// Findings of the period.
    pub recent: Arc<RecentFindings>,
    /// Where reviews are kept; `None`: only the previous one, in memory.
    pub store: Option<FindingsStore>,
    /// Every metric.
    pub metrics: Arc<Metrics>,
}

/// The document a webhook or Kafka topic receives.
#[derive(Debug, Serialize)]
pub struct Delivered<'a> {
    /// Always `keywatch.review`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The review.
    pub review: &'a Review,
    /// What changed since the previous one.
    pub changes: &'a Changes,
}

fn wall_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Scheduler {
    /// Runs reviews on the cadence until `stop`; without `every`, returns at once.
    pub async fn run(self, stop: CancellationToken) {
        let Some(cadence) = self.cfg.every else {
            return;
        };
        self.metrics
            .review_interval
            .set(cadence.longest_secs() as f64);
        let last = match &self.store {
            Some(store) => {
                let store = store.clone();
                tokio::task::spawn_blocking(move || store.latest_review())
                    .await
                    .ok()
                    .and_then(|r| {
                        r.map_err(|e| tracing::error!(error = %e, "reading the previous review"))
                            .ok()
                    })
                    .flatten()
            }
            None => None,
        };
        let mut previous: Option<(i64, Digest)> = last.map(|(ms, d)| (ms / 1000, d));
        if let Some((t, _)) = &previous {
            self.metrics.review_last_run.set(*t as f64);
        }
        let deliveries = match deliver::Deliveries::new(&self.cfg) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "review deliveries cannot start; reviews are stored only");
                deliver::Deliveries::default()
            }
        };
        let mut due = previous
            .as_ref()
            .map_or_else(wall_secs, |(t, _)| cadence.next_after(*t));
        tracing::info!(every = %cadence, "scheduled reviews on");
        loop {
            // Woken at least hourly: the due time is on the wall clock, which
            // a month-long sleep on the monotonic clock would drift from.
            let wait = Duration::from_secs(due.saturating_sub(wall_secs()).clamp(0, 3600) as u64);
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            let now = wall_secs();
            if now < due {
                continue;
            }
            previous = Some(self.review_once(now, previous.as_ref(), &deliveries).await);
            due = cadence.next_after(now);
        }
    }

    /// Makes, keeps and delivers one review; returns its time and digest.
    async fn review_once(
        &self,
        now: i64,
        previous: Option<&(i64, Digest)>,
        deliveries: &deliver::Deliveries,
    ) -> (i64, Digest) {
        let compromised = match &self.store {
            Some(store) => {
                let store = store.clone();
                tokio::task::spawn_blocking(move || store.compromised_keys())
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
            None => None,
        };
        let findings: Vec<Finding> = self
            .recent
            .list(usize::MAX, |_| true)
            .iter()
            .map(|f| (**f).clone())
            .collect();
        let inventory = self.inventory.current();
        let report = review(&ReviewInput {
            engine: &self.engine,
            inventory: &inventory,
            findings: &findings,
            now: now.clamp(0, u32::MAX as i64) as u32,
            observed_since: None,
            thresholds: Thresholds::from_config(&self.inventory_cfg),
        });
        let report = match compromised {
            Some(keys) => report.with_compromised(keys),
            None => report,
        };
        let digest = report.digest();
        let changes = match previous {
            Some((t, before)) => digest.changes_since(
                before,
                Some(keywatch_core::decode::time::format_rfc3339(t * 1000)),
            ),
            None => digest.changes_since(&Digest::default(), None),
        };
        if let Some(store) = &self.store {
            let (store, r, c) = (store.clone(), report.clone(), changes.clone());
            let kept =
                tokio::task::spawn_blocking(move || store.add_review(now * 1000, &r, &c)).await;
            if !matches!(kept, Ok(Ok(_))) {
                tracing::error!(result = ?kept, "the review could not be stored");
            }
        }
        self.metrics.review_last_run.set(now as f64);
        tracing::info!(
            keys = report.keys.len(),
            stale = report.summary.stale,
            unknown = report.summary.unknown,
            rotation_overdue = report.summary.rotation_overdue,
            new_unknown = changes.new_unknown.len(),
            went_stale = changes.went_stale.len(),
            rotated = changes.rotated.len(),
            "scheduled review made"
        );
        deliveries
            .deliver(&report, &changes, &self.metrics, self.cfg.timeout.0)
            .await;
        (now, digest)
    }
}
