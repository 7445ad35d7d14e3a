//! Ending invocations from outside (the admin API): cancel, kill and purge. Cancellation is
//! cooperative for an invocation that runs or is suspended — it gets the cancel signal (index 1)
//! and its SDK fails what it awaits with 409, cancels the calls it made, and may compensate —
//! and immediate for one that has not started (inboxed or scheduled). A kill is immediate for
//! any invocation in flight, and reaches the calls it is waiting for through the outbox.

use reprise_types::{InvocationId, MillisSinceEpoch};
use tracing::debug;

use super::{complete, outbox, signals};
use crate::action::Action;
use crate::record::{
    InvocationResult, OutboxMessage, Signal, SignalId, SignalResult, TerminationMode,
};
use crate::status::{InFlight, InvocationStatus};
use crate::storage::{PartitionStore, StorageError};

/// The code of the failure a cancelled or killed invocation ends with.
const CONFLICT: u32 = 409;

pub(super) fn terminate<S: PartitionStore>(
    store: &mut S,
    target: InvocationId,
    mode: TerminationMode,
    now: MillisSinceEpoch,
) -> Result<Vec<Action>, StorageError> {
    let Some(status) = store.status(target)? else {
        debug!(invocation = %target, ?mode, "termination of an unknown invocation; ignored");
        return Ok(Vec::new());
    };
    match (status, mode) {
        (InvocationStatus::Completed { .. }, _) => {
            debug!(invocation = %target, ?mode, "termination of a completed invocation; ignored");
            Ok(Vec::new())
        }
        // A paused invocation gets the signal and runs again, so its handler sees it.
        (InvocationStatus::Paused(_), TerminationMode::Cancel) => {
            signals::signal(
                store,
                &Signal {
                    target,
                    id: SignalId::Index(signals::CANCEL),
                    result: SignalResult::Void,
                },
            )?;
            resume(store, target)
        }
        (
            InvocationStatus::Invoked(_) | InvocationStatus::Suspended { .. },
            TerminationMode::Cancel,
        ) => signals::signal(
            store,
            &Signal {
                target,
                id: SignalId::Index(signals::CANCEL),
                result: SignalResult::Void,
            },
        ),
        (InvocationStatus::Inboxed { in_flight, seq }, mode) => {
            // It leaves the inbox; the gap is skipped when the lock passes on.
            if let Some(object) = in_flight.target.locked_object() {
                store.delete_inbox_entry(&object, seq)?;
            }
            finish(store, target, in_flight, mode, now)
        }
        // Its start timer then fires into a completed status, which ignores it.
        (InvocationStatus::Scheduled(in_flight), mode) => {
            finish(store, target, in_flight, mode, now)
        }
        (
            InvocationStatus::Invoked(in_flight)
            | InvocationStatus::Suspended { in_flight, .. }
            | InvocationStatus::Paused(in_flight),
            TerminationMode::Kill,
        ) => finish(store, target, in_flight, mode, now),
    }
}

/// Completes the invocation with the termination's failure; a kill kills its pending calls.
fn finish<S: PartitionStore>(
    store: &mut S,
    id: InvocationId,
    in_flight: InFlight,
    mode: TerminationMode,
    now: MillisSinceEpoch,
) -> Result<Vec<Action>, StorageError> {
    let message = match mode {
        TerminationMode::Cancel => "canceled",
        TerminationMode::Kill => "killed",
    };
    let mut actions = Vec::new();
    if mode == TerminationMode::Kill {
        for (_, callee) in &in_flight.pending_calls {
            actions.push(outbox::send(
                store,
                OutboxMessage::Kill { target: *callee },
            )?);
        }
    }
    let result = InvocationResult::Failure {
        code: CONFLICT,
        message: message.to_owned(),
    };
    actions.extend(complete(store, id, in_flight, result, now)?);
    Ok(actions)
}

/// A paused invocation runs again, in a new attempt.
pub(super) fn resume<S: PartitionStore>(
    store: &mut S,
    target: InvocationId,
) -> Result<Vec<Action>, StorageError> {
    let Some(InvocationStatus::Paused(mut in_flight)) = store.status(target)? else {
        debug!(invocation = %target, "resume of an invocation that is not paused; ignored");
        return Ok(Vec::new());
    };
    in_flight.attempt = in_flight.attempt.saturating_add(1);
    let invoked = in_flight.target.clone();
    store.put_status(target, InvocationStatus::Invoked(in_flight))?;
    Ok(vec![Action::Invoke {
        invocation_id: target,
        target: invoked,
    }])
}

/// Removes a completed invocation's status and journal before their retention ends.
pub(super) fn purge<S: PartitionStore>(
    store: &mut S,
    target: InvocationId,
) -> Result<Vec<Action>, StorageError> {
    match store.status(target)? {
        Some(InvocationStatus::Completed {
            journal_length,
            target: invocation_target,
            ..
        }) => {
            store.delete_journal(target, journal_length)?;
            super::forget(store, target, &invocation_target)?;
        }
        _ => debug!(invocation = %target, "purge of an invocation that is not completed; ignored"),
    }
    Ok(Vec::new())
}
