//! The review as Markdown, for people: a summary, then one table per list.

use std::fmt::Write;

use super::Review;

/// A table cell: no pipes or line breaks can break the table.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// `2026-03-01T00:00:00.000Z` → `2026-03-01`.
fn day(t: &str) -> &str {
    t.get(..10).unwrap_or(t)
}

fn opt(s: Option<&str>) -> String {
    s.map_or_else(|| "-".to_owned(), cell)
}

struct Table<'a> {
    out: &'a mut String,
}

impl<'a> Table<'a> {
    /// Starts a section: its heading, and "None." when it has no rows.
    fn section(out: &'a mut String, title: &str, note: &str, empty: bool) -> Option<Table<'a>> {
        let _ = writeln!(out, "\n## {title}\n");
        if !note.is_empty() {
            let _ = writeln!(out, "{note}\n");
        }
        if empty {
            let _ = writeln!(out, "None.");
            return None;
        }
        Some(Table { out })
    }

    fn header(&mut self, cols: &[&str]) {
        let _ = writeln!(self.out, "| {} |", cols.join(" | "));
        let _ = writeln!(self.out, "|{}", "---|".repeat(cols.len()));
    }

    fn row(&mut self, cells: &[String]) {
        let _ = writeln!(self.out, "| {} |", cells.join(" | "));
    }
}

impl Review {
    /// The review for people: a summary, then tables.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Key security review, {}\n", day(&self.generated_at));
        let _ = write!(s, "Generated at {}", self.generated_at);
        if let Some(since) = &self.observed_since {
            let _ = write!(s, " from traffic observed since {since}");
        }
        let _ = writeln!(
            s,
            ". A key is stale after {} days unused while valid; rotation is due every {} days.\n",
            self.stale_after_days, self.rotation_after_days
        );
        let m = &self.summary;
        for (n, what) in [
            (m.listed, "keys in the inventory".to_owned()),
            (m.seen, "keys seen in traffic".to_owned()),
            (m.expired_in_use, "expired keys still in use".to_owned()),
            (m.unknown, "unknown keys seen in traffic".to_owned()),
            (
                m.stale,
                format!(
                    "stale keys (valid, unused ≥ {} days)",
                    self.stale_after_days
                ),
            ),
            (m.rotation_overdue, "keys overdue for rotation".to_owned()),
            (
                m.least_privilege,
                "keys allowed actions they never use".to_owned(),
            ),
            (m.findings, "findings in the period".to_owned()),
        ] {
            let _ = writeln!(s, "- **{n}** {what}");
        }
        if let Some(keys) = &self.compromised {
            let _ = writeln!(s, "- **{}** keys confirmed compromised", keys.len());
        }

        if let Some(keys) = &self.compromised {
            if let Some(mut t) = Table::section(
                &mut s,
                "Compromised (confirmed)",
                "A responder confirmed a finding on each of these keys as a compromise (until that finding is resolved): rotate them first.",
                keys.is_empty(),
            ) {
                t.header(&["key", "owner", "system", "in inventory"]);
                for k in keys {
                    t.row(&[
                        format!("`{}`", cell(&k.key_id)),
                        opt(k.owner.as_deref()),
                        opt(k.system.as_deref()),
                        if k.listed { "yes" } else { "no" }.to_owned(),
                    ]);
                }
            }
        }

        if let Some(mut t) = Table::section(
            &mut s,
            "Ranked by risk",
            "Points per reason, times the privilege factor (admin ×3, write or unstated ×2, read ×1).",
            self.ranked.is_empty(),
        ) {
            t.header(&["#", "key", "owner", "risk", "why"]);
            for r in &self.ranked {
                t.row(&[
                    r.rank.to_string(),
                    format!("`{}`", cell(&r.key_id)),
                    opt(r.owner.as_deref()),
                    r.risk.to_string(),
                    cell(&r.reasons.join("; ")),
                ]);
            }
        }

        if let Some(mut t) = Table::section(
            &mut s,
            "Expired keys still in use",
            "Revoke them at the provider, or correct the inventory.",
            self.expired_in_use.is_empty(),
        ) {
            t.header(&[
                "key",
                "owner",
                "system",
                "expired",
                "last used",
                "days after expiry",
            ]);
            for k in &self.expired_in_use {
                t.row(&[
                    format!("`{}`", cell(&k.key_id)),
                    cell(&k.owner),
                    opt(k.system.as_deref()),
                    day(&k.expires).to_owned(),
                    day(&k.last_used).to_owned(),
                    k.days_after_expiry.to_string(),
                ]);
            }
        }

        if let Some(mut t) = Table::section(
            &mut s,
            "Unknown keys seen in traffic",
            "Used, but not in the inventory: find the owner and list the key, or revoke it.",
            self.unknown.is_empty(),
        ) {
            t.header(&[
                "key",
                "first seen",
                "last seen",
                "uses",
                "sources",
                "findings",
            ]);
            for k in &self.unknown {
                t.row(&[
                    format!("`{}`", cell(&k.key_id)),
                    day(&k.first_seen).to_owned(),
                    day(&k.last_seen).to_owned(),
                    k.uses.to_string(),
                    k.sources.to_string(),
                    k.findings.to_string(),
                ]);
            }
        }

        if let Some(mut t) = Table::section(
            &mut s,
            "Stale keys",
            "Valid but unused: remove them, or set an expiry.",
            self.stale.is_empty(),
        ) {
            t.header(&[
                "key",
                "owner",
                "system",
                "privilege",
                "last used",
                "unused days",
                "expires",
            ]);
            for k in &self.stale {
                t.row(&[
                    format!("`{}`", cell(&k.key_id)),
                    cell(&k.owner),
                    opt(k.system.as_deref()),
                    opt(k.privilege.map(|p| p.as_str())),
                    k.last_used
                        .as_deref()
                        .map_or_else(|| "never seen".to_owned(), |t| day(t).to_owned()),
                    k.unused_days.to_string(),
                    k.expires.as_deref().map_or("never", day).to_owned(),
                ]);
            }
        }

        if let Some(mut t) = Table::section(
            &mut s,
            "Rotation overdue",
            "",
            self.rotation_overdue.is_empty(),
        ) {
            t.header(&[
                "key",
                "owner",
                "system",
                "privilege",
                "rotated",
                "days since",
                "overdue by",
            ]);
            for k in &self.rotation_overdue {
                let rotated = if k.basis == "created" {
                    format!("{} (created, never rotated)", day(&k.rotated))
                } else {
                    day(&k.rotated).to_owned()
                };
                t.row(&[
                    format!("`{}`", cell(&k.key_id)),
                    cell(&k.owner),
                    opt(k.system.as_deref()),
                    opt(k.privilege.map(|p| p.as_str())),
                    rotated,
                    k.days_since.to_string(),
                    format!("{}d", k.overdue_days),
                ]);
            }
        }

        if let Some(mut t) = Table::section(
            &mut s,
            "Least-privilege candidates",
            "Allowed actions no use matched in the period: narrow the key's scope.",
            self.least_privilege.is_empty(),
        ) {
            t.header(&["key", "owner", "system", "allowed actions", "never used"]);
            for k in &self.least_privilege {
                t.row(&[
                    format!("`{}`", cell(&k.key_id)),
                    cell(&k.owner),
                    opt(k.system.as_deref()),
                    cell(&k.allowed_actions.join(", ")),
                    cell(&k.never_used.join(", ")),
                ]);
            }
        }

        if let Some(mut t) = Table::section(
            &mut s,
            "Keys with the most findings",
            "",
            self.most_findings.is_empty(),
        ) {
            t.header(&["key", "owner", "findings", "by severity", "by detector"]);
            for k in &self.most_findings {
                let sev: Vec<String> = k
                    .by_severity
                    .iter()
                    .rev()
                    .map(|(s, n)| format!("{n} {s}"))
                    .collect();
                let det: Vec<String> = k
                    .by_detector
                    .iter()
                    .map(|(d, n)| format!("{d} {n}"))
                    .collect();
                t.row(&[
                    format!("`{}`", cell(&k.key_id)),
                    opt(k.owner.as_deref()),
                    k.findings.to_string(),
                    sev.join(", "),
                    det.join(", "),
                ]);
            }
        }

        if let Some(mut t) = Table::section(
            &mut s,
            "By system, privilege and age",
            "Listed keys, by time since creation.",
            self.classification.is_empty(),
        ) {
            t.header(&[
                "system",
                "privilege",
                "< 30d",
                "30–90d",
                "90d–1y",
                "≥ 1y",
                "no date",
                "total",
            ]);
            for c in &self.classification {
                let mut cells = vec![cell(&c.system), cell(&c.privilege)];
                cells.extend(c.by_age.counts().iter().map(u64::to_string));
                cells.push(c.total.to_string());
                t.row(&cells);
            }
        }

        if let Some(mut t) = Table::section(&mut s, "Every key", "", self.keys.is_empty()) {
            t.header(&[
                "key",
                "owner",
                "team",
                "system",
                "privilege",
                "age (days)",
                "last used",
                "uses",
                "sources",
                "findings",
                "status",
            ]);
            for k in &self.keys {
                t.row(&[
                    format!("`{}`", cell(&k.key_id)),
                    opt(k.owner.as_deref()),
                    opt(k.team.as_deref()),
                    opt(k.system.as_deref()),
                    opt(k.privilege.map(|p| p.as_str())),
                    k.age_days.map_or_else(|| "-".to_owned(), |d| d.to_string()),
                    k.last_used
                        .as_deref()
                        .map_or_else(|| "-".to_owned(), |t| day(t).to_owned()),
                    k.uses.to_string(),
                    k.sources.to_string(),
                    k.findings.to_string(),
                    if k.status.is_empty() {
                        "ok".to_owned()
                    } else {
                        k.status.join(", ")
                    },
                ]);
            }
        }
        s
    }
}
