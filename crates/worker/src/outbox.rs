//! Delivery of a partition's outbox while this node leads it: calls and sends between
//! invocations, and the results of calls, on their way to the partition of the invocation they
//! are for (which may be the same partition).
//!
//! The outbox is read from the partition's table a page at a time, so what waits to be
//! delivered costs disk, not memory. A page's messages are grouped by target partition and
//! proposed there as `Record::Deliver` batches, in sequence order; only once the target has
//! committed a batch is its removal proposed here (`Record::OutboxDelivered`). A failed batch
//! stops the deliveries to its target for this round, and the next round starts again from the
//! first message not known to be delivered: the target skips what it already applied (it keeps
//! the highest sequence number it applied from each producer), so a message is applied once and
//! the messages from one partition to another are applied in the order they were written.
//!
//! Delivery sits behind [`Router`]: today every partition is led on this node; when partitions
//! live on other nodes the router forwards a batch over the node-to-node channel instead.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use reprise_partition_processor::{Delivery, OutboxMessage, PartitionHandle, Record};
use reprise_types::{PartitionId, PartitionKey};
use tokio::sync::Notify;
use tracing::{debug, error, warn};

use crate::{LEADER_WAIT, PartitionTable, WorkerError};

/// Outbox messages read at a time, and about the most bytes of them (a larger message is read
/// alone): what a round holds in memory.
const PAGE: usize = 256;
const PAGE_BYTES: usize = 8 << 20;
/// About the most bytes of messages in one delivery; a larger message goes alone.
const DELIVERY_BYTES: usize = 1 << 20;
const INITIAL_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Finds the partition that owns a key, and proposes to it. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Router {
    pub(crate) table: Arc<PartitionTable>,
    pub(crate) partitions: Arc<HashMap<PartitionId, PartitionHandle>>,
}

impl Router {
    pub(crate) fn partition(&self, key: PartitionKey) -> Result<&PartitionHandle, WorkerError> {
        let entry = self.table.find(key).ok_or(WorkerError::NoPartition(key))?;
        self.partitions
            .get(&entry.id)
            .ok_or(WorkerError::Elsewhere {
                partition: entry.id,
                node: if entry.node == 0 { 1 } else { entry.node },
            })
    }

    /// Proposes `record` to the partition owning `key` and waits until it is applied.
    pub(crate) async fn propose(
        &self,
        key: PartitionKey,
        record: Record,
    ) -> Result<(), WorkerError> {
        let partition = self.partition(key)?;
        // Right after a start the partition may still be electing itself: wait, boundedly.
        partition.wait_for_leadership(LEADER_WAIT).await?;
        partition.propose(record).await?;
        Ok(())
    }
}

/// Delivers the outbox of `partition` for as long as it runs (the actuator aborts it when the
/// leadership epoch ends). `wake` is notified whenever a message is added.
pub(crate) async fn deliver(partition: PartitionHandle, router: Router, wake: Arc<Notify>) {
    // The last sequence number handed over (delivered, or known to be delivered).
    let mut after: Option<u64> = None;
    let mut backoff = INITIAL_BACKOFF;
    loop {
        let page = match partition.outbox_after(after, PAGE, PAGE_BYTES).await {
            Ok(page) => page,
            Err(err) => {
                error!(partition = %partition.id(), %err, "cannot read the partition's outbox");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let Some(&(last, _)) = page.last() else {
            wake.notified().await;
            continue;
        };
        let mut by_target: BTreeMap<PartitionId, (PartitionKey, Vec<(u64, OutboxMessage)>)> =
            BTreeMap::new();
        let mut unroutable = None;
        for (seq, message) in page {
            let key = message.partition_key();
            match router.partition(key) {
                Ok(target) => by_target
                    .entry(target.id())
                    .or_insert_with(|| (key, Vec::new()))
                    .1
                    .push((seq, message)),
                Err(err) => {
                    error!(partition = %partition.id(), seq, %err, "cannot route an outbox message");
                    // A page is in sequence order: the first one is the smallest.
                    unroutable.get_or_insert(seq);
                }
            }
        }
        let outcomes = join_all(
            by_target
                .into_values()
                .map(|(key, messages)| deliver_to(&partition, &router, key, messages)),
        )
        .await;
        let mut delivered = Vec::new();
        let mut first_failed = unroutable;
        for outcome in outcomes {
            delivered.extend(outcome.delivered);
            if let Some(seq) = outcome.failed {
                first_failed = Some(first_failed.map_or(seq, |first| first.min(seq)));
            }
        }
        if !delivered.is_empty() {
            // Not waited for: if it is lost, the next leader delivers again, and the targets
            // skip what they have.
            if let Err(err) = partition
                .enqueue(Record::OutboxDelivered { seqs: delivered })
                .await
            {
                debug!(partition = %partition.id(), %err, "cannot remove delivered outbox messages");
            }
        }
        match first_failed {
            None => {
                after = Some(last);
                backoff = INITIAL_BACKOFF;
            }
            Some(first) => {
                after = first.checked_sub(1);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

struct Outcome {
    delivered: Vec<u64>,
    /// The first message that could not be delivered; the ones after it were not tried.
    failed: Option<u64>,
}

/// Delivers messages to one target partition in sequence order, in batches of bounded size,
/// each proposed only after the one before it committed.
async fn deliver_to(
    producer: &PartitionHandle,
    router: &Router,
    key: PartitionKey,
    messages: Vec<(u64, OutboxMessage)>,
) -> Outcome {
    let mut outcome = Outcome {
        delivered: Vec::with_capacity(messages.len()),
        failed: None,
    };
    let mut messages = messages.into_iter().peekable();
    while messages.peek().is_some() {
        let mut batch = Vec::new();
        let mut size = 0;
        while let Some((_, next)) = messages.peek() {
            let next_size = next.approximate_size();
            if !batch.is_empty() && size + next_size > DELIVERY_BYTES {
                break;
            }
            size += next_size;
            batch.extend(messages.next());
        }
        let seqs: Vec<u64> = batch.iter().map(|(seq, _)| *seq).collect();
        let record = Record::Deliver(Delivery {
            producer: producer.id(),
            messages: batch,
        });
        match router.propose(key, record).await {
            Ok(()) => outcome.delivered.extend(seqs),
            Err(err) => {
                warn!(partition = %producer.id(), seq = seqs[0], %err, "cannot deliver outbox messages; trying again");
                outcome.failed = seqs.first().copied();
                return outcome;
            }
        }
    }
    outcome
}
