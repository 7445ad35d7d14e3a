//! The node's TCP listeners: the node port always, the ingress and admin ports when the node
//! runs those roles. They are bound before any data is opened so that a port in use fails the
//! start at once, with the address and the key to change.

use std::net::SocketAddr;
use std::path::Path;

use reprise_node_config::{Configuration, Role};
use serde::Serialize;

/// Which listener, and the configuration key that sets its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    Node,
    Ingress,
    Admin,
}

impl ListenerKind {
    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::Node => "node",
            ListenerKind::Ingress => "ingress",
            ListenerKind::Admin => "admin",
        }
    }

    pub fn config_key(self) -> &'static str {
        match self {
            ListenerKind::Node => "bind-address",
            ListenerKind::Ingress => "ingress.bind-address",
            ListenerKind::Admin => "admin.bind-address",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen on {address} for the {} port: {source}; change `{}` to a free address",
    kind.name(),
    kind.config_key()
)]
pub struct BindError {
    pub kind: ListenerKind,
    pub address: SocketAddr,
    pub source: std::io::Error,
}

pub(crate) struct BoundListener {
    pub kind: ListenerKind,
    pub listener: std::net::TcpListener,
}

/// The addresses the node actually listens on (port 0 in the configuration becomes the port the
/// OS chose). Written to `<node-dir>/listening.json` while the node runs, for tools and tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BoundAddresses {
    pub node: SocketAddr,
    pub ingress: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

impl BoundAddresses {
    pub const FILE: &'static str = "listening.json";

    pub(crate) fn write(&self, node_dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        // Write then rename, so a reader never sees half a file.
        let tmp = node_dir.join(format!("{}.tmp", Self::FILE));
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, node_dir.join(Self::FILE))
    }

    pub(crate) fn remove(node_dir: &Path) {
        let _ = std::fs::remove_file(node_dir.join(Self::FILE));
    }
}

pub(crate) fn bind_all(config: &Configuration) -> Result<Vec<BoundListener>, BindError> {
    let mut wanted = vec![(ListenerKind::Node, config.bind_address)];
    if config.roles.contains(Role::Ingress) {
        wanted.push((ListenerKind::Ingress, config.ingress.bind_address));
    }
    if config.roles.contains(Role::Admin) {
        wanted.push((ListenerKind::Admin, config.admin.bind_address));
    }
    wanted
        .into_iter()
        .map(|(kind, address)| bind(kind, address))
        .collect()
}

fn bind(kind: ListenerKind, address: SocketAddr) -> Result<BoundListener, BindError> {
    let error = |source| BindError {
        kind,
        address,
        source,
    };
    let listener = std::net::TcpListener::bind(address).map_err(error)?;
    listener.set_nonblocking(true).map_err(error)?;
    Ok(BoundListener { kind, listener })
}

pub(crate) fn bound_addresses(listeners: &[BoundListener]) -> std::io::Result<BoundAddresses> {
    let address_of = |kind| -> std::io::Result<Option<SocketAddr>> {
        listeners
            .iter()
            .find(|l| l.kind == kind)
            .map(|l| l.listener.local_addr())
            .transpose()
    };
    Ok(BoundAddresses {
        node: address_of(ListenerKind::Node)?
            .ok_or_else(|| std::io::Error::other("the node listener is always bound"))?,
        ingress: address_of(ListenerKind::Ingress)?,
        admin: address_of(ListenerKind::Admin)?,
    })
}
