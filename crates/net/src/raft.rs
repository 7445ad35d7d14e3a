//! Raft over the node channel. [`RaftTransport`] is the openraft network of a group: each RPC
//! is encoded in raft-storage's wire form and sent to the target member's node port, addressed
//! to its plain id. On the receiving side [`RaftGroups`] holds the node's groups by name, and
//! [`raft_service`] hands each request to its group after the envelope check. Both kinds of
//! group (metadata, partitions) use the same code.

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use reprise_raft_storage::{DecodeError, GroupTypes, rpc};
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite};
use tonic::{Request, Response, Status};

use crate::MAX_MESSAGE_SIZE;
use crate::connections::Connections;
use crate::envelope::NetIdentity;
use crate::error::NetError;
use crate::proto::raft_server::{Raft as RaftRpc, RaftServer};
use crate::proto::{NodeRef, RaftRequest, RaftResponse};

type Answer<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, NetError>> + Send + 'a>>;

/// A raft group as the channel sees it: RPCs in, responses out, both in wire form.
pub trait RaftEndpoint: Send + Sync + 'static {
    fn append_entries(&self, payload: Bytes) -> Answer<'_>;
    fn vote(&self, payload: Bytes) -> Answer<'_>;
    fn install_snapshot(&self, payload: Bytes) -> Answer<'_>;
}

fn undecodable(err: DecodeError) -> NetError {
    NetError::BadRequest(format!("the raft message does not decode: {err}"))
}

fn refused<E: std::fmt::Display>(err: E) -> NetError {
    NetError::Unavailable(format!("the raft group cannot take the message: {err}"))
}

impl<C> RaftEndpoint for Raft<C>
where
    C: GroupTypes,
    C::SnapshotData: AsyncRead + AsyncWrite + AsyncSeek + Unpin,
{
    fn append_entries(&self, payload: Bytes) -> Answer<'_> {
        Box::pin(async move {
            let request = rpc::decode_append_entries::<C>(payload).map_err(undecodable)?;
            let response = Raft::append_entries(self, request).await.map_err(refused)?;
            Ok(rpc::encode_append_entries_response(&response))
        })
    }

    fn vote(&self, payload: Bytes) -> Answer<'_> {
        Box::pin(async move {
            let request = rpc::decode_vote_request(&payload).map_err(undecodable)?;
            let response = Raft::vote(self, request).await.map_err(refused)?;
            Ok(rpc::encode_vote_response(&response))
        })
    }

    fn install_snapshot(&self, payload: Bytes) -> Answer<'_> {
        Box::pin(async move {
            let request = rpc::decode_install_snapshot::<C>(payload).map_err(undecodable)?;
            let response = Raft::install_snapshot(self, request)
                .await
                .map_err(refused)?;
            Ok(rpc::encode_install_snapshot_response(&response))
        })
    }
}

/// The raft groups this node runs, by name. Cheap to clone.
#[derive(Clone, Default)]
pub struct RaftGroups {
    groups: Arc<RwLock<HashMap<String, Arc<dyn RaftEndpoint>>>>,
}

impl RaftGroups {
    pub fn register(&self, name: impl Into<String>, group: Arc<dyn RaftEndpoint>) {
        self.groups
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(name.into(), group);
    }

    pub fn remove(&self, name: &str) {
        self.groups
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(name);
    }

    fn get(&self, name: &str) -> Result<Arc<dyn RaftEndpoint>, NetError> {
        self.groups
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| NetError::Unavailable(format!("this node runs no raft group `{name}`")))
    }
}

struct RaftService {
    identity: NetIdentity,
    groups: RaftGroups,
}

impl RaftService {
    fn accept(&self, request: &RaftRequest, what: &str) -> Result<Arc<dyn RaftEndpoint>, Status> {
        self.identity.check(request.header.as_ref(), what)?;
        Ok(self.groups.get(&request.group)?)
    }
}

fn answer(result: Result<Vec<u8>, NetError>) -> Result<Response<RaftResponse>, Status> {
    Ok(Response::new(RaftResponse {
        payload: Bytes::from(result?),
    }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftResponse>, Status> {
        let request = request.into_inner();
        let group = self.accept(&request, "raft append")?;
        answer(group.append_entries(request.payload).await)
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftResponse>, Status> {
        let request = request.into_inner();
        let group = self.accept(&request, "raft vote")?;
        answer(group.vote(request.payload).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftResponse>, Status> {
        let request = request.into_inner();
        let group = self.accept(&request, "raft snapshot")?;
        answer(group.install_snapshot(request.payload).await)
    }
}

/// The gRPC service that delivers raft traffic to this node's groups.
pub fn raft_service(identity: NetIdentity, groups: RaftGroups) -> RaftServer<impl RaftRpc> {
    RaftServer::new(RaftService { identity, groups })
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
}

/// The openraft network of the group `group`, over the node channel.
pub struct RaftTransport<C> {
    group: String,
    connections: Connections,
    _types: PhantomData<fn() -> C>,
}

impl<C> RaftTransport<C> {
    pub fn new(group: impl Into<String>, connections: Connections) -> Self {
        Self {
            group: group.into(),
            connections,
            _types: PhantomData,
        }
    }
}

impl<C: GroupTypes> RaftNetworkFactory<C> for RaftTransport<C> {
    type Network = RaftPeer<C>;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        RaftPeer {
            group: self.group.clone(),
            target,
            address: node.addr.clone(),
            connections: self.connections.clone(),
            _types: PhantomData,
        }
    }
}

/// One member of the group as seen by another.
pub struct RaftPeer<C> {
    group: String,
    target: u64,
    address: String,
    connections: Connections,
    _types: PhantomData<fn() -> C>,
}

impl<C> RaftPeer<C> {
    async fn send<E: std::error::Error>(
        &self,
        kind: Kind,
        payload: Vec<u8>,
        option: &RPCOption,
    ) -> Result<Bytes, RPCError<u64, BasicNode, E>> {
        let unreachable = |err: &dyn std::fmt::Display| {
            RPCError::Unreachable(Unreachable::new(&std::io::Error::other(format!(
                "{} member {} at {}: {err}",
                self.group, self.target, self.address
            ))))
        };
        let mut client = self
            .connections
            .raft(&self.address)
            .map_err(|err| unreachable(&err))?;
        let receiver = NodeRef {
            id: u32::try_from(self.target).unwrap_or(0),
            generation: 0,
        };
        let mut request = Request::new(RaftRequest {
            header: Some(self.connections.identity().header(receiver)),
            group: self.group.clone(),
            payload: Bytes::from(payload),
        });
        request.set_timeout(option.hard_ttl());
        let sent = match kind {
            Kind::Append => client.append_entries(request).await,
            Kind::Vote => client.vote(request).await,
            Kind::Snapshot => client.install_snapshot(request).await,
        };
        match sent {
            Ok(response) => Ok(response.into_inner().payload),
            Err(status) => Err(unreachable(&NetError::from(status))),
        }
    }
}

fn network<E: std::error::Error>(err: DecodeError) -> RPCError<u64, BasicNode, E> {
    RPCError::Network(NetworkError::new(&std::io::Error::other(format!(
        "the raft response does not decode: {err}"
    ))))
}

#[derive(Clone, Copy)]
enum Kind {
    Append,
    Vote,
    Snapshot,
}

impl<C: GroupTypes> RaftNetwork<C> for RaftPeer<C> {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let encoded = rpc::encode_append_entries(&rpc);
        // Over the channel's bound: openraft sends fewer entries when told so.
        if encoded.len() > MAX_MESSAGE_SIZE && rpc.entries.len() > 1 {
            let fewer = u64::try_from(rpc.entries.len() / 2).unwrap_or(1);
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(fewer),
            ));
        }
        let bytes = self.send(Kind::Append, encoded, &option).await?;
        rpc::decode_append_entries_response(&bytes).map_err(network)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<C>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        let bytes = self
            .send(Kind::Snapshot, rpc::encode_install_snapshot(&rpc), &option)
            .await?;
        rpc::decode_install_snapshot_response(&bytes).map_err(network)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let bytes = self
            .send(Kind::Vote, rpc::encode_vote_request(&rpc), &option)
            .await?;
        rpc::decode_vote_response(&bytes).map_err(network)
    }
}
