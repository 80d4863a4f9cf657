//! The review as a gate for CI/CD: which of its lists must be empty
//! (`keywatch review --fail-on ...`), and one line per key that is not.

use std::fmt;

use super::Review;

/// A list of the review a gate can require to be empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// Keys used at or after their expiry.
    ExpiredInUse,
    /// Keys seen in traffic that the inventory does not list.
    Unknown,
    /// Valid keys unused past the stale threshold.
    Stale,
    /// Valid keys not rotated within the rotation threshold.
    RotationOverdue,
    /// Keys a responder confirmed compromised (needs the findings store).
    Compromised,
}

impl Class {
    /// Every class, in the order the gate reports them.
    pub const ALL: [Class; 5] = [
        Class::ExpiredInUse,
        Class::Unknown,
        Class::Stale,
        Class::RotationOverdue,
        Class::Compromised,
    ];

    /// Name on the command line and in the gate's lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::ExpiredInUse => "expired-in-use",
            Class::Unknown => "unknown",
            Class::Stale => "stale",
            Class::RotationOverdue => "rotation-overdue",
            Class::Compromised => "compromised",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Class {
    type Err = String;

    fn from_str(s: &str) -> Result<Class, String> {
        let s = s.trim().replace('_', "-");
        Class::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(&s))
            .ok_or_else(|| {
                let all: Vec<&str> = Class::ALL.iter().map(|c| c.as_str()).collect();
                format!("unknown class {s:?}; the classes are {}", all.join(", "))
            })
    }
}

/// One key on a list the gate requires empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offence {
    /// The list.
    pub class: Class,
    /// The key.
    pub key_id: String,
    /// Why, in a few words (owner, days).
    pub detail: String,
}

impl fmt::Display for Offence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.class, self.key_id, self.detail)
    }
}

impl Review {
    /// The keys on any of `classes`, class by class in [`Class::ALL`]
    /// order, keys in the review's order. `compromised` counts as empty
    /// when the review was made without the findings store.
    pub fn offences(&self, classes: &[Class]) -> Vec<Offence> {
        let mut out = Vec::new();
        let mut add = |class, key_id: &str, detail: String| {
            out.push(Offence {
                class,
                key_id: key_id.to_owned(),
                detail,
            })
        };
        for class in Class::ALL.into_iter().filter(|c| classes.contains(c)) {
            match class {
                Class::ExpiredInUse => {
                    for k in &self.expired_in_use {
                        add(
                            class,
                            &k.key_id,
                            format!(
                                "owner {}, expired {}, used {} days after",
                                k.owner, k.expires, k.days_after_expiry
                            ),
                        );
                    }
                }
                Class::Unknown => {
                    for k in &self.unknown {
                        add(
                            class,
                            &k.key_id,
                            format!(
                                "not in the inventory, {} uses from {} sources, last {}",
                                k.uses, k.sources, k.last_seen
                            ),
                        );
                    }
                }
                Class::Stale => {
                    for k in &self.stale {
                        add(
                            class,
                            &k.key_id,
                            format!(
                                "owner {}, unused {} days ({})",
                                k.owner, k.unused_days, k.basis
                            ),
                        );
                    }
                }
                Class::RotationOverdue => {
                    for k in &self.rotation_overdue {
                        add(
                            class,
                            &k.key_id,
                            format!(
                                "owner {}, {} days since {}, {} days overdue",
                                k.owner, k.days_since, k.basis, k.overdue_days
                            ),
                        );
                    }
                }
                Class::Compromised => {
                    for k in self.compromised.iter().flatten() {
                        add(
                            class,
                            &k.key_id,
                            format!(
                                "confirmed compromised, owner {}",
                                k.owner.as_deref().unwrap_or("unknown")
                            ),
                        );
                    }
                }
            }
        }
        out
    }
}
