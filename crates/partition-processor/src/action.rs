//! What applying a record asks the world to do. Only the partition's leader carries actions
//! out (its actuators: the invoker, the ingress responder); followers apply the same records
//! and drop the actions. A new leader rebuilds the pending ones from the tables.

use reprise_types::InvocationId;

use crate::record::{InvocationResult, InvocationTarget, ResponseSink, StoredFrame, TimerKey};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start (or resume) an attempt: the invoker reads the journal from the tables.
    Invoke {
        invocation_id: InvocationId,
        target: InvocationTarget,
    },
    /// A notification is now durable in the journal: the running attempt, if any, may
    /// receive it.
    Notify {
        invocation_id: InvocationId,
        entry_index: u32,
        entry: StoredFrame,
    },
    /// The invocation is over: stop any attempt still running.
    AbortAttempt { invocation_id: InvocationId },
    /// A timer was stored: the timer service fires it when its time comes.
    RegisterTimer(TimerKey),
    /// The outbox has a new message, under this sequence number: the leader delivers it.
    DeliverOutbox { seq: u64 },
    /// Answer a waiting caller.
    Respond {
        sink: ResponseSink,
        invocation_id: InvocationId,
        result: InvocationResult,
    },
}
