//! Which peers are alive, as this node sees them: every second it asks each other node of the
//! node table for its status (all at once, each with a one-second timeout), and a peer that
//! answered as itself within the last [`DEAD_AFTER`] is alive. So a node that stops is noticed
//! within about three seconds, and one that comes back within one. The same loop disables this
//! node's worker once an operator has set it draining and it holds no partition.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reprise_metadata_server::MetadataClient;
use reprise_net::Connections;
use reprise_net::proto::{NodeRef, StatusRequest, StatusResponse};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::cluster;
use reprise_node_config::WorkerState;
use reprise_types::PlainNodeId;

/// How often peers are asked.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// A peer that has not answered for this long is dead.
pub(crate) const DEAD_AFTER: Duration = Duration::from_secs(3);
/// How often the node table is read again (for nodes that joined or moved).
const TABLE_REFRESH: Duration = Duration::from_secs(5);

/// Asks the node at `address` for its status as node `id`: its answer when it answers within
/// `within` and as that node. Heartbeats, the name check of a start and `reprisectl` use it.
pub async fn status_of(
    connections: &Connections,
    address: &str,
    id: u32,
    within: Duration,
) -> Option<StatusResponse> {
    let mut client = connections.node(address).ok()?;
    let request = StatusRequest {
        header: Some(connections.identity().header(NodeRef { id, generation: 0 })),
    };
    let answer = tokio::time::timeout(within, client.status(request))
        .await
        .ok()?
        .ok()?
        .into_inner();
    answer
        .node
        .is_some_and(|node| node.id == id)
        .then_some(answer)
}

/// The generation node `id` at `address` answers with, when it answers in a heartbeat's time.
pub(crate) async fn answers_as(connections: &Connections, address: &str, id: u32) -> Option<u32> {
    status_of(connections, address, id, HEARTBEAT)
        .await
        .and_then(|answer| answer.node)
        .map(|node| node.generation)
}

/// A draining worker that holds no partition has nothing left to hand over: it is disabled.
async fn disable(metadata: &MetadataClient, me: u32) {
    let Some(id) = PlainNodeId::new(me) else {
        return;
    };
    let changed = cluster::update(metadata, "disabling a drained worker", |nodes| {
        if nodes.get(id)?.worker_state() == WorkerState::Draining {
            nodes.set_worker_state(id, WorkerState::Disabled)?;
        }
        Ok(())
    })
    .await;
    match changed {
        Ok(_) => info!("the worker holds no partition any more: disabled"),
        Err(err) => debug!(%err, "disabling a drained worker"),
    }
}

/// When each peer last answered. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Liveness {
    seen: Arc<Mutex<HashMap<u32, Instant>>>,
}

impl Liveness {
    /// The peers heard from within [`DEAD_AFTER`], in id order.
    pub(crate) fn alive(&self) -> Vec<u32> {
        let now = Instant::now();
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut alive: Vec<u32> = seen
            .iter()
            .filter(|(_, at)| now.duration_since(**at) < DEAD_AFTER)
            .map(|(id, _)| *id)
            .collect();
        alive.sort_unstable();
        alive
    }

    fn saw(&self, id: u32) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Instant::now());
    }

    /// Asks the peers until `stop` is cancelled. `holds_partitions`: whether this node's
    /// worker runs any partition (a draining worker that holds none is disabled).
    pub(crate) async fn run(
        self,
        metadata: MetadataClient,
        connections: Connections,
        me: u32,
        holds_partitions: bool,
        stop: CancellationToken,
    ) {
        let mut peers: Vec<(u32, String)> = Vec::new();
        let mut refreshed: Option<Instant> = None;
        let mut dead: Vec<u32> = Vec::new();
        loop {
            if refreshed.is_none_or(|at| at.elapsed() >= TABLE_REFRESH) {
                match cluster::load(&metadata).await {
                    Ok(Some((nodes, _))) => {
                        let draining = PlainNodeId::new(me)
                            .and_then(|id| nodes.get(id).ok())
                            .is_some_and(|n| n.worker_state() == WorkerState::Draining);
                        if draining && !holds_partitions {
                            disable(&metadata, me).await;
                        }
                        peers = nodes
                            .nodes()
                            .filter(|n| n.id().as_u32() != me && n.current_generation().is_some())
                            .map(|n| (n.id().as_u32(), n.address.clone()))
                            .collect();
                        refreshed = Some(Instant::now());
                    }
                    Ok(None) => {}
                    Err(err) => debug!(%err, "reading the node table for heartbeats"),
                }
            }
            self.saw(me);
            let asks = peers.iter().map(|(id, address)| {
                let connections = connections.clone();
                async move { answers_as(&connections, address, *id).await.map(|_| *id) }
            });
            for id in futures::future::join_all(asks).await.into_iter().flatten() {
                self.saw(id);
            }
            let alive = self.alive();
            for (id, _) in &peers {
                let is_dead = !alive.contains(id);
                let was_dead = dead.contains(id);
                if is_dead && !was_dead {
                    info!(node = %format!("N{id}"), "a peer stopped answering");
                    dead.push(*id);
                } else if !is_dead && was_dead {
                    info!(node = %format!("N{id}"), "a peer answers again");
                    dead.retain(|d| d != id);
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(HEARTBEAT) => {}
            }
        }
    }
}
