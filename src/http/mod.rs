//! The HTTP server: `/metrics`, `/healthz`, `/readyz` and the `/api/v1` JSON
//! API. It only reads the daemon's state (and edits suppressions); it never
//! sits in the event path.
//!
//! `api` holds the handlers (every error JSON); `conn` the accept loop and
//! the limits on connections (cap, timeouts, shedding the longest idle);
//! `head` the request-head limits checked before hyper parses a head;
//! [`recent`] the findings the API lists without the store; `triage` the
//! findings store's endpoints (filters, verdicts, audit trail) and the
//! console page at `/`; `incidents` the incidents (`/api/v1/incidents`);
//! `guard` who may call each route ([`crate::auth`]) and the security
//! headers.

mod api;
mod conn;
mod error;
mod guard;
mod head;
mod incidents;
mod query;
pub mod recent;
mod triage;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use axum::routing::{delete, get, post};
use axum::Router;
use tokio_util::sync::CancellationToken;

pub use recent::RecentFindings;

use crate::alert::Alerts;
use crate::auth::Access;
use crate::config::{Entity, HttpConfig, InventoryConfig, Secret};
use crate::source::kafka::SourceStatus;
use keywatch_core::engine::Engine;
use keywatch_core::inventory::InventoryHandle;
use keywatch_core::metrics::Metrics;

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    /// The per-key store.
    pub engine: Engine,
    /// Every metric.
    pub metrics: Arc<Metrics>,
    /// The source's progress, for readiness.
    pub status: Arc<SourceStatus>,
    /// Recent findings.
    pub recent: Arc<RecentFindings>,
    /// The alert pipeline, for suppressions.
    pub alerts: Alerts,
    /// Token for write requests; `None`: read-only.
    pub api_token: Option<Secret>,
    /// Dormancy threshold, seconds (for the dormant-keys gauge).
    pub dormant_s: u32,
    /// The key inventory, for `/api/v1/review` and its gauges.
    pub inventory: Option<InventoryHandle>,
    /// Review thresholds.
    pub inventory_cfg: InventoryConfig,
    /// `/readyz` fails when the last checkpoint is older; `None`: checkpoints off.
    pub checkpoint_max_age: Option<std::time::Duration>,
    /// When the last checkpoint was written (epoch ms; 0: none yet).
    pub last_checkpoint_ms: Arc<AtomicI64>,
    /// When the daemon started.
    pub started: std::time::Instant,
    /// The findings store; `None`: off (`store.path` empty).
    pub store: Option<crate::store::FindingsStore>,
    /// Where verdicts are published for the other instances; `None`: off.
    pub feedback: Option<crate::feedback::topic::FeedbackTopic>,
    /// The `[[response]]` rules' worker: a `confirmed` verdict triggers it;
    /// `None`: no rules.
    pub responder: Option<crate::response::Responder>,
}

/// The routes, behind `access`, with body limit and request timeout and
/// the security headers; every error is JSON.
pub fn router(state: AppState, cfg: &HttpConfig, access: Arc<Access>) -> Router {
    let timeout = cfg.request_timeout.0;
    let tls = cfg.tls.is_some();
    Router::new()
        .route("/metrics", get(api::metrics))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/api/v1/keys/{key_id}", get(api::key))
        .route("/api/v1/incidents", get(incidents::list))
        .route("/api/v1/incidents/{id}", get(incidents::one))
        .route("/api/v1/findings", get(api::findings))
        .route("/api/v1/findings/{id}", get(api::finding))
        .route("/api/v1/findings/{id}/verdict", post(triage::verdict))
        .route("/api/v1/keys/{key_id}/rate", get(triage::rate))
        .route("/api/v1/compromised", get(triage::compromised))
        .route("/", get(triage::console_index))
        .route("/console/", get(triage::console_index))
        .route("/console/console.js", get(triage::console_script))
        .route("/console/console.css", get(triage::console_style))
        .route("/api/v1/review", get(api::review))
        .route("/api/v1/reviews", get(triage::reviews))
        .route("/api/v1/reviews/{seq}", get(triage::stored_review))
        .route(
            "/api/v1/suppressions",
            get(api::suppressions).post(api::add_suppression),
        )
        .route("/api/v1/suppressions/{id}", delete(api::remove_suppression))
        .route("/api/v1/whoami", get(api::whoami))
        .route("/api/v1/tokens", get(api::tokens))
        // Only matched routes: the guard reads the route as registered.
        .route_layer(axum::middleware::from_fn_with_state(
            access.clone(),
            guard::admit,
        ))
        .fallback(api::not_found)
        .layer(axum::Extension(access))
        .layer(axum::extract::DefaultBodyLimit::max(cfg.max_body_bytes))
        .layer(axum::middleware::from_fn(move |req, next| {
            error::with_timeout(req, next, timeout)
        }))
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(axum::middleware::from_fn(move |req, next| {
            guard::security_headers(tls, req, next)
        }))
        .with_state(state)
}

/// Binds `cfg.listen` and serves until `shutdown`; also refreshes the
/// gauges that need a scan of every key. Returns the bound address.
pub async fn serve(
    cfg: &HttpConfig,
    state: AppState,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = conn::bind(&cfg.listen)
        .with_context(|| format!("binding the HTTP server to {} (http.listen)", cfg.listen))?;
    let addr = listener.local_addr()?;
    let tls = match &cfg.tls {
        Some(tls) => Some(crate::auth::tls::acceptor(tls, state.metrics.clone())?),
        None => None,
    };
    let access = Arc::new(Access::new(
        &cfg.access,
        &cfg.listen,
        cfg.tls.as_ref(),
        state.api_token.clone(),
        state.metrics.clone(),
    ));
    for warning in access_warnings(cfg, &access) {
        tracing::warn!("{warning}");
    }
    let app = router(state.clone(), cfg, access);
    let server = tokio::spawn({
        let (cfg, metrics, shutdown) = (cfg.clone(), state.metrics.clone(), shutdown.clone());
        async move { conn::serve(listener, app, &cfg, tls, metrics, shutdown).await }
    });
    let interval = cfg.gauges_interval.0;
    tokio::spawn(async move {
        loop {
            refresh_gauges(&state).await;
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    });
    // The address stays the line's last field: scripts and tests read it there.
    let over = if cfg.tls.is_some() { " over TLS" } else { "" };
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz, /api/v1 and the console at /{over}");
    Ok((addr, server))
}

/// What an operator would otherwise learn from a leak or a wall of 401s,
/// said once at start: reads open beyond loopback, reads that need an
/// identity nobody can prove, credentials in clear beyond loopback.
fn access_warnings(cfg: &HttpConfig, access: &Access) -> Vec<String> {
    let loopback = crate::auth::config::is_loopback(&cfg.listen);
    let mut warnings = Vec::new();
    if !loopback && !access.reads_need_identity() {
        warnings.push(format!(
            "reads are open (http.access.reads = \"open\") on {}, beyond loopback: anyone who reaches the port sees findings, principals, addresses and the audit trail",
            cfg.listen
        ));
    }
    if access.reads_need_identity() && !access.any_method() {
        warnings.push(format!(
            "reads need an identity on {} and no way to sign in is configured: every API read answers 401 (open: {}); configure http.access.proxy, http.access.tokens_path, http.access.users or http.api_token, or set http.access.reads = \"open\"",
            cfg.listen,
            cfg.access.open_paths.join(", ")
        ));
    }
    if !loopback && cfg.tls.is_none() && access.any_method() {
        warnings.push(format!(
            "credentials reach {} in clear: no [http.tls] (fine behind a proxy on the same host that terminates TLS)",
            cfg.listen
        ));
    }
    warnings
}

/// Age buckets of `keywatch_keys_by_age`, by days since first use.
const AGE_BUCKETS: [(&str, u32); 5] = [
    ("lt_1d", 1),
    ("1d_7d", 7),
    ("7d_30d", 30),
    ("30d_90d", 90),
    ("ge_90d", u32::MAX),
];

/// Scans every key off the async threads: dormant keys and keys by age.
async fn refresh_gauges(state: &AppState) {
    state.recent.expire();
    let engine = state.engine.clone();
    let dormant_s = state.dormant_s;
    let scanned = tokio::task::spawn_blocking(move || {
        let now = (engine.stats().watermark_ms.load(Ordering::Relaxed) / 1000).max(0) as u32;
        let mut dormant = 0i64;
        let mut ages = [0i64; AGE_BUCKETS.len()];
        engine.for_each_key(Entity::KeyId, |_, k| {
            if now.saturating_sub(k.last_seen) >= dormant_s {
                dormant += 1;
            }
            let days = now.saturating_sub(k.first_seen) / 86_400;
            let i = AGE_BUCKETS
                .iter()
                .position(|&(_, lt)| days < lt)
                .unwrap_or(AGE_BUCKETS.len() - 1);
            ages[i] += 1;
        });
        (dormant, ages)
    })
    .await;
    if let Ok((dormant, ages)) = scanned {
        state.metrics.keys_dormant.set(dormant);
        for ((name, _), n) in AGE_BUCKETS.iter().zip(ages) {
            state.metrics.keys_by_age.with_label_values(&[name]).set(n);
        }
    }
    if let Some(inv) = &state.inventory {
        let (engine, inv, cfg, metrics) = (
            state.engine.clone(),
            inv.current(),
            state.inventory_cfg.clone(),
            state.metrics.clone(),
        );
        let _ = tokio::task::spawn_blocking(move || {
            let now = (engine.stats().watermark_ms.load(Ordering::Relaxed) / 1000).max(0) as u32;
            let input = keywatch_core::review::ReviewInput {
                engine: &engine,
                inventory: &inv,
                findings: &[],
                now,
                observed_since: None,
                thresholds: keywatch_core::review::Thresholds::from_config(&cfg),
            };
            keywatch_core::review::status(&input).export(&metrics);
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warnings(listen: &str, access: &str, token: bool) -> Vec<String> {
        let mut cfg: HttpConfig = toml::from_str(&format!("[access]\n{access}")).unwrap();
        cfg.listen = listen.to_owned();
        let token = token.then(|| Secret::resolve("a-token-long-enough").unwrap());
        let access = Access::new(
            &cfg.access,
            &cfg.listen,
            None,
            token,
            Arc::new(Metrics::new()),
        );
        access_warnings(&cfg, &access)
    }

    #[test]
    fn start_warns_about_open_reads_beyond_loopback_and_locked_out_reads() {
        assert!(warnings("127.0.0.1:9464", "", false).is_empty());
        assert!(warnings("127.0.0.1:9464", "reads = \"open\"", true).is_empty());
        let open = warnings("0.0.0.0:9464", "reads = \"open\"", false);
        assert_eq!(open.len(), 1, "{open:?}");
        assert!(open[0].contains("reads are open") && open[0].contains("0.0.0.0:9464"));
        // The container's default: beyond loopback, nobody can sign in.
        let locked = warnings("0.0.0.0:9464", "", false);
        assert_eq!(locked.len(), 1, "{locked:?}");
        assert!(locked[0].contains("every API read answers 401") && locked[0].contains("/metrics"));
        let clear = warnings("0.0.0.0:9464", "", true);
        assert_eq!(clear.len(), 1, "{clear:?}");
        assert!(clear[0].contains("in clear"));
    }
}
