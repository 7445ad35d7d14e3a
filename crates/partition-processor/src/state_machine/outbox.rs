//! Calls and sends between invocations. A call or one-way call command is journaled together
//! with an outbox message that creates the callee, and with the notification that gives the
//! caller the callee's id; when a called invocation ends, its result goes back through the
//! outbox too. The partition's leader delivers its outbox in sequence order (`Record::Deliver`
//! at the target), and the target applies each message once: it keeps the highest sequence
//! number it applied from every producer and skips what is not above it.

use prost::Message;
use reprise_service_protocol::MessageType;
use reprise_service_protocol::proto::{self, notification_template};
use reprise_types::{InvocationId, MillisSinceEpoch};
use tracing::{debug, warn};

use super::{
    frame, invoke, journal_command, journal_notification, notify_completion, result_notification,
};
use crate::action::Action;
use crate::record::{
    Callee, Delivery, InvocationResult, OutboxMessage, ResponseSink, ResultNotification,
    ServiceInvocation, StoredFrame,
};
use crate::status::{InFlight, InvocationStatus};
use crate::storage::{PartitionStore, StorageError};

/// Whether Reprise carries the command out: every command of protocol V5/V6, listed so that a
/// command added to [`MessageType`] later is refused until it is carried out. An attempt that
/// sends any other command fails with an error naming it (the invoker checks before proposing),
/// so nothing is journaled and then silently not done.
pub fn is_implemented(ty: MessageType) -> bool {
    use MessageType::*;
    ty.is_custom()
        || matches!(
            ty,
            InputCommand
                | OutputCommand
                | GetLazyStateCommand
                | SetStateCommand
                | ClearStateCommand
                | ClearAllStateCommand
                | GetLazyStateKeysCommand
                | GetEagerStateCommand
                | GetEagerStateKeysCommand
                | GetPromiseCommand
                | PeekPromiseCommand
                | CompletePromiseCommand
                | SleepCommand
                | CallCommand
                | OneWayCallCommand
                | SendSignalCommand
                | RunCommand
                | AttachInvocationCommand
                | GetInvocationOutputCommand
                | CompleteAwakeableCommand
        )
}

/// Writes a message to the outbox under the next sequence number; the action wakes the leader's
/// delivery.
pub(super) fn send<S: PartitionStore>(
    store: &mut S,
    message: OutboxMessage,
) -> Result<Action, StorageError> {
    let seq = store.outbox_next()?;
    store.put_outbox(seq, &message)?;
    store.put_outbox_next(seq.saturating_add(1))?;
    Ok(Action::DeliverOutbox { seq })
}

/// What a call or one-way call command asks for, from its journaled bytes.
struct CallCommand {
    parameter: bytes::Bytes,
    headers: Vec<proto::Header>,
    id_notification: u32,
    /// For a call: the completion id of its result.
    result_completion: Option<u32>,
    invoke_time: u64,
}

fn decode_call(entry: &StoredFrame) -> Result<CallCommand, String> {
    match MessageType::from_id(entry.ty) {
        Some(MessageType::CallCommand) => {
            let call = proto::CallCommandMessage::decode(entry.payload.clone())
                .map_err(|err| err.to_string())?;
            Ok(CallCommand {
                parameter: call.parameter,
                headers: call.headers,
                id_notification: call.invocation_id_notification_idx,
                result_completion: Some(call.result_completion_id),
                invoke_time: 0,
            })
        }
        Some(MessageType::OneWayCallCommand) => {
            let send = proto::OneWayCallCommandMessage::decode(entry.payload.clone())
                .map_err(|err| err.to_string())?;
            Ok(CallCommand {
                parameter: send.parameter,
                headers: send.headers,
                id_notification: send.invocation_id_notification_idx,
                result_completion: None,
                invoke_time: send.invoke_time,
            })
        }
        _ => Err(format!("message type {:#06x} is not a call", entry.ty)),
    }
}

/// A call or one-way call of a running invocation: the command, the callee's creation (in the
/// outbox) and the notification with the callee's id, in one batch.
pub(super) fn call<S: PartitionStore>(
    store: &mut S,
    id: InvocationId,
    mut in_flight: InFlight,
    entry: &StoredFrame,
    callee: &Callee,
    now: MillisSinceEpoch,
) -> Result<Vec<Action>, StorageError> {
    let command = match decode_call(entry) {
        Ok(command) => command,
        Err(err) => {
            warn!(invocation = %id, %err, "undecodable call command; ignored");
            return Ok(Vec::new());
        }
    };
    journal_command(store, id, &mut in_flight, entry)?;
    if let Some(completion_id) = command.result_completion {
        in_flight
            .pending_calls
            .push((completion_id, callee.invocation_id));
    }
    let invocation = ServiceInvocation {
        invocation_id: callee.invocation_id,
        target: callee.target.clone(),
        argument: command.parameter,
        headers: command
            .headers
            .into_iter()
            .map(|header| (header.key, header.value))
            .collect(),
        response_sink: command
            .result_completion
            .map(|completion_id| ResponseSink::Invocation {
                caller: id,
                completion_id,
                notification: ResultNotification::Call,
            }),
        created_at: now,
        retention: callee.retention,
        execution_time: (command.invoke_time > now.as_u64())
            .then(|| MillisSinceEpoch::new(command.invoke_time)),
    };
    let mut actions = vec![send(store, OutboxMessage::Invoke(invocation))?];
    let notification = proto::NotificationTemplate {
        id: Some(notification_template::Id::CompletionId(
            command.id_notification,
        )),
        result: Some(notification_template::Result::InvocationId(
            callee.invocation_id.to_string(),
        )),
    };
    let entry = frame(
        MessageType::CallInvocationIdCompletionNotification,
        &notification,
    );
    actions.push(journal_notification(
        store,
        id,
        &mut in_flight,
        command.id_notification,
        entry,
    )?);
    store.put_status(id, InvocationStatus::Invoked(in_flight))?;
    Ok(actions)
}

/// Messages from a producer's outbox, each applied once, in order.
pub(super) fn deliver<S: PartitionStore>(
    store: &mut S,
    delivery: &Delivery,
    now: MillisSinceEpoch,
) -> Result<Vec<Action>, StorageError> {
    let mut applied = store.delivered_from(delivery.producer)?;
    let mut actions = Vec::new();
    for (seq, message) in &delivery.messages {
        if applied.is_some_and(|last| *seq <= last) {
            debug!(producer = %delivery.producer, seq, "outbox message delivered again; skipped");
            continue;
        }
        actions.extend(match message {
            OutboxMessage::Invoke(invocation) => invoke(store, invocation, now)?,
            OutboxMessage::CallResult {
                caller,
                completion_id,
                notification,
                result,
            } => call_result(store, *caller, *completion_id, *notification, result)?,
            OutboxMessage::Attach {
                target,
                caller,
                completion_id,
            } => super::attach::attach(
                store,
                *target,
                ResponseSink::Invocation {
                    caller: *caller,
                    completion_id: *completion_id,
                    notification: ResultNotification::Attach,
                },
            )?,
            OutboxMessage::GetOutput {
                target,
                caller,
                completion_id,
            } => super::attach::get_output(store, *target, *caller, *completion_id)?,
            OutboxMessage::Output {
                caller,
                completion_id,
                result,
            } => super::attach::output(store, *caller, *completion_id, result)?,
            OutboxMessage::Signal(signal) => super::signals::signal(store, signal)?,
            OutboxMessage::Kill { target } => super::terminate::terminate(
                store,
                *target,
                crate::record::TerminationMode::Kill,
                now,
            )?,
        });
        applied = Some(*seq);
    }
    if let Some(last) = applied {
        store.put_delivered_from(delivery.producer, last)?;
    }
    Ok(actions)
}

/// A called (or attached to) invocation ended: its result completes the caller's call (or
/// attach).
fn call_result<S: PartitionStore>(
    store: &mut S,
    caller: InvocationId,
    completion_id: u32,
    notification: ResultNotification,
    result: &InvocationResult,
) -> Result<Vec<Action>, StorageError> {
    // The call is no longer pending: a kill of the caller need not reach the callee.
    match store.status(caller)? {
        Some(InvocationStatus::Invoked(mut in_flight)) => {
            in_flight.pending_calls.retain(|(c, _)| *c != completion_id);
            store.put_status(caller, InvocationStatus::Invoked(in_flight))?;
        }
        Some(InvocationStatus::Suspended {
            mut in_flight,
            waiting,
        }) => {
            in_flight.pending_calls.retain(|(c, _)| *c != completion_id);
            store.put_status(caller, InvocationStatus::Suspended { in_flight, waiting })?;
        }
        Some(InvocationStatus::Paused(mut in_flight)) => {
            in_flight.pending_calls.retain(|(c, _)| *c != completion_id);
            store.put_status(caller, InvocationStatus::Paused(in_flight))?;
        }
        _ => {}
    }
    let ty = match notification {
        ResultNotification::Call => MessageType::CallCompletionNotification,
        ResultNotification::Attach => MessageType::AttachInvocationCompletionNotification,
    };
    let entry = result_notification(ty, completion_id, result);
    notify_completion(store, caller, completion_id, entry)
}
