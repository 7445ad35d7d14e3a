//! Virtual-object locks and durable timers in the state machine: exclusive invocations of one
//! key run one at a time in arrival order, shared ones never wait, and a sleep's timer
//! completes it once and wakes the invocation if it suspended.

mod support;

use bytes::Bytes;
use prost::Message;
use reprise_partition_processor::{
    Action, EffectKind, HandlerType, InvocationResult, InvocationStatus, MemoryStore, ObjectId,
    PartitionStore, Record, ResponseSink, TimerKey, TimerKind,
};
use reprise_service_protocol::MessageType;
use reprise_service_protocol::proto::{self, notification_template};
use reprise_types::MillisSinceEpoch;
use support::*;

fn end(n: u128) -> [Record; 2] {
    [effect(n, output(b"done")), effect(n, EffectKind::End)]
}

fn invoked(actions: &[Action]) -> Vec<u128> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Invoke { invocation_id, .. } => Some(invocation_id.uuid()),
            _ => None,
        })
        .collect()
}

fn apply_all(store: &mut MemoryStore, records: &[Record]) -> Vec<Action> {
    records
        .iter()
        .flat_map(|record| apply_fenced(store, record))
        .collect()
}

fn kind(store: &MemoryStore, n: u128) -> &'static str {
    match status(store, n) {
        InvocationStatus::Invoked(_) => "invoked",
        InvocationStatus::Inboxed { .. } => "inboxed",
        InvocationStatus::Scheduled(_) => "scheduled",
        InvocationStatus::Paused(_) => "paused",
        InvocationStatus::Suspended { .. } => "suspended",
        InvocationStatus::Completed { .. } => "completed",
    }
}

#[test]
fn exclusive_calls_on_one_key_run_one_at_a_time_in_arrival_order() {
    let mut store = MemoryStore::default();
    let arrivals = [
        invoke_object(1, "k"),
        invoke_object(2, "k"),
        invoke_object(3, "k"),
        invoke_object(4, "other"),
    ];
    let started: Vec<Vec<u128>> = arrivals
        .iter()
        .map(|record| invoked(&apply_fenced(&mut store, record)))
        .collect();
    assert_eq!(started, vec![vec![1], vec![], vec![], vec![4]]);
    assert_eq!(kind(&store, 2), "inboxed");
    assert_eq!(kind(&store, 3), "inboxed");
    // Effects for a waiting invocation are stale: it has no attempt.
    assert!(apply_all(&mut store, &[effect(2, set_state(b"x", b"1"))]).is_empty());
    assert!(store.state.is_empty());

    // Ending hands the key to the next in line, and only to it.
    assert_eq!(invoked(&apply_all(&mut store, &end(1))), vec![2]);
    assert_eq!(kind(&store, 3), "inboxed");
    // Giving up releases the key too.
    let gave_up = EffectKind::GaveUp {
        code: 500,
        message: "broken".into(),
    };
    assert_eq!(
        invoked(&apply_all(&mut store, &[effect(2, gave_up)])),
        vec![3]
    );
    assert_eq!(invoked(&apply_all(&mut store, &end(3))), Vec::<u128>::new());

    let k = ObjectId::new("Counter", "k");
    assert_eq!(
        store.object_lock(&k).expect("read"),
        None,
        "k is free again"
    );
    assert!(store.inbox.is_empty());
    let other = ObjectId::new("Counter", "other");
    assert_eq!(
        store.object_lock(&other).expect("read").map(|l| l.holder),
        Some(id(4))
    );

    // A free key is taken at once again.
    assert_eq!(
        invoked(&apply_all(&mut store, &[invoke_object(5, "k")])),
        vec![5]
    );
}

#[test]
fn shared_handlers_never_wait_and_cannot_write_state() {
    let mut store = MemoryStore::default();
    apply_all(&mut store, &[invoke_object(1, "k")]);
    let shared = invoke_handler(2, "k", HandlerType::Shared, None);
    assert_eq!(invoked(&apply_all(&mut store, &[shared])), vec![2]);
    apply_all(&mut store, &[effect(2, set_state(b"x", b"1"))]);
    assert!(
        store.state.is_empty(),
        "a shared handler's write is ignored"
    );
    // Its end does not release the exclusive holder's key.
    apply_all(&mut store, &end(2));
    let k = ObjectId::new("Counter", "k");
    assert_eq!(
        store.object_lock(&k).expect("read").map(|l| l.holder),
        Some(id(1))
    );
}

#[test]
fn a_duplicate_of_a_waiting_call_joins_it() {
    let mut store = MemoryStore::default();
    apply_all(
        &mut store,
        &[
            invoke_object(1, "k"),
            invoke_handler(2, "k", HandlerType::Exclusive, Some(20)),
            invoke_handler(2, "k", HandlerType::Exclusive, Some(21)),
        ],
    );
    assert_eq!(store.inbox.len(), 1, "the duplicate is not queued twice");
    apply_all(&mut store, &end(1));
    let actions = apply_all(&mut store, &end(2));
    let answered: Vec<u64> = actions
        .iter()
        .filter_map(|action| match action {
            Action::Respond {
                sink: ResponseSink::Ingress { request_id },
                ..
            } => Some(*request_id),
            _ => None,
        })
        .collect();
    assert_eq!(answered, vec![20, 21]);
}

fn timer(n: u128, completion_id: u32, wake_at: u64) -> TimerKey {
    TimerKey {
        wake_at: MillisSinceEpoch::new(wake_at),
        invocation_id: id(n),
        kind: TimerKind::Completion(completion_id),
    }
}

#[test]
fn a_fired_timer_completes_the_sleep_once_and_wakes_the_invocation() {
    let records = [
        invoke_object(1, "k"),
        effect(1, sleep(1, 5_000)),
        effect(1, suspended_on(&[1])),
        Record::TimerFired(timer(1, 1, 5_000)),
        Record::TimerFired(timer(1, 1, 5_000)),
    ];
    let (store, actions) = replay(&records);
    assert_eq!(actions[1], vec![Action::RegisterTimer(timer(1, 1, 5_000))]);
    assert!(actions[2].is_empty(), "suspended");
    assert_eq!(invoked(&actions[3]), vec![1], "the timer resumes it");
    assert!(actions[4].is_empty(), "a timer fires once");
    assert!(store.timers.is_empty());

    let InvocationStatus::Invoked(in_flight) = status(&store, 1) else {
        panic!("resumed");
    };
    assert_eq!(in_flight.notified_completions, vec![1]);
    // Input, sleep command, sleep completion.
    assert_eq!(in_flight.journal_length, 3);
    let entry = store
        .journals
        .get(&(id(1), 2))
        .expect("the completion is journaled");
    assert_eq!(
        MessageType::from_id(entry.ty),
        Some(MessageType::SleepCompletionNotification)
    );
    let notification =
        proto::NotificationTemplate::decode(entry.payload.clone()).expect("a notification");
    assert_eq!(
        notification.id,
        Some(notification_template::Id::CompletionId(1))
    );
    assert_eq!(
        notification.result,
        Some(notification_template::Result::Void(proto::Void {}))
    );
}

#[test]
fn a_timer_notifies_a_running_attempt_and_is_dropped_after_the_end() {
    let mut store = MemoryStore::default();
    apply_all(
        &mut store,
        &[
            invoke_object(1, "k"),
            effect(1, sleep(1, 10)),
            effect(1, sleep(2, 20)),
        ],
    );
    assert_eq!(store.timers.len(), 2);
    let actions = apply_all(&mut store, &[Record::TimerFired(timer(1, 1, 10))]);
    assert!(
        matches!(actions.as_slice(), [Action::Notify { entry_index: 3, .. }]),
        "{actions:?}"
    );
    // A suspension waiting for what is already there resumes at once.
    let actions = apply_all(&mut store, &[effect(1, suspended_on(&[1]))]);
    assert_eq!(invoked(&actions), vec![1]);
    apply_all(&mut store, &end(1));
    assert!(matches!(
        status(&store, 1),
        InvocationStatus::Completed { .. }
    ));
    // The other timer outlived its invocation: firing it only removes it. What remains is
    // the timer that ends the completed invocation's retention.
    let actions = apply_all(&mut store, &[Record::TimerFired(timer(1, 2, 20))]);
    assert!(actions.is_empty());
    let remaining: Vec<TimerKind> = store.timers.iter().map(|t| t.kind).collect();
    assert_eq!(remaining, vec![TimerKind::PurgeInvocation]);
}

#[test]
fn a_suspended_invocation_waits_for_what_it_waits_for() {
    let mut store = MemoryStore::default();
    apply_all(
        &mut store,
        &[
            invoke_object(1, "k"),
            effect(1, sleep(1, 10)),
            effect(1, sleep(2, 20)),
            effect(1, suspended_on(&[2])),
        ],
    );
    let actions = apply_all(&mut store, &[Record::TimerFired(timer(1, 1, 10))]);
    assert!(actions.is_empty(), "completion 1 is not awaited");
    assert_eq!(kind(&store, 1), "suspended");
    let actions = apply_all(&mut store, &[Record::TimerFired(timer(1, 2, 20))]);
    assert_eq!(invoked(&actions), vec![1]);
    let in_flight = status(&store, 1).in_flight().cloned().expect("in flight");
    assert_eq!(in_flight.notified_completions, vec![1, 2]);
    // A run proposal for a suspended invocation is journaled, and resumes it if awaited.
    let mut store = MemoryStore::default();
    apply_all(
        &mut store,
        &[
            invoke_object(1, "k"),
            effect(1, run_command(1)),
            effect(1, suspended_on(&[1])),
        ],
    );
    let proposal = EffectKind::RunProposal {
        completion_id: 1,
        result: InvocationResult::Success(Bytes::from_static(b"7")),
    };
    assert_eq!(
        invoked(&apply_all(&mut store, &[effect(1, proposal)])),
        vec![1]
    );
}
