//! A partition's raft group on a real database: proposals come back as actions once applied,
//! applied rows are readable through the handle, and everything survives a restart.

use std::time::Duration;

use bytes::Bytes;
use reprise_partition_processor::{
    Action, EffectKind, Fence, HandlerType, InvocationStatus, InvocationTarget, InvokerEffect,
    Partition, PartitionHandle, PartitionOptions, Record, RocksDbStore, ServiceInvocation,
};
use reprise_types::{InvocationId, MillisSinceEpoch, PartitionId, PartitionKey};

fn options(dir: &std::path::Path, store: &RocksDbStore, id: u16) -> PartitionOptions {
    let width = u64::MAX / 4;
    let start = width * u64::from(id);
    PartitionOptions {
        id: PartitionId::new(id),
        range: PartitionKey::new(start)..=PartitionKey::new(start + width - 1),
        member_id: 1,
        address: "127.0.0.1:0".into(),
        cluster_name: "test".into(),
        store: store.clone(),
        snapshot_dir: dir.join(format!("snapshots-{id}")),
        snapshot_interval: PartitionOptions::DEFAULT_SNAPSHOT_INTERVAL,
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
        retention: Default::default(),
        execution_time: None,
    })
}

#[tokio::test]
async fn applied_records_become_actions_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RocksDbStore::open(&dir.path().join("store")).expect("open");
    // Two partitions share the database; each sees only its own records.
    let mut first = Partition::start(options(dir.path(), &store, 1))
        .await
        .expect("start");
    let mut second = Partition::start(options(dir.path(), &store, 2))
        .await
        .expect("start");
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
    let epoch = handle.announce().await.expect("announced");
    assert_eq!(handle.epoch(), Some(epoch));
    let first_effect = handle
        .enqueue(Record::Effect(InvokerEffect {
            invocation_id: id,
            kind: EffectKind::AttemptFailed {
                code: 500,
                message: "boom".into(),
            },
            fence: Fence {
                leader_epoch: epoch,
                attempt: 0,
                command_index: 1,
            },
        }))
        .await
        .expect("enqueued");
    first_effect.wait().await.expect("committed");
    first.shutdown().await.expect("stop");
    second.shutdown().await.expect("stop");
    store.close().expect("close");
    drop((store, handle));

    let store = RocksDbStore::open(&dir.path().join("store")).expect("reopen");
    let partition = Partition::start(options(dir.path(), &store, 1))
        .await
        .expect("restart");
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

#[tokio::test]
async fn a_restart_after_the_log_was_purged_restores_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RocksDbStore::open(&dir.path().join("store")).expect("open");
    let frequent_snapshots = || PartitionOptions {
        snapshot_interval: 50,
        ..options(dir.path(), &store, 1)
    };
    let partition = Partition::start(frequent_snapshots()).await.expect("start");
    let handle = partition.handle();
    handle
        .wait_for_leadership(Duration::from_secs(10))
        .await
        .expect("leads");
    let ids: Vec<InvocationId> = (0..300)
        .map(|n| InvocationId::new(PartitionKey::new(u64::MAX / 4 + n), u128::from(n)))
        .collect();
    // One proposal at a time: each is its own log entry.
    for id in &ids {
        handle.propose(invocation(*id)).await.expect("proposed");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = partition.metrics();
        let snapshot = metrics.snapshot.map_or(0, |id| id.index);
        let purged = metrics.purged.map_or(0, |id| id.index);
        if snapshot >= 250 && purged >= 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot and purge: snapshot at {snapshot}, purged to {purged}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    partition.shutdown().await.expect("stop");
    store.close().expect("close");
    drop((store, handle));

    let store = RocksDbStore::open(&dir.path().join("store")).expect("reopen");
    let frequent_snapshots = || PartitionOptions {
        snapshot_interval: 50,
        ..options(dir.path(), &store, 1)
    };
    let partition = Partition::start(frequent_snapshots())
        .await
        .expect("restart");
    let handle = partition.handle();
    handle
        .wait_for_leadership(Duration::from_secs(10))
        .await
        .expect("leads again");
    let metrics = partition.metrics();
    assert!(
        metrics.purged.is_some_and(|id| id.index >= 200),
        "the log stays purged after the restart: {:?}",
        metrics.purged
    );
    assert_eq!(
        handle
            .store()
            .statuses_in(handle.range())
            .expect("scan")
            .len(),
        ids.len()
    );
    // And the partition goes on: a new record applies on top of the restored state.
    let id = InvocationId::new(PartitionKey::new(u64::MAX / 4 + 1_000), 1_000);
    handle
        .propose(invocation(id))
        .await
        .expect("proposed after restart");
    assert!(handle.store().read_status(id).expect("read").is_some());
    partition.shutdown().await.expect("stop");
}

/// Partition 1 on a new store, once it leads.
async fn leading_partition() -> (tempfile::TempDir, RocksDbStore, Partition, PartitionHandle) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RocksDbStore::open(&dir.path().join("store")).expect("open");
    let partition = Partition::start(options(dir.path(), &store, 1))
        .await
        .expect("start");
    let handle = partition.handle();
    handle
        .wait_for_leadership(Duration::from_secs(10))
        .await
        .expect("leads");
    (dir, store, partition, handle)
}

#[tokio::test]
async fn a_commit_costs_one_fsync_of_the_write_ahead_log() {
    let (_dir, store, partition, handle) = leading_partition().await;
    let syncs = || reprise_rocksdb::wal_syncs(&store.db()).expect("RocksDB counts its syncs");
    let before = syncs();
    // One proposal at a time: each is its own log entry and its own commit.
    const COMMITS: u64 = 50;
    for n in 0..COMMITS {
        let id = InvocationId::new(PartitionKey::new(u64::MAX / 4 + n), u128::from(n));
        handle.propose(invocation(id)).await.expect("proposed");
    }
    let spent = syncs() - before;
    assert!(
        spent <= COMMITS + 2,
        "{COMMITS} commits cost {spent} fsyncs of the write-ahead log"
    );
    partition.shutdown().await.expect("stop");
}

#[tokio::test]
async fn proposal_batches_are_bounded_in_bytes() {
    let (_dir, _store, partition, handle) = leading_partition().await;
    let last_index = || partition.metrics().last_log_index.unwrap_or(0);
    let before = last_index();
    // Three records of 3 MB queued at once: no two fit one entry's 4 MiB.
    let mut committed = Vec::new();
    for n in 0..3u64 {
        let id = InvocationId::new(PartitionKey::new(u64::MAX / 4 + n), u128::from(n));
        let Record::Invoke(invocation) = invocation(id) else {
            unreachable!("invocation() makes an Invoke record")
        };
        let large = Record::Invoke(ServiceInvocation {
            argument: Bytes::from(vec![b'x'; 3_000_000]),
            ..invocation
        });
        committed.push(handle.enqueue(large).await.expect("queued"));
    }
    for proposal in committed {
        proposal.wait().await.expect("committed");
    }
    assert_eq!(last_index() - before, 3, "one entry per large record");
    partition.shutdown().await.expect("stop");
}
