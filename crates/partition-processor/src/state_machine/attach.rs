//! Waiting for or reading another invocation's result: `Record::Attach` from the ingress, and
//! the `AttachInvocationCommand` and `GetInvocationOutputCommand` of handlers, which go to the
//! target's partition through the outbox and come back the same way. The target is named by id,
//! by idempotent request or by workflow (whose ids are derived, see [`crate::ids`]).

use bytes::Bytes;
use prost::Message;
use reprise_service_protocol::MessageType;
use reprise_service_protocol::proto::{
    self, attach_invocation_command_message, get_invocation_output_command_message,
};
use reprise_types::InvocationId;
use tracing::debug;

use super::{join, notify_completion, outbox, respond, result_notification, void_notification};
use crate::action::Action;
use crate::ids::{idempotent_invocation_id, workflow_invocation_id};
use crate::record::{InvocationResult, OutboxMessage, ResponseSink};
use crate::status::InvocationStatus;
use crate::storage::{PartitionStore, StorageError};

/// What an unknown target answers.
fn not_found() -> InvocationResult {
    InvocationResult::Failure {
        code: 404,
        message: "not found".to_owned(),
    }
}

/// Which invocation an attach or get-output command is about and the completion id of its
/// answer (`None` for other commands), or why the command cannot be carried out.
pub fn query_of_command(
    ty: MessageType,
    payload: &Bytes,
) -> Result<Option<(InvocationId, u32)>, String> {
    use attach_invocation_command_message::Target as AttachTarget;
    use get_invocation_output_command_message::Target as OutputTarget;
    let by_id = |text: String| {
        text.parse::<InvocationId>()
            .map_err(|_| format!("`{text}` is not an invocation id"))
    };
    let idempotent = |target: proto::IdempotentRequestTarget| {
        idempotent_invocation_id(
            &target.service_name,
            target.service_key.as_deref(),
            &target.handler_name,
            &target.idempotency_key,
        )
    };
    let workflow = |target: proto::WorkflowTarget| {
        workflow_invocation_id(&target.workflow_name, &target.workflow_key)
    };
    match ty {
        MessageType::AttachInvocationCommand => {
            let command = proto::AttachInvocationCommandMessage::decode(payload.clone())
                .map_err(|err| format!("a malformed attach command: {err}"))?;
            let target = match command.target {
                Some(AttachTarget::InvocationId(id)) => by_id(id)?,
                Some(AttachTarget::IdempotentRequestTarget(target)) => idempotent(target),
                Some(AttachTarget::WorkflowTarget(target)) => workflow(target),
                None => return Err("an attach command without a target".into()),
            };
            Ok(Some((target, command.result_completion_id)))
        }
        MessageType::GetInvocationOutputCommand => {
            let command = proto::GetInvocationOutputCommandMessage::decode(payload.clone())
                .map_err(|err| format!("a malformed get output command: {err}"))?;
            let target = match command.target {
                Some(OutputTarget::InvocationId(id)) => by_id(id)?,
                Some(OutputTarget::IdempotentRequestTarget(target)) => idempotent(target),
                Some(OutputTarget::WorkflowTarget(target)) => workflow(target),
                None => return Err("a get output command without a target".into()),
            };
            Ok(Some((target, command.result_completion_id)))
        }
        _ => Ok(None),
    }
}

/// The outbox message a journaled attach or get-output command sends.
pub(super) fn query_message(
    ty: MessageType,
    target: InvocationId,
    caller: InvocationId,
    completion_id: u32,
) -> OutboxMessage {
    if ty == MessageType::AttachInvocationCommand {
        OutboxMessage::Attach {
            target,
            caller,
            completion_id,
        }
    } else {
        OutboxMessage::GetOutput {
            target,
            caller,
            completion_id,
        }
    }
}

/// `sink` gets the target's result: now if it has one, else when it completes.
pub(super) fn attach<S: PartitionStore>(
    store: &mut S,
    target: InvocationId,
    sink: ResponseSink,
) -> Result<Vec<Action>, StorageError> {
    match store.status(target)? {
        Some(InvocationStatus::Completed { result, .. }) => {
            Ok(vec![respond(store, sink, target, result)?])
        }
        Some(status) => join(store, target, status, sink),
        None => {
            debug!(invocation = %target, "attach to an unknown invocation");
            Ok(vec![respond(store, sink, target, not_found())?])
        }
    }
}

/// Answers a get-output command with the target's result as it is now.
pub(super) fn get_output<S: PartitionStore>(
    store: &mut S,
    target: InvocationId,
    caller: InvocationId,
    completion_id: u32,
) -> Result<Vec<Action>, StorageError> {
    let result = match store.status(target)? {
        Some(InvocationStatus::Completed { result, .. }) => Some(result),
        Some(_) => None,
        None => Some(not_found()),
    };
    let answer = OutboxMessage::Output {
        caller,
        completion_id,
        result,
    };
    Ok(vec![outbox::send(store, answer)?])
}

/// A get-output answer reaches its caller: void while the target had no result.
pub(super) fn output<S: PartitionStore>(
    store: &mut S,
    caller: InvocationId,
    completion_id: u32,
    result: &Option<InvocationResult>,
) -> Result<Vec<Action>, StorageError> {
    let ty = MessageType::GetInvocationOutputCompletionNotification;
    let entry = match result {
        None => void_notification(ty, completion_id),
        Some(result) => result_notification(ty, completion_id, result),
    };
    notify_completion(store, caller, completion_id, entry)
}
