//! Serves an axum router on one listener, owning every connection it accepts. Stopping is two
//! steps, so that the node decides how long in-flight requests may take:
//!
//! 1. cancel `stop`: the listener closes, idle connections close, and connections with a request
//!    in flight finish it and then close (HTTP/1.1 stops keep-alive, HTTP/2 sends GOAWAY);
//! 2. drop the serving future if that takes too long: the connections are tasks of a `JoinSet`
//!    owned by the future, so dropping it aborts them all. Nothing outlives its server.

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
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

pub(crate) async fn serve(
    listener: std::net::TcpListener,
    router: Router,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    // HTTP/1.1 and HTTP/2 with prior knowledge on the same port: SDK test harnesses use both.
    let builder = Builder::new(TokioExecutor::new());
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
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(router.clone());
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                let connection = graceful.watch(connection);
                connections.spawn(async move {
                    if let Err(err) = connection.await {
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
