//! Where an attack is laid out: the attacked key's calls on the attack day
//! ([`Stage`]), and what a planned attack leaves behind ([`Plan`]).

use std::ops::Range;

use rand::rngs::SmallRng;
use rand::Rng;

use crate::gen::archetype::{Archetype, Built};
use crate::gen::key::Role;
use crate::gen::traffic::{Call, Day, Habits, Sink, Span, HOUR_MS};

/// Silence before a dormant key comes back, in days.
pub(super) const DORMANT_DAYS: u32 = 45;

/// Salts the nonces of attack calls.
pub(super) const ATTACK_NONCES: u64 = 0xA77AC;

/// Where an attack's calls are laid out.
pub(super) struct Stage {
    pub(super) index: u32,
    pub(super) nonces: u64,
    pub(super) span: Span,
    /// The day of the attack.
    pub(super) day: Day,
    pub(super) calls: Vec<Call>,
}

impl Stage {
    /// Collects calls of the attacked key, made with its habits.
    pub(super) fn sink<'a>(&'a mut self, habits: &'a Habits) -> Sink<'a> {
        Sink::new(
            self.index,
            self.day.index,
            habits,
            self.nonces,
            &mut self.calls,
        )
    }

    /// A start time on the attack day, at most `latest_hour` past midnight.
    pub(super) fn start(&self, rng: &mut SmallRng, latest_hour: i64) -> i64 {
        self.day.start_ms + rng.gen_range(0..latest_hour * HOUR_MS)
    }
}

/// The attacked key and what it did.
pub(super) struct Plan {
    pub(super) archetype: Archetype,
    pub(super) built: Built,
    /// Days of normal use.
    pub(super) active: Range<u32>,
    pub(super) description: String,
    /// Set for a role used through sessions.
    pub(super) role: Option<Role>,
    /// See [`Attack::deadline_ms`].
    pub(super) deadline_ms: Option<i64>,
}

impl Plan {
    pub(super) fn new(
        archetype: Archetype,
        built: Built,
        stage: &Stage,
        description: String,
    ) -> Plan {
        Plan {
            archetype,
            built,
            active: 0..stage.span.days,
            description,
            role: None,
            deadline_ms: None,
        }
    }
}
