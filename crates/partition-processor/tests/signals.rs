//! Signals: journaled for their invocation whatever it is doing, once per index; a suspended
//! invocation waiting for one resumes; signal commands go out through the outbox, and one whose
//! target is not an invocation is never journaled.

mod support;

use bytes::Bytes;
use prost::Message;
use reprise_partition_processor::{
    Action, EffectKind, InvocationStatus, MemoryStore, OutboxMessage, PartitionStore, Record,
    Signal, SignalId, SignalResult, StoredFrame,
};
use reprise_service_protocol::MessageType;
use reprise_service_protocol::proto::{self, notification_template};
use support::*;

fn awakeable(n: u128, index: u32, value: &'static [u8]) -> Record {
    Record::Signal(Signal {
        target: id(n),
        id: SignalId::Index(index),
        result: SignalResult::Value(Bytes::from_static(value)),
    })
}

fn last_entry(store: &MemoryStore, n: u128) -> StoredFrame {
    store
        .journals
        .range((id(n), 0)..=(id(n), u32::MAX))
        .last()
        .map(|(_, entry)| entry.clone())
        .expect("a journal")
}

fn suspended_on_signal(index: u32) -> EffectKind {
    EffectKind::Suspended {
        waiting_completions: vec![],
        waiting_signals: vec![index],
        waiting_named_signals: vec![],
    }
}

#[test]
fn a_signal_reaches_a_running_invocation_once() {
    let mut store = MemoryStore::default();
    apply_fenced(&mut store, &invoke(1, 10));
    let actions = apply_fenced(&mut store, &awakeable(1, 17, b"\"v\""));
    assert!(matches!(
        actions.as_slice(),
        [Action::Notify { entry_index: 1, .. }]
    ));
    let entry = last_entry(&store, 1);
    assert_eq!(entry.ty, MessageType::SignalNotification.id());
    let notification = proto::NotificationTemplate::decode(entry.payload).expect("decodes");
    assert_eq!(
        notification.id,
        Some(notification_template::Id::SignalId(17))
    );
    assert_eq!(
        notification.result,
        Some(notification_template::Result::Value(proto::Value {
            content: Bytes::from_static(b"\"v\"")
        }))
    );
    let before = store.clone();
    assert_eq!(
        apply_fenced(&mut store, &awakeable(1, 17, b"\"w\"")),
        Vec::new()
    );
    assert_eq!(
        store, before,
        "a second completion of one signal changes nothing"
    );
}

#[test]
fn a_suspended_invocation_resumes_on_the_signal_it_waits_for() {
    let mut store = MemoryStore::default();
    apply_fenced(&mut store, &invoke(1, 10));
    apply_fenced(&mut store, &effect(1, suspended_on_signal(18)));
    // Another signal is kept, and does not wake it.
    assert_eq!(
        apply_fenced(&mut store, &awakeable(1, 17, b"1")),
        Vec::new()
    );
    assert!(matches!(
        status(&store, 1),
        InvocationStatus::Suspended { .. }
    ));
    let actions = apply_fenced(&mut store, &awakeable(1, 18, b"2"));
    assert!(matches!(actions.as_slice(), [Action::Invoke { .. }]));
    assert!(matches!(status(&store, 1), InvocationStatus::Invoked(_)));
    // Suspending on a signal already journaled resumes at once.
    let actions = apply_fenced(&mut store, &effect(1, suspended_on_signal(17)));
    assert!(matches!(actions.as_slice(), [Action::Invoke { .. }]));
}

#[test]
fn a_signal_for_an_invocation_waiting_its_turn_is_kept_for_it() {
    let mut store = MemoryStore::default();
    apply_fenced(&mut store, &invoke_object(1, "k"));
    apply_fenced(&mut store, &invoke_object(2, "k"));
    assert_eq!(
        apply_fenced(&mut store, &awakeable(2, 17, b"1")),
        Vec::new()
    );
    let InvocationStatus::Inboxed { in_flight, .. } = status(&store, 2) else {
        panic!("2 waits in the inbox");
    };
    assert_eq!(in_flight.journal_length, 2);
    assert_eq!(in_flight.notified_signals, vec![17]);
    // For a completed or unknown invocation there is nothing to do.
    assert_eq!(
        apply_fenced(&mut store, &awakeable(9, 17, b"1")),
        Vec::new()
    );
}

#[test]
fn signal_commands_go_through_the_outbox_and_bad_ones_are_never_journaled() {
    let mut store = MemoryStore::default();
    apply_fenced(&mut store, &invoke(1, 10));
    let send_signal = |target: String| {
        command(
            MessageType::SendSignalCommand,
            &proto::SendSignalCommandMessage {
                target_invocation_id: target,
                signal_id: Some(proto::send_signal_command_message::SignalId::Name(
                    "go".into(),
                )),
                result: Some(proto::send_signal_command_message::Result::Void(
                    proto::Void {},
                )),
                entry_name: String::new(),
            },
        )
    };
    let actions = apply_fenced(&mut store, &effect(1, send_signal(id(2).to_string())));
    assert_eq!(actions, vec![Action::DeliverOutbox { seq: 0 }]);
    assert_eq!(
        store.outbox.get(&0),
        Some(&OutboxMessage::Signal(Signal {
            target: id(2),
            id: SignalId::Name("go".into()),
            result: SignalResult::Void,
        }))
    );
    let before = store.clone();
    apply_fenced(&mut store, &effect(1, send_signal("not-an-id".into())));
    assert_eq!(store, before);
    assert!(
        reprise_partition_processor::signal_of_command(
            MessageType::SendSignalCommand,
            &proto::SendSignalCommandMessage::default()
                .encode_to_vec()
                .into(),
        )
        .is_err()
    );
    assert_eq!(
        store
            .status(id(1))
            .expect("status")
            .map(|s| s.in_flight().map(|f| f.commands)),
        Some(Some(2))
    );
}
