//! The stored forms of openraft's types: prost messages from `proto/raft.proto`, with field
//! numbers that let the format grow. A group's own records are encoded by the group
//! ([`PayloadCodec`]) and carried as bytes, written straight into the entry's buffer and read
//! back as slices of it: a payload is copied once on its way into the log and not at all on
//! its way out. Decoding never panics and never trusts a stored
//! length: a damaged value is a [`DecodeError`] saying what was missing.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LeaderId, LogId, Membership, RaftTypeConfig,
    SnapshotMeta, StoredMembership, Vote,
};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};

/// Generated from `proto/raft.proto`.
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/reprise.raft.v1.rs"));
}

/// A stored value that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

impl From<prost::DecodeError> for DecodeError {
    fn from(err: prost::DecodeError) -> Self {
        DecodeError(err.to_string())
    }
}

impl DecodeError {
    pub fn missing(what: &str) -> Self {
        DecodeError(format!("{what} is missing"))
    }
}

/// How a raft group encodes the records its log entries carry: as a prost message of its own.
/// Its `bytes` fields should be [`Bytes`] (prost-build's `.bytes(["."])`), so that decoding
/// slices the stored buffer instead of copying payloads out of it.
pub trait PayloadCodec: Sized {
    type Message: Message + Default;
    fn to_message(&self) -> Self::Message;
    fn from_message(message: Self::Message) -> Result<Self, DecodeError>;

    /// The payload on its own, encoded.
    fn encode_payload(&self) -> Vec<u8> {
        self.to_message().encode_to_vec()
    }

    /// Decodes a payload; its `bytes` fields are slices of `bytes`.
    fn decode_payload(bytes: Bytes) -> Result<Self, DecodeError> {
        Self::from_message(Self::Message::decode(bytes)?)
    }
}

/// The raft types every group of a node uses: `u64` member ids, [`BasicNode`] addresses.
pub trait GroupTypes:
    RaftTypeConfig<NodeId = u64, Node = BasicNode, Entry = Entry<Self>, D: PayloadCodec>
{
}

impl<C> GroupTypes for C where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode, Entry = Entry<C>, D: PayloadCodec>
{
}

fn leader_to_proto(term: u64, node_id: u64) -> proto::LeaderId {
    proto::LeaderId { term, node_id }
}

pub fn log_id_to_proto(log_id: &LogId<u64>) -> proto::LogId {
    proto::LogId {
        leader_id: Some(leader_to_proto(
            log_id.leader_id.term,
            log_id.leader_id.node_id,
        )),
        index: log_id.index,
    }
}

pub fn log_id_from_proto(log_id: proto::LogId) -> Result<LogId<u64>, DecodeError> {
    let leader = log_id
        .leader_id
        .ok_or_else(|| DecodeError::missing("a log id's leader"))?;
    Ok(LogId::new(
        CommittedLeaderId::new(leader.term, leader.node_id),
        log_id.index,
    ))
}

pub(crate) fn maybe_log_id_from_proto(
    log_id: Option<proto::LogId>,
) -> Result<Option<LogId<u64>>, DecodeError> {
    log_id.map(log_id_from_proto).transpose()
}

/// A log id that may be absent: the commit point, an applied position.
pub fn encode_maybe_log_id(log_id: Option<&LogId<u64>>) -> Vec<u8> {
    proto::MaybeLogId {
        log_id: log_id.map(log_id_to_proto),
    }
    .encode_to_vec()
}

pub fn decode_maybe_log_id(bytes: &[u8]) -> Result<Option<LogId<u64>>, DecodeError> {
    maybe_log_id_from_proto(proto::MaybeLogId::decode(bytes)?.log_id)
}

pub(crate) fn vote_to_proto(vote: &Vote<u64>) -> proto::Vote {
    proto::Vote {
        leader_id: Some(leader_to_proto(vote.leader_id.term, vote.leader_id.node_id)),
        committed: vote.committed,
    }
}

pub fn encode_vote(vote: &Vote<u64>) -> Vec<u8> {
    vote_to_proto(vote).encode_to_vec()
}

pub fn decode_vote(bytes: &[u8]) -> Result<Vote<u64>, DecodeError> {
    vote_from_proto(proto::Vote::decode(bytes)?)
}

pub(crate) fn vote_from_proto(vote: proto::Vote) -> Result<Vote<u64>, DecodeError> {
    let leader = vote
        .leader_id
        .ok_or_else(|| DecodeError::missing("a vote's leader"))?;
    Ok(Vote {
        leader_id: LeaderId::new(leader.term, leader.node_id),
        committed: vote.committed,
    })
}

fn membership_to_proto(membership: &Membership<u64, BasicNode>) -> proto::Membership {
    proto::Membership {
        configs: membership
            .get_joint_config()
            .iter()
            .map(|voters| proto::VoterSet {
                ids: voters.iter().copied().collect(),
            })
            .collect(),
        nodes: membership
            .nodes()
            .map(|(id, node)| proto::Node {
                id: *id,
                addr: node.addr.clone(),
            })
            .collect(),
    }
}

fn membership_from_proto(membership: proto::Membership) -> Membership<u64, BasicNode> {
    let configs: Vec<BTreeSet<u64>> = membership
        .configs
        .into_iter()
        .map(|set| set.ids.into_iter().collect())
        .collect();
    let nodes: BTreeMap<u64, BasicNode> = membership
        .nodes
        .into_iter()
        .map(|node| (node.id, BasicNode { addr: node.addr }))
        .collect();
    Membership::new(configs, nodes)
}

pub fn stored_membership_to_proto(
    membership: &StoredMembership<u64, BasicNode>,
) -> proto::StoredMembership {
    proto::StoredMembership {
        log_id: membership.log_id().as_ref().map(log_id_to_proto),
        membership: Some(membership_to_proto(membership.membership())),
    }
}

pub fn stored_membership_from_proto(
    membership: proto::StoredMembership,
) -> Result<StoredMembership<u64, BasicNode>, DecodeError> {
    Ok(StoredMembership::new(
        maybe_log_id_from_proto(membership.log_id)?,
        membership_from_proto(membership.membership.unwrap_or_default()),
    ))
}

pub fn encode_stored_membership(membership: &StoredMembership<u64, BasicNode>) -> Vec<u8> {
    stored_membership_to_proto(membership).encode_to_vec()
}

pub fn decode_stored_membership(
    bytes: &[u8],
) -> Result<StoredMembership<u64, BasicNode>, DecodeError> {
    stored_membership_from_proto(proto::StoredMembership::decode(bytes)?)
}

pub fn snapshot_meta_to_proto(meta: &SnapshotMeta<u64, BasicNode>) -> proto::SnapshotMeta {
    proto::SnapshotMeta {
        last_log_id: meta.last_log_id.as_ref().map(log_id_to_proto),
        last_membership: Some(stored_membership_to_proto(&meta.last_membership)),
        snapshot_id: meta.snapshot_id.clone(),
    }
}

pub fn snapshot_meta_from_proto(
    meta: proto::SnapshotMeta,
) -> Result<SnapshotMeta<u64, BasicNode>, DecodeError> {
    Ok(SnapshotMeta {
        last_log_id: maybe_log_id_from_proto(meta.last_log_id)?,
        last_membership: match meta.last_membership {
            Some(membership) => stored_membership_from_proto(membership)?,
            None => StoredMembership::default(),
        },
        snapshot_id: meta.snapshot_id,
    })
}

/// Field number of `Entry.normal` in `proto/raft.proto`.
const ENTRY_NORMAL_FIELD: u32 = 3;

pub fn encode_entry<C: GroupTypes>(entry: &Entry<C>) -> Vec<u8> {
    let payload = match &entry.payload {
        EntryPayload::Blank => Some(proto::entry::Payload::Blank(proto::Blank {})),
        EntryPayload::Membership(membership) => Some(proto::entry::Payload::Membership(
            membership_to_proto(membership),
        )),
        EntryPayload::Normal(_) => None,
    };
    let head = proto::Entry {
        log_id: Some(log_id_to_proto(&entry.log_id)),
        payload,
    };
    let EntryPayload::Normal(data) = &entry.payload else {
        return head.encode_to_vec();
    };
    // A protobuf message is its fields one after the other: the head, then `normal` written
    // by hand (key, length, the group's message encoded in place) is the same bytes prost
    // would write for the whole entry, without first encoding the payload on its own.
    let message = data.to_message();
    let len = message.encoded_len();
    let mut buf = Vec::with_capacity(head.encoded_len() + 15 + len);
    head.encode_raw(&mut buf);
    encode_key(ENTRY_NORMAL_FIELD, WireType::LengthDelimited, &mut buf);
    encode_varint(len as u64, &mut buf);
    message.encode_raw(&mut buf);
    buf
}

/// Decodes an entry; the payload's `bytes` fields are slices of `bytes`.
pub fn decode_entry<C: GroupTypes>(bytes: Bytes) -> Result<Entry<C>, DecodeError> {
    let entry = proto::Entry::decode(bytes)?;
    let log_id = log_id_from_proto(
        entry
            .log_id
            .ok_or_else(|| DecodeError::missing("an entry's log id"))?,
    )?;
    let payload = match entry
        .payload
        .ok_or_else(|| DecodeError::missing("an entry's payload"))?
    {
        proto::entry::Payload::Blank(_) => EntryPayload::Blank,
        proto::entry::Payload::Normal(bytes) => EntryPayload::Normal(C::D::decode_payload(bytes)?),
        proto::entry::Payload::Membership(membership) => {
            EntryPayload::Membership(membership_from_proto(membership))
        }
    };
    Ok(Entry { log_id, payload })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openraft_types_decode_to_what_was_encoded() {
        let log_id = LogId::new(CommittedLeaderId::new(7, 2), 42);
        assert_eq!(
            decode_maybe_log_id(&encode_maybe_log_id(Some(&log_id))),
            Ok(Some(log_id))
        );
        assert_eq!(decode_maybe_log_id(&encode_maybe_log_id(None)), Ok(None));
        let vote = Vote {
            leader_id: LeaderId::new(3, 1),
            committed: true,
        };
        assert_eq!(decode_vote(&encode_vote(&vote)), Ok(vote));
        let membership = StoredMembership::new(
            Some(log_id),
            Membership::new(
                vec![BTreeSet::from([1, 2, 3])],
                BTreeMap::from([
                    (1, BasicNode::new("a:1")),
                    (2, BasicNode::new("b:1")),
                    (3, BasicNode::new("c:1")),
                    (4, BasicNode::new("learner:1")),
                ]),
            ),
        );
        assert_eq!(
            decode_stored_membership(&encode_stored_membership(&membership)),
            Ok(membership)
        );
    }

    #[test]
    fn damaged_bytes_are_errors() {
        assert!(decode_vote(&[0xff, 0xff, 0xff]).is_err());
        // A vote without its leader.
        assert!(decode_vote(&proto::Vote::default().encode_to_vec()).is_err());
        assert!(decode_maybe_log_id(&[0x0a, 0x05, 0x01]).is_err());
    }
}
