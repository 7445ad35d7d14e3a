//! A partition's snapshot on real RocksDB: cut from one store, shipped as a file, installed into
//! another, compared row by row; an install a crash interrupted is finished at the next open.

use std::ops::RangeInclusive;

use bytes::Bytes;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use reprise_raft_storage::SnapshotDir;
use reprise_types::{InvocationId, MillisSinceEpoch, PartitionId, PartitionKey};
use tokio::io::AsyncWriteExt;

use crate::raft::{KEY_INSTALLING, PartitionStateMachine, PartitionTypes};
use crate::record::{
    EffectKind, HandlerType, InvocationTarget, InvokerEffect, Record, Retention, ServiceInvocation,
    StoredFrame,
};
use crate::rocksdb_store::{CF_RAFT, RocksDbStore};
use crate::storage::{MemoryStore, ObjectId, PartitionStore};
use crate::{ApplyContext, Fence, apply};

const PARTITION: PartitionId = PartitionId::new(2);
const CTX: ApplyContext = ApplyContext {
    now: MillisSinceEpoch::new(1),
};

fn range() -> RangeInclusive<PartitionKey> {
    PartitionKey::new(1_000)..=PartitionKey::new(1_999)
}

fn open_machine(dir: &std::path::Path) -> (RocksDbStore, PartitionStateMachine) {
    let store = RocksDbStore::open(&dir.join("store")).expect("open store");
    let snapshots = SnapshotDir::open(dir.join("snapshots")).expect("snapshot dir");
    let (actions, _) = tokio::sync::mpsc::unbounded_channel();
    let machine =
        PartitionStateMachine::open(store.clone(), PARTITION, range(), snapshots, actions)
            .expect("open machine");
    (store, machine)
}

/// Invocations with a large argument and a state entry each, keyed inside `keys`.
fn fill(store: &RocksDbStore, keys: std::ops::Range<u64>, argument_size: usize) {
    let mut tx = store.transaction(PartitionKey::new(keys.start));
    for key in keys {
        let id = InvocationId::new(PartitionKey::new(key), u128::from(key));
        let invoke = Record::Invoke(ServiceInvocation {
            invocation_id: id,
            target: InvocationTarget {
                service: "Greeter".into(),
                handler: "greet".into(),
                key: None,
                handler_type: HandlerType::Exclusive,
            },
            argument: Bytes::from(vec![(key % 251) as u8; argument_size]),
            headers: vec![],
            response_sink: None,
            created_at: MillisSinceEpoch::new(key),
            retention: Retention::default(),
            execution_time: None,
        });
        apply(&mut tx, &invoke, CTX).expect("apply");
        let entry = Record::Effect(InvokerEffect {
            invocation_id: id,
            kind: EffectKind::JournalEntry(StoredFrame {
                ty: 0x0400,
                payload: Bytes::from(vec![7; 64]),
            }),
            // Epoch 0: no leadership was announced in these stores.
            fence: Fence {
                leader_epoch: 0,
                attempt: 0,
                command_index: 1,
            },
        });
        apply(&mut tx, &entry, CTX).expect("apply");
        let object = ObjectId::new("Counter", format!("k{key}"));
        tx.put_state(
            &object,
            Bytes::from_static(b"count"),
            Bytes::from(key.to_string()),
        )
        .expect("state");
    }
    tx.commit().expect("commit");
}

fn rows_of_partition(memory: MemoryStore) -> MemoryStore {
    let inside = |key: PartitionKey| range().contains(&key);
    MemoryStore {
        statuses: memory
            .statuses
            .into_iter()
            .filter(|(id, _)| inside(id.partition_key()))
            .collect(),
        journals: memory
            .journals
            .into_iter()
            .filter(|((id, _), _)| inside(id.partition_key()))
            .collect(),
        state: memory
            .state
            .into_iter()
            .filter(|((object, _), _)| inside(object.partition_key()))
            .collect(),
        ..memory
    }
}

#[tokio::test]
async fn a_snapshot_larger_than_its_buffers_installs_into_an_empty_store_row_by_row() {
    let source_dir = tempfile::tempdir().expect("tempdir");
    let (source, mut machine) = open_machine(source_dir.path());
    // About 12 MB of arguments: more than the file buffer and the install batch.
    fill(&source, 1_000..1_400, 30_000);
    // Another partition's rows in the same database stay out of the snapshot.
    fill(&source, 5_000..5_010, 10);
    let snapshot: openraft::Snapshot<PartitionTypes> = machine
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("snapshot");
    // Rows written after the cut are not in it.
    fill(&source, 1_500..1_510, 10);
    let expected = {
        let mut memory = rows_of_partition(source.to_memory().expect("dump"));
        memory
            .statuses
            .retain(|id, _| id.partition_key().as_u64() < 1_400);
        memory
            .journals
            .retain(|(id, _), _| id.partition_key().as_u64() < 1_400);
        memory
            .state
            .retain(|(object, _), _| !object.key.starts_with("k15"));
        memory
    };
    assert_eq!(expected.statuses.len(), 400);

    let target_dir = tempfile::tempdir().expect("tempdir");
    let (target, mut receiver) = open_machine(target_dir.path());
    // Rows the snapshot replaces, and rows of another partition it must not touch.
    fill(&target, 1_900..1_905, 10);
    fill(&target, 7_000..7_003, 10);
    let others_before = target.read_status(InvocationId::new(PartitionKey::new(7_001), 7_001));
    let mut file = receiver.begin_receiving_snapshot().await.expect("receive");
    let mut sent = tokio::fs::File::open(source_dir.path().join("snapshots/current.snap"))
        .await
        .expect("open the sent file");
    tokio::io::copy(&mut sent, &mut *file).await.expect("copy");
    file.flush().await.expect("flush");
    receiver
        .install_snapshot(&snapshot.meta, file)
        .await
        .expect("install");

    assert_eq!(
        rows_of_partition(target.to_memory().expect("dump")),
        expected
    );
    assert_eq!(
        target
            .read_status(InvocationId::new(PartitionKey::new(7_001), 7_001))
            .expect("read")
            .is_some(),
        others_before.expect("read").is_some()
    );
    let current = receiver
        .get_current_snapshot()
        .await
        .expect("current")
        .expect("the installed snapshot is current");
    assert_eq!(current.meta, snapshot.meta);
    let (applied, _) = receiver.applied_state().await.expect("applied");
    assert_eq!(applied, snapshot.meta.last_log_id);

    // A crash in the middle of an install: the marker is there, rows are half replaced. The
    // next open finishes the install from the kept file.
    drop(receiver);
    std::fs::copy(
        target_dir.path().join("snapshots/current.snap"),
        target_dir.path().join("snapshots/installing.snap"),
    )
    .expect("copy");
    let mut marker_key = crate::raft::key_prefix(PARTITION);
    marker_key.extend_from_slice(KEY_INSTALLING);
    target
        .db()
        .put_cf(
            target.db().cf_handle(CF_RAFT).expect("cf"),
            marker_key,
            b"interrupted",
        )
        .expect("marker");
    fill(&target, 1_950..1_960, 10);
    target.close().expect("close");
    drop(target);
    let (reopened, _machine) = open_machine(target_dir.path());
    assert_eq!(
        rows_of_partition(reopened.to_memory().expect("dump")),
        expected
    );
}

#[tokio::test]
async fn a_snapshot_file_that_is_damaged_is_refused_and_changes_nothing() {
    let source_dir = tempfile::tempdir().expect("tempdir");
    let (source, mut machine) = open_machine(source_dir.path());
    fill(&source, 1_000..1_050, 100);
    let snapshot: openraft::Snapshot<PartitionTypes> = machine
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("snapshot");
    let bytes = std::fs::read(source_dir.path().join("snapshots/current.snap")).expect("read");

    let target_dir = tempfile::tempdir().expect("tempdir");
    let (target, mut receiver) = open_machine(target_dir.path());
    fill(&target, 1_900..1_905, 10);
    let before = target.to_memory().expect("dump");
    for damaged in [
        bytes[..bytes.len() / 2].to_vec(),
        [&bytes[..20], &[0xff; 16][..], &bytes[36..]].concat(),
        b"not a snapshot at all".to_vec(),
    ] {
        let mut file = receiver.begin_receiving_snapshot().await.expect("receive");
        file.write_all(&damaged).await.expect("write");
        let result = receiver.install_snapshot(&snapshot.meta, file).await;
        assert!(result.is_err(), "a damaged snapshot is refused");
        let (applied, _) = receiver.applied_state().await.expect("applied");
        assert_eq!(applied, None, "the applied position is unchanged");
        assert_eq!(target.to_memory().expect("dump"), before, "no row changed");
    }
    // The refused files left nothing that the next start would try to finish.
    drop(receiver);
    target.close().expect("close");
    drop(target);
    let (reopened, _machine) = open_machine(target_dir.path());
    assert_eq!(reopened.to_memory().expect("dump"), before);
}
