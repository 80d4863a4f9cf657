//! What the demo shows a person: the opening explanation, the findings in
//! event order, a status line on a terminal, and the closing summary.
//!
//! Findings are read back from the demo's all-alerts JSON Lines file, the
//! alert pipeline's own output, by one thread that orders them: the
//! warm-up's at the switch to live (one line each), live ones held for
//! [`HOLD`] so a slower one is printed before a later one (a block each),
//! and a line after the finding that opened or escalated an incident.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::core::Collector;

use super::traffic::{headline, now_ms, Plan, Progress, FIRST_ATTACK, HISTORY_DAYS};
use crate::alert::{pretty, Alert, IncidentAlert};
use crate::config::Entity;
use crate::source::kafka::SourceStatus;
use keywatch_core::engine::{Engine, Severity};
use keywatch_core::gen::Attack;
use keywatch_core::incident::Change;
use keywatch_core::metrics::Metrics;

/// How long a live finding waits for earlier ones still in the pipeline.
const HOLD: Duration = Duration::from_secs(2);
/// The least severity printed as it happens.
pub const PRINTED: Severity = Severity::Medium;

/// The opening screen, on stderr.
pub fn banner(plan: &Plan, listen: &str, duration: Option<Duration>, alerts: &std::path::Path) {
    let attacks = plan.scenario.attacks();
    let keys = plan.scenario.normal_keys().len() + attacks.len();
    let mut kinds = String::new();
    for attack in attacks {
        kinds.push_str(&format!("    - {}\n", headline(attack.kind)));
    }
    let end = match duration {
        Some(d) => format!(
            "It stops after {}, or at Ctrl-C.",
            humantime::format_duration(d)
        ),
        None => "It runs until Ctrl-C.".to_owned(),
    };
    eprintln!(
        "keywatch demo: a Kafka broker, a fleet of {keys} access keys and the keywatch daemon, \
         all in this process.\n\
         \n\
         1. Warm-up (half a minute or so): {HISTORY_DAYS} days of the fleet's past traffic, as fast as the \
         daemon takes it,\n   so every key has a baseline. Findings on that past print as one \
         line each when it is done.\n\
         2. Live: the same fleet's current traffic at about {} events/s (event time = now), and \
         {} attacks,\n   one every few seconds from {} s after the warm-up, each on a key of its \
         own:\n{kinds}\
         \x20  Findings of medium severity and above print below as they happen, in event order; \
         low and info\n   ones are counted in the summary. {end}\n\
         \n\
         While it runs: http://{listen}/metrics, http://{listen}/api/v1/findings,\n\
         http://{listen}/api/v1/keys/KEY_ID (why a key would alert), and every alert as JSON \
         Lines in\n{} (removed when the demo ends).\n",
        plan.rate,
        attacks.len(),
        FIRST_ATTACK.as_secs(),
        alerts.display(),
    );
}

/// Prints findings as they come, and the status line.
pub struct Console {
    /// The all-alerts JSON Lines file.
    pub alerts: PathBuf,
    /// The traffic thread's progress.
    pub progress: Arc<Progress>,
    /// The daemon's metrics.
    pub metrics: Arc<Metrics>,
    /// The daemon's engine (for the number of keys).
    pub engine: Engine,
    /// The source's progress.
    pub status: Arc<SourceStatus>,
}

impl Console {
    /// Runs until `stop`, then prints what is still held; returns every
    /// alert and incident event seen.
    pub fn run(self, stop: &AtomicBool) -> Seen {
        let tty = std::io::stderr().is_terminal();
        let mut tail = Tail::new(self.alerts.clone());
        let mut held: Held = BTreeMap::new();
        let mut seen = Seen::default();
        let mut warm_up_shown = false;
        let mut line = StatusLine::new(tty);
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            for record in tail.read_new() {
                match record {
                    Record::Finding(alert) => {
                        if alert.severity >= PRINTED {
                            held.insert(
                                (alert.observed_at.clone(), alert.id.clone()),
                                Printed::Finding(alert.clone()),
                            );
                        }
                        seen.alerts.push(alert);
                    }
                    Record::Incident(incident) => {
                        // Printed as it opens and as it escalates, after
                        // the finding that did it (same time, later key).
                        if incident.severity >= PRINTED
                            && matches!(incident.event, Change::Opened | Change::Escalated)
                        {
                            held.insert(
                                (incident.last_seen.clone(), format!("~{}", incident.id)),
                                Printed::Incident(incident.clone()),
                            );
                        }
                        seen.incidents.push(incident);
                    }
                }
            }
            let live_since = self.progress.live_since_ms.load(Ordering::Relaxed);
            if !warm_up_shown && (live_since > 0 || stopping) {
                line.clear();
                print_warm_up(&mut held, live_since);
                warm_up_shown = true;
            }
            if warm_up_shown {
                let until = if stopping {
                    i64::MAX
                } else {
                    now_ms() - HOLD.as_millis() as i64
                };
                print_live(&mut held, until, &mut line);
            }
            if stopping {
                line.clear();
                return seen;
            }
            line.update(&self);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// What waits to be printed, by (event time, id).
type Held = BTreeMap<(String, String), Printed>;

/// A finding's block, or an incident's line as it opens or escalates.
enum Printed {
    Finding(Alert),
    Incident(IncidentAlert),
}

/// The warm-up's findings, one line each, in event order (its incidents
/// are left out: the lines say as much).
fn print_warm_up(held: &mut Held, live_since: i64) {
    let mut out = std::io::stdout().lock();
    let past: Vec<_> = held
        .keys()
        .filter(|(at, _)| live_since == 0 || at_ms(at) < live_since)
        .cloned()
        .collect();
    held.retain(|k, p| !(past.contains(k) && matches!(p, Printed::Incident(_))));
    let past: Vec<_> = past.into_iter().filter(|k| held.contains_key(k)).collect();
    let _ = writeln!(
        out,
        "Found in the {HISTORY_DAYS} days of past traffic (medium and above, in event order): {}",
        past.len()
    );
    for k in past {
        if let Some(Printed::Finding(a)) = held.remove(&k) {
            let _ = writeln!(
                out,
                "  {}  {:<8} {:<22} {}",
                a.observed_at,
                a.severity.as_str().to_uppercase(),
                a.detector.as_str(),
                a.summary
            );
        }
    }
    let _ = writeln!(out);
    let _ = out.flush();
}

/// Live findings up to event time `until`, a block each, in event order.
fn print_live(held: &mut Held, until: i64, line: &mut StatusLine) {
    let due: Vec<_> = held
        .keys()
        .take_while(|(at, _)| at_ms(at) <= until)
        .cloned()
        .collect();
    if due.is_empty() {
        return;
    }
    line.clear();
    let mut out = std::io::stdout().lock();
    for k in due {
        match held.remove(&k) {
            Some(Printed::Finding(a)) => {
                let _ = out.write_all(pretty(&a).as_bytes());
            }
            Some(Printed::Incident(i)) => {
                let _ = writeln!(
                    out,
                    ">> incident {} {} ({} finding{}): {}\n   id {}\n",
                    i.event.as_str(),
                    i.severity.as_str().to_uppercase(),
                    i.findings,
                    if i.findings == 1 { "" } else { "s" },
                    i.summary,
                    i.incident_id
                );
            }
            None => {}
        }
    }
    let _ = out.flush();
}

/// Whether an incident is on an attack's key (or principal) and not over
/// before the attack began.
fn belongs(incident: &IncidentAlert, attack: &Attack) -> bool {
    (incident.key_ids.contains(&attack.key_id)
        || (attack.principal.is_some() && incident.principal == attack.principal))
        && at_ms(&incident.last_seen) >= attack.start_ms
}

/// "1 incident (critical, 9 findings, initial access → discovery)" for the
/// incidents on an attack's key since it began, as they last stood.
fn incidents_of(attack: &Attack, incidents: &[IncidentAlert]) -> Option<String> {
    let mut latest: BTreeMap<&str, &IncidentAlert> = BTreeMap::new();
    for i in incidents.iter().filter(|i| belongs(i, attack)) {
        latest.insert(&i.incident_id, i);
    }
    if latest.is_empty() {
        return None;
    }
    let each: Vec<String> = latest
        .values()
        .map(|i| {
            let chain: Vec<_> = i.tactics.iter().map(|t| t.text()).collect();
            format!(
                "{}, {} finding{}, {}",
                i.severity.as_str(),
                i.findings,
                if i.findings == 1 { "" } else { "s" },
                if chain.is_empty() {
                    "no tactic".to_owned()
                } else {
                    chain.join(" → ")
                }
            )
        })
        .collect();
    Some(format!(
        "as {} incident{}: {}",
        latest.len(),
        if latest.len() == 1 { "" } else { "s" },
        each.join("; ")
    ))
}

fn at_ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339).map_or(0, |t| t.timestamp_millis())
}

/// What the demo's all-alerts file held.
#[derive(Default)]
pub struct Seen {
    /// Every finding's alert.
    pub alerts: Vec<Alert>,
    /// Every incident event.
    pub incidents: Vec<IncidentAlert>,
}

/// One line of the all-alerts file.
enum Record {
    Finding(Alert),
    Incident(IncidentAlert),
}

/// Follows a JSON Lines file as it grows.
struct Tail {
    path: PathBuf,
    reader: Option<BufReader<std::fs::File>>,
    partial: String,
}

impl Tail {
    fn new(path: PathBuf) -> Tail {
        Tail {
            path,
            reader: None,
            partial: String::new(),
        }
    }

    /// The alerts and incident events on the lines completed since the last call.
    fn read_new(&mut self) -> Vec<Record> {
        if self.reader.is_none() {
            self.reader = std::fs::File::open(&self.path).ok().map(BufReader::new);
        }
        let Some(reader) = self.reader.as_mut() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        loop {
            match reader.read_line(&mut self.partial) {
                Ok(0) | Err(_) => break,
                Ok(_) if self.partial.ends_with('\n') => {
                    if self.partial.contains(r#""type":"incident""#) {
                        if let Ok(incident) = serde_json::from_str(&self.partial) {
                            out.push(Record::Incident(incident));
                        }
                    } else if let Ok(alert) = serde_json::from_str(&self.partial) {
                        out.push(Record::Finding(alert));
                    }
                    self.partial.clear();
                }
                Ok(_) => {}
            }
        }
        out
    }
}

/// One line on a terminal's stderr, redrawn in place every second.
struct StatusLine {
    tty: bool,
    drawn: bool,
    /// Messages applied, once a second over the last ten seconds: the rate
    /// is their mean (a live fleet of one event every few seconds reads as
    /// 0.3/s, not as 0 and 1 in turn).
    window: VecDeque<(Instant, u64)>,
}

impl StatusLine {
    fn new(tty: bool) -> StatusLine {
        StatusLine {
            tty,
            drawn: false,
            window: VecDeque::new(),
        }
    }

    fn update(&mut self, c: &Console) {
        if !self.tty {
            return;
        }
        let now = Instant::now();
        if self
            .window
            .back()
            .is_some_and(|(at, _)| now.duration_since(*at) < Duration::from_secs(1))
        {
            return;
        }
        self.window
            .push_back((now, c.status.messages.load(Ordering::Relaxed)));
        if self.window.len() > 10 {
            self.window.pop_front();
        }
        let (Some((first_at, first)), Some((last_at, last))) =
            (self.window.front(), self.window.back())
        else {
            return;
        };
        let elapsed = last_at.duration_since(*first_at).as_secs_f64();
        if elapsed <= 0.0 {
            return;
        }
        let per_s = last.saturating_sub(*first) as f64 / elapsed;
        let per_s = if per_s < 10.0 {
            format!("{per_s:.1}")
        } else {
            format!("{per_s:.0}")
        };
        let (phase, unit) = if c.progress.live_since_ms.load(Ordering::Relaxed) > 0 {
            ("live".to_owned(), "events/s")
        } else {
            let at = c.progress.history_at_ms.load(Ordering::Relaxed);
            let days_back = (now_ms() - at) as f64 / 86_400_000.0;
            (format!("warm-up, {days_back:.0} days back"), "records/s")
        };
        let by_severity = severity_counts(&c.metrics);
        let findings = [
            Severity::Critical,
            Severity::High,
            Severity::Medium,
            Severity::Low,
            Severity::Info,
        ]
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                by_severity.get(s).copied().unwrap_or(0),
                s.as_str()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
        eprint!(
            "\r\x1b[2K{phase} | {per_s} {unit} | {} keys | findings: {findings}",
            c.engine.key_count(Entity::KeyId)
        );
        let _ = std::io::stderr().flush();
        self.drawn = true;
    }

    fn clear(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
            self.drawn = false;
        }
    }
}

/// Findings raised, by (detector, severity).
fn finding_counts(metrics: &Metrics) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for family in metrics.findings.collect() {
        for m in family.get_metric() {
            let label = |name: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default()
            };
            let n = m.get_counter().get_value() as u64;
            if n > 0 {
                *out.entry((label("detector"), label("severity")))
                    .or_insert(0) += n;
            }
        }
    }
    out
}

fn severity_counts(metrics: &Metrics) -> BTreeMap<Severity, u64> {
    let mut out = BTreeMap::new();
    for ((_, severity), n) in finding_counts(metrics) {
        if let Ok(s) = serde_json::from_value::<Severity>(serde_json::Value::String(severity)) {
            *out.entry(s).or_insert(0) += n;
        }
    }
    out
}

/// The closing summary, on stderr: what was found, which attacks were
/// caught, where to look next.
pub fn summary(metrics: &Metrics, attacks: &[Attack], seen: &Seen, ran: Duration) {
    let alerts = &seen.alerts;
    let events: u64 = metrics
        .events
        .collect()
        .iter()
        .flat_map(|f| f.get_metric())
        .map(|m| m.get_counter().get_value() as u64)
        .sum();
    let mut text = format!(
        "\nkeywatch demo: ran {}; {events} events applied.\n\nFindings by detector and severity \
         (every severity; medium and above were printed):\n",
        humantime::format_duration(Duration::from_secs(ran.as_secs()))
    );
    let levels = ["critical", "high", "medium", "low", "info"];
    text.push_str(&format!("  {:<30}", "detector"));
    for l in levels {
        text.push_str(&format!("{l:>9}"));
    }
    text.push('\n');
    let counts = finding_counts(metrics);
    let mut detectors: Vec<&String> = counts.keys().map(|(d, _)| d).collect();
    detectors.dedup();
    if detectors.is_empty() {
        text.push_str("  (none)\n");
    }
    for d in detectors {
        text.push_str(&format!("  {d:<30}"));
        for l in levels {
            let n = counts.get(&(d.clone(), l.to_owned())).copied().unwrap_or(0);
            text.push_str(&format!("{n:>9}"));
        }
        text.push('\n');
    }
    if !attacks.is_empty() {
        text.push_str("\nInjected attacks:\n");
    }
    let now = now_ms();
    for attack in attacks {
        let found = alerts
            .iter()
            .filter(|a| {
                a.detector.as_str() == attack.detector
                    && (a.key_id == attack.key_id
                        || (attack.principal.is_some() && a.principal == attack.principal))
                    && at_ms(&a.observed_at) >= attack.start_ms
            })
            .min_by_key(|a| at_ms(&a.observed_at));
        let verdict = match found {
            Some(a) => format!(
                "caught  by {} ({}), {:.1} s after it began",
                a.detector.as_str(),
                a.severity.as_str(),
                (at_ms(&a.observed_at) - attack.start_ms) as f64 / 1000.0
            ),
            None if attack.start_ms > now => "not run: the demo ended before it".to_owned(),
            None => format!("not caught (yet) by {}", attack.detector),
        };
        text.push_str(&format!("  {:<66} {verdict}\n", headline(attack.kind)));
        if let Some(line) = incidents_of(attack, &seen.incidents) {
            text.push_str(&format!("  {:<66} {line}\n", ""));
        }
    }
    let live_since = attacks.iter().map(|a| a.start_ms).min().unwrap_or(i64::MAX);
    let mut other: Vec<&str> = seen
        .incidents
        .iter()
        .filter(|i| {
            at_ms(&i.first_seen) >= live_since
                && i.severity >= PRINTED
                && !attacks.iter().any(|a| belongs(i, a))
        })
        .map(|i| i.incident_id.as_str())
        .collect();
    other.sort_unstable();
    other.dedup();
    if !attacks.is_empty() {
        text.push_str(&format!(
            "  incidents of medium severity and above on keys under no attack since the first attack: {}\n",
            other.len()
        ));
    }
    text.push_str(
        "\nWhere to look next:\n\
         \x20 - the API and metrics lived with the demo: run it again and open /api/v1/findings,\n\
         \x20   /api/v1/keys/KEY_ID and /metrics while it runs (dashboards/ has a Grafana dashboard);\n\
         \x20 - backtest: keywatch gen --attacks -o events.jsonl; keywatch replay events.jsonl;\n\
         \x20 - your own Kafka: README \"Point it at your Kafka\" and config/keywatch.toml.\n",
    );
    eprint!("{text}");
}
