//! `new_user_agent`: a settled key used with a user-agent family it has not
//! used within `forget_after`. Families, not full strings: `aws-cli/2.15.0`
//! and `aws-cli/2.15.1` are the same tool, `python-requests/2.31` is not.

use serde_json::json;
use xxhash_rust::xxh3::xxh3_64;

use super::{Ctx, Report};
use crate::engine::finding::{Detector, Severity};
use crate::engine::state::{value_hash, KeyState, ValueKind};

/// The product token of a user agent: `Boto3/1.34 md/…` → `Boto3`,
/// `[aws-cli/2.15.0 …]` → `aws-cli`, `Mozilla/5.0 (…)` → `Mozilla`.
pub fn family(ua: &str) -> &str {
    let ua = ua.trim_start_matches(['[', ' ', '"']);
    let end = ua.find(['/', ' ', '(', ';', ']']).unwrap_or(ua.len());
    &ua[..end]
}

/// Checks the event's user-agent family; records it.
pub fn check(state: &mut KeyState, ctx: &mut Ctx<'_, '_>) {
    let Some(ua) = ctx.ev.user_agent.as_deref() else {
        return;
    };
    let fam = family(ua);
    if fam.is_empty() || fam == "AWS" {
        return;
    }
    let hash = value_hash(ValueKind::UserAgent, 0, xxh3_64(fam.as_bytes()));
    let s = ctx.settings;
    let cfg = &s.detectors.new_user_agent;
    if cfg.enabled && ctx.eligible && !state.values.knows(hash, ctx.now, s.forget_s) {
        let known = state
            .values
            .fresh_len(ValueKind::UserAgent, ctx.now, s.forget_s);
        if known > 0 && known < cfg.broad_after as usize {
            let summary = format!(
                "{} was used with user agent {fam:?}, a client it has not used before ({known} known famil{}).",
                ctx.who(),
                if known == 1 { "y" } else { "ies" },
            );
            let report = Report {
                severity: Severity::Low,
                summary,
                observed: json!({ "family": fam, "user_agent": crate::decode::event::EventSample::from(ctx.ev).user_agent }),
                baseline: json!({ "known_families": known }),
                threshold: json!({ "broad_after": cfg.broad_after }),
            };
            ctx.emit(state, Detector::NewUserAgent, hash as u64, report);
        }
    }
    if state.values.record(hash, ctx.now, s.max_values) {
        ctx.stats
            .values_evicted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::family;

    #[test]
    fn families() {
        assert_eq!(family("aws-cli/2.15.0 Python/3.11.6 Linux/6.1"), "aws-cli");
        assert_eq!(family("[aws-cli/2.15.0 md/Botocore#1.34]"), "aws-cli");
        assert_eq!(family("Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0"), "Boto3");
        assert_eq!(family("Mozilla/5.0 (X11; Linux x86_64)"), "Mozilla");
        assert_eq!(family("console.amazonaws.com"), "console.amazonaws.com");
        assert_eq!(family("python-requests/2.31.0"), "python-requests");
        assert_eq!(family("Terraform (+https://www.terraform.io)"), "Terraform");
    }
}
