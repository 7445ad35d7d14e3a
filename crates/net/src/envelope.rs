//! Who a node is on the channel, and the checks every incoming message passes first. A node
//! stamps its outgoing headers with its cluster name and generational id (before it has joined,
//! id 0); a receiver refuses a message for another cluster, for another node (a removed node's
//! address reused by a new one), for an older generation of itself, or from an older
//! generation of a node it has heard from newer. Each refusal is logged and answered with a
//! typed [`NetError`]; none of them stops the node.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use reprise_types::GenerationalNodeId;
use tracing::warn;

use crate::error::NetError;
use crate::proto::{Header, NodeRef};

/// The sender of an accepted message, as its header names it (0: not known yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sender {
    pub id: u32,
    pub generation: u32,
}

/// This node's identity on the channel. Cheap to clone; every clone sees [`set_me`](Self::set_me).
#[derive(Clone)]
pub struct NetIdentity {
    inner: Arc<RwLock<Inner>>,
}

struct Inner {
    cluster_name: String,
    me: Option<GenerationalNodeId>,
    /// The newest generation heard of each peer, by plain id.
    known: HashMap<u32, u32>,
}

impl NetIdentity {
    pub fn new(cluster_name: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(RwLock::new(Inner {
                cluster_name: cluster_name.into(),
                me: None,
                known: HashMap::new(),
            })),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records this node's id once it has joined (or started as a known node).
    pub fn set_me(&self, me: GenerationalNodeId) {
        self.write().me = Some(me);
    }

    pub fn me(&self) -> Option<GenerationalNodeId> {
        self.read().me
    }

    pub fn cluster_name(&self) -> String {
        self.read().cluster_name.clone()
    }

    /// Records that a peer has reached generation `generation` (from the nodes configuration,
    /// or a message), so older generations of it are refused from now on.
    pub fn learn(&self, id: u32, generation: u32) {
        let mut inner = self.write();
        let known = inner.known.entry(id).or_insert(generation);
        *known = (*known).max(generation);
    }

    /// The header of a message from this node to `receiver` (id 0: whoever answers).
    pub fn header(&self, receiver: NodeRef) -> Header {
        let inner = self.read();
        Header {
            cluster_name: inner.cluster_name.clone(),
            sender: Some(match inner.me {
                Some(me) => NodeRef {
                    id: me.id().as_u32(),
                    generation: me.generation(),
                },
                None => NodeRef::default(),
            }),
            receiver: Some(receiver),
        }
    }

    /// Checks an incoming message's header; the sender when it is for this node.
    pub fn check(&self, header: Option<&Header>, what: &str) -> Result<Sender, NetError> {
        let result = self.check_inner(header);
        if let Err(err) = &result {
            warn!(%err, message = what, "refused a message");
        }
        result
    }

    fn check_inner(&self, header: Option<&Header>) -> Result<Sender, NetError> {
        let header =
            header.ok_or_else(|| NetError::BadRequest("the message has no header".into()))?;
        let sender = header.sender.unwrap_or_default();
        let receiver = header.receiver.unwrap_or_default();
        let mut inner = self.write();
        // An operator's tool (reprisectl) is no node and may not know the cluster's name: it
        // names neither, and addresses whoever answers.
        let tool = header.cluster_name.is_empty() && sender.id == 0;
        if !tool && header.cluster_name != inner.cluster_name {
            return Err(NetError::WrongCluster(format!(
                "the message is for cluster `{}`, this node belongs to `{}`",
                header.cluster_name, inner.cluster_name
            )));
        }
        if receiver.id != 0 {
            let me = inner.me.map(|me| (me.id().as_u32(), me.generation()));
            match me {
                Some((id, _)) if id != receiver.id => {
                    return Err(NetError::Misaddressed(format!(
                        "the message is for N{}, this is N{id}",
                        receiver.id
                    )));
                }
                None => {
                    return Err(NetError::Misaddressed(format!(
                        "the message is for N{}, this node has not joined yet",
                        receiver.id
                    )));
                }
                Some((id, generation))
                    if receiver.generation != 0 && receiver.generation != generation =>
                {
                    return Err(NetError::Misaddressed(format!(
                        "the message is for N{id}:{}, this is N{id}:{generation}",
                        receiver.generation
                    )));
                }
                Some(_) => {}
            }
        }
        if sender.id != 0 && sender.generation != 0 {
            let known = inner.known.entry(sender.id).or_insert(sender.generation);
            if sender.generation < *known {
                return Err(NetError::StaleSender(format!(
                    "N{}:{} sent it, but N{}:{} has started since",
                    sender.id, sender.generation, sender.id, known
                )));
            }
            *known = sender.generation;
        }
        Ok(Sender {
            id: sender.id,
            generation: sender.generation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reprise_types::PlainNodeId;

    fn node(id: u32, generation: u32) -> GenerationalNodeId {
        PlainNodeId::new(id)
            .expect("ids from 1 are valid")
            .with_generation(generation)
    }

    fn header(cluster: &str, sender: (u32, u32), receiver: (u32, u32)) -> Header {
        Header {
            cluster_name: cluster.into(),
            sender: Some(NodeRef {
                id: sender.0,
                generation: sender.1,
            }),
            receiver: Some(NodeRef {
                id: receiver.0,
                generation: receiver.1,
            }),
        }
    }

    #[test]
    fn messages_for_this_node_pass() {
        let me = NetIdentity::new("c");
        me.set_me(node(2, 3));
        for receiver in [(0, 0), (2, 0), (2, 3)] {
            let sender = me
                .check(Some(&header("c", (1, 1), receiver)), "test")
                .expect("accepted");
            assert_eq!(
                sender,
                Sender {
                    id: 1,
                    generation: 1
                }
            );
        }
    }

    #[test]
    fn misaddressed_and_foreign_messages_are_refused_with_their_kind() {
        let me = NetIdentity::new("c");
        assert!(matches!(
            me.check(Some(&header("c", (1, 1), (2, 0))), "test"),
            Err(NetError::Misaddressed(_))
        ));
        me.set_me(node(2, 3));
        assert!(matches!(
            me.check(Some(&header("other", (1, 1), (2, 3))), "test"),
            Err(NetError::WrongCluster(_))
        ));
        assert!(matches!(
            me.check(Some(&header("c", (1, 1), (3, 0))), "test"),
            Err(NetError::Misaddressed(_))
        ));
        assert!(matches!(
            me.check(Some(&header("c", (1, 1), (2, 2))), "test"),
            Err(NetError::Misaddressed(_))
        ));
        assert!(matches!(
            me.check(None, "test"),
            Err(NetError::BadRequest(_))
        ));
    }

    #[test]
    fn an_older_generation_of_a_known_sender_is_refused() {
        let me = NetIdentity::new("c");
        me.set_me(node(1, 1));
        me.check(Some(&header("c", (4, 2), (1, 0))), "test")
            .expect("first seen");
        assert!(matches!(
            me.check(Some(&header("c", (4, 1), (1, 0))), "test"),
            Err(NetError::StaleSender(_))
        ));
        me.learn(4, 5);
        assert!(matches!(
            me.check(Some(&header("c", (4, 2), (1, 0))), "test"),
            Err(NetError::StaleSender(_))
        ));
        me.check(Some(&header("c", (4, 5), (1, 0))), "test")
            .expect("the newest generation");
    }
}
