//! Response actions: what keywatch does to a key once it is known to be
//! compromised. A responder's `confirmed` verdict (or, where a rule names
//! it, a detector's finding such as `expired_key`) triggers the
//! `[[response]]` rules covering the key: deactivate it at AWS
//! (`UpdateAccessKey`, `Status=Inactive`) or call a signed webhook.
//!
//! Safe by default, and loud:
//!
//! - a rule is a dry run until `dry_run = false`: it records what it would
//!   have done and does nothing;
//! - keys on a rule's `never` list are never touched;
//! - at most `max_per_hour` actions per rule in any hour; more are refused,
//!   not queued;
//! - an action is retried (three attempts, seconds apart) only while the
//!   failure may pass (unreachable, throttled, 5xx), with the same
//!   idempotent request; a key a rule has acted on is not acted on again;
//!   a failure is logged as an error, and later findings do not retry it
//!   (only a responder's `confirmed` verdict does);
//! - every decision and its result goes to the finding's audit trail
//!   (shown in the console) and to `keywatch_response_actions_total{action,result}`.
//!
//! One task takes the triggers in order, so the limits hold without locks
//! and a storm of findings waits in a bounded queue instead of fanning out.

mod aws;
pub mod config;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::alert::config::{standard_webhook, SigningKey};
use crate::store::{Actor, FindingsStore};
use config::{ActionConfig, ResponseRule};
use keywatch_core::engine::Finding;
use keywatch_core::inventory::InventoryHandle;
use keywatch_core::metrics::Metrics;

pub use config::validate;

/// Triggers waiting for the worker; beyond this, new ones are refused and
/// logged (a flood of findings must not become a flood of actions).
const QUEUE: usize = 1024;

/// Attempts per action, and the pause before each retry.
const ATTEMPTS: u32 = 3;
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Who response actions are recorded as, in the audit trail.
pub const AUDIT_WHO: &str = "keywatch response";

/// Why rules are asked to act.
#[derive(Debug, Clone)]
enum Trigger {
    /// A responder gave the `confirmed` verdict on a stored finding.
    Confirmed { finding_id: String, by: String },
    /// A finding of a detector some rule names.
    Detected(Box<Finding>),
}

/// Why the rules were asked: what the audit trail records as `trigger`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// A responder's `confirmed` verdict: every rule covering the key acts,
    /// and a failed key is tried again.
    Confirmed,
    /// A finding of a detector some rule names: only those rules act.
    Detector(keywatch_core::engine::Detector),
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::Confirmed => f.write_str("confirmed"),
            Why::Detector(d) => write!(f, "detector {}", d.as_str()),
        }
    }
}

/// One action on one key, as decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Set the AWS access key `Inactive`.
    AwsDeactivateKey {
        /// The access key.
        key_id: String,
        /// Its IAM user, when known (the inventory's principal, else the
        /// finding's).
        user: Option<String>,
    },
    /// POST the key to a webhook.
    Webhook {
        /// The key.
        key_id: String,
        /// Where.
        url: String,
    },
}

impl Action {
    /// Name in the metric and the audit trail.
    pub fn name(&self) -> &'static str {
        match self {
            Action::AwsDeactivateKey { .. } => "aws_deactivate_key",
            Action::Webhook { .. } => "webhook",
        }
    }

    /// What it does, in words.
    pub fn describe(&self) -> String {
        match self {
            Action::AwsDeactivateKey { key_id, user } => format!(
                "set AWS access key {key_id}{} Inactive (iam:UpdateAccessKey)",
                user.as_deref()
                    .map(|u| format!(" of IAM user {u}"))
                    .unwrap_or_default()
            ),
            Action::Webhook { key_id, url } => {
                format!("POST key {key_id} to {}", crate::secret::mask_url(url))
            }
        }
    }
}

/// What became of one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done: the provider accepted it.
    Ok,
    /// Failed after its attempts (see the audit entry's `error`).
    Failed,
    /// Not done: the rule is a dry run.
    DryRun,
    /// Not done: the rule's hourly limit is reached.
    RateLimited,
    /// Not done: the key is on the rule's `never` list.
    NeverTouch,
    /// Not done again: the rule has already acted on this key.
    AlreadyDone,
    /// Not tried again: the rule failed on this key before; only a
    /// responder's `confirmed` verdict tries again.
    Held,
}

impl Outcome {
    /// Label value of the metric.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::DryRun => "dry_run",
            Outcome::RateLimited => "rate_limited",
            Outcome::NeverTouch => "never_touch",
            Outcome::AlreadyDone => "already_done",
            Outcome::Held => "held",
        }
    }
}

/// Why one attempt failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ActionError {
    /// It may pass: unreachable, throttled, a server error.
    #[error("{0}")]
    Retryable(String),
    /// It will not pass by asking again.
    #[error("{0}")]
    Fatal(String),
}

/// A cheap-to-clone handle to the response worker.
#[derive(Clone)]
pub struct Responder {
    tx: mpsc::Sender<Trigger>,
    /// Detectors some rule acts on without confirmation.
    detectors: Arc<HashSet<keywatch_core::engine::Detector>>,
}

impl Responder {
    /// Starts the worker when there are rules; it runs until `stop`.
    pub fn start(
        rules: Vec<ResponseRule>,
        store: Option<FindingsStore>,
        inventory: Option<InventoryHandle>,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> anyhow::Result<Option<Responder>> {
        if rules.is_empty() {
            return Ok(None);
        }
        let timeout = rules.iter().map(|r| r.timeout()).max().unwrap_or_default();
        let client = crate::alert::http_client(timeout)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let detectors = rules.iter().flat_map(|r| r.detectors.clone()).collect();
        for r in &rules {
            let action = r.action().map(|a| a.name()).unwrap_or_default();
            if r.dry_run {
                tracing::info!(rule = %r.name, action, "response rule in dry run: it records what it would do and does nothing");
            } else {
                tracing::warn!(rule = %r.name, action, max_per_hour = r.max_per_hour, "response rule armed: it acts on keys");
            }
        }
        let worker = Worker {
            rules,
            store,
            inventory,
            metrics,
            client,
            done: HashSet::new(),
            failed: HashSet::new(),
            recent: HashMap::new(),
        };
        tokio::spawn(worker.run(rx, stop));
        Ok(Some(Responder {
            tx,
            detectors: Arc::new(detectors),
        }))
    }

    /// A responder confirmed the stored finding `finding_id` a compromise.
    pub fn confirmed(&self, finding_id: &str, by: &str) {
        self.send(Trigger::Confirmed {
            finding_id: finding_id.to_owned(),
            by: by.to_owned(),
        });
    }

    /// A finding was raised: rules naming its detector act on it.
    pub fn detected(&self, f: &Finding) {
        if f.folded.is_none() && self.detectors.contains(&f.detector) {
            self.send(Trigger::Detected(Box::new(f.clone())));
        }
    }

    fn send(&self, t: Trigger) {
        if let Err(e) = self.tx.try_send(t) {
            tracing::error!(error = %e, "response queue full or stopped: a trigger was refused (no action taken)");
        }
    }
}

/// What the worker remembers: who it acted on, and when, per rule.
struct Worker {
    rules: Vec<ResponseRule>,
    store: Option<FindingsStore>,
    inventory: Option<InventoryHandle>,
    metrics: Arc<Metrics>,
    client: reqwest::Client,
    /// (rule, key) acted on successfully.
    done: HashSet<(String, String)>,
    /// (rule, key) whose action failed: findings do not retry it (a storm
    /// against a failing provider), a responder's verdict does.
    failed: HashSet<(String, String)>,
    /// Per rule, the times of its actions in the last hour.
    recent: HashMap<String, VecDeque<Instant>>,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<Trigger>, stop: CancellationToken) {
        loop {
            let trigger = tokio::select! {
                () = stop.cancelled() => return,
                t = rx.recv() => match t { Some(t) => t, None => return },
            };
            self.handle(trigger).await;
        }
    }

    async fn handle(&mut self, trigger: Trigger) {
        let (finding, by, why) = match trigger {
            Trigger::Confirmed { finding_id, by } => {
                let Some(store) = self.store.clone() else {
                    return;
                };
                let id = finding_id.clone();
                let got = tokio::task::spawn_blocking(move || store.get(&id)).await;
                match got {
                    Ok(Ok((stored, _))) => (stored.finding, by, Why::Confirmed),
                    other => {
                        tracing::error!(finding = %finding_id, result = ?other.map(|r| r.err()), "response: cannot read the confirmed finding; no action taken");
                        return;
                    }
                }
            }
            Trigger::Detected(f) => {
                let why = Why::Detector(f.detector);
                (*f, "keywatch".to_owned(), why)
            }
        };
        for i in 0..self.rules.len() {
            let rule = &self.rules[i];
            let applies = match why {
                Why::Confirmed => true,
                Why::Detector(d) => rule.detectors.contains(&d),
            };
            if !applies || !rule.in_scope(&finding.key_id) {
                continue;
            }
            let action = self.action_for(i, &finding);
            let (outcome, error, attempts) = self.decide_and_act(i, &action, why).await;
            self.record(i, &finding, &action, outcome, error, attempts, &by, why)
                .await;
        }
    }

    fn action_for(&self, i: usize, f: &Finding) -> Action {
        let key_id = f.key_id.clone();
        match self.rules[i].action() {
            Some(ActionConfig::Webhook(hook)) => Action::Webhook {
                key_id,
                url: hook.url.clone(),
            },
            _ => {
                let listed = self
                    .inventory
                    .as_ref()
                    .and_then(|inv| inv.current().get(&key_id)?.principal.clone())
                    .map(|p| p.to_string());
                let user = listed.or_else(|| f.principal.as_deref().and_then(iam_user));
                Action::AwsDeactivateKey { key_id, user }
            }
        }
    }

    /// Applies the rule's safeguards, then acts (or not).
    async fn decide_and_act(
        &mut self,
        i: usize,
        action: &Action,
        why: Why,
    ) -> (Outcome, Option<String>, u32) {
        let rule = &self.rules[i];
        let key = match action {
            Action::AwsDeactivateKey { key_id, .. } | Action::Webhook { key_id, .. } => key_id,
        };
        if rule.never_touches(key) {
            return (Outcome::NeverTouch, None, 0);
        }
        let done_key = (rule.name.clone(), key.clone());
        if self.done.contains(&done_key) {
            return (Outcome::AlreadyDone, None, 0);
        }
        if self.failed.contains(&done_key) && why != Why::Confirmed {
            return (Outcome::Held, None, 0);
        }
        let window = self.recent.entry(rule.name.clone()).or_default();
        let now = Instant::now();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(3600))
        {
            window.pop_front();
        }
        if window.len() >= rule.max_per_hour as usize {
            return (Outcome::RateLimited, None, 0);
        }
        window.push_back(now);
        if rule.dry_run {
            self.done.insert(done_key);
            return (Outcome::DryRun, None, 0);
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = tokio::time::timeout(rule.timeout(), self.attempt(i, action))
                .await
                .unwrap_or_else(|_| {
                    Err(ActionError::Retryable(format!(
                        "no answer within {}",
                        humantime::format_duration(rule.timeout())
                    )))
                });
            match result {
                Ok(()) => {
                    self.failed.remove(&done_key);
                    self.done.insert(done_key);
                    return (Outcome::Ok, None, attempts);
                }
                Err(ActionError::Retryable(e)) if attempts < ATTEMPTS => {
                    tracing::warn!(rule = %rule.name, action = action.name(), attempt = attempts, error = %e, "response action failed; retrying");
                    tokio::time::sleep(RETRY_PAUSE * attempts).await;
                }
                Err(e) => {
                    self.failed.insert(done_key);
                    return (Outcome::Failed, Some(e.to_string()), attempts);
                }
            }
        }
    }

    async fn attempt(&self, i: usize, action: &Action) -> Result<(), ActionError> {
        match (self.rules[i].action(), action) {
            (
                Some(ActionConfig::AwsDeactivateKey(cfg)),
                Action::AwsDeactivateKey { key_id, user },
            ) => aws::deactivate(&self.client, cfg, key_id, user.as_deref()).await,
            (Some(ActionConfig::Webhook(hook)), Action::Webhook { key_id, .. }) => {
                self.webhook(i, hook, key_id).await
            }
            _ => Err(ActionError::Fatal("the rule has no such action".to_owned())),
        }
    }

    async fn webhook(
        &self,
        i: usize,
        hook: &crate::alert::config::WebhookConfig,
        key_id: &str,
    ) -> Result<(), ActionError> {
        let rule = &self.rules[i];
        let id = format!("response-{}-{key_id}", rule.name);
        let body = json!({
            "type": "keywatch.response",
            "rule": rule.name,
            "action": "revoke_key",
            "key_id": key_id,
        })
        .to_string();
        let mut request = self.client.post(&hook.url);
        for (name, value) in &hook.headers {
            request = request.header(name.as_str(), value.expose());
        }
        let key = match &hook.secret {
            Some(secret) => Some(
                SigningKey::parse(secret.expose())
                    .map_err(|e| ActionError::Fatal(format!("webhook secret: {e}")))?,
            ),
            None => None,
        };
        let request = standard_webhook(request, &id, key.as_ref(), body.into_bytes());
        match crate::alert::send(request).await {
            Ok(_) => Ok(()),
            Err(e) if e.retryable() => Err(ActionError::Retryable(e.to_string())),
            Err(e) => Err(ActionError::Fatal(e.to_string())),
        }
    }

    /// Audit trail, metric and log for one decision.
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        i: usize,
        f: &Finding,
        action: &Action,
        outcome: Outcome,
        error: Option<String>,
        attempts: u32,
        by: &str,
        why: Why,
    ) {
        let rule = &self.rules[i];
        self.metrics
            .response_actions
            .with_label_values(&[action.name(), outcome.as_str()])
            .inc();
        let what = action.describe();
        match outcome {
            Outcome::Ok => {
                tracing::warn!(rule = %rule.name, key_id = %f.key_id, requested_by = by, "response action done: {what}")
            }
            Outcome::DryRun => {
                tracing::info!(rule = %rule.name, key_id = %f.key_id, "response dry run: would {what}")
            }
            Outcome::Failed => {
                tracing::error!(rule = %rule.name, key_id = %f.key_id, error = error.as_deref().unwrap_or_default(), attempts, "RESPONSE ACTION FAILED: could not {what}; findings will not retry it: act by hand, or confirm again to retry")
            }
            Outcome::RateLimited => {
                tracing::error!(rule = %rule.name, key_id = %f.key_id, max_per_hour = rule.max_per_hour, "response refused by the hourly limit: did not {what}; act by hand")
            }
            Outcome::NeverTouch => {
                tracing::warn!(rule = %rule.name, key_id = %f.key_id, "response skipped: the key is on the rule's never list")
            }
            Outcome::AlreadyDone => {
                tracing::info!(rule = %rule.name, key_id = %f.key_id, "response skipped: already done for this key")
            }
            Outcome::Held => {
                tracing::warn!(rule = %rule.name, key_id = %f.key_id, "response held: it failed on this key before; a confirmed verdict tries again")
            }
        }
        let Some(store) = self.store.clone() else {
            return;
        };
        let mut detail = json!({
            "rule": rule.name,
            "result": outcome,
            "dry_run": rule.dry_run,
            "trigger": why.to_string(),
            "requested_by": by,
        });
        if let (Some(obj), Ok(serde_json::Value::Object(a))) =
            (detail.as_object_mut(), serde_json::to_value(action))
        {
            obj.extend(a);
            let said = match outcome {
                Outcome::DryRun => format!("would {what}"),
                Outcome::Ok => format!("did {what}"),
                _ => format!("did not {what}"),
            };
            obj.insert("what".into(), json!(said));
            if let Some(e) = &error {
                obj.insert("error".into(), json!(e));
            }
            if attempts > 0 {
                obj.insert("attempts".into(), json!(attempts));
            }
        }
        let id = f.id.clone();
        let actor = Actor {
            who: AUDIT_WHO.to_owned(),
            // Not a person signed in: the daemon acting on a rule.
            method: "system".to_owned(),
            remote: String::new(),
            user_agent: String::new(),
        };
        let written =
            tokio::task::spawn_blocking(move || store.note(&id, &actor, "response", detail)).await;
        if !matches!(written, Ok(Ok(()))) {
            tracing::error!(finding = %f.id, "response: the audit entry could not be written");
        }
    }
}

/// The IAM user name of a principal as events carry it
/// (`arn:aws:iam::123456789012:user/path/alice` → `alice`); a bare name
/// is taken as it is; a role or federated principal has no user.
fn iam_user(principal: &str) -> Option<String> {
    match principal.split_once(":user/") {
        Some((_, path)) => path.rsplit('/').next().map(str::to_owned),
        None if !principal.contains(':') && !principal.contains('/') => Some(principal.to_owned()),
        None => None,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn iam_users_from_principals() {
        assert_eq!(
            iam_user("arn:aws:iam::123456789012:user/ci/deployer").as_deref(),
            Some("deployer")
        );
        assert_eq!(iam_user("alice").as_deref(), Some("alice"));
        assert_eq!(iam_user("arn:aws:sts::1:assumed-role/r/s"), None);
    }
}
