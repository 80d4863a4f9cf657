//! Decoding: raw message bytes → [`AuditEvent`]s, through a mapping profile.
//!
//! A message holds one event, a JSON array of events, or an envelope: a
//! CloudTrail `{"Records": [...]}` or Azure `{"records": [...]}`. A message that is not JSON fails whole
//! ([`DecodeError`]); a record inside it that cannot become an event (no key,
//! bad time, wrong type) is skipped on its own with a [`SkipReason`]. Neither
//! is ever fatal to the caller: both are counted by reason.

pub mod event;
pub mod failure;
pub mod owned;
pub mod profile;
pub mod time;
mod walk;

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::de::DeserializeSeed;

pub use event::{AuditEvent, EventSample, Outcome, Source};
pub use failure::Failure;
pub use owned::OwnedEvent;
pub use profile::{Field, OneOf, ProfileSpec};
use walk::{MessageSeed, Record, Scalar, Trie};

/// Why a whole message could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
pub enum DecodeError {
    /// Larger than the configured message limit.
    #[error("message larger than the configured limit")]
    TooLarge,
    /// Not valid JSON.
    #[error("not valid JSON")]
    MalformedJson,
    /// JSON cut off before its end.
    #[error("JSON ends early (truncated)")]
    Truncated,
    /// Bytes that are not UTF-8 inside a string.
    #[error("invalid UTF-8 in a string")]
    InvalidUtf8,
    /// Nested deeper than the parser allows.
    #[error("JSON nested too deeply")]
    TooDeep,
}

impl DecodeError {
    /// Every kind, so metrics can export each reason before it happens.
    pub const ALL: [DecodeError; 5] = [
        DecodeError::TooLarge,
        DecodeError::MalformedJson,
        DecodeError::Truncated,
        DecodeError::InvalidUtf8,
        DecodeError::TooDeep,
    ];

    /// Label value for metrics and dead-letter headers.
    pub fn as_str(self) -> &'static str {
        match self {
            DecodeError::TooLarge => "too_large",
            DecodeError::MalformedJson => "malformed_json",
            DecodeError::Truncated => "truncated",
            DecodeError::InvalidUtf8 => "invalid_utf8",
            DecodeError::TooDeep => "too_deep",
        }
    }

    fn classify(e: &serde_json::Error) -> DecodeError {
        if e.is_eof() {
            return DecodeError::Truncated;
        }
        let msg = e.to_string();
        if msg.contains("recursion limit") {
            DecodeError::TooDeep
        } else if msg.contains("UTF-8") || msg.contains("unicode") {
            DecodeError::InvalidUtf8
        } else {
            DecodeError::MalformedJson
        }
    }
}

/// Why reading a stream of JSON values stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The reader failed (a corrupt or truncated gzip member, a size limit).
    #[error(transparent)]
    Io(std::io::Error),
    /// A value was not JSON; nothing after it can be read.
    #[error("{0}")]
    Decode(DecodeError),
}

/// Why one record inside a well-formed message was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// No credential identifier (e.g. an AWS service event).
    NoKey,
    /// Key identifier longer than the configured limit.
    KeyTooLong,
    /// Time missing, unparseable or outside 2000–2100.
    BadTime,
    /// A mapped field held the wrong JSON type.
    WrongType(Field),
    /// `count` not an integer in 0..=4294967295.
    BadCount,
    /// Excluded by the profile's `only_if` or `skip_if` (not an error: e.g.
    /// Vault request entries, Azure calls made by users).
    Filtered,
}

impl SkipReason {
    /// Every kind, so metrics can export each reason before it happens
    /// (`WrongType` stands for every field: the label is the same).
    pub const ALL: [SkipReason; 6] = [
        SkipReason::NoKey,
        SkipReason::KeyTooLong,
        SkipReason::BadTime,
        SkipReason::WrongType(Field::Time),
        SkipReason::BadCount,
        SkipReason::Filtered,
    ];

    /// Label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NoKey => "no_key",
            SkipReason::KeyTooLong => "key_too_long",
            SkipReason::BadTime => "bad_time",
            SkipReason::WrongType(_) => "wrong_type",
            SkipReason::BadCount => "bad_count",
            SkipReason::Filtered => "filtered",
        }
    }
}

/// A configured profile could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The name is neither built in nor configured.
    #[error("unknown profile `{name}` (known: {known})")]
    Unknown {
        /// Profile asked for.
        name: String,
        /// Names that exist.
        known: String,
    },
    /// `extends` chains loop.
    #[error("profile `{0}` extends itself through a cycle")]
    Cycle(String),
    /// A pointer is malformed.
    #[error("profile `{profile}`: {source}")]
    Pointer {
        /// Profile holding the pointer.
        profile: String,
        /// What was wrong.
        source: walk::BadPointer,
    },
}

/// Resolves a profile name against the built-ins and configured extensions.
pub fn resolve_profile(
    name: &str,
    custom: &BTreeMap<String, ProfileSpec>,
) -> Result<ProfileSpec, ProfileError> {
    let mut chain: Vec<&ProfileSpec> = Vec::new();
    let mut current = name.to_owned();
    loop {
        if let Some(spec) = custom.get(&current) {
            if chain.len() > custom.len() {
                return Err(ProfileError::Cycle(name.to_owned()));
            }
            chain.push(spec);
            match &spec.extends {
                Some(parent) => current = parent.clone(),
                None => break Ok(fold(ProfileSpec::default(), &chain)),
            }
        } else if let Some(base) = profile::builtin(&current) {
            break Ok(fold(base, &chain));
        } else {
            let mut known: Vec<&str> = profile::BUILTIN.to_vec();
            known.extend(custom.keys().map(String::as_str));
            return Err(ProfileError::Unknown {
                name: current,
                known: known.join(", "),
            });
        }
    }
}

fn fold(base: ProfileSpec, chain: &[&ProfileSpec]) -> ProfileSpec {
    chain.iter().rev().fold(base, |acc, spec| spec.over(&acc))
}

/// Turns message bytes into events with one compiled profile.
#[derive(Debug)]
pub struct Decoder {
    trie: Trie,
    /// The profile's `success_codes`, when it has them.
    success_codes: Option<Box<[Box<str>]>>,
    max_message_bytes: usize,
    max_key_bytes: usize,
}

/// Default cap on a message's size: 1 MiB (Kafka's default `message.max.bytes`).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Default cap on a key identifier: real ones are 16–128 bytes.
pub const DEFAULT_MAX_KEY_BYTES: usize = 512;

impl Decoder {
    /// Builds a decoder for a resolved profile.
    pub fn new(spec: &ProfileSpec) -> Result<Decoder, walk::BadPointer> {
        Ok(Decoder {
            trie: Trie::compile(spec)?,
            success_codes: spec
                .success_codes
                .as_ref()
                .map(|codes| codes.iter().map(|c| c.as_str().into()).collect()),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_key_bytes: DEFAULT_MAX_KEY_BYTES,
        })
    }

    /// Builds a decoder for a profile name (built-in or configured).
    pub fn for_profile(
        name: &str,
        custom: &BTreeMap<String, ProfileSpec>,
    ) -> Result<Decoder, ProfileError> {
        let spec = resolve_profile(name, custom)?;
        Decoder::new(&spec).map_err(|source| ProfileError::Pointer {
            profile: name.to_owned(),
            source,
        })
    }

    /// Sets the largest message accepted (`usize::MAX` for whole files).
    pub fn with_limits(mut self, max_message_bytes: usize, max_key_bytes: usize) -> Decoder {
        self.max_message_bytes = max_message_bytes;
        self.max_key_bytes = max_key_bytes;
        self
    }

    /// Decodes one message, handing every record to `out` as an event or a skip reason.
    pub fn decode<'de, F>(&self, input: &'de [u8], mut out: F) -> Result<(), DecodeError>
    where
        F: FnMut(Result<AuditEvent<'de>, SkipReason>),
    {
        if input.len() > self.max_message_bytes {
            return Err(DecodeError::TooLarge);
        }
        let mut de = serde_json::Deserializer::from_slice(input);
        self.walk(&mut de, &mut out)
            .and_then(|()| de.end())
            .map_err(|e| DecodeError::classify(&e))
    }

    /// Walks one JSON value of `de`, handing every record to `out` as an
    /// event or a skip reason.
    fn walk<'de, R, F>(
        &self,
        de: &mut serde_json::Deserializer<R>,
        out: &mut F,
    ) -> Result<(), serde_json::Error>
    where
        R: serde_json::de::Read<'de>,
        F: FnMut(Result<AuditEvent<'de>, SkipReason>),
    {
        let mut emit = |rec: Record<'de>| out(self.event(rec));
        MessageSeed {
            trie: &self.trie,
            emit: &mut emit,
        }
        .deserialize(de)
    }

    /// As [`Decoder::decode_reader`], for values already in memory: parsed
    /// in place (several times faster than through `io::Read`), with the
    /// same counting and the same stop at the first value that is not JSON.
    pub fn decode_values<'de, F>(
        &self,
        input: &'de [u8],
        values: &mut u64,
        mut out: F,
    ) -> Result<(), DecodeError>
    where
        F: FnMut(Result<AuditEvent<'de>, SkipReason>),
    {
        let mut rest = input;
        loop {
            let blank = rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
            rest = &rest[blank..];
            if rest.is_empty() {
                return Ok(());
            }
            *values += 1;
            let mut de = serde_json::Deserializer::from_slice(rest);
            self.walk(&mut de, &mut out)
                .map_err(|e| DecodeError::classify(&e))?;
            if de.end().is_ok() {
                return Ok(());
            }
            // Another value follows (rare in a file): skip past this one.
            let mut skip =
                serde_json::Deserializer::from_slice(rest).into_iter::<serde::de::IgnoredAny>();
            let _ = skip.next();
            rest = &rest[skip.byte_offset()..];
        }
    }

    /// Decodes the JSON values read from `reader` one after another (one
    /// document of any size, or several concatenated): each record goes to
    /// `out` as soon as it is complete, so memory does not grow with the
    /// document. Stops at the first value that is not JSON: a stream cannot
    /// be resynchronised inside a value. `values` counts the top-level values.
    pub fn decode_reader<R, F>(
        &self,
        reader: &mut R,
        values: &mut u64,
        mut out: F,
    ) -> Result<(), ReadError>
    where
        R: std::io::BufRead,
        F: FnMut(Result<AuditEvent<'static>, SkipReason>),
    {
        loop {
            loop {
                let buf = reader.fill_buf().map_err(ReadError::Io)?;
                if buf.is_empty() {
                    return Ok(());
                }
                let blank = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
                let more = blank == buf.len();
                reader.consume(blank);
                if !more {
                    break;
                }
            }
            *values += 1;
            // A fresh deserializer per value: one that ends in `}` or `]`
            // reads no byte past its end, so the next value starts intact.
            let mut de = serde_json::Deserializer::from_reader(&mut *reader);
            self.walk(&mut de, &mut out).map_err(|e| {
                if e.is_io() {
                    ReadError::Io(std::io::Error::other(e.to_string()))
                } else {
                    ReadError::Decode(DecodeError::classify(&e))
                }
            })?;
        }
    }

    fn event<'de>(&self, mut rec: Record<'de>) -> Result<AuditEvent<'de>, SkipReason> {
        if !rec.passes_filters(&self.trie) {
            return Err(SkipReason::Filtered);
        }
        if let Some(field) = rec.wrong_type {
            return Err(SkipReason::WrongType(field));
        }
        let key_id = match rec.take(Field::KeyId) {
            Some(v) => text(v).ok_or(SkipReason::WrongType(Field::KeyId))?,
            None => return Err(SkipReason::NoKey),
        };
        let key_id = trim_cow(key_id);
        if key_id.is_empty() {
            return Err(SkipReason::NoKey);
        }
        if key_id.len() > self.max_key_bytes {
            return Err(SkipReason::KeyTooLong);
        }
        let time_ms = match rec.take(Field::Time) {
            Some(Scalar::Str(s)) => time::parse_str(&s),
            Some(Scalar::U64(n)) => time::parse_epoch(n as f64),
            Some(Scalar::F64(n)) => time::parse_epoch(n),
            _ => None,
        }
        .ok_or(SkipReason::BadTime)?;
        let count = match rec.take(Field::Count) {
            None => 1,
            // Zero is a valid count (a usage record of an idle period); a
            // count past u32 is refused, never clamped: one such record must
            // not become the largest thing a key ever did.
            Some(Scalar::U64(n)) => u32::try_from(n).map_err(|_| SkipReason::BadCount)?,
            Some(Scalar::Str(s)) => s.trim().parse::<u32>().map_err(|_| SkipReason::BadCount)?,
            Some(_) => return Err(SkipReason::BadCount),
        };
        let mut string = |field: Field| -> Result<Option<Cow<'de, str>>, SkipReason> {
            match rec.take(field) {
                None => Ok(None),
                Some(v) => match text(v) {
                    Some(s) if s.is_empty() => Ok(None),
                    Some(s) => Ok(Some(s)),
                    None => Err(SkipReason::WrongType(field)),
                },
            }
        };
        let principal = string(Field::Principal)?;
        let source = string(Field::Source)?.and_then(Source::parse);
        let user_agent = string(Field::UserAgent)?;
        let action = string(Field::Action)?;
        let action_namespace = string(Field::ActionNamespace)?;
        let region = string(Field::Region)?;
        let outcome = outcome(
            rec.take(Field::Outcome),
            rec.take(Field::ErrorCode),
            self.success_codes.as_deref(),
        );
        Ok(AuditEvent {
            time_ms,
            key_id,
            principal,
            source,
            user_agent,
            action,
            action_namespace,
            outcome,
            region,
            count,
        })
    }
}

/// A scalar as text; numbers become owned strings, booleans are refused.
fn text(v: Scalar<'_>) -> Option<Cow<'_, str>> {
    match v {
        Scalar::Str(s) => Some(s),
        Scalar::U64(n) => Some(Cow::Owned(n.to_string())),
        Scalar::I64(n) => Some(Cow::Owned(n.to_string())),
        Scalar::F64(_) | Scalar::Bool(_) => None,
    }
}

fn trim_cow(s: Cow<'_, str>) -> Cow<'_, str> {
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
        Cow::Owned(o) if o.trim().len() == o.len() => Cow::Owned(o),
        Cow::Owned(o) => Cow::Owned(o.trim().to_owned()),
    }
}

/// Outcome words that mean a failed use, in any case.
const FAILED_OUTCOMES: [&str; 8] = [
    "failure",
    "failed",
    "fail",
    "error",
    "denied",
    "deny",
    "false",
    "unauthorized",
];

/// Failure when the outcome says so, or an error code is present: with
/// `success_codes`, any code not among them; without, a string code, or a
/// numeric one from 400 up, as HTTP statuses do.
fn outcome<'de>(
    outcome: Option<Scalar<'de>>,
    code: Option<Scalar<'de>>,
    success_codes: Option<&[Box<str>]>,
) -> Outcome<'de> {
    let code = match (code, success_codes) {
        (Some(Scalar::Str(s)), Some(ok)) => {
            let t = s.trim();
            (!t.is_empty() && !ok.iter().any(|c| **c == *t)).then_some(s)
        }
        (Some(Scalar::U64(n)), Some(ok)) => {
            let n = n.to_string();
            (!ok.iter().any(|c| **c == *n)).then_some(Cow::Owned(n))
        }
        (Some(Scalar::I64(n)), Some(ok)) => {
            let n = n.to_string();
            (!ok.iter().any(|c| **c == *n)).then_some(Cow::Owned(n))
        }
        (Some(Scalar::Str(s)), None) if !s.trim().is_empty() => Some(s),
        (Some(Scalar::U64(n)), None) if n >= 400 => Some(Cow::Owned(n.to_string())),
        (Some(Scalar::F64(n)), None) if n >= 400.0 => Some(Cow::Owned(format!("{n}"))),
        _ => None,
    };
    let failed_by_outcome = match &outcome {
        Some(Scalar::Bool(ok)) => !ok,
        Some(Scalar::Str(s)) => {
            let s = s.trim();
            FAILED_OUTCOMES.iter().any(|f| s.eq_ignore_ascii_case(f))
        }
        _ => false,
    };
    if failed_by_outcome || code.is_some() {
        Outcome::Failure { code }
    } else {
        Outcome::Success
    }
}

#[cfg(test)]
mod tests;
