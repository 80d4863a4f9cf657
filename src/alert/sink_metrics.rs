//! One sink's metric handles, resolved once from the shared registry: what
//! the worker, the dead-letter file and the sinks with follow-up work count.

use std::sync::Arc;

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge};

use keywatch_core::metrics::Metrics;

/// One sink's metric handles, resolved once.
pub struct SinkMetrics {
    /// The sink's name (the `sink` label).
    pub name: Arc<str>,
    /// Delivered.
    pub sent: IntCounter,
    /// Attempts repeated after a failure.
    pub retried: IntCounter,
    /// Given up after trying (4xx, retries exhausted, too old, shutdown).
    pub failed: IntCounter,
    /// Written to the dead-letter file.
    pub dead_lettered: IntCounter,
    /// Neither delivered nor kept (the dead-letter file could not take it).
    pub lost: IntCounter,
    /// Not routed to this sink (severity, detector, team).
    pub filtered: IntCounter,
    /// Already delivered (or on its way) under the same id.
    pub duplicate: IntCounter,
    /// Alerts waiting in the queue.
    pub depth: IntGauge,
    /// Seconds from submission to delivery.
    pub delivery_seconds: Histogram,
    failures: IntCounterVec,
}

impl SinkMetrics {
    /// Handles for the sink called `name`.
    pub fn new(metrics: &Metrics, name: &str) -> SinkMetrics {
        let result = |r: &str| metrics.alerts.with_label_values(&[name, r]);
        SinkMetrics {
            name: Arc::from(name),
            sent: result("sent"),
            retried: result("retried"),
            failed: result("failed"),
            dead_lettered: result("dead_lettered"),
            lost: result("lost"),
            filtered: result("filtered"),
            duplicate: result("duplicate"),
            depth: metrics.sink_queue_depth.with_label_values(&[name]),
            delivery_seconds: metrics.alert_delivery_seconds.with_label_values(&[name]),
            failures: metrics.alert_failures.clone(),
        }
    }

    /// Counts one failed attempt (or refusal) by reason.
    pub fn failure(&self, reason: &str) {
        self.failures.with_label_values(&[&self.name, reason]).inc();
    }
}
