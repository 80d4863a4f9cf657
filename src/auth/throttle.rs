//! Failed sign-ins per address: past `http.access.max_failures_per_minute`
//! an address's requests with credentials are refused until its window ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at once. A flood from more addresses than this evicts
/// the oldest windows: memory stays bounded, not the attacker's reach.
const MAX_ADDRESSES: usize = 10_000;

/// Failures per address in fixed windows.
pub struct Throttle {
    max: u32,
    window: Duration,
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Throttle {
    /// At most `max` failures per `window` per address.
    pub fn new(max: u32, window: Duration) -> Throttle {
        Throttle {
            max,
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// How long `ip` must wait, when it has failed too often.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let (start, n) = *seen.get(&ip)?;
        let end = start + self.window;
        (n >= self.max && now < end).then(|| end - now)
    }

    /// Counts a failure of `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_ADDRESSES && !seen.contains_key(&ip) {
            let window = self.window;
            seen.retain(|_, (start, _)| now.saturating_duration_since(*start) < window);
            if seen.len() >= MAX_ADDRESSES {
                if let Some(oldest) = seen.iter().min_by_key(|(_, (s, _))| *s).map(|(k, _)| *k) {
                    seen.remove(&oldest);
                }
            }
        }
        let entry = seen.entry(ip).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_held_off_for_the_rest_of_its_window_only() {
        let t = Throttle::new(3, Duration::from_secs(60));
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(t.blocked(a, t0), None, "after {i} failures");
            t.failed(a, t0 + Duration::from_secs(i));
        }
        let wait = t.blocked(a, t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(wait, Duration::from_secs(50));
        assert_eq!(t.blocked(b, t0), None, "another address is not held off");
        assert_eq!(t.blocked(a, t0 + Duration::from_secs(60)), None);
        // A new window starts from zero.
        t.failed(a, t0 + Duration::from_secs(61));
        assert_eq!(t.blocked(a, t0 + Duration::from_secs(62)), None);
    }
}
