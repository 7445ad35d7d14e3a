//! The deterministic core of a partition: [`apply`] takes one log record, reads and writes the
//! tables through a [`PartitionStore`], and returns the [`Action`]s the leader must carry out.
//! No IO but the store, no clock, no randomness: replaying the same records on the same tables
//! yields the same tables and the same actions.
//!
//! Records that make no sense for the current state (an effect of an attempt that is no longer
//! running, a notification sent as a command) are ignored and logged, the same way on every
//! replica. Only a storage failure is an error: the partition cannot go on without its tables.

use bytes::Bytes;
use prost::Message;
use reprise_service_protocol::MessageType;
use reprise_service_protocol::proto::{self, notification_template, output_command_message};
use reprise_types::InvocationId;
use tracing::{debug, warn};

use crate::action::Action;
use crate::record::{
    EffectKind, InvocationResult, InvokerEffect, Record, ServiceInvocation, StoredFrame,
};
use crate::status::{InFlight, InvocationStatus, PinnedDeployment, Waiting};
use crate::storage::{ObjectId, PartitionStore, StorageError};

/// Applies one record. On error nothing may be committed: the caller discards the batch.
pub fn apply<S: PartitionStore>(
    store: &mut S,
    record: &Record,
) -> Result<Vec<Action>, StorageError> {
    match record {
        Record::Invoke(invocation) => invoke(store, invocation),
        Record::Effect(effect) => apply_effect(store, effect),
    }
}

fn invoke<S: PartitionStore>(
    store: &mut S,
    invocation: &ServiceInvocation,
) -> Result<Vec<Action>, StorageError> {
    let id = invocation.invocation_id;
    match store.status(id)? {
        None => {}
        // The same invocation again (a retried request): join it rather than run it twice.
        Some(InvocationStatus::Completed { result, .. }) => {
            return Ok(invocation
                .response_sink
                .clone()
                .map(|sink| Action::Respond {
                    sink,
                    invocation_id: id,
                    result,
                })
                .into_iter()
                .collect());
        }
        Some(mut status) => {
            if let Some(sink) = &invocation.response_sink {
                add_sink(&mut status, sink.clone());
                store.put_status(id, status)?;
            }
            return Ok(Vec::new());
        }
    }

    let input = proto::InputCommandMessage {
        headers: invocation
            .headers
            .iter()
            .map(|(key, value)| proto::Header {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        value: Some(proto::Value {
            content: invocation.argument.clone(),
        }),
        name: String::new(),
    };
    store.put_journal_entry(id, 0, frame(MessageType::InputCommand, &input))?;
    store.put_status(
        id,
        InvocationStatus::Invoked(InFlight {
            target: invocation.target.clone(),
            response_sinks: invocation.response_sink.iter().cloned().collect(),
            journal_length: 1,
            deployment: None,
            output: None,
            notified_completions: Vec::new(),
            last_failure: None,
            created_at: invocation.created_at,
        }),
    )?;
    Ok(vec![Action::Invoke {
        invocation_id: id,
        target: invocation.target.clone(),
    }])
}

fn add_sink(status: &mut InvocationStatus, sink: crate::record::ResponseSink) {
    if let InvocationStatus::Invoked(in_flight) | InvocationStatus::Suspended { in_flight, .. } =
        status
    {
        in_flight.response_sinks.push(sink);
    }
}

fn apply_effect<S: PartitionStore>(
    store: &mut S,
    effect: &InvokerEffect,
) -> Result<Vec<Action>, StorageError> {
    let id = effect.invocation_id;
    let Some(status) = store.status(id)? else {
        warn!(invocation = %id, "effect for an unknown invocation; ignored");
        return Ok(Vec::new());
    };
    // Giving up ends a running or a suspended invocation alike.
    if let EffectKind::GaveUp { code, message } = &effect.kind
        && let InvocationStatus::Invoked(in_flight) | InvocationStatus::Suspended { in_flight, .. } =
            status
    {
        let result = InvocationResult::Failure {
            code: *code,
            message: message.clone(),
        };
        return complete(store, id, in_flight, result);
    }
    match (status, &effect.kind) {
        (InvocationStatus::Invoked(mut in_flight), kind) => match kind {
            EffectKind::PinnedDeployment {
                deployment_id,
                protocol_version,
            } => {
                if in_flight.deployment.is_none() {
                    in_flight.deployment = Some(PinnedDeployment {
                        deployment_id: deployment_id.clone(),
                        protocol_version: *protocol_version,
                    });
                    store.put_status(id, InvocationStatus::Invoked(in_flight))?;
                }
                Ok(Vec::new())
            }
            EffectKind::JournalEntry(entry) => append_command(store, id, in_flight, entry),
            EffectKind::RunProposal {
                completion_id,
                result,
            } => complete_run(store, id, in_flight, *completion_id, result),
            EffectKind::Suspended {
                waiting_completions,
                waiting_signals,
                waiting_named_signals,
            } => {
                let waiting = Waiting {
                    completions: waiting_completions.clone(),
                    signals: waiting_signals.clone(),
                    named_signals: waiting_named_signals.clone(),
                };
                suspend(store, id, in_flight, waiting)
            }
            EffectKind::End => {
                let result = in_flight
                    .output
                    .clone()
                    .unwrap_or(InvocationResult::Failure {
                        code: 500,
                        message: "the handler ended without producing an output".to_owned(),
                    });
                complete(store, id, in_flight, result)
            }
            EffectKind::AttemptFailed { code, message } => {
                in_flight.last_failure = Some(format!("[{code}] {message}"));
                store.put_status(id, InvocationStatus::Invoked(in_flight))?;
                Ok(Vec::new())
            }
            EffectKind::GaveUp { .. } => Ok(Vec::new()),
        },
        (status, kind) => {
            debug!(invocation = %id, ?kind, state = state_name(&status), "stale effect; ignored");
            Ok(Vec::new())
        }
    }
}

fn state_name(status: &InvocationStatus) -> &'static str {
    match status {
        InvocationStatus::Invoked(_) => "invoked",
        InvocationStatus::Suspended { .. } => "suspended",
        InvocationStatus::Completed { .. } => "completed",
    }
}

/// Appends a command (or custom entry) the deployment sent, verbatim.
fn append_command<S: PartitionStore>(
    store: &mut S,
    id: InvocationId,
    mut in_flight: InFlight,
    entry: &StoredFrame,
) -> Result<Vec<Action>, StorageError> {
    let Some(ty) = MessageType::from_id(entry.ty) else {
        warn!(invocation = %id, ty = entry.ty, "unknown journal entry type; ignored");
        return Ok(Vec::new());
    };
    if !(ty.is_command() || ty.is_custom()) || ty == MessageType::InputCommand {
        warn!(invocation = %id, %ty, "a deployment cannot journal this entry; ignored");
        return Ok(Vec::new());
    }
    if ty == MessageType::OutputCommand {
        match proto::OutputCommandMessage::decode(entry.payload.clone()) {
            Ok(output) => in_flight.output = Some(output_result(output)),
            Err(err) => {
                warn!(invocation = %id, %err, "undecodable output command; ignored");
                return Ok(Vec::new());
            }
        }
    }
    let index = in_flight.journal_length;
    store.put_journal_entry(id, index, entry.clone())?;
    in_flight.journal_length = index.saturating_add(1);
    // State commands take effect in the same batch as the entry that records them.
    let actions = match state_command(store, id, &mut in_flight, ty, entry)? {
        Some(notification) => {
            let index = in_flight.journal_length;
            store.put_journal_entry(id, index, notification.clone())?;
            in_flight.journal_length = index.saturating_add(1);
            vec![Action::Notify {
                invocation_id: id,
                entry_index: index,
                entry: notification,
            }]
        }
        None => Vec::new(),
    };
    store.put_status(id, InvocationStatus::Invoked(in_flight))?;
    Ok(actions)
}

/// Applies a state command to the object's state; for a lazy read, returns the notification
/// that completes it (its completion id is then recorded as notified).
fn state_command<S: PartitionStore>(
    store: &mut S,
    id: InvocationId,
    in_flight: &mut InFlight,
    ty: MessageType,
    entry: &StoredFrame,
) -> Result<Option<StoredFrame>, StorageError> {
    let is_state_command = matches!(
        ty,
        MessageType::SetStateCommand
            | MessageType::ClearStateCommand
            | MessageType::ClearAllStateCommand
            | MessageType::GetLazyStateCommand
            | MessageType::GetLazyStateKeysCommand
    );
    if !is_state_command {
        return Ok(None);
    }
    let Some(key) = in_flight.target.key.clone() else {
        warn!(invocation = %id, %ty, "a state command from a service without a key; ignored");
        return Ok(None);
    };
    let object = ObjectId::new(in_flight.target.service.clone(), key);
    let payload = entry.payload.clone();
    let undecodable = |err: prost::DecodeError| {
        warn!(invocation = %id, %ty, %err, "undecodable state command; ignored");
        Ok(None)
    };
    let (completion_id, result) = match ty {
        MessageType::SetStateCommand => {
            let command = match proto::SetStateCommandMessage::decode(payload) {
                Ok(command) => command,
                Err(err) => return undecodable(err),
            };
            let value = command.value.map(|v| v.content).unwrap_or_default();
            store.put_state(&object, command.key, value)?;
            return Ok(None);
        }
        MessageType::ClearStateCommand => {
            let command = match proto::ClearStateCommandMessage::decode(payload) {
                Ok(command) => command,
                Err(err) => return undecodable(err),
            };
            store.delete_state(&object, &command.key)?;
            return Ok(None);
        }
        MessageType::ClearAllStateCommand => {
            store.delete_all_state(&object)?;
            return Ok(None);
        }
        MessageType::GetLazyStateCommand => {
            let command = match proto::GetLazyStateCommandMessage::decode(payload) {
                Ok(command) => command,
                Err(err) => return undecodable(err),
            };
            let result = match store.state(&object, &command.key)? {
                Some(content) => notification_template::Result::Value(proto::Value { content }),
                None => notification_template::Result::Void(proto::Void {}),
            };
            (command.result_completion_id, result)
        }
        _ => {
            let command = match proto::GetLazyStateKeysCommandMessage::decode(payload) {
                Ok(command) => command,
                Err(err) => return undecodable(err),
            };
            let keys = store
                .all_state(&object)?
                .into_iter()
                .map(|(key, _)| key)
                .collect();
            let result = notification_template::Result::StateKeys(proto::StateKeys { keys });
            (command.result_completion_id, result)
        }
    };
    let notification_type = if ty == MessageType::GetLazyStateCommand {
        MessageType::GetLazyStateCompletionNotification
    } else {
        MessageType::GetLazyStateKeysCompletionNotification
    };
    in_flight.notified_completions.push(completion_id);
    let notification = proto::NotificationTemplate {
        id: Some(notification_template::Id::CompletionId(completion_id)),
        result: Some(result),
    };
    Ok(Some(frame(notification_type, &notification)))
}

fn output_result(output: proto::OutputCommandMessage) -> InvocationResult {
    match output.result {
        Some(output_command_message::Result::Value(value)) => {
            InvocationResult::Success(value.content)
        }
        Some(output_command_message::Result::Failure(failure)) => InvocationResult::Failure {
            code: failure.code,
            message: failure.message,
        },
        None => InvocationResult::Success(Bytes::new()),
    }
}

/// Turns a run proposal into the journaled notification the deployment then receives.
fn complete_run<S: PartitionStore>(
    store: &mut S,
    id: InvocationId,
    mut in_flight: InFlight,
    completion_id: u32,
    result: &InvocationResult,
) -> Result<Vec<Action>, StorageError> {
    if in_flight.notified_completions.contains(&completion_id) {
        debug!(invocation = %id, completion_id, "run already completed; proposal ignored");
        return Ok(Vec::new());
    }
    let result = match result {
        InvocationResult::Success(value) => notification_template::Result::Value(proto::Value {
            content: value.clone(),
        }),
        InvocationResult::Failure { code, message } => {
            notification_template::Result::Failure(proto::Failure {
                code: *code,
                message: message.clone(),
                metadata: Vec::new(),
            })
        }
    };
    let notification = proto::NotificationTemplate {
        id: Some(notification_template::Id::CompletionId(completion_id)),
        result: Some(result),
    };
    let entry = frame(MessageType::RunCompletionNotification, &notification);
    let index = in_flight.journal_length;
    store.put_journal_entry(id, index, entry.clone())?;
    in_flight.journal_length = index.saturating_add(1);
    in_flight.notified_completions.push(completion_id);
    store.put_status(id, InvocationStatus::Invoked(in_flight))?;
    Ok(vec![Action::Notify {
        invocation_id: id,
        entry_index: index,
        entry,
    }])
}

/// Suspends, or resumes at once when something waited for is already in the journal.
fn suspend<S: PartitionStore>(
    store: &mut S,
    id: InvocationId,
    in_flight: InFlight,
    waiting: Waiting,
) -> Result<Vec<Action>, StorageError> {
    let ready = waiting.is_empty()
        || waiting
            .completions
            .iter()
            .any(|c| in_flight.notified_completions.contains(c));
    if ready {
        let target = in_flight.target.clone();
        store.put_status(id, InvocationStatus::Invoked(in_flight))?;
        return Ok(vec![Action::Invoke {
            invocation_id: id,
            target,
        }]);
    }
    store.put_status(id, InvocationStatus::Suspended { in_flight, waiting })?;
    Ok(Vec::new())
}

fn complete<S: PartitionStore>(
    store: &mut S,
    id: InvocationId,
    in_flight: InFlight,
    result: InvocationResult,
) -> Result<Vec<Action>, StorageError> {
    store.delete_journal(id, in_flight.journal_length)?;
    store.put_status(
        id,
        InvocationStatus::Completed {
            target: in_flight.target,
            result: result.clone(),
        },
    )?;
    let mut actions = vec![Action::AbortAttempt { invocation_id: id }];
    actions.extend(
        in_flight
            .response_sinks
            .into_iter()
            .map(|sink| Action::Respond {
                sink,
                invocation_id: id,
                result: result.clone(),
            }),
    );
    Ok(actions)
}

fn frame(ty: MessageType, message: &impl Message) -> StoredFrame {
    StoredFrame {
        ty: ty.id(),
        payload: message.encode_to_vec().into(),
    }
}
