//! The leader's timer service for one partition. Timers live in the partition's timer table;
//! the service keeps only a window of the earliest ones in memory — at most `capacity` — and
//! pages in the next window from the table when the current one is used up. So a million
//! sleeping invocations cost a table row each and memory for one window.
//!
//! A timer is due when the wall clock reaches its wake-up time, never before: the service
//! sleeps until then and checks the clock again when it wakes. Firing a timer proposes
//! `TimerFired`; applying that completes the sleep once, so a timer fired twice (after a
//! leadership change, or because it was both loaded and registered) is harmless.

use std::collections::BTreeSet;
use std::time::Duration;

use reprise_partition_processor::{RocksDbStore, StorageError, TimerKey};
use reprise_types::{MillisSinceEpoch, PartitionKey};

pub struct TimerWindow {
    store: RocksDbStore,
    /// The partition's first key: its timers are stored under it.
    scope: PartitionKey,
    capacity: usize,
    /// Every stored timer up to `bound` that has not fired yet.
    timers: BTreeSet<TimerKey>,
    /// `None`: every stored timer is in `timers`. `Some(key)`: timers after `key` are only in
    /// the table.
    bound: Option<TimerKey>,
}

impl TimerWindow {
    pub fn new(store: RocksDbStore, scope: PartitionKey, capacity: usize) -> Self {
        Self {
            store,
            scope,
            capacity: capacity.max(1),
            timers: BTreeSet::new(),
            bound: None,
        }
    }

    /// Forgets the window and loads the earliest timers: on becoming leader.
    pub async fn load(&mut self) -> Result<(), StorageError> {
        self.timers.clear();
        self.bound = None;
        self.load_after(None).await
    }

    /// Forgets everything: this node no longer leads.
    pub fn clear(&mut self) {
        self.timers.clear();
        self.bound = None;
    }

    /// Reads the next window on the blocking pool, off the async workers.
    async fn load_after(&mut self, after: Option<TimerKey>) -> Result<(), StorageError> {
        // One more than fits tells whether the table holds timers beyond the window.
        let (store, scope, limit) = (self.store.clone(), self.scope, self.capacity + 1);
        let mut loaded =
            reprise_rocksdb::blocking(move || store.read_timers(scope, after.as_ref(), limit))
                .await?;
        if loaded.len() > self.capacity {
            loaded.truncate(self.capacity);
            self.bound = loaded.last().copied();
        } else {
            self.bound = None;
        }
        self.timers.extend(loaded);
        Ok(())
    }

    /// A timer that was just stored.
    pub fn add(&mut self, timer: TimerKey) {
        if self.bound.is_some_and(|bound| timer > bound) {
            // The table has it; it is loaded with the window it falls in.
            return;
        }
        self.timers.insert(timer);
        if self.timers.len() > self.capacity {
            // Over capacity: give up the latest one and narrow the window to match.
            self.timers.pop_last();
            self.bound = self.timers.last().copied();
        }
    }

    /// How long until the earliest timer is due; `None` when there is none.
    pub fn next_due_in(&self, now: MillisSinceEpoch) -> Option<Duration> {
        let first = self.timers.first()?;
        Some(Duration::from_millis(
            first.wake_at.as_u64().saturating_sub(now.as_u64()),
        ))
    }

    /// Takes every timer due at `now`, in firing order, paging in the next window whenever
    /// the current one runs out.
    pub async fn take_due(&mut self, now: MillisSinceEpoch) -> Result<Vec<TimerKey>, StorageError> {
        let mut due = Vec::new();
        loop {
            while let Some(first) = self.timers.first().copied() {
                if first.wake_at > now {
                    return Ok(due);
                }
                self.timers.pop_first();
                due.push(first);
            }
            match self.bound {
                // Every timer up to the bound has been taken: load the next window.
                Some(bound) => self.load_after(Some(bound)).await?,
                None => return Ok(due),
            }
        }
    }

    /// Timers in memory.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.timers.len()
    }
}

#[cfg(test)]
mod tests {
    const CTX: ApplyContext = ApplyContext {
        now: MillisSinceEpoch::new(1),
    };
    use super::*;
    use reprise_partition_processor::TimerKind;
    use reprise_partition_processor::{
        ApplyContext, EffectKind, Fence, HandlerType, InvocationTarget, InvokerEffect, Record,
        ServiceInvocation, StoredFrame, apply,
    };
    use reprise_types::InvocationId;

    const SCOPE: PartitionKey = PartitionKey::new(100);

    fn id(n: u128) -> InvocationId {
        InvocationId::new(PartitionKey::new(150), n)
    }

    /// Stores timers through the state machine, as a sleeping invocation would.
    fn store_timers(store: &RocksDbStore, wakes: &[u64]) -> Vec<TimerKey> {
        use prost::Message;
        let mut txn = store.transaction(SCOPE);
        let mut timers = Vec::new();
        for (n, wake) in wakes.iter().enumerate() {
            let n = n as u128;
            let invoke = Record::Invoke(ServiceInvocation {
                invocation_id: id(n),
                target: InvocationTarget {
                    service: "S".into(),
                    handler: "sleep".into(),
                    key: None,
                    handler_type: HandlerType::Shared,
                },
                argument: Default::default(),
                headers: vec![],
                response_sink: None,
                retention: Default::default(),
                created_at: MillisSinceEpoch::new(0),
                execution_time: None,
            });
            let sleep = reprise_service_protocol::proto::SleepCommandMessage {
                wake_up_time: *wake,
                result_completion_id: 1,
                name: String::new(),
            };
            let sleep = Record::Effect(InvokerEffect {
                invocation_id: id(n),
                kind: EffectKind::JournalEntry(StoredFrame {
                    ty: reprise_service_protocol::MessageType::SleepCommand.id(),
                    payload: sleep.encode_to_vec().into(),
                }),
                // The first attempt's first command after the input.
                // Epoch 0: no leadership was announced in this store.
                fence: Fence {
                    leader_epoch: 0,
                    attempt: 0,
                    command_index: 1,
                },
            });
            apply(&mut txn, &invoke, CTX).expect("apply");
            apply(&mut txn, &sleep, CTX).expect("apply");
            timers.push(TimerKey {
                wake_at: MillisSinceEpoch::new(*wake),
                invocation_id: id(n),
                kind: TimerKind::Completion(1),
            });
        }
        txn.commit().expect("commit");
        timers.sort();
        timers
    }

    #[tokio::test]
    async fn pages_through_more_timers_than_fit_and_never_takes_one_early() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let store = RocksDbStore::open(tmp.path()).expect("open");
        let wakes: Vec<u64> = (0..10).map(|i| 1_000 + (i * 37 % 10) * 100).collect();
        let all = store_timers(&store, &wakes);
        let mut window = TimerWindow::new(store, SCOPE, 3);
        window.load().await.expect("load");
        assert_eq!(window.len(), 3);

        assert_eq!(
            window
                .take_due(MillisSinceEpoch::new(999))
                .await
                .expect("take"),
            vec![]
        );
        assert_eq!(
            window.next_due_in(MillisSinceEpoch::new(900)),
            Some(Duration::from_millis(100))
        );
        let mut fired = Vec::new();
        for now in (1_000..=2_000).step_by(50) {
            let due = window
                .take_due(MillisSinceEpoch::new(now))
                .await
                .expect("take");
            assert!(due.iter().all(|t| t.wake_at.as_u64() <= now), "never early");
            assert!(window.len() <= 3, "the window stays bounded");
            fired.extend(due);
        }
        assert_eq!(fired, all, "every timer fires once, in order");
        assert_eq!(window.next_due_in(MillisSinceEpoch::new(0)), None);
    }

    #[tokio::test]
    async fn a_new_timer_inside_the_window_is_kept_and_one_beyond_it_is_loaded_later() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let store = RocksDbStore::open(tmp.path()).expect("open");
        let stored = store_timers(&store, &[100, 200, 300, 400]);
        let mut window = TimerWindow::new(store.clone(), SCOPE, 2);
        window.load().await.expect("load");
        // Earlier than everything: kept, and the window drops its latest timer to stay bounded.
        let early = TimerKey {
            wake_at: MillisSinceEpoch::new(50),
            invocation_id: id(99),
            kind: TimerKind::Completion(1),
        };
        window.add(early);
        assert_eq!(window.len(), 2);
        // Beyond the window: left to the table (the test stores it as the state machine would).
        let late = TimerKey {
            wake_at: MillisSinceEpoch::new(1_000),
            invocation_id: id(98),
            kind: TimerKind::Completion(1),
        };
        window.add(late);
        assert_eq!(window.len(), 2);
        let mut txn = store.transaction(SCOPE);
        reprise_partition_processor::PartitionStore::put_timer(&mut txn, early).expect("put");
        reprise_partition_processor::PartitionStore::put_timer(&mut txn, late).expect("put");
        txn.commit().expect("commit");

        let fired = window
            .take_due(MillisSinceEpoch::new(5_000))
            .await
            .expect("take");
        let mut expected = stored;
        expected.insert(0, early);
        expected.push(late);
        assert_eq!(fired, expected);
    }
}
