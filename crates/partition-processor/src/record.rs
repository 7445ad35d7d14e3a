//! What the partition log carries: the commands the state machine applies. Everything a record
//! needs is inside it (ids, times, payloads), so applying it never consults a clock, the
//! network or randomness, and every replica reaches the same state.

use bytes::Bytes;
use reprise_service_protocol::{Frame, MessageType};
use reprise_types::{InvocationId, MillisSinceEpoch, PartitionId, PartitionKey};
use serde::{Deserialize, Serialize};

use crate::storage::ObjectId;

/// One entry of the partition log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A new invocation, from the ingress.
    Invoke(ServiceInvocation),
    /// Something an invocation attempt produced, proposed by the leader's invoker.
    Effect(InvokerEffect),
    /// A timer's time has come, proposed by the leader's timer service.
    TimerFired(TimerKey),
    /// A leadership of the partition begins, with this epoch (larger than every earlier one):
    /// from here on only effects stamped with it are taken. A new leader proposes it before it
    /// runs anything, and so does a leader that steps down and takes over again.
    AnnounceLeader { epoch: u64 },
    /// Messages of a partition's outbox (this one's or another's), delivered by the producer's
    /// leader: applied in sequence order, each at most once.
    Deliver(Delivery),
    /// The producer's leader saw these messages of its outbox accepted by their targets: their
    /// rows go.
    OutboxDelivered { seqs: Vec<u64> },
    /// A signal from outside (an awakeable resolved or rejected through the ingress).
    Signal(Signal),
    /// Cancel or kill an invocation (from the admin API).
    Terminate {
        target: InvocationId,
        mode: TerminationMode,
    },
    /// Remove a completed invocation's status and journal now (from the admin API).
    Purge { target: InvocationId },
    /// Run a paused invocation again (from the admin API).
    Resume { target: InvocationId },
    /// Answer `sink` with the invocation's result when it has one (from the ingress).
    Attach {
        target: InvocationId,
        sink: ResponseSink,
    },
}

/// How an invocation is ended from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TerminationMode {
    /// Cooperative: a running or suspended invocation gets the cancel signal (index 1) and its
    /// SDK fails what it awaits with 409 `cancelled` (cancelling the calls it made); one that has
    /// not started completes at once with that failure.
    Cancel,
    /// At once: the attempt is stopped, the invocation completes with 409 `killed`, and so do
    /// the invocations it called and is waiting for.
    Kill,
}

/// A signal for an invocation: an awakeable's completion (index 17 and above), a named signal,
/// or the built-in cancellation (index 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    pub target: InvocationId,
    pub id: SignalId,
    pub result: SignalResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignalId {
    Index(u32),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignalResult {
    Void,
    Value(Bytes),
    Failure { code: u32, message: String },
}

impl Signal {
    fn approximate_size(&self) -> usize {
        let id = match &self.id {
            SignalId::Index(_) => 4,
            SignalId::Name(name) => name.len(),
        };
        let result = match &self.result {
            SignalResult::Void => 0,
            SignalResult::Value(bytes) => bytes.len(),
            SignalResult::Failure { message, .. } => message.len(),
        };
        32 + id + result
    }
}

/// Outbox messages from one producer partition, in its sequence order. The target keeps the
/// highest sequence number it applied from each producer and skips what is not above it, so a
/// message delivered again (after a crash or a change of leader) is applied once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub producer: PartitionId,
    pub messages: Vec<(u64, OutboxMessage)>,
}

/// What one partition asks of another (or of itself): written to its outbox in the batch of the
/// record that caused it, and delivered by its leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutboxMessage {
    /// Start an invocation (a call or a send from a handler).
    Invoke(ServiceInvocation),
    /// A called invocation ended: its caller's journal gets the result.
    CallResult {
        caller: InvocationId,
        completion_id: u32,
        notification: ResultNotification,
        result: InvocationResult,
    },
    /// Answer `caller`'s `completion_id` with the target's result once it has one
    /// (`AttachInvocationCommand`).
    Attach {
        target: InvocationId,
        caller: InvocationId,
        completion_id: u32,
    },
    /// Answer `caller`'s `completion_id` with the target's result as it is now
    /// (`GetInvocationOutputCommand`).
    GetOutput {
        target: InvocationId,
        caller: InvocationId,
        completion_id: u32,
    },
    /// The answer to `GetOutput`: `None` while the target has no result yet.
    Output {
        caller: InvocationId,
        completion_id: u32,
        result: Option<InvocationResult>,
    },
    /// A signal for an invocation (from `SendSignalCommand` or `CompleteAwakeableCommand`).
    Signal(Signal),
    /// Kill a called invocation whose caller was killed.
    Kill { target: InvocationId },
}

impl OutboxMessage {
    /// The partition key of the invocation the message is for: where it is delivered.
    pub fn partition_key(&self) -> PartitionKey {
        match self {
            OutboxMessage::Invoke(invocation) => invocation.invocation_id.partition_key(),
            OutboxMessage::CallResult { caller, .. } => caller.partition_key(),
            OutboxMessage::Signal(signal) => signal.target.partition_key(),
            OutboxMessage::Kill { target }
            | OutboxMessage::Attach { target, .. }
            | OutboxMessage::GetOutput { target, .. } => target.partition_key(),
            OutboxMessage::Output { caller, .. } => caller.partition_key(),
        }
    }

    pub fn approximate_size(&self) -> usize {
        match self {
            OutboxMessage::Invoke(invocation) => invocation.approximate_size(),
            OutboxMessage::CallResult { result, .. } => 32 + result.approximate_size(),
            OutboxMessage::Signal(signal) => signal.approximate_size(),
            OutboxMessage::Kill { .. }
            | OutboxMessage::Attach { .. }
            | OutboxMessage::GetOutput { .. } => 64,
            OutboxMessage::Output { result, .. } => {
                32 + result
                    .as_ref()
                    .map_or(0, InvocationResult::approximate_size)
            }
        }
    }
}

impl Record {
    /// About how many bytes the record takes in a log entry: its payloads and names, not the
    /// exact encoding. What bounds a proposal batch by size.
    pub fn approximate_size(&self) -> usize {
        const FIXED: usize = 64;
        FIXED
            + match self {
                Record::Invoke(invocation) => invocation.approximate_size(),
                Record::Deliver(delivery) => delivery
                    .messages
                    .iter()
                    .map(|(_, message)| 8 + message.approximate_size())
                    .sum(),
                Record::OutboxDelivered { seqs } => seqs.len() * 8,
                Record::Signal(signal) => signal.approximate_size(),
                Record::Effect(effect) => match &effect.kind {
                    EffectKind::JournalEntry(frame) => frame.payload.len(),
                    EffectKind::Call { entry, callee } => {
                        entry.payload.len() + callee.target.approximate_size()
                    }
                    EffectKind::RunProposal {
                        result: InvocationResult::Success(bytes),
                        ..
                    } => bytes.len(),
                    EffectKind::RunProposal {
                        result: InvocationResult::Failure { message, .. },
                        ..
                    }
                    | EffectKind::AttemptFailed { message, .. }
                    | EffectKind::GaveUp { message, .. }
                    | EffectKind::Paused { message, .. } => message.len(),
                    EffectKind::PinnedDeployment { deployment_id, .. } => deployment_id.len(),
                    EffectKind::Suspended {
                        waiting_named_signals,
                        ..
                    } => waiting_named_signals.iter().map(String::len).sum(),
                    EffectKind::End => 0,
                },
                Record::TimerFired(_)
                | Record::AnnounceLeader { .. }
                | Record::Terminate { .. }
                | Record::Purge { .. }
                | Record::Resume { .. }
                | Record::Attach { .. } => 0,
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
    /// A scheduled invocation (a delayed send) is due: it starts.
    Start,
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
            (Some(key), HandlerType::Exclusive | HandlerType::Workflow) => {
                Some(ObjectId::new(&self.service, key))
            }
            _ => None,
        }
    }

    fn approximate_size(&self) -> usize {
        self.service.len() + self.handler.len() + self.key.as_ref().map_or(0, String::len)
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
    /// A workflow's `run`: exclusive, once per key; when its retention ends, the workflow's
    /// state and promises go with it.
    Workflow,
}

/// Where the result of an invocation goes when it completes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseSink {
    /// An ingress request waiting for the result, by the id the ingress gave it.
    Ingress { request_id: u64 },
    /// An invocation that called this one: the result completes `completion_id` in its journal
    /// (through the outbox, since the caller may live in another partition).
    Invocation {
        caller: InvocationId,
        completion_id: u32,
        notification: ResultNotification,
    },
}

/// Which notification a result completes in a waiting invocation's journal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResultNotification {
    /// `CallCompletionNotification`: the result of a call it made.
    #[default]
    Call,
    /// `AttachInvocationCompletionNotification`: the result of an invocation it attached to.
    Attach,
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
    /// When it is to start, if later than when it arrives (a delayed send): it waits as
    /// `Scheduled` until then.
    pub execution_time: Option<MillisSinceEpoch>,
}

impl ServiceInvocation {
    fn approximate_size(&self) -> usize {
        self.argument.len()
            + self.target.approximate_size()
            + self
                .headers
                .iter()
                .map(|(name, value)| name.len() + value.len() + 4)
                .sum::<usize>()
    }
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

impl InvocationResult {
    fn approximate_size(&self) -> usize {
        match self {
            InvocationResult::Success(bytes) => bytes.len(),
            InvocationResult::Failure { message, .. } => message.len(),
        }
    }
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

/// The invocation a call or one-way call command creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Callee {
    pub invocation_id: InvocationId,
    pub target: InvocationTarget,
    pub retention: Retention,
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
    /// A call or one-way call command, with its callee as the invoker resolved it against the
    /// schema (the state machine does not read the schema: its records carry what it needs).
    Call { entry: StoredFrame, callee: Callee },
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
    /// Retries are exhausted: the invocation waits, paused, until it is resumed.
    Paused { code: u32, message: String },
}

impl EffectKind {
    /// For logs.
    pub fn name(&self) -> &'static str {
        match self {
            EffectKind::PinnedDeployment { .. } => "pinned deployment",
            EffectKind::JournalEntry(_) => "journal entry",
            EffectKind::Call { .. } => "call",
            EffectKind::RunProposal { .. } => "run proposal",
            EffectKind::Suspended { .. } => "suspension",
            EffectKind::End => "end",
            EffectKind::AttemptFailed { .. } => "attempt failure",
            EffectKind::GaveUp { .. } => "giving up",
            EffectKind::Paused { .. } => "pause",
        }
    }
}
