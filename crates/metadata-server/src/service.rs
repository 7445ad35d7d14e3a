//! The metadata store on the node channel: the `Metadata` gRPC service, answered by this node's
//! member. Only the leader answers reads and writes (a read confirms leadership first, so it is
//! linearizable); a follower answers `NotLeader` with the leader's address, which the caller's
//! [`MetadataClient`](crate::MetadataClient) follows. Until the member has started, the
//! service answers `Unavailable`.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use reprise_net::proto::metadata_server::{Metadata, MetadataServer as MetadataGrpc};
use reprise_net::proto::{
    AddMemberRequest, AddMemberResponse, DeleteRequest, DeleteResponse, GetRequest, GetResponse,
    MembersRequest, MembersResponse, PutRequest, PutResponse, RemoveMemberRequest,
    RemoveMemberResponse, WatchEvent, WatchRequest,
};
use reprise_net::{MAX_MESSAGE_SIZE, NetError, NetIdentity};
use tonic::{Request, Response, Status};

use crate::client::{Local, Member, Members, precondition_from_proto};
use crate::types::{Command, CommandResponse};
use crate::{MAX_VALUE_SIZE, proto_members};

/// How long a new member may take to catch up with the log before its addition is given up.
const LEARNER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where the service finds the node's member once it runs. Cheap to clone.
#[derive(Clone, Default)]
pub struct MetadataSlot {
    local: Arc<RwLock<Option<Local>>>,
    /// Cancelled when the member stops: its watch streams end, so that they do not hold the
    /// node port's graceful shutdown open.
    stopped: tokio_util::sync::CancellationToken,
}

impl MetadataSlot {
    pub(crate) fn set(&self, local: Option<Local>) {
        let stopping = local.is_none();
        *self.local.write().unwrap_or_else(|p| p.into_inner()) = local;
        if stopping {
            self.stopped.cancel();
        }
    }

    fn get(&self) -> Result<Local, NetError> {
        self.local
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| NetError::Unavailable("this node runs no metadata member (yet)".into()))
    }
}

/// The gRPC service of this node's metadata member.
pub fn metadata_service(identity: NetIdentity, slot: MetadataSlot) -> MetadataGrpc<impl Metadata> {
    MetadataGrpc::new(Service { identity, slot })
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
}

struct Service {
    identity: NetIdentity,
    slot: MetadataSlot,
}

impl Service {
    fn accept(&self, header: Option<&reprise_net::Header>, what: &str) -> Result<Local, NetError> {
        self.identity.check(header, what)?;
        self.slot.get()
    }
}

impl Local {
    fn leader_address(&self) -> Option<String> {
        let metrics = self.raft.metrics().borrow().clone();
        let leader = metrics.current_leader?;
        metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|node| node.addr.clone())
    }

    fn not_leader(&self) -> NetError {
        NetError::NotLeader {
            leader: self.leader_address(),
        }
    }

    async fn apply(&self, command: Command) -> Result<CommandResponse, NetError> {
        let write = tokio::time::timeout(crate::LEADER_WAIT, self.raft.client_write(command));
        let Ok(written) = write.await else {
            return Err(NetError::Unavailable(format!(
                "the write was not committed within {:?}: a majority of the metadata members \
                 is not reachable (it applies if they come back)",
                crate::LEADER_WAIT
            )));
        };
        match written {
            Ok(response) => Ok(response.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(self.not_leader())
            }
            Err(err) => Err(NetError::Unavailable(err.to_string())),
        }
    }

    pub(crate) fn members(&self) -> Members {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        Members {
            members: membership
                .nodes()
                .map(|(id, node)| Member {
                    id: *id,
                    address: node.addr.clone(),
                    voter: voters.contains(id),
                })
                .collect(),
            leader: metrics.current_leader,
        }
    }

    fn ensure_leader(&self) -> Result<(), NetError> {
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.current_leader == Some(metrics.id) {
            Ok(())
        } else {
            Err(self.not_leader())
        }
    }

    pub(crate) async fn add_member(&self, id: u64, address: &str) -> Result<(), NetError> {
        self.ensure_leader()?;
        let node = BasicNode {
            addr: address.to_owned(),
        };
        let change = |err: &dyn std::fmt::Display| {
            NetError::Unavailable(format!("adding N{id} to the metadata group: {err}"))
        };
        let members = self.members().members;
        let known = members.iter().find(|m| m.id == id).cloned();
        if let Some(member) = &known
            && member.address != address
        {
            // A member that came back at another address: the others must send there now.
            self.raft
                .change_membership(
                    ChangeMembers::SetNodes(std::collections::BTreeMap::from([(id, node.clone())])),
                    false,
                )
                .await
                .map_err(|err| change(&err))?;
        }
        if known.as_ref().is_some_and(|m| m.voter) {
            return Ok(());
        }
        if known.is_none() {
            if !address.starts_with("http://") || address.parse::<http::Uri>().is_err() {
                return Err(NetError::BadRequest(format!(
                    "`{address}` is not a node address: use http://host:port"
                )));
            }
            self.raft
                .add_learner(id, node, false)
                .await
                .map_err(|err| change(&err))?;
        }
        // Only a learner that has the log may vote: a voter that cannot be reached would take
        // the group's quorum with it.
        if !self.caught_up(id).await {
            let raft = self.raft.clone();
            // In the background: the caller is owed an answer now.
            tokio::spawn(async move {
                let removed = raft
                    .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                    .await;
                if let Err(err) = removed {
                    tracing::warn!(%err, "taking out a learner that did not catch up");
                }
            });
            return Err(NetError::Unavailable(format!(
                "N{id} at {address} did not catch up with the metadata log within \
                 {LEARNER_WAIT:?}; it was not added"
            )));
        }
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(|err| change(&err))?;
        Ok(())
    }

    /// Waits (up to [`LEARNER_WAIT`]) until the leader has replicated its whole log to `id`.
    async fn caught_up(&self, id: u64) -> bool {
        let waited = self
            .raft
            .wait(Some(LEARNER_WAIT))
            .metrics(
                |m| {
                    let matched = m
                        .replication
                        .as_ref()
                        .and_then(|r| r.get(&id).cloned().flatten())
                        .map(|log_id| log_id.index);
                    matched.is_some() && matched >= m.last_log_index
                },
                "a learner that has the log",
            )
            .await;
        waited.is_ok()
    }

    pub(crate) async fn remove_member(&self, id: u64) -> Result<(), NetError> {
        self.ensure_leader()?;
        let members = self.members();
        let voters: Vec<u64> = members
            .members
            .iter()
            .filter(|m| m.voter)
            .map(|m| m.id)
            .collect();
        if !members.members.iter().any(|m| m.id == id) {
            return Err(NetError::BadRequest(format!(
                "N{id} is not a member of the metadata group"
            )));
        }
        if voters == [id] {
            return Err(NetError::BadRequest(format!(
                "N{id} is the last member of the metadata group and cannot be removed"
            )));
        }
        let change = |err: &dyn std::fmt::Display| {
            NetError::Unavailable(format!("removing N{id} from the metadata group: {err}"))
        };
        let ids = BTreeSet::from([id]);
        if voters.contains(&id) {
            self.raft
                .change_membership(ChangeMembers::RemoveVoters(ids.clone()), false)
                .await
                .map_err(|err| change(&err))?;
        }
        self.raft
            .change_membership(ChangeMembers::RemoveNodes(ids), false)
            .await
            .map_err(|err| change(&err))?;
        Ok(())
    }
}

/// What a watch streams: the version now, then each new one.
type WatchStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<WatchEvent, Status>> + Send + 'static>>;

fn event(version: Option<crate::Version>) -> WatchEvent {
    WatchEvent {
        found: version.is_some(),
        version: version.unwrap_or(0),
    }
}

#[tonic::async_trait]
impl Metadata for Service {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let request = request.into_inner();
        let local = self.accept(request.header.as_ref(), "metadata watch")?;
        let receiver = local.shared.watch(&request.key);
        let first = *receiver.borrow();
        let stopped = self.slot.stopped.clone();
        // Every version this member applies, in order; the stream ends with the member.
        let stream = futures::stream::unfold(
            (receiver, Some(first), stopped),
            |(mut receiver, pending, stopped)| async move {
                if let Some(version) = pending {
                    return Some((Ok(event(version)), (receiver, None, stopped)));
                }
                tokio::select! {
                    changed = receiver.changed() => changed.ok()?,
                    _ = stopped.cancelled() => return None,
                }
                let version = *receiver.borrow_and_update();
                Some((Ok(event(version)), (receiver, None, stopped)))
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let request = request.into_inner();
        let local = self.accept(request.header.as_ref(), "metadata get")?;
        match local.raft.ensure_linearizable().await {
            Ok(_) => {}
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => {
                return Err(local.not_leader().into());
            }
            Err(err) => return Err(NetError::Unavailable(err.to_string()).into()),
        }
        Ok(Response::new(match local.shared.get(&request.key) {
            Some(value) => GetResponse {
                found: true,
                version: value.version,
                value: value.value,
            },
            None => GetResponse::default(),
        }))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let request = request.into_inner();
        let local = self.accept(request.header.as_ref(), "metadata put")?;
        if request.value.len() > MAX_VALUE_SIZE {
            return Err(NetError::BadRequest(format!(
                "a metadata value may be at most {MAX_VALUE_SIZE} bytes; `{}` has {}",
                request.key,
                request.value.len()
            ))
            .into());
        }
        let command = Command::Put {
            key: request.key,
            value: request.value,
            precondition: precondition_from_proto(request.precondition)?,
        };
        match local.apply(command).await? {
            CommandResponse::Applied {
                version: Some(version),
            } => Ok(Response::new(PutResponse { version })),
            CommandResponse::PreconditionFailed { current } => {
                Err(NetError::PreconditionFailed { current }.into())
            }
            other => Err(NetError::Internal(format!("unexpected {other:?} to a put")).into()),
        }
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let request = request.into_inner();
        let local = self.accept(request.header.as_ref(), "metadata delete")?;
        let command = Command::Delete {
            key: request.key,
            precondition: precondition_from_proto(request.precondition)?,
        };
        match local.apply(command).await? {
            CommandResponse::Applied { version: None } => Ok(Response::new(DeleteResponse {})),
            CommandResponse::PreconditionFailed { current } => {
                Err(NetError::PreconditionFailed { current }.into())
            }
            other => Err(NetError::Internal(format!("unexpected {other:?} to a delete")).into()),
        }
    }

    async fn members(
        &self,
        request: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        let request = request.into_inner();
        let local = self.accept(request.header.as_ref(), "metadata members")?;
        Ok(Response::new(proto_members(&local.members())))
    }

    async fn add_member(
        &self,
        request: Request<AddMemberRequest>,
    ) -> Result<Response<AddMemberResponse>, Status> {
        let request = request.into_inner();
        let local = self.accept(request.header.as_ref(), "metadata add-member")?;
        if request.id == 0 {
            return Err(NetError::BadRequest("node ids start at 1".into()).into());
        }
        local
            .add_member(u64::from(request.id), &request.address)
            .await?;
        Ok(Response::new(AddMemberResponse {}))
    }

    async fn remove_member(
        &self,
        request: Request<RemoveMemberRequest>,
    ) -> Result<Response<RemoveMemberResponse>, Status> {
        let request = request.into_inner();
        let local = self.accept(request.header.as_ref(), "metadata remove-member")?;
        local.remove_member(u64::from(request.id)).await?;
        Ok(Response::new(RemoveMemberResponse {}))
    }
}
