//! Invocation ids that are derived, not drawn: an idempotent request's (from its target and its
//! idempotency key) and a workflow run's (from the workflow and its key), as the reference
//! derives them — the first 16 bytes of a SHA-256 over the parts — so that a retry lands on the
//! same partition and the same invocation, and so that the ingress and handlers can address the
//! invocation by what created it. The partition key is the key's (for a keyed target) or the
//! idempotency key's.

use reprise_types::{InvocationId, PartitionKey};
use sha2::{Digest, Sha256};

fn derived(tag: &[u8], parts: &[&str]) -> u128 {
    let mut hash = Sha256::new();
    hash.update(tag);
    for part in parts {
        hash.update(b",");
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(uuid)
}

/// The id of the request to `service`/`handler` (on `key`, for a virtual object or workflow)
/// with `idempotency_key`.
pub fn idempotent_invocation_id(
    service: &str,
    key: Option<&str>,
    handler: &str,
    idempotency_key: &str,
) -> InvocationId {
    let uuid = match key {
        Some(key) => derived(b"ik", &[service, key, handler, idempotency_key]),
        None => derived(b"ik", &[service, handler, idempotency_key]),
    };
    InvocationId::new(PartitionKey::from_key(key.unwrap_or(idempotency_key)), uuid)
}

/// The id of the run of workflow `service` with `key`: one per key.
pub fn workflow_invocation_id(service: &str, key: &str) -> InvocationId {
    InvocationId::new(PartitionKey::from_key(key), derived(b"wf", &[service, key]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_every_part_and_live_with_their_key() {
        let a = idempotent_invocation_id("Counter", Some("k"), "add", "one");
        assert_eq!(
            a,
            idempotent_invocation_id("Counter", Some("k"), "add", "one")
        );
        assert_ne!(
            a,
            idempotent_invocation_id("Counter", Some("k"), "add", "two")
        );
        assert_ne!(
            a,
            idempotent_invocation_id("Counter", Some("j"), "add", "one")
        );
        assert_ne!(a, idempotent_invocation_id("Counter", None, "add", "one"));
        assert_eq!(a.partition_key(), PartitionKey::from_key("k"));
        let unkeyed = idempotent_invocation_id("Greeter", None, "greet", "one");
        assert_eq!(unkeyed.partition_key(), PartitionKey::from_key("one"));
        let run = workflow_invocation_id("Signup", "ann");
        assert_eq!(run, workflow_invocation_id("Signup", "ann"));
        assert_ne!(run, workflow_invocation_id("Signup", "bob"));
        assert_eq!(run.partition_key(), PartitionKey::from_key("ann"));
    }
}
