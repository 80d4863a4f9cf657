//! Logging setup (metrics join here with the observability work).

use tracing_subscriber::EnvFilter;

/// Logs to stderr, filtered by `filter` (a level or tracing directives).
pub fn init_logging(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for people at a terminal, not in files or log shippers.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Lets a noisy log through at most once per interval.
#[derive(Debug)]
pub struct RateLimited {
    every: std::time::Duration,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl RateLimited {
    /// At most once per `every`.
    pub fn new(every: std::time::Duration) -> RateLimited {
        RateLimited {
            every,
            last: std::sync::Mutex::new(None),
        }
    }

    /// Whether to log now.
    pub fn allow(&self) -> bool {
        let Ok(mut last) = self.last.lock() else {
            return false;
        };
        let now = std::time::Instant::now();
        match *last {
            Some(t) if now.duration_since(t) < self.every => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limited_lets_one_through_per_interval() {
        let r = RateLimited::new(std::time::Duration::from_secs(3600));
        assert!(r.allow());
        assert!(!r.allow());
    }
}
