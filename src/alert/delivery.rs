//! What a sink is to the worker that drives it: one delivery attempt (and
//! any follow-up work on a schedule), and how an attempt fails.

use std::future::Future;
use std::time::Duration;

use super::shape::EncodedAlert;

/// One kind of alert receiver.
pub trait Sink: Send + Sync + 'static {
    /// One delivery attempt. The worker bounds it with the sink's timeout
    /// and decides about retries from the error.
    fn deliver(
        &self,
        alert: &EncodedAlert,
    ) -> impl Future<Output = Result<(), DeliveryError>> + Send;

    /// Least time between two requests (Slack's rate limit).
    fn min_interval(&self) -> Duration {
        Duration::ZERO
    }

    /// How often [`Sink::follow_up`] runs, if the sink has follow-up work.
    fn follow_up_every(&self) -> Option<Duration> {
        None
    }

    /// Work on the sink's own schedule: PagerDuty resolves, Alertmanager
    /// re-sends. Failures are counted and retried on the next round.
    fn follow_up(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Why a delivery attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// No complete answer within the sink's timeout.
    #[error("no answer within the sink's timeout")]
    Timeout,
    /// The receiver could not be reached.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// HTTP 429: the receiver asks us to slow down.
    #[error("rate limited (HTTP 429)")]
    RateLimited {
        /// How long it asked us to wait.
        retry_after: Option<Duration>,
    },
    /// HTTP 5xx: the receiver failed; worth another try.
    #[error("HTTP {status}: {body}")]
    ServerError {
        /// Status code.
        status: u16,
        /// From a 503's `Retry-After`.
        retry_after: Option<Duration>,
        /// The start of the response body.
        body: String,
    },
    /// Any other non-success status (4xx): the receiver refused this alert;
    /// sending it again would be refused again.
    #[error("HTTP {status}: {body}")]
    Rejected {
        /// Status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// Another HTTP transport failure (reset connection, bad response).
    #[error("request failed: {0}")]
    Request(String),
    /// The Kafka producer could not deliver.
    #[error("kafka: {error}")]
    Kafka {
        /// librdkafka's error.
        error: String,
        /// False for errors that repeat (message too large, not authorised).
        retryable: bool,
    },
    /// A file or standard output could not be written.
    #[error("cannot write: {0}")]
    Write(String),
}

impl DeliveryError {
    /// The `reason` label in `keywatch_alert_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            DeliveryError::Timeout => "timeout",
            DeliveryError::Connect(_) => "connect",
            DeliveryError::RateLimited { .. } => "rate_limited",
            DeliveryError::ServerError { .. } => "status_5xx",
            DeliveryError::Rejected { .. } => "status_4xx",
            DeliveryError::Request(_) => "request",
            DeliveryError::Kafka { .. } => "kafka",
            DeliveryError::Write(_) => "write",
        }
    }

    /// Whether another attempt may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            DeliveryError::Rejected { .. } => false,
            DeliveryError::Kafka { retryable, .. } => *retryable,
            _ => true,
        }
    }

    /// How long the receiver asked us to wait (429, 503).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DeliveryError::RateLimited { retry_after }
            | DeliveryError::ServerError { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
