//! A typical S3 event for benchmarks that build key state directly.

use std::borrow::Cow;

use keywatch::decode::{AuditEvent, Outcome, Source};

/// An event of `key` at `ms` from host 10.0.0.`host`.
pub fn event(key: &str, ms: i64, host: u32) -> AuditEvent<'_> {
    AuditEvent {
        time_ms: ms,
        key_id: Cow::Borrowed(key),
        principal: None,
        source: Some(Source::Ip(
            std::net::Ipv4Addr::from(0x0A00_0000 | host).into(),
        )),
        user_agent: Some(Cow::Borrowed("aws-cli/2.15.0 Python/3.11.6")),
        action: Some(Cow::Borrowed(
            ["GetObject", "PutObject", "ListBucket"][host as usize % 3],
        )),
        action_namespace: Some(Cow::Borrowed("s3.amazonaws.com")),
        outcome: Outcome::Success,
        region: None,
        count: 1,
    }
}
