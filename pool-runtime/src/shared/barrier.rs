//! A rendezvous of a fixed number of parties across processes:
//! `multiprocessing.Barrier`, with a bounded wait.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::futex;
use super::region::Region;

/// The state is one futex word: the generation in the high 16 bits, the
/// parties arrived in this generation in the low 16. One word, so that
/// arriving, completing and withdrawing on timeout are each one
/// compare-and-swap: a party that gives up can never be counted in a
/// generation that completes without it.
struct State {
    word: AtomicU32,
    parties: u32,
}

const ARRIVED: u32 = 0xffff;

/// A barrier for `parties` parties in memory the driver and every worker
/// share: each [`wait_timeout`](Self::wait_timeout) returns once all have
/// arrived, and the barrier is ready for the next round. Clones are cheap
/// and refer to the same barrier.
///
/// There is no unbounded wait: a party may die before it arrives, and then
/// the others would wait forever. A party that times out withdraws, so the
/// barrier stays usable.
///
/// # Examples
///
/// Two workers and the driver meet:
///
/// ```
/// use std::time::Duration;
/// use pool_runtime::shared::SharedBarrier;
/// use pool_runtime::{worker_init, worker_task, Pool};
///
/// #[worker_init]
/// fn keep(b: &SharedBarrier) -> SharedBarrier { b.clone() }
///
/// #[worker_task]
/// fn meet(b: &mut SharedBarrier) -> bool { b.wait_timeout(Duration::from_secs(10)).is_ok() }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let barrier = SharedBarrier::new(3)?;
/// let pool = Pool::builder().workers(2).build(keep, barrier.clone())?;
/// let (mine, theirs) = std::thread::scope(|s| {
///     let workers = s.spawn(|| pool.broadcast(meet, ()));
///     (barrier.wait_timeout(Duration::from_secs(10)), workers.join().unwrap())
/// });
/// assert!(mine.is_ok());
/// assert_eq!(theirs?, [true, true]);
/// # Ok(()) }
/// ```
pub struct SharedBarrier {
    region: Arc<Region<State, ()>>,
}

/// A party of a [`SharedBarrier`] waited past its timeout (some party did
/// not arrive: slow, or dead); it withdrew.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let b = pool_runtime::shared::SharedBarrier::new(2)?;
/// let e = b.wait_timeout(Duration::from_millis(10)).unwrap_err();
/// assert_eq!(e.to_string(), "not every party reached the barrier in time");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarrierTimedOut;

impl fmt::Display for BarrierTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not every party reached the barrier in time")
    }
}

impl std::error::Error for BarrierTimedOut {}

impl SharedBarrier {
    /// Maps a new barrier for `parties` parties (1 to 65,535).
    ///
    /// # Errors
    ///
    /// The error of `mmap(2)`.
    ///
    /// # Panics
    ///
    /// If `parties` is 0 or more than 65,535.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = pool_runtime::shared::SharedBarrier::new(1)?;
    /// assert_eq!(b.wait_timeout(std::time::Duration::ZERO), Ok(true));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(parties: usize) -> std::io::Result<Self> {
        assert!(
            (1..=ARRIVED as usize).contains(&parties),
            "a barrier has 1 to 65535 parties, not {parties}"
        );
        let state = State {
            word: AtomicU32::new(0),
            parties: parties as u32,
        };
        Ok(SharedBarrier {
            region: Arc::new(Region::new(state, 0, |_| ())?),
        })
    }

    /// How many parties each round waits for.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(pool_runtime::shared::SharedBarrier::new(4)?.parties(), 4);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn parties(&self) -> usize {
        self.region.header().parties as usize
    }

    /// Arrives, and sleeps until every party has, for at most `timeout`.
    /// `Ok(true)` for exactly one party of each round (the last to arrive),
    /// `Ok(false)` for the others.
    ///
    /// # Errors
    ///
    /// [`BarrierTimedOut`] if the round did not complete in time; this
    /// party is then no longer counted.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = pool_runtime::shared::SharedBarrier::new(2)?;
    /// std::thread::scope(|s| {
    ///     let other = s.spawn(|| b.wait_timeout(Duration::from_secs(10)));
    ///     let mine = b.wait_timeout(Duration::from_secs(10));
    ///     let leaders = [mine, other.join().unwrap()].iter().filter(|r| **r == Ok(true)).count();
    ///     assert_eq!(leaders, 1);
    /// });
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, BarrierTimedOut> {
        let deadline = Instant::now() + timeout;
        let State { word, parties } = self.region.header();
        let mut now = word.load(Ordering::Acquire);
        let generation = loop {
            let (generation, arrived) = (now >> 16, now & ARRIVED);
            let next = if arrived + 1 == *parties {
                ((generation + 1) & 0xffff) << 16
            } else {
                now + 1
            };
            match word.compare_exchange_weak(now, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) if arrived + 1 == *parties => {
                    futex::wake_all(word);
                    return Ok(true);
                }
                Ok(_) => break generation,
                Err(seen) => now = seen,
            }
        };
        loop {
            let now = word.load(Ordering::Acquire);
            if now >> 16 != generation {
                return Ok(false);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // Withdraw, unless the round completed meanwhile.
                if word
                    .compare_exchange(now, now - 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return Err(BarrierTimedOut);
                }
                continue;
            }
            futex::wait(word, now, Some(left));
        }
    }
}

impl Clone for SharedBarrier {
    fn clone(&self) -> Self {
        SharedBarrier {
            region: self.region.clone(),
        }
    }
}

impl fmt::Debug for SharedBarrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let now = self.region.header().word.load(Ordering::Relaxed);
        f.debug_struct("SharedBarrier")
            .field("parties", &self.parties())
            .field("arrived", &(now & ARRIVED))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_complete_again_and_again_with_one_leader_each() {
        let b = SharedBarrier::new(3).unwrap();
        std::thread::scope(|s| {
            let parties: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| {
                        (0..50)
                            .map(|_| b.wait_timeout(Duration::from_secs(20)).unwrap())
                            .filter(|&leader| leader)
                            .count()
                    })
                })
                .collect();
            let leaders: usize = parties.into_iter().map(|p| p.join().unwrap()).sum();
            assert_eq!(leaders, 50);
        });
    }

    #[test]
    fn a_party_that_times_out_withdraws() {
        let b = SharedBarrier::new(2).unwrap();
        assert_eq!(b.wait_timeout(Duration::from_millis(20)), Err(BarrierTimedOut));
        assert!(format!("{b:?}").contains("arrived: 0"), "{b:?}");
        std::thread::scope(|s| {
            let other = s.spawn(|| b.wait_timeout(Duration::from_secs(10)));
            let mine = b.wait_timeout(Duration::from_secs(10));
            assert!(mine.is_ok() && other.join().unwrap().is_ok());
        });
    }
}
