//! The tables' column families and how their keys are laid out. Every key starts with an
//! 8-byte big-endian partition key, so each partition's rows are one contiguous range of every
//! table: a snapshot reads a range and its install deletes one.

use bytes::Bytes;
use reprise_types::{InvocationId, MillisSinceEpoch, PartitionId, PartitionKey};

use crate::record::{TimerKey, TimerKind};
use crate::storage::ObjectId;

/// The partition tables, one column family each.
/// Values are the prost messages of `proto/partition.proto` unless said otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Table {
    /// invocation id → `InvocationStatus`.
    Status,
    /// invocation id ‖ entry index (BE u32) → `StoredFrame`: one journal is one ordered range.
    Journal,
    /// object ‖ state key → the value's bytes as the SDK sent them.
    State,
    /// object → `ObjectLock`.
    Lock,
    /// object ‖ sequence number (BE u64) → the waiting invocation's raw id (24 bytes).
    Inbox,
    /// partition scope ‖ wake time (BE u64) ‖ invocation id ‖ kind (u8) ‖ completion id (BE
    /// u32, 0 for purges) → empty: the partition's timers in the order they fire.
    Timer,
    /// invocation id → empty, exactly while its status is `Invoked`: what a new leader resumes,
    /// found without reading any other status. Written with the status, in the same batch.
    Invoked,
    /// partition scope ‖ name → a value of the partition as a whole: `leader-epoch`,
    /// `outbox-next` (BE u64 each) and `delivered-from` ‖ producer partition id (BE u16) → the
    /// highest outbox sequence number applied from that producer (BE u64).
    Partition,
    /// partition scope ‖ sequence number (BE u64) → `OutboxMessage`: what the partition's
    /// leader still has to deliver, in order.
    Outbox,
    /// workflow (object prefix) ‖ promise key → `Promise`.
    Promise,
}

impl Table {
    pub const ALL: [Table; 10] = [
        Table::Status,
        Table::Journal,
        Table::State,
        Table::Lock,
        Table::Inbox,
        Table::Timer,
        Table::Invoked,
        Table::Partition,
        Table::Outbox,
        Table::Promise,
    ];

    /// The table's number in snapshot files: part of the format, never reused.
    pub fn snapshot_id(self) -> u32 {
        match self {
            Table::Status => 1,
            Table::Journal => 2,
            Table::State => 3,
            Table::Lock => 4,
            Table::Inbox => 5,
            Table::Timer => 6,
            Table::Invoked => 7,
            Table::Partition => 8,
            Table::Outbox => 9,
            Table::Promise => 10,
        }
    }

    pub fn cf_name(self) -> &'static str {
        match self {
            Table::Status => "status",
            Table::Journal => "journal",
            Table::State => "state",
            Table::Lock => "locks",
            Table::Inbox => "inbox",
            Table::Timer => "timers",
            Table::Invoked => "invoked",
            Table::Partition => "partition",
            Table::Outbox => "outbox",
            Table::Promise => "promises",
        }
    }
}

/// The partition key a row belongs to: its first eight bytes.
pub fn row_partition_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(..8)?.try_into().ok()?))
}

/// The key of the partition's current leader epoch.
pub fn leader_epoch_key(scope: PartitionKey) -> Vec<u8> {
    let mut key = scope.as_u64().to_be_bytes().to_vec();
    key.extend_from_slice(b"leader-epoch");
    key
}

/// The key of the partition's next outbox sequence number.
pub fn outbox_next_key(scope: PartitionKey) -> Vec<u8> {
    let mut key = scope.as_u64().to_be_bytes().to_vec();
    key.extend_from_slice(b"outbox-next");
    key
}

const DELIVERED_FROM: &[u8] = b"delivered-from";

/// The key of the highest sequence number applied from `producer`'s outbox.
pub fn delivered_from_key(scope: PartitionKey, producer: PartitionId) -> Vec<u8> {
    let mut key = scope.as_u64().to_be_bytes().to_vec();
    key.extend_from_slice(DELIVERED_FROM);
    key.extend_from_slice(&producer.as_u16().to_be_bytes());
    key
}

pub fn decode_delivered_from_key(full: &[u8]) -> Option<PartitionId> {
    let rest = full.get(8..)?.strip_prefix(DELIVERED_FROM)?;
    Some(PartitionId::new(u16::from_be_bytes(rest.try_into().ok()?)))
}

pub fn outbox_key(scope: PartitionKey, seq: u64) -> Vec<u8> {
    let mut key = scope.as_u64().to_be_bytes().to_vec();
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

pub fn decode_outbox_key(full: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(full.get(8..)?.try_into().ok()?))
}

pub fn status_key(id: InvocationId) -> Vec<u8> {
    id.to_bytes().to_vec()
}

pub fn journal_key(id: InvocationId, index: u32) -> Vec<u8> {
    let mut key = id.to_bytes().to_vec();
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// `from..to` holding every journal key of `id`: a journal key is the id and a 4-byte index,
/// so the id followed by five 0xff bytes sorts after all of them.
pub fn journal_range(id: InvocationId) -> (Vec<u8>, Vec<u8>) {
    let mut to = id.to_bytes().to_vec();
    to.extend_from_slice(&[0xff; 5]);
    (journal_key(id, 0), to)
}

pub fn decode_journal_key(key: &[u8]) -> Option<(InvocationId, u32)> {
    let (id, index) = key.split_at_checked(InvocationId::RAW_LEN)?;
    let index = u32::from_be_bytes(index.try_into().ok()?);
    Some((InvocationId::from_bytes(id).ok()?, index))
}

/// Partition key ‖ service ‖ object key, each string length-prefixed so that no object's
/// prefix is a prefix of another object's.
pub fn object_prefix(object: &ObjectId) -> Vec<u8> {
    let mut key = object.partition_key().as_u64().to_be_bytes().to_vec();
    for part in [&object.service, &object.key] {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        key.extend_from_slice(&len.to_be_bytes());
        key.extend_from_slice(part.as_bytes());
    }
    key
}

/// The object a key starts with, and what follows it.
pub fn decode_object_prefix(full: &[u8]) -> Option<(ObjectId, &[u8])> {
    let mut rest = full.get(8..)?;
    let mut parts = Vec::with_capacity(2);
    for _ in 0..2 {
        let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let part = rest.get(4..4usize.checked_add(len)?)?;
        parts.push(String::from_utf8(part.to_vec()).ok()?);
        rest = rest.get(4 + len..)?;
    }
    let key = parts.pop()?;
    let service = parts.pop()?;
    Some((ObjectId { service, key }, rest))
}

pub fn state_key(object: &ObjectId, key: &[u8]) -> Vec<u8> {
    let mut full = object_prefix(object);
    full.extend_from_slice(key);
    full
}

pub fn decode_state_key(full: &[u8]) -> Option<(ObjectId, Bytes)> {
    let (object, key) = decode_object_prefix(full)?;
    Some((object, Bytes::copy_from_slice(key)))
}

pub fn inbox_key(object: &ObjectId, seq: u64) -> Vec<u8> {
    let mut full = object_prefix(object);
    full.extend_from_slice(&seq.to_be_bytes());
    full
}

pub fn decode_inbox_key(full: &[u8]) -> Option<(ObjectId, u64)> {
    let (object, seq) = decode_object_prefix(full)?;
    Some((object, u64::from_be_bytes(seq.try_into().ok()?)))
}

/// Timers are scoped by their partition (its first key), not by their invocation's key, so
/// that one partition's timers are ordered by time.
pub fn timer_key(scope: PartitionKey, timer: &TimerKey) -> Vec<u8> {
    let (tag, completion) = match timer.kind {
        TimerKind::Completion(id) => (0u8, id),
        TimerKind::PurgeJournal => (1, 0),
        TimerKind::PurgeInvocation => (2, 0),
        TimerKind::Start => (3, 0),
    };
    let mut key = Vec::with_capacity(8 + 8 + InvocationId::RAW_LEN + 1 + 4);
    key.extend_from_slice(&scope.as_u64().to_be_bytes());
    key.extend_from_slice(&timer.wake_at.as_u64().to_be_bytes());
    key.extend_from_slice(&timer.invocation_id.to_bytes());
    key.push(tag);
    key.extend_from_slice(&completion.to_be_bytes());
    key
}

pub fn decode_timer_key(full: &[u8]) -> Option<TimerKey> {
    let rest = full.get(8..)?;
    let (wake_at, rest) = rest.split_at_checked(8)?;
    let (id, rest) = rest.split_at_checked(InvocationId::RAW_LEN)?;
    let (&tag, completion) = rest.split_first()?;
    let completion = u32::from_be_bytes(completion.try_into().ok()?);
    let kind = match (tag, completion) {
        (0, id) => TimerKind::Completion(id),
        (1, 0) => TimerKind::PurgeJournal,
        (2, 0) => TimerKind::PurgeInvocation,
        (3, 0) => TimerKind::Start,
        _ => return None,
    };
    Some(TimerKey {
        wake_at: MillisSinceEpoch::new(u64::from_be_bytes(wake_at.try_into().ok()?)),
        invocation_id: InvocationId::from_bytes(id).ok()?,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_to_what_was_encoded() {
        let object = ObjectId::new("Counter", "a/b");
        assert_eq!(
            decode_state_key(&state_key(&object, b"count")),
            Some((object.clone(), Bytes::from_static(b"count")))
        );
        assert_eq!(
            decode_inbox_key(&inbox_key(&object, 7)),
            Some((object.clone(), 7))
        );
        let id = InvocationId::new(PartitionKey::new(42), 9);
        assert_eq!(decode_journal_key(&journal_key(id, 3)), Some((id, 3)));
        let scope = PartitionKey::new(40);
        assert_eq!(decode_outbox_key(&outbox_key(scope, 9)), Some(9));
        let producer = PartitionId::new(3);
        assert_eq!(
            decode_delivered_from_key(&delivered_from_key(scope, producer)),
            Some(producer)
        );
        assert_eq!(decode_delivered_from_key(&outbox_next_key(scope)), None);
        let timer = TimerKey {
            wake_at: MillisSinceEpoch::new(1_000),
            invocation_id: id,
            kind: TimerKind::Completion(2),
        };
        let key = timer_key(PartitionKey::new(40), &timer);
        assert_eq!(row_partition_key(&key), Some(40));
        assert_eq!(decode_timer_key(&key), Some(timer));
        for kind in [
            TimerKind::PurgeJournal,
            TimerKind::PurgeInvocation,
            TimerKind::Start,
        ] {
            let purge = TimerKey { kind, ..timer };
            assert_eq!(
                decode_timer_key(&timer_key(PartitionKey::new(40), &purge)),
                Some(purge)
            );
        }
        // A purge timer with a completion id is damage, not a timer.
        let mut damaged = timer_key(
            PartitionKey::new(40),
            &TimerKey {
                kind: TimerKind::PurgeJournal,
                ..timer
            },
        );
        let last = damaged.len() - 1;
        damaged[last] = 1;
        assert_eq!(decode_timer_key(&damaged), None);
    }

    #[test]
    fn truncated_keys_do_not_decode() {
        let object = ObjectId::new("Counter", "key");
        let full = inbox_key(&object, 1);
        for len in 0..full.len() {
            assert_eq!(decode_inbox_key(&full[..len]), None, "length {len}");
        }
        assert_eq!(decode_timer_key(&[0; 20]), None);
        assert_eq!(decode_journal_key(&[0; 3]), None);
    }

    #[test]
    fn timers_of_a_partition_sort_by_wake_time() {
        let scope = PartitionKey::new(5);
        let early = TimerKey {
            wake_at: MillisSinceEpoch::new(10),
            invocation_id: InvocationId::new(PartitionKey::new(u64::MAX), 1),
            kind: TimerKind::PurgeInvocation,
        };
        let late = TimerKey {
            wake_at: MillisSinceEpoch::new(11),
            invocation_id: InvocationId::new(PartitionKey::new(0), 0),
            kind: TimerKind::Completion(0),
        };
        assert!(timer_key(scope, &early) < timer_key(scope, &late));
    }
}
