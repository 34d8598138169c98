//! [`Submitted`]: the handle of one call, as `concurrent.futures` users know
//! it: wait with a timeout, look without blocking, cancel, and own it (move
//! it to a thread or a spawned task without borrowing the pool).

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::Imap;
use crate::error::{Error, ErrorKind};

/// The handle of one [`Pool::submit`](crate::Pool::submit)ted call.
///
/// With the `async` feature, it is also a `Future` of the outcome: `.await`
/// it instead of calling [`wait`](Submitted::wait). Dropping it cancels the
/// call if no worker holds it yet, and discards its outcome otherwise.
///
/// `'p` is the borrow of the pool; [`into_owned`](Submitted::into_owned)
/// gives a `Submitted<'static, R>` that can go to another thread or to
/// `tokio::spawn`.
///
/// ```
/// use std::time::Duration;
/// use pool_runtime::{worker_init, worker_task, Pool};
///
/// #[worker_init]
/// fn none(_: &()) -> u8 { 0 }
///
/// #[worker_task]
/// fn nap(ms: u64) -> u64 {
///     std::thread::sleep(Duration::from_millis(ms));
///     ms
/// }
///
/// # fn main() -> Result<(), pool_runtime::Error> {
/// let pool: Pool<u8> = Pool::builder().workers(1).build(none, ())?;
/// let slow = pool.submit(nap, 300);
/// // Not done within 10 ms: the handle comes back, the call goes on.
/// let slow = slow.wait_timeout(Duration::from_millis(10)).unwrap_err();
/// assert!(!slow.is_finished());
/// assert_eq!(slow.wait_timeout(Duration::from_secs(10)).ok().unwrap()?, 300);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Submitted<'p, R> {
    // Boxed: a handle is a pointer to move around (into `Vec`s of thousands,
    // into threads), whatever the stream's size.
    pub(super) stream: Box<Imap<'static, std::iter::Empty<()>, R>>,
    _pool: PhantomData<&'p ()>,
}

// `Submitted` erases its input type: the one input was encoded at submit.
impl<'p, R: DeserializeOwned> Submitted<'p, R> {
    pub(super) fn new(stream: Imap<'static, std::iter::Empty<()>, R>) -> Self {
        Submitted {
            stream: Box::new(stream),
            _pool: PhantomData,
        }
    }

    /// Waits for the output.
    pub fn wait(mut self) -> Result<R, Error> {
        self.stream.next().unwrap_or_else(|| Err(no_outcome()))
    }

    /// Waits at most `timeout` for the output: `Ok` with the call's outcome,
    /// or `Err` with this handle back if the time ran out first. The call
    /// goes on either way (as with `Future.result(timeout)`); wait again,
    /// [`cancel`](Submitted::cancel) it, or drop the handle.
    ///
    /// # Errors
    ///
    /// `Err(self)` when `timeout` passed with no outcome yet.
    pub fn wait_timeout(self, timeout: Duration) -> Result<Result<R, Error>, Self> {
        let Some(deadline) = Instant::now().checked_add(timeout) else {
            return Ok(self.wait());
        };
        // Reads what has come even with a zero timeout.
        if self.is_finished() {
            return Ok(self.wait());
        }
        let job = self.stream.job;
        let ready = {
            let core = (self.stream.driver)
                .wait_until_deadline(|core| core.has_completions(job), Some(deadline));
            core.has_completions(job)
        };
        // What arrived stays for this job: `wait` takes it without blocking.
        if ready {
            Ok(self.wait())
        } else {
            Err(self)
        }
    }

    /// Whether the outcome is there: [`wait`](Submitted::wait) would not
    /// block. Never blocks; if no other thread is driving the pool, it reads
    /// what the workers sent first (one `poll(2)` with a zero timeout).
    pub fn is_finished(&self) -> bool {
        if self.is_ready_locally() {
            return true;
        }
        let job = self.stream.job;
        let driver = &self.stream.driver;
        let core = driver.lock();
        if core.has_completions(job) {
            return true;
        }
        driver.step(core).has_completions(job)
    }

    /// Cancels the call if no worker has started it: `Ok(())`, and the task
    /// never runs, whether it waited in the pool's queue or behind another
    /// call in a worker (each worker holds at most two). If a worker runs
    /// it, or it is done, the call goes on and the handle comes back:
    /// `Err(self)`, as `Future.cancel()` returns `False`. Dropping a handle
    /// (after a [`wait_timeout`](Submitted::wait_timeout) that ran out, say)
    /// likewise drops a call not yet started.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pool_runtime::{worker_init, worker_task, Pool};
    ///
    /// #[worker_init]
    /// fn none(_: &()) -> u8 { 0 }
    ///
    /// #[worker_task]
    /// fn nap(ms: u64) -> u64 {
    ///     std::thread::sleep(Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// # fn main() -> Result<(), pool_runtime::Error> {
    /// let pool: Pool<u8> = Pool::builder().workers(1).build(none, ())?;
    /// let (running, next) = (pool.submit(nap, 200), pool.submit(nap, 1));
    /// let queued = pool.submit(nap, 2);
    /// assert!(queued.cancel().is_ok()); // no worker had it: never runs
    /// assert!(next.cancel().is_ok()); // waiting behind `running`: never runs
    /// let running = running.cancel().unwrap_err(); // the worker runs it
    /// assert_eq!(running.wait()?, 200);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// `Err(self)` when the call could not be cancelled.
    pub fn cancel(self) -> Result<(), Self> {
        if self.is_ready_locally() {
            return Err(self);
        }
        let cancelled = self.stream.driver.lock().try_cancel(self.stream.job);
        if cancelled {
            Ok(())
        } else {
            Err(self)
        }
    }

    /// This handle, no longer borrowing the pool: it can move to another
    /// thread, into `tokio::spawn`, or outlive the borrow. It keeps the
    /// pool's driver alive, not the pool: dropping or joining the
    /// [`Pool`](crate::Pool) first waits for every call of an owned handle
    /// still alive to finish (a dropped owned handle is not waited for), so
    /// the handle then holds its outcome.
    ///
    /// ```
    /// use pool_runtime::{worker_init, worker_task, Pool, Submitted};
    ///
    /// #[worker_init]
    /// fn none(_: &()) -> u8 { 0 }
    ///
    /// #[worker_task]
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// # fn main() -> Result<(), pool_runtime::Error> {
    /// let pool: Pool<u8> = Pool::builder().workers(2).build(none, ())?;
    /// let handle: Submitted<'static, u64> = pool.submit(square, 7).into_owned();
    /// let waiter = std::thread::spawn(move || handle.wait());
    /// drop(pool); // waits for the call of the owned handle
    /// assert_eq!(waiter.join().unwrap()?, 49);
    /// # Ok(()) }
    /// ```
    pub fn into_owned(self) -> Submitted<'static, R> {
        self.stream.driver.lock().own(self.stream.job);
        Submitted {
            stream: self.stream,
            _pool: PhantomData,
        }
    }

    /// The call's job, for `as_completed`.
    pub(crate) fn job(&self) -> crate::driver::JobId {
        self.stream.job
    }

    /// Whether the handle itself holds the outcome (a submit that failed,
    /// or completions already taken).
    pub(crate) fn is_ready_locally(&self) -> bool {
        let s = &self.stream;
        s.setup_error.is_some() || s.cursor.is_some() || !s.pending.is_empty()
    }
}

pub(super) fn no_outcome() -> Error {
    Error::new(ErrorKind::PoolBroken("the call produced no outcome".into()))
}
