//! One worker per sink: takes alerts off the sink's queue, makes up to
//! `concurrency` delivery attempts at a time with timeouts and retries, and
//! dead-letters what it gives up on. An alert waiting to be retried holds no
//! attempt slot, so a receiver that hangs on some requests delays only
//! those: the others are tried meanwhile. On shutdown it drains its queue
//! until the deadline; what is left then is dead-lettered too.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::dead_letter::{DeadLetter, DeadLetterRecord};
use super::delivery::{DeliveryError, Sink};
use super::ledger::Ledger;
use super::retry::{Backoff, Pacer};
use super::seen::SeenIds;
use super::shape::EncodedAlert;
pub use super::sink_metrics::SinkMetrics;

/// An alert waiting in a sink's queue.
pub struct Queued {
    /// The alert, shared by every sink it was routed to.
    pub alert: Arc<EncodedAlert>,
    /// When it was submitted: its age bounds retries, and delivery latency
    /// is measured from here.
    pub raised: Instant,
    /// Its id's hash in the sink's memory of delivered ids.
    pub id_hash: u128,
    /// The source partition of its finding (process-local number, 0 for
    /// none): where the sink's ledger records its delivery.
    pub origin: u16,
}

/// How hard a sink tries.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// One attempt's limit.
    pub timeout: Duration,
    /// Attempts after the first.
    pub max_retries: u32,
    /// Waits between attempts.
    pub backoff: Backoff,
    /// Give up on alerts older than this.
    pub max_age: Duration,
}

/// What a sink's deliveries share.
pub struct Delivery {
    /// Metric handles.
    pub metrics: Arc<SinkMetrics>,
    /// Timeouts and retries.
    pub policy: RetryPolicy,
    /// Spacing and `Retry-After` pauses.
    pub pacer: Pacer,
    /// Where given-up alerts go.
    pub dead_letter: DeadLetter,
    /// Ids delivered or on their way; an id is forgotten when dead-lettered,
    /// so a later re-find may try again.
    pub seen: Option<Arc<Mutex<SeenIds>>>,
    /// Ids delivered, per source partition (none when the sink remembers no
    /// ids).
    pub ledger: Option<Arc<Ledger>>,
    /// Cancelled at the drain deadline: deliveries in flight give up.
    pub give_up: CancellationToken,
}

impl Delivery {
    async fn dead_letter(&self, q: &Queued, reason: &str, error: String, attempts: u32) {
        if let Some(seen) = &self.seen {
            seen.lock()
                .unwrap_or_else(|e| e.into_inner())
                .forget(q.id_hash);
        }
        let record = DeadLetterRecord::new(&self.metrics.name, reason, error, attempts, &q.alert);
        self.dead_letter.keep(&record, &self.metrics).await;
    }
}

/// Starts the worker for `sink`; it stops (after draining) once `shutdown`
/// is cancelled or every sender is gone.
pub fn spawn<S: Sink>(
    sink: S,
    rx: mpsc::Receiver<Queued>,
    mut delivery: Delivery,
    concurrency: usize,
    drain: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    delivery.pacer = std::mem::take(&mut delivery.pacer).with_interval(sink.min_interval());
    let sink = Arc::new(sink);
    let delivery = Arc::new(delivery);
    let stop = shutdown.child_token();
    let follow_ups = sink.follow_up_every().map(|every| {
        let (sink, stop) = (sink.clone(), stop.clone());
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = ticks.tick() => sink.follow_up().await,
                }
            }
        })
    });
    tokio::spawn(async move {
        run(sink, rx, delivery, concurrency, drain, &shutdown).await;
        stop.cancel();
        if let Some(task) = follow_ups {
            let _ = task.await;
        }
    })
}

async fn run<S: Sink>(
    sink: Arc<S>,
    mut rx: mpsc::Receiver<Queued>,
    delivery: Arc<Delivery>,
    concurrency: usize,
    drain: Duration,
    shutdown: &CancellationToken,
) {
    let concurrency = concurrency.max(1);
    // Attempts under way; alerts between attempts (backing off) hold none.
    let slots = Arc::new(Semaphore::new(concurrency));
    // Alerts taken off the queue and not done yet, attempting or backing
    // off: bounded, so a receiver that fails everything leaves the rest in
    // the queue (where its depth shows).
    let outstanding = concurrency.saturating_mul(16).max(64);
    let mut in_flight = JoinSet::new();
    let start = |q: Queued, in_flight: &mut JoinSet<()>| {
        delivery.metrics.depth.dec();
        // The first attempt's slot is taken now, so the next alert is not
        // taken off the queue for a slot this one is about to use.
        let first = slots.clone().try_acquire_owned().ok();
        let (sink, delivery, slots) = (sink.clone(), delivery.clone(), slots.clone());
        in_flight.spawn(async move { deliver(&*sink, &delivery, &slots, first, q).await });
    };
    let room =
        |in_flight: &JoinSet<()>| in_flight.len() < outstanding && slots.available_permits() > 0;
    let mut queue_open = true;
    while queue_open {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(done) = in_flight.join_next() => report_panic(done, &delivery.metrics.name),
            _ = tokio::time::sleep(Duration::from_millis(50)), if !room(&in_flight) => {}
            q = rx.recv(), if room(&in_flight) => match q {
                Some(q) => start(q, &mut in_flight),
                None => queue_open = false,
            },
        }
    }

    // Draining: nothing new is accepted; what is queued gets until the deadline.
    rx.close();
    let deadline = tokio::time::sleep(drain);
    tokio::pin!(deadline);
    loop {
        let giving_up = delivery.give_up.is_cancelled();
        if (giving_up || !queue_open) && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            _ = &mut deadline, if !giving_up => delivery.give_up.cancel(),
            Some(done) = in_flight.join_next() => report_panic(done, &delivery.metrics.name),
            _ = tokio::time::sleep(Duration::from_millis(50)), if queue_open && !giving_up && !room(&in_flight) => {}
            q = rx.recv(), if queue_open && !giving_up && room(&in_flight) => match q {
                Some(q) => start(q, &mut in_flight),
                None => queue_open = false,
            },
            else => break,
        }
    }
    while let Ok(q) = rx.try_recv() {
        delivery.metrics.depth.dec();
        delivery
            .dead_letter(
                &q,
                "shutdown",
                "still queued at the shutdown deadline".to_owned(),
                0,
            )
            .await;
    }
}

fn report_panic(done: Result<(), tokio::task::JoinError>, sink: &str) {
    if let Err(e) = done {
        tracing::error!(sink, error = %e, "an alert delivery task failed");
    }
}

/// Why a delivery ended without success.
enum GaveUp {
    Error(DeliveryError),
    TooOld(Option<DeliveryError>),
    Shutdown,
}

/// Delivers one alert: attempts with a timeout, retries with backoff or as
/// the receiver's `Retry-After` says, and dead-letters it on giving up.
async fn deliver<S: Sink>(
    sink: &S,
    d: &Delivery,
    slots: &Arc<Semaphore>,
    mut first: Option<OwnedSemaphorePermit>,
    q: Queued,
) {
    let policy = &d.policy;
    let mut attempts = 0u32;
    let mut rng = None;
    let mut last_error = None;
    let gave_up = loop {
        if q.raised.elapsed() >= policy.max_age {
            break GaveUp::TooOld(last_error);
        }
        let attempt = async {
            // Held for this attempt only, not for the wait before a retry.
            let _slot = match first.take() {
                Some(slot) => slot,
                None => slots.clone().acquire_owned().await.expect("never closed"),
            };
            d.pacer.wait().await;
            match tokio::time::timeout(policy.timeout, sink.deliver(&q.alert)).await {
                Ok(result) => result,
                Err(_) => Err(DeliveryError::Timeout),
            }
        };
        let result = tokio::select! {
            biased;
            _ = d.give_up.cancelled() => break GaveUp::Shutdown,
            result = attempt => result,
        };
        attempts += 1;
        let error = match result {
            Ok(()) => {
                d.metrics.sent.inc();
                if let Some(ledger) = &d.ledger {
                    ledger.record(q.origin, q.id_hash);
                }
                d.metrics
                    .delivery_seconds
                    .observe(q.raised.elapsed().as_secs_f64());
                return;
            }
            Err(e) => e,
        };
        d.metrics.failure(error.reason());
        if !error.retryable() || attempts > policy.max_retries {
            break GaveUp::Error(error);
        }
        let told = error.retry_after();
        let wait = told.unwrap_or_else(|| {
            let rng = rng.get_or_insert_with(rand::rngs::SmallRng::from_entropy);
            policy.backoff.delay(attempts - 1, rng)
        });
        if q.raised.elapsed().saturating_add(wait) >= policy.max_age {
            break GaveUp::TooOld(Some(error));
        }
        if told.is_some() {
            // The receiver spoke for the whole sink, not just this alert.
            d.pacer.pause(wait);
        }
        tracing::debug!(sink = %d.metrics.name, alert = q.alert.id(), %error, ?wait, "retrying");
        last_error = Some(error);
        d.metrics.retried.inc();
        tokio::select! {
            biased;
            _ = d.give_up.cancelled() => break GaveUp::Shutdown,
            _ = tokio::time::sleep(wait) => {}
        }
    };
    d.metrics.failed.inc();
    let (reason, error) = match gave_up {
        GaveUp::Error(e) => (e.reason(), e.to_string()),
        GaveUp::TooOld(last) => {
            d.metrics.failure("expired");
            let last = last.map_or_else(|| "no attempt".to_owned(), |e| e.to_string());
            (
                "expired",
                format!(
                    "older than max_delivery_age ({:?}); last error: {last}",
                    policy.max_age
                ),
            )
        }
        GaveUp::Shutdown => ("shutdown", "in flight at the shutdown deadline".to_owned()),
    };
    tracing::warn!(sink = %d.metrics.name, alert = q.alert.id(), reason, %error, attempts, "alert dead-lettered");
    d.dead_letter(&q, reason, error, attempts).await;
}
