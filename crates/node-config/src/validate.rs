//! The checks a loaded configuration must pass before the node touches any data. Types already
//! reject malformed values; these are the values that parse but cannot work.

use std::net::SocketAddr;

use crate::error::{ConfigError, Problem};
use crate::options::{Configuration, RetryPolicy};
use crate::roles::Role;

const MAX_NAME_LEN: usize = 128;

/// Why a node name is unusable, or `None` when it is fine. The name becomes a directory name,
/// so it is restricted to characters that are safe in paths on every platform.
pub(crate) fn node_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if name.len() > MAX_NAME_LEN {
        return Some(format!("must be at most {MAX_NAME_LEN} characters"));
    }
    if name.starts_with('.') {
        return Some("must not start with `.`".to_owned());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Some(format!(
            "`{name}` may contain only letters, digits, `-`, `_` and `.`"
        ));
    }
    None
}

impl Configuration {
    /// Checks everything that parsed but cannot work. The error lists every problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, message: String| {
            problems.push(Problem {
                key: Some(key.to_owned()),
                origin: None,
                message,
            })
        };

        if let Some(problem) = node_name_problem(&self.node_name) {
            bad("node-name", problem);
        }
        if self.cluster_name.trim().is_empty() || self.cluster_name.len() > MAX_NAME_LEN {
            bad(
                "cluster-name",
                format!("must be 1 to {MAX_NAME_LEN} characters and not blank"),
            );
        }
        if self.base_dir.as_os_str().is_empty() {
            bad("base-dir", "must name a directory".to_owned());
        }
        if self.roles.is_empty() {
            bad(
                "roles",
                "must name at least one of `metadata-server`, `worker`, `ingress`, `admin`"
                    .to_owned(),
            );
        }
        if let Some(address) = &self.advertised_address
            && let Err(problem) = check_advertised_address(address)
        {
            bad("advertised-address", problem);
        }
        for address in &self.metadata_client.addresses {
            if let Err(problem) = check_advertised_address(address) {
                bad("metadata-client.addresses", problem);
            }
        }
        if self.metadata_client.addresses.len() > 64 {
            bad(
                "metadata-client.addresses",
                "names more than 64 addresses".to_owned(),
            );
        }
        if !(1..=u32::from(u16::MAX)).contains(&self.default_num_partitions) {
            bad(
                "default-num-partitions",
                format!(
                    "is {}, must be from 1 to 65535",
                    self.default_num_partitions
                ),
            );
        }
        if self.force_node_id == Some(0) {
            bad("force-node-id", "is 0: node ids start at 1 (N1)".to_owned());
        }
        if let Some(problem) = replication_problem(self.default_replication) {
            bad("default-replication", problem);
        }
        if self.shutdown_timeout.as_duration().is_zero() {
            bad(
                "shutdown-timeout",
                "must be longer than 0s: the node needs time to close its storage".to_owned(),
            );
        }
        if self.rocksdb_total_memory_size.as_u64() < 16 << 20 {
            bad(
                "rocksdb-total-memory-size",
                format!(
                    "is {}, must be at least 16 MiB",
                    self.rocksdb_total_memory_size
                ),
            );
        }
        let ratio = self.rocksdb_total_memtables_ratio;
        if !(ratio > 0.0 && ratio <= 1.0) {
            bad(
                "rocksdb-total-memtables-ratio",
                format!("is {ratio}, must be more than 0 and at most 1"),
            );
        }
        if let Err(err) = tracing_subscriber::EnvFilter::builder().parse(&self.log_filter) {
            bad(
                "log-filter",
                format!(
                    "`{}` is not a log filter ({err}); use e.g. `info` or `info,reprise_node=debug`",
                    self.log_filter
                ),
            );
        }
        for (key, other_key) in self.address_conflicts() {
            bad(
                key,
                format!("uses the same address as `{other_key}`: give each listener its own port"),
            );
        }
        for (key, value) in [
            ("http.header-read-timeout", self.http.header_read_timeout),
            (
                "http.http2-keep-alive-interval",
                self.http.http2_keep_alive_interval,
            ),
        ] {
            if value.as_duration().is_zero() {
                bad(key, "must be longer than 0s".to_owned());
            }
        }
        if self.http.max_connections == 0 {
            bad("http.max-connections", "must be at least 1".to_owned());
        }
        if self.ingress.request_size_limit.as_u64() == 0 {
            bad(
                "ingress.request-size-limit",
                "must be larger than 0 B".to_owned(),
            );
        }

        if self.worker.num_timers_in_memory_limit == 0 {
            bad(
                "worker.num-timers-in-memory-limit",
                "must be at least 1".to_owned(),
            );
        }
        let invoker = &self.worker.invoker;
        if invoker.concurrent_invocations_limit == 0 {
            bad(
                "worker.invoker.concurrent-invocations-limit",
                "must be at least 1".to_owned(),
            );
        }
        if invoker.abort_timeout.as_duration().is_zero() {
            bad(
                "worker.invoker.abort-timeout",
                "must be longer than 0s".to_owned(),
            );
        }
        if invoker.message_size_limit.as_u64() < 1024 {
            bad(
                "worker.invoker.message-size-limit",
                "must be at least 1 KiB".to_owned(),
            );
        }
        for (key, message) in retry_policy_problems(&invoker.retry_policy) {
            bad(&format!("worker.invoker.retry-policy.{key}"), message);
        }

        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::new(problems))
        }
    }

    /// Pairs of listener keys (of the roles this node runs) that would bind the same socket.
    fn address_conflicts(&self) -> Vec<(&'static str, &'static str)> {
        let mut listeners = vec![("bind-address", self.bind_address)];
        if self.roles.contains(Role::Ingress) {
            listeners.push(("ingress.bind-address", self.ingress.bind_address));
        }
        if self.roles.contains(Role::Admin) {
            listeners.push(("admin.bind-address", self.admin.bind_address));
        }
        let mut conflicts = Vec::new();
        for (i, (key, addr)) in listeners.iter().enumerate() {
            for (other_key, other) in &listeners[..i] {
                if sockets_overlap(*addr, *other) {
                    conflicts.push((*key, *other_key));
                }
            }
        }
        conflicts
    }
}

/// Two bind addresses collide when they share a port (other than 0, which asks the OS for a
/// free one) and either names the other's ip or the unspecified ip of its family.
fn sockets_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Why a replication factor cannot be used, if it cannot: partitions have one copy each until
/// they are replicated across nodes, and a factor that would be accepted and then ignored is
/// refused instead.
pub fn replication_problem(replication: u32) -> Option<String> {
    match replication {
        1 => None,
        0 => Some("is 0: every partition needs at least one copy".to_owned()),
        n => Some(format!(
            "is {n}, but partitions are not replicated across nodes yet: use 1"
        )),
    }
}

fn check_advertised_address(address: &str) -> Result<(), String> {
    let uri: http::Uri = address
        .parse()
        .map_err(|_| format!("`{address}` is not a URL; use e.g. `http://10.0.0.7:5122`"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(format!(
                "`{address}` must start with http:// or https://, e.g. `http://10.0.0.7:5122`"
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("`{address}` has no host"));
    }
    Ok(())
}

fn retry_policy_problems(policy: &RetryPolicy) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    if policy.initial_interval.as_duration().is_zero() {
        problems.push(("initial-interval", "must be longer than 0s".to_owned()));
    }
    if !policy.factor.is_finite() || policy.factor < 1.0 {
        problems.push((
            "factor",
            format!("is {}, must be a number of at least 1.0", policy.factor),
        ));
    }
    if policy.max_interval < policy.initial_interval {
        problems.push((
            "max-interval",
            format!(
                "is {}, must not be shorter than initial-interval ({})",
                policy.max_interval, policy.initial_interval
            ),
        ));
    }
    if policy.max_attempts == Some(0) {
        problems.push((
            "max-attempts",
            "must be at least 1; leave it out to retry without limit".to_owned(),
        ));
    }
    problems
}
