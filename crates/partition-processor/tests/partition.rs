//! A partition's raft group on a real database: proposals come back as actions once applied,
//! applied rows are readable through the handle, and everything survives a restart.

use std::time::Duration;

use bytes::Bytes;
use reprise_partition_processor::{
    Action, EffectKind, HandlerType, InvocationStatus, InvocationTarget, InvokerEffect, Partition,
    PartitionOptions, Record, RocksDbStore, ServiceInvocation,
};
use reprise_types::{InvocationId, MillisSinceEpoch, PartitionId, PartitionKey};

fn options(store: &RocksDbStore, id: u16) -> PartitionOptions {
    let width = u64::MAX / 4;
    let start = width * u64::from(id);
    PartitionOptions {
        id: PartitionId::new(id),
        range: PartitionKey::new(start)..=PartitionKey::new(start + width - 1),
        member_id: 1,
        address: "127.0.0.1:0".into(),
        cluster_name: "test".into(),
        store: store.clone(),
    }
}

fn invocation(id: InvocationId) -> Record {
    Record::Invoke(ServiceInvocation {
        invocation_id: id,
        target: InvocationTarget {
            service: "Greeter".into(),
            handler: "greet".into(),
            key: None,
            handler_type: HandlerType::Exclusive,
        },
        argument: Bytes::from_static(b"\"Ann\""),
        headers: vec![],
        response_sink: None,
        created_at: MillisSinceEpoch::new(1),
    })
}

#[tokio::test]
async fn applied_records_become_actions_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RocksDbStore::open(dir.path()).expect("open");
    // Two partitions share the database; each sees only its own records.
    let mut first = Partition::start(options(&store, 1)).await.expect("start");
    let mut second = Partition::start(options(&store, 2)).await.expect("start");
    let handle = first.handle();
    handle
        .wait_for_leadership(Duration::from_secs(10))
        .await
        .expect("leads");
    let id = InvocationId::new(PartitionKey::new(u64::MAX / 4 + 7), 42);
    handle.propose(invocation(id)).await.expect("proposed");
    let mut actions = first.take_actions().expect("actions");
    let applied = actions.recv().await.expect("an action batch");
    assert!(
        matches!(applied.as_slice(), [Action::Invoke { invocation_id, .. }] if *invocation_id == id)
    );
    assert!(matches!(
        handle.store().read_status(id).expect("read"),
        Some(InvocationStatus::Invoked(_))
    ));
    assert_eq!(
        handle.store().read_journal(id, 1).expect("journal").len(),
        1
    );
    let other = second.take_actions().expect("actions");
    assert!(other.is_empty(), "the other partition applied nothing");

    // The attempt failed once: the reason is stored, and an ordered pair of proposals
    // applies in order.
    let first_effect = handle
        .enqueue(Record::Effect(InvokerEffect {
            invocation_id: id,
            kind: EffectKind::AttemptFailed {
                code: 500,
                message: "boom".into(),
            },
        }))
        .await
        .expect("enqueued");
    first_effect.wait().await.expect("committed");
    first.shutdown().await.expect("stop");
    second.shutdown().await.expect("stop");
    store.close().expect("close");
    drop((store, handle));

    let store = RocksDbStore::open(dir.path()).expect("reopen");
    let partition = Partition::start(options(&store, 1)).await.expect("restart");
    let handle = partition.handle();
    handle
        .wait_for_leadership(Duration::from_secs(10))
        .await
        .expect("leads again");
    let Some(InvocationStatus::Invoked(in_flight)) = handle.store().read_status(id).expect("read")
    else {
        panic!("the invocation is still running after the restart");
    };
    assert_eq!(in_flight.last_failure.as_deref(), Some("[500] boom"));
    assert_eq!(
        handle
            .store()
            .statuses_in(handle.range())
            .expect("scan")
            .len(),
        1
    );
    partition.shutdown().await.expect("stop");
}
