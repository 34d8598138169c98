//! The `async` feature: [`Submitted`] is a [`Future`], and
//! [`Imap::into_stream`] turns an `imap`/`imap_unordered` into a
//! [`futures_core::Stream`]. Runtime-agnostic: any executor polls
//! them, and none is a dependency.
//!
//! A poll never blocks its thread on the workers: it takes what has arrived
//! for its job, or makes what progress it can without blocking
//! (`Driver::try_progress`), or registers its waker and returns `Pending`.
//! A per-pool pump thread then drives the pool for it, as any blocking caller
//! would, and wakes it when its job has outcomes (see `driver/pump.rs`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::future::FusedFuture;
use futures_core::stream::{FusedStream, Stream};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Imap, Submitted};
use crate::driver::pump::AfterUnlock;
use crate::error::{Error, ErrorKind};

impl<'p, I, R> Imap<'p, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    /// This `imap` (or `imap_unordered`) as a [`Stream`] of the same
    /// outcomes, in the same order, for async code. Available with the
    /// `async` feature.
    ///
    /// Polling the stream never blocks on the workers: a per-pool thread
    /// drives the pool while async callers wait, and wakes them (any executor
    /// will do; the library depends on none). It still pulls and encodes the
    /// inputs on the polling thread, so the source iterator should be cheap
    /// and must not block. Dropping the stream early is as with the iterator:
    /// inputs not yet pulled are never pulled, queued batches are dropped
    /// unrun, and outcomes of batches a worker already holds are discarded;
    /// the pool stays usable.
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// use pool_runtime::{worker_init, worker_task, Pool};
    ///
    /// struct Base(u64);
    ///
    /// #[worker_init]
    /// fn base(b: &u64) -> Base { Base(*b) }
    ///
    /// #[worker_task]
    /// fn add(b: &Base, x: u64) -> u64 { b.0 + x }
    ///
    /// # fn main() -> Result<(), pool_runtime::Error> {
    /// let pool = Pool::builder().workers(2).build(base, 100)?;
    /// // Any executor: here `futures-executor`'s, in tokio `.await` the same way.
    /// futures_executor::block_on(async {
    ///     let mut ordered = pool.imap(add, 0..5).into_stream();
    ///     let mut got = Vec::new();
    ///     while let Some(r) = ordered.next().await {
    ///         got.push(r?);
    ///     }
    ///     assert_eq!(got, vec![100, 101, 102, 103, 104]);
    ///
    ///     // Completion order; one outcome per input.
    ///     let mut any_order: Vec<u64> = pool
    ///         .imap_unordered(add, 0..5)
    ///         .into_stream()
    ///         .map(|r| r.unwrap())
    ///         .collect()
    ///         .await;
    ///     any_order.sort();
    ///     assert_eq!(any_order, got);
    ///     Ok(())
    /// })
    /// # }
    /// ```
    ///
    /// *Feature `async` (on by default).*
    pub fn into_stream(self) -> ImapStream<'p, I, R> {
        ImapStream {
            imap: self,
            registered: false,
        }
    }

    /// One poll: the next outcome, the end, or `Pending` with `cx`'s waker
    /// registered for this job. `registered` tracks whether a waker of ours
    /// may be registered.
    fn poll_step(
        &mut self,
        cx: &mut Context<'_>,
        registered: &mut bool,
    ) -> Poll<Option<Result<R, Error>>> {
        #[cfg(feature = "progress")]
        if self.progress.is_wanted() {
            self.progress.start(Iterator::size_hint(self));
        }
        let mut after = AfterUnlock::default();
        let polled = self.step(|s| s.try_receive(cx, &mut after));
        #[cfg(feature = "progress")]
        if let Poll::Ready(outcome) = &polled {
            self.progress.observe(outcome.as_ref());
        }
        match polled {
            Poll::Pending => *registered = true,
            Poll::Ready(_) if *registered => {
                *registered = false;
                self.driver.lock().forget_waker(self.job);
            }
            Poll::Ready(_) => {}
        }
        self.driver.finish(after);
        polled
    }

    /// Takes this job's completions, after a step of the driver that does
    /// not block if there were none; with none still, registers the waker.
    fn try_receive(&mut self, cx: &mut Context<'_>, after: &mut AfterUnlock) -> Poll<()> {
        let driver = &*self.driver;
        let job = self.job;
        let mut core = driver.lock();
        // Not ours to wake below: this poll is already under way.
        core.forget_waker(job);
        if !core.has_completions(job) {
            core = driver.try_progress(core, after);
        }
        if core.has_completions(job) {
            Self::absorb(core, job, &mut self.arrived);
            self.sort_arrived();
            return Poll::Ready(());
        }
        // Checked and registered under one hold of the lock: completions
        // arriving later find the waker.
        core.register_waker(driver, job, cx.waker(), after);
        Poll::Pending
    }
}

/// The [`Stream`] form of an [`Imap`], from [`Imap::into_stream`]: the same
/// outcomes, one per input, in input order (from [`Pool::imap`](super::Pool::imap))
/// or completion order (from [`Pool::imap_unordered`](super::Pool::imap_unordered)).
/// Available with the `async` feature.
///
/// Dropping it early cancels the inputs not yet sent to a worker; the pool
/// stays usable.
///
/// *Feature `async` (on by default).*
pub struct ImapStream<'p, I: Iterator, R> {
    imap: Imap<'p, I, R>,
    registered: bool,
}

// The stream never pins its fields: the source iterator is only ever used
// through `&mut I` (`Iterator::next`), so moving it between polls is fine.
impl<I: Iterator, R> Unpin for ImapStream<'_, I, R> {}

impl<I: Iterator, R> std::fmt::Debug for ImapStream<'_, I, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapStream")
            .field("imap", &self.imap)
            .finish_non_exhaustive()
    }
}

impl<I, R> Stream for ImapStream<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    type Item = Result<R, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        this.imap.poll_step(cx, &mut this.registered)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.imap.size_hint()
    }
}

impl<I, R> FusedStream for ImapStream<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    fn is_terminated(&self) -> bool {
        self.imap.is_finished()
    }
}


/// With the `async` feature, a [`Submitted`] handle is a future of the
/// call's outcome: `.await` it instead of calling [`wait`](Submitted::wait).
/// Dropping it before it is ready cancels the call if no worker has it yet,
/// and discards its outcome otherwise; the pool stays usable.
///
/// ```
/// use pool_runtime::{worker_init, worker_task, Pool};
///
/// struct Idle;
///
/// #[worker_init]
/// fn idle(_: &()) -> Idle { Idle }
///
/// #[worker_task]
/// fn square(x: u64) -> u64 { x * x }
///
/// # fn main() -> Result<(), pool_runtime::Error> {
/// let pool = Pool::builder().workers(2).build(idle, ())?;
/// let sum = futures_executor::block_on(async {
///     // Both run at once: each `submit` starts its call right away.
///     let (a, b) = (pool.submit(square, 3), pool.submit(square, 4));
///     Ok::<_, pool_runtime::Error>(a.await? + b.await?)
/// })?;
/// assert_eq!(sum, 25);
/// # Ok(()) }
/// ```
///
/// *Feature `async` (on by default).*
impl<R: DeserializeOwned> Future for Submitted<'_, R> {
    type Output = Result<R, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // Forget our waker whenever the outcome is there: the handle keeps
        // no flag of its own.
        let mut registered = true;
        this.stream
            .poll_step(cx, &mut registered)
            .map(|outcome| outcome.unwrap_or_else(|| Err(no_outcome())))
    }
}

impl<R: DeserializeOwned> FusedFuture for Submitted<'_, R> {
    fn is_terminated(&self) -> bool {
        self.stream.is_finished()
    }
}


fn no_outcome() -> Error {
    Error::new(ErrorKind::PoolBroken("the call produced no outcome".into()))
}
