//! How a Reprise node is configured. Two things live here:
//!
//! - the node's local [`Configuration`], loaded in one place by [`load`]: built-in defaults, then
//!   a TOML file, then `REPRISE_*` environment variables, then command-line flags, then
//!   [`Configuration::validate`]. Every rejection names the key, where its value came from and
//!   what would be accepted;
//! - the cluster's view of its nodes ([`NodesConfiguration`], [`NodeConfig`], [`Role`],
//!   [`WorkerState`], [`MetadataServerState`]) with the invariants every change keeps. Storing
//!   and replicating that view is the metadata server's job, not this crate's.
//!
//! This crate knows nothing about storage, networking or the server process.

mod cli;
mod error;
mod loader;
mod nodes;
mod options;
mod roles;
mod units;
mod validate;

pub use cli::CliOverrides;
pub use error::{ConfigError, Origin};
pub use loader::{load, load_from};
pub use nodes::{
    MetadataServerState, NodeConfig, NodeEntry, NodesConfigError, NodesConfiguration, WorkerState,
};
pub use options::{
    AdminOptions, Configuration, HttpOptions, IngressOptions, InvokerOptions, LogFormat,
    MetadataClientOptions, MetadataServerOptions, OnMaxAttempts, RetryPolicy, WorkerOptions,
};
pub use roles::{Role, RoleSet};
pub use units::{ByteCount, FriendlyDuration};
pub use validate::replication_problem;
