//! Helpers shared by the state-machine tests.
#![allow(dead_code)]

use bytes::Bytes;
use prost::Message;
use reprise_partition_processor::{
    Action, ApplyContext, EffectKind, Fence, HandlerType, InvocationStatus, InvocationTarget,
    InvokerEffect, MemoryStore, PartitionStore, Record, ResponseSink, Retention, ServiceInvocation,
    StoredFrame, apply,
};
use reprise_service_protocol::MessageType;
use reprise_service_protocol::proto::{self, output_command_message};
use reprise_types::{InvocationId, MillisSinceEpoch, PartitionKey};

/// The time test records are applied at.
pub const NOW: MillisSinceEpoch = MillisSinceEpoch::new(10_000);

/// A day, in milliseconds: the completion retention of test invocations.
pub const DAY_MS: u64 = 24 * 60 * 60 * 1000;

pub fn id(n: u128) -> InvocationId {
    InvocationId::new(PartitionKey::new(7), n)
}

pub fn invoke(n: u128, request_id: u64) -> Record {
    Record::Invoke(ServiceInvocation {
        invocation_id: id(n),
        target: InvocationTarget {
            service: "Greeter".into(),
            handler: "greet".into(),
            key: None,
            handler_type: HandlerType::Exclusive,
        },
        argument: Bytes::from_static(b"\"Ann\""),
        headers: vec![("x-test".into(), "1".into())],
        response_sink: Some(ResponseSink::Ingress { request_id }),
        created_at: MillisSinceEpoch::new(1000),
        retention: Retention {
            completion_ms: DAY_MS,
            journal_ms: 0,
        },
        execution_time: None,
    })
}

/// What test records are applied with.
pub const CTX: ApplyContext = ApplyContext { now: NOW };

/// An effect of invocation `n`'s current attempt: its fence is filled in from the partition's
/// epoch and the status when it is applied with [`apply_fenced`]. Tests of fencing build
/// their fences themselves.
pub fn effect(n: u128, kind: EffectKind) -> Record {
    current_attempt(id(n), kind)
}

/// An effect of the current attempt of `invocation_id` (see [`effect`]).
pub fn current_attempt(invocation_id: InvocationId, kind: EffectKind) -> Record {
    Record::Effect(InvokerEffect {
        invocation_id,
        kind,
        fence: Fence {
            leader_epoch: u64::MAX,
            attempt: u32::MAX,
            command_index: u32::MAX,
        },
    })
}

/// `record` with the fence the invocation's current attempt would give it, if it was made by
/// [`effect`]: the partition's epoch, the attempt and the command position of the status.
pub fn fenced<S: PartitionStore>(store: &S, record: &Record) -> Record {
    let Record::Effect(effect) = record else {
        return record.clone();
    };
    if effect.fence.attempt != u32::MAX {
        return record.clone();
    }
    let status = store.status(effect.invocation_id).expect("read status");
    let (attempt, command_index) = status
        .as_ref()
        .and_then(|status| status.in_flight())
        .map_or((0, 0), |in_flight| (in_flight.attempt, in_flight.commands));
    Record::Effect(InvokerEffect {
        fence: Fence {
            leader_epoch: store.leader_epoch().expect("read the epoch"),
            attempt,
            command_index,
        },
        ..effect.clone()
    })
}

/// Applies `record` (fenced as the current attempt, if made by [`effect`]) in [`CTX`].
pub fn apply_fenced<S: PartitionStore>(store: &mut S, record: &Record) -> Vec<Action> {
    let record = fenced(store, record);
    apply(store, &record, CTX).expect("apply")
}

pub fn command(ty: MessageType, message: &impl Message) -> EffectKind {
    EffectKind::JournalEntry(StoredFrame {
        ty: ty.id(),
        payload: message.encode_to_vec().into(),
    })
}

pub fn run_command(completion_id: u32) -> EffectKind {
    command(
        MessageType::RunCommand,
        &proto::RunCommandMessage {
            result_completion_id: completion_id,
            name: "side effect".into(),
        },
    )
}

pub fn output(value: &'static [u8]) -> EffectKind {
    command(
        MessageType::OutputCommand,
        &proto::OutputCommandMessage {
            result: Some(output_command_message::Result::Value(proto::Value {
                content: Bytes::from_static(value),
            })),
            name: String::new(),
        },
    )
}

/// Applies `records` in order on fresh tables, twice, and checks both runs agree.
pub fn replay(records: &[Record]) -> (MemoryStore, Vec<Vec<Action>>) {
    let run = || {
        let mut store = MemoryStore::default();
        let actions: Vec<Vec<Action>> = records
            .iter()
            .map(|record| apply_fenced(&mut store, record))
            .collect();
        (store, actions)
    };
    let first = run();
    let second = run();
    assert_eq!(
        first, second,
        "applying the same records must give the same result"
    );
    first
}

pub fn status(store: &MemoryStore, n: u128) -> InvocationStatus {
    store
        .status(id(n))
        .expect("memory store never fails")
        .expect("status present")
}

pub fn invoke_object(n: u128, key: &str) -> Record {
    invoke_handler(n, key, HandlerType::Exclusive, None)
}

/// A call of a Counter handler of the given type on `key`, answered to `request_id` if any.
pub fn invoke_handler(
    n: u128,
    key: &str,
    handler_type: HandlerType,
    request_id: Option<u64>,
) -> Record {
    Record::Invoke(ServiceInvocation {
        invocation_id: id(n),
        target: InvocationTarget {
            service: "Counter".into(),
            handler: "add".into(),
            key: Some(key.into()),
            handler_type,
        },
        argument: Bytes::from_static(b"1"),
        headers: Vec::new(),
        response_sink: request_id.map(|request_id| ResponseSink::Ingress { request_id }),
        created_at: MillisSinceEpoch::new(1000),
        retention: Retention {
            completion_ms: DAY_MS,
            journal_ms: 0,
        },
        execution_time: None,
    })
}

pub fn set_state(key: &'static [u8], value: &'static [u8]) -> EffectKind {
    command(
        MessageType::SetStateCommand,
        &proto::SetStateCommandMessage {
            key: Bytes::from_static(key),
            value: Some(proto::Value {
                content: Bytes::from_static(value),
            }),
            name: String::new(),
        },
    )
}

/// A `SleepCommand` until `wake_up_time`, completing `completion_id`.
/// A suspension waiting for any of `completions`.
pub fn suspended_on(completions: &[u32]) -> EffectKind {
    EffectKind::Suspended {
        waiting_completions: completions.to_vec(),
        waiting_signals: vec![],
        waiting_named_signals: vec![],
    }
}

pub fn sleep(completion_id: u32, wake_up_time: u64) -> EffectKind {
    command(
        MessageType::SleepCommand,
        &proto::SleepCommandMessage {
            wake_up_time,
            result_completion_id: completion_id,
            name: String::new(),
        },
    )
}

/// The partition test deliveries come from.
pub const PRODUCER: reprise_types::PartitionId = reprise_types::PartitionId::new(0);

/// The target of calls in tests: `Echo/echo` (a service), or `Counter/add` on `key`.
pub fn callee_target(key: Option<&str>) -> InvocationTarget {
    match key {
        None => InvocationTarget {
            service: "Echo".into(),
            handler: "echo".into(),
            key: None,
            handler_type: HandlerType::Exclusive,
        },
        Some(key) => InvocationTarget {
            service: "Counter".into(),
            handler: "add".into(),
            key: Some(key.into()),
            handler_type: HandlerType::Exclusive,
        },
    }
}

fn callee(invocation_id: InvocationId, key: Option<&str>) -> reprise_partition_processor::Callee {
    reprise_partition_processor::Callee {
        invocation_id,
        target: callee_target(key),
        retention: Retention {
            completion_ms: DAY_MS,
            journal_ms: 0,
        },
    }
}

/// A call of `callee` (see [`callee_target`]) with `parameter`; the callee's id completes
/// `id_notification`, its result `result_completion`.
pub fn call(
    callee_id: InvocationId,
    key: Option<&str>,
    parameter: &'static [u8],
    id_notification: u32,
    result_completion: u32,
) -> EffectKind {
    let target = callee_target(key);
    let message = proto::CallCommandMessage {
        service_name: target.service,
        handler_name: target.handler,
        parameter: Bytes::from_static(parameter),
        headers: vec![proto::Header {
            key: "x-call".into(),
            value: "1".into(),
        }],
        key: target.key.unwrap_or_default(),
        idempotency_key: None,
        invocation_id_notification_idx: id_notification,
        result_completion_id: result_completion,
        name: String::new(),
    };
    EffectKind::Call {
        entry: StoredFrame {
            ty: MessageType::CallCommand.id(),
            payload: message.encode_to_vec().into(),
        },
        callee: callee(callee_id, key),
    }
}

/// A one-way call of `callee` that starts at `invoke_time` (0: at once).
pub fn send(
    callee_id: InvocationId,
    key: Option<&str>,
    id_notification: u32,
    invoke_time: u64,
) -> EffectKind {
    let target = callee_target(key);
    let message = proto::OneWayCallCommandMessage {
        service_name: target.service,
        handler_name: target.handler,
        parameter: Bytes::from_static(b"1"),
        invoke_time,
        headers: vec![],
        key: target.key.unwrap_or_default(),
        idempotency_key: None,
        invocation_id_notification_idx: id_notification,
        name: String::new(),
    };
    EffectKind::Call {
        entry: StoredFrame {
            ty: MessageType::OneWayCallCommand.id(),
            payload: message.encode_to_vec().into(),
        },
        callee: callee(callee_id, key),
    }
}

/// Messages `seqs` of [`PRODUCER`]'s outbox as `store` holds them, delivered.
pub fn deliver_from(store: &MemoryStore, seqs: &[u64]) -> Record {
    Record::Deliver(reprise_partition_processor::Delivery {
        producer: PRODUCER,
        messages: seqs
            .iter()
            .map(|seq| (*seq, store.outbox[seq].clone()))
            .collect(),
    })
}
