//! [`as_completed`]: waiting on many handles at once, outcomes in the order
//! they come, as `concurrent.futures.as_completed` gives them.
//!
//! The set is known to the core (`driver/handles.rs`): each job of it that
//! gets a completion is queued for the set, so a wait costs O(1) per wake,
//! whatever the number of handles, and sleeps as every waiter does.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::Submitted;
use crate::driver::{Driver, JobId};
use crate::error::Error;

/// Waits on many [`Submitted`] handles of one pool: an iterator of
/// `(index, outcome)` in the order the calls finish, where `index` is the
/// handle's position in `handles`. `concurrent.futures.as_completed`, and
/// with [`next_timeout`](AsCompleted::next_timeout) and
/// [`into_remaining`](AsCompleted::into_remaining), `wait(...,
/// FIRST_COMPLETED)`.
///
/// Blocking in [`next`](Iterator::next) drives the pool as any wait does.
/// Dropping the iterator drops the handles it still holds: calls no worker
/// holds yet are cancelled.
///
/// # Panics
///
/// If the handles come from more than one pool.
///
/// ```
/// use pool_runtime::{as_completed, worker_init, worker_task, Pool};
///
/// #[worker_init]
/// fn none(_: &()) -> u8 { 0 }
///
/// #[worker_task]
/// fn nap(ms: u64) -> u64 {
///     std::thread::sleep(std::time::Duration::from_millis(ms));
///     ms
/// }
///
/// # fn main() -> Result<(), pool_runtime::Error> {
/// let pool: Pool<u8> = Pool::builder().workers(3).build(none, ())?;
/// let handles: Vec<_> = [300, 10, 150].into_iter().map(|ms| pool.submit(nap, ms)).collect();
/// let order: Vec<usize> = as_completed(handles).map(|(i, r)| { r.unwrap(); i }).collect();
/// assert_eq!(order, vec![1, 2, 0]); // 10 ms first, then 150, then 300
/// # Ok(()) }
/// ```
pub fn as_completed<'p, R, H>(handles: H) -> AsCompleted<'p, R>
where
    R: DeserializeOwned,
    H: IntoIterator<Item = Submitted<'p, R>>,
{
    let mut driver: Option<Arc<Driver>> = None;
    let mut ready = VecDeque::new();
    let mut waiting = HashMap::new();
    for (i, h) in handles.into_iter().enumerate() {
        match &driver {
            None => driver = Some(Arc::clone(&h.stream.driver)),
            Some(d) => assert!(
                Arc::ptr_eq(d, &h.stream.driver),
                "as_completed: every handle must come from the same pool"
            ),
        }
        if h.is_ready_locally() {
            ready.push_back((i, h));
        } else {
            waiting.insert(h.job(), (i, h));
        }
    }
    let set = driver
        .as_ref()
        .map_or(0, |d| d.lock().watch(waiting.keys().copied()));
    AsCompleted {
        driver,
        set,
        ready,
        waiting,
    }
}

/// The iterator of [`as_completed`]: `(index, outcome)` in completion order.
#[derive(Debug)]
pub struct AsCompleted<'p, R> {
    driver: Option<Arc<Driver>>,
    /// The core's name for this set of jobs.
    set: u64,
    /// Handles whose outcome the handle itself holds: first out.
    ready: VecDeque<(usize, Submitted<'p, R>)>,
    waiting: HashMap<JobId, (usize, Submitted<'p, R>)>,
}

impl<'p, R: DeserializeOwned> AsCompleted<'p, R> {
    /// How many handles have not been yielded yet.
    pub fn len(&self) -> usize {
        self.ready.len() + self.waiting.len()
    }

    /// Whether every handle has been yielded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next call to finish, waiting at most `timeout` for it: `None` if
    /// none finished in time, or none is left ([`is_empty`](AsCompleted::is_empty)).
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<(usize, Result<R, Error>)> {
        self.next_by(Instant::now().checked_add(timeout))
    }

    /// The handles not yielded yet, with their index, in no order: what
    /// `wait(fs, return_when=FIRST_COMPLETED)` calls `not_done`.
    ///
    /// ```
    /// # use pool_runtime::{as_completed, worker_init, worker_task, Pool};
    /// # #[worker_init] fn none(_: &()) -> u8 { 0 }
    /// # #[worker_task] fn nap(ms: u64) -> u64 { std::thread::sleep(std::time::Duration::from_millis(ms)); ms }
    /// # fn main() -> Result<(), pool_runtime::Error> {
    /// # let pool: Pool<u8> = Pool::builder().workers(2).build(none, ())?;
    /// let mut first = as_completed([pool.submit(nap, 5), pool.submit(nap, 400)]);
    /// let (i, ms) = first.next().unwrap();
    /// assert_eq!((i, ms?), (0, 5));
    /// let rest = first.into_remaining();
    /// assert_eq!(rest.len(), 1);
    /// assert_eq!(rest.into_iter().next().unwrap().1.wait()?, 400);
    /// # Ok(()) }
    /// ```
    pub fn into_remaining(mut self) -> Vec<(usize, Submitted<'p, R>)> {
        let mut rest: Vec<_> = self.ready.drain(..).collect();
        rest.extend(self.waiting.drain().map(|(_, h)| h));
        rest
    }

    /// The next outcome, waiting until `deadline` (`None`: for ever).
    fn next_by(&mut self, deadline: Option<Instant>) -> Option<(usize, Result<R, Error>)> {
        if let Some((i, h)) = self.ready.pop_front() {
            return Some((i, h.wait()));
        }
        let driver = self.driver.as_ref()?;
        let set = self.set;
        while !self.waiting.is_empty() {
            let job = {
                let mut core = driver.wait_until_deadline(|core| core.has_ready(set), deadline);
                core.next_ready(set)
            };
            let Some(job) = job else {
                return None; // past the deadline
            };
            // Its completions stay for it: `wait` takes them without blocking.
            if let Some((i, h)) = self.waiting.remove(&job) {
                return Some((i, h.wait()));
            }
        }
        None
    }
}

impl<R: DeserializeOwned> Iterator for AsCompleted<'_, R> {
    type Item = (usize, Result<R, Error>);

    fn next(&mut self) -> Option<Self::Item> {
        self.next_by(None)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len(), Some(self.len()))
    }
}

impl<R: DeserializeOwned> ExactSizeIterator for AsCompleted<'_, R> {}

impl<R> Drop for AsCompleted<'_, R> {
    fn drop(&mut self) {
        if let Some(d) = &self.driver {
            d.lock().unwatch(self.set);
        }
    }
}
