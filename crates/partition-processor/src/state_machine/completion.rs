//! The end of an invocation: its callers are answered, its object's lock passes on, and what its
//! retention keeps is kept, with timers that purge it when the retention ends.

use reprise_types::{InvocationId, MillisSinceEpoch};

use super::{object, respond};
use crate::action::Action;
use crate::record::{InvocationResult, Retention, TimerKey, TimerKind};
use crate::status::{InFlight, InvocationStatus};
use crate::storage::{PartitionStore, StorageError};

/// Ends an invocation at `now`: its callers get the result, its object's lock passes on, and
/// what its retention keeps is kept, with timers that purge it when the retention ends.
pub(super) fn complete<S: PartitionStore>(
    store: &mut S,
    id: InvocationId,
    in_flight: InFlight,
    result: InvocationResult,
    now: MillisSinceEpoch,
) -> Result<Vec<Action>, StorageError> {
    let Retention {
        completion_ms,
        journal_ms,
    } = in_flight.retention;
    let journal_ms = journal_ms.min(completion_ms);
    let mut actions = vec![Action::AbortAttempt { invocation_id: id }];
    let mut purge_at = |kind, after_ms: u64| -> Result<(), StorageError> {
        let timer = TimerKey {
            wake_at: MillisSinceEpoch::new(now.as_u64().saturating_add(after_ms)),
            invocation_id: id,
            kind,
        };
        store.put_timer(timer)?;
        actions.push(Action::RegisterTimer(timer));
        Ok(())
    };
    let journal_length = if journal_ms > 0 {
        if journal_ms < completion_ms {
            purge_at(TimerKind::PurgeJournal, journal_ms)?;
        }
        in_flight.journal_length
    } else {
        0
    };
    if completion_ms > 0 {
        purge_at(TimerKind::PurgeInvocation, completion_ms)?;
    }
    if journal_length == 0 {
        store.delete_journal(id, in_flight.journal_length)?;
    }
    // Only the holder releases: an invocation that ends while inboxed never held the lock.
    let released = match in_flight.target.locked_object() {
        Some(object)
            if store
                .object_lock(&object)?
                .is_some_and(|lock| lock.holder == id) =>
        {
            object::release(store, &object, id)?
        }
        _ => Vec::new(),
    };
    if completion_ms > 0 {
        store.put_status(
            id,
            InvocationStatus::Completed {
                target: in_flight.target,
                result: result.clone(),
                journal_length,
            },
        )?;
    } else {
        forget(store, id, &in_flight.target)?;
    }
    for sink in in_flight.response_sinks {
        actions.push(respond(store, sink, id, result.clone())?);
    }
    actions.extend(released);
    Ok(actions)
}

/// A completed invocation's status goes (its journal is gone already); a workflow's run takes
/// the workflow's state and promises with it.
pub(super) fn forget<S: PartitionStore>(
    store: &mut S,
    id: InvocationId,
    target: &crate::record::InvocationTarget,
) -> Result<(), StorageError> {
    store.delete_status(id)?;
    if target.handler_type == crate::record::HandlerType::Workflow
        && let Some(workflow) = target.object()
    {
        store.delete_all_state(&workflow)?;
        store.delete_all_promises(&workflow)?;
    }
    Ok(())
}
