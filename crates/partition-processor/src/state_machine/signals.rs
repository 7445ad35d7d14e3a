//! Signals: an awakeable's completion, a named signal, or the built-in cancellation (index 1),
//! delivered to an invocation as a `SignalNotification` in its journal. They come from other
//! invocations (`SendSignalCommand`, `CompleteAwakeableCommand`, through the outbox) or from the
//! ingress (`Record::Signal`). A signal is journaled whatever the invocation is doing — running,
//! suspended, waiting in an inbox or for its start time — so one that arrives before the handler
//! waits for it is there when it does; an indexed signal is journaled once.

use bytes::Bytes;
use prost::Message;
use reprise_service_protocol::MessageType;
use reprise_service_protocol::awakeable::AwakeableId;
use reprise_service_protocol::proto::{self, notification_template};
use reprise_types::InvocationId;
use tracing::debug;

use super::frame;
use crate::action::Action;
use crate::record::{Signal, SignalId, SignalResult};
use crate::status::InvocationStatus;
use crate::storage::{PartitionStore, StorageError};

/// The signal a `SendSignalCommand` or `CompleteAwakeableCommand` sends (`None` for other
/// commands), or why the command cannot be carried out. The invoker checks commands with this
/// before proposing them, and the state machine builds the signal with it.
pub fn signal_of_command(ty: MessageType, payload: &Bytes) -> Result<Option<Signal>, String> {
    match ty {
        MessageType::SendSignalCommand => {
            let command = proto::SendSignalCommandMessage::decode(payload.clone())
                .map_err(|err| format!("a malformed send signal command: {err}"))?;
            let target: InvocationId = command.target_invocation_id.parse().map_err(|_| {
                format!(
                    "a signal for `{}`, which is not an invocation id",
                    command.target_invocation_id
                )
            })?;
            let id = match command.signal_id {
                Some(proto::send_signal_command_message::SignalId::Idx(index)) => {
                    SignalId::Index(index)
                }
                Some(proto::send_signal_command_message::SignalId::Name(name)) => {
                    SignalId::Name(name)
                }
                None => return Err("a send signal command without a signal id".into()),
            };
            let result = match command.result {
                Some(proto::send_signal_command_message::Result::Void(_)) => SignalResult::Void,
                Some(proto::send_signal_command_message::Result::Value(value)) => {
                    SignalResult::Value(value.content)
                }
                Some(proto::send_signal_command_message::Result::Failure(failure)) => {
                    SignalResult::Failure {
                        code: failure.code,
                        message: failure.message,
                    }
                }
                None => return Err("a send signal command without a result".into()),
            };
            Ok(Some(Signal { target, id, result }))
        }
        MessageType::CompleteAwakeableCommand => {
            let command = proto::CompleteAwakeableCommandMessage::decode(payload.clone())
                .map_err(|err| format!("a malformed complete awakeable command: {err}"))?;
            let awakeable: AwakeableId = command.awakeable_id.parse().map_err(
                |err: reprise_service_protocol::awakeable::AwakeableIdError| err.to_string(),
            )?;
            let result = match command.result {
                Some(proto::complete_awakeable_command_message::Result::Value(value)) => {
                    SignalResult::Value(value.content)
                }
                Some(proto::complete_awakeable_command_message::Result::Failure(failure)) => {
                    SignalResult::Failure {
                        code: failure.code,
                        message: failure.message,
                    }
                }
                None => return Err("a complete awakeable command without a result".into()),
            };
            Ok(Some(Signal {
                target: awakeable.invocation_id,
                id: SignalId::Index(awakeable.signal_index),
                result,
            }))
        }
        _ => Ok(None),
    }
}

/// The signal index of the built-in cancellation.
pub(super) const CANCEL: u32 = 1;

/// Journals `signal` for its invocation: a running attempt is told, a suspended invocation
/// waiting for it resumes.
pub(super) fn signal<S: PartitionStore>(
    store: &mut S,
    signal: &Signal,
) -> Result<Vec<Action>, StorageError> {
    let id = signal.target;
    let status = store.status(id)?;
    let Some(mut in_flight) = status
        .as_ref()
        .and_then(InvocationStatus::in_flight)
        .cloned()
    else {
        debug!(invocation = %id, "a signal for an invocation that is not in flight; ignored");
        return Ok(Vec::new());
    };
    let notification_id = match &signal.id {
        SignalId::Index(index) => {
            if in_flight.notified_signals.contains(index) {
                debug!(invocation = %id, index, "signal already delivered; ignored");
                return Ok(Vec::new());
            }
            in_flight.notified_signals.push(*index);
            notification_template::Id::SignalId(*index)
        }
        SignalId::Name(name) => {
            if !in_flight.notified_signal_names.contains(name) {
                in_flight.notified_signal_names.push(name.clone());
            }
            notification_template::Id::SignalName(name.clone())
        }
    };
    let result = match &signal.result {
        SignalResult::Void => notification_template::Result::Void(proto::Void {}),
        SignalResult::Value(value) => notification_template::Result::Value(proto::Value {
            content: value.clone(),
        }),
        SignalResult::Failure { code, message } => {
            notification_template::Result::Failure(proto::Failure {
                code: *code,
                message: message.clone(),
                metadata: Vec::new(),
            })
        }
    };
    let entry = frame(
        MessageType::SignalNotification,
        &proto::NotificationTemplate {
            id: Some(notification_id),
            result: Some(result),
        },
    );
    let index = in_flight.journal_length;
    store.put_journal_entry(id, index, entry.clone())?;
    in_flight.journal_length = index.saturating_add(1);
    let (status, actions) = match status {
        Some(InvocationStatus::Invoked(_)) => (
            InvocationStatus::Invoked(in_flight),
            vec![Action::Notify {
                invocation_id: id,
                entry_index: index,
                entry,
            }],
        ),
        // A cancellation resumes a suspended invocation whatever it waits for: its SDK must see
        // it to fail what the handler awaits.
        Some(InvocationStatus::Suspended { waiting, .. })
            if waiting.is_ready(&in_flight) || signal.id == SignalId::Index(CANCEL) =>
        {
            in_flight.attempt = in_flight.attempt.saturating_add(1);
            let target = in_flight.target.clone();
            (
                InvocationStatus::Invoked(in_flight),
                vec![Action::Invoke {
                    invocation_id: id,
                    target,
                }],
            )
        }
        Some(InvocationStatus::Suspended { waiting, .. }) => (
            InvocationStatus::Suspended { in_flight, waiting },
            Vec::new(),
        ),
        Some(InvocationStatus::Inboxed { seq, .. }) => {
            (InvocationStatus::Inboxed { in_flight, seq }, Vec::new())
        }
        Some(InvocationStatus::Paused(_)) => (InvocationStatus::Paused(in_flight), Vec::new()),
        Some(InvocationStatus::Scheduled(_)) => {
            (InvocationStatus::Scheduled(in_flight), Vec::new())
        }
        Some(InvocationStatus::Completed { .. }) | None => return Ok(Vec::new()),
    };
    store.put_status(id, status)?;
    Ok(actions)
}
