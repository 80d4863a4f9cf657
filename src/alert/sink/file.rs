//! `file` and `stdout`: one alert per line as JSON Lines, appended to a
//! file or written to standard output; on stdout `pretty = true` prints a
//! readable block per alert instead (for `keywatch demo`).

use std::io::Write;
use std::path::Path;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::{DeliveryError, Sink};
use crate::alert::format::AlertFormat;
use crate::alert::shape::{Alert, EncodedAlert, IncidentAlert};
use keywatch_core::types::{invalid, ConfigError};

/// `type = "file"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// JSON Lines file alerts are appended to.
    pub path: PathBuf,
}

/// `type = "stdout"`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {
    /// A readable multi-line block per alert instead of JSON Lines.
    #[serde(default)]
    pub pretty: bool,
}

impl FileSinkConfig {
    /// Checks this sink's own keys, under `at` (`alerts.sinks[i]`).
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(invalid(&format!("{at}.path"), "\"\"", "must name a file"));
        }
        Ok(())
    }
}

/// How an alert is written.
#[derive(Debug, Clone, Copy)]
enum Format {
    JsonLines(AlertFormat),
    Pretty,
}

/// Writes alerts to a file or standard output.
pub struct FileSink {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
    format: Format,
}

impl FileSink {
    /// Appends JSON Lines in `format` to `path` (created with its directory
    /// if missing).
    pub fn file(path: &Path, format: AlertFormat) -> anyhow::Result<FileSink> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("opening `{}`: {e}", path.display()))?;
        Ok(FileSink {
            out: Arc::new(Mutex::new(Box::new(file))),
            format: Format::JsonLines(format),
        })
    }

    /// Writes to standard output, JSON Lines in `format` or `pretty` blocks.
    pub fn stdout(pretty: bool, format: AlertFormat) -> FileSink {
        FileSink {
            out: Arc::new(Mutex::new(Box::new(std::io::stdout()))),
            format: if pretty {
                Format::Pretty
            } else {
                Format::JsonLines(format)
            },
        }
    }
}

impl Sink for FileSink {
    async fn deliver(&self, alert: &EncodedAlert) -> Result<(), DeliveryError> {
        let text = match self.format {
            Format::JsonLines(format) => format!("{}\n", format.render(alert)),
            Format::Pretty => match alert.decode_incident() {
                Some(incident) => pretty_incident(&incident),
                None => pretty(&alert.decode()),
            },
        };
        let out = self.out.clone();
        // A blocking write, off the runtime's threads; one writer at a time,
        // so concurrent deliveries never interleave lines.
        tokio::task::spawn_blocking(move || {
            let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
            out.write_all(text.as_bytes())?;
            out.flush()
        })
        .await
        .map_err(|e| DeliveryError::Write(e.to_string()))?
        .map_err(|e| DeliveryError::Write(e.to_string()))
    }
}

/// A block a person reads in a terminal.
pub fn pretty(alert: &Alert) -> String {
    let mut rows = alert_rows(alert);
    if let Some(incident) = &alert.incident_id {
        rows.push(("incident", incident.clone()));
    }
    block(
        &format!(
            "{} {}",
            alert.severity.as_str().to_uppercase(),
            alert.detector
        ),
        rows,
    )
}

/// An incident event as a readable block: what changed, the identity, the
/// tactic chain and the timeline, one line per finding.
pub fn pretty_incident(incident: &IncidentAlert) -> String {
    let mut rows = vec![(
        "identity",
        format!("{} {}", incident.entity.as_str(), incident.identity),
    )];
    if incident.key_ids.len() > 1 || incident.entity == keywatch_core::types::Entity::Principal {
        rows.push(("keys", incident.key_ids.join(", ")));
    }
    rows.extend([
        (
            "seen",
            format!("{} → {}", incident.first_seen, incident.last_seen),
        ),
        ("summary", incident.summary.clone()),
        ("score", format!("{:.2}", incident.score)),
    ]);
    if !incident.tactics.is_empty() {
        let chain: Vec<_> = incident.tactics.iter().map(|t| t.text()).collect();
        rows.push(("tactics", chain.join(" → ")));
    }
    for step in &incident.timeline {
        rows.push(("finding", step.line()));
    }
    rows.push(("id", incident.incident_id.clone()));
    block(
        &format!(
            "{} INCIDENT {}",
            incident.severity.as_str().to_uppercase(),
            incident.event.as_str()
        ),
        rows,
    )
}

fn block(title: &str, rows: Vec<(&str, String)>) -> String {
    let title = format!("── {title} ");
    let rule = "─".repeat(72usize.saturating_sub(title.chars().count()));
    let mut block = format!("{title}{rule}\n");
    for (label, value) in rows {
        block.push_str(&format!("  {label:<10} {value}\n"));
    }
    block.push('\n');
    block
}

fn alert_rows(alert: &Alert) -> Vec<(&'static str, String)> {
    let compact = |v: &serde_json::Value| serde_json::to_string(v).unwrap_or_default();
    let mut rows = vec![("key", alert.key_id.clone())];
    if let Some(p) = &alert.principal {
        rows.push(("principal", p.clone()));
    }
    match (&alert.owner, &alert.team) {
        (Some(o), Some(t)) => rows.push(("owner", format!("{o} (team {t})"))),
        (Some(o), None) => rows.push(("owner", o.clone())),
        (None, Some(t)) => rows.push(("team", t.clone())),
        (None, None) => {}
    }
    rows.extend([
        ("time", alert.observed_at.clone()),
        ("summary", alert.summary.clone()),
        ("observed", compact(&alert.evidence.observed)),
        ("baseline", compact(&alert.evidence.baseline)),
        ("threshold", compact(&alert.evidence.threshold)),
        (
            "sample",
            compact(&serde_json::Value::Object(alert.sample.clone())),
        ),
        ("id", alert.id.clone()),
    ]);
    rows
}
