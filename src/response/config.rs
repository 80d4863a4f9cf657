//! `[[response]]`: rules that act on a key when a responder confirms it
//! compromised (or, where a rule names a detector, on that detector's
//! findings): deactivate it at AWS, or call a signed webhook.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wildmatch::WildMatch;

use crate::alert::config::WebhookConfig;
use crate::secret::Secret;
use keywatch_core::engine::Detector;
use keywatch_core::types::{invalid, ConfigError, HumanDuration};

/// One `[[response]]` rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseRule {
    /// Name in the audit trail, logs and messages.
    pub name: String,
    /// Deactivate the key at AWS (`[response.aws_deactivate_key]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_deactivate_key: Option<AwsConfig>,
    /// Call a signed webhook naming the key (`[response.webhook]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookConfig>,
    /// Say what would be done, do nothing (the default: a rule acts only
    /// once someone has seen its dry runs and switched it on).
    #[serde(default = "default_dry_run")]
    pub dry_run: bool,
    /// Keys the rule may act on (globs, case-insensitive); default all.
    #[serde(default = "default_keys")]
    pub keys: Vec<String>,
    /// Keys never to touch, whatever happens (globs): break-glass and
    /// production keys whose loss would hurt more than their misuse.
    #[serde(default)]
    pub never: Vec<String>,
    /// Detectors whose findings trigger the rule without a responder's
    /// confirmation (`expired_key`, `one_time_reuse`); empty: only a
    /// `confirmed` verdict does.
    #[serde(default)]
    pub detectors: Vec<Detector>,
    /// At most this many actions (dry runs included) per rolling hour;
    /// more are refused and counted, not queued.
    #[serde(default = "default_max_per_hour")]
    pub max_per_hour: u32,
    /// Time for one attempt.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

/// On: a new rule only says what it would do until switched.
fn default_dry_run() -> bool {
    true
}

/// Every key: a rule is narrowed by `never` and by being a dry run, and a
/// confirmed compromise is worth acting on whatever the key.
fn default_keys() -> Vec<String> {
    vec!["*".to_owned()]
}

/// Ten an hour: more than a real incident needs, few enough that a wrong
/// rule cannot switch off a fleet's keys before anyone notices.
fn default_max_per_hour() -> u32 {
    10
}

/// Ten seconds, as the alert sinks' default.
fn default_timeout() -> HumanDuration {
    HumanDuration::secs(10)
}

/// What a rule does: exactly one of its action tables.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ActionConfig<'a> {
    /// AWS IAM `UpdateAccessKey` with `Status=Inactive`, SigV4-signed.
    AwsDeactivateKey(&'a AwsConfig),
    /// A signed POST (Standard Webhooks) naming the key, for other systems.
    Webhook(&'a WebhookConfig),
}

/// `action = "aws_deactivate_key"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// The IAM endpoint (an emulator's address in tests).
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// The signing region (IAM is global and signs in `us-east-1`).
    #[serde(default = "default_region")]
    pub region: String,
    /// The access key keywatch acts with (needs `iam:UpdateAccessKey`).
    pub access_key_id: Secret,
    /// Its secret.
    pub secret_access_key: Secret,
    /// A session token, for temporary credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<Secret>,
}

/// IAM's one global endpoint.
fn default_endpoint() -> String {
    "https://iam.amazonaws.com/".to_owned()
}

/// Where IAM requests are signed.
fn default_region() -> String {
    "us-east-1".to_owned()
}

impl ActionConfig<'_> {
    /// Name in the metric, the audit trail and logs.
    pub fn name(&self) -> &'static str {
        match self {
            ActionConfig::AwsDeactivateKey(_) => "aws_deactivate_key",
            ActionConfig::Webhook(_) => "webhook",
        }
    }
}

impl ResponseRule {
    /// The rule's action (validated: there is exactly one).
    pub fn action(&self) -> Option<ActionConfig<'_>> {
        match (&self.aws_deactivate_key, &self.webhook) {
            (Some(aws), None) => Some(ActionConfig::AwsDeactivateKey(aws)),
            (None, Some(hook)) => Some(ActionConfig::Webhook(hook)),
            _ => None,
        }
    }

    /// The timeout as a duration.
    pub fn timeout(&self) -> Duration {
        self.timeout.0
    }

    /// Whether `key` is one of the rule's `keys` (the never-touch list
    /// is checked apart, so that a refusal is recorded).
    pub fn in_scope(&self, key: &str) -> bool {
        self.keys
            .iter()
            .any(|g| WildMatch::new_case_insensitive(g).matches(key))
    }

    /// Whether `key` is on the never-touch list.
    pub fn never_touches(&self, key: &str) -> bool {
        self.never
            .iter()
            .any(|g| WildMatch::new_case_insensitive(g).matches(key))
    }

    /// Checks the rule, `at` = `response[i]`.
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if self.name.trim().is_empty() {
            return Err(invalid(&format!("{at}.name"), "\"\"", "is required"));
        }
        if self.max_per_hour == 0 {
            return Err(invalid(
                &format!("{at}.max_per_hour"),
                0,
                "must be at least 1 (to stop a rule, remove it or set dry_run = true)",
            ));
        }
        if self.timeout.0 < Duration::from_millis(100) {
            return Err(invalid(
                &format!("{at}.timeout"),
                self.timeout,
                "must be at least 100ms",
            ));
        }
        if self.keys.is_empty() {
            return Err(invalid(
                &format!("{at}.keys"),
                "[]",
                "matches no key; leave it out to cover every key",
            ));
        }
        let Some(action) = self.action() else {
            return Err(invalid(
                at,
                format!("{:?}", self.name),
                "needs exactly one action: a [response.aws_deactivate_key] or a [response.webhook] table",
            ));
        };
        match action {
            ActionConfig::AwsDeactivateKey(aws) => {
                let url = reqwest::Url::parse(&aws.endpoint)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
                if url.is_none() {
                    return Err(invalid(
                        &format!("{at}.aws_deactivate_key.endpoint"),
                        format!("{:?}", aws.endpoint),
                        "must be an http(s) URL, e.g. \"https://iam.amazonaws.com/\"",
                    ));
                }
                if aws.region.trim().is_empty() {
                    return Err(invalid(
                        &format!("{at}.aws_deactivate_key.region"),
                        "\"\"",
                        "is required",
                    ));
                }
                if aws.access_key_id.expose().is_empty() {
                    return Err(invalid(
                        &format!("{at}.aws_deactivate_key.access_key_id"),
                        &aws.access_key_id,
                        "is empty",
                    ));
                }
            }
            ActionConfig::Webhook(hook) => hook.validate(&format!("{at}.webhook"))?,
        }
        Ok(())
    }
}

/// Checks every rule; names must be unique (the audit trail tells rules
/// apart by name).
pub fn validate(rules: &[ResponseRule]) -> Result<(), ConfigError> {
    for (i, rule) in rules.iter().enumerate() {
        let at = format!("response[{i}]");
        rule.validate(&at)?;
        if rules[..i].iter().any(|r| r.name == rule.name) {
            return Err(invalid(
                &format!("{at}.name"),
                format!("{:?}", rule.name),
                "is used by an earlier rule; names must be unique",
            ));
        }
    }
    Ok(())
}
