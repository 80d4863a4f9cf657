//! What librdkafka reports outside rebalances: its statistics (lag,
//! broker reachability), its errors and its log, into metrics and tracing.

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;

use super::rebalance::{lock, SourceContext};

impl ClientContext for SourceContext {
    fn stats(&self, stats: Statistics) {
        let now_ms = chrono::Utc::now().timestamp_millis();
        // Bootstrap and learned brokers alike: one connection up and
        // answering is enough. A consumer's fetches are answered within
        // fetch.wait.max.ms even when idle, so a broker up with requests
        // waiting and no response since the last statistics has stalled.
        let brokers = stats.brokers.values().filter(|b| b.nodeid >= 0);
        let (mut any, mut up, mut answering) = (false, false, false);
        {
            let mut seen = lock(&self.broker_rx);
            for b in brokers {
                any = true;
                if b.state == "UP" {
                    up = true;
                    let before = seen.insert(b.nodeid, b.rx);
                    answering |= before != Some(b.rx) || b.waitresp_cnt == 0;
                }
            }
        }
        if answering {
            self.status.brokers_up(now_ms);
        } else if up {
            self.status.brokers_down(
                now_ms,
                "brokers connected but not answering (paused or overloaded)",
            );
        } else if any {
            self.status
                .brokers_down(now_ms, "no broker connection is up");
        }
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[topic, &partition.to_string()])
                        .set(p.consumer_lag);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.status
                .brokers_down(chrono::Utc::now().timestamp_millis(), reason);
        }
        if self.errors.allow() {
            tracing::warn!(%error, reason, "kafka client error");
        }
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if matches!(
            level,
            RDKafkaLogLevel::Emerg
                | RDKafkaLogLevel::Alert
                | RDKafkaLogLevel::Critical
                | RDKafkaLogLevel::Error
        ) && self.errors.allow()
        {
            tracing::warn!(facility = fac, "librdkafka: {log_message}");
        }
    }
}
