//! The one mapping between the channel's typed errors and gRPC statuses. The kind travels in the
//! `reprise-error` metadata key and the details in the message, so the sender gets back the
//! same [`NetError`] it would have got locally.

use tonic::{Code, Status};

const KIND: &str = "reprise-error";
const LEADER: &str = "reprise-leader";
const CURRENT: &str = "reprise-current-version";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// The message was meant for another cluster.
    #[error("refused: {0}")]
    WrongCluster(String),
    /// The message was meant for another node, or another generation of this one: the sender's
    /// view of the cluster is out of date.
    #[error("misaddressed: {0}")]
    Misaddressed(String),
    /// The sender is an older generation of a node the receiver knows newer.
    #[error("stale sender: {0}")]
    StaleSender(String),
    /// This node does not lead what was asked of it; `leader` is the address of the one that
    /// does, when known.
    #[error("not the leader{}", .leader.as_deref().map(|l| format!(" (leader: {l})")).unwrap_or_default())]
    NotLeader { leader: Option<String> },
    /// A compare-and-set found another version.
    #[error("precondition failed: the current version is {current:?}")]
    PreconditionFailed { current: Option<u64> },
    /// The receiver cannot serve this now (no leader, not started, a role it does not run).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The request is malformed or asks for something impossible.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The receiver failed.
    #[error("failed: {0}")]
    Internal(String),
    /// The peer could not be reached, or did not answer in time.
    #[error("unreachable: {0}")]
    Unreachable(String),
}

impl NetError {
    fn kind(&self) -> &'static str {
        match self {
            NetError::WrongCluster(_) => "wrong-cluster",
            NetError::Misaddressed(_) => "misaddressed",
            NetError::StaleSender(_) => "stale-sender",
            NetError::NotLeader { .. } => "not-leader",
            NetError::PreconditionFailed { .. } => "precondition-failed",
            NetError::Unavailable(_) => "unavailable",
            NetError::BadRequest(_) => "bad-request",
            NetError::Internal(_) => "internal",
            NetError::Unreachable(_) => "unreachable",
        }
    }

    fn code(&self) -> Code {
        match self {
            NetError::WrongCluster(_) => Code::PermissionDenied,
            NetError::Misaddressed(_) | NetError::StaleSender(_) => Code::FailedPrecondition,
            NetError::NotLeader { .. } | NetError::Unavailable(_) | NetError::Unreachable(_) => {
                Code::Unavailable
            }
            NetError::PreconditionFailed { .. } => Code::Aborted,
            NetError::BadRequest(_) => Code::InvalidArgument,
            NetError::Internal(_) => Code::Internal,
        }
    }

    /// Whether the sender should refresh its view of the cluster and try elsewhere.
    pub fn is_misaddressed(&self) -> bool {
        matches!(self, NetError::Misaddressed(_) | NetError::StaleSender(_))
    }

    fn detail(&self) -> String {
        match self {
            NetError::WrongCluster(d)
            | NetError::Misaddressed(d)
            | NetError::StaleSender(d)
            | NetError::Unavailable(d)
            | NetError::BadRequest(d)
            | NetError::Internal(d)
            | NetError::Unreachable(d) => d.clone(),
            NetError::NotLeader { .. } | NetError::PreconditionFailed { .. } => self.to_string(),
        }
    }
}

impl From<NetError> for Status {
    fn from(err: NetError) -> Status {
        let mut status = Status::new(err.code(), err.detail());
        let metadata = status.metadata_mut();
        if let Ok(kind) = err.kind().parse() {
            metadata.insert(KIND, kind);
        }
        match &err {
            NetError::NotLeader {
                leader: Some(leader),
            } => {
                if let Ok(leader) = leader.parse() {
                    metadata.insert(LEADER, leader);
                }
            }
            NetError::PreconditionFailed {
                current: Some(current),
            } => {
                if let Ok(current) = current.to_string().parse() {
                    metadata.insert(CURRENT, current);
                }
            }
            _ => {}
        }
        status
    }
}

impl From<Status> for NetError {
    fn from(status: Status) -> NetError {
        let metadata = status.metadata();
        let text = |key: &str| {
            metadata
                .get(key)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let detail = status.message().to_owned();
        match text(KIND).as_deref() {
            Some("wrong-cluster") => NetError::WrongCluster(detail),
            Some("misaddressed") => NetError::Misaddressed(detail),
            Some("stale-sender") => NetError::StaleSender(detail),
            Some("not-leader") => NetError::NotLeader {
                leader: text(LEADER),
            },
            Some("precondition-failed") => NetError::PreconditionFailed {
                current: text(CURRENT).and_then(|v| v.parse().ok()),
            },
            Some("unavailable") => NetError::Unavailable(detail),
            Some("bad-request") => NetError::BadRequest(detail),
            Some("internal") => NetError::Internal(detail),
            // Not one of ours: the transport failed, or the peer is not a Reprise node.
            _ => match status.code() {
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
                    NetError::Unreachable(format!("{}: {detail}", status.code()))
                }
                code => NetError::Internal(format!("{code}: {detail}")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_comes_back_as_itself() {
        for err in [
            NetError::WrongCluster("cluster `a`, not `b`".into()),
            NetError::Misaddressed("meant for N3, this is N4".into()),
            NetError::StaleSender("N2:1 is older than N2:2".into()),
            NetError::NotLeader {
                leader: Some("http://127.0.0.1:5122".into()),
            },
            NetError::NotLeader { leader: None },
            NetError::PreconditionFailed { current: Some(7) },
            NetError::PreconditionFailed { current: None },
            NetError::Unavailable("no leader".into()),
            NetError::BadRequest("no header".into()),
            NetError::Internal("disk".into()),
        ] {
            assert_eq!(NetError::from(Status::from(err.clone())), err);
        }
    }
}
