//! A workflow's durable promises: `GetPromise` waits for one (at once if it is completed),
//! `PeekPromise` reads it as it is, `CompletePromise` completes it once — a second completion
//! fails with 409 — and wakes everyone waiting. The run and the shared handlers of one workflow
//! key live in one partition, so promises need no outbox.

use bytes::Bytes;
use prost::Message;
use reprise_service_protocol::MessageType;
use reprise_service_protocol::proto::{self, complete_promise_command_message};
use reprise_types::InvocationId;

use super::{journal_notification, result_notification, void_notification};
use crate::action::Action;
use crate::record::InvocationResult;
use crate::status::{InFlight, Promise};
use crate::storage::{ObjectId, PartitionStore, StorageError};

/// A promise command, read from its journaled bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromiseCommand {
    Get {
        key: String,
        completion_id: u32,
    },
    Peek {
        key: String,
        completion_id: u32,
    },
    Complete {
        key: String,
        result: InvocationResult,
        completion_id: u32,
    },
}

/// The promise command (`None` for any other command), or why it cannot be carried out. The
/// invoker checks commands with this before proposing them.
pub fn promise_of_command(
    ty: MessageType,
    payload: &Bytes,
) -> Result<Option<PromiseCommand>, String> {
    let malformed = |err: prost::DecodeError| format!("a malformed {ty}: {err}");
    Ok(Some(match ty {
        MessageType::GetPromiseCommand => {
            let command =
                proto::GetPromiseCommandMessage::decode(payload.clone()).map_err(malformed)?;
            PromiseCommand::Get {
                key: command.key,
                completion_id: command.result_completion_id,
            }
        }
        MessageType::PeekPromiseCommand => {
            let command =
                proto::PeekPromiseCommandMessage::decode(payload.clone()).map_err(malformed)?;
            PromiseCommand::Peek {
                key: command.key,
                completion_id: command.result_completion_id,
            }
        }
        MessageType::CompletePromiseCommand => {
            let command =
                proto::CompletePromiseCommandMessage::decode(payload.clone()).map_err(malformed)?;
            let result = match command.completion {
                Some(complete_promise_command_message::Completion::CompletionValue(value)) => {
                    InvocationResult::Success(value.content)
                }
                Some(complete_promise_command_message::Completion::CompletionFailure(failure)) => {
                    InvocationResult::Failure {
                        code: failure.code,
                        message: failure.message,
                    }
                }
                None => return Err("a complete promise command without a completion".into()),
            };
            PromiseCommand::Complete {
                key: command.key,
                result,
                completion_id: command.result_completion_id,
            }
        }
        _ => return Ok(None),
    }))
}

/// Who a completed promise wakes, and with what.
pub(super) struct Woken {
    pub(super) listeners: Vec<(InvocationId, u32)>,
    pub(super) result: InvocationResult,
}

impl Woken {
    /// The notification each listener's `GetPromise` is completed with.
    pub(super) fn notification(&self, completion_id: u32) -> crate::record::StoredFrame {
        result_notification(
            MessageType::GetPromiseCompletionNotification,
            completion_id,
            &self.result,
        )
    }
}

/// Carries out a journaled promise command of invocation `id` on `workflow`; the caller writes
/// the invocation's status, then wakes the listeners.
pub(super) fn apply<S: PartitionStore>(
    store: &mut S,
    id: InvocationId,
    in_flight: &mut InFlight,
    workflow: &ObjectId,
    command: PromiseCommand,
) -> Result<(Vec<Action>, Option<Woken>), StorageError> {
    match command {
        PromiseCommand::Get { key, completion_id } => match store.promise(workflow, &key)? {
            Some(Promise::Completed(result)) => {
                let entry = result_notification(
                    MessageType::GetPromiseCompletionNotification,
                    completion_id,
                    &result,
                );
                let notify = journal_notification(store, id, in_flight, completion_id, entry)?;
                Ok((vec![notify], None))
            }
            pending => {
                let mut listeners = match pending {
                    Some(Promise::Pending { listeners }) => listeners,
                    _ => Vec::new(),
                };
                listeners.push((id, completion_id));
                store.put_promise(workflow, &key, &Promise::Pending { listeners })?;
                Ok((Vec::new(), None))
            }
        },
        PromiseCommand::Peek { key, completion_id } => {
            let entry = match store.promise(workflow, &key)? {
                Some(Promise::Completed(result)) => result_notification(
                    MessageType::PeekPromiseCompletionNotification,
                    completion_id,
                    &result,
                ),
                _ => void_notification(
                    MessageType::PeekPromiseCompletionNotification,
                    completion_id,
                ),
            };
            let notify = journal_notification(store, id, in_flight, completion_id, entry)?;
            Ok((vec![notify], None))
        }
        PromiseCommand::Complete {
            key,
            result,
            completion_id,
        } => {
            let (reply, woken) = match store.promise(workflow, &key)? {
                Some(Promise::Completed(_)) => {
                    let failure = InvocationResult::Failure {
                        code: 409,
                        message: "promise was already completed".to_owned(),
                    };
                    let reply = result_notification(
                        MessageType::CompletePromiseCompletionNotification,
                        completion_id,
                        &failure,
                    );
                    (reply, None)
                }
                pending => {
                    let listeners = match pending {
                        Some(Promise::Pending { listeners }) => listeners,
                        _ => Vec::new(),
                    };
                    store.put_promise(workflow, &key, &Promise::Completed(result.clone()))?;
                    let reply = void_notification(
                        MessageType::CompletePromiseCompletionNotification,
                        completion_id,
                    );
                    (reply, Some(Woken { listeners, result }))
                }
            };
            let notify = journal_notification(store, id, in_flight, completion_id, reply)?;
            Ok((vec![notify], woken))
        }
    }
}
