//! Redaction: what leaves the process. Configured sample fields are dropped
//! or masked, and anything that looks like a secret is masked wherever it
//! appears in an alert's strings, whatever field it hides in.
//!
//! The patterns err on the side of masking: a responder can look a value up
//! in the audit log; a token pasted into a chat channel cannot be unsent.

use std::borrow::Cow;

use regex::{Captures, Regex, RegexSet};

use super::config::RedactConfig;

/// What a masked value becomes.
pub const MASK: &str = "[redacted]";

/// How a pattern's match is rewritten.
#[derive(Debug, Clone, Copy)]
enum Rewrite {
    /// The whole match becomes `[redacted:<kind>]`.
    Whole(&'static str),
    /// Capture 1 is kept (a scheme, a field name), the rest masked.
    KeepPrefix,
    /// The user, scheme and host of a URL are kept, its password masked.
    UrlPassword,
    /// Forty base64 characters between non-base64 ones (`=` may precede
    /// them, as in `key=...`): masked only when
    /// they mix upper case, lower case and digits, as AWS secret keys do
    /// (hex digests and words do not).
    AwsSecretKey,
}

/// Built-in patterns, most specific first so a private key is masked whole
/// before its lines could match a looser pattern.
const BUILT_IN: [(&str, Rewrite); 7] = [
    (
        r"(?s)-----BEGIN[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----.*?(?:-----END[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|$)",
        Rewrite::Whole("private_key"),
    ),
    (
        r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
        Rewrite::Whole("jwt"),
    ),
    (
        r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]+):[^\s/@]+@",
        Rewrite::UrlPassword,
    ),
    (
        r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}",
        Rewrite::KeepPrefix,
    ),
    (
        // GitHub, GitLab, Slack, Stripe, Google API, Vault service tokens,
        // and AWS session tokens.
        r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}|glpat-[A-Za-z0-9_-]{20,}|xox[abposr]-[A-Za-z0-9-]{10,}|[sr]k_live_[A-Za-z0-9]{16,}|AIza[A-Za-z0-9_-]{35}|hvs\.[A-Za-z0-9_-]{20,}|(?:FwoGZXIvYXdz|IQoJb3JpZ2lu|FQoGZXIvYXdz)[A-Za-z0-9/+=]{20,})",
        Rewrite::Whole("token"),
    ),
    (
        r#"(?i)\b((?:x-amz-signature|x-amz-security-token|x-amz-credential|(?:aws_)?secret_access_key|password|passwd|pwd|client_secret|secret|api_?key|access_?token|refresh_?token|auth_?token|token|signature|sig)["']?\s*[:=]\s*)(?:"[^"]*"|'[^']*'|[^\s&"',;}]+)"#,
        Rewrite::KeepPrefix,
    ),
    (
        r"(^|[^A-Za-z0-9/+])([A-Za-z0-9/+]{40})($|[^A-Za-z0-9/+=])",
        Rewrite::AwsSecretKey,
    ),
];

/// Masks secrets in strings and applies the configured field rules to
/// sample events. Built once; cheap to share.
#[derive(Debug, Clone)]
pub struct Redactor {
    /// Every rule's pattern at once: most strings match none, and one pass
    /// tells.
    any: RegexSet,
    rules: Vec<(Regex, Option<Rewrite>)>,
    drop: Vec<String>,
    mask: Vec<String>,
}

impl Redactor {
    /// From `[alerts.redact]`; fails only on an invalid extra pattern.
    pub fn new(cfg: &RedactConfig) -> Result<Redactor, regex::Error> {
        let mut rules = BUILT_IN
            .iter()
            .map(|(pattern, rewrite)| Ok((Regex::new(pattern)?, Some(*rewrite))))
            .collect::<Result<Vec<_>, regex::Error>>()?;
        for pattern in &cfg.patterns {
            rules.push((Regex::new(pattern)?, None));
        }
        Ok(Redactor {
            any: RegexSet::new(rules.iter().map(|(re, _)| re.as_str()))?,
            rules,
            drop: cfg.drop.clone(),
            mask: cfg.mask.clone(),
        })
    }

    /// `s` with every secret-looking value masked; borrowed when clean.
    pub fn scrub<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(s);
        for rule in self.any.matches(s).iter() {
            let (re, rewrite) = &self.rules[rule];
            let replaced = match rewrite {
                None => re.replace_all(&out, MASK),
                Some(rewrite) => re.replace_all(&out, |c: &Captures<'_>| apply(*rewrite, c)),
            };
            if let Cow::Owned(s) = replaced {
                out = Cow::Owned(s);
            }
        }
        out
    }

    /// Scrubs every string inside a JSON value, in place.
    pub fn scrub_json(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) => {
                if let Cow::Owned(clean) = self.scrub(s) {
                    *s = clean;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_json(v)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| self.scrub_json(v)),
            _ => {}
        }
    }

    /// A sample event as it may leave: configured fields dropped or masked,
    /// then every string scrubbed.
    pub fn sample(
        &self,
        sample: &keywatch_core::decode::EventSample,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut map = match serde_json::to_value(sample) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        for field in &self.drop {
            map.remove(field);
        }
        for field in &self.mask {
            if let Some(v) = map.get_mut(field) {
                *v = serde_json::Value::String(MASK.to_owned());
            }
        }
        map.values_mut().for_each(|v| self.scrub_json(v));
        map
    }
}

fn apply(rewrite: Rewrite, c: &Captures<'_>) -> String {
    match rewrite {
        Rewrite::Whole(kind) => format!("[redacted:{kind}]"),
        Rewrite::KeepPrefix => {
            let prefix = &c[1];
            // `Bearer abc` keeps its space; `password=abc` its `=`.
            if prefix.ends_with(|ch: char| ch.is_ascii_alphabetic()) {
                format!("{prefix} {MASK}")
            } else {
                format!("{prefix}{MASK}")
            }
        }
        Rewrite::UrlPassword => format!("{}:{MASK}@", &c[1]),
        Rewrite::AwsSecretKey => {
            let key = &c[2];
            let mixed = key.bytes().any(|b| b.is_ascii_uppercase())
                && key.bytes().any(|b| b.is_ascii_lowercase())
                && key.bytes().any(|b| b.is_ascii_digit());
            if mixed {
                format!("{}[redacted:aws_secret_key]{}", &c[1], &c[3])
            } else {
                c[0].to_owned()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor() -> Redactor {
        Redactor::new(&RedactConfig::default()).unwrap()
    }

    #[test]
    fn masks_secrets_wherever_they_sit() {
        let r = redactor();
        let cases = [
            (
                "aws_secret_access_key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY in a log",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "[redacted:aws_secret_key]",
            ),
            (
                "Authorization: Bearer abcdef0123456789.xyz",
                "abcdef0123456789",
                "Bearer [redacted]",
            ),
            (
                "fetch https://deploy:hunter2hunter2@git.example.com/repo.git",
                "hunter2hunter2",
                "https://deploy:[redacted]@git.example.com",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY----- tail",
                "MIIEowIBAAKCAQEA",
                "[redacted:private_key] tail",
            ),
            (
                "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
                "dozjgNryP4J3jVmNHl0w5N",
                "[redacted:jwt]",
            ),
            (
                "GET /x?X-Amz-Signature=abc123def&user=me",
                "abc123def",
                "X-Amz-Signature=[redacted]&user=me",
            ),
            (
                "{\"password\": \"correct horse\"}",
                "horse",
                "\"password\": [redacted]}",
            ),
            (
                "ghp_0123456789abcdefghijABCDEFGHIJ012345",
                "ghp_0123456789",
                "[redacted:token]",
            ),
        ];
        for (input, secret, expected) in cases {
            let out = r.scrub(input);
            assert!(!out.contains(secret), "{input:?} -> {out:?}");
            assert!(out.contains(expected), "{input:?} -> {out:?}");
        }
    }

    #[test]
    fn leaves_identifiers_alone() {
        let r = redactor();
        for clean in [
            "AKIAIOSFODNN7EXAMPLE",
            "arn:aws:iam::123456789012:user/svc-billing",
            "da39a3ee5e6b4b0d3255bfef95601890afd80709",
            "hmac-sha256:0a1b2c3d4e5f60718293a4b5c6d7e8f9",
            "iam:CreateAccessKey",
            "secretsmanager:GetSecretValue",
            "aws-cli/2.15.0 Python/3.11.6 Linux/6.5.0 exe/x86_64",
            "key AKIAIOSFODNN7EXAMPLE was used from 185.220.101.7 (185.220.101.0/24)",
        ] {
            assert_eq!(r.scrub(clean), clean);
        }
    }

    #[test]
    fn fields_dropped_masked_and_custom_patterns() {
        let r = Redactor::new(&RedactConfig {
            drop: vec!["user_agent".into()],
            mask: vec!["source".into()],
            patterns: vec![r"internal-\d+".into()],
        })
        .unwrap();
        let sample = keywatch_core::decode::EventSample {
            time: "2026-02-09T03:12:44.000Z".into(),
            key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            principal: Some("svc internal-42".into()),
            source: Some("203.0.113.9".into()),
            user_agent: Some("curl/8".into()),
            action: None,
            outcome: "success".into(),
            error_code: None,
            region: None,
            count: 1,
        };
        let out = r.sample(&sample);
        assert!(!out.contains_key("user_agent"));
        assert_eq!(out["source"], MASK);
        assert_eq!(out["principal"], "svc [redacted]");
        assert_eq!(out["key_id"], "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(out["count"], 1);
    }
}
