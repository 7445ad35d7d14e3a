//! What the partition log carries: the commands the state machine applies. Everything a record
//! needs is inside it (ids, times, payloads), so applying it never consults a clock, the
//! network or randomness, and every replica reaches the same state.

use bytes::Bytes;
use reprise_service_protocol::{Frame, MessageType};
use reprise_types::{InvocationId, MillisSinceEpoch};
use serde::{Deserialize, Serialize};

use crate::storage::ObjectId;

/// One entry of the partition log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A new invocation, from the ingress (or, later, another partition's outbox).
    Invoke(ServiceInvocation),
    /// Something an invocation attempt produced, proposed by the leader's invoker.
    Effect(InvokerEffect),
    /// A timer's time has come, proposed by the leader's timer service.
    TimerFired(TimerKey),
    /// A leadership of the partition begins, with this epoch (larger than every earlier one):
    /// from here on only effects stamped with it are taken. A new leader proposes it before it
    /// runs anything, and so does a leader that steps down and takes over again.
    AnnounceLeader { epoch: u64 },
}

impl Record {
    /// About how many bytes the record takes in a log entry: its payloads and names, not the
    /// exact encoding. What bounds a proposal batch by size.
    pub fn approximate_size(&self) -> usize {
        const FIXED: usize = 64;
        FIXED
            + match self {
                Record::Invoke(invocation) => {
                    invocation.argument.len()
                        + invocation.target.service.len()
                        + invocation.target.handler.len()
                        + invocation.target.key.as_ref().map_or(0, String::len)
                        + invocation
                            .headers
                            .iter()
                            .map(|(name, value)| name.len() + value.len() + 4)
                            .sum::<usize>()
                }
                Record::Effect(effect) => match &effect.kind {
                    EffectKind::JournalEntry(frame) => frame.payload.len(),
                    EffectKind::RunProposal {
                        result: InvocationResult::Success(bytes),
                        ..
                    } => bytes.len(),
                    EffectKind::RunProposal {
                        result: InvocationResult::Failure { message, .. },
                        ..
                    }
                    | EffectKind::AttemptFailed { message, .. }
                    | EffectKind::GaveUp { message, .. } => message.len(),
                    EffectKind::PinnedDeployment { deployment_id, .. } => deployment_id.len(),
                    EffectKind::Suspended {
                        waiting_named_signals,
                        ..
                    } => waiting_named_signals.iter().map(String::len).sum(),
                    EffectKind::End => 0,
                },
                Record::TimerFired(_) | Record::AnnounceLeader { .. } => 0,
            }
    }
}

/// A durable timer: at or after `wake_at`, does `kind` to the invocation. Ordered by time
/// first, which is the order timers fire in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TimerKey {
    pub wake_at: MillisSinceEpoch,
    pub invocation_id: InvocationId,
    pub kind: TimerKind,
}

/// What a timer does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TimerKind {
    /// Completes this completion id: a sleep.
    Completion(u32),
    /// The journal of a completed invocation reached the end of its retention.
    PurgeJournal,
    /// A completed invocation reached the end of its retention: its status goes.
    PurgeInvocation,
}

/// How long a completed invocation is kept, in milliseconds: its status and result for
/// `completion_ms` (0: removed at completion), its journal for `journal_ms` (never longer than
/// the status). Fixed when the invocation is created, from the manifest and the configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub completion_ms: u64,
    pub journal_ms: u64,
}

/// Which handler an invocation runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationTarget {
    pub service: String,
    pub handler: String,
    /// The object or workflow key; `None` for a plain service.
    pub key: Option<String>,
    /// Whether the handler holds its object's key while it runs. Meaningless without a key.
    #[serde(default)]
    pub handler_type: HandlerType,
}

impl InvocationTarget {
    /// The object an exclusive handler locks while it runs, if this one does.
    pub fn locked_object(&self) -> Option<ObjectId> {
        match (&self.key, self.handler_type) {
            (Some(key), HandlerType::Exclusive) => Some(ObjectId::new(&self.service, key)),
            _ => None,
        }
    }

    /// The object whose state the handler sees, if it has a key.
    pub fn object(&self) -> Option<ObjectId> {
        self.key
            .as_ref()
            .map(|key| ObjectId::new(&self.service, key))
    }
}

/// How a keyed handler shares its object: exclusive handlers of one key run one at a time and
/// may write state; shared handlers run alongside anything and only read it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandlerType {
    #[default]
    Exclusive,
    Shared,
}

/// Where the result of an invocation goes when it completes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseSink {
    /// An ingress request waiting for the result, by the id the ingress gave it.
    Ingress { request_id: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInvocation {
    pub invocation_id: InvocationId,
    pub target: InvocationTarget,
    pub argument: Bytes,
    pub headers: Vec<(String, String)>,
    pub response_sink: Option<ResponseSink>,
    pub created_at: MillisSinceEpoch,
    pub retention: Retention,
}

/// A frame kept verbatim: journal entries are replayed to the deployment byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFrame {
    pub ty: u16,
    pub payload: Bytes,
}

impl StoredFrame {
    pub fn to_frame(&self) -> Option<Frame> {
        Some(Frame {
            ty: MessageType::from_id(self.ty)?,
            flags: 0,
            payload: self.payload.clone(),
        })
    }
}

impl From<&Frame> for StoredFrame {
    fn from(frame: &Frame) -> Self {
        Self {
            ty: frame.ty.id(),
            payload: frame.payload.clone(),
        }
    }
}

/// The result an invocation ends with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InvocationResult {
    Success(Bytes),
    Failure { code: u32, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvokerEffect {
    pub invocation_id: InvocationId,
    pub kind: EffectKind,
    pub fence: Fence,
}

/// Which attempt an effect comes from, so that `apply` takes effects of the current attempt
/// only: one of another leadership, another attempt, or a command the journal already has (a
/// proposal retried after it had committed) is ignored, the same way on every replica.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fence {
    /// The epoch of the leadership whose invoker ran the attempt: it must be the partition's
    /// current one (the last `AnnounceLeader` applied).
    pub leader_epoch: u64,
    /// The attempt, as the invocation's status numbers them.
    pub attempt: u32,
    /// How many commands the journal held, as the attempt saw it, when it sent this effect: a
    /// command is journaled only at that position.
    pub command_index: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EffectKind {
    /// The first attempt chose this deployment; later attempts use the same one.
    PinnedDeployment {
        deployment_id: String,
        protocol_version: u32,
    },
    /// A command the deployment sent, to append to the journal as it is.
    JournalEntry(StoredFrame),
    /// The result of a `ctx.run` closure (`ProposeRunCompletionMessage`).
    RunProposal {
        completion_id: u32,
        result: InvocationResult,
    },
    /// The attempt suspended waiting for any of these.
    Suspended {
        waiting_completions: Vec<u32>,
        waiting_signals: Vec<u32>,
        waiting_named_signals: Vec<String>,
    },
    /// The deployment sent `EndMessage`.
    End,
    /// The attempt failed and will be retried; kept to show why.
    AttemptFailed { code: u32, message: String },
    /// Retries are exhausted: the invocation completes with this failure.
    GaveUp { code: u32, message: String },
}

impl EffectKind {
    /// For logs.
    pub fn name(&self) -> &'static str {
        match self {
            EffectKind::PinnedDeployment { .. } => "pinned deployment",
            EffectKind::JournalEntry(_) => "journal entry",
            EffectKind::RunProposal { .. } => "run proposal",
            EffectKind::Suspended { .. } => "suspension",
            EffectKind::End => "end",
            EffectKind::AttemptFailed { .. } => "attempt failure",
            EffectKind::GaveUp { .. } => "giving up",
        }
    }
}
