//! The stored forms of the partition's records and table rows: prost messages from
//! `proto/partition.proto`, converted to and from the domain types here and nowhere else.
//! Decoding checks everything it takes (ids, required fields), so a damaged row is a
//! [`DecodeError`], never a panic; the caller names the table and key.

use bytes::Bytes;
use prost::Message;
use reprise_raft_storage::{DecodeError, PayloadCodec};
use reprise_types::{InvocationId, MillisSinceEpoch};

use crate::raft::RecordBatch;
use crate::record::{
    Callee, EffectKind, Fence, HandlerType, InvocationResult, InvocationTarget, InvokerEffect,
    Record, ResponseSink, ResultNotification, Retention, ServiceInvocation, StoredFrame,
    TerminationMode, TimerKey, TimerKind,
};
use crate::status::{InFlight, InvocationStatus, ObjectLock, PinnedDeployment, Promise, Waiting};

mod outbox;

use outbox::{delivery_from, delivery_to, signal_from, signal_to};

/// Generated from `proto/partition.proto`.
#[allow(clippy::enum_variant_names)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/reprise.partition.v1.rs"));
}

/// A value kept in a table row (or a log entry) in its binary form. Decoding takes the row's
/// buffer, so payloads (`bytes` fields) come out as slices of it, not copies.
pub trait StoredValue: Sized {
    fn encode_value(&self) -> Vec<u8>;
    fn decode_value(bytes: Bytes) -> Result<Self, DecodeError>;
}

fn required<T>(value: Option<T>, what: &str) -> Result<T, DecodeError> {
    value.ok_or_else(|| DecodeError::missing(what))
}

fn id_from(bytes: &[u8]) -> Result<InvocationId, DecodeError> {
    InvocationId::from_bytes(bytes).map_err(|err| DecodeError(format!("invocation id: {err}")))
}

fn id_to(id: InvocationId) -> Bytes {
    Bytes::copy_from_slice(&id.to_bytes())
}

fn target_to(target: &InvocationTarget) -> proto::InvocationTarget {
    proto::InvocationTarget {
        service: target.service.clone(),
        handler: target.handler.clone(),
        key: target.key.clone(),
        handler_type: match target.handler_type {
            HandlerType::Exclusive => proto::HandlerType::Exclusive,
            HandlerType::Shared => proto::HandlerType::Shared,
            HandlerType::Workflow => proto::HandlerType::Workflow,
        } as i32,
    }
}

fn target_from(target: Option<proto::InvocationTarget>) -> Result<InvocationTarget, DecodeError> {
    let target = required(target, "an invocation target")?;
    let handler_type = match proto::HandlerType::try_from(target.handler_type) {
        Ok(proto::HandlerType::Exclusive) => HandlerType::Exclusive,
        Ok(proto::HandlerType::Shared) => HandlerType::Shared,
        Ok(proto::HandlerType::Workflow) => HandlerType::Workflow,
        Err(_) => {
            return Err(DecodeError(format!(
                "unknown handler type {}",
                target.handler_type
            )));
        }
    };
    Ok(InvocationTarget {
        service: target.service,
        handler: target.handler,
        key: target.key,
        handler_type,
    })
}

fn sink_to(sink: &ResponseSink) -> proto::ResponseSink {
    use proto::response_sink::Sink;
    let sink = match sink {
        ResponseSink::Ingress { request_id } => Sink::IngressRequestId(*request_id),
        ResponseSink::Invocation {
            caller,
            completion_id,
            notification,
        } => Sink::Invocation(proto::CallerSink {
            caller: id_to(*caller),
            completion_id: *completion_id,
            notification: notification_to(*notification),
        }),
    };
    proto::ResponseSink { sink: Some(sink) }
}

fn sink_from(sink: proto::ResponseSink) -> Result<ResponseSink, DecodeError> {
    use proto::response_sink::Sink;
    match required(sink.sink, "a response sink")? {
        Sink::IngressRequestId(request_id) => Ok(ResponseSink::Ingress { request_id }),
        Sink::Invocation(sink) => Ok(ResponseSink::Invocation {
            caller: id_from(&sink.caller)?,
            completion_id: sink.completion_id,
            notification: notification_from(sink.notification)?,
        }),
    }
}

fn notification_to(notification: ResultNotification) -> i32 {
    let notification = match notification {
        ResultNotification::Call => proto::ResultNotification::Call,
        ResultNotification::Attach => proto::ResultNotification::Attach,
    };
    notification as i32
}

fn notification_from(notification: i32) -> Result<ResultNotification, DecodeError> {
    match proto::ResultNotification::try_from(notification) {
        Ok(proto::ResultNotification::Call) => Ok(ResultNotification::Call),
        Ok(proto::ResultNotification::Attach) => Ok(ResultNotification::Attach),
        Err(_) => Err(DecodeError(format!(
            "unknown result notification {notification}"
        ))),
    }
}

fn frame_to(frame: &StoredFrame) -> proto::StoredFrame {
    proto::StoredFrame {
        ty: u32::from(frame.ty),
        payload: frame.payload.clone(),
    }
}

fn frame_from(frame: proto::StoredFrame) -> Result<StoredFrame, DecodeError> {
    let ty = u16::try_from(frame.ty)
        .map_err(|_| DecodeError(format!("message type {} is out of range", frame.ty)))?;
    Ok(StoredFrame {
        ty,
        payload: frame.payload,
    })
}

fn failure_to(code: u32, message: &str) -> proto::Failure {
    proto::Failure {
        code,
        message: message.to_owned(),
    }
}

fn result_to(result: &InvocationResult) -> proto::InvocationResult {
    let result = match result {
        InvocationResult::Success(bytes) => {
            proto::invocation_result::Result::Success(bytes.clone())
        }
        InvocationResult::Failure { code, message } => {
            proto::invocation_result::Result::Failure(failure_to(*code, message))
        }
    };
    proto::InvocationResult {
        result: Some(result),
    }
}

fn result_from(result: Option<proto::InvocationResult>) -> Result<InvocationResult, DecodeError> {
    match required(required(result, "a result")?.result, "a result")? {
        proto::invocation_result::Result::Success(bytes) => Ok(InvocationResult::Success(bytes)),
        proto::invocation_result::Result::Failure(failure) => Ok(InvocationResult::Failure {
            code: failure.code,
            message: failure.message,
        }),
    }
}

fn deployment_to(deployment: &PinnedDeployment) -> proto::PinnedDeployment {
    proto::PinnedDeployment {
        deployment_id: deployment.deployment_id.clone(),
        protocol_version: deployment.protocol_version,
    }
}

fn deployment_from(deployment: proto::PinnedDeployment) -> PinnedDeployment {
    PinnedDeployment {
        deployment_id: deployment.deployment_id,
        protocol_version: deployment.protocol_version,
    }
}

fn timer_to(timer: &TimerKey) -> proto::TimerKey {
    let (kind, completion_id) = match timer.kind {
        TimerKind::Completion(id) => (proto::TimerKind::Completion, id),
        TimerKind::PurgeJournal => (proto::TimerKind::PurgeJournal, 0),
        TimerKind::PurgeInvocation => (proto::TimerKind::PurgeInvocation, 0),
        TimerKind::Start => (proto::TimerKind::Start, 0),
    };
    proto::TimerKey {
        wake_at: timer.wake_at.as_u64(),
        invocation_id: id_to(timer.invocation_id),
        completion_id,
        kind: kind as i32,
    }
}

fn timer_from(timer: proto::TimerKey) -> Result<TimerKey, DecodeError> {
    let kind = match proto::TimerKind::try_from(timer.kind) {
        Ok(proto::TimerKind::Completion) => TimerKind::Completion(timer.completion_id),
        Ok(proto::TimerKind::PurgeJournal) => TimerKind::PurgeJournal,
        Ok(proto::TimerKind::PurgeInvocation) => TimerKind::PurgeInvocation,
        Ok(proto::TimerKind::Start) => TimerKind::Start,
        Err(_) => return Err(DecodeError(format!("unknown timer kind {}", timer.kind))),
    };
    Ok(TimerKey {
        wake_at: MillisSinceEpoch::new(timer.wake_at),
        invocation_id: id_from(&timer.invocation_id)?,
        kind,
    })
}

fn retention_to(retention: Retention) -> proto::Retention {
    proto::Retention {
        completion_ms: retention.completion_ms,
        journal_ms: retention.journal_ms,
    }
}

fn retention_from(retention: Option<proto::Retention>) -> Retention {
    let retention = retention.unwrap_or_default();
    Retention {
        completion_ms: retention.completion_ms,
        journal_ms: retention.journal_ms,
    }
}

fn invocation_to(invocation: &ServiceInvocation) -> proto::ServiceInvocation {
    proto::ServiceInvocation {
        invocation_id: id_to(invocation.invocation_id),
        target: Some(target_to(&invocation.target)),
        argument: invocation.argument.clone(),
        headers: invocation
            .headers
            .iter()
            .map(|(name, value)| proto::Header {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        response_sink: invocation.response_sink.as_ref().map(sink_to),
        created_at: invocation.created_at.as_u64(),
        retention: Some(retention_to(invocation.retention)),
        execution_time: invocation
            .execution_time
            .map_or(0, MillisSinceEpoch::as_u64),
    }
}

fn invocation_from(invocation: proto::ServiceInvocation) -> Result<ServiceInvocation, DecodeError> {
    Ok(ServiceInvocation {
        invocation_id: id_from(&invocation.invocation_id)?,
        target: target_from(invocation.target)?,
        argument: invocation.argument,
        headers: invocation
            .headers
            .into_iter()
            .map(|header| (header.name, header.value))
            .collect(),
        response_sink: invocation.response_sink.map(sink_from).transpose()?,
        created_at: MillisSinceEpoch::new(invocation.created_at),
        retention: retention_from(invocation.retention),
        execution_time: (invocation.execution_time > 0)
            .then(|| MillisSinceEpoch::new(invocation.execution_time)),
    })
}

fn effect_to(effect: &InvokerEffect) -> proto::InvokerEffect {
    use proto::invoker_effect::Kind;
    let kind = match &effect.kind {
        EffectKind::PinnedDeployment {
            deployment_id,
            protocol_version,
        } => Kind::PinnedDeployment(proto::PinnedDeployment {
            deployment_id: deployment_id.clone(),
            protocol_version: *protocol_version,
        }),
        EffectKind::JournalEntry(frame) => Kind::JournalEntry(frame_to(frame)),
        EffectKind::Call { entry, callee } => Kind::Call(proto::CallEffect {
            entry: Some(frame_to(entry)),
            callee_id: id_to(callee.invocation_id),
            callee_target: Some(target_to(&callee.target)),
            callee_retention: Some(retention_to(callee.retention)),
        }),
        EffectKind::RunProposal {
            completion_id,
            result,
        } => Kind::RunProposal(proto::RunProposal {
            completion_id: *completion_id,
            result: Some(result_to(result)),
        }),
        EffectKind::Suspended {
            waiting_completions,
            waiting_signals,
            waiting_named_signals,
        } => Kind::Suspended(proto::Suspended {
            waiting_completions: waiting_completions.clone(),
            waiting_signals: waiting_signals.clone(),
            waiting_named_signals: waiting_named_signals.clone(),
        }),
        EffectKind::End => Kind::End(proto::End {}),
        EffectKind::AttemptFailed { code, message } => {
            Kind::AttemptFailed(failure_to(*code, message))
        }
        EffectKind::GaveUp { code, message } => Kind::GaveUp(failure_to(*code, message)),
        EffectKind::Paused { code, message } => Kind::Paused(failure_to(*code, message)),
    };
    proto::InvokerEffect {
        invocation_id: id_to(effect.invocation_id),
        kind: Some(kind),
        fence: Some(proto::Fence {
            leader_epoch: effect.fence.leader_epoch,
            attempt: effect.fence.attempt,
            command_index: effect.fence.command_index,
        }),
    }
}

fn effect_from(effect: proto::InvokerEffect) -> Result<InvokerEffect, DecodeError> {
    use proto::invoker_effect::Kind;
    let kind = match required(effect.kind, "an effect's kind")? {
        Kind::PinnedDeployment(deployment) => EffectKind::PinnedDeployment {
            deployment_id: deployment.deployment_id,
            protocol_version: deployment.protocol_version,
        },
        Kind::JournalEntry(frame) => EffectKind::JournalEntry(frame_from(frame)?),
        Kind::Call(call) => EffectKind::Call {
            entry: frame_from(required(call.entry, "a call's command")?)?,
            callee: Callee {
                invocation_id: id_from(&call.callee_id)?,
                target: target_from(call.callee_target)?,
                retention: retention_from(call.callee_retention),
            },
        },
        Kind::RunProposal(proposal) => EffectKind::RunProposal {
            completion_id: proposal.completion_id,
            result: result_from(proposal.result)?,
        },
        Kind::Suspended(suspended) => EffectKind::Suspended {
            waiting_completions: suspended.waiting_completions,
            waiting_signals: suspended.waiting_signals,
            waiting_named_signals: suspended.waiting_named_signals,
        },
        Kind::End(_) => EffectKind::End,
        Kind::AttemptFailed(failure) => EffectKind::AttemptFailed {
            code: failure.code,
            message: failure.message,
        },
        Kind::GaveUp(failure) => EffectKind::GaveUp {
            code: failure.code,
            message: failure.message,
        },
        Kind::Paused(failure) => EffectKind::Paused {
            code: failure.code,
            message: failure.message,
        },
    };
    let fence = required(effect.fence, "an effect's fence")?;
    Ok(InvokerEffect {
        invocation_id: id_from(&effect.invocation_id)?,
        kind,
        fence: Fence {
            leader_epoch: fence.leader_epoch,
            attempt: fence.attempt,
            command_index: fence.command_index,
        },
    })
}

fn record_to(record: &Record) -> proto::Record {
    use proto::record::Record as Kind;
    let record = match record {
        Record::Invoke(invocation) => Kind::Invoke(invocation_to(invocation)),
        Record::Effect(effect) => Kind::Effect(effect_to(effect)),
        Record::TimerFired(timer) => Kind::TimerFired(timer_to(timer)),
        Record::AnnounceLeader { epoch } => {
            Kind::AnnounceLeader(proto::AnnounceLeader { epoch: *epoch })
        }
        Record::Deliver(delivery) => Kind::Deliver(delivery_to(delivery)),
        Record::OutboxDelivered { seqs } => {
            Kind::OutboxDelivered(proto::OutboxDelivered { seqs: seqs.clone() })
        }
        Record::Signal(signal) => Kind::Signal(signal_to(signal)),
        Record::Terminate { target, mode } => Kind::Terminate(proto::Terminate {
            target: id_to(*target),
            mode: match mode {
                TerminationMode::Cancel => proto::TerminationMode::Cancel,
                TerminationMode::Kill => proto::TerminationMode::Kill,
            } as i32,
        }),
        Record::Purge { target } => Kind::Purge(id_to(*target)),
        Record::Resume { target } => Kind::Resume(id_to(*target)),
        Record::Attach { target, sink } => Kind::Attach(proto::AttachRecord {
            target: id_to(*target),
            sink: Some(sink_to(sink)),
        }),
    };
    proto::Record {
        record: Some(record),
    }
}

fn record_from(record: proto::Record) -> Result<Record, DecodeError> {
    use proto::record::Record as Kind;
    Ok(match required(record.record, "a record")? {
        Kind::Invoke(invocation) => Record::Invoke(invocation_from(invocation)?),
        Kind::Effect(effect) => Record::Effect(effect_from(effect)?),
        Kind::TimerFired(timer) => Record::TimerFired(timer_from(timer)?),
        Kind::AnnounceLeader(announce) => Record::AnnounceLeader {
            epoch: announce.epoch,
        },
        Kind::Deliver(delivery) => Record::Deliver(delivery_from(delivery)?),
        Kind::OutboxDelivered(delivered) => Record::OutboxDelivered {
            seqs: delivered.seqs,
        },
        Kind::Signal(signal) => Record::Signal(signal_from(signal)?),
        Kind::Terminate(terminate) => Record::Terminate {
            target: id_from(&terminate.target)?,
            mode: match proto::TerminationMode::try_from(terminate.mode) {
                Ok(proto::TerminationMode::Cancel) => TerminationMode::Cancel,
                Ok(proto::TerminationMode::Kill) => TerminationMode::Kill,
                Err(_) => {
                    return Err(DecodeError(format!(
                        "unknown termination mode {}",
                        terminate.mode
                    )));
                }
            },
        },
        Kind::Purge(target) => Record::Purge {
            target: id_from(&target)?,
        },
        Kind::Resume(target) => Record::Resume {
            target: id_from(&target)?,
        },
        Kind::Attach(attach) => Record::Attach {
            target: id_from(&attach.target)?,
            sink: sink_from(required(attach.sink, "an attach's sink")?)?,
        },
    })
}

fn in_flight_to(in_flight: &InFlight) -> proto::InFlight {
    proto::InFlight {
        target: Some(target_to(&in_flight.target)),
        response_sinks: in_flight.response_sinks.iter().map(sink_to).collect(),
        journal_length: in_flight.journal_length,
        commands: in_flight.commands,
        attempt: in_flight.attempt,
        deployment: in_flight.deployment.as_ref().map(deployment_to),
        output: in_flight.output.as_ref().map(result_to),
        notified_completions: in_flight.notified_completions.clone(),
        notified_signals: in_flight.notified_signals.clone(),
        notified_signal_names: in_flight.notified_signal_names.clone(),
        pending_calls: in_flight
            .pending_calls
            .iter()
            .map(|(completion_id, callee)| proto::PendingCall {
                completion_id: *completion_id,
                callee: id_to(*callee),
            })
            .collect(),
        last_failure: in_flight.last_failure.clone(),
        created_at: in_flight.created_at.as_u64(),
        retention: Some(retention_to(in_flight.retention)),
    }
}

fn in_flight_from(in_flight: Option<proto::InFlight>) -> Result<InFlight, DecodeError> {
    let in_flight = required(in_flight, "an invocation's progress")?;
    Ok(InFlight {
        target: target_from(in_flight.target)?,
        response_sinks: in_flight
            .response_sinks
            .into_iter()
            .map(sink_from)
            .collect::<Result<_, _>>()?,
        journal_length: in_flight.journal_length,
        commands: in_flight.commands,
        attempt: in_flight.attempt,
        deployment: in_flight.deployment.map(deployment_from),
        output: in_flight
            .output
            .map(|output| result_from(Some(output)))
            .transpose()?,
        notified_completions: in_flight.notified_completions,
        notified_signals: in_flight.notified_signals,
        notified_signal_names: in_flight.notified_signal_names,
        pending_calls: in_flight
            .pending_calls
            .into_iter()
            .map(|call| Ok((call.completion_id, id_from(&call.callee)?)))
            .collect::<Result<_, DecodeError>>()?,
        last_failure: in_flight.last_failure,
        created_at: MillisSinceEpoch::new(in_flight.created_at),
        retention: retention_from(in_flight.retention),
    })
}

impl StoredValue for InvocationStatus {
    fn encode_value(&self) -> Vec<u8> {
        use proto::invocation_status::Status;
        let status = match self {
            InvocationStatus::Inboxed { in_flight, seq } => Status::Inboxed(proto::InboxedStatus {
                in_flight: Some(in_flight_to(in_flight)),
                seq: *seq,
            }),
            InvocationStatus::Invoked(in_flight) => Status::Invoked(in_flight_to(in_flight)),
            InvocationStatus::Scheduled(in_flight) => Status::Scheduled(in_flight_to(in_flight)),
            InvocationStatus::Paused(in_flight) => Status::Paused(in_flight_to(in_flight)),
            InvocationStatus::Suspended { in_flight, waiting } => {
                Status::Suspended(proto::SuspendedStatus {
                    in_flight: Some(in_flight_to(in_flight)),
                    waiting: Some(proto::Waiting {
                        completions: waiting.completions.clone(),
                        signals: waiting.signals.clone(),
                        named_signals: waiting.named_signals.clone(),
                    }),
                })
            }
            InvocationStatus::Completed {
                target,
                result,
                journal_length,
            } => Status::Completed(proto::CompletedStatus {
                target: Some(target_to(target)),
                result: Some(result_to(result)),
                journal_length: *journal_length,
            }),
        };
        proto::InvocationStatus {
            status: Some(status),
        }
        .encode_to_vec()
    }

    fn decode_value(bytes: Bytes) -> Result<Self, DecodeError> {
        use proto::invocation_status::Status;
        let status = proto::InvocationStatus::decode(bytes)?;
        Ok(match required(status.status, "a status")? {
            Status::Inboxed(inboxed) => InvocationStatus::Inboxed {
                in_flight: in_flight_from(inboxed.in_flight)?,
                seq: inboxed.seq,
            },
            Status::Invoked(in_flight) => {
                InvocationStatus::Invoked(in_flight_from(Some(in_flight))?)
            }
            Status::Scheduled(in_flight) => {
                InvocationStatus::Scheduled(in_flight_from(Some(in_flight))?)
            }
            Status::Paused(in_flight) => InvocationStatus::Paused(in_flight_from(Some(in_flight))?),
            Status::Suspended(suspended) => {
                let waiting = suspended.waiting.unwrap_or_default();
                InvocationStatus::Suspended {
                    in_flight: in_flight_from(suspended.in_flight)?,
                    waiting: Waiting {
                        completions: waiting.completions,
                        signals: waiting.signals,
                        named_signals: waiting.named_signals,
                    },
                }
            }
            Status::Completed(completed) => InvocationStatus::Completed {
                target: target_from(completed.target)?,
                result: result_from(completed.result)?,
                journal_length: completed.journal_length,
            },
        })
    }
}

impl StoredValue for Promise {
    fn encode_value(&self) -> Vec<u8> {
        let (result, listeners) = match self {
            Promise::Completed(result) => (Some(result_to(result)), Vec::new()),
            Promise::Pending { listeners } => (
                None,
                listeners
                    .iter()
                    .map(|(id, completion_id)| proto::PendingCall {
                        completion_id: *completion_id,
                        callee: id_to(*id),
                    })
                    .collect(),
            ),
        };
        proto::Promise { result, listeners }.encode_to_vec()
    }

    fn decode_value(bytes: Bytes) -> Result<Self, DecodeError> {
        let promise = proto::Promise::decode(bytes)?;
        Ok(match promise.result {
            Some(result) => Promise::Completed(result_from(Some(result))?),
            None => Promise::Pending {
                listeners: promise
                    .listeners
                    .into_iter()
                    .map(|l| Ok((id_from(&l.callee)?, l.completion_id)))
                    .collect::<Result<_, DecodeError>>()?,
            },
        })
    }
}

impl StoredValue for StoredFrame {
    fn encode_value(&self) -> Vec<u8> {
        frame_to(self).encode_to_vec()
    }

    fn decode_value(bytes: Bytes) -> Result<Self, DecodeError> {
        frame_from(proto::StoredFrame::decode(bytes)?)
    }
}

impl StoredValue for ObjectLock {
    fn encode_value(&self) -> Vec<u8> {
        proto::ObjectLock {
            holder: id_to(self.holder),
            inbox_head: self.inbox_head,
            inbox_tail: self.inbox_tail,
        }
        .encode_to_vec()
    }

    fn decode_value(bytes: Bytes) -> Result<Self, DecodeError> {
        let lock = proto::ObjectLock::decode(bytes)?;
        if lock.inbox_head > lock.inbox_tail {
            return Err(DecodeError(format!(
                "inbox head {} is past its tail {}",
                lock.inbox_head, lock.inbox_tail
            )));
        }
        Ok(ObjectLock {
            holder: id_from(&lock.holder)?,
            inbox_head: lock.inbox_head,
            inbox_tail: lock.inbox_tail,
        })
    }
}

/// An inbox row holds the waiting invocation's id, raw.
impl StoredValue for InvocationId {
    fn encode_value(&self) -> Vec<u8> {
        self.to_bytes().to_vec()
    }

    fn decode_value(bytes: Bytes) -> Result<Self, DecodeError> {
        id_from(&bytes)
    }
}

impl PayloadCodec for RecordBatch {
    type Message = proto::RecordBatch;

    fn to_message(&self) -> proto::RecordBatch {
        proto::RecordBatch {
            records: self.records.iter().map(record_to).collect(),
            proposed_at: self.proposed_at.as_u64(),
        }
    }

    fn from_message(batch: proto::RecordBatch) -> Result<Self, DecodeError> {
        Ok(RecordBatch {
            records: batch
                .records
                .into_iter()
                .map(record_from)
                .collect::<Result<_, _>>()?,
            proposed_at: MillisSinceEpoch::new(batch.proposed_at),
        })
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
    use reprise_raft_storage::codec::{decode_entry, encode_entry};
    use reprise_types::PartitionKey;

    use super::*;
    use crate::raft::PartitionTypes;

    /// A payload read back from the log is a slice of the entry's buffer, not a copy of it.
    #[test]
    fn a_payload_decodes_as_a_slice_of_the_stored_entry() {
        let argument = Bytes::from(vec![b'x'; 1 << 20]);
        let invocation = ServiceInvocation {
            invocation_id: InvocationId::new(PartitionKey::new(3), 4),
            target: InvocationTarget {
                service: "Echo".into(),
                handler: "echo".into(),
                key: None,
                handler_type: HandlerType::Shared,
            },
            argument: argument.clone(),
            headers: vec![],
            response_sink: None,
            created_at: MillisSinceEpoch::new(1),
            retention: Retention::default(),
            execution_time: None,
        };
        let entry: Entry<PartitionTypes> = Entry {
            log_id: LogId::new(CommittedLeaderId::new(2, 1), 9),
            payload: EntryPayload::Normal(RecordBatch {
                records: vec![Record::Invoke(invocation)],
                proposed_at: MillisSinceEpoch::new(5),
            }),
        };
        let stored = Bytes::from(encode_entry(&entry));
        let decoded: Entry<PartitionTypes> = decode_entry(stored.clone()).expect("decodes");
        assert_eq!(decoded, entry);
        let EntryPayload::Normal(batch) = &decoded.payload else {
            panic!("a normal entry");
        };
        let Record::Invoke(decoded) = &batch.records[0] else {
            panic!("an invoke record");
        };
        let range = stored.as_ptr_range();
        assert!(range.contains(&decoded.argument.as_ptr()), "not copied");
    }
}
