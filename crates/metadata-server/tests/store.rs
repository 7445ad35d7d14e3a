//! The metadata store over real RocksDB in temp dirs: the client's compare-and-set semantics,
//! watches, and that acknowledged writes survive a restart.

use std::time::Duration;

use bytes::Bytes;
use reprise_metadata_server::{MetadataError, MetadataServer, MetadataServerOptions, Precondition};

fn options(dir: &std::path::Path) -> MetadataServerOptions {
    MetadataServerOptions {
        node_dir: dir.to_owned(),
        member_id: 1,
        address: "http://127.0.0.1:5122".into(),
        cluster_name: "test".into(),
        connections: reprise_net::Connections::new(
            reprise_net::NetIdentity::new("test"),
            reprise_net::ConnectionOptions::default(),
        ),
        peers: Vec::new(),
        slot: Default::default(),
        snapshot_after_bytes: MetadataServerOptions::SNAPSHOT_AFTER_BYTES,
    }
}

/// Waits (up to 20 s) until `path` exists, failing with `otherwise`.
async fn wait_for_file(path: &std::path::Path, otherwise: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        assert!(std::time::Instant::now() < deadline, "{otherwise}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn started(dir: &std::path::Path) -> MetadataServer {
    let server = MetadataServer::start(options(dir)).await.expect("start");
    server.provision_single_member().await.expect("provision");
    server
}

#[tokio::test]
async fn compare_and_set_on_versions() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let server = started(tmp.path()).await;
    let client = server.client();

    assert_eq!(client.get("schema").await.expect("get"), None);
    let v1 = client
        .put(
            "schema",
            Bytes::from_static(b"one"),
            Precondition::DoesNotExist,
        )
        .await
        .expect("first write");
    assert_eq!(v1, 1);

    let err = client
        .put(
            "schema",
            Bytes::from_static(b"again"),
            Precondition::DoesNotExist,
        )
        .await
        .expect_err("exists already");
    assert!(
        matches!(
            err,
            MetadataError::PreconditionFailed {
                current: Some(1),
                ..
            }
        ),
        "{err}"
    );
    let err = client
        .put(
            "schema",
            Bytes::from_static(b"stale"),
            Precondition::MatchesVersion(7),
        )
        .await
        .expect_err("wrong version");
    assert!(
        matches!(err, MetadataError::PreconditionFailed { .. }),
        "{err}"
    );

    let v2 = client
        .put(
            "schema",
            Bytes::from_static(b"two"),
            Precondition::MatchesVersion(1),
        )
        .await
        .expect("matching version");
    assert_eq!(v2, 2);
    let value = client.get("schema").await.expect("get").expect("present");
    assert_eq!((value.version, value.value.as_ref()), (2, b"two".as_ref()));

    client
        .put("other", Bytes::from_static(b"x"), Precondition::None)
        .await
        .expect("unconditional");
    client
        .delete("other", Precondition::MatchesVersion(1))
        .await
        .expect("delete");
    assert_eq!(client.get("other").await.expect("get"), None);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn watchers_see_new_versions() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let server = started(tmp.path()).await;
    let client = server.client();
    let mut watch = client.watch("nodes");
    assert_eq!(*watch.borrow(), None);

    let writer = client.clone();
    tokio::spawn(async move {
        writer
            .put("nodes", Bytes::from_static(b"n"), Precondition::None)
            .await
            .expect("write");
    });
    tokio::time::timeout(Duration::from_secs(10), watch.wait_for(|v| *v == Some(1)))
        .await
        .expect("notified in time")
        .expect("sender alive");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn acknowledged_writes_survive_restarts() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let server = started(tmp.path()).await;
    let client = server.client();
    // More writes than the snapshot threshold, so a restart may start from a snapshot and a
    // purged log as well as replay the log.
    for i in 0..1100u32 {
        client
            .put("counter", Bytes::from(i.to_string()), Precondition::None)
            .await
            .expect("write");
    }
    server.shutdown().await.expect("shutdown");

    for round in 0..2 {
        let server = started(tmp.path()).await;
        let client = server.client();
        let value = client.get("counter").await.expect("get").expect("present");
        assert_eq!(value.version, 1100 + round);
        client
            .put(
                "counter",
                Bytes::from_static(b"more"),
                Precondition::MatchesVersion(value.version),
            )
            .await
            .expect("write after restart");
        server.shutdown().await.expect("shutdown");
    }
}

#[tokio::test]
async fn a_damaged_store_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join(MetadataServer::DIR);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("CURRENT"), b"garbage\n").expect("write");
    let err = MetadataServer::start(options(tmp.path()))
        .await
        .err()
        .expect("damaged store refused");
    assert!(matches!(err, MetadataError::Open(_)), "{err}");
}

#[tokio::test]
async fn a_snapshot_is_kept_as_a_file_and_a_restart_after_the_purge_restores_every_value() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let snapshot = tmp
        .path()
        .join(MetadataServer::SNAPSHOT_DIR)
        .join("current.snap");
    {
        let server = started(tmp.path()).await;
        let client = server.client();
        // Past the snapshot interval (1 000 entries): a snapshot is cut and the log purged.
        for n in 0..1_100u32 {
            client
                .put(
                    &format!("key-{}", n % 50),
                    Bytes::from(n.to_be_bytes().to_vec()),
                    Precondition::None,
                )
                .await
                .expect("write");
        }
        wait_for_file(&snapshot, "no snapshot file after 1 100 writes").await;
        server.shutdown().await.expect("shutdown");
    }
    let server = started(tmp.path()).await;
    let client = server.client();
    for key in 0..50u32 {
        let value = client
            .get(&format!("key-{key}"))
            .await
            .expect("get")
            .expect("a value after the restart");
        // The last write of this key was n = 1 050 + key; it was the 22nd.
        assert_eq!(value.value.as_ref(), (1_050 + key).to_be_bytes());
        assert_eq!(value.version, 22);
    }
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_log_of_large_values_is_snapshotted_by_size_long_before_its_entry_count() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let snapshot = tmp
        .path()
        .join(MetadataServer::SNAPSHOT_DIR)
        .join("current.snap");
    {
        let mut options = options(tmp.path());
        options.snapshot_after_bytes = 256 * 1024;
        let server = MetadataServer::start(options).await.expect("start");
        server.provision_single_member().await.expect("provision");
        let client = server.client();
        // 24 entries of 16 KiB: far below the 1 000 entries of the count policy, over the
        // 256 KiB of the size one.
        for n in 0..24u8 {
            client
                .put(
                    &format!("large-{}", n % 4),
                    Bytes::from(vec![n; 16 * 1024]),
                    Precondition::None,
                )
                .await
                .expect("write");
        }
        wait_for_file(&snapshot, "no snapshot after 384 KiB of writes").await;
        server.shutdown().await.expect("shutdown");
    }
    let server = started(tmp.path()).await;
    let value = server
        .client()
        .get("large-3")
        .await
        .expect("get")
        .expect("a value after the restart");
    assert_eq!(value.value.as_ref(), vec![23u8; 16 * 1024].as_slice());
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_value_over_the_size_limit_is_refused_with_the_limit() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let server = started(tmp.path()).await;
    let client = server.client();
    let too_large = Bytes::from(vec![0u8; reprise_metadata_server::MAX_VALUE_SIZE + 1]);
    let err = client
        .put("big", too_large, Precondition::None)
        .await
        .expect_err("over the limit");
    assert!(
        matches!(&err, MetadataError::Refused(message) if message.contains("at most 16777216 bytes")),
        "{err}"
    );
    assert!(client.get("big").await.expect("get").is_none());
    server.shutdown().await.expect("shutdown");
}
