//! Cancel, kill and purge: a cancellation is a signal for an invocation that runs and an
//! immediate end for one that waits its turn; a kill ends an invocation at once, releases its
//! object and reaches the calls it waits for; a purge removes a completed invocation.

mod support;

use reprise_partition_processor::{
    Action, InvocationResult, InvocationStatus, MemoryStore, OutboxMessage, PartitionStore, Record,
    ResponseSink, TerminationMode,
};
use reprise_service_protocol::MessageType;
use reprise_types::{InvocationId, PartitionKey};
use support::*;

fn terminate(n: u128, mode: TerminationMode) -> Record {
    Record::Terminate {
        target: id(n),
        mode,
    }
}

fn answered(actions: &[Action], request: u64, message: &str) -> bool {
    actions.iter().any(|a| {
        matches!(a, Action::Respond {
            sink: ResponseSink::Ingress { request_id },
            result: InvocationResult::Failure { code: 409, message: m },
            ..
        } if *request_id == request && m == message)
    })
}

#[test]
fn cancelling_a_running_invocation_signals_it() {
    let mut store = MemoryStore::default();
    apply_fenced(&mut store, &invoke(1, 10));
    let actions = apply_fenced(&mut store, &terminate(1, TerminationMode::Cancel));
    assert!(
        matches!(actions.as_slice(), [Action::Notify { entry_index: 1, entry, .. }]
        if entry.ty == MessageType::SignalNotification.id())
    );
    let InvocationStatus::Invoked(in_flight) = status(&store, 1) else {
        panic!("it keeps running: its SDK decides what the cancellation does");
    };
    assert_eq!(in_flight.notified_signals, vec![1]);
}

#[test]
fn cancelling_or_killing_an_inboxed_invocation_ends_it_and_empties_its_place() {
    let mut store = MemoryStore::default();
    for n in 1..=3 {
        apply_fenced(
            &mut store,
            &invoke_handler(
                n,
                "k",
                reprise_partition_processor::HandlerType::Exclusive,
                Some(n as u64),
            ),
        );
    }
    let actions = apply_fenced(&mut store, &terminate(2, TerminationMode::Cancel));
    assert!(answered(&actions, 2, "canceled"), "{actions:?}");
    let actions = apply_fenced(&mut store, &terminate(3, TerminationMode::Kill));
    assert!(answered(&actions, 3, "killed"), "{actions:?}");
    assert!(store.inbox.is_empty());
    // The holder is untouched, and when it ends the lock is free: no one is left to run.
    assert!(matches!(status(&store, 1), InvocationStatus::Invoked(_)));
    assert_eq!(store.locks.values().next().map(|l| l.holder), Some(id(1)));
    let actions = apply_fenced(&mut store, &terminate(1, TerminationMode::Kill));
    assert!(answered(&actions, 1, "killed"));
    assert!(actions.contains(&Action::AbortAttempt {
        invocation_id: id(1)
    }));
    assert!(store.locks.is_empty());
}

#[test]
fn a_kill_reaches_the_calls_its_invocation_waits_for() {
    let mut store = MemoryStore::default();
    apply_fenced(&mut store, &invoke(1, 10));
    let answered_callee = InvocationId::new(PartitionKey::new(5), 2);
    let waited_callee = InvocationId::new(PartitionKey::new(5), 3);
    apply_fenced(
        &mut store,
        &effect(1, call(answered_callee, None, b"1", 1, 2)),
    );
    apply_fenced(
        &mut store,
        &effect(1, call(waited_callee, None, b"1", 3, 4)),
    );
    // The first call's result arrives: only the second is pending.
    apply_fenced(
        &mut store,
        &Record::Deliver(reprise_partition_processor::Delivery {
            producer: PRODUCER,
            messages: vec![(
                0,
                OutboxMessage::CallResult {
                    caller: id(1),
                    completion_id: 2,
                    notification: reprise_partition_processor::ResultNotification::Call,
                    result: InvocationResult::Success(bytes::Bytes::from_static(b"1")),
                },
            )],
        }),
    );
    let InvocationStatus::Invoked(in_flight) = status(&store, 1) else {
        panic!("running");
    };
    assert_eq!(in_flight.pending_calls, vec![(4, waited_callee)]);
    let actions = apply_fenced(&mut store, &terminate(1, TerminationMode::Kill));
    assert!(answered(&actions, 10, "killed"));
    let kills: Vec<&OutboxMessage> = store
        .outbox
        .values()
        .filter(|m| matches!(m, OutboxMessage::Kill { .. }))
        .collect();
    assert_eq!(
        kills,
        vec![&OutboxMessage::Kill {
            target: waited_callee
        }]
    );
}

#[test]
fn a_purge_removes_a_completed_invocation_and_nothing_else() {
    let mut store = MemoryStore::default();
    apply_fenced(&mut store, &invoke(1, 10));
    apply_fenced(&mut store, &invoke(2, 11));
    apply_fenced(&mut store, &effect(1, output(b"1")));
    apply_fenced(
        &mut store,
        &effect(1, reprise_partition_processor::EffectKind::End),
    );
    assert!(matches!(
        status(&store, 1),
        InvocationStatus::Completed { .. }
    ));
    apply_fenced(&mut store, &Record::Purge { target: id(1) });
    assert_eq!(store.status(id(1)).expect("status"), None);
    apply_fenced(&mut store, &Record::Purge { target: id(2) });
    assert!(matches!(status(&store, 2), InvocationStatus::Invoked(_)));
    // Terminating what is gone or done changes nothing.
    let before = store.clone();
    apply_fenced(&mut store, &terminate(1, TerminationMode::Kill));
    assert_eq!(store, before);
}

#[test]
fn a_paused_invocation_runs_again_when_resumed_or_cancelled() {
    let mut store = MemoryStore::default();
    apply_fenced(&mut store, &invoke(1, 10));
    let paused = reprise_partition_processor::EffectKind::Paused {
        code: 500,
        message: "boom".into(),
    };
    let actions = apply_fenced(&mut store, &effect(1, paused.clone()));
    assert_eq!(
        actions,
        vec![Action::AbortAttempt {
            invocation_id: id(1)
        }]
    );
    let InvocationStatus::Paused(in_flight) = status(&store, 1) else {
        panic!("paused");
    };
    assert_eq!(in_flight.last_failure.as_deref(), Some("[500] boom"));
    // Nothing resumes it on its own: not a leader's resume index, not a late effect.
    assert!(store.status(id(1)).expect("status").is_some());
    let actions = apply_fenced(&mut store, &Record::Resume { target: id(1) });
    assert!(matches!(actions.as_slice(), [Action::Invoke { .. }]));
    assert!(matches!(status(&store, 1), InvocationStatus::Invoked(_)));
    // Resuming what is not paused changes nothing.
    let before = store.clone();
    assert_eq!(
        apply_fenced(&mut store, &Record::Resume { target: id(1) }),
        Vec::new()
    );
    assert_eq!(store, before);
    // Cancelled while paused: it runs again, with the cancel signal in its journal.
    apply_fenced(&mut store, &effect(1, paused.clone()));
    let actions = apply_fenced(&mut store, &terminate(1, TerminationMode::Cancel));
    assert!(matches!(actions.as_slice(), [Action::Invoke { .. }]));
    let InvocationStatus::Invoked(in_flight) = status(&store, 1) else {
        panic!("running again");
    };
    assert_eq!(in_flight.notified_signals, vec![1]);
    // Killed while paused: over.
    apply_fenced(&mut store, &effect(1, paused));
    let actions = apply_fenced(&mut store, &terminate(1, TerminationMode::Kill));
    assert!(answered(&actions, 10, "killed"));
}

#[test]
fn a_completion_that_arrives_while_paused_is_kept_for_the_resumed_attempt() {
    let mut store = MemoryStore::default();
    apply_fenced(&mut store, &invoke(1, 10));
    apply_fenced(&mut store, &effect(1, sleep(1, 5_000)));
    let paused = reprise_partition_processor::EffectKind::Paused {
        code: 500,
        message: "boom".into(),
    };
    apply_fenced(&mut store, &effect(1, paused));
    let fired = Record::TimerFired(reprise_partition_processor::TimerKey {
        wake_at: reprise_types::MillisSinceEpoch::new(5_000),
        invocation_id: id(1),
        kind: reprise_partition_processor::TimerKind::Completion(1),
    });
    assert_eq!(apply_fenced(&mut store, &fired), Vec::new());
    let InvocationStatus::Paused(in_flight) = status(&store, 1) else {
        panic!("still paused");
    };
    assert_eq!(in_flight.notified_completions, vec![1]);
    apply_fenced(&mut store, &Record::Resume { target: id(1) });
    assert!(matches!(status(&store, 1), InvocationStatus::Invoked(_)));
}

#[test]
fn a_cancellation_resumes_a_suspended_invocation_whatever_it_waits_for() {
    let mut store = MemoryStore::default();
    apply_fenced(&mut store, &invoke(1, 10));
    apply_fenced(&mut store, &effect(1, suspended_on(&[7])));
    let actions = apply_fenced(&mut store, &terminate(1, TerminationMode::Cancel));
    assert!(matches!(actions.as_slice(), [Action::Invoke { .. }]));
    let InvocationStatus::Invoked(in_flight) = status(&store, 1) else {
        panic!("resumed");
    };
    assert_eq!(in_flight.notified_signals, vec![1]);
}
