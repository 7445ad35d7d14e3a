//! Raft networking for a group of one. A single member never sends an RPC; if openraft ever
//! asks for one (it would mean a membership with peers), the peer is reported unreachable.
//! The multi-node issue replaces this with the node-to-node gRPC transport.

use std::marker::PhantomData;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftTypeConfig};

/// The network factory of a group with one member; `group` names it in errors.
pub struct SingleMemberNetwork<C> {
    group: &'static str,
    _types: PhantomData<fn() -> C>,
}

impl<C> SingleMemberNetwork<C> {
    pub fn new(group: &'static str) -> Self {
        Self {
            group,
            _types: PhantomData,
        }
    }
}

pub struct NoPeer<C> {
    group: &'static str,
    target: u64,
    _types: PhantomData<fn() -> C>,
}

impl<C> NoPeer<C> {
    fn unreachable<E: std::error::Error>(&self) -> RPCError<u64, BasicNode, E> {
        RPCError::Unreachable(Unreachable::new(&std::io::Error::other(format!(
            "{} peer {} is unreachable: this node runs a single-member group",
            self.group, self.target
        ))))
    }
}

impl<C> RaftNetworkFactory<C> for SingleMemberNetwork<C>
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
{
    type Network = NoPeer<C>;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Self::Network {
        NoPeer {
            group: self.group,
            target,
            _types: PhantomData,
        }
    }
}

impl<C> RaftNetwork<C> for NoPeer<C>
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
{
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(self.unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<C>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        Err(self.unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(self.unreachable())
    }
}
