//! The local configuration of one node, in the shape of its TOML file. Keys are kebab-case;
//! every section rejects keys it does not know, so a misspelt key is an error rather than a
//! silently ignored setting. Defaults make a complete single-node deployment.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::roles::RoleSet;
use crate::units::{ByteCount, FriendlyDuration, socket_addr, text};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Configuration {
    /// The node's name: its identity in the cluster and the name of its data directory.
    #[serde(deserialize_with = "text::deserialize")]
    pub node_name: String,
    /// A node refuses to join, or to open data of, a cluster with another name.
    #[serde(deserialize_with = "text::deserialize")]
    pub cluster_name: String,
    /// The node keeps its data in `<base-dir>/<node-name>/`.
    #[serde(deserialize_with = "text::deserialize_path")]
    pub base_dir: PathBuf,
    pub roles: RoleSet,
    /// Node-to-node port (gRPC) and the node's `/health`.
    #[serde(with = "socket_addr")]
    pub bind_address: SocketAddr,
    /// The address other nodes use to reach this one; derived from `bind-address` when unset.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "text::deserialize_option"
    )]
    pub advertised_address: Option<String>,
    /// Provision a new cluster when none exists. Exactly one node of a cluster may do this.
    pub auto_provision: bool,
    /// The plain id this node takes in the cluster instead of the next free one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub force_node_id: Option<u32>,
    /// Number of partitions created when the cluster is provisioned.
    pub default_num_partitions: u32,
    /// Copies of each partition in a cluster provisioned by this node. Only 1 until partitions
    /// are replicated across nodes.
    pub default_replication: u32,
    /// How long an orderly shutdown may take before the process exits anyway.
    pub shutdown_timeout: FriendlyDuration,
    /// A tracing filter directive such as `info` or `info,reprise_node=debug`.
    #[serde(deserialize_with = "text::deserialize")]
    pub log_filter: String,
    pub log_format: LogFormat,
    /// Memory RocksDB may use, all of the node's stores together: one block cache that the
    /// memtables are charged to as well.
    pub rocksdb_total_memory_size: ByteCount,
    /// The share of `rocksdb-total-memory-size` memtables may take before the largest is
    /// flushed; the rest caches table blocks.
    pub rocksdb_total_memtables_ratio: f64,
    pub http: HttpOptions,
    pub ingress: IngressOptions,
    pub admin: AdminOptions,
    pub worker: WorkerOptions,
    pub metadata_client: MetadataClientOptions,
    pub metadata_server: MetadataServerOptions,
}

impl Default for Configuration {
    fn default() -> Self {
        Self {
            node_name: default_node_name(),
            cluster_name: "localcluster".to_owned(),
            base_dir: PathBuf::from("./reprise-data"),
            roles: RoleSet::all(),
            bind_address: any_v4(5122),
            advertised_address: None,
            auto_provision: true,
            force_node_id: None,
            default_num_partitions: 24,
            default_replication: 1,
            shutdown_timeout: FriendlyDuration::from_secs(60),
            log_filter: "info,openraft=warn".to_owned(),
            log_format: LogFormat::Pretty,
            rocksdb_total_memory_size: ByteCount::mib(64),
            rocksdb_total_memtables_ratio: 0.85,
            http: HttpOptions::default(),
            ingress: IngressOptions::default(),
            admin: AdminOptions::default(),
            worker: WorkerOptions::default(),
            metadata_client: MetadataClientOptions::default(),
            metadata_server: MetadataServerOptions::default(),
        }
    }
}

/// How a node reaches the metadata store when it is not (or not yet) a member leading it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct MetadataClientOptions {
    /// Node ports of metadata members (`http://host:5122`). A node with nothing of its own to
    /// start from joins the cluster through them.
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct MetadataServerOptions {
    /// A node with the metadata-server role that joins a cluster becomes a member of the
    /// metadata group by itself; otherwise an operator adds it (`reprisectl metadata-server
    /// add-node`).
    pub auto_join: bool,
}

impl Default for MetadataServerOptions {
    fn default() -> Self {
        Self { auto_join: true }
    }
}

impl Configuration {
    /// Where this node keeps its data: `<base-dir>/<node-name>/`.
    pub fn node_dir(&self) -> PathBuf {
        self.base_dir.join(&self.node_name)
    }

    /// The address other nodes reach this one at: `advertised-address` when set, otherwise
    /// `http://<bind ip>:<bind port>` with an unspecified ip replaced by loopback.
    pub fn advertised_address(&self) -> String {
        if let Some(address) = &self.advertised_address {
            return address.clone();
        }
        let ip = if self.bind_address.ip().is_unspecified() {
            std::net::IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            self.bind_address.ip()
        };
        format!("http://{}", SocketAddr::new(ip, self.bind_address.port()))
    }

    /// The effective configuration as TOML, which loads back to the same configuration.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }
}

/// The machine's hostname, when it makes a usable node name; `reprise` otherwise.
fn default_node_name() -> String {
    hostname::get()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| crate::validate::node_name_problem(name).is_none())
        .unwrap_or_else(|| "reprise".to_owned())
}

fn any_v4(port: u16) -> SocketAddr {
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable, coloured when writing to a terminal.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// What a client may hold of the node's HTTP listeners (ingress, admin, node port).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct HttpOptions {
    /// How long a client may take to send a request head: from the connection's start, and on
    /// an HTTP/1.1 connection from the end of the previous response (so it is also how long an
    /// idle keep-alive connection stays open).
    pub header_read_timeout: FriendlyDuration,
    /// An HTTP/2 connection is pinged when it has been quiet this long, and closed when the
    /// ping is not answered within as long again.
    pub http2_keep_alive_interval: FriendlyDuration,
    /// Connections each listener keeps open at once; one more is closed right away.
    pub max_connections: u32,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: FriendlyDuration::from_secs(10),
            http2_keep_alive_interval: FriendlyDuration::from_secs(20),
            max_connections: 4096,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct IngressOptions {
    /// The public HTTP API.
    #[serde(with = "socket_addr")]
    pub bind_address: SocketAddr,
    /// Largest accepted request body.
    pub request_size_limit: ByteCount,
}

impl Default for IngressOptions {
    fn default() -> Self {
        Self {
            bind_address: any_v4(8080),
            request_size_limit: ByteCount::mib(32),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct AdminOptions {
    /// The admin HTTP API.
    #[serde(with = "socket_addr")]
    pub bind_address: SocketAddr,
}

impl Default for AdminOptions {
    fn default() -> Self {
        Self {
            bind_address: any_v4(9070),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct WorkerOptions {
    /// Timers each partition leader keeps in memory; the rest wait in the timer table and are
    /// loaded as the earlier ones fire.
    pub num_timers_in_memory_limit: u32,
    /// How long a completed invocation keeps its status and result, unless its service's
    /// manifest says otherwise; `0s` removes them at completion.
    pub completion_retention: FriendlyDuration,
    /// How long a completed invocation keeps its journal (never longer than its status), unless
    /// its service's manifest says otherwise.
    pub journal_retention: FriendlyDuration,
    pub invoker: InvokerOptions,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            num_timers_in_memory_limit: 1024,
            completion_retention: FriendlyDuration::from_secs(24 * 60 * 60),
            journal_retention: FriendlyDuration::from_secs(0),
            invoker: InvokerOptions::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct InvokerOptions {
    /// Invocation attempts that may run at once on this node.
    pub concurrent_invocations_limit: u32,
    /// An attempt whose stream has been idle this long is asked to suspend; `0s` makes every
    /// attempt suspend as soon as it waits on anything.
    pub inactivity_timeout: FriendlyDuration,
    /// After asking an attempt to suspend, how long it may stay silent before it is aborted.
    pub abort_timeout: FriendlyDuration,
    /// Largest protocol message accepted from a deployment.
    pub message_size_limit: ByteCount,
    /// Send no state in the start message: the SDK reads every entry lazily.
    pub disable_eager_state: bool,
    /// An object whose state is larger than this gets none in the start message (the SDK reads
    /// it lazily) rather than all of it.
    pub eager_state_size_limit: ByteCount,
    /// How failed attempts are retried.
    pub retry_policy: RetryPolicy,
}

impl Default for InvokerOptions {
    fn default() -> Self {
        Self {
            concurrent_invocations_limit: 1000,
            inactivity_timeout: FriendlyDuration::from_secs(60),
            abort_timeout: FriendlyDuration::from_secs(600),
            message_size_limit: ByteCount::mib(32),
            disable_eager_state: false,
            eager_state_size_limit: ByteCount::mib(8),
            retry_policy: RetryPolicy::default(),
        }
    }
}

/// Exponential backoff between attempts: `initial-interval`, multiplied by `factor` after each
/// failure, never more than `max-interval`. Without `max-attempts` an invocation is retried
/// until it succeeds or fails terminally; with it, after that many attempts it is paused (to be
/// resumed through the admin API) or killed, as `on-max-attempts` says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct RetryPolicy {
    pub initial_interval: FriendlyDuration,
    pub factor: f64,
    pub max_interval: FriendlyDuration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    pub on_max_attempts: OnMaxAttempts,
}

/// What happens to an invocation whose attempts are exhausted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnMaxAttempts {
    /// It stays, paused, until `PATCH /invocations/{id}/resume` (the reference's default).
    #[default]
    Pause,
    /// It completes with the last failure.
    Kill,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_interval: FriendlyDuration::from_millis(500),
            factor: 2.0,
            max_interval: FriendlyDuration::from_secs(60),
            max_attempts: None,
            on_max_attempts: OnMaxAttempts::Pause,
        }
    }
}
