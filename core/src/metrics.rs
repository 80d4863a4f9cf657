//! Every metric keywatch exports, defined once, with help text. Names follow
//! Prometheus conventions: `keywatch_` prefix, base units, `_total` counters,
//! and never a per-key label on an unbounded family (the one family that names
//! keys, `keywatch_anomaly_active`, is capped).

use std::sync::Mutex;

use hdrhistogram::Histogram;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{MetricFamily, MetricType};
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// All of keywatch's metrics and the registry that serves them.
pub struct Metrics {
    /// The registry `/metrics` renders.
    pub registry: Registry,
    /// Events applied to the engine, by the audit outcome (`success`, `failure`).
    pub events: IntCounterVec,
    /// Messages or records that could not become events, by reason
    /// (`malformed_json`, `truncated`, `no_key`, `bad_time`, ...).
    pub decode_errors: IntCounterVec,
    /// Undecodable messages forwarded to the dead-letter topic, by result (`produced`, `failed`).
    pub dead_letters: IntCounterVec,
    /// Findings raised, by detector and severity.
    pub findings: IntCounterVec,
    /// Identities tracked, by entity (`key_id`, `principal`).
    pub keys_tracked: IntGaugeVec,
    /// Keys unused for at least the dormancy threshold.
    pub keys_dormant: IntGauge,
    /// Keys by age since first use (`lt_1d`, `1d_7d`, `7d_30d`, `30d_90d`, `ge_90d`).
    pub keys_by_age: IntGaugeVec,
    /// Times a memory bound was hit, by bound (`max_keys`, `max_sources_per_key`,
    /// `max_values_per_key` (actions), `max_user_agents_per_key`).
    pub bound_hits: IntCounterVec,
    /// Wall clock minus the newest event time applied, seconds.
    pub event_time_lag: Gauge,
    /// Time from a message's arrival to its effect in the state (HDR quantiles).
    pub processing_latency: HdrSummary,
    /// Time from a message's timestamp (its append to the broker) to its
    /// effect in the state: end-to-end detection latency (HDR quantiles).
    pub source_latency: HdrSummary,
    /// Messages behind the partition's high watermark, by topic and partition.
    pub consumer_lag: IntGaugeVec,
    /// Source partitions this instance owns.
    pub partitions_owned: IntGauge,
    /// Alert deliveries, by sink and result (`sent`, `failed`, `retried`, `dead_lettered`, `filtered`).
    pub alerts: IntCounterVec,
    /// Failed delivery attempts, by sink and reason (`timeout`, `connect`, `status_5xx`, `status_4xx`, `rate_limited`, `queue_full`, `expired`).
    pub alert_failures: IntCounterVec,
    /// Alerts waiting in each sink's queue.
    pub sink_queue_depth: IntGaugeVec,
    /// Seconds from a finding to its successful delivery, by sink.
    pub alert_delivery_seconds: HistogramVec,
    /// Findings dropped by a suppression rule, by rule kind.
    pub suppressed: IntCounterVec,
    /// 1 while a finding on the key is within its cooldown (capped; the one
    /// family that names keys, so Prometheus rules can).
    pub anomaly_active: IntGaugeVec,
    /// Findings not exported in `keywatch_anomaly_active` because of its cap.
    pub anomaly_active_dropped: IntCounter,
    /// Incidents open now.
    pub incidents_open: IntGauge,
    /// Incidents that reached a severity, by severity: counted when one
    /// opens, and again under the new severity when it escalates.
    pub incidents: IntCounterVec,
    /// Findings in the findings store.
    pub store_findings: IntGauge,
    /// Findings written to the store, by result (`inserted`, `repeated`: same
    /// id again, `failed`).
    pub store_writes: IntCounterVec,
    /// Findings not stored: the queue was full, or they could not be kept at a stop.
    pub store_dropped: IntCounter,
    /// Findings accepted and not yet written (queued or held for a retry).
    pub store_unwritten: IntGauge,
    /// Findings deleted from the store, by reason (`max_age`, `max_rows`).
    pub store_pruned: IntCounterVec,
    /// Findings of other instances read from `store.findings_topic`, by
    /// result (`inserted`, `known`: that id was stored already, `expired`:
    /// older than `store.max_age`, `renotification`: a `confirmed` verdict's
    /// re-sent copy of a finding, not a finding of its own).
    pub store_ingested: IntCounterVec,
    /// Messages on `store.findings_topic` that are not a finding, by reason
    /// (`empty`, `not_json`, `not_an_alert`), skipped.
    pub store_ingest_rejected: IntCounterVec,
    /// Seconds a findings-store query took (API and console reads).
    pub store_query_seconds: prometheus::Histogram,
    /// Verdicts given on findings, by status.
    pub verdicts: IntCounterVec,
    /// HTTP connections open.
    pub http_connections: IntGauge,
    /// HTTP connections the server closed or refused, by reason
    /// (`shed_idle`, `over_capacity`, `header_timeout`, `idle_timeout`,
    /// `accept_error`).
    pub http_connections_rejected: IntCounterVec,
    /// Requests refused for who they come from, by how the caller tried
    /// (`none`, `proxy`, `token`, `api_token`, `basic`) and reason
    /// (`missing`, `invalid`, `untrusted_proxy`, `throttled`, `forbidden`,
    /// `writes_disabled`).
    pub http_auth_failures: IntCounterVec,
    /// Reloads of the TLS certificate and key after their files changed,
    /// by result (`ok`, `error`: the previous pair stays in use).
    pub http_tls_reloads: IntCounterVec,
    /// Seconds since the last successful checkpoint.
    pub checkpoint_age: Gauge,
    /// Seconds the last checkpoint took to write.
    pub checkpoint_duration: Gauge,
    /// Bytes of the last checkpoint.
    pub checkpoint_size: IntGauge,
    /// Checkpoint writes, by result (`ok`, `failed`).
    pub checkpoints: IntCounterVec,
    /// Partition states taken over on assignment, by where the state came
    /// from (`changelog`, `checkpoint`, `none`: no state found, start empty).
    pub state_restores: IntCounterVec,
    /// Seconds a partition's state took to read and load on assignment.
    pub state_restore_seconds: prometheus::Histogram,
    /// Snapshot bytes read back from the changelog.
    pub state_restore_bytes: IntCounter,
    /// Partition snapshots written to the changelog, by trigger (`periodic`,
    /// `revoke`) and result (`ok`, `failed`).
    pub state_snapshots: IntCounterVec,
    /// Snapshot bytes written to the changelog.
    pub state_snapshot_bytes: IntCounter,
    /// Messages a restored partition still has to replay before it is live,
    /// by topic and partition (removed once live).
    pub catchup_lag: IntGaugeVec,
    /// Events of a key that arrived on another partition than the key's
    /// previous event (producers must key messages by key id).
    pub key_partition_moves: IntCounter,
    /// Records the source was to read but the broker had deleted already
    /// (retention ran past the committed or restored offset), by topic and
    /// partition.
    pub source_offsets_lost: IntCounterVec,
    /// Inventory reloads, by result (`ok`, `failed`: rejected, previous kept).
    pub inventory_reloads: IntCounterVec,
    /// When the daemon last produced a scheduled review (Unix seconds).
    pub review_last_run: Gauge,
    /// The review cadence, seconds (a calendar cadence: its longest period),
    /// so an alert rule can tell an overdue review.
    pub review_interval: Gauge,
    /// Scheduled review deliveries, by destination (`slack`, `webhook`,
    /// `kafka`, `file`) and result (`ok`, `failed`).
    pub review_deliveries: IntCounterVec,
    /// Response actions, by action (`aws_deactivate_key`, `webhook`) and
    /// result (`ok`, `failed`, `dry_run`, `rate_limited`, `never_touch`,
    /// `already_done`).
    pub response_actions: IntCounterVec,
    /// Keys by inventory status: `known` (listed), `unknown` (seen in traffic,
    /// not listed), and, among the known, `expired`, `stale`, `rotation_overdue`.
    pub inventory_keys: IntGaugeVec,
    /// Listed keys by privilege (`read`, `write`, `admin`, `unspecified`).
    pub inventory_keys_by_privilege: IntGaugeVec,
    /// Listed keys by time since creation (`lt_30d`, `30d_90d`, `90d_1y`, `ge_1y`, `unknown`).
    pub inventory_keys_by_age: IntGaugeVec,
    /// Entries loaded from the network intelligence files, by kind (`city`
    /// and `asn`: search tree nodes of the MaxMind DB; `cloud`, `list`: networks).
    pub netintel_entries: IntGaugeVec,
    /// Source enrichments, by result (`looked_up` in the tables, `cached`:
    /// the key's previous source again).
    pub netintel_lookups: IntCounterVec,
    /// Network intelligence reloads, by result (`ok`, `failed`: previous kept).
    pub netintel_reloads: IntCounterVec,
    /// Findings by the country of the event's source (ISO code, `unknown`;
    /// only with a city database). Bounded: about 250 countries.
    pub findings_by_country: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let int_gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let plain_counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = Gauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let processing_latency = HdrSummary::new(
            "keywatch_processing_latency_seconds",
            "Time from a message's arrival to its effect in the per-key state.",
        );
        registry
            .register(Box::new(processing_latency.clone()))
            .expect("unique metric");
        let source_latency = HdrSummary::new(
            "keywatch_source_latency_seconds",
            "Time from a message's broker timestamp to its effect in the per-key state.",
        );
        registry
            .register(Box::new(source_latency.clone()))
            .expect("unique metric");
        let alert_delivery_seconds = HistogramVec::new(
            HistogramOpts::new(
                "keywatch_alert_delivery_seconds",
                "Seconds from a finding to its successful delivery, by sink.",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0]),
            &["sink"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(alert_delivery_seconds.clone()))
            .expect("unique metric");
        let metrics = Metrics {
            events: counter(
                "keywatch_events_total",
                "Events applied to the per-key state, by audit outcome.",
                &["outcome"],
            ),
            decode_errors: counter(
                "keywatch_decode_errors_total",
                "Messages or records that could not become events, by reason.",
                &["reason"],
            ),
            dead_letters: counter(
                "keywatch_dead_letters_total",
                "Undecodable messages forwarded to the dead-letter topic, by result.",
                &["result"],
            ),
            findings: counter(
                "keywatch_findings_total",
                "Findings raised, by detector and severity.",
                &["detector", "severity"],
            ),
            keys_tracked: gauge_vec(
                "keywatch_keys_tracked",
                "Identities with a baseline in memory, by entity.",
                &["entity"],
            ),
            keys_dormant: int_gauge(
                "keywatch_keys_dormant",
                "Tracked keys unused for at least the dormancy threshold.",
            ),
            keys_by_age: gauge_vec(
                "keywatch_keys_by_age",
                "Tracked keys by time since first use.",
                &["age"],
            ),
            bound_hits: counter(
                "keywatch_bound_hits_total",
                "Times a configured memory bound was hit, by bound.",
                &["bound"],
            ),
            event_time_lag: gauge(
                "keywatch_event_time_lag_seconds",
                "Wall clock minus the newest event time applied.",
            ),
            processing_latency,
            source_latency,
            consumer_lag: gauge_vec(
                "keywatch_kafka_consumer_lag",
                "Messages between the consumer position and the partition's high watermark.",
                &["topic", "partition"],
            ),
            partitions_owned: int_gauge(
                "keywatch_kafka_partitions_owned",
                "Source partitions assigned to this instance.",
            ),
            alerts: counter(
                "keywatch_alerts_total",
                "Alert deliveries, by sink and result.",
                &["sink", "result"],
            ),
            alert_failures: counter(
                "keywatch_alert_failures_total",
                "Failed alert delivery attempts, by sink and reason.",
                &["sink", "reason"],
            ),
            sink_queue_depth: gauge_vec(
                "keywatch_sink_queue_depth",
                "Alerts waiting in a sink's queue.",
                &["sink"],
            ),
            alert_delivery_seconds,
            suppressed: counter(
                "keywatch_findings_suppressed_total",
                "Findings dropped by suppression, by rule kind.",
                &["rule"],
            ),
            anomaly_active: gauge_vec(
                "keywatch_anomaly_active",
                "1 while a finding on the key is within its cooldown.",
                &["key_id", "detector", "severity"],
            ),
            anomaly_active_dropped: plain_counter(
                "keywatch_anomaly_active_dropped_total",
                "Findings not exported in keywatch_anomaly_active because of its cap.",
            ),
            incidents_open: int_gauge(
                "keywatch_incidents_open",
                "Incidents open now (one identity's findings while they keep arriving).",
            ),
            incidents: counter(
                "keywatch_incidents_total",
                "Incidents that reached a severity: counted on opening, and under the new severity on escalation.",
                &["severity"],
            ),
            store_findings: int_gauge(
                "keywatch_store_findings",
                "Findings in the findings store.",
            ),
            store_writes: counter(
                "keywatch_store_writes_total",
                "Findings written to the findings store, by result (inserted, repeated, failed).",
                &["result"],
            ),
            store_dropped: plain_counter(
                "keywatch_store_dropped_total",
                "Findings not stored: the store's queue was full, or the store still could not write at shutdown and the findings could not be spilled.",
            ),
            store_unwritten: int_gauge(
                "keywatch_store_unwritten",
                "Findings accepted by the findings store and not yet written: queued, or held for a retry while writes fail.",
            ),
            store_pruned: counter(
                "keywatch_store_pruned_total",
                "Findings deleted from the findings store, by reason (max_age, max_rows).",
                &["reason"],
            ),
            store_ingested: counter(
                "keywatch_store_ingested_total",
                "Findings read from store.findings_topic, by result (inserted, known, expired, renotification).",
                &["result"],
            ),
            store_ingest_rejected: counter(
                "keywatch_store_ingest_rejected_total",
                "Messages on store.findings_topic that are not a finding, by reason (empty, not_json, not_an_alert).",
                &["reason"],
            ),
            store_query_seconds: {
                let h = prometheus::Histogram::with_opts(
                    HistogramOpts::new(
                        "keywatch_store_query_seconds",
                        "Seconds a findings-store query took.",
                    )
                    .buckets(vec![0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
                )
                .expect("valid metric");
                registry.register(Box::new(h.clone())).expect("unique metric");
                h
            },
            verdicts: counter(
                "keywatch_verdicts_total",
                "Verdicts given on findings, by status.",
                &["status"],
            ),
            http_connections: int_gauge(
                "keywatch_http_connections",
                "HTTP connections open.",
            ),
            http_connections_rejected: counter(
                "keywatch_http_connections_rejected_total",
                "HTTP connections closed or refused by the server, by reason.",
                &["reason"],
            ),
            http_auth_failures: counter(
                "keywatch_http_auth_failures_total",
                "HTTP requests refused for who they come from, by method tried and reason.",
                &["method", "reason"],
            ),
            http_tls_reloads: counter(
                "keywatch_http_tls_reloads_total",
                "Reloads of the TLS certificate and key after their files changed, by result.",
                &["result"],
            ),
            checkpoint_age: gauge(
                "keywatch_checkpoint_age_seconds",
                "Seconds since the last successful checkpoint.",
            ),
            checkpoint_duration: gauge(
                "keywatch_checkpoint_duration_seconds",
                "Seconds the last checkpoint took to write.",
            ),
            checkpoint_size: int_gauge(
                "keywatch_checkpoint_size_bytes",
                "Size of the last checkpoint written.",
            ),
            checkpoints: counter(
                "keywatch_checkpoints_total",
                "Checkpoint writes, by result.",
                &["result"],
            ),
            state_restores: counter(
                "keywatch_state_restores_total",
                "Partition states taken over on assignment, by source (changelog, checkpoint, none).",
                &["from"],
            ),
            state_restore_seconds: {
                let h = prometheus::Histogram::with_opts(
                    HistogramOpts::new(
                        "keywatch_state_restore_seconds",
                        "Seconds to read and load a partition's state on assignment.",
                    )
                    .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
                )
                .expect("valid metric");
                registry.register(Box::new(h.clone())).expect("unique metric");
                h
            },
            state_restore_bytes: plain_counter(
                "keywatch_state_restore_bytes_total",
                "Snapshot bytes read back from the changelog topic.",
            ),
            state_snapshots: counter(
                "keywatch_state_snapshots_total",
                "Partition snapshots written to the changelog topic, by trigger and result.",
                &["trigger", "result"],
            ),
            state_snapshot_bytes: plain_counter(
                "keywatch_state_snapshot_bytes_total",
                "Snapshot bytes written to the changelog topic.",
            ),
            catchup_lag: gauge_vec(
                "keywatch_state_catchup_lag",
                "Messages a restored partition still replays before it is live.",
                &["topic", "partition"],
            ),
            key_partition_moves: plain_counter(
                "keywatch_key_partition_moves_total",
                "Events of a key that arrived on another partition than its previous event.",
            ),
            source_offsets_lost: counter(
                "keywatch_source_offsets_lost_total",
                "Records between the offset to resume from and the broker's earliest retained offset: deleted before they were applied.",
                &["topic", "partition"],
            ),
            inventory_reloads: counter(
                "keywatch_inventory_reloads_total",
                "Inventory file reloads, by result; a failed one keeps the previous inventory.",
                &["result"],
            ),
            review_last_run: gauge(
                "keywatch_review_last_run_timestamp_seconds",
                "When the daemon last produced a scheduled key review (Unix seconds).",
            ),
            review_interval: gauge(
                "keywatch_review_interval_seconds",
                "The scheduled review's cadence, seconds (calendar cadences: their longest period).",
            ),
            review_deliveries: counter(
                "keywatch_review_deliveries_total",
                "Scheduled review deliveries, by destination and result.",
                &["destination", "result"],
            ),
            response_actions: counter(
                "keywatch_response_actions_total",
                "Response actions on keys (deactivation at the provider, webhooks), by action and result.",
                &["action", "result"],
            ),
            inventory_keys: gauge_vec(
                "keywatch_inventory_keys",
                "Keys by inventory status (expired, stale and rotation_overdue are subsets of known).",
                &["status"],
            ),
            inventory_keys_by_privilege: gauge_vec(
                "keywatch_inventory_keys_by_privilege",
                "Listed keys by privilege level.",
                &["privilege"],
            ),
            inventory_keys_by_age: gauge_vec(
                "keywatch_inventory_keys_by_age",
                "Listed keys by time since creation.",
                &["age"],
            ),
            netintel_entries: gauge_vec(
                "keywatch_netintel_entries",
                "Entries loaded from network intelligence files, by kind (city, asn: MaxMind DB tree nodes; cloud, list: networks).",
                &["kind"],
            ),
            netintel_lookups: counter(
                "keywatch_netintel_lookups_total",
                "Source address enrichments, by result (looked_up in the tables, cached from the key's previous source).",
                &["result"],
            ),
            netintel_reloads: counter(
                "keywatch_netintel_reloads_total",
                "Network intelligence reloads, by result; a failed one keeps the previous tables.",
                &["result"],
            ),
            findings_by_country: counter(
                "keywatch_findings_by_country_total",
                "Findings by the country (ISO code) of the event's source, with a city database configured.",
                &["country"],
            ),
            registry,
        };
        // Every series of the network intelligence families exists from the
        // start (at 0), so dashboards and rules see them without enrichment.
        for kind in ["city", "asn", "cloud", "list"] {
            metrics.netintel_entries.with_label_values(&[kind]);
        }
        for result in ["looked_up", "cached"] {
            metrics.netintel_lookups.with_label_values(&[result]);
        }
        for result in ["ok", "failed"] {
            metrics.netintel_reloads.with_label_values(&[result]);
        }
        metrics.findings_by_country.with_label_values(&["unknown"]);
        metrics
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A latency distribution kept in an HDR histogram and exported as a
/// Prometheus summary (p50, p90, p99, p999, sum, count).
#[derive(Clone)]
pub struct HdrSummary {
    inner: std::sync::Arc<Mutex<Histogram<u64>>>,
    desc: Desc,
}

/// Quantiles exported.
const QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];

impl HdrSummary {
    /// A histogram of nanoseconds from 1 ns to 1 hour at 3 significant digits.
    pub fn new(name: &str, help: &str) -> HdrSummary {
        HdrSummary {
            inner: std::sync::Arc::new(Mutex::new(
                Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid bounds"),
            )),
            desc: Desc::new(
                name.to_owned(),
                help.to_owned(),
                Vec::new(),
                Default::default(),
            )
            .expect("valid metric"),
        }
    }

    /// Records one latency.
    pub fn record(&self, d: std::time::Duration) {
        let ns = (d.as_nanos() as u64).clamp(1, 3_600_000_000_000);
        if let Ok(mut h) = self.inner.lock() {
            let _ = h.record(ns);
        }
    }

    /// The latency at quantile `q`, in seconds.
    pub fn quantile(&self, q: f64) -> f64 {
        self.inner
            .lock()
            .map(|h| h.value_at_quantile(q) as f64 / 1e9)
            .unwrap_or(0.0)
    }
}

impl Collector for HdrSummary {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Ok(h) = self.inner.lock() else {
            return Vec::new();
        };
        let mut summary = prometheus::proto::Summary::default();
        summary.set_sample_count(h.len());
        summary.set_sample_sum(h.mean() * h.len() as f64 / 1e9);
        summary.set_quantile(
            QUANTILES
                .iter()
                .map(|&q| {
                    let mut quantile = prometheus::proto::Quantile::default();
                    quantile.set_quantile(q);
                    quantile.set_value(h.value_at_quantile(q) as f64 / 1e9);
                    quantile
                })
                .collect(),
        );
        let mut metric = prometheus::proto::Metric::default();
        metric.set_summary(summary);
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(MetricType::SUMMARY);
        family.mut_metric().push(metric);
        vec![family]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_families_and_hdr_quantiles() {
        let m = Metrics::new();
        m.events.with_label_values(&["success"]).inc_by(3);
        for ms in 1..=100 {
            m.processing_latency
                .record(std::time::Duration::from_millis(ms));
        }
        let text = m.render();
        assert!(
            text.contains("keywatch_events_total{outcome=\"success\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("keywatch_processing_latency_seconds{quantile=\"0.99\"} 0.099"),
            "{text}"
        );
        assert!(
            text.contains("keywatch_processing_latency_seconds_count 100"),
            "{text}"
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("keywatch_"), "{line}");
        }
    }
}
