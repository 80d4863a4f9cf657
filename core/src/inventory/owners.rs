//! The owner mapping: what a provider does not know of its keys (the
//! person or team answering for them, the system, the privilege), by the
//! key's principal at the provider (an IAM user, a service account, a
//! GitHub login) or by key id.
//!
//! A CSV file (`match,owner,team,system,privilege`) or TOML (`[[owners]]`
//! tables with the same fields). `match` is a glob (`*` any run, `?` one
//! character, case-insensitive) tried against the key id, then the
//! principal; the first row that matches fills the fields it gives.

use std::path::Path;

use serde::Deserialize;
use wildmatch::WildMatch;

use super::entry::RawEntry;
use super::{InventoryError, Privilege};

/// One row of the mapping.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    #[serde(rename = "match")]
    pattern: String,
    owner: Option<String>,
    team: Option<String>,
    system: Option<String>,
    privilege: Option<String>,
}

/// The mapping, rows in file order.
#[derive(Debug, Default)]
pub(super) struct OwnerMap {
    rows: Vec<(WildMatch, Row)>,
}

impl OwnerMap {
    /// Reads a `.csv` or `.toml` mapping; errors name the file, the line
    /// (CSV) or row and the field.
    pub(super) fn parse(path: &Path, bytes: &[u8]) -> Result<OwnerMap, InventoryError> {
        let syntax = |line: Option<usize>, message: String| InventoryError::Syntax {
            path: path.to_owned(),
            line,
            message,
        };
        let is_toml = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
        let rows: Vec<(Option<usize>, Row)> = if is_toml {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct File {
                owners: Vec<toml::Spanned<Row>>,
            }
            let text = std::str::from_utf8(bytes)
                .map_err(|_| syntax(None, "not UTF-8 text".to_owned()))?;
            let file: File = toml::from_str(text).map_err(|e| {
                let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1);
                syntax(line, e.message().trim().to_owned())
            })?;
            file.owners
                .into_iter()
                .map(|r| {
                    let line = text[..r.span().start].matches('\n').count() + 1;
                    (Some(line), r.into_inner())
                })
                .collect()
        } else {
            let mut reader = csv::ReaderBuilder::new()
                .trim(csv::Trim::All)
                .comment(Some(b'#'))
                .from_reader(bytes);
            let headers = reader
                .headers()
                .map_err(|e| syntax(Some(1), e.to_string()))?
                .clone();
            let mut rows = Vec::new();
            for record in reader.records() {
                let record = record
                    .map_err(|e| syntax(e.position().map(|p| p.line() as usize), e.to_string()))?;
                let line = record.position().map(|p| p.line() as usize);
                let row: Row = record.deserialize(Some(&headers)).map_err(|e| {
                    let msg = match e.kind() {
                        csv::ErrorKind::Deserialize { err, .. } => err.to_string(),
                        _ => e.to_string(),
                    };
                    syntax(line, msg)
                })?;
                rows.push((line, row));
            }
            rows
        };
        let mut map = OwnerMap::default();
        for (i, (line, row)) in rows.into_iter().enumerate() {
            let at = |field: &str, value: &str, reason: &str| {
                syntax(
                    line,
                    format!("row {}: `{field}` = {value:?}: {reason}", i + 1),
                )
            };
            if row.pattern.trim().is_empty() {
                return Err(at(
                    "match",
                    "",
                    "is required: a key id or principal, or a glob",
                ));
            }
            if let Some(p) = row.privilege.as_deref().filter(|p| !p.trim().is_empty()) {
                p.parse::<Privilege>().map_err(|r| at("privilege", p, &r))?;
            }
            map.rows
                .push((WildMatch::new_case_insensitive(row.pattern.trim()), row));
        }
        Ok(map)
    }

    /// Fills what the first matching row gives into a provider's entry.
    pub(super) fn apply(&self, raw: &mut RawEntry<'_>) {
        let key = raw.key_id.as_deref().unwrap_or_default();
        let principal = raw.principal.as_deref().unwrap_or_default();
        let Some((_, row)) = self
            .rows
            .iter()
            .find(|(m, _)| m.matches(key) || (!principal.is_empty() && m.matches(principal)))
        else {
            return;
        };
        let set = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.to_owned().into())
        };
        if let Some(o) = set(&row.owner) {
            raw.owner = Some(o);
        }
        if let Some(t) = set(&row.team) {
            raw.team = Some(t);
        }
        if let Some(s) = set(&row.system) {
            raw.system = Some(s);
        }
        if let Some(p) = set(&row.privilege) {
            raw.privilege = Some(p);
        }
    }
}
