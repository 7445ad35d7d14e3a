//! The RocksDB tables against the in-memory model: the same records must give the same actions
//! and the same tables, whether each record commits alone or many share one batch, and the
//! tables must read back the same after the database is reopened.

mod support;

use bytes::Bytes;
use reprise_partition_processor::{
    Action, Delivery, EffectKind, HandlerType, InvocationResult, InvocationStatus,
    InvocationTarget, MemoryStore, ObjectId, OutboxMessage, PartitionStore, Record, ResponseSink,
    Retention, RocksDbStore, ServiceInvocation, StoredFrame, TimerKey, TimerKind,
};
use reprise_service_protocol::MessageType;
use reprise_service_protocol::proto;
use reprise_types::{InvocationId, MillisSinceEpoch, PartitionKey};
use support::{DAY_MS, NOW, apply_fenced, command, set_state, sleep};

fn id(n: u128) -> InvocationId {
    InvocationId::new(PartitionKey::new(u64::MAX - 3), n)
}

fn invoke(n: u128) -> Record {
    invoke_on(n, &format!("key-{n}"))
}

fn invoke_on(n: u128, key: &str) -> Record {
    Record::Invoke(ServiceInvocation {
        invocation_id: id(n),
        target: InvocationTarget {
            service: "Counter".into(),
            handler: "add".into(),
            key: Some(key.to_owned()),
            handler_type: HandlerType::Exclusive,
        },
        argument: Bytes::from(n.to_string()),
        headers: vec![],
        response_sink: Some(ResponseSink::Ingress {
            request_id: n as u64,
        }),
        created_at: MillisSinceEpoch::new(5),
        retention: retention(n),
        execution_time: None,
    })
}

/// Retentions of every kind: 1 keeps its journal for a second, 3 keeps nothing, 6 keeps its
/// journal as long as its status, the others keep their status only.
fn retention(n: u128) -> Retention {
    let (completion_ms, journal_ms) = match n {
        1 => (DAY_MS, 1_000),
        3 => (0, 0),
        6 => (DAY_MS, DAY_MS),
        _ => (DAY_MS, 0),
    };
    Retention {
        completion_ms,
        journal_ms,
    }
}

fn purge(n: u128, kind: TimerKind, after_ms: u64) -> Record {
    Record::TimerFired(TimerKey {
        wake_at: MillisSinceEpoch::new(NOW.as_u64() + after_ms),
        invocation_id: id(n),
        kind,
    })
}

fn effect(n: u128, kind: EffectKind) -> Record {
    support::current_attempt(id(n), kind)
}

/// A mix of everything the state machine does, interleaved across invocations.
fn scenario() -> Vec<Record> {
    let run = |c| {
        command(
            MessageType::RunCommand,
            &proto::RunCommandMessage {
                result_completion_id: c,
                name: String::new(),
            },
        )
    };
    let output = command(
        MessageType::OutputCommand,
        &proto::OutputCommandMessage {
            result: Some(proto::output_command_message::Result::Value(proto::Value {
                content: Bytes::from_static(b"done"),
            })),
            name: String::new(),
        },
    );
    let proposal = |c| EffectKind::RunProposal {
        completion_id: c,
        result: InvocationResult::Success(Bytes::from(format!("result-{c}"))),
    };
    vec![
        invoke(1),
        invoke(2),
        invoke(3),
        effect(1, run(1)),
        effect(2, run(1)),
        effect(1, proposal(1)),
        effect(
            2,
            EffectKind::Suspended {
                waiting_completions: vec![1],
                waiting_signals: vec![],
                waiting_named_signals: vec![],
            },
        ),
        effect(1, run(2)),
        effect(1, proposal(2)),
        effect(1, output.clone()),
        effect(1, EffectKind::End),
        effect(
            3,
            EffectKind::AttemptFailed {
                code: 503,
                message: "unavailable".into(),
            },
        ),
        effect(
            3,
            EffectKind::GaveUp {
                code: 503,
                message: "gave up".into(),
            },
        ),
        invoke(1),
        invoke(4),
        effect(4, set_state(b"a", b"1")),
        effect(4, set_state(b"b", b"2")),
        effect(
            4,
            command(
                MessageType::GetLazyStateCommand,
                &proto::GetLazyStateCommandMessage {
                    key: Bytes::from_static(b"a"),
                    result_completion_id: 1,
                    name: String::new(),
                },
            ),
        ),
        effect(
            4,
            command(
                MessageType::ClearAllStateCommand,
                &proto::ClearAllStateCommandMessage {
                    name: String::new(),
                },
            ),
        ),
        effect(4, set_state(b"c", b"3")),
        effect(
            4,
            command(
                MessageType::GetLazyStateKeysCommand,
                &proto::GetLazyStateKeysCommandMessage {
                    result_completion_id: 2,
                    name: String::new(),
                },
            ),
        ),
        invoke(5),
        effect(5, set_state(b"a", b"kept")),
        effect(4, output.clone()),
        // Three exclusive calls on one key: one runs, two wait; the first sleeps, suspends,
        // wakes on its timer and ends, handing the key to the second, which sleeps too.
        invoke_on(6, "busy"),
        invoke_on(7, "busy"),
        invoke_on(8, "busy"),
        effect(6, sleep(1, 1_000)),
        effect(
            6,
            EffectKind::Suspended {
                waiting_completions: vec![1],
                waiting_signals: vec![],
                waiting_named_signals: vec![],
            },
        ),
        Record::TimerFired(timer(6, 1, 1_000)),
        Record::TimerFired(timer(6, 1, 1_000)),
        effect(6, output),
        effect(6, EffectKind::End),
        effect(7, sleep(1, 5_000)),
        effect(7, sleep(2, 2_000)),
        // Retention ends: 1's journal goes (twice: the second is a no-op), then its status;
        // 6 goes whole; a purge of a running invocation changes nothing.
        purge(1, TimerKind::PurgeJournal, 1_000),
        purge(1, TimerKind::PurgeJournal, 1_000),
        purge(6, TimerKind::PurgeInvocation, DAY_MS),
        purge(1, TimerKind::PurgeInvocation, DAY_MS),
        purge(7, TimerKind::PurgeInvocation, DAY_MS),
        // 5 sends to 9 for later and calls 10: both go through the outbox, are delivered (the
        // send twice), the first is removed from it, 9 waits scheduled until its timer fires.
        effect(
            5,
            support::send(id(9), Some("later"), 1, NOW.as_u64() + 1_000),
        ),
        effect(5, support::call(id(10), None, b"x", 2, 3)),
        Record::OutboxDelivered { seqs: vec![0] },
        delivered(0, scheduled_send()),
        delivered(0, scheduled_send()),
        Record::TimerFired(TimerKey {
            wake_at: MillisSinceEpoch::new(NOW.as_u64() + 1_000),
            invocation_id: id(9),
            kind: TimerKind::Start,
        }),
    ]
}

fn delivered(seq: u64, message: OutboxMessage) -> Record {
    Record::Deliver(Delivery {
        producer: support::PRODUCER,
        messages: vec![(seq, message)],
    })
}

/// What invocation 5's send to 9 puts in the outbox.
fn scheduled_send() -> OutboxMessage {
    OutboxMessage::Invoke(ServiceInvocation {
        invocation_id: id(9),
        target: support::callee_target(Some("later")),
        argument: Bytes::from_static(b"1"),
        headers: vec![],
        response_sink: None,
        created_at: NOW,
        retention: Retention {
            completion_ms: DAY_MS,
            journal_ms: 0,
        },
        execution_time: Some(MillisSinceEpoch::new(NOW.as_u64() + 1_000)),
    })
}

fn timer(n: u128, completion_id: u32, wake_at: u64) -> TimerKey {
    TimerKey {
        wake_at: MillisSinceEpoch::new(wake_at),
        invocation_id: id(n),
        kind: TimerKind::Completion(completion_id),
    }
}

fn model(records: &[Record]) -> (MemoryStore, Vec<Vec<Action>>) {
    let mut store = MemoryStore::default();
    let actions = records
        .iter()
        .map(|r| apply_fenced(&mut store, r))
        .collect();
    (store, actions)
}

#[test]
fn matches_the_model_one_commit_per_record_and_after_reopening() {
    let records = scenario();
    let (expected, expected_actions) = model(&records);
    let tmp = tempfile::tempdir().expect("temp dir");
    {
        let store = RocksDbStore::open(tmp.path()).expect("open");
        let mut actions = Vec::new();
        for record in &records {
            let mut txn = store.transaction(PartitionKey::MIN);
            actions.push(apply_fenced(&mut txn, record));
            txn.commit().expect("commit");
        }
        assert_eq!(actions, expected_actions);
        assert_eq!(store.to_memory().expect("dump"), expected);
    }
    let reopened = RocksDbStore::open(tmp.path()).expect("reopen");
    assert_eq!(reopened.to_memory().expect("dump"), expected);
    // The scenario leaves state behind, and the committed reader sees it.
    let object = ObjectId::new("Counter", "key-5");
    assert_eq!(
        reopened.read_all_state(&object).expect("read"),
        vec![(Bytes::from_static(b"a"), Bytes::from_static(b"kept"))]
    );
    let object = ObjectId::new("Counter", "key-4");
    assert_eq!(
        reopened.read_all_state(&object).expect("read"),
        vec![(Bytes::from_static(b"c"), Bytes::from_static(b"3"))]
    );
    // Eager state within a size limit: key and value count, and over the limit is `None`.
    assert_eq!(reopened.read_state_within(&object, 1).expect("read"), None);
    assert_eq!(
        reopened.read_state_within(&object, 2).expect("read"),
        Some(vec![(Bytes::from_static(b"c"), Bytes::from_static(b"3"))])
    );
    // The busy key: 7 holds it, 8 waits, and 7's timers page in firing order.
    let busy = ObjectId::new("Counter", "busy");
    assert_eq!(
        expected.locks.get(&busy).map(|lock| lock.holder),
        Some(id(7))
    );
    assert_eq!(expected.inbox.keys().collect::<Vec<_>>(), vec![&(busy, 1)]);
    let scope = PartitionKey::MIN;
    let all = reopened.read_timers(scope, None, 10).expect("timers");
    assert_eq!(all, vec![timer(7, 2, 2_000), timer(7, 1, 5_000)]);
    let page = reopened.read_timers(scope, None, 1).expect("timers");
    assert_eq!(page, vec![timer(7, 2, 2_000)]);
    let rest = reopened
        .read_timers(scope, page.last(), 10)
        .expect("timers");
    assert_eq!(rest, vec![timer(7, 1, 5_000)]);
    // Another partition's timers are not this one's.
    let other = PartitionKey::new(1);
    assert_eq!(
        reopened.read_timers(other, None, 10).expect("timers"),
        vec![]
    );
}

#[test]
fn matches_the_model_when_records_share_one_batch() {
    let records = scenario();
    let (expected, expected_actions) = model(&records);
    let tmp = tempfile::tempdir().expect("temp dir");
    let store = RocksDbStore::open(tmp.path()).expect("open");
    let mut txn = store.transaction(PartitionKey::MIN);
    let actions: Vec<Vec<Action>> = records.iter().map(|r| apply_fenced(&mut txn, r)).collect();
    assert_eq!(
        actions, expected_actions,
        "reads see the batch's own writes"
    );
    assert!(
        store.to_memory().expect("dump").statuses.is_empty(),
        "nothing is visible before commit"
    );
    txn.commit().expect("commit");
    assert_eq!(store.to_memory().expect("dump"), expected);
    // Reads outside a batch go to the tables.
    let txn = store.transaction(PartitionKey::MIN);
    assert_eq!(
        txn.journal_entry(id(4), 1).expect("read"),
        expected.journals.get(&(id(4), 1)).cloned()
    );
}

#[test]
fn an_uncommitted_batch_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().expect("temp dir");
    {
        let store = RocksDbStore::open(tmp.path()).expect("open");
        let mut txn = store.transaction(PartitionKey::MIN);
        apply_fenced(&mut txn, &invoke(1));
        // Dropped without commit, as when the node crashes mid-batch.
    }
    let store = RocksDbStore::open(tmp.path()).expect("reopen");
    assert_eq!(store.to_memory().expect("dump"), MemoryStore::default());
}

#[test]
fn a_journal_goes_whole_whatever_length_its_status_claims() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let store = RocksDbStore::open(tmp.path()).expect("open");
    let mut txn = store.transaction(PartitionKey::MIN);
    apply_fenced(&mut txn, &invoke(1));
    txn.commit().expect("commit");
    // A damaged status that claims four billion journal entries: removing the journal is one
    // range, not a loop over the claimed length.
    let mut txn = store.transaction(PartitionKey::MIN);
    let Some(InvocationStatus::Invoked(mut in_flight)) = txn.status(id(1)).expect("read") else {
        panic!("invoked");
    };
    in_flight.journal_length = u32::MAX;
    txn.put_status(id(1), InvocationStatus::Invoked(in_flight))
        .expect("put");
    txn.delete_journal(id(1), u32::MAX).expect("delete");
    assert_eq!(txn.journal_entry(id(1), 0).expect("read"), None);
    // A new entry written after the deletion, in the same batch, stays.
    let entry = StoredFrame {
        ty: 0x0400,
        payload: Bytes::from_static(b"after"),
    };
    txn.put_journal_entry(id(1), 0, entry.clone()).expect("put");
    txn.commit().expect("commit");
    let txn = store.transaction(PartitionKey::MIN);
    assert_eq!(txn.journal_entry(id(1), 0).expect("read"), Some(entry));
}

#[test]
fn the_outbox_reads_in_order_in_pages_bounded_by_count_and_bytes() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let store = RocksDbStore::open(tmp.path()).expect("open");
    let scope = PartitionKey::new(1 << 40);
    let message = |n: u64, size: usize| {
        let mut invocation = match scheduled_send() {
            OutboxMessage::Invoke(invocation) => invocation,
            _ => unreachable!(),
        };
        invocation.argument = Bytes::from(vec![n as u8; size]);
        OutboxMessage::Invoke(invocation)
    };
    let mut txn = store.transaction(scope);
    for seq in 0..10 {
        txn.put_outbox(seq, &message(seq, if seq == 3 { 4096 } else { 8 }))
            .expect("put");
    }
    txn.commit().expect("commit");
    let seqs =
        |page: Vec<(u64, OutboxMessage)>| page.into_iter().map(|(s, _)| s).collect::<Vec<_>>();
    assert_eq!(
        seqs(store.read_outbox(scope, None, 4, usize::MAX).expect("read")),
        vec![0, 1, 2, 3]
    );
    assert_eq!(
        seqs(
            store
                .read_outbox(scope, Some(7), 10, usize::MAX)
                .expect("read")
        ),
        vec![8, 9]
    );
    // The large message ends a page that has reached its byte budget; one is always read.
    assert_eq!(
        seqs(store.read_outbox(scope, Some(2), 10, 1024).expect("read")),
        vec![3]
    );
    assert_eq!(
        seqs(
            store
                .read_outbox(scope, Some(u64::MAX), 10, 1024)
                .expect("read")
        ),
        Vec::<u64>::new()
    );
    // Another partition's outbox is its own.
    assert!(
        store
            .read_outbox(PartitionKey::new(0), None, 10, usize::MAX)
            .expect("read")
            .is_empty()
    );
}
