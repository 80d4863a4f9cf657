//! What changed between two reviews: the part of a review a later one is
//! compared with ([`Digest`], kept with each stored review), and the
//! differences ([`Changes`]): new unknown keys, keys that went stale,
//! keys rotated, keys added to and gone from the inventory.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::Review;

/// What a later review is compared with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// Listed keys, with their last rotation (or creation) as the review showed it.
    pub listed: BTreeMap<String, Option<String>>,
    /// Unknown keys seen.
    pub unknown: BTreeSet<String>,
    /// Stale keys.
    pub stale: BTreeSet<String>,
    /// Keys overdue for rotation.
    pub rotation_overdue: BTreeSet<String>,
}

/// What changed since the previous review.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// When the previous review was made (RFC 3339); `None`: this is the first.
    pub since: Option<String>,
    /// Unknown keys not seen at the previous review.
    pub new_unknown: Vec<String>,
    /// Keys stale now and not then.
    pub went_stale: Vec<String>,
    /// Keys whose last rotation moved, or that were overdue then and are
    /// listed and not overdue now.
    pub rotated: Vec<String>,
    /// Keys listed now and not then.
    pub added: Vec<String>,
    /// Keys listed then and not now (deleted at the provider, or removed).
    pub removed: Vec<String>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.new_unknown.is_empty()
            && self.went_stale.is_empty()
            && self.rotated.is_empty()
            && self.added.is_empty()
            && self.removed.is_empty()
    }
}

impl Changes {
    /// The changes as a Markdown section, for the review file and Slack.
    pub fn to_markdown(&self) -> String {
        let mut out = String::from("## Changes since the previous review\n\n");
        match &self.since {
            None => {
                out.push_str("This is the first review: nothing to compare with.\n");
                return out;
            }
            Some(since) => out.push_str(&format!("Previous review: {since}.\n\n")),
        }
        if self.is_empty() {
            out.push_str("Nothing changed.\n");
            return out;
        }
        for (title, keys) in [
            ("New unknown keys", &self.new_unknown),
            ("Keys that went stale", &self.went_stale),
            ("Keys rotated", &self.rotated),
            ("Keys added to the inventory", &self.added),
            ("Keys gone from the inventory", &self.removed),
        ] {
            if keys.is_empty() {
                continue;
            }
            out.push_str(&format!("- **{title}** ({}): ", keys.len()));
            let shown: Vec<String> = keys.iter().take(20).map(|k| format!("`{k}`")).collect();
            out.push_str(&shown.join(", "));
            if keys.len() > 20 {
                out.push_str(&format!(" and {} more", keys.len() - 20));
            }
            out.push('\n');
        }
        out
    }
}

impl Review {
    /// The part of this review a later one is compared with.
    pub fn digest(&self) -> Digest {
        Digest {
            listed: self
                .keys
                .iter()
                .filter(|k| k.listed)
                .map(|k| {
                    let rotated = k.last_rotated.clone().or_else(|| k.created.clone());
                    (k.key_id.clone(), rotated)
                })
                .collect(),
            unknown: self.unknown.iter().map(|k| k.key_id.clone()).collect(),
            stale: self.stale.iter().map(|k| k.key_id.clone()).collect(),
            rotation_overdue: self
                .rotation_overdue
                .iter()
                .map(|k| k.key_id.clone())
                .collect(),
        }
    }
}

impl Digest {
    /// What changed from `previous` (made at `since`) to this one.
    pub fn changes_since(&self, previous: &Digest, since: Option<String>) -> Changes {
        let not_in = |now: &BTreeSet<String>, then: &BTreeSet<String>| -> Vec<String> {
            now.difference(then).cloned().collect()
        };
        let rotated = self
            .listed
            .iter()
            .filter(|(key, rotated)| match previous.listed.get(*key) {
                Some(before) => {
                    before != *rotated
                        || (previous.rotation_overdue.contains(*key)
                            && !self.rotation_overdue.contains(*key))
                }
                None => false,
            })
            .map(|(key, _)| key.clone())
            .collect();
        Changes {
            since,
            new_unknown: not_in(&self.unknown, &previous.unknown),
            went_stale: not_in(&self.stale, &previous.stale),
            rotated,
            added: self
                .listed
                .keys()
                .filter(|k| !previous.listed.contains_key(*k))
                .cloned()
                .collect(),
            removed: previous
                .listed
                .keys()
                .filter(|k| !self.listed.contains_key(*k))
                .cloned()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(
        listed: &[(&str, &str)],
        unknown: &[&str],
        stale: &[&str],
        overdue: &[&str],
    ) -> Digest {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Digest {
            listed: listed
                .iter()
                .map(|(k, r)| (k.to_string(), Some(r.to_string())))
                .collect(),
            unknown: set(unknown),
            stale: set(stale),
            rotation_overdue: set(overdue),
        }
    }

    #[test]
    fn changes_name_new_unknown_stale_rotated_added_removed() {
        let before = digest(
            &[
                ("A", "2025-01-01"),
                ("B", "2025-01-01"),
                ("C", "2025-01-01"),
                ("GONE", "2025-01-01"),
            ],
            &["U1"],
            &["C"],
            &["B"],
        );
        let after = digest(
            &[
                ("A", "2025-06-01"),
                ("B", "2025-01-01"),
                ("C", "2025-01-01"),
                ("NEW", "2025-06-01"),
            ],
            &["U1", "U2"],
            &["C", "B"],
            &["B"],
        );
        let c = after.changes_since(&before, Some("then".into()));
        assert_eq!(c.new_unknown, ["U2"]);
        assert_eq!(c.went_stale, ["B"]);
        assert_eq!(c.rotated, ["A"]);
        assert_eq!(c.added, ["NEW"]);
        assert_eq!(c.removed, ["GONE"]);
        assert!(!c.is_empty());
        assert!(after.changes_since(&after, None).is_empty());
    }
}
