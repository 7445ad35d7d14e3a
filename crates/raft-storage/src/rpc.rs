//! The wire forms of openraft's RPCs between the members of a group: prost messages of
//! `proto/raft.proto` built from the same pieces as the stored forms, entries included (an
//! entry travels in the bytes it is stored as). The node channel carries them as opaque bytes,
//! so it needs to know nothing of openraft. Decoding never panics; a message that does not
//! decode is a [`DecodeError`] saying what was missing.

use bytes::Bytes;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use prost::Message;

use crate::codec::{
    self, DecodeError, GroupTypes, log_id_to_proto, maybe_log_id_from_proto, proto,
    vote_from_proto, vote_to_proto,
};

fn maybe(log_id: Option<&openraft::LogId<u64>>) -> Option<proto::MaybeLogId> {
    Some(proto::MaybeLogId {
        log_id: log_id.map(log_id_to_proto),
    })
}

fn from_maybe(
    log_id: Option<proto::MaybeLogId>,
) -> Result<Option<openraft::LogId<u64>>, DecodeError> {
    maybe_log_id_from_proto(log_id.and_then(|m| m.log_id))
}

fn vote(vote: Option<proto::Vote>, what: &str) -> Result<openraft::Vote<u64>, DecodeError> {
    vote_from_proto(vote.ok_or_else(|| DecodeError::missing(what))?)
}

pub fn encode_append_entries<C: GroupTypes>(request: &AppendEntriesRequest<C>) -> Vec<u8> {
    proto::AppendEntriesRequest {
        vote: Some(vote_to_proto(&request.vote)),
        prev_log_id: maybe(request.prev_log_id.as_ref()),
        entries: request
            .entries
            .iter()
            .map(|entry| Bytes::from(codec::encode_entry(entry)))
            .collect(),
        leader_commit: maybe(request.leader_commit.as_ref()),
    }
    .encode_to_vec()
}

/// Decodes an append request; its entries' payloads are slices of `bytes`.
pub fn decode_append_entries<C: GroupTypes>(
    bytes: Bytes,
) -> Result<AppendEntriesRequest<C>, DecodeError> {
    let request = proto::AppendEntriesRequest::decode(bytes)?;
    Ok(AppendEntriesRequest {
        vote: vote(request.vote, "an append request's vote")?,
        prev_log_id: from_maybe(request.prev_log_id)?,
        entries: request
            .entries
            .into_iter()
            .map(codec::decode_entry)
            .collect::<Result<_, _>>()?,
        leader_commit: from_maybe(request.leader_commit)?,
    })
}

pub fn encode_append_entries_response(response: &AppendEntriesResponse<u64>) -> Vec<u8> {
    use proto::append_entries_response::Outcome;
    let outcome = match response {
        AppendEntriesResponse::Success => Outcome::Success(proto::Blank {}),
        AppendEntriesResponse::PartialSuccess(log_id) => {
            Outcome::PartialSuccess(proto::MaybeLogId {
                log_id: log_id.as_ref().map(log_id_to_proto),
            })
        }
        AppendEntriesResponse::Conflict => Outcome::Conflict(proto::Blank {}),
        AppendEntriesResponse::HigherVote(vote) => Outcome::HigherVote(vote_to_proto(vote)),
    };
    proto::AppendEntriesResponse {
        outcome: Some(outcome),
    }
    .encode_to_vec()
}

pub fn decode_append_entries_response(
    bytes: &[u8],
) -> Result<AppendEntriesResponse<u64>, DecodeError> {
    use proto::append_entries_response::Outcome;
    Ok(
        match proto::AppendEntriesResponse::decode(bytes)?
            .outcome
            .ok_or_else(|| DecodeError::missing("an append response's outcome"))?
        {
            Outcome::Success(_) => AppendEntriesResponse::Success,
            Outcome::PartialSuccess(log_id) => {
                AppendEntriesResponse::PartialSuccess(maybe_log_id_from_proto(log_id.log_id)?)
            }
            Outcome::Conflict(_) => AppendEntriesResponse::Conflict,
            Outcome::HigherVote(vote) => AppendEntriesResponse::HigherVote(vote_from_proto(vote)?),
        },
    )
}

pub fn encode_vote_request(request: &VoteRequest<u64>) -> Vec<u8> {
    proto::VoteRequest {
        vote: Some(vote_to_proto(&request.vote)),
        last_log_id: maybe(request.last_log_id.as_ref()),
    }
    .encode_to_vec()
}

pub fn decode_vote_request(bytes: &[u8]) -> Result<VoteRequest<u64>, DecodeError> {
    let request = proto::VoteRequest::decode(bytes)?;
    Ok(VoteRequest {
        vote: vote(request.vote, "a vote request's vote")?,
        last_log_id: from_maybe(request.last_log_id)?,
    })
}

pub fn encode_vote_response(response: &VoteResponse<u64>) -> Vec<u8> {
    proto::VoteResponse {
        vote: Some(vote_to_proto(&response.vote)),
        vote_granted: response.vote_granted,
        last_log_id: maybe(response.last_log_id.as_ref()),
    }
    .encode_to_vec()
}

pub fn decode_vote_response(bytes: &[u8]) -> Result<VoteResponse<u64>, DecodeError> {
    let response = proto::VoteResponse::decode(bytes)?;
    Ok(VoteResponse {
        vote: vote(response.vote, "a vote response's vote")?,
        vote_granted: response.vote_granted,
        last_log_id: from_maybe(response.last_log_id)?,
    })
}

pub fn encode_install_snapshot<C: GroupTypes>(request: &InstallSnapshotRequest<C>) -> Vec<u8> {
    proto::InstallSnapshotRequest {
        vote: Some(vote_to_proto(&request.vote)),
        meta: Some(codec::snapshot_meta_to_proto(&request.meta)),
        offset: request.offset,
        data: Bytes::copy_from_slice(&request.data),
        done: request.done,
    }
    .encode_to_vec()
}

pub fn decode_install_snapshot<C: GroupTypes>(
    bytes: Bytes,
) -> Result<InstallSnapshotRequest<C>, DecodeError> {
    let request = proto::InstallSnapshotRequest::decode(bytes)?;
    Ok(InstallSnapshotRequest {
        vote: vote(request.vote, "a snapshot chunk's vote")?,
        meta: codec::snapshot_meta_from_proto(
            request
                .meta
                .ok_or_else(|| DecodeError::missing("a snapshot chunk's meta"))?,
        )?,
        offset: request.offset,
        data: request.data.to_vec(),
        done: request.done,
    })
}

pub fn encode_install_snapshot_response(response: &InstallSnapshotResponse<u64>) -> Vec<u8> {
    proto::InstallSnapshotResponse {
        vote: Some(vote_to_proto(&response.vote)),
    }
    .encode_to_vec()
}

pub fn decode_install_snapshot_response(
    bytes: &[u8],
) -> Result<InstallSnapshotResponse<u64>, DecodeError> {
    let response = proto::InstallSnapshotResponse::decode(bytes)?;
    Ok(InstallSnapshotResponse {
        vote: vote(response.vote, "a snapshot response's vote")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, LogId, Vote};

    #[test]
    fn votes_and_responses_survive_the_wire() {
        let request = VoteRequest {
            vote: Vote::new(3, 2),
            last_log_id: Some(LogId::new(CommittedLeaderId::new(2, 1), 17)),
        };
        let decoded = decode_vote_request(&encode_vote_request(&request)).expect("decodes");
        assert_eq!(decoded, request);
        for response in [
            AppendEntriesResponse::Success,
            AppendEntriesResponse::PartialSuccess(None),
            AppendEntriesResponse::PartialSuccess(Some(LogId::new(
                CommittedLeaderId::new(1, 1),
                4,
            ))),
            AppendEntriesResponse::Conflict,
            AppendEntriesResponse::HigherVote(Vote::new_committed(9, 3)),
        ] {
            let decoded =
                decode_append_entries_response(&encode_append_entries_response(&response))
                    .expect("decodes");
            assert_eq!(decoded, response);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..512 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = decode_vote_request(&bytes);
            let _ = decode_vote_response(&bytes);
            let _ = decode_append_entries_response(&bytes);
            let _ = decode_install_snapshot_response(&bytes);
        }
    }
}
