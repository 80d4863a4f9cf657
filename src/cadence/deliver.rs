//! Delivering a review: a summary to Slack, the JSON to a signed webhook or
//! a Kafka topic, the Markdown to a file. Each destination gets up to three
//! attempts (for failures that may pass); a failure is logged and counted
//! in `keywatch_review_deliveries_total{destination,result}`, and never
//! holds back the next review.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};

use super::config::{Delivery, ReviewConfig};
use super::Delivered;
use crate::alert::config::{standard_webhook, SigningKey};
use crate::alert::DeliveryError;
use keywatch_core::metrics::Metrics;
use keywatch_core::review::{Changes, Review};

const ATTEMPTS: u32 = 3;

/// The destinations, ready to send.
#[derive(Default)]
pub(super) struct Deliveries {
    http: Option<reqwest::Client>,
    targets: Vec<(Delivery, Option<FutureProducer>)>,
}

impl Deliveries {
    pub(super) fn new(cfg: &ReviewConfig) -> anyhow::Result<Deliveries> {
        let mut targets = Vec::new();
        for d in &cfg.deliver {
            let producer = match d {
                Delivery::Kafka(k) => Some(
                    crate::kafka::for_sink(
                        k.cluster(),
                        crate::kafka::Role::Producer,
                        &[("client.id", "keywatch-review".into())],
                        &[],
                    )
                    .create()
                    .map_err(|e| anyhow::anyhow!("creating the review's Kafka producer: {e}"))?,
                ),
                _ => None,
            };
            targets.push((d.clone(), producer));
        }
        Ok(Deliveries {
            http: Some(crate::alert::http_client(cfg.timeout.0)?),
            targets,
        })
    }

    pub(super) async fn deliver(
        &self,
        review: &Review,
        changes: &Changes,
        metrics: &Metrics,
        timeout: Duration,
    ) {
        let doc = Delivered {
            kind: "keywatch.review",
            review,
            changes,
        };
        let json = serde_json::to_vec(&doc).unwrap_or_default();
        for (target, producer) in &self.targets {
            let mut attempt = 0;
            let result = loop {
                attempt += 1;
                let r = self
                    .once(target, producer.as_ref(), review, changes, &json, timeout)
                    .await;
                match r {
                    Err(e) if e.retryable() && attempt < ATTEMPTS => {
                        tokio::time::sleep(Duration::from_secs(attempt as u64)).await;
                    }
                    r => break r,
                }
            };
            let label = if result.is_ok() { "ok" } else { "failed" };
            metrics
                .review_deliveries
                .with_label_values(&[target.name(), label])
                .inc();
            if let Err(e) = result {
                tracing::error!(destination = target.name(), error = %e, attempts = attempt, "the review could not be delivered");
            }
        }
    }

    async fn once(
        &self,
        target: &Delivery,
        producer: Option<&FutureProducer>,
        review: &Review,
        changes: &Changes,
        json: &[u8],
        timeout: Duration,
    ) -> Result<(), DeliveryError> {
        let http = self.http.as_ref();
        match (target, http) {
            (Delivery::Webhook(hook), Some(http)) => {
                let id = format!("review-{}", review.generated_at);
                let mut request = http.post(&hook.url);
                for (name, value) in &hook.headers {
                    request = request.header(name.as_str(), value.expose());
                }
                let key = hook
                    .secret
                    .as_ref()
                    .and_then(|secret| SigningKey::parse(secret.expose()).ok());
                let request = standard_webhook(request, &id, key.as_ref(), json.to_vec());
                crate::alert::send(request).await.map(drop)
            }
            (Delivery::Slack(slack), Some(http)) => {
                let body = serde_json::json!({ "text": slack_text(review, changes) });
                crate::alert::send(http.post(slack.url.expose()).json(&body))
                    .await
                    .map(drop)
            }
            (Delivery::Kafka(k), _) => {
                let Some(producer) = producer else {
                    return Err(DeliveryError::Kafka {
                        retryable: false,
                        error: "no producer".to_owned(),
                    });
                };
                producer
                    .send(
                        FutureRecord::to(&k.topic).key("review").payload(json),
                        timeout,
                    )
                    .await
                    .map(drop)
                    .map_err(|(e, _)| DeliveryError::Kafka {
                        retryable: true,
                        error: e.to_string(),
                    })
            }
            (Delivery::File(f), _) => {
                let text = format!("{}\n{}", review.to_markdown(), changes.to_markdown());
                write_atomically(&f.path, text.as_bytes())
                    .map_err(|e| DeliveryError::Write(format!("{}: {e}", f.path.display())))
            }
            _ => Ok(()),
        }
    }
}

/// Replaces the file whole: a reader never sees half a review.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The Slack message: the counts and what changed.
fn slack_text(review: &Review, changes: &Changes) -> String {
    let s = &review.summary;
    let mut text = format!(
        "*Key review* {}: {} keys listed, {} seen; *{}* unknown, *{}* stale, *{}* overdue for rotation, *{}* expired in use",
        review.generated_at, s.listed, s.seen, s.unknown, s.stale, s.rotation_overdue, s.expired_in_use
    );
    if let Some(c) = &review.compromised {
        text.push_str(&format!(", *{}* confirmed compromised", c.len()));
    }
    text.push('\n');
    if changes.since.is_some() {
        text.push_str(&format!(
            "Since the previous review: {} new unknown, {} went stale, {} rotated, {} added, {} removed.",
            changes.new_unknown.len(),
            changes.went_stale.len(),
            changes.rotated.len(),
            changes.added.len(),
            changes.removed.len()
        ));
        for (what, keys) in [
            ("new unknown", &changes.new_unknown),
            ("went stale", &changes.went_stale),
        ] {
            if !keys.is_empty() {
                let shown: Vec<String> = keys.iter().take(10).map(|k| format!("`{k}`")).collect();
                text.push_str(&format!("\n• {what}: {}", shown.join(", ")));
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::mocking::MockCluster;
    use rdkafka::{ClientConfig, Message};

    use super::*;
    use crate::cadence::config::{FileDelivery, SlackDelivery};
    use crate::secret::Secret;
    use keywatch_core::review::Digest;

    /// A review of one stale key, with the changes that name it.
    fn a_review() -> (Review, Changes) {
        let cfg = keywatch_core::config::Config::default();
        let engine = keywatch_core::engine::Engine::new(&cfg);
        let inventory = keywatch_core::inventory::Inventory::parse(
            b"key_id,owner,last_used\nAKIASTALE,bob,2025-01-01\n",
            keywatch_core::inventory::Format::Csv,
            std::path::Path::new("keys.csv"),
        )
        .unwrap();
        let review = keywatch_core::review::review(&keywatch_core::review::ReviewInput {
            engine: &engine,
            inventory: &inventory,
            findings: &[],
            now: 1_764_547_200,
            observed_since: None,
            thresholds: keywatch_core::review::Thresholds::from_config(&cfg.inventory),
        });
        let changes = review
            .digest()
            .changes_since(&Digest::default(), Some("2025-11-01T00:00:00.000Z".into()));
        (review, changes)
    }

    #[tokio::test]
    async fn slack_kafka_and_file_each_get_the_review() {
        let (review, changes) = a_review();
        // Slack: a local receiver keeps the message.
        let got = Arc::new(Mutex::new(Vec::<String>::new()));
        let keep = got.clone();
        let app = axum::Router::new().fallback(move |body: String| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push(body);
                "ok"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let slack = format!("http://{}/services/T/B/X", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("reviews", 1, 1).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out/review.md");
        let kafka: crate::alert::config::KafkaSinkConfig = toml::from_str(&format!(
            "brokers = \"{}\"\ntopic = \"reviews\"\n",
            cluster.bootstrap_servers()
        ))
        .unwrap();
        let cfg = ReviewConfig {
            deliver: vec![
                Delivery::Slack(SlackDelivery {
                    url: Secret::resolve(&slack).unwrap(),
                }),
                Delivery::Kafka(kafka),
                Delivery::File(FileDelivery { path: file.clone() }),
            ],
            ..ReviewConfig::default()
        };
        let metrics = Metrics::new();
        Deliveries::new(&cfg)
            .unwrap()
            .deliver(&review, &changes, &metrics, Duration::from_secs(10))
            .await;
        for d in ["slack", "kafka", "file"] {
            assert_eq!(
                metrics
                    .review_deliveries
                    .with_label_values(&[d, "ok"])
                    .get(),
                1,
                "{d}"
            );
        }
        let slack: serde_json::Value = serde_json::from_str(&got.lock().unwrap()[0]).unwrap();
        let text = slack["text"].as_str().unwrap();
        assert!(
            text.contains("*1* stale") && text.contains("went stale: `AKIASTALE`"),
            "{text}"
        );
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("group.id", "t")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&["reviews"]).unwrap();
        let msg = loop {
            if let Some(m) = consumer.poll(Duration::from_secs(5)) {
                break m.unwrap().detach();
            }
        };
        assert_eq!(msg.key(), Some(&b"review"[..]));
        let doc: serde_json::Value = serde_json::from_slice(msg.payload().unwrap()).unwrap();
        assert_eq!(doc["type"], "keywatch.review");
        assert_eq!(
            doc["changes"]["went_stale"],
            serde_json::json!(["AKIASTALE"])
        );
        let md = std::fs::read_to_string(&file).unwrap();
        assert!(
            md.contains("**Keys that went stale** (1): `AKIASTALE`"),
            "{md}"
        );
    }
}
