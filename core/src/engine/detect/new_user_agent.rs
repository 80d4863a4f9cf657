//! `new_user_agent`: a settled key used with a user-agent family it has not
//! used within `forget_after`. Families, not full strings: `aws-cli/2.15.0`
//! and `aws-cli/2.15.1` are the same tool, `python-requests/2.31` is not;
//! `stratus-red-team_<uuid>` is one tool whatever its run id. Families live in
//! their own table (`max_user_agents_per_key`), apart from actions.

use serde::{Deserialize, Serialize};
use serde_json::json;
use xxhash_rust::xxh3::xxh3_64;

use super::share::{habitual, round3, share_text};
use super::{hold, Ctx, Report};
use crate::decode::AuditEvent;
use crate::engine::finding::{Detector, Severity};
use crate::engine::state::{value_hash, HeldOn, KeyState, Novel, ValueKind};
use crate::types::ConfigError;

/// `[detectors.new_user_agent]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserAgentConfig {
    /// Switch the detector on or off.
    pub enabled: bool,
    /// A key that has used this many user-agent families is shared by design
    /// and does not alert on one more.
    pub broad_after: u16,
}

/// Most automation uses one or two SDK families; a dozen means a shared key.
impl Default for UserAgentConfig {
    fn default() -> Self {
        UserAgentConfig {
            enabled: true,
            broad_after: 12,
        }
    }
}

impl UserAgentConfig {
    /// Nothing to check across fields: every value is allowed.
    pub fn validate(&self, _section: &str) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// Leading tokens that name no client: SDK metadata and vendor prefixes
/// (`APN/1.0 HashiCorp/1.0 Terraform/1.6.6` is Terraform).
const NOT_A_CLIENT: [&str; 8] = [
    "APN",
    "HashiCorp",
    "exec-env",
    "md",
    "ua",
    "os",
    "lang",
    "cfg",
];

/// The client family of a user agent: its first product token that names a
/// client, without version and without trailing ids (UUIDs, hex and numeric
/// ids, `v2`, `build`): `Boto3/1.34 md/…` → `Boto3`, `[aws-cli/2.15.0 …]` →
/// `aws-cli`, `stratus-red-team_<uuid>` → `stratus-red-team`,
/// `HashiCorp/1.0 Terraform/1.6.6` → `Terraform`. Borrowed from `ua`: no
/// allocation on the per-event path.
pub fn family(ua: &str) -> &str {
    // Every delimiter is ASCII, so scanning bytes finds char boundaries
    // (this runs for every event; a `char` pattern decodes UTF-8 as it goes).
    let b = ua.as_bytes();
    let mut i = 0;
    let mut fallback = None;
    loop {
        while b
            .get(i)
            .is_some_and(|c| matches!(c, b'[' | b' ' | b'"' | b','))
        {
            i += 1;
        }
        if b.get(i) == Some(&b'(') {
            // A comment between products: `(go1.20; linux; amd64)`.
            i = memchr::memchr(b')', &b[i + 1..]).map_or(b.len(), |j| i + j + 2);
            continue;
        }
        let end = position(&b[i..], |c| matches!(c, b'/' | b' ' | b'(' | b';' | b']'))
            .map_or(b.len(), |j| i + j);
        let product = strip_ids(&ua[i..end]);
        if product.is_empty() || !NOT_A_CLIENT.iter().any(|g| g.eq_ignore_ascii_case(product)) {
            return if product.is_empty() {
                fallback.unwrap_or(product)
            } else {
                product
            };
        }
        fallback.get_or_insert(product);
        // Skip the rest of the token (its version) and go on.
        i = position(&b[end..], |c| matches!(c, b' ' | b'(')).map_or(b.len(), |j| end + j);
    }
}

fn position(b: &[u8], is: impl Fn(u8) -> bool) -> Option<usize> {
    b.iter().position(|&c| is(c))
}

/// Whether `c` ends a name before an id segment.
fn id_separator(c: u8) -> bool {
    matches!(c, b'_' | b'-' | b'.' | b'#' | b'+' | b':')
}

/// `name` without trailing id segments (after `_ - . # + :`).
fn strip_ids(name: &str) -> &str {
    let mut t = name;
    // A UUID's groups may be letters only (`ffda`): take it whole first.
    if let Some(head) = t
        .len()
        .checked_sub(36)
        .filter(|&i| is_uuid(&t.as_bytes()[i..]))
    {
        t = &t[..head];
        if t.as_bytes().last().is_some_and(|&c| id_separator(c)) {
            t = &t[..t.len() - 1];
        }
    }
    while let Some(i) = t.as_bytes().iter().rposition(|&c| id_separator(c)) {
        let seg = &t[i + 1..];
        if !(seg.is_empty() || is_id(seg)) {
            break;
        }
        t = &t[..i];
    }
    if t.is_empty() || is_id(t) && t.len() != name.len() {
        // Nothing but ids: keep what was given rather than nothing.
        name
    } else {
        t
    }
}

/// `8-4-4-4-12` hex digits.
fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// A segment that changes from run to run or release to release: numbers,
/// `v2`, `build`, hex of 8 or more digits, or of 4 or more with a decimal.
fn is_id(seg: &str) -> bool {
    let b = seg.as_bytes();
    let digits = b.iter().all(u8::is_ascii_digit);
    let version = b.len() > 1 && (b[0] | 0x20) == b'v' && b[1..].iter().all(u8::is_ascii_digit);
    let hex = b.iter().all(u8::is_ascii_hexdigit);
    let has_digit = b.iter().any(u8::is_ascii_digit);
    digits
        || version
        || seg.eq_ignore_ascii_case("build")
        || (hex && (b.len() >= 8 || (b.len() >= 4 && has_digit)))
}

/// The event's user-agent family and its value hash, worked out once per
/// event for every identity it names; `None` without a user agent, or for
/// one that names no client (`AWS`: calls AWS makes on the key's behalf).
pub fn of_event<'e>(ev: &'e AuditEvent<'_>) -> Option<(&'e str, u32)> {
    let fam = family(ev.user_agent.as_deref()?);
    if fam.is_empty() || fam == "AWS" {
        return None;
    }
    Some((
        fam,
        value_hash(ValueKind::UserAgent, 0, xxh3_64(fam.as_bytes())),
    ))
}

/// Checks the event's user-agent family; records it.
pub fn check(state: &mut KeyState, ctx: &mut Ctx<'_, '_>) {
    let Some((fam, hash)) = ctx.user_agent else {
        return;
    };
    let s = ctx.settings;
    let found = state.values.find(hash);
    if !found.fresh(ctx.now, s.forget_s) {
        judge(state, ctx, fam, hash);
        if state.active_days > 0 {
            state.novelty.saw(Novel::UserAgent);
        }
    }
    if state
        .values
        .record_found(found, hash, ctx.now, s.max_user_agents)
    {
        ctx.stats
            .user_agents_evicted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A client family the key has not used: raised, held, or (on a key that
/// meets new clients as a habit, or knows none or many) nothing.
fn judge(state: &mut KeyState, ctx: &mut Ctx<'_, '_>, fam: &str, hash: u32) {
    let s = ctx.settings;
    let cfg = &s.detectors.new_user_agent;
    let known = state
        .values
        .fresh_len(ValueKind::UserAgent, ctx.now, s.forget_s);
    // A key whose days bring new clients as often as new networks would
    // be expected (browsers updating, a shared key) says nothing by
    // another.
    let rate = state.novelty.rate(Novel::UserAgent);
    let expected = habitual(rate, s.detectors.new_source.expected_novelty);
    // Read by the actions' holds after this learns the client.
    ctx.firsts.client = known > 0 && !expected;
    if cfg.enabled
        && ctx.eligible
        && known > 0
        && known < cfg.broad_after as usize
        && !expected
        && !ctx.quiet(state, Detector::NewUserAgent, hash as u64)
    {
        // A new client alone is a finding only on a key that has shown new
        // clients are rare for it; on any other it waits for the client to
        // do something the key does not.
        let upper = state.novelty.upper(Novel::UserAgent);
        let alone_below = s.detectors.new_source.alone_below;
        let alone = f64::from(upper) < alone_below;
        let share = share_text(rate, state.novelty.days());
        let summary = format!(
            "{} was used with user agent {fam:?}, a client it has not used before ({known} known famil{}; it met a new one {share}).",
            ctx.who(),
            if known == 1 { "y" } else { "ies" },
        );
        let mut report = Report {
            severity: Severity::Low,
            summary,
            observed: json!({ "family": fam, "user_agent": crate::decode::event::EventSample::from(ctx.ev).user_agent }),
            baseline: json!({
                "known_families": known,
                "new_family_days_share": round3(rate),
                "new_family_days_share_upper": round3(upper),
            }),
            threshold: json!({
                "broad_after": cfg.broad_after,
                "expected_novelty": s.detectors.new_source.expected_novelty,
                "alone_below": alone_below,
            }),
        };
        match hold::corroboration(state, ctx, hold::CLIENT) {
            Some(c) => {
                hold::corroborated(&mut report, &c, 0, "With it");
                ctx.emit(state, Detector::NewUserAgent, hash as u64, report);
            }
            None if alone => ctx.emit(state, Detector::NewUserAgent, hash as u64, report),
            None => {
                let gathered = u16::from(hold::new_action_called(state, ctx).is_some());
                hold::hold(state, ctx, HeldOn::Client(hash), gathered, report)
            }
        }
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

    #[test]
    fn run_ids_do_not_make_new_families() {
        let a = "stratus-red-team_3f2504e0-4f89-11d3-9a0c-0305e82c3301";
        let b = "stratus-red-team_9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d";
        assert_eq!(family(a), "stratus-red-team");
        assert_eq!(family(a), family(b));
        // Groups of hex letters only are still part of the UUID.
        assert_eq!(
            family("stratus-red-team_7bd90d81-ffda-4abc-9def-0123456789ab"),
            "stratus-red-team"
        );
        assert_eq!(
            family("aws-sdk-go/1.44.0 (go1.20; linux; amd64) exec-env/AWS_ECS_EC2"),
            "aws-sdk-go"
        );
        assert_eq!(
            family("exec-env/AWS_Lambda_python3.12 Boto3/1.34.0 md/Botocore#1.34.0"),
            "Boto3"
        );
        assert_eq!(
            family("exec-env/4f3c9a1b"),
            "exec-env",
            "nothing else to go by"
        );
        assert_eq!(family("Boto3/1.34.0 md/Botocore#1.34.0"), "Boto3");
        assert_eq!(family("Boto3/1.35.2 md/Botocore#1.35.2"), "Boto3");
    }

    #[test]
    fn hex_and_numeric_ids_are_stripped() {
        assert_eq!(family("deploy-bot-7f3a9c21/1.0"), "deploy-bot");
        assert_eq!(family("deploy-bot-0a1b2c3d4e5f/1.0"), "deploy-bot");
        assert_eq!(family("ci-runner_20240117.3/2"), "ci-runner");
        assert_eq!(family("mytool-v2 (linux)"), "mytool");
        assert_eq!(family("packer-build-1234/1.9"), "packer");
        // Words made of hex letters, and short tokens, are names.
        assert_eq!(family("aws-ec2/1"), "aws-ec2");
        assert_eq!(family("cafe-face/1.0"), "cafe-face");
        assert_eq!(family("s3-sync/1.0"), "s3-sync");
    }

    #[test]
    fn terraform_is_one_family() {
        assert_eq!(
            family("terraform-provider-aws/5.31.0 (+https://registry.terraform.io)"),
            "terraform-provider-aws"
        );
        assert_eq!(family("HashiCorp/1.0 Terraform/1.6.6"), "Terraform");
        assert_eq!(
            family("APN/1.0 HashiCorp/1.0 Terraform/1.6.6 (+https://www.terraform.io) terraform-provider-aws/5.31.0"),
            "Terraform"
        );
        assert_eq!(family("Terraform (+https://www.terraform.io)"), "Terraform");
    }

    #[test]
    fn empty_and_odd_input() {
        assert_eq!(family(""), "");
        assert_eq!(family("   "), "");
        assert_eq!(family("(comment only)"), "");
        assert_eq!(family("12345"), "12345");
    }
}
