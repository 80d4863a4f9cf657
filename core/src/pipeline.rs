//! The per-message path shared by every live source: bytes → decode →
//! engine → findings, with the metrics that describe it. One `Pipeline` per
//! consuming thread; the engine behind it is shared.

use std::sync::Arc;
use std::time::Instant;

use prometheus::IntCounter;

use crate::config::Config;
use crate::decode::{DecodeError, Decoder, SkipReason};
use crate::engine::{Engine, Finding, Position};
use crate::metrics::Metrics;

/// Receives every finding as it is raised (alerts, the API's recent list, tests).
pub type FindingHandler = Arc<dyn Fn(&Finding) + Send + Sync>;

/// What happened to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every record became an event, or was an expected skip (`no_key`,
    /// `filtered`: service events, Vault request entries).
    Applied,
    /// The message, or records in it, could not be used: dead-letter it.
    DeadLetter {
        /// The (first) reason, as a metric label.
        reason: &'static str,
        /// Records in the message that were invalid (1 for a whole-message error).
        invalid: u32,
    },
}

/// Decode + detection for one consuming thread.
pub struct Pipeline {
    decoder: Decoder,
    engine: Engine,
    metrics: Arc<Metrics>,
    on_finding: FindingHandler,
    success: IntCounter,
    failure: IntCounter,
    found: Vec<Finding>,
}

/// Every how many messages the Kafka source samples the latency histograms
/// (its source latency, and the processing latency of the same messages
/// here): quantiles stay true, while the clock and the histograms' locks
/// stay off most messages.
pub const LATENCY_SAMPLE: u64 = 8;

impl Pipeline {
    /// A pipeline over `engine` for a validated configuration.
    pub fn new(
        cfg: &Config,
        engine: Engine,
        metrics: Arc<Metrics>,
        on_finding: FindingHandler,
    ) -> anyhow::Result<Pipeline> {
        let decoder = Decoder::for_profile(&cfg.decode.profile, &cfg.decode.profiles)?
            .with_limits(cfg.decode.max_message_bytes, cfg.decode.max_key_bytes);
        // Every reason is exported at 0 from the start, so dashboards and
        // alert rules read "no errors" rather than "no data".
        let whole = DecodeError::ALL.map(DecodeError::as_str);
        for reason in whole.iter().chain(&SkipReason::ALL.map(SkipReason::as_str)) {
            metrics.decode_errors.with_label_values(&[reason]);
        }
        Ok(Pipeline {
            decoder,
            success: metrics.events.with_label_values(&["success"]),
            failure: metrics.events.with_label_values(&["failure"]),
            engine,
            metrics,
            on_finding,
            found: Vec::new(),
        })
    }

    /// The engine this pipeline feeds.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Applies one message. `arrived` is when it was taken from the source,
    /// for a message the processing-latency metric samples.
    pub fn apply(&mut self, payload: &[u8], arrived: Option<Instant>) -> Verdict {
        self.apply_at(payload, arrived, None)
    }

    /// As [`Pipeline::apply`], for a message at `(origin, offset)` of a
    /// partition: each event carries its position, so a replay after a
    /// restore reaches each key once.
    pub fn apply_at(
        &mut self,
        payload: &[u8],
        arrived: Option<Instant>,
        at: Option<(u16, i64)>,
    ) -> Verdict {
        let mut invalid = 0u32;
        let mut record = 0u16;
        let mut first_reason = None;
        let (engine, found, metrics) = (&self.engine, &mut self.found, &self.metrics);
        let (success, failure) = (&self.success, &self.failure);
        let decoded = self.decoder.decode(payload, |r| match r {
            Ok(ev) => {
                let position = at.map(|(origin, offset)| Position {
                    origin,
                    offset,
                    record,
                });
                record = record.saturating_add(1);
                engine.process_at(&ev, position, found);
                if ev.is_failure() {
                    failure.inc();
                } else {
                    success.inc();
                }
            }
            Err(reason) => {
                metrics
                    .decode_errors
                    .with_label_values(&[reason.as_str()])
                    .inc();
                if !matches!(reason, SkipReason::NoKey | SkipReason::Filtered) {
                    invalid += 1;
                    first_reason.get_or_insert(reason.as_str());
                }
            }
        });
        for mut f in self.found.drain(..) {
            f.origin = at.map_or(0, |(origin, _)| origin);
            // A folded finding is counted as folded
            // (`keywatch_findings_suppressed_total`), not raised.
            if f.folded.is_none() {
                self.metrics
                    .findings
                    .with_label_values(&[f.detector.as_str(), f.severity.as_str()])
                    .inc();
            }
            if let Some(network) = &f.evidence.network {
                let country = network
                    .get("country")
                    .and_then(|c| c.as_str())
                    .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()))
                    .unwrap_or("unknown");
                self.metrics
                    .findings_by_country
                    .with_label_values(&[country])
                    .inc();
            }
            (self.on_finding)(&f);
        }
        if let Some(arrived) = arrived {
            self.metrics.processing_latency.record(arrived.elapsed());
        }
        match decoded {
            Err(e) => {
                self.metrics
                    .decode_errors
                    .with_label_values(&[e.as_str()])
                    .inc();
                Verdict::DeadLetter {
                    reason: e.as_str(),
                    invalid: 1,
                }
            }
            Ok(()) => match first_reason {
                Some(reason) => Verdict::DeadLetter { reason, invalid },
                None => Verdict::Applied,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn counts_events_and_routes_bad_input_to_dead_letter() {
        let cfg = Config::default();
        let metrics = Arc::new(Metrics::new());
        let seen = Arc::new(Mutex::new(0usize));
        let counter = seen.clone();
        let mut p = Pipeline::new(
            &cfg,
            Engine::new(&cfg),
            metrics.clone(),
            Arc::new(move |_| *counter.lock().unwrap() += 1),
        )
        .unwrap();
        let now = Some(Instant::now());
        assert_eq!(
            p.apply(br#"{"time":"2026-01-05T10:00:00Z","key_id":"k1"}"#, now),
            Verdict::Applied
        );
        assert_eq!(
            p.apply(br#"{"time":"2026-01-05T10:00:00Z"}"#, now),
            Verdict::Applied,
            "a record without a key is an expected skip"
        );
        assert_eq!(
            p.apply(b"{nope", now),
            Verdict::DeadLetter {
                reason: "malformed_json",
                invalid: 1
            }
        );
        assert_eq!(
            p.apply(
                br#"[{"time":"2026-01-05T10:00:00Z","key_id":"k2"},{"time":"soon","key_id":"k3"}]"#,
                now
            ),
            Verdict::DeadLetter {
                reason: "bad_time",
                invalid: 1
            }
        );
        let text = metrics.render();
        assert!(
            text.contains("keywatch_events_total{outcome=\"success\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("keywatch_decode_errors_total{reason=\"no_key\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("keywatch_decode_errors_total{reason=\"malformed_json\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("keywatch_decode_errors_total{reason=\"too_deep\"} 0"),
            "every reason is exported before it happens: {text}"
        );
        assert_eq!(p.engine().key_count(crate::config::Entity::KeyId), 2);
    }
}
