//! Command-line flags that override configuration keys. They are the last layer before
//! validation, so a flag always wins over the file and the environment.

use std::path::PathBuf;

/// Flags shared by every way of starting a node. The server flattens these into its own
/// command line.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CliOverrides {
    /// Configuration file (TOML). Also read from the REPRISE_CONFIG environment variable.
    #[arg(long, short = 'c', value_name = "PATH")]
    pub config_file: Option<PathBuf>,

    /// Directory for all node data; the node uses <base-dir>/<node-name>/ [default: ./reprise-data]
    #[arg(long, value_name = "DIR")]
    pub base_dir: Option<PathBuf>,

    /// Name of this node: its identity in the cluster [default: the hostname]
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,

    /// Name of the cluster this node belongs to [default: localcluster]
    #[arg(long, value_name = "NAME")]
    pub cluster_name: Option<String>,

    /// Roles to run, comma separated: metadata-server, worker, ingress, admin [default: all]
    #[arg(long, value_name = "ROLES")]
    pub roles: Option<String>,

    /// Address of the node port (node-to-node gRPC and /health) [default: 0.0.0.0:5122]
    #[arg(long, value_name = "IP:PORT")]
    pub bind_address: Option<String>,

    /// Address other nodes use to reach this node [default: derived from --bind-address]
    #[arg(long, value_name = "URL")]
    pub advertised_address: Option<String>,

    /// Provision a new cluster if none exists (true or false) [default: true]
    #[arg(long, value_name = "BOOL")]
    pub auto_provision: Option<bool>,

    /// Number of partitions created when the cluster is provisioned [default: 24]
    #[arg(long, value_name = "N")]
    pub default_num_partitions: Option<u32>,

    /// How long an orderly shutdown may take, e.g. 30s or 1m [default: 1m]
    #[arg(long, value_name = "DURATION")]
    pub shutdown_timeout: Option<String>,

    /// Log filter such as `info` or `info,reprise_node=debug` (RUST_LOG is honoured too) [default: info]
    #[arg(long, value_name = "FILTER")]
    pub log_filter: Option<String>,

    /// Log format: pretty or json [default: pretty]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
}

/// A flag's value, as the configuration key it sets.
pub(crate) enum FlagValue {
    Text(String),
    Bool(bool),
    Number(u32),
}

impl CliOverrides {
    /// The keys these flags set, with the flag that set each, in a fixed order.
    pub(crate) fn overrides(&self) -> Vec<(&'static str, FlagValue)> {
        let text = |key: &'static str, value: &Option<String>| {
            value.clone().map(|v| (key, FlagValue::Text(v)))
        };
        let path = |key: &'static str, value: &Option<PathBuf>| {
            value
                .as_ref()
                .map(|v| (key, FlagValue::Text(v.to_string_lossy().into_owned())))
        };
        [
            path("base-dir", &self.base_dir),
            text("node-name", &self.node_name),
            text("cluster-name", &self.cluster_name),
            text("roles", &self.roles),
            text("bind-address", &self.bind_address),
            text("advertised-address", &self.advertised_address),
            self.auto_provision
                .map(|v| ("auto-provision", FlagValue::Bool(v))),
            self.default_num_partitions
                .map(|v| ("default-num-partitions", FlagValue::Number(v))),
            text("shutdown-timeout", &self.shutdown_timeout),
            text("log-filter", &self.log_filter),
            text("log-format", &self.log_format),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}
