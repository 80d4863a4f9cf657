//! The ceiling for end-to-end throughput: a bare rdkafka consumer that reads
//! a topic from the beginning and discards every message. Used by
//! `benches/kafka_e2e.sh`; run by hand:
//!
//! `cargo bench --bench kafka_bare -- BROKERS TOPIC COUNT`
//!
//! Under `cargo test` (no arguments) it does nothing.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let [brokers, topic, count] = args.as_slice() else {
        eprintln!("usage: kafka_bare BROKERS TOPIC COUNT (nothing to do)");
        return;
    };
    let count: u64 = count.parse().expect("COUNT is a number");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bare-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let start = Instant::now();
    let mut first = None;
    let mut n = 0u64;
    let mut bytes = 0usize;
    while n < count && start.elapsed() < Duration::from_secs(600) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            first.get_or_insert_with(Instant::now);
            bytes += m.payload_len();
            n += 1;
        }
    }
    let total = start.elapsed().as_secs_f64();
    let from_first = first.map_or(total, |f| f.elapsed().as_secs_f64());
    println!(
        "bare consumer: {n} messages ({} MB) in {total:.2}s including group join = {:.0} msg/s; from first message {from_first:.2}s = {:.0} msg/s",
        bytes / 1_000_000,
        n as f64 / total,
        n as f64 / from_first
    );
}
