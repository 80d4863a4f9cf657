//! Delivering a review: a summary to Slack, the JSON to a signed webhook or
//! a Kafka topic, the Markdown to a file. Each destination gets up to three
//! attempts (for failures that may pass); a failure is logged and counted
//! in `keywatch_review_deliveries_total{destination,result}`, and never
//! holds back the next review.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};

use super::config::{Delivery, ReviewConfig};
use super::Delivered;
use crate::alert::config::SigningKey;
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
                let timestamp = chrono::Utc::now().timestamp();
                let mut request = http
                    .post(&hook.url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header("webhook-id", &id)
                    .header("webhook-timestamp", timestamp);
                for (name, value) in &hook.headers {
                    request = request.header(name.as_str(), value.expose());
                }
                if let Some(secret) = &hook.secret {
                    if let Ok(key) = SigningKey::parse(secret.expose()) {
                        request =
                            request.header("webhook-signature", key.sign(&id, timestamp, json));
                    }
                }
                crate::alert::send(request.body(json.to_vec()))
                    .await
                    .map(drop)
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
