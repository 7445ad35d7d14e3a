//! The invoker's concurrency slots, and who waits for one. Attempts look at the waiting count:
//! one that is idle while others wait gives its slot up by suspending.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

pub(crate) struct Slots {
    semaphore: Arc<Semaphore>,
    waiting: AtomicUsize,
    contended: Notify,
}

impl Slots {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(limit)),
            waiting: AtomicUsize::new(0),
            contended: Notify::new(),
        }
    }

    /// Waits for a slot; `None` once the invoker is stopping.
    pub(crate) async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.semaphore.clone().try_acquire_owned() {
            return Some(permit);
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.contended.notify_waiters();
        let _waiting = Waiting(&self.waiting);
        self.semaphore.clone().acquire_owned().await.ok()
    }

    /// How many invocations wait for a slot.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Whether an invocation waits for a slot.
    pub(crate) fn contended(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }

    /// Resolves when an invocation starts waiting for a slot.
    pub(crate) async fn contention(&self) {
        self.contended.notified().await
    }

    pub(crate) fn close(&self) {
        self.semaphore.close();
    }
}

/// Counts a waiter until it has its slot or gives up (its future is dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
