//! Virtual objects: their state, changed by state commands in the batch that journals them,
//! and their lock, which lets one exclusive invocation per object run at a time while the
//! others wait in the object's inbox in arrival order.

use prost::Message;
use reprise_service_protocol::MessageType;
use reprise_service_protocol::proto::{self, notification_template};
use reprise_types::InvocationId;
use tracing::warn;

use super::frame;
use crate::action::Action;
use crate::record::{HandlerType, StoredFrame};
use crate::status::{InFlight, InvocationStatus, ObjectLock};
use crate::storage::{ObjectId, PartitionStore, StorageError};

/// Takes the object's lock for `id` if it is free and returns `None`; else queues `id` in the
/// object's inbox and returns the sequence number it waits at.
pub(super) fn lock_or_enqueue<S: PartitionStore>(
    store: &mut S,
    object: &ObjectId,
    id: InvocationId,
) -> Result<Option<u64>, StorageError> {
    match store.object_lock(object)? {
        None => {
            let lock = ObjectLock {
                holder: id,
                inbox_head: 0,
                inbox_tail: 0,
            };
            store.put_object_lock(object, lock)?;
            Ok(None)
        }
        Some(mut lock) => {
            let seq = lock.inbox_tail;
            store.put_inbox_entry(object, seq, id)?;
            lock.inbox_tail = seq.saturating_add(1);
            store.put_object_lock(object, lock)?;
            Ok(Some(seq))
        }
    }
}

/// `id` no longer holds the object: hands the lock to the first invocation of the inbox (and
/// invokes it), or frees it when the inbox is empty.
pub(super) fn release<S: PartitionStore>(
    store: &mut S,
    object: &ObjectId,
    id: InvocationId,
) -> Result<Vec<Action>, StorageError> {
    let Some(mut lock) = store.object_lock(object)? else {
        warn!(invocation = %id, ?object, "releasing an object that is not locked; ignored");
        return Ok(Vec::new());
    };
    if lock.holder != id {
        warn!(invocation = %id, holder = %lock.holder, ?object, "releasing an object held by another invocation; ignored");
        return Ok(Vec::new());
    }
    while lock.inbox_head < lock.inbox_tail {
        let seq = lock.inbox_head;
        lock.inbox_head = seq.saturating_add(1);
        // A gap is an entry that left the inbox early (a killed invocation, later).
        let Some(next) = store.inbox_entry(object, seq)? else {
            continue;
        };
        store.delete_inbox_entry(object, seq)?;
        let Some(InvocationStatus::Inboxed { in_flight, .. }) = store.status(next)? else {
            warn!(invocation = %next, ?object, "an inbox entry whose invocation is not inboxed; skipped");
            continue;
        };
        lock.holder = next;
        store.put_object_lock(object, lock)?;
        let target = in_flight.target.clone();
        store.put_status(next, InvocationStatus::Invoked(in_flight))?;
        return Ok(vec![Action::Invoke {
            invocation_id: next,
            target,
        }]);
    }
    store.delete_object_lock(object)?;
    Ok(Vec::new())
}

/// Applies a state command to the object's state; for a lazy read, returns the notification
/// that completes it (its completion id is then recorded as notified).
pub(super) fn state_command<S: PartitionStore>(
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
    let Some(object) = in_flight.target.object() else {
        warn!(invocation = %id, %ty, "a state command from a service without a key; ignored");
        return Ok(None);
    };
    let writes = matches!(
        ty,
        MessageType::SetStateCommand
            | MessageType::ClearStateCommand
            | MessageType::ClearAllStateCommand
    );
    if writes && in_flight.target.handler_type == HandlerType::Shared {
        warn!(invocation = %id, %ty, "a shared handler cannot change state; ignored");
        return Ok(None);
    }
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
