//! Sinks: where alerts go, one file per kind. A sink knows how to make one
//! delivery attempt (and, for PagerDuty and Alertmanager, the follow-up work
//! its receiver expects on a schedule); the worker around it supplies the
//! queue, timeouts, retries, pacing and the dead-letter file.

mod alertmanager;
pub mod check;
pub mod config;
mod file;
mod kafka;
mod pagerduty;
mod slack;
mod splunk_hec;
mod webhook;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::RETRY_AFTER;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use alertmanager::AlertmanagerConfig;
pub use file::{pretty, FileSinkConfig, StdoutSinkConfig};
pub use kafka::KafkaSinkConfig;
pub use pagerduty::PagerDutyConfig;
pub use slack::SlackConfig;
pub use splunk_hec::SplunkHecConfig;
pub use webhook::{signing_key, standard_webhook, SigningKey, WebhookConfig};

pub use super::delivery::{DeliveryError, Sink};
use super::retry::parse_retry_after;
use super::shape::Alert;
use super::worker::{self, Delivery, Queued, SinkMetrics};
use config::{SinkConfig, SinkKind};

/// An HTTP client for one sink: its own connection pool, so a slow
/// receiver's connections never starve another sink's.
pub fn http_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("keywatch/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Sends a request; any status but 2xx becomes the matching error.
pub async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response, DeliveryError> {
    let response = request.send().await.map_err(transport_error)?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    if status.as_u16() == 429 {
        return Err(DeliveryError::RateLimited { retry_after });
    }
    let body = body_start(response).await;
    Err(if status.is_server_error() {
        DeliveryError::ServerError {
            status: status.as_u16(),
            retry_after: retry_after.filter(|_| status.as_u16() == 503),
            body,
        }
    } else {
        DeliveryError::Rejected {
            status: status.as_u16(),
            body,
        }
    })
}

/// The first bytes of an error response, enough to say what was wrong.
async fn body_start(mut response: reqwest::Response) -> String {
    const KEEP: usize = 300;
    let mut buf = Vec::new();
    while buf.len() < KEEP {
        match response.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            _ => break,
        }
    }
    buf.truncate(KEEP);
    String::from_utf8_lossy(&buf).trim().to_owned()
}

fn transport_error(e: reqwest::Error) -> DeliveryError {
    // The URL can be the credential (Slack), so it never reaches a log.
    let e = e.without_url();
    if e.is_timeout() {
        return DeliveryError::Timeout;
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    if e.is_connect() {
        DeliveryError::Connect(text)
    } else {
        DeliveryError::Request(text)
    }
}

/// Links into keywatch's HTTP API for messages people read.
#[derive(Debug, Clone)]
pub struct Links {
    base: reqwest::Url,
}

impl Links {
    /// Links under `public_url` (validated with the configuration).
    pub fn new(public_url: &str) -> anyhow::Result<Links> {
        Ok(Links {
            base: reqwest::Url::parse(public_url)?,
        })
    }

    fn under(&self, segments: &[&str]) -> String {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url.into()
    }

    /// The finding behind `alert`.
    pub fn finding(&self, alert: &Alert) -> String {
        self.under(&["api", "v1", "findings", &alert.id])
    }

    /// The key's baseline and why it alerts.
    pub fn key(&self, alert: &Alert) -> String {
        self.key_id(&alert.key_id)
    }

    /// A key's baseline, by its id.
    pub fn key_id(&self, key_id: &str) -> String {
        self.under(&["api", "v1", "keys", key_id])
    }

    /// An incident with its findings.
    pub fn incident(&self, incident_id: &str) -> String {
        self.under(&["api", "v1", "incidents", incident_id])
    }
}

/// What a sink is built from.
pub struct SinkSetup<'a> {
    /// Its configuration.
    pub cfg: &'a SinkConfig,
    /// Where links in messages point.
    pub links: Links,
    /// Its metric handles (follow-up work counts its own failures).
    pub metrics: Arc<SinkMetrics>,
}

/// Builds the configured sink and starts its worker.
pub fn spawn(
    setup: SinkSetup<'_>,
    rx: mpsc::Receiver<Queued>,
    delivery: Delivery,
    drain: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let concurrency = setup.cfg.concurrency;
    // One worker type per sink type: the match picks it.
    macro_rules! start {
        ($sink:expr) => {
            worker::spawn($sink, rx, delivery, concurrency, drain, shutdown)
        };
    }
    Ok(match &setup.cfg.kind {
        SinkKind::Webhook(c) => start!(webhook::WebhookSink::new(c, &setup)?),
        SinkKind::SplunkHec(c) => start!(splunk_hec::SplunkHecSink::new(c, &setup)?),
        SinkKind::Slack(c) => start!(slack::SlackSink::new(c, &setup)?),
        SinkKind::PagerDuty(c) => start!(pagerduty::PagerDutySink::new(c, &setup)?),
        SinkKind::Alertmanager(c) => start!(alertmanager::AlertmanagerSink::new(c, &setup)?),
        SinkKind::Kafka(c) => start!(kafka::KafkaSink::new(c, &setup)?),
        SinkKind::File(c) => start!(file::FileSink::file(&c.path, setup.cfg.format)?),
        SinkKind::Stdout(c) => start!(file::FileSink::stdout(c.pretty, setup.cfg.format)),
    })
}
