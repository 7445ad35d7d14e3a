//! The node's readiness, as every health endpoint reports it: 503 while the node is starting
//! or stopping, 200 only while it is ready to serve.

use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::sync::watch;

use crate::identity::NodeIdentity;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeStatus {
    Starting,
    Ready,
    Stopping,
}

/// A cheap, cloneable handle on the node's status.
#[derive(Debug, Clone)]
pub struct Health {
    status: Arc<watch::Sender<NodeStatus>>,
    /// Known once the node has opened its storage; reported so a caller can tell which node,
    /// and which start of it, answered.
    identity: Arc<OnceLock<NodeIdentity>>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            status: Arc::new(watch::Sender::new(NodeStatus::Starting)),
            identity: Arc::default(),
        }
    }
}

impl Health {
    pub fn status(&self) -> NodeStatus {
        *self.status.borrow()
    }

    pub fn identity(&self) -> Option<&NodeIdentity> {
        self.identity.get()
    }

    pub(crate) fn set_identity(&self, identity: NodeIdentity) {
        // Set once per process: a node's identity does not change while it runs.
        let _ = self.identity.set(identity);
    }

    pub(crate) fn set(&self, status: NodeStatus) {
        self.status.send_replace(status);
    }

    /// Waits until the node reaches `status`.
    pub async fn wait_for(&self, status: NodeStatus) {
        let mut rx = self.status.subscribe();
        // The sender lives as long as `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|current| *current == status).await;
    }

    /// A router that answers `GET {path}` with the node's status.
    pub fn router(&self, path: &str) -> Router {
        Router::new()
            .route(path, get(report))
            .with_state(self.clone())
    }
}

#[derive(Serialize)]
struct HealthBody {
    status: NodeStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_name: Option<String>,
}

async fn report(State(health): State<Health>) -> Response {
    let status = health.status();
    let code = match status {
        NodeStatus::Ready => StatusCode::OK,
        NodeStatus::Starting | NodeStatus::Stopping => StatusCode::SERVICE_UNAVAILABLE,
    };
    let identity = health.identity();
    let body = HealthBody {
        status,
        node_id: identity.map(|i| i.node_id.to_string()),
        node_name: identity.map(|i| i.node_name.clone()),
        cluster_name: identity.map(|i| i.cluster_name.clone()),
    };
    (code, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_503_unless_ready() {
        let health = Health::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/health", listener.local_addr().expect("addr"));
        let server = tokio::spawn(axum::serve(listener, health.router("/health")).into_future());

        let status = |url: String| async move {
            reqwest::get(&url).await.expect("request").status().as_u16()
        };
        assert_eq!(status(url.clone()).await, 503, "starting");
        health.set(NodeStatus::Ready);
        assert_eq!(status(url.clone()).await, 200, "ready");
        health.set(NodeStatus::Stopping);
        assert_eq!(status(url.clone()).await, 503, "stopping");
        server.abort();
    }
}
