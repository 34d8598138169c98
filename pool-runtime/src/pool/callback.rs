//! Callbacks, as `apply_async(callback=, error_callback=)` and
//! `map_async(callback=)` have them: [`Submitted::then`],
//! [`Pool::apply_async`], [`Pool::map_async`].
//!
//! Each callback runs on the pool's pump thread (`pool-async-pump`, the
//! thread that drives the pool for async waiters), once the outcome is
//! there; see `driver/callback.rs`.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;

use futures_core::Stream;
use serde::de::DeserializeOwned;

use super::{route, Imap, Pool, Submitted};
use crate::error::Error;
use crate::task::Task;

impl<R: DeserializeOwned + Send + 'static> Submitted<'_, R> {
    /// Runs `callback` with the outcome once it is there, on the pool's pump
    /// thread (`pool-async-pump`), never on the caller's: the call goes on
    /// without anyone waiting for it. The pump drives the pool meanwhile, as
    /// for async waiters; a slow callback holds up the other callbacks and
    /// async waiters, so hand long work to a thread or a channel. A callback
    /// may use the pool (`apply`, `submit`, `wait`): the pump is an ordinary
    /// waiter. If it panics, the panic ends that callback only.
    ///
    /// Dropping or joining the pool first waits for every callback still
    /// to run; if the pool ends another way first (a panic, `terminate`), the
    /// thread that ends it runs the callbacks left, with their outcome.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use pool_runtime::{worker_init, worker_task, Pool};
    ///
    /// #[worker_init]
    /// fn none(_: &()) -> u8 { 0 }
    ///
    /// #[worker_task]
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// # fn main() -> Result<(), pool_runtime::Error> {
    /// let pool: Pool<u8> = Pool::builder().workers(2).build(none, ())?;
    /// let (tx, rx) = mpsc::channel();
    /// for x in 0..4 {
    ///     let tx = tx.clone();
    ///     pool.submit(square, x).then(move |r| tx.send(r.unwrap()).unwrap());
    /// }
    /// drop(pool); // waits for every callback
    /// let mut got: Vec<u64> = rx.try_iter().collect();
    /// got.sort();
    /// assert_eq!(got, vec![0, 1, 4, 9]);
    /// # Ok(()) }
    /// ```
    ///
    /// *Feature `async` (on by default).*
    pub fn then<F>(self, callback: F)
    where
        F: FnOnce(Result<R, Error>) + Send + 'static,
    {
        let handle = self.into_owned();
        let driver = Arc::clone(&handle.stream.driver);
        driver.spawn_callback(Box::pin(async move { callback(handle.await) }));
    }
}

impl<S: 'static> Pool<S> {
    /// `apply_async(f, (x,), callback=on_ok, error_callback=on_err)`: runs
    /// `task` on `input` and hands the output to `on_ok`, or the error to
    /// `on_err`, on the pool's pump thread. [`Submitted::then`] says when and
    /// where callbacks run.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use pool_runtime::{worker_init, worker_task, Pool};
    ///
    /// #[worker_init]
    /// fn none(_: &()) -> u8 { 0 }
    ///
    /// #[worker_task]
    /// fn half(x: u64) -> Result<u64, String> {
    ///     if x % 2 == 0 { Ok(x / 2) } else { Err(format!("{x} is odd")) }
    /// }
    ///
    /// # fn main() -> Result<(), pool_runtime::Error> {
    /// let pool: Pool<u8> = Pool::builder().workers(2).build(none, ())?;
    /// let (tx, rx) = mpsc::channel();
    /// let fail = tx.clone();
    /// pool.apply_async(half, 8, move |r| tx.send(r).unwrap(), move |e| panic!("{e}"));
    /// assert_eq!(rx.recv().unwrap(), Ok(4)); // the task's own `Result`
    /// # drop(fail);
    /// # Ok(()) }
    /// ```
    ///
    /// *Feature `async` (on by default).*
    pub fn apply_async<T, M, F, E>(&self, task: T, input: T::Input, on_ok: F, on_err: E)
    where
        T: Task<S, M>,
        T::Output: Send + 'static,
        F: FnOnce(T::Output) + Send + 'static,
        E: FnOnce(Error) + Send + 'static,
    {
        self.submit(task, input).then(|outcome| match outcome {
            Ok(output) => on_ok(output),
            Err(e) => on_err(e),
        })
    }

    /// `map_async(f, xs, callback=)`: runs `task` on every input and hands
    /// `callback` what [`map`](Pool::map) would return (the outputs in input
    /// order, or the first failure), on the pool's pump thread. The inputs
    /// are pulled from the iterator on that thread, as workers need them.
    /// [`Submitted::then`] says when and where callbacks run.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use pool_runtime::{worker_init, worker_task, Pool};
    ///
    /// #[worker_init]
    /// fn none(_: &()) -> u8 { 0 }
    ///
    /// #[worker_task]
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// # fn main() -> Result<(), pool_runtime::Error> {
    /// let pool: Pool<u8> = Pool::builder().workers(2).build(none, ())?;
    /// let (tx, rx) = mpsc::channel();
    /// pool.map_async(square, 0..1000, move |all| tx.send(all).unwrap());
    /// let all = rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap()?;
    /// assert_eq!(all.len(), 1000);
    /// assert_eq!(all[999], 999 * 999);
    /// # Ok(()) }
    /// ```
    ///
    /// *Feature `async` (on by default).*
    pub fn map_async<T, M, I, F>(&self, _task: T, inputs: I, callback: F)
    where
        T: Task<S, M>,
        T::Input: Send,
        T::Output: Send + 'static,
        I: IntoIterator<Item = T::Input>,
        I::IntoIter: Send + 'static,
        F: FnOnce(Result<Vec<T::Output>, Error>) + Send + 'static,
    {
        let imap = Imap::<'static, _, T::Output>::new(
            &self.driver,
            route::<T>(),
            inputs.into_iter(),
            true,
        );
        let mut stream = imap.into_stream();
        let all = async move {
            let mut out = Vec::with_capacity(stream.size_hint().0);
            while let Some(outcome) = poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await {
                match outcome {
                    Ok(output) => out.push(output),
                    // The inputs not started are dropped with the stream.
                    Err(e) => return callback(Err(e)),
                }
            }
            callback(Ok(out))
        };
        self.driver.spawn_callback(Box::pin(all));
    }
}
