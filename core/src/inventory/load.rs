//! Reading an inventory file: TOML (`[[keys]]` tables), JSON (an array of
//! entries, or `{"keys": [...]}`) or CSV (a header row naming the fields;
//! lists separated by `;` or `,`). Every format goes through one validation,
//! so a field means the same everywhere and an error always names the file,
//! the line, the entry (the row, in CSV), the field and its value.
//!
//! Times are RFC 3339 (`2025-06-01T10:00:00Z`), a date (`2025-06-01`,
//! midnight UTC) or epoch seconds; empty, `N/A` and `no_information` (what
//! an IAM credential report writes for a key never used) mean unknown.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::value::RawValue;

use super::entry::{build, Bad, Interner, RawEntry, FIELDS};
use super::owners::OwnerMap;
use super::{Inventory, KeyEntry};

/// Invalid entries reported at most; a file with more says how many it left out.
const MAX_REPORTED: usize = 20;

/// An inventory file's format, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `*.toml`: `[[keys]]` tables.
    Toml,
    /// `*.json`: an array of entries, or `{"keys": [...]}`.
    Json,
    /// `*.csv`: a header row, then one key per row.
    Csv,
}

impl Format {
    /// The format a file name says (case-insensitive extension).
    pub fn of_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "toml" => Some(Format::Toml),
            "json" => Some(Format::Json),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }
}

/// One invalid entry: where it is, which field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    /// The format, which decides whether the entry is called a row.
    pub format: Format,
    /// Line the entry starts on, when the format tells.
    pub line: Option<usize>,
    /// 1-based position among the entries (in CSV, the data row).
    pub entry: usize,
    /// The entry's key id, when it has one.
    pub key_id: Option<String>,
    /// The field at fault.
    pub field: &'static str,
    /// Its value as written.
    pub value: String,
    /// What is wrong, and what would be right.
    pub reason: String,
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}, ")?;
        }
        let unit = if self.format == Format::Csv {
            "row"
        } else {
            "entry"
        };
        write!(f, "{unit} {}", self.entry)?;
        if let Some(key) = &self.key_id {
            write!(f, " (key_id {key:?})")?;
        }
        write!(f, ": `{}` = {:?}: {}", self.field, self.value, self.reason)
    }
}

/// Why an inventory file was refused. The previous inventory, if any, stays.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The file could not be read.
    #[error("inventory {}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file name does not say which format it is in.
    #[error("inventory {}: unknown format; name the file *.toml, *.json or *.csv", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The file is not well-formed TOML, JSON or CSV, or names an unknown field.
    #[error("inventory {}{}: {message}", path.display(), line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Where, when known.
        line: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// Entries whose values are wrong.
    #[error("inventory {}: {}", path.display(), list(errors, *more))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The first invalid entries, in file order.
        errors: Vec<EntryError>,
        /// Invalid entries not listed.
        more: usize,
    },
}

fn list(errors: &[EntryError], more: usize) -> String {
    if let ([only], 0) = (errors, more) {
        return only.to_string();
    }
    let mut s = format!("{} invalid entries:", errors.len() + more);
    for e in errors {
        s.push_str("\n  ");
        s.push_str(&e.to_string());
    }
    if more > 0 {
        s.push_str(&format!("\n  ... and {more} more"));
    }
    s
}

impl Inventory {
    /// Reads and validates an inventory file, its format from its extension.
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        let format = Format::of_path(path).ok_or_else(|| InventoryError::UnknownFormat {
            path: path.to_owned(),
        })?;
        let bytes = std::fs::read(path).map_err(|source| InventoryError::Read {
            path: path.to_owned(),
            source,
        })?;
        Inventory::parse(&bytes, format, path)
    }

    /// Validates an inventory held in memory; `path` names it in errors.
    ///
    /// Entries are validated as they are read, so a million-entry file never
    /// exists twice in memory: only the file and the inventory being built.
    pub fn parse(bytes: &[u8], format: Format, path: &Path) -> Result<Inventory, InventoryError> {
        let mut collect = Collector::new(format);
        let read = match format {
            Format::Csv => read_csv(bytes, &mut collect),
            Format::Toml | Format::Json => match std::str::from_utf8(bytes) {
                Err(e) => {
                    let line = Lines::new(bytes).at(e.valid_up_to());
                    Err((Some(line), "not UTF-8 text".to_owned()))
                }
                Ok(text) if format == Format::Toml => read_toml(text, &mut collect),
                Ok(text) => read_json(text, &mut collect),
            },
        };
        read.map_err(|(line, message)| InventoryError::Syntax {
            path: path.to_owned(),
            line,
            message,
        })?;
        collect.finish(path)
    }
}

/// Validates entries as the reader hands them over, and keeps what the
/// error messages need.
pub(super) struct Collector<'o> {
    format: Format,
    /// Fills what providers' entries lack, before validation.
    owners: Option<&'o OwnerMap>,
    interner: Interner,
    entries: Vec<KeyEntry>,
    /// Line and 1-based entry number of each entry kept.
    located: Vec<(Option<usize>, usize)>,
    seen: usize,
    errors: Vec<EntryError>,
    more: usize,
}

impl<'o> Collector<'o> {
    pub(super) fn new(format: Format) -> Collector<'o> {
        Collector {
            format,
            owners: None,
            interner: Interner::default(),
            entries: Vec::new(),
            located: Vec::new(),
            seen: 0,
            errors: Vec::new(),
            more: 0,
        }
    }

    /// Applies `owners` to each entry before it is validated.
    pub(super) fn with_owners(mut self, owners: Option<&'o OwnerMap>) -> Collector<'o> {
        self.owners = owners;
        self
    }

    /// Counts an element the source leaves out (a Google-managed key), so
    /// that entry numbers stay the elements' positions.
    pub(super) fn skip(&mut self) {
        self.seen += 1;
    }

    /// Counts an entry refused before validation (a provider's field).
    pub(super) fn reject(&mut self, line: Option<usize>, key_id: Option<&str>, bad: Bad) {
        self.seen += 1;
        self.report(EntryError {
            format: self.format,
            line,
            entry: self.seen,
            key_id: key_id.map(str::to_owned),
            field: bad.field,
            value: bad.value,
            reason: bad.reason,
        });
    }

    fn reserve(&mut self, entries: usize) {
        self.entries.reserve_exact(entries);
        self.located.reserve_exact(entries);
    }

    pub(super) fn push(&mut self, line: Option<usize>, mut raw: RawEntry<'_>) {
        if let Some(owners) = self.owners {
            owners.apply(&mut raw);
        }
        self.seen += 1;
        let entry = self.seen;
        match build(&raw, &mut self.interner) {
            Ok(e) => {
                self.entries.push(e);
                self.located.push((line, entry));
            }
            Err(bad) => {
                let key_id = raw
                    .key_id
                    .as_deref()
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(str::to_owned);
                self.report(EntryError {
                    format: self.format,
                    line,
                    entry,
                    key_id,
                    field: bad.field,
                    value: bad.value,
                    reason: bad.reason,
                });
            }
        }
    }

    fn report(&mut self, e: EntryError) {
        if self.errors.len() < MAX_REPORTED {
            self.errors.push(e);
        } else {
            self.more += 1;
        }
    }

    pub(super) fn finish(mut self, path: &Path) -> Result<Inventory, InventoryError> {
        let located = std::mem::take(&mut self.located);
        let mut duplicates = Vec::new();
        let inventory = Inventory::index_unique(
            std::mem::take(&mut self.entries),
            |first, again, entries| {
                duplicates.push((first, again, entries[again].key_id.to_string()));
            },
        );
        for (first, again, key) in duplicates {
            let (line, entry) = located[again];
            self.report(EntryError {
                format: self.format,
                line,
                entry,
                key_id: None,
                field: "key_id",
                value: key,
                reason: match located[first] {
                    (Some(l), _) => format!("listed twice; first at line {l}"),
                    (None, e) => format!("listed twice; first as entry {e}"),
                },
            });
        }
        if self.errors.is_empty() {
            return Ok(inventory);
        }
        self.errors.sort_by_key(|e| e.entry);
        Err(InventoryError::Invalid {
            path: path.to_owned(),
            errors: self.errors,
            more: self.more,
        })
    }
}

/// Keeps a running line count so that locating each of a million entries
/// costs one pass over the file, not one per entry.
pub(super) struct Lines<'a> {
    text: &'a [u8],
    offset: usize,
    line: usize,
}

impl<'a> Lines<'a> {
    pub(super) fn new(text: &'a [u8]) -> Lines<'a> {
        Lines {
            text,
            offset: 0,
            line: 1,
        }
    }

    /// The 1-based line of byte `offset`.
    pub(super) fn at(&mut self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        if offset < self.offset {
            self.offset = 0;
            self.line = 1;
        }
        self.line += self.text[self.offset..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.offset = offset;
        self.line
    }
}

/// Where a file stops being readable, and why.
pub(super) type SyntaxError = (Option<usize>, String);

fn read_toml(text: &str, collect: &mut Collector<'_>) -> Result<(), SyntaxError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        keys: Vec<toml::Spanned<RawEntry<'static>>>,
    }
    let mut lines = Lines::new(text.as_bytes());
    let file: File = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| lines.at(s.start));
        (line, e.message().trim().to_owned())
    })?;
    collect.reserve(file.keys.len());
    for entry in file.keys {
        let line = lines.at(entry.span().start);
        collect.push(Some(line), entry.into_inner());
    }
    Ok(())
}

fn read_json(text: &str, collect: &mut Collector<'_>) -> Result<(), SyntaxError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File<'a> {
        #[serde(borrow)]
        keys: Vec<&'a RawValue>,
    }
    let whole = |e: serde_json::Error| (Some(e.line()), e.to_string());
    let raws: Vec<&RawValue> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text).map_err(whole)?
    } else {
        serde_json::from_str::<File<'_>>(text).map_err(whole)?.keys
    };
    collect.reserve(raws.len());
    let mut lines = Lines::new(text.as_bytes());
    for (i, raw) in raws.into_iter().enumerate() {
        let line = lines.at(raw.get().as_ptr() as usize - text.as_ptr() as usize);
        let entry = serde_json::from_str::<RawEntry<'_>>(raw.get()).map_err(|e| {
            let msg = e.to_string();
            // serde_json ends with its position inside the entry; the file's line is given.
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
            (Some(line + e.line() - 1), format!("entry {}: {msg}", i + 1))
        })?;
        collect.push(Some(line), entry);
    }
    Ok(())
}

fn read_csv(bytes: &[u8], collect: &mut Collector<'_>) -> Result<(), SyntaxError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| (Some(1), e.to_string()))?
        .clone();
    let mut columns = Vec::with_capacity(headers.len());
    for name in &headers {
        let field = FIELDS
            .iter()
            .position(|f| f.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                (
                    Some(1),
                    format!(
                        "unknown column `{name}`; the columns are {}",
                        FIELDS.join(", ")
                    ),
                )
            })?;
        if columns.contains(&field) {
            return Err((Some(1), format!("column `{name}` appears twice")));
        }
        columns.push(field);
    }
    for required in ["key_id", "owner"] {
        if !headers.iter().any(|h| h.eq_ignore_ascii_case(required)) {
            return Err((Some(1), format!("no `{required}` column")));
        }
    }
    collect.reserve(bytes.iter().filter(|&&b| b == b'\n').count());
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize);
                let msg = match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => format!("row has {len} fields, the header has {expected_len}"),
                    _ => e.to_string(),
                };
                return Err((line, msg));
            }
        }
        let mut raw = RawEntry::default();
        for (&field, cell) in columns.iter().zip(record.iter()) {
            raw.set(field, cell);
        }
        let line = record.position().map(|p| p.line() as usize);
        collect.push(line, raw);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::inventory::Privilege;

    fn parse(text: &str, format: Format) -> Result<Inventory, InventoryError> {
        Inventory::parse(text.as_bytes(), format, Path::new("inv"))
    }

    const TOML: &str = r#"
[[keys]]
key_id = "AKIA1"
owner = "alice"
team = "payments"
system = "billing"
privilege = "admin"
created = 2025-01-01
expires = "2026-12-31T00:00:00Z"
last_rotated = "2025-06-01"
last_used = "2025-12-01T10:00:00+00:00"
allowed_cidrs = ["10.0.0.0/8", "192.168.1.7"]
allowed_actions = ["s3:Get*", "ListBucket"]
usage_cap = "1000/1d"
one_time = false

[[keys]]
key_id = "AKIA2"
owner = "alice"
one_time = true
"#;

    #[test]
    fn the_three_formats_say_the_same() {
        let toml = parse(TOML, Format::Toml).unwrap();
        let json = parse(
            r#"{"keys": [
  {"key_id": "AKIA1", "owner": "alice", "team": "payments", "system": "billing",
   "privilege": "admin", "created": "2025-01-01", "expires": 1798675200,
   "last_rotated": "2025-06-01", "last_used": "2025-12-01T10:00:00Z",
   "allowed_cidrs": ["10.0.0.0/8", "192.168.1.7"], "allowed_actions": "s3:Get*; ListBucket",
   "usage_cap": "1000/1d", "one_time": false},
  {"key_id": "AKIA2", "owner": "alice", "one_time": true}
]}"#,
            Format::Json,
        )
        .unwrap();
        let csv = parse(
            "key_id,owner,team,system,privilege,created,expires,last_rotated,last_used,allowed_cidrs,allowed_actions,usage_cap,one_time\n\
             AKIA1,alice,payments,billing,Admin,2025-01-01,2026-12-31T00:00:00Z,2025-06-01,2025-12-01T10:00:00+00:00,10.0.0.0/8;192.168.1.7,\"s3:Get*, ListBucket\",1000/1d,no\n\
             # a comment line\n\
             AKIA2,alice,,,,,,,N/A,,,,yes\n",
            Format::Csv,
        )
        .unwrap();
        for inv in [&json, &csv] {
            assert_eq!(inv.entries(), toml.entries());
        }
        let a = toml.get("AKIA1").unwrap();
        assert_eq!(a.privilege, Some(Privilege::Admin));
        assert_eq!(a.created, Some(1_735_689_600));
        assert_eq!(a.usage_cap.unwrap().count, 1000);
        assert!(a.allows_source("10.1.2.3".parse().unwrap()));
        assert!(a.allows_source("192.168.1.7".parse().unwrap()));
        assert!(!a.allows_source("192.168.1.8".parse().unwrap()));
        assert!(toml.get("AKIA2").unwrap().one_time);
        assert!(toml.get("AKIA3").is_none());
        assert!(
            Arc::ptr_eq(&a.owner, &toml.get("AKIA2").unwrap().owner),
            "owners are shared"
        );
    }

    #[test]
    fn a_bad_csv_row_is_named_with_its_line_and_field() {
        let err = parse(
            "key_id,owner,expires\nAKIA1,alice,2026-01-01\nAKIA2,bob,2026-13-45\nAKIA3,carol,\n",
            Format::Csv,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "inventory inv: line 3, row 2 (key_id \"AKIA2\"): `expires` = \"2026-13-45\": write an RFC 3339 time (\"2025-06-01T10:00:00Z\"), a date (\"2025-06-01\") or epoch seconds, between 2000 and 2100"
        );
        let err = parse("key_id,owner\nAKIA1,alice\nAKIA2\n", Format::Csv)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3") && err.contains("1 fields"), "{err}");
        let err = parse("key_id,owner,expiers\n", Format::Csv)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1") && err.contains("`expiers`"), "{err}");
        let err = parse("key_id,team\nAKIA1,x\n", Format::Csv)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no `owner` column"), "{err}");
    }

    #[test]
    fn toml_and_json_errors_name_line_entry_and_field() {
        let err = parse(
            &TOML.replace("\"10.0.0.0/8\"", "\"10.0.0.0/33\""),
            Format::Toml,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(
                "inventory inv: line 2, entry 1 (key_id \"AKIA1\"): `allowed_cidrs` = \"10.0.0.0/33\""
            ),
            "{err}"
        );
        let err = parse(
            &TOML.replace("one_time = true", "one_tim = true"),
            Format::Toml,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 20") && err.contains("one_tim"), "{err}");
        let err = parse(
            "[\n {\"key_id\": \"A\", \"owner\": \"o\"},\n {\"key_id\": \"B\",\n  \"owner\": \"o\", \"privilege\": \"root\"}\n]",
            Format::Json,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "inventory inv: line 3, entry 2 (key_id \"B\"): `privilege` = \"root\": must be one of read, write, admin"
        );
        let err = parse(
            "[\n {\"key_id\": \"A\", \"owner\": \"o\"},\n {\"key_id\": \"B\",\n  \"ownr\": \"o\"}\n]",
            Format::Json,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("line 4") && err.contains("entry 2") && err.contains("`ownr`"),
            "{err}"
        );
    }

    #[test]
    fn cross_field_and_duplicate_errors() {
        let err = parse(
            "[[keys]]\nkey_id = \"A\"\nowner = \"o\"\ncreated = \"2025-06-01\"\nexpires = \"2025-01-01\"\n",
            Format::Toml,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`expires` = \"2025-01-01T00:00:00.000Z\": is before `created`"),
            "{err}"
        );
        let err = parse("key_id,owner\nA,o\nB,o\nA,p\n,q\nC,\n", Format::Csv)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("inventory inv: 3 invalid entries:"),
            "{err}"
        );
        assert!(
            err.contains("line 4, row 3: `key_id` = \"A\": listed twice; first at line 2"),
            "{err}"
        );
        assert!(err.contains("row 4: `key_id` = \"\": is required"), "{err}");
        assert!(err.contains("row 5 (key_id \"C\"): `owner`"), "{err}");
    }

    #[test]
    fn unknown_format_and_missing_file() {
        let err = Inventory::load(Path::new("keys.yaml")).unwrap_err();
        assert!(matches!(err, InventoryError::UnknownFormat { .. }));
        let err = Inventory::load(Path::new("/nonexistent/keys.csv")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/keys.csv"), "{err}");
    }
}
