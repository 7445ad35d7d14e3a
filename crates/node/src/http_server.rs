//! Serves an axum router on one listener, owning every connection it accepts. Stopping is two
//! steps, so that the node decides how long in-flight requests may take:
//!
//! 1. cancel `stop`: the listener closes, idle connections close, and connections with a request
//!    in flight finish it and then close (HTTP/1.1 stops keep-alive, HTTP/2 sends GOAWAY);
//! 2. drop the serving future if that takes too long: the connections are tasks of a `JoinSet`
//!    owned by the future, so dropping it aborts them all. Nothing outlives its server.
//!
//! What a client can hold is bounded ([`HttpLimits`]): a connection must start a request within
//! the header read timeout (a connection that sends nothing, or half a head, is closed), an
//! idle HTTP/1.1 connection is closed after as long, a quiet HTTP/2 connection is pinged and
//! closed when it does not answer, and a listener keeps at most `max_connections` open.

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Pause after an accept error such as running out of file descriptors, so that a persistent
/// error does not spin the loop.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// The bounds of [`serve`], from the `[http]` configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpLimits {
    pub header_read_timeout: Duration,
    pub http2_keep_alive_interval: Duration,
    pub max_connections: usize,
}

impl HttpLimits {
    pub(crate) fn from_options(options: &reprise_node_config::HttpOptions) -> Self {
        Self {
            header_read_timeout: options.header_read_timeout.as_duration(),
            http2_keep_alive_interval: options.http2_keep_alive_interval.as_duration(),
            max_connections: usize::try_from(options.max_connections).unwrap_or(usize::MAX),
        }
    }
}

/// What an HTTP/2 connection with prior knowledge starts with.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How often a connection that has sent part of the HTTP/2 preface is looked at again.
const PREFACE_POLL: Duration = Duration::from_millis(10);

pub(crate) async fn serve(
    listener: std::net::TcpListener,
    router: Router,
    limits: HttpLimits,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    // HTTP/1.1 and HTTP/2 with prior knowledge on the same port: SDK test harnesses use both.
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.http2_keep_alive_interval)
        .keep_alive_timeout(limits.http2_keep_alive_interval);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();

    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        warn!(%err, "accepting a connection failed");
                        tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                        continue;
                    }
                };
                if connections.len() >= limits.max_connections {
                    debug!(%peer, limit = limits.max_connections, "too many connections; closing the new one");
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(router.clone());
                let builder = builder.clone();
                let watcher = graceful.watcher();
                connections.spawn(async move {
                    if !request_starts(&stream, limits.header_read_timeout).await {
                        debug!(%peer, "no request started in time; connection closed");
                        return;
                    }
                    let connection = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    if let Err(err) = watcher.watch(connection).await {
                        debug!(%peer, %err, "connection ended with an error");
                    }
                });
            }
            // Reap finished connections so the set does not grow with every one ever accepted.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }

    drop(listener);
    graceful.shutdown().await;
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Whether the client starts a request within `within`: sends a byte that begins an HTTP/1
/// request, or the whole HTTP/2 preface. Until then hyper would wait for ever (it reads the
/// preface before any of its own timeouts apply). Peeks, so hyper still reads every byte.
async fn request_starts(stream: &tokio::net::TcpStream, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut buffer = [0u8; H2_PREFACE.len()];
    loop {
        let seen = match tokio::time::timeout_at(deadline, stream.peek(&mut buffer)).await {
            Ok(Ok(seen)) => seen,
            // Closed, failed, or nothing in time.
            Ok(Err(_)) | Err(_) => return false,
        };
        if seen == 0 {
            return false;
        }
        if buffer[..seen] != H2_PREFACE[..seen] || seen == H2_PREFACE.len() {
            return true;
        }
        // Part of the HTTP/2 preface: peeking again returns at once, so wait a little.
        if tokio::time::Instant::now() + PREFACE_POLL > deadline {
            return false;
        }
        tokio::time::sleep(PREFACE_POLL).await;
    }
}
