//! Providers' own exports, read as the provider writes them, as inventory
//! sources: each reader turns its provider's records into entries as
//! written ([`RawEntry`]) and hands them to the same validation as
//! keywatch's own format, so a field means the same from every source.
//!
//! A reader names its provider's fields in its errors (`CreateDate`,
//! `validBeforeTime`), with the file, the line and the element.

pub(super) mod aws;
pub(super) mod gcp;
pub(super) mod github;

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::entry::{bad, Bad, RawEntry, RawTime};
use super::load::{Collector, Lines, SyntaxError};
use crate::types::Secs;

/// The elements of a file holding one JSON array or several concatenated
/// (what a shell loop over accounts or pages appends), each with its line.
/// A top-level object is one element; arrays inside arrays are flattened.
pub(super) fn elements(text: &str) -> Result<Vec<(usize, &RawValue)>, SyntaxError> {
    let mut lines = Lines::new(text.as_bytes());
    let mut out = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<&RawValue>();
    for doc in stream.by_ref() {
        let doc = doc.map_err(|e| {
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg);
            (Some(e.line()), format!("{msg} (column {})", e.column()))
        })?;
        flatten(text, doc, &mut lines, &mut out)?;
    }
    Ok(out)
}

fn flatten<'a>(
    text: &'a str,
    value: &'a RawValue,
    lines: &mut Lines<'_>,
    out: &mut Vec<(usize, &'a RawValue)>,
) -> Result<(), SyntaxError> {
    let at = value.get().as_ptr() as usize - text.as_ptr() as usize;
    if value.get().starts_with('[') {
        let items: Vec<&RawValue> =
            serde_json::from_str(value.get()).map_err(|e| (Some(lines.at(at)), e.to_string()))?;
        for item in items {
            flatten(text, item, lines, out)?;
        }
    } else {
        out.push((lines.at(at), value));
    }
    Ok(())
}

/// Reads one element as the provider's record type; a missing field or a
/// wrong type is a syntax error at the element's line.
pub(super) fn record<T: DeserializeOwned>(
    what: &str,
    n: usize,
    line: usize,
    raw: &RawValue,
) -> Result<T, SyntaxError> {
    serde_json::from_str(raw.get()).map_err(|e| {
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
        (Some(line + e.line() - 1), format!("{what} {n}: {msg}"))
    })
}

/// A provider's timestamp (RFC 3339), in seconds; `None` for an absent one
/// and for the far-future "never expires" sentinels (`9999-12-31T23:59:59Z`).
pub(super) fn time(field: &'static str, value: Option<&str>) -> Result<Option<Secs>, Bad> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let lower = v.to_ascii_lowercase();
    if matches!(lower.as_str(), "n/a" | "no_information" | "not_supported") {
        return Ok(None);
    }
    if v.get(..4)
        .and_then(|y| y.parse::<u32>().ok())
        .is_some_and(|y| y >= 2100)
    {
        return Ok(None);
    }
    super::entry::parse_time_text(v)
        .map(|ms| Some((ms / 1000).clamp(0, u32::MAX as i64) as Secs))
        .ok_or_else(|| bad(field, v, "not an RFC 3339 time (\"2025-06-01T10:00:00Z\")"))
}

/// A validated time as an entry field.
pub(super) fn as_raw(t: Option<Secs>) -> Option<RawTime<'static>> {
    t.map(|s| RawTime::Epoch(s as i64))
}

/// Hands one provider record to the collector: its entry, or the field at
/// fault (named as the provider names it).
pub(super) fn push(
    collect: &mut Collector,
    line: usize,
    key_id: Option<&str>,
    entry: Result<RawEntry<'static>, Bad>,
) {
    match entry {
        Ok(raw) => collect.push(Some(line), raw),
        Err(bad) => collect.reject(Some(line), key_id, bad),
    }
}
