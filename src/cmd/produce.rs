//! Producing generated traffic to Kafka, as `keywatch gen --brokers` and the
//! demo do: keyed by key id (so a key's events stay in one partition, in
//! order), optionally paced to a target rate.

use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use keywatch_core::gen::GenEvent;

/// A keyed, paced producer of generated events.
pub struct EventProducer {
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
    sent: u64,
}

impl EventProducer {
    /// A producer to `topic` on `brokers`.
    pub fn new(brokers: &str, topic: &str) -> anyhow::Result<EventProducer> {
        Self::connect(brokers, topic, None)
    }

    /// A producer that first checks, as `run` does at start, that a broker
    /// answers within `timeout`: an unreachable one fails fast, named.
    pub fn checked(brokers: &str, topic: &str, timeout: Duration) -> anyhow::Result<EventProducer> {
        Self::connect(brokers, topic, Some(timeout))
    }

    fn connect(
        brokers: &str,
        topic: &str,
        check: Option<Duration>,
    ) -> anyhow::Result<EventProducer> {
        let producer: ThreadedProducer<DefaultProducerContext> = crate::kafka::for_brokers(
            brokers,
            &[
                ("linger.ms", "5".into()),
                ("queue.buffering.max.messages", "500000".into()),
            ],
        )
        .create()
        .context("creating the Kafka producer")?;
        if let Some(timeout) = check {
            producer
                .client()
                .fetch_metadata(Some(topic), timeout)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot reach Kafka at {brokers} within {}: {e}",
                        humantime::format_duration(timeout)
                    )
                })?;
        }
        Ok(EventProducer {
            producer,
            topic: topic.to_owned(),
            sent: 0,
        })
    }

    /// Sends one event, waiting while the local queue is full.
    pub fn send(&mut self, ev: &GenEvent) -> anyhow::Result<()> {
        loop {
            let record = BaseRecord::to(&self.topic)
                .key(ev.key_id.as_bytes())
                .payload(ev.json.as_bytes());
            match self.producer.send(record) {
                Ok(()) => {
                    self.sent += 1;
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => return Err(e).context("producing an event"),
            }
        }
    }

    /// Events handed to the producer so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Waits for every queued event to be delivered.
    pub fn flush(&self, timeout: Duration) -> anyhow::Result<()> {
        self.producer
            .flush(timeout)
            .context("delivering the last events")
    }
}

/// Paces a loop to `rate` iterations per second (0 = as fast as possible).
pub struct Pacer {
    rate: f64,
    start: Instant,
    done: u64,
}

impl Pacer {
    /// A pacer at `rate` per second.
    pub fn new(rate: f64) -> Pacer {
        Pacer {
            rate,
            start: Instant::now(),
            done: 0,
        }
    }

    /// Counts one iteration; sleeps when ahead of schedule.
    pub fn tick(&mut self) {
        self.done += 1;
        if self.rate <= 0.0 || self.done % 256 != 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.done as f64 / self.rate);
        if let Some(ahead) = due.checked_sub(self.start.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_holds_the_rate() {
        let mut p = Pacer::new(51_200.0);
        let start = Instant::now();
        for _ in 0..5_120 {
            p.tick();
        }
        // 5,120 ticks at 51,200/s take at least ~100 ms.
        assert!(
            start.elapsed() >= Duration::from_millis(95),
            "{:?}",
            start.elapsed()
        );
    }
}
