//! How often a key meets something new, the networks it forgot (and came
//! back to), and what keeps one incident one finding: cooldowns and the
//! runs of findings that fold into one.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::engine::baseline::Half;
use crate::types::Secs;

/// Networks forgotten a key remembers ([`Forgotten`]).
pub const FORGOTTEN: usize = 32;

/// Return days a key remembers, and how many make a key one that draws from
/// a pool wider than its memory.
pub const RETURN_DAYS: usize = 3;

/// What few keys carry, in one box: cooldowns (a key with findings) and
/// the networks it forgot (a key using more networks than it remembers).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rare {
    /// Active cooldowns.
    pub cooldowns: Vec<Cooldown>,
    /// Networks forgotten for lack of room; boxed, as few keys overflow.
    pub forgotten: Option<Box<Forgotten>>,
    /// Open storms: detectors that raised several findings on the key
    /// without a verdict, whose further findings fold into the open one.
    pub folds: Vec<Fold>,
    /// A principal's latest event from each partition other than that of
    /// its latest event overall (packed [`Position`](super::Position), record): events of
    /// all its partitions replayed after a restore are applied once. Not
    /// part of the state's encoding: checkpoints carry them by topic and
    /// partition (the shell's `checkpoint::Checkpoint::principal_positions`),
    /// as the numbers of partitions are this process's own.
    #[serde(skip)]
    pub elsewhere: Vec<(u64, u16)>,
    /// Firsts (networks, clients, actions) whose finding waits for the key
    /// to do something else it does not (see [`Held`]). Not part of the
    /// state's encoding: a hold lasts an hour at most, and one open at a
    /// restart is dropped.
    #[serde(skip)]
    pub held: Vec<Held>,
}

/// Firsts a key holds at most, waiting for corroboration: a person between
/// a few new networks in an hour, not a fan-out (that is `source_fanout`'s).
pub const HELD: usize = 4;

/// What a held finding is about (see [`crate::engine::detect::hold`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldOn {
    /// A new network (`new_source`): the source first seen from it.
    Network(crate::engine::source::SourceId),
    /// A new client family (`new_user_agent`), by its value hash.
    Client(u32),
    /// New actions (`new_action`), by the first's value hash (the
    /// finding's cooldown dimension).
    Actions(u32),
    /// A burst in the hour before a job's hour, within the job's usual size
    /// (`rate_spike`): a job run an hour early, when its own hour then goes
    /// missing. Raised once the job's hour brings this many requests.
    Run(u16),
}

/// A first on a key that has not shown such firsts are rare for it (a new
/// network, client or action), whose finding is written but not raised: it
/// is raised when the key does something else it does not do before
/// `until`, and dropped after.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    /// What is held.
    pub on: HeldOn,
    /// When it was first used.
    pub since: Secs,
    /// The hold ends.
    pub until: Secs,
    /// Calls of actions the key had not called that the hold matched (from
    /// the held network, with the held client, or any for held actions),
    /// the first use's included.
    pub gathered: u16,
    /// The finding as it would have been raised at the first use.
    pub report: Box<crate::engine::detect::Report>,
}

/// One detector's run of findings on one key (see [`KeyState::fold`](super::KeyState::fold)).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fold {
    /// Detector index.
    pub detector: u8,
    /// Findings raised in this run.
    pub raised: u8,
    /// The most severe of them ([`crate::engine::Severity`] as a number).
    pub top: u8,
    /// The largest size among them (a bucket's count, a window's networks;
    /// 0 for findings without one).
    pub size: u32,
    /// Findings folded into the open one since.
    pub folded: u32,
    /// When the run began.
    pub since: Secs,
    /// The latest finding of the run, raised or folded.
    pub last: Secs,
}

/// What [`KeyState::fold`](super::KeyState::fold) decided for a finding about to be raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folding {
    /// Raise it: the run is young, or the finding is graver or far bigger
    /// than any before it in the run.
    Raise,
    /// Fold it into the open finding: the run has raised enough already.
    Fold,
}

/// Quiet days every novelty estimate starts with (a prior): the share of
/// days bringing something new is only believed high once the key has shown
/// it on several days.
pub const PRIOR_QUIET_DAYS: f32 = 3.0;

/// Which kind of value a first sighting is of, for [`Novelty`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Novel {
    /// A network (/24, /56) the key had not used within `forget_after`.
    Network = 0,
    /// A user-agent family.
    UserAgent = 1,
    /// An action.
    Action = 2,
    /// A wider network (/16, /48) the key had not used within
    /// `forget_after`, with its new network.
    Wide = 4,

    /// A burst the key's hour-of-day rate model did not expect and did not
    /// alert on (a bucket over its line in learning, under a burst key's
    /// floor, called benign by a verdict, or folded into a run already
    /// raised): a key whose days bring these as a habit is used in bursts
    /// at irregular times.
    Burst = 3,
}

/// How often a key meets values it has not used, per kind of value: the
/// share of its recent active days that brought at least one, with every
/// finished day's weight decaying by the baseline half-life. A day that
/// brought fifty new networks counts once, as a day that brought one: a
/// fan-out cannot make a key look like one that roams. The key's first day
/// counts as a day but brings nothing new: it shows the key's repertoire,
/// not how often that changes.
///
/// This is the estimate new-value detectors judge surprise by: a key that
/// meets a new network on most days tells nothing by meeting another; one
/// that met its last new network a month ago tells a lot. 14 bytes in place.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Novelty {
    /// Finished active days, decayed.
    pub(super) days: Half,
    /// Of them, days that brought a new value, per [`Novel`], decayed.
    new_days: [Half; 5],
    /// Kinds of value ([`Novel`] bits) the current active day brought.
    today: u8,
}

impl Novelty {
    /// The current active day ends: its findings join the decayed history.
    pub fn next_day(&mut self, decay: f32) {
        self.days = Half::new(self.days.get() * decay + 1.0);
        for (i, d) in self.new_days.iter_mut().enumerate() {
            let brought = f32::from(self.today >> i & 1);
            *d = Half::new(d.get() * decay + brought);
        }
        self.today = 0;
    }

    /// The current day brought a new value of `kind`.
    pub fn saw(&mut self, kind: Novel) {
        self.today |= 1 << kind as u8;
    }

    /// The share of the key's past active days that brought a new value of
    /// `kind`, in [0, 1]: the chance that a day of this key brings one. The
    /// current day is left out: an attacker controls the present, and a
    /// thief's own first new network must not make his second expected. Shrunk towards "rarely" by [`PRIOR_QUIET_DAYS`]: a
    /// key two days old that met one new value has not shown that it meets
    /// them every other day.
    pub fn rate(&self, kind: Novel) -> f32 {
        let days = self.days.get() + PRIOR_QUIET_DAYS;
        (self.new_days[kind as usize].get() / days).clamp(0.0, 1.0)
    }

    /// How often the key could meet a new value of `kind` without having
    /// shown it yet: the share with one more day that brought one
    /// ([`Novelty::rate`] plus one in the numerator). A key whose share is
    /// zero is believed to meet new values rarely only after enough days
    /// to make one more unlikely: about 1/10 after a week of daily use,
    /// 1/24 after a month (the decay caps the days a key can show at about
    /// 21, or 15 for one used on weekdays).
    pub fn upper(&self, kind: Novel) -> f32 {
        let days = self.days.get() + PRIOR_QUIET_DAYS;
        ((self.new_days[kind as usize].get() + 1.0) / days).clamp(0.0, 1.0)
    }

    /// Past active days the estimate rests on (decayed).
    pub fn days(&self) -> f32 {
        self.days.get()
    }
}

/// The latest networks a key forgot for lack of room while still using them
/// (hashed), and the days it came back to one: a key drawing from a pool
/// wider than `max_sources_per_key` comes back every day, a key after one
/// fan-out does not.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Forgotten {
    /// A ring of up to [`FORGOTTEN`] network hashes.
    #[serde(deserialize_with = "crate::types::bounded_seq")]
    pub(super) networks: SmallVec<[u32; FORGOTTEN]>,
    /// Where the next one goes once the ring is full.
    pub(super) next: u8,
    /// The latest [`RETURN_DAYS`] distinct days (UTC, days since the epoch
    /// plus one, newest first; 0: none) the key came back to one of them.
    pub(super) days: [u16; RETURN_DAYS],
}

/// A network's hash in [`Forgotten`]: the top bits of a multiplicative hash.
pub(super) fn network_hash(network: u64) -> u32 {
    (network.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
}

/// A cooldown: `detector` on dimension `dim` stays quiet until `until`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Cooldown {
    /// Detector index.
    pub detector: u8,
    /// Hash of the dimension (network, action, ...); 0 when the detector has none.
    pub dim: u32,
    /// Quiet until this event time.
    pub until: Secs,
}
