//! [`Call`]: options for one call, over the pool's (`pool.call()`): a task
//! timeout and a chunk size that hold for that `map`/`imap`/`apply` only.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::chunker::Chunker;
use super::{route, Imap, Pool, Submitted};
use crate::error::Error;
use crate::task::Task;

/// One call's own options, from [`Pool::call`]; then run it with
/// [`map`](Call::map), [`map_slab`](Call::map_slab), [`imap`](Call::imap),
/// [`imap_unordered`](Call::imap_unordered), [`apply`](Call::apply) or
/// [`submit`](Call::submit). What is not set is the pool's.
///
/// ```
/// use std::time::Duration;
/// use pool_runtime::{worker_init, worker_task, ErrorKind, Pool};
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
/// let pool: Pool<u8> = Pool::builder().workers(2).build(none, ())?;
/// let quick = pool.call().task_timeout(Duration::from_millis(100));
/// let e = quick.apply(nap, 5_000).unwrap_err(); // its worker is killed and replaced
/// assert!(matches!(e.kind(), ErrorKind::TimedOut(_)));
/// assert_eq!(quick.chunk_size(4).map(nap, [1, 2, 3])?, vec![1, 2, 3]);
/// assert_eq!(pool.apply(nap, 300)?, 300); // the pool itself has no timeout
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Call<'p, S> {
    pool: &'p Pool<S>,
    task_timeout: Option<Duration>,
    chunk_size: Option<usize>,
}

impl<S> Clone for Call<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for Call<'_, S> {}

impl<S: 'static> Pool<S> {
    /// Options for one call: `pool.call().task_timeout(d).chunk_size(n).map(task, xs)`.
    pub fn call(&self) -> Call<'_, S> {
        Call {
            pool: self,
            task_timeout: None,
            chunk_size: None,
        }
    }
}

impl<'p, S: 'static> Call<'p, S> {
    /// Each input of this call that runs longer than `timeout` is killed
    /// with its worker and gets [`ErrorKind::TimedOut`](crate::ErrorKind::TimedOut),
    /// as with the pool's [`task_timeout`](crate::PoolBuilder::task_timeout),
    /// which this one replaces for the call.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// Inputs per frame sent to a worker, for this call (not adaptive).
    pub fn chunk_size(mut self, n: usize) -> Self {
        self.chunk_size = Some(n.clamp(1, u32::MAX as usize));
        self
    }

    /// [`Pool::map`] with these options.
    ///
    /// # Errors
    ///
    /// The first failure in input order, as [`Pool::map`].
    pub fn map<T, M, I>(&self, task: T, inputs: I) -> Result<Vec<T::Output>, Error>
    where
        T: Task<S, M>,
        I: IntoIterator<Item = T::Input>,
    {
        self.imap(task, inputs).collect_vec()
    }

    /// [`Pool::map_slab`] with these options.
    ///
    /// # Errors
    ///
    /// The first failure in input order, as [`Pool::map`].
    pub fn map_slab<T, M, I>(&self, task: T, inputs: I) -> Result<super::Slab<T::Output>, Error>
    where
        T: Task<S, M>,
        T::Output: super::SlabItem,
        I: IntoIterator<Item = T::Input>,
    {
        self.imap(task, inputs).collect_slab()
    }

    /// [`Pool::imap`] with these options.
    pub fn imap<T, M, I>(&self, _task: T, inputs: I) -> Imap<'p, I::IntoIter, T::Output>
    where
        T: Task<S, M>,
        I: IntoIterator<Item = T::Input>,
    {
        self.set(self.pool.stream(route::<T>(), inputs.into_iter(), true))
    }

    /// [`Pool::imap_unordered`] with these options.
    pub fn imap_unordered<T, M, I>(&self, _task: T, inputs: I) -> Imap<'p, I::IntoIter, T::Output>
    where
        T: Task<S, M>,
        I: IntoIterator<Item = T::Input>,
    {
        self.set(self.pool.stream(route::<T>(), inputs.into_iter(), false))
    }

    /// [`Pool::apply`] with these options (the chunk size means nothing here).
    ///
    /// # Errors
    ///
    /// What the call failed with, as [`Pool::apply`].
    pub fn apply<T, M>(&self, task: T, input: T::Input) -> Result<T::Output, Error>
    where
        T: Task<S, M>,
    {
        self.submit(task, input).wait()
    }

    /// [`Pool::submit`] with these options (the chunk size means nothing here).
    pub fn submit<T, M>(&self, task: T, input: T::Input) -> Submitted<'p, T::Output>
    where
        T: Task<S, M>,
    {
        self.pool.submit_with(task, input, self.task_timeout)
    }

    /// The options, on a stream not yet fed.
    fn set<I, R>(&self, mut stream: Imap<'p, I, R>) -> Imap<'p, I, R>
    where
        I: Iterator,
        I::Item: Serialize,
        R: DeserializeOwned,
    {
        if self.task_timeout.is_some() {
            let mut core = stream.driver.lock();
            core.set_task_timeout(stream.job, self.task_timeout);
        }
        if let Some(n) = self.chunk_size {
            stream.chunker = Chunker::new(Some(n), None, self.pool.workers());
        }
        stream
    }
}
