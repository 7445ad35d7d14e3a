//! The roles a node can run. A node with every role is a complete single-node deployment; a
//! cluster spreads them across nodes.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Member of the replicated cluster-metadata store.
    MetadataServer,
    /// Runs partition processors and the invoker.
    Worker,
    /// Serves the public HTTP API.
    Ingress,
    /// Serves the admin HTTP API and controls the cluster.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::MetadataServer,
        Role::Worker,
        Role::Ingress,
        Role::Admin,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Role::MetadataServer => "metadata-server",
            Role::Worker => "worker",
            Role::Ingress => "ingress",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub(crate) const ROLES_EXPECTED: &str =
    "a list of roles from `metadata-server`, `worker`, `ingress`, `admin`";

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Role::ALL
            .into_iter()
            .find(|role| role.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| {
                format!(
                    "unknown role `{wanted}`: expected one of `metadata-server`, `worker`, `ingress`, `admin`"
                )
            })
    }
}

/// A set of roles. In configuration it is a list (`roles = ["worker", "admin"]`) or, handy in
/// environment variables and flags, a comma-separated string (`worker,admin`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoleSet(BTreeSet<Role>);

impl RoleSet {
    pub fn all() -> Self {
        Self(Role::ALL.into_iter().collect())
    }

    pub fn contains(&self, role: Role) -> bool {
        self.0.contains(&role)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = Role> + '_ {
        self.0.iter().copied()
    }
}

impl FromIterator<Role> for RoleSet {
    fn from_iter<I: IntoIterator<Item = Role>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl FromStr for RoleSet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .filter(|part| !part.trim().is_empty())
            .map(Role::from_str)
            .collect()
    }
}

impl fmt::Display for RoleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for role in self.iter() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(role.as_str())?;
        }
        Ok(())
    }
}

impl Serialize for RoleSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for RoleSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RolesVisitor;
        impl<'de> Visitor<'de> for RolesVisitor {
            type Value = RoleSet;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(ROLES_EXPECTED)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut roles = BTreeSet::new();
                while let Some(role) = seq.next_element::<String>()? {
                    roles.insert(role.parse().map_err(de::Error::custom)?);
                }
                Ok(RoleSet(roles))
            }
        }
        deserializer.deserialize_any(RolesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_sets_parse_from_lists_and_comma_strings() {
        let from_str: RoleSet = "worker, admin".parse().expect("valid roles");
        assert!(from_str.contains(Role::Worker) && from_str.contains(Role::Admin));
        assert!(!from_str.contains(Role::Ingress));
        assert_eq!(from_str.to_string(), "worker,admin");
        let from_json: RoleSet =
            serde_json::from_str(r#"["ingress","metadata-server"]"#).expect("valid roles");
        assert_eq!(from_json.to_string(), "metadata-server,ingress");
        let err = "worker,cook"
            .parse::<RoleSet>()
            .expect_err("cook is no role");
        assert!(err.contains("`cook`"), "{err}");
    }
}
