//! Connections: the accept loop and how many connections stay open, for how
//! long, and which one goes when a new one needs room.
//!
//! hyper closes a connection whose request head does not arrive within
//! `http.header_read_timeout` (silent and slow-header clients). On top of it:
//! at most `http.max_connections` are open; a newcomer past the cap closes
//! the connection idle the longest (no request being handled), so a flood of
//! idle sockets cannot keep `/healthz` or `/metrics` out; a keep-alive
//! connection idle for `http.idle_timeout` is closed; and the cap is kept
//! below the open-files limit, so `accept` never fails for lack of one.
//! With `[http.tls]` each connection's TLS handshake runs on its own task
//! within `http.header_read_timeout`, after it was admitted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::Request;
use axum::Router;
use hyper::body::{Body as _, Incoming};
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::head::{Answered, HeadLimit};
use crate::auth::ClientCert;
use crate::config::HttpConfig;
use keywatch_core::metrics::Metrics;

/// File descriptors kept out of the connection cap for everything else the
/// daemon opens: Kafka sockets, checkpoint and dead-letter files, sink
/// clients.
const FD_RESERVE: u64 = 256;

/// Labels of `keywatch_http_connections_rejected_total`, exported from the
/// start so a rate over them is defined before the first.
const REJECT_REASONS: [&str; 6] = [
    "shed_idle",
    "over_capacity",
    "header_timeout",
    "idle_timeout",
    "accept_error",
    "tls_handshake",
];

/// One open connection, as the cap and the idle sweep see it.
struct Conn {
    /// Since when no request is being handled; `None` while one is.
    idle_since: Option<Instant>,
    /// A response has been sent: the connection is now a keep-alive one.
    served: bool,
    /// Cancelled to drop the connection at once.
    close: CancellationToken,
}

/// The open connections.
struct Conns {
    open: Mutex<HashMap<u64, Conn>>,
    next_id: AtomicU64,
    max: usize,
    metrics: Arc<Metrics>,
    all_closed: Notify,
}

impl Conns {
    fn new(max: usize, metrics: Arc<Metrics>) -> Conns {
        for reason in REJECT_REASONS {
            metrics
                .http_connections_rejected
                .with_label_values(&[reason]);
        }
        Conns {
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            max,
            metrics,
            all_closed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Conn>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count(&self, reason: &str) {
        debug_assert!(REJECT_REASONS.contains(&reason), "{reason}");
        self.metrics
            .http_connections_rejected
            .with_label_values(&[reason])
            .inc();
    }

    /// Makes room for a new connection: past the cap, the one idle the
    /// longest is closed; when all are busy the newcomer is refused (`None`).
    fn admit(self: &Arc<Self>, now: Instant) -> Option<ConnGuard> {
        let mut open = self.lock();
        if open.len() >= self.max {
            let oldest = open
                .iter()
                .filter_map(|(id, c)| Some((c.idle_since?, *id)))
                .min();
            let Some((_, id)) = oldest else {
                self.count("over_capacity");
                return None;
            };
            if let Some(shed) = open.remove(&id) {
                shed.close.cancel();
            }
            self.count("shed_idle");
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let close = CancellationToken::new();
        open.insert(
            id,
            Conn {
                idle_since: Some(now),
                served: false,
                close: close.clone(),
            },
        );
        self.metrics.http_connections.set(open.len() as i64);
        Some(ConnGuard {
            conns: self.clone(),
            id,
            close,
        })
    }

    /// Closes keep-alive connections idle for `timeout` or longer.
    fn sweep(&self, now: Instant, timeout: Duration) {
        let mut open = self.lock();
        let before = open.len();
        open.retain(|_, c| {
            let expired = c.served
                && c.idle_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= timeout);
            if expired {
                c.close.cancel();
                self.count("idle_timeout");
            }
            !expired
        });
        if open.len() != before {
            self.metrics.http_connections.set(open.len() as i64);
            if open.is_empty() {
                self.all_closed.notify_waiters();
            }
        }
    }

    fn set_busy(&self, id: u64, busy: bool) {
        if let Some(c) = self.lock().get_mut(&id) {
            c.idle_since = if busy { None } else { Some(Instant::now()) };
            c.served |= !busy;
        }
    }

    /// Resolves once no connection is open.
    async fn closed(&self) {
        loop {
            let notified = self.all_closed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().is_empty() {
                return;
            }
            notified.await;
        }
    }
}

/// Held by a connection's task: leaving the table on drop.
struct ConnGuard {
    conns: Arc<Conns>,
    id: u64,
    close: CancellationToken,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut open = self.conns.lock();
        if open.remove(&self.id).is_some() {
            self.conns.metrics.http_connections.set(open.len() as i64);
            if open.is_empty() {
                self.conns.all_closed.notify_waiters();
            }
        }
    }
}

/// Marks a connection busy while a request is handled.
struct Busy {
    conns: Arc<Conns>,
    id: u64,
}

impl Busy {
    fn new(conns: Arc<Conns>, id: u64) -> Busy {
        conns.set_busy(id, true);
        Busy { conns, id }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.conns.set_busy(self.id, false);
    }
}

/// Raises the open-files soft limit to the hard limit (a connection is a
/// file); returns the soft limit now in force, `None` when unknown.
#[cfg(unix)]
// `rlim_t` is 64 bits here, 32 on some 32-bit targets.
#[allow(clippy::unnecessary_cast)]
fn raise_open_files_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Some(raised.rlim_cur as u64);
        }
    }
    Some(lim.rlim_cur as u64)
}

#[cfg(not(unix))]
fn raise_open_files_limit() -> Option<u64> {
    None
}

/// `http.max_connections`, lowered to fit the open-files limit.
fn connection_cap(configured: usize) -> usize {
    let Some(limit) = raise_open_files_limit() else {
        return configured;
    };
    let fits = limit.saturating_sub(FD_RESERVE).max(1);
    if (configured as u64) <= fits {
        return configured;
    }
    tracing::warn!(
        max_connections = configured,
        open_files_limit = limit,
        cap = fits,
        "http.max_connections lowered to fit the open-files limit (raise `ulimit -n`)"
    );
    fits as usize
}

/// Connections the kernel completes before they are accepted. The default
/// (128) overflows under a connection flood whenever the accept loop waits
/// for a CPU, and a dropped SYN costs the client a one-second retransmit:
/// `/healthz` must not wait behind it. The kernel caps it at `somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `listen` (an address and port) with a deep accept queue.
pub(super) fn bind(listen: &str) -> std::io::Result<TcpListener> {
    let addr: std::net::SocketAddr = listen
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let socket = match addr {
        std::net::SocketAddr::V4(_) => TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // As std and tokio do: a restart can bind while old sockets linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown`,
/// then lets the requests in flight finish and returns once every
/// connection is closed.
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    cfg: &HttpConfig,
    tls: Option<TlsAcceptor>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let conns = Arc::new(Conns::new(connection_cap(cfg.max_connections), metrics));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout.0);
    let http = Arc::new(http);
    let idle_timeout = cfg.idle_timeout.0;
    let handshake_timeout = cfg.header_read_timeout.0;
    let sweeper = {
        let (conns, stop) = (conns.clone(), shutdown.clone());
        tokio::spawn(async move {
            // A quarter of the timeout: an idle connection goes within 1.25x.
            let period = (idle_timeout / 4).max(Duration::from_millis(10));
            let mut tick = tokio::time::interval(period);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => conns.sweep(Instant::now(), idle_timeout),
                }
            }
        })
    };
    let mut last_warned: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                conns.count("accept_error");
                if last_warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    last_warned = Some(Instant::now());
                }
                // Out of files or memory: give closing connections a moment.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(guard) = conns.admit(Instant::now()) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (http, router, shutdown) = (http.clone(), router.clone(), shutdown.clone());
        let tls = tls.clone();
        tokio::spawn(async move {
            let peer = stream.peer_addr().ok();
            let Some(tls) = tls else {
                return serve_connection(stream, peer, None, guard, http, router, shutdown).await;
            };
            // The handshake has the time a plain client has for its headers.
            let close = guard.close.clone();
            let accepted = tokio::select! {
                a = tokio::time::timeout(handshake_timeout, tls.accept(stream)) => a,
                () = close.cancelled() => return,
            };
            match accepted {
                Ok(Ok(stream)) => {
                    let cert = crate::auth::tls::client_cert(stream.get_ref().1);
                    serve_connection(stream, peer, cert, guard, http, router, shutdown).await
                }
                Ok(Err(e)) => {
                    guard.conns.count("tls_handshake");
                    tracing::debug!(error = %e, "TLS handshake failed");
                }
                Err(_) => guard.conns.count("tls_handshake"),
            }
        });
    }
    drop(listener);
    sweeper.abort();
    conns.closed().await;
}

/// One connection (`peer`, with its verified client certificate `cert`),
/// until the client leaves, a timeout or the cap closes it, or shutdown
/// lets its request in flight finish.
async fn serve_connection<S>(
    stream: S,
    peer: Option<SocketAddr>,
    cert: Option<ClientCert>,
    guard: ConnGuard,
    http: Arc<http1::Builder>,
    router: Router,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let router = TowerToHyperService::new(router);
    let (conns, id) = (guard.conns.clone(), guard.id);
    let answered = Answered::new();
    let io = TokioIo::new(HeadLimit::new(stream, answered.clone()));
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        // The guard reads where a request came from and its certificate;
        // handlers that keep an audit trail read the address too.
        if let Some(peer) = peer {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
        }
        if let Some(cert) = &cert {
            req.extensions_mut().insert(cert.clone());
        }
        let busy = Busy::new(conns.clone(), id);
        // Where the next head starts, for `HeadLimit`.
        let body_len = req.body().size_hint().exact();
        let response = router.call(req);
        let answered = answered.clone();
        async move {
            let response = response.await;
            drop(busy);
            answered.set(body_len);
            response
        }
    });
    let conn = http.serve_connection(io, service);
    tokio::pin!(conn);
    let close = guard.close.clone();
    let served = tokio::select! {
        served = conn.as_mut() => served,
        () = close.cancelled() => return,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                served = conn.as_mut() => served,
                () = close.cancelled() => return,
            }
        }
    };
    match served {
        Err(e) if e.is_timeout() => guard.conns.count("header_timeout"),
        Err(e) => tracing::debug!(error = %e, "HTTP connection ended with an error"),
        Ok(()) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(conns: &Conns, reason: &str) -> u64 {
        conns
            .metrics
            .http_connections_rejected
            .with_label_values(&[reason])
            .get()
    }

    #[test]
    fn a_newcomer_past_the_cap_closes_the_longest_idle() {
        let conns = Arc::new(Conns::new(3, Arc::new(Metrics::new())));
        let t0 = Instant::now();
        let a = conns.admit(t0).unwrap();
        let b = conns.admit(t0 + Duration::from_secs(1)).unwrap();
        let c = conns.admit(t0 + Duration::from_secs(2)).unwrap();
        // `a` is handling a request: `b` is the longest idle.
        let busy_a = Busy::new(conns.clone(), a.id);
        let d = conns.admit(t0 + Duration::from_secs(3)).unwrap();
        assert!(b.close.is_cancelled() && !a.close.is_cancelled());
        assert!(!c.close.is_cancelled() && !d.close.is_cancelled());
        assert_eq!(rejected(&conns, "shed_idle"), 1);
        assert_eq!(conns.metrics.http_connections.get(), 3);
        drop(b);
        assert_eq!(conns.metrics.http_connections.get(), 3, "already out");
        // Every connection busy: the newcomer is refused, nobody is shed.
        let busy_c = Busy::new(conns.clone(), c.id);
        let busy_d = Busy::new(conns.clone(), d.id);
        assert!(conns.admit(t0 + Duration::from_secs(4)).is_none());
        assert_eq!(rejected(&conns, "over_capacity"), 1);
        assert!(![&a, &c, &d].iter().any(|g| g.close.is_cancelled()));
        drop((busy_a, busy_c, busy_d));
        drop((a, c, d));
        assert_eq!(conns.metrics.http_connections.get(), 0);
    }

    #[test]
    fn only_keep_alive_connections_idle_past_the_timeout_are_swept() {
        let conns = Arc::new(Conns::new(10, Arc::new(Metrics::new())));
        let fresh = conns.admit(Instant::now()).unwrap();
        let kept = conns.admit(Instant::now()).unwrap();
        drop(Busy::new(conns.clone(), kept.id));
        let working = conns.admit(Instant::now()).unwrap();
        drop(Busy::new(conns.clone(), working.id));
        let _busy = Busy::new(conns.clone(), working.id);
        let later = Instant::now() + Duration::from_secs(6);
        conns.sweep(later, Duration::from_secs(5));
        // A fresh connection is hyper's to time out (header_read_timeout).
        assert!(!fresh.close.is_cancelled());
        assert!(kept.close.is_cancelled());
        assert!(!working.close.is_cancelled());
        assert_eq!(rejected(&conns, "idle_timeout"), 1);
        assert_eq!(conns.metrics.http_connections.get(), 2);
    }
}
