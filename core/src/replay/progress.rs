//! The progress line of a long replay: on a terminal only.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the line is redrawn.
const EVERY: Duration = Duration::from_millis(500);

/// Draws `events, events/s, event time reached, bytes read of total, ETA`
/// on stderr, redrawn in place; silent when disabled.
pub(super) struct Progress {
    enabled: bool,
    started: Instant,
    next: Instant,
    total_bytes: Option<u64>,
    bytes_read: Arc<AtomicU64>,
    drawn: bool,
}

impl Progress {
    pub fn new(enabled: bool, total_bytes: Option<u64>, bytes_read: Arc<AtomicU64>) -> Progress {
        let now = Instant::now();
        Progress {
            enabled,
            started: now,
            next: now + EVERY,
            total_bytes,
            bytes_read,
            drawn: false,
        }
    }

    /// Called now and then (every few thousand events).
    pub fn tick(&mut self, events: u64, event_time_ms: Option<i64>) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next = now + EVERY;
        let line = self.line(events, event_time_ms, now.duration_since(self.started));
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
        self.drawn = true;
    }

    fn line(&self, events: u64, event_time_ms: Option<i64>, elapsed: Duration) -> String {
        let secs = elapsed.as_secs_f64().max(1e-3);
        let read = self.bytes_read.load(Ordering::Relaxed);
        let mut s = format!("{events} events, {:.0}/s", events as f64 / secs);
        if let Some(t) = event_time_ms {
            let t = crate::decode::time::format_rfc3339(t);
            s.push_str(&format!(", at {}", &t[..t.len().min(19)]));
        }
        s.push_str(&format!(", {}", super::ByteSize(read)));
        if let Some(total) = self.total_bytes.filter(|&t| t > 0) {
            let done = (read as f64 / total as f64).min(1.0);
            s.push_str(&format!(
                " of {} ({:.0}%)",
                super::ByteSize(total),
                done * 100.0
            ));
            if done > 0.0 {
                let left = secs * (1.0 - done) / done;
                s.push_str(&format!(
                    ", ETA {}",
                    humantime::format_duration(Duration::from_secs(left as u64))
                ));
            }
        }
        s
    }

    /// Clears the line before the summary is printed.
    pub fn finish(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_rate_time_bytes_and_eta() {
        let read = Arc::new(AtomicU64::new(25 << 20));
        let p = Progress::new(true, Some(100 << 20), read);
        let line = p.line(1_000_000, Some(1_767_607_200_000), Duration::from_secs(10));
        assert_eq!(
            line,
            "1000000 events, 100000/s, at 2026-01-05T10:00:00, 25 MiB of 100 MiB (25%), ETA 30s"
        );
    }
}
