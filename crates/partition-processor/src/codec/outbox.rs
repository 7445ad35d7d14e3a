//! The stored forms of what goes between partitions: outbox messages (rows of the outbox table
//! and the payload of deliveries), signals, and the queries of attach and output.

use bytes::Bytes;
use prost::Message;
use reprise_raft_storage::DecodeError;
use reprise_types::{InvocationId, PartitionId};

use super::{
    StoredValue, failure_to, id_from, id_to, invocation_from, invocation_to, notification_from,
    notification_to, proto, required, result_from, result_to,
};
use crate::record::{Delivery, OutboxMessage, Signal, SignalId, SignalResult};

fn query_to(
    target: InvocationId,
    caller: InvocationId,
    completion_id: u32,
) -> proto::InvocationQuery {
    proto::InvocationQuery {
        target: id_to(target),
        caller: id_to(caller),
        completion_id,
    }
}

pub(super) fn signal_to(signal: &Signal) -> proto::Signal {
    use proto::signal::{Id, Result};
    proto::Signal {
        target: id_to(signal.target),
        id: Some(match &signal.id {
            SignalId::Index(index) => Id::Index(*index),
            SignalId::Name(name) => Id::Name(name.clone()),
        }),
        result: Some(match &signal.result {
            SignalResult::Void => Result::Void(proto::Void {}),
            SignalResult::Value(bytes) => Result::Value(bytes.clone()),
            SignalResult::Failure { code, message } => Result::Failure(failure_to(*code, message)),
        }),
    }
}

pub(super) fn signal_from(signal: proto::Signal) -> Result<Signal, DecodeError> {
    use proto::signal::{Id, Result};
    Ok(Signal {
        target: id_from(&signal.target)?,
        id: match required(signal.id, "a signal's id")? {
            Id::Index(index) => SignalId::Index(index),
            Id::Name(name) => SignalId::Name(name),
        },
        result: match required(signal.result, "a signal's result")? {
            Result::Void(_) => SignalResult::Void,
            Result::Value(bytes) => SignalResult::Value(bytes),
            Result::Failure(failure) => SignalResult::Failure {
                code: failure.code,
                message: failure.message,
            },
        },
    })
}

pub(super) fn outbox_to(message: &OutboxMessage) -> proto::OutboxMessage {
    use proto::outbox_message::Message;
    let message = match message {
        OutboxMessage::Invoke(invocation) => Message::Invoke(invocation_to(invocation)),
        OutboxMessage::CallResult {
            caller,
            completion_id,
            notification,
            result,
        } => Message::CallResult(proto::CallResult {
            caller: id_to(*caller),
            completion_id: *completion_id,
            result: Some(result_to(result)),
            notification: notification_to(*notification),
        }),
        OutboxMessage::Attach {
            target,
            caller,
            completion_id,
        } => Message::Attach(query_to(*target, *caller, *completion_id)),
        OutboxMessage::GetOutput {
            target,
            caller,
            completion_id,
        } => Message::GetOutput(query_to(*target, *caller, *completion_id)),
        OutboxMessage::Output {
            caller,
            completion_id,
            result,
        } => Message::Output(proto::Output {
            caller: id_to(*caller),
            completion_id: *completion_id,
            result: result.as_ref().map(result_to),
        }),
        OutboxMessage::Signal(signal) => Message::Signal(signal_to(signal)),
        OutboxMessage::Kill { target } => Message::Kill(id_to(*target)),
    };
    proto::OutboxMessage {
        message: Some(message),
    }
}

pub(super) fn outbox_from(message: proto::OutboxMessage) -> Result<OutboxMessage, DecodeError> {
    use proto::outbox_message::Message;
    Ok(match required(message.message, "an outbox message")? {
        Message::Invoke(invocation) => OutboxMessage::Invoke(invocation_from(invocation)?),
        Message::CallResult(call) => OutboxMessage::CallResult {
            caller: id_from(&call.caller)?,
            completion_id: call.completion_id,
            notification: notification_from(call.notification)?,
            result: result_from(call.result)?,
        },
        Message::Attach(query) => OutboxMessage::Attach {
            target: id_from(&query.target)?,
            caller: id_from(&query.caller)?,
            completion_id: query.completion_id,
        },
        Message::GetOutput(query) => OutboxMessage::GetOutput {
            target: id_from(&query.target)?,
            caller: id_from(&query.caller)?,
            completion_id: query.completion_id,
        },
        Message::Output(output) => OutboxMessage::Output {
            caller: id_from(&output.caller)?,
            completion_id: output.completion_id,
            result: output
                .result
                .map(|result| result_from(Some(result)))
                .transpose()?,
        },
        Message::Signal(signal) => OutboxMessage::Signal(signal_from(signal)?),
        Message::Kill(target) => OutboxMessage::Kill {
            target: id_from(&target)?,
        },
    })
}

pub(super) fn delivery_to(delivery: &Delivery) -> proto::Delivery {
    proto::Delivery {
        producer: u32::from(delivery.producer.as_u16()),
        messages: delivery
            .messages
            .iter()
            .map(|(seq, message)| proto::OutboxEntry {
                seq: *seq,
                message: Some(outbox_to(message)),
            })
            .collect(),
    }
}

pub(super) fn delivery_from(delivery: proto::Delivery) -> Result<Delivery, DecodeError> {
    let producer = u16::try_from(delivery.producer).map_err(|_| {
        DecodeError(format!(
            "partition id {} is out of range",
            delivery.producer
        ))
    })?;
    Ok(Delivery {
        producer: PartitionId::new(producer),
        messages: delivery
            .messages
            .into_iter()
            .map(|entry| {
                let message = outbox_from(required(entry.message, "an outbox message")?)?;
                Ok((entry.seq, message))
            })
            .collect::<Result<_, DecodeError>>()?,
    })
}

impl StoredValue for OutboxMessage {
    fn encode_value(&self) -> Vec<u8> {
        outbox_to(self).encode_to_vec()
    }

    fn decode_value(bytes: Bytes) -> Result<Self, DecodeError> {
        outbox_from(proto::OutboxMessage::decode(bytes)?)
    }
}
