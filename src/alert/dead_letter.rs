//! The dead-letter file: every alert a sink could not deliver, one JSON
//! object per line with the sink, the reason and the attempts made, so
//! nothing is dropped silently and an operator can re-send them later.
//!
//! One task owns the file. The detection hot path hands it lines without
//! waiting; sink workers wait for room, so what they give up is never lost.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, oneshot};

use super::config::Timestamp;
use super::shape::EncodedAlert;
use super::sink_metrics::SinkMetrics;

/// Lines the hot path may hand over before the writer catches up; past it
/// (a stuck disk) alerts are counted as `lost` rather than block detection.
const BACKLOG: usize = 10_000;

/// One line of the dead-letter file.
#[derive(Debug, Serialize)]
pub struct DeadLetterRecord<'a> {
    /// When it was given up (RFC 3339).
    pub dead_lettered_at: String,
    /// The sink that could not deliver it.
    pub sink: &'a str,
    /// Why, as in `keywatch_alert_failures_total`'s `reason`.
    pub reason: &'a str,
    /// The last error, for a person.
    pub error: String,
    /// Delivery attempts made.
    pub attempts: u32,
    /// The alert, exactly as it would have been sent (spliced in as JSON).
    #[serde(skip)]
    pub alert: &'a EncodedAlert,
}

impl<'a> DeadLetterRecord<'a> {
    /// A record stamped now.
    pub fn new(
        sink: &'a str,
        reason: &'a str,
        error: String,
        attempts: u32,
        alert: &'a EncodedAlert,
    ) -> Self {
        DeadLetterRecord {
            dead_lettered_at: Timestamp::now().to_string(),
            sink,
            reason,
            error,
            attempts,
            alert,
        }
    }
}

enum Msg {
    Line(String, Arc<SinkMetrics>),
    Flush(oneshot::Sender<()>),
}

/// Handle to the dead-letter writer; cheap to clone.
#[derive(Clone)]
pub struct DeadLetter {
    tx: mpsc::Sender<Msg>,
}

impl DeadLetter {
    /// Opens (appends to) `path` and starts its writer, which ends once
    /// every handle is dropped.
    pub fn open(path: &Path) -> std::io::Result<DeadLetter> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let (tx, rx) = mpsc::channel(BACKLOG);
        let path = path.display().to_string();
        tokio::spawn(write_lines(tokio::fs::File::from_std(file), rx, path));
        Ok(DeadLetter { tx })
    }

    /// Keeps `record` without waiting (the hot path).
    pub fn try_keep(&self, record: &DeadLetterRecord<'_>, metrics: &Arc<SinkMetrics>) {
        let line = to_line(record);
        if self.tx.try_send(Msg::Line(line, metrics.clone())).is_err() {
            metrics.lost.inc();
            // Rate-limited: a stuck disk would otherwise log every alert.
            let lost = metrics.lost.get();
            if lost.is_power_of_two() {
                tracing::error!(
                    sink = record.sink,
                    lost,
                    "dead-letter writer is behind or stopped; alerts lost"
                );
            }
        }
    }

    /// Keeps `record`, waiting for room (sink workers).
    pub async fn keep(&self, record: &DeadLetterRecord<'_>, metrics: &Arc<SinkMetrics>) {
        let line = to_line(record);
        if self
            .tx
            .send(Msg::Line(line, metrics.clone()))
            .await
            .is_err()
        {
            metrics.lost.inc();
            tracing::error!(
                sink = record.sink,
                alert = record.alert.id(),
                "dead-letter writer stopped; alert lost"
            );
        }
    }

    /// Returns once everything kept so far is written to the file.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }
}

fn to_line(record: &DeadLetterRecord<'_>) -> String {
    let mut line = serde_json::to_string(record).expect("a dead-letter record always serialises");
    // The alert is JSON already: splice it in as the last field rather than
    // decode and re-encode it.
    line.pop();
    line.push_str(",\"alert\":");
    line.push_str(record.alert.json());
    line.push_str("}\n");
    line
}

async fn write_lines(file: tokio::fs::File, mut rx: mpsc::Receiver<Msg>, path: String) {
    let mut out = BufWriter::new(file);
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Line(line, metrics) => match out.write_all(line.as_bytes()).await {
                Ok(()) => metrics.dead_lettered.inc(),
                Err(e) => {
                    metrics.lost.inc();
                    tracing::error!(%path, error = %e, "cannot write the dead-letter file; alert lost");
                }
            },
            Msg::Flush(ack) => {
                flush(&mut out, &path).await;
                let _ = ack.send(());
            }
        }
        // A burst is written as one; the file is current whenever the queue is empty.
        if rx.is_empty() {
            flush(&mut out, &path).await;
        }
    }
    flush(&mut out, &path).await;
}

async fn flush(out: &mut BufWriter<tokio::fs::File>, path: &str) {
    if let Err(e) = out.flush().await {
        tracing::error!(%path, error = %e, "cannot flush the dead-letter file");
    }
}
