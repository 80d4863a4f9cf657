//! The demo's traffic: a generated fleet whose past weeks warm the daemon's
//! baselines as fast as it takes them, then current traffic on the wall
//! clock with the attacks injected one after another.
//!
//! Both phases are the same fleet at the same rates, so the live traffic
//! fits the learned baselines and only the attacks stand out. That is also
//! why the live rate is modest: every event of it stands on about three
//! million events of history, all of which the warm-up must produce.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cmd::produce::EventProducer;
use crate::source::kafka::SourceStatus;
use keywatch_core::gen::{Attack, AttackKind, AttackSet, Format, GenConfig, Scenario};

/// Days of past traffic before today: more than every learning period
/// (7 days), and a revived key's 3 to 5 days of use still lie more than the
/// dormancy threshold (30 days) back.
pub const HISTORY_DAYS: u32 = 36;
/// Days the scenario runs on after today, so a demo left running keeps
/// getting traffic (the scenario needs 50 days for its dormant key).
const LIVE_DAYS: u32 = 10;
/// The highest live rate: its warm-up is about five million events, a
/// minute and a half of a release build on two cores.
pub const MAX_RATE: f64 = 1.5;
/// How much faster than planned the attacks unfold: a 15-minute burst in a
/// minute, an hour of a thief's reconnaissance in four.
const SQUEEZE: f64 = 15.0;
/// How far the producer may run ahead of the consumer in the warm-up: the
/// mock broker keeps only ~10k messages per partition.
const MAX_AHEAD: u64 = 20_000;
/// The first attack this long after the live phase begins.
pub const FIRST_ATTACK: Duration = Duration::from_secs(20);
/// Attacks this far apart when the demo runs until Ctrl-C.
const ATTACK_EVERY: Duration = Duration::from_secs(30);
/// Time left after the last attack for it to be found, when the demo has a
/// `--duration`.
const LAST_ATTACK_TAIL: Duration = Duration::from_secs(15);

/// The fleet, sized to the rate asked.
pub struct Plan {
    /// The generated fleet; its attacks are moved into the live phase.
    pub scenario: Scenario,
    /// Mean events per second of the fleet (what `--rate` asked).
    pub rate: f64,
}

impl Plan {
    /// A fleet of `keys` normal keys plus one per attack, whose traffic
    /// averages `rate` events per second over its last week.
    pub fn new(seed: u64, keys: usize, rate: f64) -> Plan {
        let today = chrono::Utc::now().date_naive();
        let start = today - chrono::Days::new(u64::from(HISTORY_DAYS));
        let config = |volume: f64| GenConfig {
            seed,
            keys,
            start_ms: start
                .and_hms_opt(0, 0, 0)
                .unwrap_or_default()
                .and_utc()
                .timestamp_millis(),
            days: (HISTORY_DAYS + LIVE_DAYS).max(50),
            attacks: true,
            attack_set: AttackSet::Classic,
            format: Format::Generic,
            volume,
        };
        let mut unit = Scenario::new(config(1.0));
        let end = unit.config().start_ms + i64::from(unit.config().days) * 86_400_000;
        // Out of the warm-up's way until the live phase schedules them.
        unit.retime_attacks(end - 86_400_000, 0, 1.0);
        let per_volume = unit.calls_per_second(HISTORY_DAYS - 7..HISTORY_DAYS);
        let mut scenario = Scenario::new(config(rate / per_volume.max(1e-9)));
        scenario.retime_attacks(end - 86_400_000, 0, 1.0);
        Plan { scenario, rate }
    }
}

/// What the traffic thread tells the console.
#[derive(Debug, Default)]
pub struct Progress {
    /// Event time of the last warm-up record produced (epoch ms).
    pub history_at_ms: AtomicI64,
    /// Records of the warm-up produced.
    pub history_records: AtomicU64,
    /// When the live phase began (epoch ms); 0 during the warm-up.
    pub live_since_ms: AtomicI64,
    /// The attacks as scheduled when the live phase began.
    pub attacks: Mutex<Vec<Attack>>,
}

/// Produces the warm-up, waits until the daemon has applied it, schedules
/// the attacks, then sends current traffic until `stop` (or the scenario's
/// end). `deadline` is when the demo will stop, if it has a `--duration`.
pub fn produce(
    bootstrap: &str,
    topic: &str,
    mut plan: Plan,
    status: &SourceStatus,
    progress: &Progress,
    stop: &AtomicBool,
    deadline: Option<Instant>,
) -> anyhow::Result<()> {
    let mut producer = EventProducer::new(bootstrap, topic)?;
    let started = Instant::now();
    let cut = now_ms();
    for ev in plan.scenario.events() {
        if ev.time_ms >= cut {
            break;
        }
        while producer.sent() > status.messages.load(Ordering::Relaxed) + MAX_AHEAD {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        producer.send(&ev)?;
        progress.history_at_ms.store(ev.time_ms, Ordering::Relaxed);
        progress
            .history_records
            .store(producer.sent(), Ordering::Relaxed);
    }
    producer.flush(Duration::from_secs(30))?;
    while status.messages.load(Ordering::Relaxed) < producer.sent() {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let live_since = now_ms();
    let every = attack_spacing(plan.scenario.attacks().len(), deadline);
    plan.scenario.retime_attacks(
        live_since + FIRST_ATTACK.as_millis() as i64,
        every.as_millis() as i64,
        SQUEEZE,
    );
    eprintln!(
        "\nkeywatch demo: warm-up done: {} records of {HISTORY_DAYS} days applied in {:.1} s.\n\
         Now live: about {} events/s with event times of now (the rate follows the fleet's \
         daily rhythm).\nAttacks coming up, each {SQUEEZE} times faster than planned so you see \
         it in time:",
        producer.sent(),
        started.elapsed().as_secs_f64(),
        plan.rate,
    );
    for attack in plan.scenario.attacks() {
        eprintln!(
            "  in {:>3} s  {} ({} should find it)",
            (attack.start_ms - live_since + 999) / 1000,
            headline(attack.kind),
            attack.detector
        );
    }
    eprintln!();
    *progress.attacks.lock().unwrap_or_else(|e| e.into_inner()) = plan.scenario.attacks().to_vec();
    progress.live_since_ms.store(live_since, Ordering::Relaxed);

    send_live(&mut producer, &plan, cut, stop)
}

/// Sends the scenario from `from_ms` on, each event when the wall clock
/// reaches its time. Events of the warm-up's own duration go at once.
fn send_live(
    producer: &mut EventProducer,
    plan: &Plan,
    from_ms: i64,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut upcoming = plan.scenario.events_from(from_ms).peekable();
    while !stop.load(Ordering::Relaxed) {
        let now = now_ms();
        while let Some(ev) = upcoming.next_if(|e| e.time_ms <= now) {
            producer.send(&ev)?;
        }
        let Some(next) = upcoming.peek() else {
            eprintln!("keywatch demo: the generated traffic ends here.");
            break;
        };
        let wait = (next.time_ms - now).clamp(1, 50) as u64;
        std::thread::sleep(Duration::from_millis(wait));
    }
    Ok(())
}

/// Attacks every 30 s; closer together when the demo would end first, so
/// that each is due with time left to find it (but never under 5 s apart).
fn attack_spacing(attacks: usize, deadline: Option<Instant>) -> Duration {
    let Some(deadline) = deadline else {
        return ATTACK_EVERY;
    };
    let left = deadline
        .saturating_duration_since(Instant::now())
        .saturating_sub(FIRST_ATTACK + LAST_ATTACK_TAIL);
    (left / attacks.max(2).saturating_sub(1) as u32).clamp(Duration::from_secs(5), ATTACK_EVERY)
}

/// What an attack looks like, in a few words.
pub fn headline(kind: AttackKind) -> &'static str {
    match kind {
        AttackKind::StolenKeyNewNetwork => "a stolen key used from a network it has never used",
        AttackKind::Burst => "a burst: 20 times a key's busiest rate",
        AttackKind::DormantRevival => "a key silent for 35 days used again",
        AttackKind::ErrorStorm => "hundreds of AccessDenied failures: a key's permissions probed",
        AttackKind::Fanout => "one key used from 50 hosts in 50 networks",
        AttackKind::ScopeCreep => {
            "a key with a small fixed job creating an IAM user and access key"
        }
        other => other.name(),
    }
}

/// The wall clock, epoch ms.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attacks_fit_before_the_deadline_or_come_every_half_minute() {
        assert_eq!(attack_spacing(6, None), ATTACK_EVERY);
        let soon = Instant::now() + Duration::from_secs(65);
        let every = attack_spacing(6, Some(soon));
        assert!(
            every >= Duration::from_secs(5) && every <= Duration::from_secs(6),
            "{every:?}"
        );
        let later = Instant::now() + Duration::from_secs(3600);
        assert_eq!(attack_spacing(6, Some(later)), ATTACK_EVERY);
    }

    #[test]
    fn the_fleet_is_sized_to_the_rate_asked() {
        let plan = Plan::new(1, 8, 0.2);
        let week = HISTORY_DAYS - 7..HISTORY_DAYS;
        let rate = plan.scenario.calls_per_second(week);
        assert!((rate - 0.2).abs() < 0.2 * 0.05, "{rate}");
        let live_since = now_ms();
        assert!(
            plan.scenario
                .attacks()
                .iter()
                .all(|a| a.start_ms > live_since),
            "attacks wait for the live phase"
        );
    }
}
