//! Three real nodes on one machine form a cluster: the first provisions it, the other two join
//! by name through its node port and become metadata members; `reprisectl` sees the same node
//! table from every node; restarts keep ids and raise generations; the metadata store keeps
//! taking writes when its leader is SIGKILLed, refuses them clearly and in bounded time without
//! a quorum, and lets exactly one of three concurrent compare-and-sets win; worker states
//! change only along the allowed transitions unless forced.
//!
//! The nodes listen on three loopback addresses of their own with the same port numbers (as
//! three machines would), distinct per test so tests can run at once; one test puts all three
//! on one address with distinct ports.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use reprise_e2e::{CtlOutput, NodeSpec, ServerProcess, TestServices, ctl, eventually};

const SERVICES_BIN: &str = env!("CARGO_BIN_EXE_reprise-test-services");
use serde_json::Value;

struct Cluster {
    _dir: tempfile::TempDir,
    specs: Vec<NodeSpec>,
    nodes: Vec<ServerProcess>,
}

/// Where the three nodes listen.
#[derive(Clone, Copy)]
enum Layout {
    /// Node `i` on `{prefix}.{i}`, every node with the same ports (as three machines would).
    Ips(&'static str),
    /// Every node on 127.0.0.1, node `i` on ports `base + 10 * i` and up (below the range the
    /// OS hands out for port 0, so other tests cannot take them).
    Ports(u16),
}

impl Layout {
    /// Node `i`'s node, ingress and admin addresses.
    fn addresses(self, i: u16) -> [String; 3] {
        match self {
            Layout::Ips(prefix) => [5122, 8080, 9070].map(|port| format!("{prefix}.{i}:{port}")),
            Layout::Ports(base) => [0, 1, 2].map(|k| format!("127.0.0.1:{}", base + 10 * i + k)),
        }
    }
}

impl Cluster {
    /// Starts node 1, then nodes 2 and 3 at once, joining through node 1.
    async fn start(layout: Layout) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let first = format!("http://{}", layout.addresses(1)[0]);
        let specs: Vec<NodeSpec> = (1..=3)
            .map(|i| {
                let [node, ingress, admin] = layout.addresses(i);
                let spec = NodeSpec::new(dir.path(), &format!("node-{i}"))
                    .env("REPRISE_BIND_ADDRESS", &node)
                    .env("REPRISE_INGRESS__BIND_ADDRESS", &ingress)
                    .env("REPRISE_ADMIN__BIND_ADDRESS", &admin)
                    .env("REPRISE_DEFAULT_NUM_PARTITIONS", "4");
                if i == 1 {
                    spec
                } else {
                    spec.env(
                        "REPRISE_METADATA_CLIENT__ADDRESSES",
                        &format!("[\"{first}\"]"),
                    )
                }
            })
            .collect();
        let mut first_node = specs[0].spawn()?;
        first_node.wait_ready().await?;
        let mut nodes = vec![first_node, specs[1].spawn()?, specs[2].spawn()?];
        for node in &mut nodes[1..] {
            node.wait_ready().await?;
        }
        Ok(Self {
            _dir: dir,
            specs,
            nodes,
        })
    }

    fn address(&self, index: usize) -> String {
        self.specs[index]
            .env_value("REPRISE_BIND_ADDRESS")
            .map_or_else(String::new, |a| format!("http://{a}"))
    }

    /// Stops every node with `signal`, then starts all three at once (a restarting member
    /// waits for the others to form a quorum again).
    async fn restart_all(&mut self, signal: Signal) -> anyhow::Result<()> {
        for node in &mut self.nodes {
            node.signal(signal)?;
            node.wait_exit(Duration::from_secs(30)).await?;
        }
        self.nodes = self
            .specs
            .iter()
            .map(NodeSpec::spawn)
            .collect::<anyhow::Result<_>>()?;
        for node in &mut self.nodes {
            node.wait_ready().await?;
        }
        Ok(())
    }
}

async fn nodes_list(address: &str) -> anyhow::Result<Vec<Value>> {
    let output = ctl(address, &["--json", "nodes", "list"]).await?;
    anyhow::ensure!(output.code == Some(0), "nodes list failed: {output:?}");
    Ok(output.json()?.as_array().cloned().unwrap_or_default())
}

/// The voting members `metadata-server list-servers --json` names.
fn voters(servers: &Value) -> Vec<&str> {
    servers["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter(|m| m["voter"] == true)
                .filter_map(|m| m["id"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// `reprisectl metadata put` of a small value under `key`, which must not exist yet.
async fn put_new(address: &str, dir: &std::path::Path, key: &str) -> anyhow::Result<CtlOutput> {
    let file = dir.join(format!("value-{key}"));
    std::fs::write(&file, b"v")?;
    ctl(
        address,
        &[
            "metadata",
            "put",
            "--key",
            key,
            "--version",
            "0",
            &file.to_string_lossy(),
        ],
    )
    .await
}

/// Starts `spec` and checks that the node refuses to start, saying `why`.
async fn refused_to_start(spec: &NodeSpec, why: &str) -> anyhow::Result<()> {
    let mut node = spec.spawn()?;
    let status = node.wait_exit(Duration::from_secs(60)).await?;
    anyhow::ensure!(!status.success(), "it started: {status}");
    let logs = node.logs();
    anyhow::ensure!(logs.contains(why), "it did not say {why:?}:\n{logs}");
    Ok(())
}

/// `(id, name, generation)` of every node, in id order.
fn identities(nodes: &[Value]) -> Vec<(String, String, Option<u64>)> {
    nodes
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap_or_default().to_owned(),
                n["name"].as_str().unwrap_or_default().to_owned(),
                n["generation"].as_u64(),
            )
        })
        .collect()
}

/// The index (0, 1, 2) of the process running node `id`: nodes 2 and 3 join at once, so
/// which of them gets which id is a race.
fn index_of(nodes: &[Value], id: &str) -> anyhow::Result<usize> {
    nodes
        .iter()
        .find(|n| n["id"] == id)
        .and_then(|n| n["name"].as_str())
        .and_then(|name| name.strip_prefix("node-"))
        .and_then(|i| i.parse::<usize>().ok())
        .map(|i| i - 1)
        .ok_or_else(|| anyhow::anyhow!("no node {id} in {nodes:?}"))
}

#[tokio::test]
async fn three_nodes_form_a_cluster_and_keep_their_ids_across_restarts() -> anyhow::Result<()> {
    form_and_restart(Layout::Ips("127.0.1")).await
}

#[tokio::test]
async fn three_nodes_on_one_ip_with_distinct_ports_do_the_same() -> anyhow::Result<()> {
    form_and_restart(Layout::Ports(21000)).await
}

async fn form_and_restart(layout: Layout) -> anyhow::Result<()> {
    let mut cluster = Cluster::start(layout).await?;
    let first = identities(&nodes_list(&cluster.address(0)).await?);
    let ids: Vec<&str> = first.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids, ["N1", "N2", "N3"], "{first:?}");
    assert_eq!(
        first[0].1, "node-1",
        "the provisioning node is N1: {first:?}"
    );
    let mut names: Vec<&str> = first.iter().map(|(_, name, _)| name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["node-1", "node-2", "node-3"], "{first:?}");
    assert!(first.iter().all(|(_, _, g)| *g == Some(1)), "{first:?}");
    for index in 0..3 {
        let nodes = nodes_list(&cluster.address(index)).await?;
        assert_eq!(identities(&nodes), first, "as node-{} sees it", index + 1);
        for node in &nodes {
            assert_eq!(node["alive"], true, "{node}");
            assert_eq!(node["metadata_server_state"], "member", "{node}");
            assert_eq!(node["worker_state"], "active", "{node}");
            // One copy of each partition, on the node that provisioned the cluster.
            let partitions = if node["id"] == "N1" {
                serde_json::json!(["P0", "P1", "P2", "P3"])
            } else {
                serde_json::json!([])
            };
            assert_eq!(node["partitions"], partitions, "{node}");
        }
    }
    let servers = ctl(
        &cluster.address(2),
        &["--json", "metadata-server", "list-servers"],
    )
    .await?
    .json()?;
    let voters = voters(&servers);
    assert_eq!(voters, ["N1", "N2", "N3"], "{servers}");

    cluster.restart_all(Signal::SIGTERM).await?;
    let restarted: Vec<(String, String, Option<u64>)> = first
        .iter()
        .map(|(id, name, _)| (id.clone(), name.clone(), Some(2)))
        .collect();
    for index in 0..3 {
        let nodes = nodes_list(&cluster.address(index)).await?;
        assert_eq!(
            identities(&nodes),
            restarted,
            "after the restart, as node-{} sees it",
            index + 1
        );
    }
    // The human form names every node too.
    let table = ctl(&cluster.address(1), &["status"]).await?;
    assert_eq!(table.code, Some(0), "{table:?}");
    for name in ["node-1", "node-2", "node-3", "metadata leader: N"] {
        assert!(
            table.stdout.contains(name),
            "{name} missing from {}",
            table.stdout
        );
    }
    Ok(())
}

#[tokio::test]
async fn metadata_writes_outlive_the_leader_and_fail_clearly_without_a_quorum() -> anyhow::Result<()>
{
    let mut cluster = Cluster::start(Layout::Ips("127.0.2")).await?;
    let dir = cluster._dir.path().to_owned();

    // Three compare-and-sets of one version at once, one through each node: one wins.
    let puts = (0..3).map(|i| {
        let address = cluster.address(i);
        let dir = dir.clone();
        async move { put_new(&address, &dir, "cas").await }
    });
    let outcomes = futures::future::try_join_all(puts).await?;
    let codes: Vec<Option<i32>> = outcomes.iter().map(|o| o.code).collect();
    assert_eq!(
        codes.iter().filter(|c| **c == Some(0)).count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        codes.iter().filter(|c| **c == Some(4)).count(),
        2,
        "the losers are refused: {outcomes:?}"
    );

    // SIGKILL the leader: the other two elect a new one and take writes again.
    let servers = ctl(
        &cluster.address(0),
        &["--json", "metadata-server", "list-servers"],
    )
    .await?
    .json()?;
    let dead = servers["leader"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no leader in {servers}"))?
        .to_owned();
    let leader = index_of(&nodes_list(&cluster.address(0)).await?, &dead)?;
    cluster.nodes[leader].signal(Signal::SIGKILL)?;
    cluster.nodes[leader]
        .wait_exit(Duration::from_secs(10))
        .await?;
    let killed = Instant::now();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let through = cluster.address(survivors[0]);
    let started = Instant::now();
    let put = put_new(&through, &dir, "after").await?;
    assert_eq!(put.code, Some(0), "{put:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the write took {:?}",
        started.elapsed()
    );
    let got = ctl(
        &cluster.address(survivors[1]),
        &["--json", "metadata", "get", "--key", "after"],
    )
    .await?
    .json()?;
    assert_eq!(got["version"], 1, "{got}");

    // The survivors' heartbeats notice the dead node within a few seconds.
    eventually(
        "the survivors notice the dead node",
        Duration::from_secs(15),
        || async {
            let Ok(nodes) = nodes_list(&through).await else {
                return false;
            };
            nodes.iter().filter(|n| n["alive"] == true).all(|n| {
                n["sees"].as_array().is_some_and(|sees| {
                    sees.len() == 2 && !sees.contains(&Value::from(dead.clone()))
                })
            })
        },
    )
    .await?;
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(8), "noticed after {took:?}");
    println!("the dead node was noticed {took:?} after it was killed");

    // With two of three down, writes fail as unavailable, in bounded time.
    cluster.nodes[survivors[1]].signal(Signal::SIGKILL)?;
    cluster.nodes[survivors[1]]
        .wait_exit(Duration::from_secs(10))
        .await?;
    let started = Instant::now();
    let put = put_new(&through, &dir, "lost").await?;
    assert_eq!(put.code, Some(3), "{put:?}");
    assert!(put.stderr.contains("unavailable"), "{put:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "refusing took {:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn worker_states_follow_their_transitions_unless_forced() -> anyhow::Result<()> {
    let cluster = Cluster::start(Layout::Ips("127.0.3")).await?;
    let address = cluster.address(0);
    let state_of = |nodes: &[Value], id: &str| {
        nodes
            .iter()
            .find(|n| n["id"] == id)
            .map(|n| n["worker_state"].clone())
    };
    let set = |nodes: &'static str, state: &'static str, force: bool| {
        let address = address.clone();
        async move {
            let mut args = vec![
                "nodes",
                "set-worker-state",
                "--nodes",
                nodes,
                "--worker-state",
                state,
            ];
            if force {
                args.push("--force");
            }
            ctl(&address, &args).await
        }
    };
    let drained = set("N2,N3", "draining", false).await?;
    assert_eq!(drained.code, Some(0), "{drained:?}");
    // Neither holds a partition (N1 runs them all): each disables itself.
    eventually("N2 and N3 disabled", Duration::from_secs(20), || async {
        nodes_list(&address).await.is_ok_and(|nodes| {
            state_of(&nodes, "N2") == Some(Value::from("disabled"))
                && state_of(&nodes, "N3") == Some(Value::from("disabled"))
        })
    })
    .await?;

    let refused = set("N2", "draining", false).await?;
    assert_eq!(refused.code, Some(4), "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("cannot change from disabled to draining")
            && refused.stderr.contains("`active`"),
        "the refusal lists the allowed states: {refused:?}"
    );
    let forced = set("N2", "provisioning", true).await?;
    assert_eq!(forced.code, Some(0), "{forced:?}");
    let back = set("N3", "active", false).await?;
    assert_eq!(back.code, Some(0), "{back:?}");
    // N1 runs the partitions: draining, it stays draining until they move (next issue).
    let first = set("N1", "draining", false).await?;
    assert_eq!(first.code, Some(0), "{first:?}");
    let nodes = nodes_list(&address).await?;
    assert_eq!(state_of(&nodes, "N2"), Some(Value::from("provisioning")));
    assert_eq!(state_of(&nodes, "N3"), Some(Value::from("active")));
    assert_eq!(state_of(&nodes, "N1"), Some(Value::from("draining")));

    let usage = set("N9x", "active", false).await?;
    assert_eq!(usage.code, Some(2), "{usage:?}");
    let unknown = set("N9", "active", false).await?;
    assert_eq!(unknown.code, Some(4), "{unknown:?}");
    Ok(())
}

#[tokio::test]
async fn a_new_node_on_a_removed_nodes_address_refuses_its_traffic_and_the_cluster_converges()
-> anyhow::Result<()> {
    let layout = Layout::Ips("127.0.4");
    let mut cluster = Cluster::start(layout).await?;
    let entry = cluster.address(0);
    let victim = index_of(&nodes_list(&entry).await?, "N3")?;
    cluster.nodes[victim].signal(Signal::SIGKILL)?;
    cluster.nodes[victim]
        .wait_exit(Duration::from_secs(10))
        .await?;

    // A new node, under another name, on the address N3 had.
    let [node, ingress, admin] = layout.addresses(u16::try_from(victim + 1)?);
    let newcomer = NodeSpec::new(cluster._dir.path(), "node-4")
        .env("REPRISE_BIND_ADDRESS", &node)
        .env("REPRISE_INGRESS__BIND_ADDRESS", &ingress)
        .env("REPRISE_ADMIN__BIND_ADDRESS", &admin)
        .env(
            "REPRISE_METADATA_CLIENT__ADDRESSES",
            &format!("[\"{entry}\"]"),
        )
        .env("REPRISE_METADATA_SERVER__AUTO_JOIN", "false");
    let mut process = newcomer.spawn()?;
    process.wait_ready().await?;
    // The others still think N3 lives there: the newcomer refuses what they send N3, with the
    // typed error, and carries on.
    eventually(
        "the newcomer refuses N3's traffic",
        Duration::from_secs(15),
        || {
            let logs = process.logs();
            async move { logs.contains("misaddressed: the message is for N3, this is N4") }
        },
    )
    .await?;

    for args in [
        &["metadata-server", "remove-node", "--node", "N3"][..],
        &[
            "nodes",
            "set-worker-state",
            "--nodes",
            "N3",
            "--worker-state",
            "disabled",
            "--force",
        ],
        &["nodes", "remove", "--nodes", "N3"],
    ] {
        let done = ctl(&entry, args).await?;
        assert_eq!(done.code, Some(0), "{args:?}: {done:?}");
    }
    eventually("the cluster converges", Duration::from_secs(20), || async {
        let Ok(nodes) = nodes_list(&entry).await else {
            return false;
        };
        let ids: Vec<&str> = nodes.iter().filter_map(|n| n["id"].as_str()).collect();
        ids == ["N1", "N2", "N4"]
            && nodes.iter().all(|n| {
                n["alive"] == true && n["sees"].as_array().is_some_and(|sees| sees.len() == 3)
            })
    })
    .await?;
    // A removed node stays removed.
    let again = ctl(&entry, &["nodes", "remove", "--nodes", "N3"]).await?;
    assert_eq!(again.code, Some(4), "{again:?}");
    // The newcomer did not join the metadata group by itself (`auto-join = false`); the
    // operator adds it.
    let added = ctl(&entry, &["metadata-server", "add-node", "--node", "N4"]).await?;
    assert_eq!(added.code, Some(0), "{added:?}");
    let servers = ctl(&entry, &["--json", "metadata-server", "list-servers"])
        .await?
        .json()?;
    let voters = voters(&servers);
    assert_eq!(voters, ["N1", "N2", "N4"], "{servers}");
    cluster.nodes.push(process);
    for node in &cluster.nodes {
        assert!(!node.logs().contains("panicked"), "{}", node.logs());
    }
    Ok(())
}

#[tokio::test]
async fn a_node_without_auto_provision_waits_until_reprisectl_provisions_it() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let layout = Layout::Ips("127.0.5");
    let spec = |i: u16| {
        let [node, ingress, admin] = layout.addresses(i);
        NodeSpec::new(dir.path(), &format!("node-{i}"))
            .env("REPRISE_BIND_ADDRESS", &node)
            .env("REPRISE_INGRESS__BIND_ADDRESS", &ingress)
            .env("REPRISE_ADMIN__BIND_ADDRESS", &admin)
            .env("REPRISE_AUTO_PROVISION", "false")
    };
    let address = format!("http://{}", layout.addresses(1)[0]);
    let mut node = spec(1).spawn()?;
    node.wait_for_log("waiting to be provisioned", Duration::from_secs(30))
        .await?;
    // Not ready while it waits, and nothing to list yet.
    let health = reqwest::get(format!("{address}/health")).await?;
    assert_eq!(health.status().as_u16(), 503);
    let listed = ctl(&address, &["nodes", "list"]).await?;
    assert_ne!(listed.code, Some(0), "{listed:?}");

    let refused = ctl(&address, &["provision", "--replication", "2"]).await?;
    assert_eq!(refused.code, Some(4), "{refused:?}");
    assert!(refused.stderr.contains("not replicated"), "{refused:?}");
    let provisioned = ctl(&address, &["--json", "provision", "--num-partitions", "3"]).await?;
    assert_eq!(provisioned.code, Some(0), "{provisioned:?}");
    assert_eq!(provisioned.json()?["node"], "N1:1", "{provisioned:?}");
    node.wait_ready().await?;
    let again = ctl(&address, &["provision"]).await?;
    assert_eq!(
        again.code,
        Some(4),
        "a cluster is provisioned once: {again:?}"
    );
    assert!(again.stderr.contains("not waiting"), "{again:?}");
    let nodes = nodes_list(&address).await?;
    assert_eq!(
        identities(&nodes),
        [("N1".into(), "node-1".into(), Some(1))]
    );

    let config = ctl(&address, &["config", "get"]).await?;
    assert_eq!(config.code, Some(0), "{config:?}");
    assert!(
        config.stdout.contains("auto-provision = false"),
        "{config:?}"
    );

    // A node that waits stops at once on SIGTERM, with nothing to close.
    let mut waiting = spec(2).spawn()?;
    waiting
        .wait_for_log("waiting to be provisioned", Duration::from_secs(30))
        .await?;
    waiting.signal(Signal::SIGTERM)?;
    let status = waiting.wait_exit(Duration::from_secs(10)).await?;
    assert!(status.success(), "{status}");
    Ok(())
}

#[tokio::test]
async fn a_member_that_comes_back_at_another_address_keeps_its_vote() -> anyhow::Result<()> {
    // Ports the OS picks: every start of a node gets new ones.
    let dir = tempfile::tempdir()?;
    let mut first = NodeSpec::new(dir.path(), "node-1")
        .env("REPRISE_DEFAULT_NUM_PARTITIONS", "2")
        .spawn()?;
    let entry = format!("http://{}", first.wait_ready().await?.node);
    let joining = |name: &str| {
        NodeSpec::new(dir.path(), name).env(
            "REPRISE_METADATA_CLIENT__ADDRESSES",
            &format!("[\"{entry}\"]"),
        )
    };
    let mut second = joining("node-2").spawn()?;
    second.wait_ready().await?;
    let third_spec = joining("node-3");
    let mut third = third_spec.spawn()?;
    let before = third.wait_ready().await?.node;

    third.signal(Signal::SIGTERM)?;
    third.wait_exit(Duration::from_secs(30)).await?;
    let mut third = third_spec.spawn()?;
    let after = third.wait_ready().await?.node;
    assert_ne!(before, after, "the restart got new ports");

    // Without the second node, the first and the third are the majority: the third must
    // be reached at its new address.
    second.signal(Signal::SIGKILL)?;
    second.wait_exit(Duration::from_secs(10)).await?;
    let put = put_new(&entry, dir.path(), "moved").await?;
    assert_eq!(put.code, Some(0), "{put:?}");
    let servers = ctl(&entry, &["--json", "metadata-server", "list-servers"])
        .await?
        .json()?;
    let listed = servers["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["address"] == format!("http://{after}")))
        .is_some();
    assert!(listed, "the group lists the new address: {servers}");
    drop(first);
    Ok(())
}

#[tokio::test]
async fn a_node_refuses_another_cluster_of_the_same_name() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut a = NodeSpec::new(&dir.path().join("a"), "first").spawn()?;
    let a_address = format!("http://{}", a.wait_ready().await?.node);
    let mut b = NodeSpec::new(&dir.path().join("b"), "first").spawn()?;
    let b_address = format!("http://{}", b.wait_ready().await?.node);
    // A worker without a metadata member of its own reaches the store through its addresses.
    let worker = |through: &str| {
        NodeSpec::new(&dir.path().join("a"), "worker")
            .env("REPRISE_ROLES", "worker")
            .env(
                "REPRISE_METADATA_CLIENT__ADDRESSES",
                &format!("[\"{through}\"]"),
            )
    };
    let mut joined = worker(&a_address).spawn()?;
    joined.wait_ready().await?;
    joined.signal(Signal::SIGTERM)?;
    joined.wait_exit(Duration::from_secs(30)).await?;

    // Both clusters are `localcluster`; the fingerprint tells them apart.
    refused_to_start(&worker(&b_address), "belongs to another cluster").await?;
    let nodes = nodes_list(&b_address).await?;
    assert_eq!(
        identities(&nodes),
        [("N1".into(), "first".into(), Some(1))],
        "nothing of the astray node reached the other cluster"
    );
    Ok(())
}

/// Protobuf by hand, for a node table an operator writes with `metadata put`.
mod wire {
    pub fn varint(mut value: u64, out: &mut Vec<u8>) {
        while value >= 0x80 {
            out.push((value as u8) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    pub fn number(field: u64, value: u64, out: &mut Vec<u8>) {
        varint(field << 3, out);
        varint(value, out);
    }

    pub fn bytes(field: u64, value: &[u8], out: &mut Vec<u8>) {
        varint(field << 3 | 2, out);
        varint(value.len() as u64, out);
        out.extend_from_slice(value);
    }

    /// A `NodeEntry` of `proto/cluster.proto`.
    pub fn node(
        id: u64,
        name: &str,
        generation: u64,
        address: &str,
        roles: &[&str],
        worker: &str,
        metadata: &str,
    ) -> Vec<u8> {
        let mut node = Vec::new();
        bytes(1, name.as_bytes(), &mut node);
        if generation != 0 {
            number(2, generation, &mut node);
        }
        bytes(3, address.as_bytes(), &mut node);
        for role in roles {
            bytes(4, role.as_bytes(), &mut node);
        }
        bytes(5, worker.as_bytes(), &mut node);
        bytes(6, metadata.as_bytes(), &mut node);
        let mut entry = Vec::new();
        number(1, id, &mut entry);
        bytes(2, &node, &mut entry);
        entry
    }
}

#[tokio::test]
async fn a_node_that_has_not_started_yet_is_listed_as_joining() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let spec = NodeSpec::new(dir.path(), "n1");
    let mut node = spec.spawn()?;
    let address = format!("http://{}", node.wait_ready().await?.node);
    let current = ctl(
        &address,
        &["--json", "metadata", "get", "--key", "nodes-config"],
    )
    .await?
    .json()?;
    let version = current["version"].as_u64().unwrap_or_default().to_string();

    // N1 as it is, and N2: added, never started (no generation).
    let all = ["metadata-server", "worker", "ingress", "admin"];
    let mut table = Vec::new();
    wire::number(1, 50, &mut table);
    wire::bytes(2, b"localcluster", &mut table);
    wire::bytes(
        3,
        &wire::node(1, "n1", 1, &address, &all, "active", "member"),
        &mut table,
    );
    wire::bytes(
        3,
        &wire::node(
            2,
            "pending",
            0,
            "http://127.0.0.1:9",
            &["worker"],
            "provisioning",
            "standby",
        ),
        &mut table,
    );
    let file = dir.path().join("nodes-config");
    std::fs::write(&file, &table)?;
    let put = ctl(
        &address,
        &[
            "metadata",
            "put",
            "--key",
            "nodes-config",
            "--version",
            &version,
            &file.to_string_lossy(),
        ],
    )
    .await?;
    assert_eq!(put.code, Some(0), "{put:?}");

    let nodes = nodes_list(&address).await?;
    assert_eq!(
        identities(&nodes),
        [
            ("N1".into(), "n1".into(), Some(1)),
            ("N2".into(), "pending".into(), None)
        ]
    );
    assert_eq!(nodes[1]["alive"], false, "{nodes:?}");
    let status = ctl(&address, &["status"]).await?;
    assert_eq!(status.code, Some(0), "{status:?}");
    let pending = status
        .stdout
        .lines()
        .find(|line| line.contains("pending"))
        .unwrap_or_default();
    assert!(pending.contains("joining"), "{}", status.stdout);

    // The node carries on, and keeps to the table across a restart.
    node.signal(Signal::SIGTERM)?;
    node.wait_exit(Duration::from_secs(30)).await?;
    let mut node = spec.spawn()?;
    let address = format!("http://{}", node.wait_ready().await?.node);
    let nodes = nodes_list(&address).await?;
    assert_eq!(
        identities(&nodes),
        [
            ("N1".into(), "n1".into(), Some(2)),
            ("N2".into(), "pending".into(), None)
        ]
    );
    assert!(!node.logs().contains("panicked"), "{}", node.logs());
    // Adding the node that never started to the metadata group gives up, and leaves nothing.
    let added = ctl(&address, &["metadata-server", "add-node", "--node", "N2"]).await?;
    assert_eq!(added.code, Some(3), "{added:?}");
    assert!(added.stderr.contains("did not catch up"), "{added:?}");
    eventually(
        "the learner is taken out",
        Duration::from_secs(15),
        || async {
            ctl(&address, &["--json", "metadata-server", "list-servers"])
                .await
                .and_then(|listed| listed.json())
                .is_ok_and(|servers| servers["members"].as_array().map(Vec::len) == Some(1))
        },
    )
    .await?;
    // The group still has its quorum: it takes writes.
    let put = put_new(&address, dir.path(), "after").await?;
    assert_eq!(put.code, Some(0), "{put:?}");
    // The last member of the metadata group cannot leave it.
    let last = ctl(
        &address,
        &["metadata-server", "remove-node", "--node", "N1"],
    )
    .await?;
    assert_eq!(last.code, Some(4), "{last:?}");
    assert!(last.stderr.contains("last member"), "{last:?}");
    Ok(())
}

#[tokio::test]
async fn force_node_id_picks_the_id_and_refuses_a_taken_one() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let first_spec = NodeSpec::new(dir.path(), "first");
    let mut first = first_spec.spawn()?;
    let entry = format!("http://{}", first.wait_ready().await?.node);
    let joining = |name: &str, id: &str| {
        NodeSpec::new(dir.path(), name)
            .env("REPRISE_ROLES", "worker")
            .env("REPRISE_FORCE_NODE_ID", id)
            .env(
                "REPRISE_METADATA_CLIENT__ADDRESSES",
                &format!("[\"{entry}\"]"),
            )
    };
    let mut seventh = joining("seventh", "7").spawn()?;
    seventh.wait_ready().await?;
    let nodes = nodes_list(&entry).await?;
    assert_eq!(
        identities(&nodes),
        [
            ("N1".into(), "first".into(), Some(1)),
            ("N7".into(), "seventh".into(), Some(1))
        ]
    );

    refused_to_start(
        &joining("clash", "7"),
        "node id N7 is taken by node `seventh`",
    )
    .await?;

    // Data of N1 under another forced id is refused before anything starts.
    first.signal(Signal::SIGTERM)?;
    first.wait_exit(Duration::from_secs(30)).await?;
    refused_to_start(
        &first_spec.env("REPRISE_FORCE_NODE_ID", "2"),
        "belongs to node N1, but `force-node-id` asks for N2",
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_second_process_under_a_running_nodes_name_is_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut first = NodeSpec::new(dir.path(), "first").spawn()?;
    let entry = format!("http://{}", first.wait_ready().await?.node);
    let twin = |base: &str| {
        NodeSpec::new(&dir.path().join(base), "twin")
            .env("REPRISE_ROLES", "worker")
            .env(
                "REPRISE_METADATA_CLIENT__ADDRESSES",
                &format!("[\"{entry}\"]"),
            )
    };
    let mut running = twin("here").spawn()?;
    running.wait_ready().await?;

    refused_to_start(&twin("elsewhere"), "a node named `twin` is running as N2:1").await?;

    // Once it is gone, the name can start elsewhere: the same node, one generation on.
    running.signal(Signal::SIGKILL)?;
    running.wait_exit(Duration::from_secs(10)).await?;
    let mut moved = twin("elsewhere").spawn()?;
    moved.wait_ready().await?;
    let nodes = nodes_list(&entry).await?;
    assert_eq!(
        identities(&nodes),
        [
            ("N1".into(), "first".into(), Some(1)),
            ("N2".into(), "twin".into(), Some(2))
        ]
    );
    Ok(())
}

#[tokio::test]
async fn a_node_without_a_metadata_member_follows_the_schema_through_a_watch() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let mut first = NodeSpec::new(dir.path(), "first").spawn()?;
    let addresses = first.wait_ready().await?.clone();
    let entry = format!("http://{}", addresses.node);
    let admin = format!("http://{}", addresses.admin.expect("the admin role runs"));
    let mut worker = NodeSpec::new(dir.path(), "worker")
        .env("REPRISE_ROLES", "worker,ingress")
        .env(
            "REPRISE_METADATA_CLIENT__ADDRESSES",
            &format!("[\"{entry}\"]"),
        )
        .spawn()?;
    let ingress = format!(
        "http://{}",
        worker
            .wait_ready()
            .await?
            .ingress
            .expect("the ingress role runs")
    );
    let services = TestServices::spawn(SERVICES_BIN, "default").await?;
    let client = reqwest::Client::new();
    let registered: Value = client
        .post(format!("{admin}/deployments"))
        .json(&serde_json::json!({"uri": services.uri()}))
        .send()
        .await?
        .json()
        .await?;
    let deployment = registered["id"].as_str().unwrap_or_default().to_owned();
    let call = || async {
        client
            .post(format!("{ingress}/Counter/k/add"))
            .json(&1)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    // An admin API on a node with no metadata member and no worker reads the same schema.
    let mut admin_only = NodeSpec::new(dir.path(), "admin-only")
        .env("REPRISE_ROLES", "admin")
        .env(
            "REPRISE_METADATA_CLIENT__ADDRESSES",
            &format!("[\"{entry}\"]"),
        )
        .spawn()?;
    let other_admin = format!(
        "http://{}",
        admin_only
            .wait_ready()
            .await?
            .admin
            .expect("the admin role runs")
    );
    let listed: Value = client
        .get(format!("{other_admin}/services/Counter"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(listed["name"], "Counter", "{listed}");
    // The worker knows the service (its partition runs on the first node: 503, not 404).
    eventually(
        "the worker sees the registration",
        Duration::from_secs(15),
        || async { call().await == 503 },
    )
    .await?;
    let removed = client
        .delete(format!("{admin}/deployments/{deployment}?force=true"))
        .send()
        .await?;
    assert_eq!(removed.status().as_u16(), 202);
    // Only the watch tells its cached schema that the service is gone.
    eventually(
        "the worker sees the removal",
        Duration::from_secs(15),
        || async { call().await == 404 },
    )
    .await?;
    drop(first);
    Ok(())
}
