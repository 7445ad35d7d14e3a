//! Connections to other nodes: one lazily connected gRPC channel per address, shared by every
//! client of the node and re-established by tonic when it breaks. Every channel has a connect
//! timeout and a request timeout, and every client a bound on message size.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::MAX_MESSAGE_SIZE;
use crate::envelope::NetIdentity;
use crate::error::NetError;
use crate::proto::metadata_client::MetadataClient;
use crate::proto::node_client::NodeClient;
use crate::proto::raft_client::RaftClient;

#[derive(Debug, Clone, Copy)]
pub struct ConnectionOptions {
    pub connect_timeout: Duration,
    /// The longest any request may take unless it sets a shorter deadline of its own.
    pub request_timeout: Duration,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The node's connections to its peers. Cheap to clone.
#[derive(Clone)]
pub struct Connections {
    identity: NetIdentity,
    options: ConnectionOptions,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl Connections {
    pub fn new(identity: NetIdentity, options: ConnectionOptions) -> Self {
        Self {
            identity,
            options,
            channels: Arc::default(),
        }
    }

    pub fn identity(&self) -> &NetIdentity {
        &self.identity
    }

    /// The channel to the node port at `address` (`http://host:port`).
    pub fn channel(&self, address: &str) -> Result<Channel, NetError> {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        if !address.starts_with("http://") {
            return Err(NetError::BadRequest(format!(
                "`{address}` is not a node address: use http://host:port"
            )));
        }
        let channel = Endpoint::from_shared(address.to_owned())
            .map_err(|err| NetError::BadRequest(format!("`{address}`: {err}")))?
            .connect_timeout(self.options.connect_timeout)
            .timeout(self.options.request_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .connect_lazy();
        channels.insert(address.to_owned(), channel.clone());
        Ok(channel)
    }

    pub fn raft(&self, address: &str) -> Result<RaftClient<Channel>, NetError> {
        Ok(RaftClient::new(self.channel(address)?)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE))
    }

    pub fn metadata(&self, address: &str) -> Result<MetadataClient<Channel>, NetError> {
        Ok(MetadataClient::new(self.channel(address)?)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE))
    }

    pub fn node(&self, address: &str) -> Result<NodeClient<Channel>, NetError> {
        Ok(NodeClient::new(self.channel(address)?)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE))
    }
}
