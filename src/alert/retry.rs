//! When to try again: exponential backoff with jitter, the receiver's
//! `Retry-After`, and a per-sink pace that every delivery in flight obeys.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio::time::Instant;

/// Exponential backoff: `initial` doubling per retry up to `max`, each wait
/// drawn uniformly from its upper half so retries from many alerts spread
/// out instead of arriving together.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Wait before the first retry (before jitter).
    pub initial: Duration,
    /// Longest wait (before jitter).
    pub max: Duration,
}

impl Backoff {
    /// The wait before retry number `retry` (0 for the first).
    pub fn delay(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32 << retry.min(20))
            .min(self.max);
        let half = base / 2;
        half + base.saturating_sub(half).mul_f64(rng.gen::<f64>())
    }
}

/// A `Retry-After` header: delay seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(at.timestamp_millis().max(0) as u64);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The earliest time the sink's next request may start. A `Retry-After`
/// pauses every delivery of the sink, not just the one that was told; a
/// minimum interval (Slack: one message a second) spaces requests out.
#[derive(Debug)]
pub struct Pacer {
    next: Mutex<Instant>,
    interval: Duration,
}

impl Pacer {
    /// A pacer that spaces requests at least `interval` apart.
    pub fn new(interval: Duration) -> Pacer {
        Pacer {
            next: Mutex::new(Instant::now()),
            interval,
        }
    }

    /// The same pacer with requests spaced at least `interval` apart.
    pub fn with_interval(self, interval: Duration) -> Pacer {
        Pacer { interval, ..self }
    }

    /// Waits for this request's turn.
    pub async fn wait(&self) {
        let now = Instant::now();
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot
        };
        // A timer, even one already due, waits for the next millisecond tick.
        if slot > now {
            tokio::time::sleep_until(slot).await;
        }
    }

    /// Holds every request back for `pause` from now.
    pub fn pause(&self, pause: Duration) {
        let until = Instant::now() + pause;
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        *next = (*next).max(until);
    }
}

impl Default for Pacer {
    /// No spacing: requests wait only for a `Retry-After` pause.
    fn default() -> Self {
        Pacer::new(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let b = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        for (retry, base) in [(0, 1.0), (1, 2.0), (3, 8.0), (6, 60.0), (40, 60.0)] {
            for _ in 0..100 {
                let d = b.delay(retry, &mut rng).as_secs_f64();
                assert!(d >= base / 2.0 && d <= base, "retry {retry}: {d}");
            }
        }
        let spread: std::collections::BTreeSet<_> =
            (0..20).map(|_| b.delay(4, &mut rng).as_millis()).collect();
        assert!(spread.len() > 10, "jitter spreads retries: {spread:?}");
    }

    #[test]
    fn retry_after_in_seconds_or_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:27 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[tokio::test]
    async fn pacer_spaces_requests_and_honours_pauses() {
        let p = Pacer::new(Duration::from_millis(50));
        let t0 = Instant::now();
        p.wait().await;
        p.wait().await;
        p.wait().await;
        let spaced = t0.elapsed();
        assert!(spaced >= Duration::from_millis(100), "{spaced:?}");
        p.pause(Duration::from_millis(200));
        p.wait().await;
        let paused = t0.elapsed();
        assert!(paused >= spaced + Duration::from_millis(200), "{paused:?}");
        assert!(paused < Duration::from_secs(2), "{paused:?}");
    }
}
