//! Callers waiting for invocation results, by request id. A request id is unique for the life
//! of this process and never reused after a restart (a random base plus a counter), so a result
//! for a request that died with an earlier process finds nobody and is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use reprise_partition_processor::InvocationResult;
use tokio::sync::oneshot;

pub(crate) struct Waiters {
    next: AtomicU64,
    waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<InvocationResult>>>>,
}

impl Default for Waiters {
    fn default() -> Self {
        Self {
            next: AtomicU64::new(rand::random::<u64>() >> 1),
            waiting: Arc::default(),
        }
    }
}

impl Waiters {
    pub(crate) fn register(&self) -> Waiter {
        let request_id = self.next.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        self.lock().insert(request_id, sender);
        Waiter {
            request_id,
            receiver,
            waiting: self.waiting.clone(),
        }
    }

    pub(crate) fn complete(&self, request_id: u64, result: InvocationResult) {
        if let Some(sender) = self.lock().remove(&request_id) {
            // The caller gave up meanwhile; the result stays in the partition.
            let _ = sender.send(result);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<InvocationResult>>> {
        // The map stays consistent under a panic (single inserts and removes).
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One caller's wait; dropping it (the caller went away) unregisters it.
pub(crate) struct Waiter {
    request_id: u64,
    receiver: oneshot::Receiver<InvocationResult>,
    waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<InvocationResult>>>>,
}

impl Waiter {
    pub(crate) fn request_id(&self) -> u64 {
        self.request_id
    }

    /// The result, or `None` when the worker stopped first.
    pub(crate) async fn wait(mut self) -> Option<InvocationResult> {
        (&mut self.receiver).await.ok()
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.request_id);
    }
}
