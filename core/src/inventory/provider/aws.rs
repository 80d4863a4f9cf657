//! AWS: `aws iam list-access-keys` output (one user's response, or several
//! concatenated: one per user, or a JSON array of them) joined with the
//! IAM credential report (`aws iam get-credential-report`: its JSON
//! response, or the CSV its `Content` decodes to).
//!
//! The report names no key ids: a user's `access_key_1` / `access_key_2`
//! is matched to the key whose `CreateDate` equals the slot's
//! `access_key_N_last_rotated` (AWS writes the key's creation time there),
//! the join AWS's own tooling uses. From the report come the key's last
//! use and rotation; from the listing, the key, its user and its status.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::super::entry::{bad, RawEntry};
use super::super::load::{Collector, Lines, SyntaxError};
use super::super::InventoryError;
use super::{as_raw, elements, push, record, time};
use crate::types::Secs;

/// One access key as `list-access-keys` lists it.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AccessKey {
    user_name: Option<String>,
    access_key_id: String,
    status: Option<String>,
    create_date: Option<String>,
}

/// One access-key slot of a credential report row.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Slot {
    last_rotated: Option<Secs>,
    last_used: Option<Secs>,
}

/// A user's row of the credential report.
#[derive(Debug, Clone, Default, PartialEq)]
struct User {
    created: Option<Secs>,
    slots: [Slot; 2],
}

/// The credential report, by user name.
#[derive(Debug, Default)]
pub(in super::super) struct Report {
    users: HashMap<String, User>,
}

impl Report {
    /// The report's slot for the key of `user` created at `created`.
    fn slot(&self, user: &str, created: Option<Secs>) -> Option<(&User, Slot)> {
        let u = self.users.get(user)?;
        let slot = u
            .slots
            .iter()
            .find(|s| created.is_some() && s.last_rotated == created)?;
        Some((u, *slot))
    }
}

/// The report's columns keywatch reads; the rest (passwords, MFA,
/// certificates) are left alone.
const COLUMNS: [&str; 8] = [
    "user",
    "user_creation_time",
    "access_key_1_last_rotated",
    "access_key_1_last_used_date",
    "access_key_2_last_rotated",
    "access_key_2_last_used_date",
    "access_key_1_active",
    "access_key_2_active",
];

/// Reads a credential report: the CSV, or `get-credential-report`'s JSON
/// response with the CSV base64-encoded in `Content`.
pub(in super::super) fn report(path: &Path, bytes: &[u8]) -> Result<Report, InventoryError> {
    let syntax = |line: Option<usize>, message: String| InventoryError::Syntax {
        path: path.to_owned(),
        line,
        message,
    };
    let decoded;
    let csv_bytes = if bytes.trim_ascii_start().starts_with(b"{") {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Response {
            content: String,
        }
        let r: Response = serde_json::from_slice(bytes).map_err(|e| {
            syntax(
                Some(e.line()),
                format!("not a get-credential-report response: {e}"),
            )
        })?;
        use base64::Engine as _;
        decoded = base64::engine::general_purpose::STANDARD
            .decode(r.content.trim())
            .map_err(|e| syntax(None, format!("`Content` is not base64: {e}")))?;
        &decoded[..]
    } else {
        bytes
    };
    let mut reader = csv::ReaderBuilder::new().from_reader(csv_bytes);
    let headers = reader
        .headers()
        .map_err(|e| syntax(Some(1), e.to_string()))?
        .clone();
    let mut at = [0usize; COLUMNS.len()];
    for (i, name) in COLUMNS.iter().enumerate() {
        at[i] = headers.iter().position(|h| h == *name).ok_or_else(|| {
            syntax(
                Some(1),
                format!("no `{name}` column: is this an IAM credential report?"),
            )
        })?;
    }
    let mut out = Report::default();
    for (row, record) in reader.records().enumerate() {
        let record =
            record.map_err(|e| syntax(e.position().map(|p| p.line() as usize), e.to_string()))?;
        let line = record.position().map(|p| p.line() as usize);
        let cell = |i: usize| record.get(at[i]);
        let user = cell(0).unwrap_or_default().to_owned();
        let field = |i: usize| {
            time(COLUMNS[i], cell(i)).map_err(|b| {
                syntax(
                    line,
                    format!(
                        "row {} (user {user:?}): `{}` = {:?}: {}",
                        row + 1,
                        b.field,
                        b.value,
                        b.reason
                    ),
                )
            })
        };
        let entry = User {
            created: field(1)?,
            slots: [
                Slot {
                    last_rotated: field(2)?,
                    last_used: field(3)?,
                },
                Slot {
                    last_rotated: field(4)?,
                    last_used: field(5)?,
                },
            ],
        };
        out.users.insert(user, entry);
    }
    Ok(out)
}

/// Reads `list-access-keys` output, joined with `report` when given.
pub(in super::super) fn read(
    text: &str,
    report: Option<&Report>,
    collect: &mut Collector,
) -> Result<(), SyntaxError> {
    #[derive(Deserialize)]
    struct Page<'a> {
        #[serde(rename = "AccessKeyMetadata", borrow)]
        keys: Vec<&'a RawValue>,
    }
    let mut lines = Lines::new(text.as_bytes());
    let mut n = 0;
    for (line, doc) in elements(text)? {
        let page: Page<'_> = serde_json::from_str(doc.get()).map_err(|e| {
            (
                Some(line + e.line() - 1),
                format!("not a list-access-keys response: {e}"),
            )
        })?;
        for raw in page.keys {
            n += 1;
            let line = lines.at(raw.get().as_ptr() as usize - text.as_ptr() as usize);
            let key: AccessKey = record("AccessKeyMetadata element", n, line, raw)?;
            push(collect, line, Some(&key.access_key_id), entry(&key, report));
        }
    }
    Ok(())
}

fn entry(key: &AccessKey, report: Option<&Report>) -> Result<RawEntry<'static>, super::Bad> {
    let disabled = match key.status.as_deref() {
        None | Some("Active") => false,
        Some("Inactive") => true,
        Some(other) => return Err(bad("Status", other, "must be Active or Inactive")),
    };
    let created = time("CreateDate", key.create_date.as_deref())?;
    let user = key
        .user_name
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty());
    let joined = user.and_then(|u| report.and_then(|r| r.slot(u, created)));
    let (last_rotated, last_used) = match joined {
        Some((_, slot)) => (slot.last_rotated, slot.last_used),
        None => (None, None),
    };
    Ok(RawEntry {
        key_id: Some(key.access_key_id.clone().into()),
        owner: user.map(|u| u.to_owned().into()),
        principal: user.map(|u| u.to_owned().into()),
        system: Some("aws".into()),
        created: as_raw(created.or(joined.and_then(|(u, _)| u.created))),
        last_rotated: as_raw(last_rotated),
        last_used: as_raw(last_used),
        disabled: Some(super::super::entry::RawFlag::Bool(disabled)),
        ..RawEntry::default()
    })
}
