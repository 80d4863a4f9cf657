//! The generator's inner event form ([`Call`]), the habits a key's calls are
//! drawn from, and the small pieces of randomness and calendar arithmetic
//! every traffic pattern shares.

use std::net::Ipv4Addr;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::catalog::{ActionDef, Region, Theme};

/// One minute in milliseconds.
pub(crate) const MINUTE_MS: i64 = 60_000;
/// One hour in milliseconds.
pub(crate) const HOUR_MS: i64 = 60 * MINUTE_MS;
/// One day in milliseconds.
pub(crate) const DAY_MS: i64 = 24 * HOUR_MS;

/// Why a call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// The key's policy does not allow the call.
    AccessDenied,
    /// The service rate-limited the caller.
    Throttled,
    /// The object or resource does not exist (not a security signal).
    NotFound,
}

/// One generated API call, before it is rendered in an output format.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Call {
    /// Event time, epoch milliseconds.
    pub time_ms: i64,
    /// Seeds the record's ids and request details.
    pub nonce: u64,
    /// What was called.
    pub action: &'static ActionDef,
    /// Index of the calling key in the scenario.
    pub key: u32,
    /// Caller's address.
    pub source: Ipv4Addr,
    /// Index into the key's user-agent strings.
    pub agent: u8,
    /// Region the call was made in (global services are mapped on output).
    pub region: Region,
    /// Set when the call failed.
    pub error: Option<ErrorKind>,
    /// For a role's key: 0 is the role's own hourly session, `n > 0` the
    /// `n`th session an attacker minted (see `Identity::for_call`).
    pub session: u8,
}

/// Share of a key's everyday failures that are throttling; the rest are
/// access denied (a missing permission on a rarely used path).
const THROTTLE_SHARE: f64 = 0.4;

/// What a key habitually does: which actions, how often they fail, and which
/// client version it runs on a given day.
#[derive(Debug, Clone)]
pub(crate) struct Habits {
    /// Actions with cumulative weights (Zipf-like: a few dominate).
    actions: Vec<(&'static ActionDef, f64)>,
    /// Probability that a call fails.
    error_rate: f64,
    /// Days from which the client runs its next version (sorted).
    agent_bumps: Vec<u32>,
    /// Home region.
    pub region: Region,
}

impl Habits {
    /// `count` actions taken from the front of `theme` (its most common
    /// calls first), weighted 1, 1/2, 1/3, …
    pub fn new(
        theme: Theme,
        count: usize,
        error_rate: f64,
        agent_bumps: Vec<u32>,
        region: Region,
    ) -> Habits {
        let mut total = 0.0;
        let actions = theme
            .iter()
            .take(count.max(1))
            .enumerate()
            .map(|(i, a)| {
                total += 1.0 / (i as f64 + 1.0);
                (*a, total)
            })
            .collect();
        Habits {
            actions,
            error_rate,
            agent_bumps,
            region,
        }
    }

    /// Draws one action by weight.
    pub fn action(&self, rng: &mut SmallRng) -> &'static ActionDef {
        let total = self.actions.last().map_or(1.0, |(_, w)| *w);
        let x = rng.gen::<f64>() * total;
        let i = self.actions.partition_point(|(_, w)| *w <= x);
        self.actions[i.min(self.actions.len() - 1)].0
    }

    /// Draws whether a call fails, and how.
    pub fn error(&self, rng: &mut SmallRng) -> Option<ErrorKind> {
        if rng.gen::<f64>() >= self.error_rate {
            None
        } else if rng.gen::<f64>() < THROTTLE_SHARE {
            Some(ErrorKind::Throttled)
        } else {
            Some(ErrorKind::AccessDenied)
        }
    }

    /// Index of the user-agent string in use on `day`.
    pub fn agent_on(&self, day: u32) -> u8 {
        let n = self.agent_bumps.partition_point(|&d| d <= day);
        u8::try_from(n).unwrap_or(u8::MAX)
    }

    /// How many user-agent versions the key goes through.
    pub fn agent_versions(&self) -> usize {
        self.agent_bumps.len() + 1
    }
}

/// Days (in `1..days`) on which a client is upgraded, sorted; at most `max`.
pub(crate) fn upgrade_days(rng: &mut SmallRng, days: u32, max: usize) -> Vec<u32> {
    let n = if days > 2 { rng.gen_range(0..=max) } else { 0 };
    let mut out: Vec<u32> = (0..n).map(|_| rng.gen_range(1..days)).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Where one key's calls of one day (or one episode) are collected.
pub(crate) struct Sink<'a> {
    key: u32,
    day: u32,
    habits: &'a Habits,
    nonce_seed: u64,
    count: u64,
    out: &'a mut Vec<Call>,
}

impl<'a> Sink<'a> {
    /// Collects calls of key `key` on day `day` into `out`; `nonce_seed`
    /// makes the calls' ids unique and reproducible.
    pub fn new(
        key: u32,
        day: u32,
        habits: &'a Habits,
        nonce_seed: u64,
        out: &'a mut Vec<Call>,
    ) -> Self {
        Sink {
            key,
            day,
            habits,
            nonce_seed,
            count: 0,
            out,
        }
    }

    /// The key's habits.
    pub fn habits(&self) -> &'a Habits {
        self.habits
    }

    /// A habitual call: action, outcome and client drawn from the habits,
    /// made in the home region.
    pub fn usual(&mut self, rng: &mut SmallRng, time_ms: i64, source: Ipv4Addr) {
        self.usual_in(rng, time_ms, source, self.habits.region);
    }

    /// A habitual call made in `region`.
    pub fn usual_in(&mut self, rng: &mut SmallRng, time_ms: i64, source: Ipv4Addr, region: Region) {
        let action = self.habits.action(rng);
        let error = self.habits.error(rng);
        let agent = self.habits.agent_on(self.day);
        self.push(time_ms, source, action, agent, region, error);
    }

    /// A call of a given action with the key's current client.
    pub fn call(
        &mut self,
        time_ms: i64,
        source: Ipv4Addr,
        action: &'static ActionDef,
        error: Option<ErrorKind>,
    ) {
        let agent = self.habits.agent_on(self.day);
        self.push(time_ms, source, action, agent, self.habits.region, error);
    }

    /// A call from another client than the key's own (agent index given).
    pub fn foreign(
        &mut self,
        time_ms: i64,
        source: Ipv4Addr,
        action: &'static ActionDef,
        agent: u8,
        error: Option<ErrorKind>,
    ) {
        self.push(time_ms, source, action, agent, self.habits.region, error);
    }

    fn push(
        &mut self,
        time_ms: i64,
        source: Ipv4Addr,
        action: &'static ActionDef,
        agent: u8,
        region: Region,
        error: Option<ErrorKind>,
    ) {
        self.count += 1;
        self.out.push(Call {
            time_ms,
            nonce: mix(self.nonce_seed, self.count),
            action,
            key: self.key,
            source,
            agent,
            region,
            error,
            session: 0,
        });
    }
}

/// The scenario's calendar.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    /// Midnight UTC starting day 0, epoch milliseconds.
    pub start_ms: i64,
    /// Number of days.
    pub days: u32,
}

impl Span {
    /// Midnight UTC starting day `day`.
    pub fn day_start(&self, day: u32) -> i64 {
        self.start_ms + i64::from(day) * DAY_MS
    }

    /// Day `index` of the scenario at rate multiplier `volume`.
    pub fn day(&self, index: u32, volume: f64) -> Day {
        Day {
            index,
            start_ms: self.day_start(index),
            volume,
        }
    }

    /// Midnight UTC ending the scenario.
    pub fn end_ms(&self) -> i64 {
        self.day_start(self.days)
    }
}

/// The day a pattern is asked about.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Day {
    /// Day number within the scenario (0-based).
    pub index: u32,
    /// Midnight UTC starting the day, epoch milliseconds.
    pub start_ms: i64,
    /// Multiplier on event rates.
    pub volume: f64,
}

impl Day {
    /// Midnight UTC ending the day.
    pub fn end_ms(&self) -> i64 {
        self.start_ms + DAY_MS
    }

    /// The UTC instant of local time `minute_of_day` (may fall outside the
    /// UTC day for keys far from UTC).
    pub fn at_local(&self, utc_offset_min: i32, minute_of_day: f64) -> i64 {
        self.start_ms + ((minute_of_day - f64::from(utc_offset_min)) * MINUTE_MS as f64) as i64
    }

    /// Poisson arrivals over the day in 5-minute buckets: `rate_per_hour`
    /// gets each bucket's midpoint and returns the mean calls per hour
    /// there; `emit` gets every arrival time.
    pub fn arrivals(
        &self,
        rng: &mut SmallRng,
        mut rate_per_hour: impl FnMut(i64) -> f64,
        mut emit: impl FnMut(&mut SmallRng, i64),
    ) {
        const BUCKET_MS: i64 = 5 * MINUTE_MS;
        let mut t0 = self.start_ms;
        while t0 < self.end_ms() {
            let mean = rate_per_hour(t0 + BUCKET_MS / 2) * self.volume / 12.0;
            for _ in 0..poisson(rng, mean) {
                let t = t0 + rng.gen_range(0..BUCKET_MS);
                emit(rng, t);
            }
            t0 += BUCKET_MS;
        }
    }
}

/// One of `items`, the first most likely and each next one less so
/// (60 %, 24 %, 10 %, …): a main host and its occasional alternates.
pub(crate) fn pick_front<T: Copy>(rng: &mut SmallRng, items: &[T]) -> T {
    let mut i = 0;
    while i + 1 < items.len() && rng.gen::<f64>() < 0.4 {
        i += 1;
    }
    items[i]
}

/// Local minute of the day (0..1440) at `time_ms` for a UTC offset.
pub(crate) fn local_minute(time_ms: i64, utc_offset_min: i32) -> f64 {
    let local = time_ms + i64::from(utc_offset_min) * MINUTE_MS;
    local.rem_euclid(DAY_MS) as f64 / MINUTE_MS as f64
}

/// Day of the week at `time_ms` UTC, Monday = 0.
pub(crate) fn weekday(time_ms: i64) -> u32 {
    // 1970-01-01 was a Thursday.
    ((time_ms.div_euclid(DAY_MS) + 3).rem_euclid(7)) as u32
}

/// Saturday or Sunday at `time_ms` UTC.
pub(crate) fn is_weekend(time_ms: i64) -> bool {
    weekday(time_ms) >= 5
}

/// Saturday or Sunday in local time at `time_ms`.
pub(crate) fn is_local_weekend(time_ms: i64, utc_offset_min: i32) -> bool {
    is_weekend(time_ms + i64::from(utc_offset_min) * MINUTE_MS)
}

/// Poisson-distributed count with the given mean (Knuth for small means, a
/// rounded normal for large ones).
pub(crate) fn poisson(rng: &mut SmallRng, mean: f64) -> u32 {
    if mean.is_nan() || mean <= 0.0 {
        return 0;
    }
    if mean < 30.0 {
        let limit = (-mean).exp();
        let mut k = 0;
        let mut p = rng.gen::<f64>();
        while p > limit {
            k += 1;
            p *= rng.gen::<f64>();
        }
        k
    } else {
        (mean + mean.sqrt() * normal(rng)).round().max(0.0) as u32
    }
}

/// Standard normal deviate (Box–Muller).
pub(crate) fn normal(rng: &mut SmallRng) -> f64 {
    let u1 = rng.gen::<f64>().max(f64::MIN_POSITIVE);
    let u2 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A day-to-day wobble around 1 (log-normal, ~15 % spread).
pub(crate) fn day_factor(rng: &mut SmallRng) -> f64 {
    (0.15 * normal(rng)).exp()
}

/// Uniform in `[lo, hi)` on a log scale: rates spread over orders of magnitude.
pub(crate) fn log_uniform(rng: &mut SmallRng, lo: f64, hi: f64) -> f64 {
    (lo.ln() + rng.gen::<f64>() * (hi.ln() - lo.ln())).exp()
}

/// SplitMix64 finaliser over two words: a well-spread seed for a sub-stream.
pub(crate) fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A random stream for one purpose of one key on one day.
pub(crate) fn stream(key_seed: u64, day: u32, purpose: u64) -> SmallRng {
    SmallRng::seed_from_u64(mix(mix(key_seed, u64::from(day)), purpose))
}
