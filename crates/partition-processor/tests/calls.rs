//! Calls and sends between invocations: the command, the callee's creation in the outbox and
//! the callee's id for the caller in one batch; deliveries applied once and in order; the
//! callee's result back to the caller; delayed sends waiting as scheduled invocations; and
//! commands Reprise does not carry out never journaled.

mod support;

use bytes::Bytes;
use prost::Message;
use reprise_partition_processor::{
    Action, Delivery, EffectKind, InvocationResult, InvocationStatus, MemoryStore, OutboxMessage,
    PartitionStore, Record, ResponseSink, ResultNotification, StoredFrame, TimerKey, TimerKind,
    apply,
};
use reprise_service_protocol::MessageType;
use reprise_service_protocol::proto::{self, notification_template};
use reprise_types::{InvocationId, MillisSinceEpoch, PartitionKey};
use support::*;

fn callee_id(n: u128) -> InvocationId {
    InvocationId::new(PartitionKey::new(99), n)
}

fn notification(entry: &StoredFrame) -> proto::NotificationTemplate {
    proto::NotificationTemplate::decode(entry.payload.clone()).expect("a notification")
}

fn journal(store: &MemoryStore, id: InvocationId) -> Vec<StoredFrame> {
    store
        .journals
        .range((id, 0)..=(id, u32::MAX))
        .map(|(_, entry)| entry.clone())
        .collect()
}

#[test]
fn a_call_creates_its_callee_through_the_outbox_and_gets_its_result_back() {
    let mut store = MemoryStore::default();
    apply_fenced(&mut store, &invoke(1, 10));
    let caller = id(1);
    let callee = callee_id(2);

    let actions = apply_fenced(&mut store, &effect(1, call(callee, None, b"\"hi\"", 1, 2)));
    // The command, then the callee's id for the caller, in one batch.
    let entries = journal(&store, caller);
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[1].ty, MessageType::CallCommand.id());
    assert_eq!(
        entries[2].ty,
        MessageType::CallInvocationIdCompletionNotification.id()
    );
    let id_notification = notification(&entries[2]);
    assert_eq!(
        id_notification.id,
        Some(notification_template::Id::CompletionId(1))
    );
    assert_eq!(
        id_notification.result,
        Some(notification_template::Result::InvocationId(
            callee.to_string()
        ))
    );
    assert!(actions.contains(&Action::DeliverOutbox { seq: 0 }));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Notify { entry_index: 2, .. }))
    );
    let Some(OutboxMessage::Invoke(created)) = store.outbox.get(&0) else {
        panic!("the callee's creation is in the outbox: {:?}", store.outbox);
    };
    assert_eq!(created.invocation_id, callee);
    assert_eq!(created.argument, Bytes::from_static(b"\"hi\""));
    assert_eq!(created.headers, vec![("x-call".to_owned(), "1".to_owned())]);
    assert_eq!(
        created.response_sink,
        Some(ResponseSink::Invocation {
            caller,
            completion_id: 2,
            notification: ResultNotification::Call,
        })
    );
    assert_eq!(store.outbox_next, 1);

    // The caller waits for the result.
    apply_fenced(&mut store, &effect(1, suspended_on(&[2])));
    assert!(matches!(
        status(&store, 1),
        InvocationStatus::Suspended { .. }
    ));

    // Delivered (twice: the second time is a redelivery after a crash), it runs once.
    let delivery = deliver_from(&store, &[0]);
    let actions = apply_fenced(&mut store, &delivery);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Invoke { invocation_id, .. } if *invocation_id == callee))
    );
    let before = store.clone();
    assert_eq!(apply_fenced(&mut store, &delivery), Vec::new());
    assert_eq!(store, before, "a redelivered message changes nothing");
    assert_eq!(store.delivered_from.get(&PRODUCER), Some(&0));
    apply_fenced(&mut store, &Record::OutboxDelivered { seqs: vec![0] });
    assert!(store.outbox.is_empty());

    // The callee ends: its result goes to the caller through the outbox, not to an ingress.
    apply_fenced(
        &mut store,
        &current_attempt(callee, output_value(b"\"HI\"")),
    );
    let actions = apply_fenced(&mut store, &current_attempt(callee, EffectKind::End));
    assert!(actions.contains(&Action::DeliverOutbox { seq: 1 }));
    assert!(!actions.iter().any(|a| matches!(a, Action::Respond { .. })));
    assert_eq!(
        store.outbox.get(&1),
        Some(&OutboxMessage::CallResult {
            caller,
            completion_id: 2,
            notification: ResultNotification::Call,
            result: InvocationResult::Success(Bytes::from_static(b"\"HI\"")),
        })
    );

    // Delivered to the caller: the result is journaled and the suspended caller resumes.
    let delivery = deliver_from(&store, &[1]);
    let actions = apply_fenced(&mut store, &delivery);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Invoke { invocation_id, .. } if *invocation_id == caller))
    );
    let entries = journal(&store, caller);
    let last = entries.last().expect("entries");
    assert_eq!(last.ty, MessageType::CallCompletionNotification.id());
    assert_eq!(
        notification(last).result,
        Some(notification_template::Result::Value(proto::Value {
            content: Bytes::from_static(b"\"HI\"")
        }))
    );
}

fn output_value(value: &'static [u8]) -> EffectKind {
    output(value)
}

#[test]
fn a_failed_callee_fails_the_call_and_a_send_leaves_no_caller_to_answer() {
    let mut store = MemoryStore::default();
    apply_fenced(&mut store, &invoke(1, 10));
    apply_fenced(&mut store, &effect(1, call(callee_id(2), None, b"1", 1, 2)));
    apply_fenced(&mut store, &effect(1, send(callee_id(3), Some("k"), 3, 0)));
    let Some(OutboxMessage::Invoke(sent)) = store.outbox.get(&1) else {
        panic!("the send is in the outbox");
    };
    assert_eq!(sent.response_sink, None);
    assert_eq!(sent.target.key.as_deref(), Some("k"));
    let delivery = deliver_from(&store, &[0, 1]);
    apply_fenced(&mut store, &delivery);
    assert!(matches!(
        store.status(callee_id(3)).expect("status"),
        Some(InvocationStatus::Invoked(_))
    ));
    apply_fenced(
        &mut store,
        &current_attempt(
            callee_id(2),
            EffectKind::GaveUp {
                code: 500,
                message: "broken".into(),
            },
        ),
    );
    let delivery = deliver_from(&store, &[2]);
    let actions = apply_fenced(&mut store, &delivery);
    assert!(actions.iter().any(|a| matches!(a, Action::Notify { .. })));
    let last = journal(&store, id(1)).pop().expect("entries");
    assert_eq!(
        notification(&last).result,
        Some(notification_template::Result::Failure(proto::Failure {
            code: 500,
            message: "broken".into(),
            metadata: vec![],
        }))
    );
}

#[test]
fn deliveries_apply_in_order_once_per_producer() {
    let mut store = MemoryStore::default();
    apply_fenced(&mut store, &invoke(1, 10));
    for (n, seq) in [(2u128, 0u32), (3, 1), (4, 2)] {
        let idx = 1 + 2 * seq;
        apply_fenced(&mut store, &effect(1, send(callee_id(n), None, idx, 0)));
    }
    // 0 and 1 arrive, then 0..=2 again (a leader that restarted from the table's first row).
    let delivery = deliver_from(&store, &[0, 1]);
    apply_fenced(&mut store, &delivery);
    let delivery = deliver_from(&store, &[0, 1, 2]);
    let actions = apply_fenced(&mut store, &delivery);
    let invoked: Vec<InvocationId> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Invoke { invocation_id, .. } => Some(*invocation_id),
            _ => None,
        })
        .collect();
    assert_eq!(invoked, vec![callee_id(4)]);
    // A callee kept for no time after it ends is gone without a trace but the producer's
    // high-water mark: a late redelivery of its creation must not run it again.
    let Some(OutboxMessage::Invoke(mut forgotten)) = store.outbox.get(&2).cloned() else {
        panic!("the third send is in the outbox");
    };
    forgotten.retention.completion_ms = 0;
    forgotten.invocation_id = callee_id(7);
    let late = Record::Deliver(Delivery {
        producer: PRODUCER,
        messages: vec![(2, OutboxMessage::Invoke(forgotten))],
    });
    assert_eq!(apply_fenced(&mut store, &late), Vec::new());
    assert_eq!(store.status(callee_id(7)).expect("status"), None);
    // Another producer's numbers are its own.
    let other = Record::Deliver(Delivery {
        producer: reprise_types::PartitionId::new(5),
        messages: vec![(0, store.outbox[&0].clone())],
    });
    apply_fenced(&mut store, &other);
    assert_eq!(
        store
            .delivered_from
            .get(&reprise_types::PartitionId::new(5)),
        Some(&0)
    );
}

#[test]
fn a_delayed_send_waits_scheduled_until_its_timer_starts_it() {
    let mut store = MemoryStore::default();
    apply_fenced(&mut store, &invoke(1, 10));
    let at = NOW.as_u64() + 5_000;
    apply_fenced(&mut store, &effect(1, send(callee_id(2), Some("k"), 1, at)));
    let delivery = deliver_from(&store, &[0]);
    let actions = apply_fenced(&mut store, &delivery);
    let timer = TimerKey {
        wake_at: MillisSinceEpoch::new(at),
        invocation_id: callee_id(2),
        kind: TimerKind::Start,
    };
    assert_eq!(actions, vec![Action::RegisterTimer(timer)]);
    assert!(matches!(
        store.status(callee_id(2)).expect("status"),
        Some(InvocationStatus::Scheduled(_))
    ));
    let actions = apply(&mut store, &Record::TimerFired(timer), CTX).expect("apply");
    assert!(matches!(actions.as_slice(), [Action::Invoke { .. }]));
    assert!(matches!(
        store.status(callee_id(2)).expect("status"),
        Some(InvocationStatus::Invoked(_))
    ));
    // A send whose time has passed starts at once.
    apply_fenced(&mut store, &effect(1, send(callee_id(3), None, 3, 1)));
    let delivery = deliver_from(&store, &[1]);
    let actions = apply_fenced(&mut store, &delivery);
    assert!(matches!(actions.as_slice(), [Action::Invoke { .. }]));
}

#[test]
fn a_call_without_its_resolved_callee_is_never_journaled() {
    let mut store = MemoryStore::default();
    apply_fenced(&mut store, &invoke(1, 10));
    let before = store.clone();
    // A call command that arrives as a plain journal entry cannot be carried out: the state
    // machine needs the callee the invoker resolves.
    let Some(EffectKind::Call { entry, .. }) = Some(call(callee_id(2), None, b"1", 1, 2)) else {
        unreachable!()
    };
    apply_fenced(&mut store, &effect(1, EffectKind::JournalEntry(entry)));
    assert_eq!(store, before);
    for ty in [
        MessageType::CallCommand,
        MessageType::GetPromiseCommand,
        MessageType::CompleteAwakeableCommand,
        MessageType::Custom(0xFC01),
    ] {
        assert!(reprise_partition_processor::is_implemented(ty), "{ty}");
    }
    assert!(!reprise_partition_processor::is_implemented(
        MessageType::ProposeRunCompletion
    ));
}
