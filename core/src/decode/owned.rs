//! An [`AuditEvent`] that owns its text, for holding events past the buffer
//! they were decoded from (replay's reorder window).

use std::borrow::Cow;
use std::net::IpAddr;

use super::event::{AuditEvent, Outcome, Source};

/// The text fields, in the order they sit in [`OwnedEvent::text`].
const KEY: usize = 0;
const PRINCIPAL: usize = 1;
const SOURCE: usize = 2;
const USER_AGENT: usize = 3;
const ACTION: usize = 4;
const NAMESPACE: usize = 5;
const REGION: usize = 6;
const CODE: usize = 7;
const FIELDS: usize = 8;

/// An event whose strings live in one allocation; [`OwnedEvent::event`]
/// lends it out as an [`AuditEvent`] again.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedEvent {
    time_ms: i64,
    count: u32,
    failure: bool,
    /// Bit `i` set: text field `i` is present.
    present: u8,
    ip: Option<IpAddr>,
    /// End of each text field in `text` (a field starts where the previous ends).
    ends: [u32; FIELDS],
    text: Box<str>,
}

impl OwnedEvent {
    /// Event time, milliseconds since the Unix epoch.
    pub fn time_ms(&self) -> i64 {
        self.time_ms
    }

    /// Text field `i`, when present.
    fn text_field(&self, i: usize) -> Option<&str> {
        if self.present & (1 << i) == 0 {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        Some(&self.text[start..self.ends[i] as usize])
    }

    /// The credential's identifier.
    pub fn key_id(&self) -> &str {
        self.text_field(KEY).unwrap_or_default()
    }

    /// The principal, when the event names one.
    pub fn principal(&self) -> Option<&str> {
        self.text_field(PRINCIPAL)
    }

    /// The event, borrowing from this one.
    pub fn event(&self) -> AuditEvent<'_> {
        let field = |i: usize| self.text_field(i).map(Cow::Borrowed);
        AuditEvent {
            time_ms: self.time_ms,
            key_id: field(KEY).unwrap_or_default(),
            principal: field(PRINCIPAL),
            source: match self.ip {
                Some(ip) => Some(Source::Ip(ip)),
                None => field(SOURCE).map(Source::Named),
            },
            user_agent: field(USER_AGENT),
            action: field(ACTION),
            action_namespace: field(NAMESPACE),
            outcome: if self.failure {
                Outcome::Failure { code: field(CODE) }
            } else {
                Outcome::Success
            },
            region: field(REGION),
            count: self.count,
        }
    }
}

impl From<&AuditEvent<'_>> for OwnedEvent {
    fn from(e: &AuditEvent<'_>) -> Self {
        let (ip, named) = match &e.source {
            Some(Source::Ip(ip)) => (Some(*ip), None),
            Some(Source::Named(n)) => (None, Some(&**n)),
            None => (None, None),
        };
        let (failure, code) = match &e.outcome {
            Outcome::Success => (false, None),
            Outcome::Failure { code } => (true, code.as_deref()),
        };
        let fields: [Option<&str>; FIELDS] = [
            Some(&e.key_id),
            e.principal.as_deref(),
            named,
            e.user_agent.as_deref(),
            e.action.as_deref(),
            e.action_namespace.as_deref(),
            e.region.as_deref(),
            code,
        ];
        let len = fields.iter().flatten().map(|s| s.len()).sum();
        let mut text = String::with_capacity(len);
        let mut ends = [0u32; FIELDS];
        let mut present = 0u8;
        for (i, f) in fields.iter().enumerate() {
            if let Some(s) = f {
                text.push_str(s);
                present |= 1 << i;
            }
            // Decoded messages are far below 4 GiB (the replay caps a line
            // and a file's size), so an offset fits in u32.
            ends[i] = text.len() as u32;
        }
        OwnedEvent {
            time_ms: e.time_ms,
            count: e.count,
            failure,
            present,
            ip,
            ends,
            text: text.into_boxed_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_field() {
        let full = AuditEvent {
            time_ms: 1_767_607_200_000,
            key_id: Cow::Borrowed("AKIA1"),
            principal: Some(Cow::Borrowed("arn:aws:iam::1:user/a")),
            source: Some(Source::Named(Cow::Borrowed("AWS Internal"))),
            user_agent: Some(Cow::Owned("aws-cli/2".into())),
            action: Some(Cow::Borrowed("GetObject")),
            action_namespace: Some(Cow::Borrowed("s3.amazonaws.com")),
            outcome: Outcome::Failure {
                code: Some(Cow::Borrowed("AccessDenied")),
            },
            region: Some(Cow::Borrowed("eu-west-1")),
            count: 7,
        };
        assert_eq!(OwnedEvent::from(&full).event(), full);
        let sparse = AuditEvent {
            time_ms: 5,
            key_id: Cow::Borrowed("k"),
            principal: None,
            source: Some(Source::Ip("2001:db8::1".parse().unwrap())),
            user_agent: None,
            action: Some(Cow::Borrowed("")),
            action_namespace: None,
            outcome: Outcome::Failure { code: None },
            region: None,
            count: 1,
        };
        assert_eq!(OwnedEvent::from(&sparse).event(), sparse);
    }
}
