//! Logging setup (metrics join here with the observability work).

use tracing_subscriber::EnvFilter;

/// Logs to stderr, filtered by `filter` (a level or tracing directives).
pub fn init_logging(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
