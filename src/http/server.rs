//! The accept loop under [`serve`](super::serve): plain HTTP/1.1 connections, each bounded
//! so that slow or idle clients cannot pile up, and a graceful shutdown that lets in-flight
//! runs finish.
//!
//! Why not `axum::serve`: it offers no header-read timeout, no connection cap, and it
//! speaks HTTP/2 by sniffing the first bytes, a phase with no timeout at all. Here:
//! - each connection must deliver a request's headers within `header_timeout` of opening
//!   or of its previous answer (hyper's header-read timer also runs while a keep-alive
//!   connection idles), so slowloris-style clients and idle connections are closed;
//! - bodies have their own timeout (a tower layer in `app`);
//! - at most `max_connections` are open; a connection beyond that is closed at once, so a
//!   flood costs the server one accept per connection, not a task and a buffer each;
//! - at shutdown the listener closes, idle connections are closed, and requests in flight
//!   finish (each run is bounded by its own limits), up to `shutdown_grace`.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The connection bounds, resolved from the CLI in one place (`cli::ServeArgs`).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
    /// MCP sessions open at most (each holds a task and buffers until it is deleted or
    /// idles out); `initialize` beyond that gets a typed "busy".
    pub max_sessions: usize,
    /// How long shutdown waits for requests in flight before closing their connections.
    pub shutdown_grace: Duration,
    /// After SIGTERM, how long to keep accepting and serving while `/readyz` says
    /// "draining", so that a load balancer stops sending work before the listener closes.
    pub drain_delay: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_sessions: 256,
            shutdown_grace: Duration::from_secs(15),
            drain_delay: Duration::ZERO,
        }
    }
}

/// Open connections, for `/healthz` and the cap itself.
#[derive(Debug)]
pub struct Connections {
    slots: Arc<Semaphore>,
    max: usize,
    refused: AtomicU64,
}

impl Connections {
    pub fn new(max: usize) -> Self {
        Connections {
            slots: Arc::new(Semaphore::new(max)),
            max,
            refused: AtomicU64::new(0),
        }
    }

    pub fn open(&self) -> usize {
        self.max - self.slots.available_permits()
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections closed at accept because the cap was reached, since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Accept and serve connections until `shutdown` resolves, then drain.
pub async fn run(
    listener: TcpListener,
    app: Router,
    options: &ServeOptions,
    connections: Arc<Connections>,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let mut last_refusal_log: Option<Instant> = None;
    tokio::pin!(shutdown);

    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(err) => {
                    accept_failed(&err).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = connections.slots.clone().try_acquire_owned() else {
            connections.refused.fetch_add(1, Ordering::Relaxed);
            // One line per second at most: a flood must not become a log flood.
            if last_refusal_log.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                last_refusal_log = Some(Instant::now());
                tracing::warn!(
                    max_connections = connections.max,
                    refused_total = connections.refused(),
                    "connection limit reached: closing new connections at once"
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                // Header timeouts, resets and malformed requests end up here.
                tracing::debug!("connection closed: {err}");
            }
            drop(permit);
        });
    }

    drop(listener);
    let open = connections.open();
    if open > 0 {
        tracing::info!(open, "waiting for open connections to finish");
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(options.shutdown_grace) => {
            tracing::warn!(
                open = connections.open(),
                "connections still open {} s after shutdown began; closing them",
                options.shutdown_grace.as_secs()
            );
        }
    }
}

/// Accept errors are per-connection (the peer gave up) or resource exhaustion (out of file
/// descriptors): neither may end the server. The pause on exhaustion lets connections
/// close instead of spinning on the same error.
async fn accept_failed(err: &io::Error) {
    match err.kind() {
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset => {}
        _ => {
            tracing::warn!("accept failed: {err}; pausing 50 ms");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
