//! The lifecycle of one invocation as the partition stores it.

use reprise_types::{InvocationId, MillisSinceEpoch};
use serde::{Deserialize, Serialize};

use crate::record::{InvocationResult, InvocationTarget, ResponseSink, Retention};

/// What every non-completed status knows about its invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    pub target: InvocationTarget,
    pub response_sinks: Vec<ResponseSink>,
    /// Commands and notifications in the journal; entry 0 is the input.
    pub journal_length: u32,
    /// Commands in the journal (the input is the first): where the next command goes.
    pub commands: u32,
    /// The current attempt: a new number each time an attempt fails or the invocation resumes.
    pub attempt: u32,
    /// Set by the first attempt: later attempts go to the same deployment.
    pub deployment: Option<PinnedDeployment>,
    /// The output command's result, once the deployment sent it; final at `End`.
    pub output: Option<InvocationResult>,
    /// Completion ids that have a notification in the journal.
    pub notified_completions: Vec<u32>,
    /// Signal indexes that have a notification in the journal (each is delivered once).
    pub notified_signals: Vec<u32>,
    /// Names of the named signals in the journal.
    pub notified_signal_names: Vec<String>,
    /// Calls whose result has not arrived yet: (result completion id, callee). Killing this
    /// invocation kills them too.
    pub pending_calls: Vec<(u32, InvocationId)>,
    /// Why the last attempt failed, when it did.
    pub last_failure: Option<String>,
    pub created_at: MillisSinceEpoch,
    pub retention: Retention,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedDeployment {
    pub deployment_id: String,
    pub protocol_version: u32,
}

/// What a suspended invocation waits for; any one of them resumes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    pub completions: Vec<u32>,
    pub signals: Vec<u32>,
    pub named_signals: Vec<String>,
}

impl Waiting {
    pub fn is_empty(&self) -> bool {
        self.completions.is_empty() && self.signals.is_empty() && self.named_signals.is_empty()
    }

    /// Whether the journal of `in_flight` already has something this waits for.
    pub fn is_ready(&self, in_flight: &InFlight) -> bool {
        self.completions
            .iter()
            .any(|c| in_flight.notified_completions.contains(c))
            || self
                .signals
                .iter()
                .any(|s| in_flight.notified_signals.contains(s))
            || self
                .named_signals
                .iter()
                .any(|n| in_flight.notified_signal_names.contains(n))
    }
}

/// A workflow's durable promise: completed once, with a value or a failure; until then, the
/// invocations waiting for it (id, completion id of their `GetPromise`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Promise {
    Pending { listeners: Vec<(InvocationId, u32)> },
    Completed(InvocationResult),
}

/// The lock of a virtual object: which invocation holds it, and the object's inbox, the
/// sequence numbers `inbox_head..inbox_tail` of invocations waiting for it in arrival order.
/// The row exists exactly while an exclusive invocation of the object is running or suspended;
/// the inbox is only ever non-empty while the lock is held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectLock {
    pub holder: InvocationId,
    pub inbox_head: u64,
    pub inbox_tail: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InvocationStatus {
    /// Waiting for its execution time (a delayed send), with a `Start` timer; its input is
    /// journaled.
    Scheduled(InFlight),
    /// Waiting in its object's inbox (at `seq`) for the object's lock; its input is journaled.
    Inboxed { in_flight: InFlight, seq: u64 },
    /// An attempt is running or about to run.
    Invoked(InFlight),
    /// Its attempts are exhausted: nothing runs until it is resumed (or cancelled, or killed).
    Paused(InFlight),
    /// No attempt runs; the invocation resumes when something it waits for arrives.
    Suspended {
        in_flight: InFlight,
        waiting: Waiting,
    },
    /// Done. Kept for its completion retention, so that a late duplicate of the invocation is
    /// recognised and its result can be read; its journal's `journal_length` entries stay for
    /// the journal retention (0 once they are gone).
    Completed {
        target: InvocationTarget,
        result: InvocationResult,
        journal_length: u32,
    },
}

impl InvocationStatus {
    pub fn in_flight_mut(&mut self) -> Option<&mut InFlight> {
        match self {
            InvocationStatus::Invoked(in_flight)
            | InvocationStatus::Scheduled(in_flight)
            | InvocationStatus::Paused(in_flight)
            | InvocationStatus::Inboxed { in_flight, .. }
            | InvocationStatus::Suspended { in_flight, .. } => Some(in_flight),
            InvocationStatus::Completed { .. } => None,
        }
    }

    pub fn in_flight(&self) -> Option<&InFlight> {
        match self {
            InvocationStatus::Invoked(in_flight)
            | InvocationStatus::Scheduled(in_flight)
            | InvocationStatus::Paused(in_flight)
            | InvocationStatus::Inboxed { in_flight, .. }
            | InvocationStatus::Suspended { in_flight, .. } => Some(in_flight),
            InvocationStatus::Completed { .. } => None,
        }
    }
}
