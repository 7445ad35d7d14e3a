//! Timers as the state machine sees them: a sleep's timer is stored with the command that asks
//! for it, and when the timer fires (a `TimerFired` record) it completes the sleep, starts a
//! scheduled invocation, or purges what outlived its retention — once, whatever happened to the
//! invocation meanwhile.

use prost::Message;
use reprise_service_protocol::MessageType;
use reprise_service_protocol::proto::{self};
use reprise_types::{InvocationId, MillisSinceEpoch};
use tracing::{debug, warn};

use super::{forget, notify_completion, start, void_notification};
use crate::action::Action;
use crate::record::{StoredFrame, TimerKey, TimerKind};
use crate::status::InvocationStatus;
use crate::storage::{PartitionStore, StorageError};

/// A sleep: its timer is stored in the batch that journals the command, and the leader's
/// timer service learns of it.
pub(super) fn register_timer<S: PartitionStore>(
    store: &mut S,
    id: InvocationId,
    entry: &StoredFrame,
) -> Result<Vec<Action>, StorageError> {
    let sleep = match proto::SleepCommandMessage::decode(entry.payload.clone()) {
        Ok(sleep) => sleep,
        Err(err) => {
            warn!(invocation = %id, %err, "undecodable sleep command; no timer");
            return Ok(Vec::new());
        }
    };
    let timer = TimerKey {
        wake_at: MillisSinceEpoch::new(sleep.wake_up_time),
        invocation_id: id,
        kind: TimerKind::Completion(sleep.result_completion_id),
    };
    store.put_timer(timer)?;
    Ok(vec![Action::RegisterTimer(timer)])
}

/// A timer's time has come: completes the sleep, or purges what outlived its retention; once,
/// whatever happened to the invocation meanwhile.
pub(super) fn timer_fired<S: PartitionStore>(
    store: &mut S,
    timer: &TimerKey,
) -> Result<Vec<Action>, StorageError> {
    let id = timer.invocation_id;
    if !store.has_timer(timer)? {
        debug!(invocation = %id, kind = ?timer.kind, "timer already fired; ignored");
        return Ok(Vec::new());
    }
    store.delete_timer(timer)?;
    match timer.kind {
        TimerKind::Completion(completion_id) => {
            let entry = void_notification(MessageType::SleepCompletionNotification, completion_id);
            notify_completion(store, id, completion_id, entry)
        }
        TimerKind::Start => match store.status(id)? {
            Some(InvocationStatus::Scheduled(in_flight)) => start(store, id, in_flight),
            _ => {
                debug!(invocation = %id, "start of an invocation that is not scheduled; ignored");
                Ok(Vec::new())
            }
        },
        TimerKind::PurgeJournal | TimerKind::PurgeInvocation => {
            let Some(InvocationStatus::Completed {
                target,
                result,
                journal_length,
            }) = store.status(id)?
            else {
                debug!(invocation = %id, "purge of an invocation that is not completed; ignored");
                return Ok(Vec::new());
            };
            store.delete_journal(id, journal_length)?;
            if timer.kind == TimerKind::PurgeInvocation {
                forget(store, id, &target)?;
            } else {
                store.put_status(
                    id,
                    InvocationStatus::Completed {
                        target,
                        result,
                        journal_length: 0,
                    },
                )?;
            }
            Ok(Vec::new())
        }
    }
}
