//! `cloud_credential_outside_cloud`: a credential seen only from cloud
//! provider ranges (at least `min_cloud_events` uses, none outside them within
//! `engine.forget_after`) used from an address outside every cloud range, as
//! GuardDuty's `InstanceCredentialExfiltration.OutsideAWS`.
//!
//! It judges every identity, and through the principal a role's sessions
//! share one history (see `principal_identity`): a fresh STS session key
//! (`ASIA…`) of a role that always ran on EC2 is judged from its first use.
//! Severity: `high` for workload credentials (an `ASIA…` key or an
//! `assumed-role` principal: they are minted for machines), `medium` for a
//! long-lived key that only ever ran in a cloud (a CI key a person may try
//! from a laptop).
//!
//! The door it leaves: a thief who uses the credential from another cloud
//! instance (any provider's published range) is not judged here; `new_source`
//! still judges the new network, and more severely when it is another
//! provider or region than the key's.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Ctx, Report};
use crate::engine::finding::{Detector, Severity};
use crate::engine::state::KeyState;
use crate::netintel::{NetInfo, Tables};
use crate::types::Entity;
use crate::types::{invalid, ConfigError};

/// `[detectors.cloud_credential_outside_cloud]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudOutsideConfig {
    /// Switch the detector on or off.
    pub enabled: bool,
    /// Uses from cloud ranges (and none from outside them within
    /// `engine.forget_after`) before a credential counts as a cloud one.
    pub min_cloud_events: u32,
}

/// 20: the learning minimum of `engine.learning_min_events`; a role's
/// sessions reach it within minutes, so a workload credential is judged
/// through its role from its first use.
fn default_min_cloud_events() -> u32 {
    20
}

impl Default for CloudOutsideConfig {
    fn default() -> Self {
        CloudOutsideConfig {
            enabled: true,
            min_cloud_events: default_min_cloud_events(),
        }
    }
}

impl CloudOutsideConfig {
    /// Checks the section's values; an error names the key and its value.
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        if self.min_cloud_events == 0 {
            return Err(invalid(
                &format!("{section}.min_cloud_events"),
                0,
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Whether the event's credential is minted for a workload.
fn workload(ctx: &Ctx<'_, '_>) -> bool {
    ctx.ev.key_id.starts_with("ASIA")
        || ctx
            .ev
            .principal
            .as_deref()
            .is_some_and(|p| p.contains(":assumed-role/"))
}

/// Checks an event from outside the cloud against the key's cloud-only history.
pub fn check(state: &mut KeyState, ctx: &mut Ctx<'_, '_>, tables: &Tables, info: &NetInfo) {
    let cfg = &ctx.settings.detectors.cloud_credential_outside_cloud;
    if !cfg.enabled || info.cloud != 0 {
        return;
    }
    let min = cfg.min_cloud_events;
    let forget_s = ctx.settings.forget_s;
    let Some(mem) = state.net.as_deref() else {
        return;
    };
    if !mem.cloud_only(min, ctx.now, forget_s) {
        return;
    }
    let clouds: Vec<&str> = mem
        .clouds
        .iter()
        .filter_map(|c| tables.cloud_label(c.label))
        .collect();
    let cloud_uses = mem.cloud_uses;
    if ctx.quiet(state, Detector::CloudCredentialOutsideCloud, 0) {
        return;
    }
    let is_workload = workload(ctx);
    let source = ctx.source_text();
    let through = match ctx.entity {
        Entity::Principal => " (judged through its principal's history)",
        Entity::KeyId => "",
    };
    let report = Report {
        severity: if is_workload {
            Severity::High
        } else {
            Severity::Medium
        },
        summary: format!(
            "{} was used from {source}, outside every cloud range; it had only been used from {} ({cloud_uses} uses){through}.",
            ctx.who(),
            clouds.join(", "),
        ),
        observed: json!({
            "source": source,
            "cloud": null,
            "workload_credential": is_workload,
        }),
        baseline: json!({
            "cloud_uses": cloud_uses,
            "clouds": clouds,
            "uses_outside_cloud": 0,
        }),
        threshold: json!({
            "min_cloud_events": min,
            "forget_after_s": forget_s,
        }),
    };
    ctx.emit(state, Detector::CloudCredentialOutsideCloud, 0, report);
}
