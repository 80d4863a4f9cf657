//! Files watched by polling (the inventory, the network-intelligence files):
//! one loop for both, so they behave alike.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Runs `check` on the blocking pool every `every`, the first time one
/// period from now, until `shutdown`. A slow check delays the next one
/// rather than piling them up.
pub async fn every<F>(every: Duration, shutdown: CancellationToken, check: F)
where
    F: FnOnce() + Clone + Send + 'static,
{
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let _ = tokio::task::spawn_blocking(check.clone()).await;
    }
}
