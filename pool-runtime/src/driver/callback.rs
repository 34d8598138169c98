//! Callbacks (`Submitted::then`, `Pool::apply_async`, `Pool::map_async`):
//! each is a small future run by the pump thread, which drives the pool
//! while any is pending, as it does for async waiters (`pump.rs`).
//!
//! A task's waker never polls on the thread that wakes it: it queues the
//! task for the pump (`Waiters::runnable`), so the callback runs on the pump
//! thread, outside the lock. Once the pool shuts down (the pump is gone),
//! the thread that ends it runs what is left, each task's future then
//! finding the outcome shutdown gave it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Wake, Waker};

use super::Driver;

type Boxed = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One callback's future, until it has run.
pub(crate) struct Task {
    future: Mutex<Option<Boxed>>,
    driver: Weak<Driver>,
}

impl Task {
    /// Polls the future once, here; counts it gone when it is done.
    pub(super) fn run(self: &Arc<Self>) {
        let waker = Waker::from(Arc::clone(self));
        let mut cx = Context::from_waker(&waker);
        let mut slot = self.future.lock().unwrap_or_else(|p| p.into_inner());
        let Some(future) = slot.as_mut() else {
            return;
        };
        // A callback that panics ends its task; the pump goes on.
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            future.as_mut().poll(&mut cx)
        }));
        if polled.map_or(true, |p| p.is_ready()) {
            *slot = None;
            drop(slot);
            if let Some(driver) = self.driver.upgrade() {
                driver.callback_done();
            }
        }
    }
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        match self.driver.upgrade() {
            Some(driver) => driver.queue_task(self),
            None => self.run(),
        }
    }
}

impl Driver {
    /// Runs `future` on the pump thread, which drives the pool until it is
    /// done; `join` and drop wait for it.
    pub(crate) fn spawn_callback(self: &Arc<Self>, future: Boxed) {
        let task = Arc::new(Task {
            future: Mutex::new(Some(future)),
            driver: Arc::downgrade(self),
        });
        self.lock().waiters.callbacks += 1;
        self.queue_task(task);
    }

    /// Queues `task` for the pump, starting or waking it; after shutdown
    /// (no pump), runs it here.
    fn queue_task(&self, task: Arc<Task>) {
        let mut core = self.lock();
        if core.waiters.stop {
            drop(core);
            return task.run();
        }
        core.waiters.runnable.push(task);
        let start = !std::mem::replace(&mut core.waiters.running, true);
        if !start {
            // Wherever it waits: parked, a follower, or in `poll`.
            self.sleep.unpark_pump(&mut core.roles);
            self.sleep.wake_followers(&core.roles);
            self.nudge(&core);
        }
        drop(core);
        if start {
            self.start_pump();
        }
    }

    /// A callback's task is done: `join` may be waiting for that.
    fn callback_done(&self) {
        let mut core = self.lock();
        core.waiters.callbacks -= 1;
        if core.waiters.callbacks == 0 {
            self.sleep.wake_followers(&core.roles);
            self.nudge(&core);
        }
    }
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task").finish_non_exhaustive()
    }
}
