//! How the source is doing, for readiness and the metrics: written by the
//! consumer's callbacks and poll loop, read by the HTTP server.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

/// What the rest of the daemon can see of the source.
#[derive(Debug, Default)]
pub struct SourceStatus {
    /// Subscribed and polling.
    pub consuming: AtomicBool,
    /// Messages applied since start.
    pub messages: AtomicU64,
    /// Partitions replaying from a restored state, not yet live.
    pub catching_up: AtomicUsize,
    /// A partition was assigned since start: before, the instance waits for
    /// the group (a killed member still in it can hold them for a session
    /// timeout) and is not ready.
    pub assigned_once: AtomicBool,
    /// Since when (epoch ms) no broker has been reachable; 0: one is.
    pub brokers_down_since_ms: AtomicI64,
    /// `/readyz` fails once no broker has been reachable this long, ms
    /// (`kafka.unreachable_after`; 0: its default).
    pub unreachable_after_ms: AtomicU64,
}

impl SourceStatus {
    /// No broker has been reachable since `now_ms - since`: noted once, with
    /// a WARN line.
    pub(super) fn brokers_down(&self, now_ms: i64, why: &str) {
        if self
            .brokers_down_since_ms
            .compare_exchange(0, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::warn!(
                why,
                "no Kafka broker reachable: consumption stalls; /readyz turns not ready after kafka.unreachable_after"
            );
        }
    }

    /// A broker is reachable again.
    pub(super) fn brokers_up(&self, now_ms: i64) {
        let since = self.brokers_down_since_ms.swap(0, Ordering::Relaxed);
        if since > 0 {
            tracing::info!(
                down_s = (now_ms - since).max(0) / 1000,
                "a Kafka broker is reachable again"
            );
        }
    }
}
