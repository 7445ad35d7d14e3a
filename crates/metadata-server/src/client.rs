//! [`MetadataClient`]: reads and writes of the metadata store from anywhere in the cluster. On a
//! member that leads, a call goes straight to the local raft group; on a follower it goes to the
//! leader openraft names; on a node without the metadata-server role (or one still joining) it
//! goes to the configured metadata addresses, following the leader hints they answer with. Every
//! path is bounded in time: with no leader to be found the call fails as unavailable.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use openraft::Raft;
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use reprise_net::proto::{self, DeleteRequest, GetRequest, NodeRef, PutRequest};
use reprise_net::{Connections, NetError};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::debug;

use crate::state_machine::SharedState;
use crate::types::{self, Command, CommandResponse, Precondition, Version, VersionedValue};
use crate::{LEADER_WAIT, MetadataError};

/// Pause between attempts when no address answered as the leader.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// How long a remote watch waits before it tries another member.
const WATCH_RETRY: Duration = Duration::from_millis(500);

/// The local member of the group, when this node runs one.
#[derive(Clone)]
pub(crate) struct Local {
    pub(crate) raft: Raft<types::TypeConfig>,
    pub(crate) shared: Arc<SharedState>,
}

/// Reads and writes cluster metadata. Cheap to clone.
#[derive(Clone)]
pub struct MetadataClient {
    local: Option<Local>,
    remote: Remote,
}

#[derive(Clone)]
struct Remote {
    connections: Option<Connections>,
    addresses: Arc<Vec<String>>,
    /// The leader's address as last answered.
    leader: Arc<Mutex<Option<String>>>,
}

/// Where a call should go when the local member cannot answer it.
enum Route {
    Done,
    Leader(String),
    Anywhere,
}

impl MetadataClient {
    pub(crate) fn with_local(
        local: Local,
        connections: Connections,
        addresses: Vec<String>,
    ) -> Self {
        Self {
            local: Some(local),
            remote: Remote::new(Some(connections), addresses),
        }
    }

    /// A client for a node that runs no metadata member: every call goes to `addresses` (node
    /// ports of metadata members), following the leader.
    pub fn remote(connections: Connections, addresses: Vec<String>) -> Self {
        Self {
            local: None,
            remote: Remote::new(Some(connections), addresses),
        }
    }

    /// The current value of `key`, reflecting every write acknowledged before the call.
    pub async fn get(&self, key: &str) -> Result<Option<VersionedValue>, MetadataError> {
        if let Some(local) = &self.local {
            match local.read().await? {
                Route::Done => return Ok(local.shared.get(key)),
                Route::Leader(address) => self.remote.hint(address),
                Route::Anywhere => {}
            }
        }
        let request = GetRequest {
            header: None,
            key: key.to_owned(),
        };
        self.remote
            .call(|mut client, header| {
                let mut request = request.clone();
                request.header = Some(header);
                async move { client.get(request).await }
            })
            .await
            .map(|answer| {
                answer.found.then_some(VersionedValue {
                    version: answer.version,
                    value: answer.value,
                })
            })
            .map_err(|err| net_error(key, Precondition::None, err))
    }

    /// Writes `value` under `key` if `precondition` holds, and returns the new version.
    pub async fn put(
        &self,
        key: &str,
        value: Bytes,
        precondition: Precondition,
    ) -> Result<Version, MetadataError> {
        if value.len() > crate::MAX_VALUE_SIZE {
            return Err(MetadataError::Refused(format!(
                "a metadata value may be at most {} bytes; `{key}` has {}",
                crate::MAX_VALUE_SIZE,
                value.len()
            )));
        }
        let command = Command::Put {
            key: key.to_owned(),
            value: value.clone(),
            precondition,
        };
        if let Some(local) = &self.local {
            match local.write(command).await? {
                Ok(CommandResponse::Applied {
                    version: Some(version),
                }) => return Ok(version),
                Ok(other) => return Err(unexpected(key, precondition, other)),
                Err(Route::Leader(address)) => self.remote.hint(address),
                Err(_) => {}
            }
        }
        let request = PutRequest {
            header: None,
            key: key.to_owned(),
            value,
            precondition: Some(precondition_to_proto(precondition)),
        };
        self.remote
            .call(|mut client, header| {
                let mut request = request.clone();
                request.header = Some(header);
                async move { client.put(request).await }
            })
            .await
            .map(|answer| answer.version)
            .map_err(|err| net_error(key, precondition, err))
    }

    /// Removes `key` if `precondition` holds.
    pub async fn delete(&self, key: &str, precondition: Precondition) -> Result<(), MetadataError> {
        let command = Command::Delete {
            key: key.to_owned(),
            precondition,
        };
        if let Some(local) = &self.local {
            match local.write(command).await? {
                Ok(CommandResponse::Applied { version: None }) => return Ok(()),
                Ok(other) => return Err(unexpected(key, precondition, other)),
                Err(Route::Leader(address)) => self.remote.hint(address),
                Err(_) => {}
            }
        }
        let request = DeleteRequest {
            header: None,
            key: key.to_owned(),
            precondition: Some(precondition_to_proto(precondition)),
        };
        self.remote
            .call(|mut client, header| {
                let mut request = request.clone();
                request.header = Some(header);
                async move { client.delete(request).await }
            })
            .await
            .map(|_| ())
            .map_err(|err| net_error(key, precondition, err))
    }

    /// Follows the version of `key` (`None` while it has no value) as writes are applied: from
    /// the local member's state, or through a member's `Watch` stream (another member's when
    /// that one goes away).
    pub fn watch(&self, key: &str) -> watch::Receiver<Option<Version>> {
        if let Some(local) = &self.local {
            return local.shared.watch(key);
        }
        let (sender, receiver) = watch::channel(None);
        let remote = self.remote.clone();
        let key = key.to_owned();
        // Owned by the receivers: it ends when the last one is dropped.
        tokio::spawn(async move {
            tokio::select! {
                _ = sender.closed() => {}
                _ = remote.follow(&key, &sender) => {}
            }
        });
        receiver
    }

    /// Waits (up to a bound) until the metadata store can serve reads and writes.
    pub async fn wait_for_leader(&self) -> Result<(), MetadataError> {
        match &self.local {
            Some(local) if local.is_member().await => local.wait_for_leader().await,
            _ => self.get("reprise-no-such-key").await.map(|_| ()),
        }
    }
}

impl Local {
    /// Whether this member belongs to a group (it may have none yet: a node that is joining).
    async fn is_member(&self) -> bool {
        let listed = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .next()
            .is_some();
        // Right after a start or a provisioning the metrics may not show the membership yet;
        // the raft core knows.
        listed || self.raft.is_initialized().await.unwrap_or(false)
    }

    pub(crate) async fn wait_for_leader(&self) -> Result<(), MetadataError> {
        self.raft
            .wait(Some(LEADER_WAIT))
            .metrics(|m| m.current_leader.is_some(), "a metadata leader")
            .await
            .map(|_| ())
            .map_err(|e| MetadataError::Unavailable(format!("no metadata leader: {e}")))
    }

    /// Confirms this member leads, or says where to go instead.
    async fn read(&self) -> Result<Route, MetadataError> {
        if !self.is_member().await {
            return Ok(Route::Anywhere);
        }
        self.wait_for_leader().await?;
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(Route::Done),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward))) => {
                Ok(match forward.leader_node {
                    Some(node) => Route::Leader(node.addr),
                    None => Route::Anywhere,
                })
            }
            Err(err) => Err(MetadataError::Unavailable(err.to_string())),
        }
    }

    /// Writes through this member when it leads; otherwise says where to go instead.
    async fn write(
        &self,
        command: Command,
    ) -> Result<Result<CommandResponse, Route>, MetadataError> {
        if !self.is_member().await {
            return Ok(Err(Route::Anywhere));
        }
        self.wait_for_leader().await?;
        let write = tokio::time::timeout(LEADER_WAIT, self.raft.client_write(command));
        let Ok(written) = write.await else {
            return Err(MetadataError::Unavailable(format!(
                "the write was not committed within {LEADER_WAIT:?}: a majority of the metadata \
                 members is not reachable (it applies if they come back)"
            )));
        };
        match written {
            Ok(response) => Ok(Ok(response.data)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Ok(Err(match forward.leader_node {
                    Some(node) => Route::Leader(node.addr),
                    None => Route::Anywhere,
                }))
            }
            Err(err) => Err(MetadataError::Unavailable(err.to_string())),
        }
    }
}

impl Remote {
    /// Streams the versions of `key` from a member into `sender`, moving to another member
    /// when the stream breaks. Never returns; the caller drops it when nobody watches.
    async fn follow(&self, key: &str, sender: &watch::Sender<Option<Version>>) {
        let Some(connections) = &self.connections else {
            return std::future::pending().await;
        };
        let mut next = 0usize;
        loop {
            let Some(address) = self.next_address(&mut next) else {
                return std::future::pending().await;
            };
            let request = proto::WatchRequest {
                header: Some(connections.identity().header(NodeRef::default())),
                key: key.to_owned(),
            };
            // The channel's request timeout bounds the wait for the stream's start, not the
            // stream, so a watch can follow a key for ever.
            match connections.metadata(&address) {
                Ok(mut client) => match client.watch(request).await {
                    Ok(stream) => {
                        let mut stream = stream.into_inner();
                        while let Ok(Some(event)) = stream.message().await {
                            let version = event.found.then_some(event.version);
                            sender.send_if_modified(|current| {
                                let changed = *current != version;
                                *current = version;
                                changed
                            });
                        }
                        debug!(
                            address,
                            key, "a metadata watch ended; following another member"
                        );
                    }
                    Err(status) => debug!(address, key, %status, "watching a metadata key"),
                },
                Err(err) => debug!(address, key, %err, "watching a metadata key"),
            }
            self.forget_leader();
            tokio::time::sleep(WATCH_RETRY).await;
        }
    }

    fn new(connections: Option<Connections>, addresses: Vec<String>) -> Self {
        Self {
            connections,
            addresses: Arc::new(addresses),
            leader: Arc::default(),
        }
    }

    fn hint(&self, address: String) {
        *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = Some(address);
    }

    fn hinted(&self) -> Option<String> {
        self.leader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn forget_leader(&self) {
        *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Where to send next: the leader when one is known, else the configured addresses in
    /// turn (`turn` counts the turns taken); `None` when there is nowhere to send.
    fn next_address(&self, turn: &mut usize) -> Option<String> {
        if let Some(address) = self.hinted() {
            return Some(address);
        }
        let address = self
            .addresses
            .get(*turn % self.addresses.len().max(1))?
            .clone();
        *turn += 1;
        Some(address)
    }

    /// Sends a call to the leader if one is known, else to each address in turn, following the
    /// leader hints the answers carry, until one serves it or `LEADER_WAIT` has passed.
    async fn call<T, F, Fut>(&self, send: F) -> Result<T, NetError>
    where
        F: Fn(
            proto::metadata_client::MetadataClient<tonic::transport::Channel>,
            proto::Header,
        ) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let Some(connections) = &self.connections else {
            return Err(NetError::Unavailable(
                "this node has no metadata member and no metadata addresses".into(),
            ));
        };
        let deadline = Instant::now() + LEADER_WAIT;
        let mut next = 0usize;
        let mut last = NetError::Unavailable(
            "no metadata address is configured (`metadata-client.addresses`)".into(),
        );
        loop {
            let Some(address) = self.next_address(&mut next) else {
                return Err(last);
            };
            let result = match connections.metadata(&address) {
                Ok(client) => send(client, connections.identity().header(NodeRef::default()))
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(NetError::from),
                Err(err) => Err(err),
            };
            match result {
                Ok(answer) => {
                    self.hint(address);
                    return Ok(answer);
                }
                Err(NetError::NotLeader {
                    leader: Some(leader),
                }) if leader != address => {
                    self.hint(leader);
                    continue;
                }
                Err(
                    err @ (NetError::NotLeader { .. }
                    | NetError::Unavailable(_)
                    | NetError::Unreachable(_)),
                ) => {
                    debug!(%err, address, "metadata call goes elsewhere");
                    self.forget_leader();
                    last = err;
                }
                Err(err) => return Err(err),
            }
            if Instant::now() + RETRY_BACKOFF > deadline {
                return Err(last);
            }
            tokio::time::sleep(RETRY_BACKOFF).await;
        }
    }
}

pub(crate) fn precondition_to_proto(precondition: Precondition) -> proto::Precondition {
    use proto::precondition::Kind;
    proto::Precondition {
        kind: Some(match precondition {
            Precondition::None => Kind::None(proto::Empty {}),
            Precondition::DoesNotExist => Kind::DoesNotExist(proto::Empty {}),
            Precondition::MatchesVersion(version) => Kind::MatchesVersion(version),
        }),
    }
}

pub(crate) fn precondition_from_proto(
    precondition: Option<proto::Precondition>,
) -> Result<Precondition, NetError> {
    use proto::precondition::Kind;
    match precondition.and_then(|p| p.kind) {
        Some(Kind::None(_)) => Ok(Precondition::None),
        Some(Kind::DoesNotExist(_)) => Ok(Precondition::DoesNotExist),
        Some(Kind::MatchesVersion(version)) => Ok(Precondition::MatchesVersion(version)),
        None => Err(NetError::BadRequest("the write has no precondition".into())),
    }
}

fn net_error(key: &str, expected: Precondition, err: NetError) -> MetadataError {
    match err {
        NetError::PreconditionFailed { current } => MetadataError::PreconditionFailed {
            key: key.to_owned(),
            expected,
            current,
        },
        NetError::BadRequest(message) => MetadataError::Refused(message),
        other => MetadataError::Unavailable(other.to_string()),
    }
}

pub(crate) fn unexpected(
    key: &str,
    expected: Precondition,
    response: CommandResponse,
) -> MetadataError {
    match response {
        CommandResponse::PreconditionFailed { current } => MetadataError::PreconditionFailed {
            key: key.to_owned(),
            expected,
            current,
        },
        other => MetadataError::Storage(format!("unexpected response {other:?} to a write")),
    }
}

/// A member of the metadata group, as [`MetadataClient::members`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub address: String,
    pub voter: bool,
}

/// The group's members and its leader (when one is known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    pub members: Vec<Member>,
    pub leader: Option<u64>,
}

impl MetadataClient {
    /// The metadata group's members.
    pub async fn members(&self) -> Result<Members, MetadataError> {
        if let Some(local) = &self.local
            && local.is_member().await
        {
            local.wait_for_leader().await?;
            return Ok(local.members());
        }
        self.remote
            .call(|mut client, header| async move {
                client
                    .members(proto::MembersRequest {
                        header: Some(header),
                    })
                    .await
            })
            .await
            .map(|answer| Members {
                members: answer
                    .members
                    .into_iter()
                    .map(|m| Member {
                        id: u64::from(m.id),
                        address: m.address,
                        voter: m.voter,
                    })
                    .collect(),
                leader: (answer.leader != 0).then_some(u64::from(answer.leader)),
            })
            .map_err(|err| net_error("", Precondition::None, err))
    }

    /// Makes node `id` at `address` a voting member: a learner first, which the leader brings
    /// up to date, then a voter. Returns once it votes.
    pub async fn add_member(&self, id: u64, address: &str) -> Result<(), MetadataError> {
        let id32 =
            u32::try_from(id).map_err(|_| MetadataError::Refused(format!("no node N{id}")))?;
        if let Some(local) = &self.local
            && local.is_member().await
        {
            match local.add_member(id, address).await {
                Err(NetError::NotLeader {
                    leader: Some(leader),
                }) => self.remote.hint(leader),
                Err(NetError::NotLeader { leader: None }) => {}
                result => return result.map_err(|err| net_error("", Precondition::None, err)),
            }
        }
        let address = address.to_owned();
        self.remote
            .call(|mut client, header| {
                let address = address.clone();
                async move {
                    client
                        .add_member(proto::AddMemberRequest {
                            header: Some(header),
                            id: id32,
                            address,
                        })
                        .await
                }
            })
            .await
            .map(|_| ())
            .map_err(|err| net_error("", Precondition::None, err))
    }

    /// Removes node `id` from the group; the last member cannot be removed.
    pub async fn remove_member(&self, id: u64) -> Result<(), MetadataError> {
        let id32 =
            u32::try_from(id).map_err(|_| MetadataError::Refused(format!("no node N{id}")))?;
        if let Some(local) = &self.local
            && local.is_member().await
        {
            match local.remove_member(id).await {
                Err(NetError::NotLeader {
                    leader: Some(leader),
                }) => self.remote.hint(leader),
                Err(NetError::NotLeader { leader: None }) => {}
                result => return result.map_err(|err| net_error("", Precondition::None, err)),
            }
        }
        self.remote
            .call(|mut client, header| async move {
                client
                    .remove_member(proto::RemoveMemberRequest {
                        header: Some(header),
                        id: id32,
                    })
                    .await
            })
            .await
            .map(|_| ())
            .map_err(|err| net_error("", Precondition::None, err))
    }
}
