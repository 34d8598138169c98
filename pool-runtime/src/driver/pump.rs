//! The `async` feature's half of the driver: wakers of async waiters, a
//! non-blocking step, and the pump thread.
//!
//! There is no driver thread, and a future must not block its executor in
//! `wait_until`. So:
//!
//! * A future or stream that finds nothing for its job first makes what
//!   progress it can without blocking ([`Driver::try_progress`]: a `poll(2)`
//!   with a zero timeout, under the lock, only if no thread holds the polling
//!   role), then registers its waker under its job ([`Waiters::wakers`]).
//!   The check and the registration happen under one hold of the lock, and
//!   completions are only added under the lock, so no wake-up is lost.
//! * One pump thread per pool (started on the first registration, named
//!   `pool-async-pump`) is an ordinary `wait_until` caller while any waker is
//!   registered: it polls for everyone like any other waiter (so task timeouts
//!   and worker deaths are handled while only async callers wait), and its
//!   predicate takes the wakers whose job has completions. It wakes them after
//!   leaving `wait_until`, without the lock (a waker may run executor code).
//! * With no waker registered the pump parks on its own condition variable
//!   and holds no role in the driver; it leaves for good when the pool shuts
//!   down: [`Driver::stop_pump`] runs first in `Driver::shutdown`, wakes it
//!   wherever it waits, and joins it, so no thread outlives the pool.
//!
//! The pump holds an `Arc` of the driver; the pool gives the driver a weak
//! reference to itself ([`Pump::attach`]) so that a future, which only
//! borrows the driver, can start the pump.

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard, OnceLock, Weak};
use std::task::Waker;
use std::thread::JoinHandle;

use super::callback::Task;
use super::{Core, Driver, JobId};

/// Async waiters, in `Core` (under the driver's lock).
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    /// The waker of each job whose future or stream waits for completions.
    wakers: HashMap<JobId, Waker>,
    /// A pump thread exists (or is being started).
    pub(super) running: bool,
    /// The pool is shutting down: the pump leaves, none is started again.
    pub(super) stop: bool,
    handle: Option<JoinHandle<()>>,
    /// Callback tasks woken, for the pump to run (`callback.rs`).
    pub(super) runnable: Vec<Arc<Task>>,
    /// Callback tasks not done yet: `join` and drop wait for them.
    pub(super) callbacks: usize,
}

/// The pump's link to its driver, in `Driver`.
#[derive(Debug, Default)]
pub(crate) struct Pump {
    /// The driver itself, for the pump thread to hold.
    me: OnceLock<Weak<Driver>>,
}

impl Pump {
    /// Gives the driver the means to start its pump thread.
    pub(crate) fn attach(driver: &Arc<Driver>) {
        let _ = driver.pump.me.set(Arc::downgrade(driver));
    }
}

/// What an async poll must do once it has released the lock.
#[derive(Debug, Default)]
#[must_use = "wakers to wake and a pump to start"]
pub(crate) struct AfterUnlock {
    wake: Vec<Waker>,
    start_pump: bool,
}

impl Core {
    /// Moves the wakers of jobs that have completions (or no longer exist) to `into`.
    fn take_ready_wakers(&mut self, into: &mut Vec<Waker>) {
        let jobs = &self.jobs;
        self.waiters.wakers.retain(|job, waker| {
            let ready = jobs.get(job).is_none_or(|j| !j.completions.is_empty());
            if ready {
                into.push(waker.clone());
            }
            !ready
        });
    }

    /// Every registered waker, at shutdown: the pump is gone, so whoever
    /// still waits must look again.
    pub(crate) fn take_all_wakers(&mut self) -> Vec<Waker> {
        self.waiters.wakers.drain().map(|(_, w)| w).collect()
    }

    /// Callback tasks queued for the pump, at shutdown: the pump is gone.
    pub(crate) fn take_runnable(&mut self) -> Vec<Arc<Task>> {
        std::mem::take(&mut self.waiters.runnable)
    }

    /// No callback is still to run: what `join` and drop wait for.
    pub(crate) fn callbacks_done(&self) -> bool {
        self.waiters.callbacks == 0
    }

    /// `job`'s future or stream no longer waits (it got its outcome, or is dropped).
    pub(crate) fn forget_waker(&mut self, job: JobId) {
        self.waiters.wakers.remove(&job);
    }

    /// Registers `waker` for `job`'s next completion, and asks for a pump if
    /// none runs. `after` must be [`finish`](Driver::finish)ed once the lock
    /// is released.
    pub(crate) fn register_waker(
        &mut self,
        driver: &Driver,
        job: JobId,
        waker: &Waker,
        after: &mut AfterUnlock,
    ) {
        match self.waiters.wakers.get_mut(&job) {
            Some(w) => w.clone_from(waker),
            None => {
                self.waiters.wakers.insert(job, waker.clone());
            }
        }
        if self.waiters.stop {
            // Cannot happen while a future borrows the pool; never hang if it does.
            after.wake.push(waker.clone());
        } else if !self.waiters.running {
            self.waiters.running = true;
            after.start_pump = true;
        } else {
            driver.sleep.unpark_pump(&mut self.roles);
        }
    }
}

impl Driver {
    /// One step of the driver that never blocks ([`Driver::step`]); wakers
    /// of jobs that now have completions go to `after`.
    pub(crate) fn try_progress<'a>(
        &'a self,
        core: MutexGuard<'a, Core>,
        after: &mut AfterUnlock,
    ) -> MutexGuard<'a, Core> {
        // If another thread polls, it handles the events and wakes us
        // through the pump.
        let mut core = self.step(core);
        core.take_ready_wakers(&mut after.wake);
        core
    }

    /// Does what an async poll left for after the lock: wakes wakers, starts
    /// the pump thread.
    pub(crate) fn finish(&self, after: AfterUnlock) {
        for w in after.wake {
            w.wake();
        }
        if after.start_pump {
            self.start_pump();
        }
    }

    pub(super) fn start_pump(&self) {
        let spawned = match self.pump.me.get().and_then(Weak::upgrade) {
            Some(me) => std::thread::Builder::new()
                .name("pool-async-pump".into())
                .spawn(move || pump(me))
                .ok(),
            // A driver outside a pool (never): no pump can hold it.
            None => None,
        };
        let mut core = self.lock();
        match spawned {
            // The only one before shutdown: `running` stays set until then.
            Some(handle) => core.waiters.handle = Some(handle),
            None => {
                // No thread to be had: every waiter is woken, so its next
                // poll retries the start and meanwhile makes progress itself
                // (`try_progress`). A busy loop, not a hang.
                core.waiters.running = false;
                let wake: Vec<Waker> = core.waiters.wakers.drain().map(|(_, w)| w).collect();
                drop(core);
                wake.into_iter().for_each(Waker::wake);
            }
        }
    }

    /// Stops the pump thread, if any, and waits for it to be gone. Run at
    /// the start of `shutdown`; idempotent. On the pump thread itself (a
    /// callback ends the pool) it does not wait: the pump sees `stop` when
    /// the callback returns.
    pub(crate) fn stop_pump(&self) {
        let mut core = self.lock();
        core.waiters.stop = true;
        let Some(handle) = core.waiters.handle.take() else {
            return;
        };
        // Wherever it waits: parked, a follower on the condvar, or in `poll`.
        self.sleep.wake_all(&core.roles);
        drop(core);
        if handle.thread().id() != std::thread::current().id() {
            let _ = handle.join();
        }
    }

    /// Whether this is the pump thread: a callback runs here.
    pub(crate) fn on_pump_thread(&self) -> bool {
        let core = self.lock();
        let pump = core.waiters.handle.as_ref().map(|h| h.thread().id());
        pump == Some(std::thread::current().id())
    }
}

/// The pump thread: waits on the driver, as an ordinary waiter, while any
/// async waiter is registered, and wakes those whose job has completions.
fn pump(driver: Arc<Driver>) {
    let mut wake = Vec::new();
    loop {
        let mut core = driver.lock();
        while core.waiters.wakers.is_empty()
            && core.waiters.runnable.is_empty()
            && !core.waiters.stop
        {
            core = driver.sleep.park_pump(core);
        }
        if core.waiters.stop {
            core.waiters.running = false;
            return;
        }
        drop(core);
        let mut core = driver.wait_until(|core| {
            core.take_ready_wakers(&mut wake);
            !wake.is_empty()
                || !core.waiters.runnable.is_empty()
                || core.waiters.wakers.is_empty()
                || core.waiters.stop
        });
        let mut run = std::mem::take(&mut core.waiters.runnable);
        drop(core);
        // A callback task's waker queues it again for this thread; the
        // tasks queued run here, now (`callback.rs`).
        for w in wake.drain(..) {
            w.wake();
        }
        let mut core = driver.lock();
        run.append(&mut core.waiters.runnable);
        drop(core);
        for task in run {
            task.run();
        }
    }
}
