//! `reprisectl`: the operator's command line of a Reprise cluster. It is a thin client of the
//! node channel: any node's node port is an entry point (`--address`, repeatable; env
//! `REPRISECTL_ADDRESS`; default `http://localhost:5122`), metadata calls follow the leader,
//! and a node that does not answer is reported in the output, not fatal.
//!
//! Exit codes: 0 done, 2 a usage error (clap's), 3 the cluster could not be reached, 4 the
//! cluster refused the operation.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use reprise_metadata_server::{MetadataClient, MetadataError, Precondition};
use reprise_net::proto::{ConfigRequest, NodeRef, ProvisionRequest, StatusResponse};
use reprise_net::{ConnectionOptions, Connections, NetError, NetIdentity};
use reprise_node::ClusterError;
use reprise_node::cluster;
use reprise_node_config::{NodeConfig, NodesConfiguration, WorkerState};
use reprise_types::PlainNodeId;
use serde_json::{Value, json};

const UNREACHABLE: u8 = 3;
const REFUSED: u8 = 4;
/// How long a node may take to answer its status before it is reported as not alive.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Parser)]
#[command(name = "reprisectl", version, about = "Operate a Reprise cluster")]
struct Cli {
    /// The node port of a node of the cluster (repeatable).
    #[arg(
        long = "address",
        global = true,
        env = "REPRISECTL_ADDRESS",
        value_delimiter = ',',
        default_value = "http://localhost:5122"
    )]
    addresses: Vec<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Provisions a new cluster through a node started with `auto-provision = false`.
    Provision {
        /// Partitions of the new cluster (default: the node's `default-num-partitions`).
        #[arg(long)]
        num_partitions: Option<u32>,
        /// Copies of each partition (default: the node's `default-replication`).
        #[arg(long)]
        replication: Option<u32>,
    },
    /// The cluster's nodes and metadata group at a glance.
    Status,
    /// A node's effective configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// The cluster's nodes.
    Nodes {
        #[command(subcommand)]
        command: NodesCommand,
    },
    /// Raw values of the metadata store.
    Metadata {
        #[command(subcommand)]
        command: MetadataCommand,
    },
    /// The members of the metadata group.
    MetadataServer {
        #[command(subcommand)]
        command: MetadataServerCommand,
    },
}

#[derive(Subcommand)]
enum NodesCommand {
    /// Every node of the node table, with whether it answers.
    List,
    /// Changes the worker state of nodes (provisioning, active, draining, disabled).
    SetWorkerState {
        /// Node ids, e.g. `N2` or `N2,N3`.
        #[arg(long, value_delimiter = ',', required = true)]
        nodes: Vec<String>,
        #[arg(long)]
        worker_state: String,
        /// Allow a transition the state machine does not.
        #[arg(long)]
        force: bool,
    },
    /// Removes nodes from the cluster for good: their ids are never used again. A node must
    /// hold no work (worker `disabled` or still `provisioning`) and be no metadata member.
    Remove {
        /// Node ids, e.g. `N3`.
        #[arg(long, value_delimiter = ',', required = true)]
        nodes: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// The configuration of the node at the first `--address`, as `--dump-config` prints it.
    Get,
}

#[derive(Subcommand)]
enum MetadataCommand {
    /// A key's value and version.
    Get {
        #[arg(long)]
        key: String,
    },
    /// Writes a key from a file if its version is `--version` (0: the key must not exist).
    Put {
        #[arg(long)]
        key: String,
        #[arg(long)]
        version: u64,
        file: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum MetadataServerCommand {
    /// The group's members and its leader.
    ListServers,
    /// Makes a node a member of the group.
    AddNode {
        #[arg(long)]
        node: String,
    },
    /// Removes a node from the group; the last member cannot be removed.
    RemoveNode {
        #[arg(long)]
        node: String,
    },
}

/// A failure, with the exit code it maps to.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(err: E) -> Self {
        let error = err.into();
        let code = match classify(&error) {
            Some(code) => code,
            None => REFUSED,
        };
        Failure { code, error }
    }
}

fn classify(error: &anyhow::Error) -> Option<u8> {
    let metadata = error.downcast_ref::<MetadataError>().or_else(|| {
        match error.downcast_ref::<ClusterError>() {
            Some(ClusterError::Metadata(err)) => Some(err),
            _ => None,
        }
    })?;
    Some(match metadata {
        MetadataError::Unavailable(_) => UNREACHABLE,
        _ => REFUSED,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { code, error }) => {
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    }
}

struct Ctl {
    connections: Connections,
    metadata: MetadataClient,
    json: bool,
}

async fn run(cli: Cli) -> Result<(), Failure> {
    // A tool, not a node: it names no cluster and no sender, and addresses whoever answers.
    let connections = Connections::new(
        NetIdentity::new(""),
        ConnectionOptions {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(15),
        },
    );
    let ctl = Ctl {
        metadata: MetadataClient::remote(connections.clone(), cli.addresses.clone()),
        connections,
        json: cli.json,
    };
    let first = cli.addresses.first().cloned().unwrap_or_default();
    match cli.command {
        Command::Provision {
            num_partitions,
            replication,
        } => {
            ctl.provision(
                &first,
                num_partitions.unwrap_or(0),
                replication.unwrap_or(0),
            )
            .await
        }
        Command::Config {
            command: ConfigCommand::Get,
        } => ctl.config_get(&first).await,
        Command::Status => ctl.status().await,
        Command::Nodes {
            command: NodesCommand::List,
        } => ctl.nodes_list().await,
        Command::Nodes {
            command:
                NodesCommand::SetWorkerState {
                    nodes,
                    worker_state,
                    force,
                },
        } => ctl.set_worker_state(&nodes, &worker_state, force).await,
        Command::Nodes {
            command: NodesCommand::Remove { nodes },
        } => ctl.remove_nodes(&nodes).await,
        Command::Metadata {
            command: MetadataCommand::Get { key },
        } => ctl.metadata_get(&key).await,
        Command::Metadata {
            command: MetadataCommand::Put { key, version, file },
        } => ctl.metadata_put(&key, version, &file).await,
        Command::MetadataServer { command } => match command {
            MetadataServerCommand::ListServers => ctl.list_servers().await,
            MetadataServerCommand::AddNode { node } => ctl.add_server(&node).await,
            MetadataServerCommand::RemoveNode { node } => ctl.remove_server(&node).await,
        },
    }
}

fn parse_node(text: &str) -> Result<PlainNodeId, Failure> {
    let digits = text.trim().trim_start_matches(['N', 'n']);
    digits
        .parse::<u32>()
        .ok()
        .and_then(PlainNodeId::new)
        .ok_or_else(|| Failure {
            code: 2,
            error: anyhow::anyhow!("`{text}` is not a node id; use e.g. N2"),
        })
}

impl Ctl {
    async fn nodes(&self) -> Result<NodesConfiguration, Failure> {
        Ok(cluster::load(&self.metadata)
            .await?
            .ok_or(ClusterError::NotProvisioned)?
            .0)
    }

    /// The node's status, when it answers in time and as itself.
    async fn status_of(&self, node: &NodeConfig) -> Option<StatusResponse> {
        reprise_node::status_of(
            &self.connections,
            &node.address,
            node.id().as_u32(),
            STATUS_TIMEOUT,
        )
        .await
    }

    async fn node_rows(&self, nodes: &NodesConfiguration) -> Vec<Value> {
        let mut rows = Vec::new();
        for node in nodes.nodes() {
            let status = self.status_of(node).await;
            rows.push(json!({
                "id": node.id().to_string(),
                "generation": node.current_generation().map(|g| g.generation()),
                "name": node.name,
                "address": node.address,
                "roles": node.roles.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                "worker_state": node.worker_state().to_string(),
                "metadata_server_state": node.metadata_server_state().to_string(),
                "alive": status.is_some(),
                "partitions": status.as_ref().map(|s| {
                    s.partitions.iter().map(|p| format!("P{p}")).collect::<Vec<_>>()
                }),
                // Whom the node itself has heard from lately (its heartbeats).
                "sees": status.map(|s| {
                    s.alive.iter().map(|id| format!("N{id}")).collect::<Vec<_>>()
                }),
            }));
        }
        rows
    }

    async fn nodes_list(&self) -> Result<(), Failure> {
        let nodes = self.nodes().await?;
        let rows = self.node_rows(&nodes).await;
        if self.json {
            println!("{}", Value::Array(rows));
        } else {
            print_nodes(&rows);
        }
        Ok(())
    }

    async fn status(&self) -> Result<(), Failure> {
        let nodes = self.nodes().await?;
        let rows = self.node_rows(&nodes).await;
        let members = self.metadata.members().await?;
        let metadata = members_json(&members);
        if self.json {
            println!(
                "{}",
                json!({
                    "cluster_name": nodes.cluster_name(),
                    "nodes_config_version": nodes.version(),
                    "nodes": rows,
                    "metadata": metadata,
                })
            );
        } else {
            println!(
                "cluster {} (node table version {})",
                nodes.cluster_name(),
                nodes.version()
            );
            print_nodes(&rows);
            println!();
            print_members(&metadata);
        }
        Ok(())
    }

    async fn set_worker_state(
        &self,
        nodes: &[String],
        state: &str,
        force: bool,
    ) -> Result<(), Failure> {
        let next: WorkerState = state.parse().map_err(|err: String| Failure {
            code: 2,
            error: anyhow::anyhow!("--worker-state: {err}"),
        })?;
        let ids = nodes
            .iter()
            .map(|n| parse_node(n))
            .collect::<Result<Vec<_>, _>>()?;
        cluster::update(&self.metadata, "worker states", |table| {
            for id in &ids {
                if force {
                    table.force_worker_state(*id, next)?;
                } else {
                    table.set_worker_state(*id, next)?;
                }
            }
            Ok(())
        })
        .await?;
        let names: Vec<String> = ids.iter().map(ToString::to_string).collect();
        if self.json {
            println!(
                "{}",
                json!({"nodes": names, "worker_state": next.to_string()})
            );
        } else {
            println!("worker state of {} is now {next}", names.join(", "));
        }
        Ok(())
    }

    async fn remove_nodes(&self, nodes: &[String]) -> Result<(), Failure> {
        let ids = nodes
            .iter()
            .map(|n| parse_node(n))
            .collect::<Result<Vec<_>, _>>()?;
        cluster::update(&self.metadata, "removing nodes", |table| {
            for id in &ids {
                table.remove_node(*id)?;
            }
            Ok(())
        })
        .await?;
        let names: Vec<String> = ids.iter().map(ToString::to_string).collect();
        if self.json {
            println!("{}", json!({"removed": names}));
        } else {
            println!("removed {} from the cluster", names.join(", "));
        }
        Ok(())
    }

    /// A failure the node answered with, mapped to the exit code it means.
    fn node_failure(address: &str, status: tonic::Status) -> Failure {
        let err = NetError::from(status);
        let code = match err {
            NetError::Unreachable(_) | NetError::Unavailable(_) => UNREACHABLE,
            _ => REFUSED,
        };
        Failure {
            code,
            error: anyhow::anyhow!("{address}: {err}"),
        }
    }

    async fn provision(
        &self,
        address: &str,
        num_partitions: u32,
        replication: u32,
    ) -> Result<(), Failure> {
        let mut client = self.connections.node(address)?;
        let header = self.connections.identity().header(NodeRef::default());
        let answer = client
            .provision(ProvisionRequest {
                header: Some(header),
                num_partitions,
                replication,
            })
            .await
            .map_err(|status| Self::node_failure(address, status))?
            .into_inner();
        let node = answer
            .node
            .map(|n| format!("N{}:{}", n.id, n.generation))
            .unwrap_or_default();
        if self.json {
            println!("{}", json!({"provisioned": true, "node": node}));
        } else {
            println!("the cluster is provisioned; {address} is {node}");
        }
        Ok(())
    }

    async fn config_get(&self, address: &str) -> Result<(), Failure> {
        let mut client = self.connections.node(address)?;
        let header = self.connections.identity().header(NodeRef::default());
        let answer = client
            .config(ConfigRequest {
                header: Some(header),
            })
            .await
            .map_err(|status| Self::node_failure(address, status))?
            .into_inner();
        if self.json {
            println!("{}", json!({"address": address, "config": answer.toml}));
        } else {
            print!("{}", answer.toml);
        }
        Ok(())
    }

    async fn metadata_get(&self, key: &str) -> Result<(), Failure> {
        let value = self.metadata.get(key).await?;
        match value {
            Some(value) if self.json => println!(
                "{}",
                json!({
                    "key": key,
                    "version": value.version,
                    "value": String::from_utf8_lossy(&value.value),
                    "size": value.value.len(),
                })
            ),
            Some(value) => {
                println!("version {}, {} bytes", value.version, value.value.len());
                println!("{}", String::from_utf8_lossy(&value.value));
            }
            None if self.json => println!("{}", json!({"key": key, "version": null})),
            None => println!("`{key}` has no value"),
        }
        Ok(())
    }

    async fn metadata_put(
        &self,
        key: &str,
        version: u64,
        file: &std::path::Path,
    ) -> Result<(), Failure> {
        let value = std::fs::read(file)
            .with_context(|| format!("reading {}", file.display()))
            .map_err(|error| Failure { code: 2, error })?;
        let precondition = if version == 0 {
            Precondition::DoesNotExist
        } else {
            Precondition::MatchesVersion(version)
        };
        let new = self
            .metadata
            .put(key, Bytes::from(value), precondition)
            .await?;
        if self.json {
            println!("{}", json!({"key": key, "version": new}));
        } else {
            println!("`{key}` is now at version {new}");
        }
        Ok(())
    }

    async fn list_servers(&self) -> Result<(), Failure> {
        let members = self.metadata.members().await?;
        let metadata = members_json(&members);
        if self.json {
            println!("{metadata}");
        } else {
            print_members(&metadata);
        }
        Ok(())
    }

    async fn add_server(&self, node: &str) -> Result<(), Failure> {
        let id = parse_node(node)?;
        let nodes = self.nodes().await?;
        let address = nodes.get(id).map_err(ClusterError::from)?.address.clone();
        self.metadata
            .add_member(u64::from(id.as_u32()), &address)
            .await?;
        cluster::update(&self.metadata, "the metadata member's state", |table| {
            use reprise_node_config::MetadataServerState::*;
            if table.get(id)?.metadata_server_state() == Standby {
                table.set_metadata_server_state(id, Provisioning)?;
            }
            table.set_metadata_server_state(id, Member)?;
            Ok(())
        })
        .await?;
        println!("{id} is a member of the metadata group");
        Ok(())
    }

    async fn remove_server(&self, node: &str) -> Result<(), Failure> {
        let id = parse_node(node)?;
        self.metadata.remove_member(u64::from(id.as_u32())).await?;
        cluster::update(&self.metadata, "the metadata member's state", |table| {
            table
                .set_metadata_server_state(id, reprise_node_config::MetadataServerState::Standby)?;
            Ok(())
        })
        .await?;
        println!("{id} is no longer a member of the metadata group");
        Ok(())
    }
}

fn members_json(members: &reprise_metadata_server::Members) -> Value {
    json!({
        "leader": members.leader.map(|id| format!("N{id}")),
        "members": members.members.iter().map(|m| json!({
            "id": format!("N{}", m.id),
            "address": m.address,
            "voter": m.voter,
        })).collect::<Vec<_>>(),
    })
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!(
        "{}",
        line(headers.iter().map(|h| (*h).to_owned()).collect())
    );
    for row in rows {
        println!("{}", line(row));
    }
}

fn print_nodes(rows: &[Value]) {
    let rows = rows
        .iter()
        .map(|row| {
            let generation = match &row["generation"] {
                Value::Null => "joining".to_owned(),
                other => other.to_string(),
            };
            vec![
                text(&row["id"]),
                generation,
                text(&row["name"]),
                text(&row["address"]),
                text(&row["roles"]),
                text(&row["worker_state"]),
                text(&row["metadata_server_state"]),
                if row["alive"] == json!(true) {
                    "yes"
                } else {
                    "no"
                }
                .to_owned(),
            ]
        })
        .collect();
    print_table(
        &[
            "NODE", "GEN", "NAME", "ADDRESS", "ROLES", "WORKER", "METADATA", "ALIVE",
        ],
        rows,
    );
}

fn print_members(metadata: &Value) {
    println!("metadata leader: {}", text(&metadata["leader"]));
    let rows = metadata["members"]
        .as_array()
        .map(|members| {
            members
                .iter()
                .map(|m| {
                    vec![
                        text(&m["id"]),
                        text(&m["address"]),
                        if m["voter"] == json!(true) {
                            "voter"
                        } else {
                            "learner"
                        }
                        .to_owned(),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    print_table(&["MEMBER", "ADDRESS", "ROLE"], rows);
}
