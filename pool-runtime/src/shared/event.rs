//! A flag every process can wait on: `multiprocessing.Event`.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::futex;
use super::region::Region;

/// A flag in memory the driver and every worker share, that waiters sleep
/// on until someone sets it: `multiprocessing.Event`. Clones are cheap and
/// refer to the same flag.
///
/// # Examples
///
/// The driver releases workers that wait for a go signal:
///
/// ```
/// use std::time::Duration;
/// use pool_runtime::shared::SharedEvent;
/// use pool_runtime::{worker_init, worker_task, Pool};
///
/// #[worker_init]
/// fn keep(go: &SharedEvent) -> SharedEvent { go.clone() }
///
/// #[worker_task]
/// fn wait_for_go(go: &mut SharedEvent) -> bool { go.wait_timeout(Duration::from_secs(10)) }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let go = SharedEvent::new()?;
/// let pool = Pool::builder().workers(2).build(keep, go.clone())?;
/// let waiting = pool.submit(wait_for_go, ());
/// go.set();
/// assert!(waiting.wait()?);
/// # Ok(()) }
/// ```
pub struct SharedEvent {
    region: Arc<Region<AtomicU32, ()>>,
}

impl SharedEvent {
    /// Maps a new event, not set.
    ///
    /// # Errors
    ///
    /// The error of `mmap(2)`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!pool_runtime::shared::SharedEvent::new()?.is_set());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new() -> std::io::Result<Self> {
        Ok(SharedEvent {
            region: Arc::new(Region::new(AtomicU32::new(0), 0, |_| ())?),
        })
    }

    fn word(&self) -> &AtomicU32 {
        self.region.header()
    }

    /// Sets the flag and wakes every waiter, in every process.
    ///
    /// # Examples
    ///
    /// ```
    /// let e = pool_runtime::shared::SharedEvent::new()?;
    /// e.set();
    /// assert!(e.is_set());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set(&self) {
        self.word().store(1, Ordering::Release);
        futex::wake_all(self.word());
    }

    /// Clears the flag: later waits sleep again.
    ///
    /// # Examples
    ///
    /// ```
    /// let e = pool_runtime::shared::SharedEvent::new()?;
    /// e.set();
    /// e.clear();
    /// assert!(!e.is_set());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn clear(&self) {
        self.word().store(0, Ordering::Release);
    }

    /// Whether the flag is set.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!pool_runtime::shared::SharedEvent::new()?.is_set());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_set(&self) -> bool {
        self.word().load(Ordering::Acquire) == 1
    }

    /// Sleeps until the flag is set, for at most `timeout`; whether it is.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let e = pool_runtime::shared::SharedEvent::new()?;
    /// assert!(!e.wait_timeout(Duration::from_millis(10)));
    /// e.set();
    /// assert!(e.wait_timeout(Duration::from_millis(10)));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.is_set() {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            futex::wait(self.word(), 0, Some(left));
        }
    }

    /// Sleeps until the flag is set, however long that takes. Prefer
    /// [`wait_timeout`](Self::wait_timeout) when the setter may die.
    ///
    /// # Examples
    ///
    /// ```
    /// let e = pool_runtime::shared::SharedEvent::new()?;
    /// e.set();
    /// e.wait();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn wait(&self) {
        while !self.is_set() {
            futex::wait(self.word(), 0, None);
        }
    }
}

impl Clone for SharedEvent {
    fn clone(&self) -> Self {
        SharedEvent {
            region: self.region.clone(),
        }
    }
}

impl fmt::Debug for SharedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedEvent").field("set", &self.is_set()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_from_another_thread_wakes_a_waiter_early() {
        let e = SharedEvent::new().unwrap();
        let t = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                e.set();
            });
            assert!(e.wait_timeout(Duration::from_secs(10)));
        });
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
}
