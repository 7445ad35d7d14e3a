//! Node identifiers. A node is known by its name; the cluster gives it a [`PlainNodeId`] the
//! first time it joins, and every start of the process bumps its generation, which yields a
//! [`GenerationalNodeId`] (`N3:7` is node 3 in its 7th generation). Messages are fenced by the
//! generational id, so a restarted node supersedes its previous incarnation.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The stable id of a node within its cluster, printed `N<id>`. Ids start at 1 and are never
/// reused, not even after the node is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlainNodeId(u32);

impl PlainNodeId {
    /// The first id a cluster hands out.
    pub const MIN: PlainNodeId = PlainNodeId(1);

    /// Returns `None` for 0, which is not a valid node id.
    pub const fn new(id: u32) -> Option<Self> {
        if id == 0 { None } else { Some(Self(id)) }
    }

    pub const fn as_u32(self) -> u32 {
        self.0
    }

    /// The id after this one, or `None` when the id space is exhausted.
    pub fn next(self) -> Option<Self> {
        self.0.checked_add(1).map(Self)
    }

    pub const fn with_generation(self, generation: u32) -> GenerationalNodeId {
        GenerationalNodeId {
            id: self,
            generation,
        }
    }
}

impl fmt::Display for PlainNodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "N{}", self.0)
    }
}

/// Why a node id did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeIdParseError {
    #[error("node id '{0}' must look like N<number> (for example N1), or N<number>:<generation>")]
    Malformed(String),
    #[error("node id 0 is not valid: node ids start at 1")]
    Zero,
}

fn parse_plain(text: &str, whole: &str) -> Result<PlainNodeId, NodeIdParseError> {
    let digits = text
        .strip_prefix('N')
        .or_else(|| text.strip_prefix('n'))
        .unwrap_or(text);
    let id: u32 = digits
        .parse()
        .map_err(|_| NodeIdParseError::Malformed(whole.to_owned()))?;
    PlainNodeId::new(id).ok_or(NodeIdParseError::Zero)
}

impl FromStr for PlainNodeId {
    type Err = NodeIdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_plain(s.trim(), s)
    }
}

/// A node id together with the generation of the process that runs it, printed `N<id>:<gen>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GenerationalNodeId {
    id: PlainNodeId,
    generation: u32,
}

impl GenerationalNodeId {
    pub const fn id(self) -> PlainNodeId {
        self.id
    }

    pub const fn generation(self) -> u32 {
        self.generation
    }

    /// The id of the next start of the same node, or `None` when generations are exhausted.
    pub fn bump_generation(self) -> Option<Self> {
        self.generation
            .checked_add(1)
            .map(|generation| self.id.with_generation(generation))
    }

    /// True when `self` is a newer incarnation of the same node than `other`.
    pub fn is_newer_than(self, other: GenerationalNodeId) -> bool {
        self.id == other.id && self.generation > other.generation
    }
}

impl fmt::Display for GenerationalNodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.id, self.generation)
    }
}

impl FromStr for GenerationalNodeId {
    type Err = NodeIdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        let (id, generation) = trimmed
            .split_once(':')
            .ok_or_else(|| NodeIdParseError::Malformed(s.to_owned()))?;
        let id = parse_plain(id, s)?;
        let generation = generation
            .parse()
            .map_err(|_| NodeIdParseError::Malformed(s.to_owned()))?;
        Ok(id.with_generation(generation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_id_round_trips_through_text() {
        let id: PlainNodeId = "N7".parse().expect("valid id");
        assert_eq!(id.as_u32(), 7);
        assert_eq!(id.to_string(), "N7");
        assert_eq!("12".parse::<PlainNodeId>().map(|i| i.as_u32()), Ok(12));
    }

    #[test]
    fn plain_id_rejects_zero_and_garbage() {
        assert_eq!(PlainNodeId::new(0), None);
        assert_eq!("N0".parse::<PlainNodeId>(), Err(NodeIdParseError::Zero));
        assert!(matches!(
            "Nx".parse::<PlainNodeId>(),
            Err(NodeIdParseError::Malformed(_))
        ));
        assert!(matches!(
            "".parse::<PlainNodeId>(),
            Err(NodeIdParseError::Malformed(_))
        ));
    }

    #[test]
    fn generational_id_round_trips_and_orders_generations() {
        let id: GenerationalNodeId = "N3:7".parse().expect("valid id");
        assert_eq!(id.id().as_u32(), 3);
        assert_eq!(id.generation(), 7);
        assert_eq!(id.to_string(), "N3:7");
        let next = id.bump_generation().expect("not exhausted");
        assert!(next.is_newer_than(id));
        assert!(!id.is_newer_than(next));
        let other = PlainNodeId::MIN.with_generation(100);
        assert!(
            !other.is_newer_than(id),
            "different nodes are not comparable"
        );
        assert!("N3".parse::<GenerationalNodeId>().is_err());
        assert!("N3:x".parse::<GenerationalNodeId>().is_err());
    }

    #[test]
    fn exhausted_ids_do_not_overflow() {
        let last = PlainNodeId::new(u32::MAX).expect("non-zero");
        assert_eq!(last.next(), None);
        assert_eq!(last.with_generation(u32::MAX).bump_generation(), None);
    }

    #[test]
    fn serde_forms_are_stable() {
        let id = PlainNodeId::MIN.with_generation(2);
        let json = serde_json::to_string(&id).expect("serializable");
        assert_eq!(json, r#"{"id":1,"generation":2}"#);
        let back: GenerationalNodeId = serde_json::from_str(&json).expect("deserializable");
        assert_eq!(back, id);
    }
}
