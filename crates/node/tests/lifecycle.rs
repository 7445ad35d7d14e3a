//! A node in-process, on real sockets and real RocksDB: it reports starting → ready → stopping
//! on every health endpoint, stops in order, and a restart finds its identity again.

use std::time::Duration;

use reprise_node::{BoundAddresses, Node, NodeError, NodeStatus};
use reprise_node_config::Configuration;
use tokio_util::sync::CancellationToken;

fn config(base: &std::path::Path) -> Configuration {
    let any_port = "127.0.0.1:0".parse().expect("valid address");
    let mut config = Configuration {
        node_name: "n1".into(),
        base_dir: base.to_owned(),
        bind_address: any_port,
        ..Configuration::default()
    };
    config.ingress.bind_address = any_port;
    config.admin.bind_address = any_port;
    config
}

async fn get(url: String) -> (u16, serde_json::Value) {
    let response = reqwest::get(&url).await.expect("request succeeds");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json body"))
}

async fn health_of(addresses: &BoundAddresses) -> Vec<(u16, serde_json::Value)> {
    let admin = addresses.admin.expect("admin role runs");
    let ingress = addresses.ingress.expect("ingress role runs");
    vec![
        get(format!("http://{}/health", addresses.node)).await,
        get(format!("http://{admin}/health")).await,
        get(format!("http://{ingress}/restate/health")).await,
    ]
}

#[tokio::test]
async fn starts_serves_health_stops_and_restarts_with_its_identity() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut generations = Vec::new();
    for _ in 0..2 {
        let node = Node::build(config(tmp.path())).expect("build");
        let addresses = node.addresses().clone();
        let health = node.health();
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(node.run(shutdown.clone()));

        tokio::time::timeout(Duration::from_secs(30), health.wait_for(NodeStatus::Ready))
            .await
            .expect("ready in time");
        let listening = std::fs::read(tmp.path().join("n1").join(BoundAddresses::FILE))
            .expect("addresses file while running");
        let listening: BoundAddresses = serde_json::from_slice(&listening).expect("valid json");
        assert_eq!(listening, addresses);
        let answers = health_of(&addresses).await;
        for (status, body) in &answers {
            assert_eq!(*status, 200, "{body}");
            assert_eq!(body["status"], "ready");
            assert_eq!(body["node_name"], "n1");
            assert_eq!(body["cluster_name"], "localcluster");
        }
        generations.push(
            answers[0].1["node_id"]
                .as_str()
                .expect("node id")
                .to_owned(),
        );

        shutdown.cancel();
        running
            .await
            .expect("task not panicked")
            .expect("orderly stop");
        assert!(
            !tmp.path().join("n1").join(BoundAddresses::FILE).exists(),
            "addresses file removed on stop"
        );
    }
    assert_eq!(generations, ["N1:1", "N1:2"]);
}

#[tokio::test]
async fn a_second_node_on_the_same_directory_is_refused_until_the_first_stops() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let first = Node::build(config(tmp.path())).expect("build");
    let err = Node::build(config(tmp.path()))
        .err()
        .expect("directory locked");
    assert!(matches!(err, NodeError::DataDir(_)), "{err}");
    assert!(err.to_string().contains("in use"), "{err}");
    drop(first);
    Node::build(config(tmp.path())).expect("lock released when the node is dropped");
}

#[tokio::test]
async fn a_port_in_use_names_the_address_and_the_key() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut config = config(tmp.path());
    config.admin.bind_address = taken.local_addr().expect("local addr");
    let err = Node::build(config).err().expect("port taken");
    let text = err.to_string();
    assert!(
        text.contains(&taken.local_addr().expect("addr").to_string()),
        "{text}"
    );
    assert!(text.contains("`admin.bind-address`"), "{text}");
}

#[tokio::test]
async fn a_damaged_identity_stops_the_start_with_an_error() {
    let tmp = tempfile::tempdir().expect("temp dir");
    // Provision once, then overwrite the identity record with garbage.
    {
        let store = reprise_node::LocalStore::open(&tmp.path().join("n1")).expect("open");
        store
            .put_all(&[("identity", &"not an identity"), ("nodes-config", &1u8)])
            .expect("write");
        store.close().expect("close");
    }
    let node = Node::build(config(tmp.path())).expect("build");
    let health = node.health();
    let err = node
        .run(CancellationToken::new())
        .await
        .expect_err("damaged data refused");
    assert!(err.to_string().contains("not readable"), "{err}");
    assert_eq!(
        health.status(),
        NodeStatus::Starting,
        "never reported ready"
    );
}
