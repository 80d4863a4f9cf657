//! Teachings: what a responder said is normal for an identity (a verdict of
//! `expected` on one of its findings). A taught network, client family or
//! action never raises its detector on that identity again, and a taught
//! rate level is a floor under which `rate_spike` stays quiet.
//!
//! Teachings live beside the per-key state, not inside it: they are few,
//! they must never be forgotten the way `forget_after` forgets sources, and
//! the findings store keeps them durably and gives them back at start
//! ([`Engine::teach`](super::Engine::teach) is idempotent by finding id).
//! They are consulted only when a detector is about to raise a finding
//! ([`Ctx::quiet`](super::detect::Ctx::quiet)), never on the per-event path.

use std::sync::atomic::{AtomicUsize, Ordering};

use compact_str::CompactString;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use super::detect::new_user_agent::family;
use super::finding::Detector;
use super::source::SourceId;
use crate::decode::{AuditEvent, Source};
use crate::types::Entity;

/// What became normal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Lesson {
    /// The network (/24, /56, or the named source) of this source.
    Network {
        /// The source as the finding's event gave it.
        source: String,
    },
    /// This user-agent family.
    UserAgent {
        /// The family (`aws-cli`, `Boto3`, ...).
        family: String,
    },
    /// This action.
    Action {
        /// The action name.
        action: String,
    },
    /// Buckets up to this many requests.
    RateLevel {
        /// Highest count per bucket that is normal now.
        floor: u32,
    },
}

impl Lesson {
    /// The detector this lesson quiets.
    pub fn detector(&self) -> Detector {
        match self {
            Lesson::Network { .. } => Detector::NewSource,
            Lesson::UserAgent { .. } => Detector::NewUserAgent,
            Lesson::Action { .. } => Detector::NewAction,
            Lesson::RateLevel { .. } => Detector::RateSpike,
        }
    }

    /// The lesson an `expected` verdict on a finding of `detector` teaches,
    /// read from the finding's event (`source`, `user_agent`, `action`) and,
    /// for a rate, its observed count. `None`: the detector has no dimension
    /// to teach.
    pub fn for_finding(
        detector: Detector,
        source: Option<&str>,
        user_agent: Option<&str>,
        action: Option<&str>,
        observed_count: Option<u64>,
    ) -> Option<Lesson> {
        match detector {
            Detector::NewSource | Detector::SourceFanout => Some(Lesson::Network {
                source: source?.to_owned(),
            }),
            Detector::NewUserAgent => Some(Lesson::UserAgent {
                family: family(user_agent?).to_owned(),
            }),
            Detector::NewAction => Some(Lesson::Action {
                action: action?.to_owned(),
            }),
            Detector::RateSpike => Some(Lesson::RateLevel {
                floor: observed_count?.min(u32::MAX as u64) as u32,
            }),
            _ => None,
        }
    }

    /// The network of a taught source, as the engine packs it.
    fn network(&self) -> Option<u64> {
        let Lesson::Network { source } = self else {
            return None;
        };
        let src = Source::parse(source.as_str().into())?;
        Some(SourceId::of(&src).network())
    }
}

/// One lesson with who taught it, when, and from which finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Teaching {
    /// What became normal.
    #[serde(flatten)]
    pub lesson: Lesson,
    /// Who gave the verdict.
    pub by: String,
    /// When (RFC 3339).
    pub at: String,
    /// The finding the verdict was given on.
    pub finding_id: String,
}

#[derive(Debug, Default)]
struct Taught {
    networks: Vec<u64>,
    rate_floor: u32,
    teachings: Vec<Teaching>,
}

/// Every identity's teachings.
#[derive(Debug, Default)]
pub struct Teachings {
    map: DashMap<(Entity, CompactString), Taught, foldhash::fast::RandomState>,
    len: AtomicUsize,
}

impl Teachings {
    /// Adds a teaching; `false` when this finding already taught it.
    pub fn add(&self, entity: Entity, subject: &str, teaching: Teaching) -> bool {
        let mut t = self
            .map
            .entry((entity, CompactString::from(subject)))
            .or_default();
        if t.teachings
            .iter()
            .any(|x| x.finding_id == teaching.finding_id && x.lesson == teaching.lesson)
        {
            return false;
        }
        if let Some(net) = teaching.lesson.network() {
            t.networks.push(net);
        }
        if let Lesson::RateLevel { floor } = teaching.lesson {
            t.rate_floor = t.rate_floor.max(floor);
        }
        t.teachings.push(teaching);
        self.len.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// An identity's teachings, oldest first.
    pub fn of(&self, entity: Entity, subject: &str) -> Vec<Teaching> {
        self.map
            .get(&(entity, CompactString::from(subject)))
            .map(|t| t.teachings.clone())
            .unwrap_or_default()
    }

    /// Whether a finding of `detector` on this event is something the
    /// identity was taught is normal. `count`: the rate detector's bucket.
    pub fn covers(
        &self,
        entity: Entity,
        subject: &str,
        detector: Detector,
        ev: &AuditEvent<'_>,
        count: Option<u32>,
    ) -> bool {
        if self.len.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let Some(t) = self.map.get(&(entity, CompactString::from(subject))) else {
            return false;
        };
        match detector {
            Detector::NewSource | Detector::SourceFanout => ev
                .source
                .as_ref()
                .is_some_and(|s| t.networks.contains(&SourceId::of(s).network())),
            Detector::NewUserAgent => ev.user_agent.as_deref().is_some_and(|ua| {
                let fam = family(ua);
                t.teachings
                    .iter()
                    .any(|x| matches!(&x.lesson, Lesson::UserAgent { family } if family == fam))
            }),
            Detector::NewAction => ev.action_display().is_some_and(|a| {
                t.teachings
                    .iter()
                    .any(|x| matches!(&x.lesson, Lesson::Action { action } if *action == a))
            }),
            Detector::RateSpike => count.is_some_and(|c| c <= t.rate_floor),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::decode::Outcome;

    fn event(source: &'static str) -> AuditEvent<'static> {
        AuditEvent {
            time_ms: 0,
            key_id: Cow::Borrowed("AKIA1"),
            principal: None,
            source: Source::parse(Cow::Borrowed(source)),
            user_agent: None,
            action: None,
            action_namespace: None,
            outcome: Outcome::Success,
            region: None,
            count: 1,
        }
    }

    fn teaching(lesson: Lesson) -> Teaching {
        Teaching {
            lesson,
            by: "alice".into(),
            at: "2026-11-30T00:00:00Z".into(),
            finding_id: "f1".into(),
        }
    }

    #[test]
    fn a_taught_network_covers_its_neighbours_only() {
        let t = Teachings::default();
        let lesson =
            Lesson::for_finding(Detector::NewSource, Some("203.0.113.7"), None, None, None)
                .unwrap();
        assert!(t.add(Entity::KeyId, "AKIA1", teaching(lesson.clone())));
        assert!(!t.add(Entity::KeyId, "AKIA1", teaching(lesson)));
        let ev = event("203.0.113.99");
        assert!(t.covers(Entity::KeyId, "AKIA1", Detector::NewSource, &ev, None));
        assert!(!t.covers(Entity::KeyId, "AKIA2", Detector::NewSource, &ev, None));
        assert!(!t.covers(Entity::KeyId, "AKIA1", Detector::NewAction, &ev, None));
        let ev = event("198.51.100.1");
        assert!(!t.covers(Entity::KeyId, "AKIA1", Detector::NewSource, &ev, None));
    }

    #[test]
    fn a_taught_rate_is_a_floor() {
        let t = Teachings::default();
        t.add(
            Entity::KeyId,
            "K",
            teaching(Lesson::RateLevel { floor: 500 }),
        );
        let ev = event("203.0.113.1");
        assert!(t.covers(Entity::KeyId, "K", Detector::RateSpike, &ev, Some(500)));
        assert!(!t.covers(Entity::KeyId, "K", Detector::RateSpike, &ev, Some(501)));
    }
}
