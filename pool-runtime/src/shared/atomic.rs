//! Atomics every process of a pool sees: one ([`SharedAtomic`]) or an
//! array of them ([`SharedAtomicArray`]).

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use super::region::Region;
use super::Atomic;

/// One std atomic (`AtomicU64`, `AtomicBool`, …) in memory the driver and
/// every worker share: `multiprocessing.Value` without the lock. Derefs to
/// the atomic, so every std method works across processes.
///
/// Create it before `build` and pass it (or a struct holding it) as init's
/// argument; clones are cheap (an `Arc`) and all refer to the same atomic,
/// so init can keep one in the worker's state.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use pool_runtime::shared::SharedAtomic;
/// use pool_runtime::{worker_init, worker_task, Pool};
///
/// #[worker_init]
/// fn keep(done: &SharedAtomic<AtomicU64>) -> SharedAtomic<AtomicU64> { done.clone() }
///
/// #[worker_task]
/// fn count(done: &mut SharedAtomic<AtomicU64>, n: u64) {
///     done.fetch_add(n, Ordering::Relaxed);
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let done = SharedAtomic::new(AtomicU64::new(0))?;
/// let pool = Pool::builder().workers(2).build(keep, done.clone())?;
/// pool.map(count, 1..=100u64)?;
/// assert_eq!(done.load(Ordering::Relaxed), 5050);
/// # Ok(()) }
/// ```
pub struct SharedAtomic<A: Atomic> {
    region: Arc<Region<A, ()>>,
}

impl<A: Atomic> SharedAtomic<A> {
    /// Maps a new shared page holding `atomic`.
    ///
    /// # Errors
    ///
    /// The error of `mmap(2)` (out of memory or of mappings).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// let stop = pool_runtime::shared::SharedAtomic::new(AtomicBool::new(false))?;
    /// stop.store(true, Ordering::Release);
    /// assert!(stop.load(Ordering::Acquire));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(atomic: A) -> std::io::Result<Self> {
        Ok(SharedAtomic {
            region: Arc::new(Region::new(atomic, 0, |_| ())?),
        })
    }
}

impl<A: Atomic> Deref for SharedAtomic<A> {
    type Target = A;
    fn deref(&self) -> &A {
        self.region.header()
    }
}

impl<A: Atomic> Clone for SharedAtomic<A> {
    fn clone(&self) -> Self {
        SharedAtomic {
            region: self.region.clone(),
        }
    }
}

impl<A: Atomic + fmt::Debug> fmt::Debug for SharedAtomic<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedAtomic").field(&**self).finish()
    }
}

/// A fixed number of std atomics in memory the driver and every worker
/// share: `multiprocessing.Array` of integers, each element changed without
/// a lock. Derefs to `[A]`. Clones are cheap and refer to the same array.
///
/// For values that are not atomics (floats, structs), or several elements
/// changed together, use [`SharedArray`](super::SharedArray), which has a lock.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use pool_runtime::shared::SharedAtomicArray;
/// use pool_runtime::{worker_init, worker_task, Pool};
///
/// #[worker_init]
/// fn keep(hist: &SharedAtomicArray<AtomicU32>) -> SharedAtomicArray<AtomicU32> { hist.clone() }
///
/// #[worker_task]
/// fn bucket(hist: &mut SharedAtomicArray<AtomicU32>, x: u32) {
///     hist[(x % 4) as usize].fetch_add(1, Ordering::Relaxed);
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let hist = SharedAtomicArray::<AtomicU32>::new(4)?;
/// let pool = Pool::builder().workers(2).build(keep, hist.clone())?;
/// pool.map(bucket, 0..100u32)?;
/// let counts: Vec<u32> = hist.iter().map(|c| c.load(Ordering::Relaxed)).collect();
/// assert_eq!(counts, [25, 25, 25, 25]);
/// # Ok(()) }
/// ```
pub struct SharedAtomicArray<A: Atomic> {
    region: Arc<Region<(), A>>,
}

impl<A: Atomic + Default> SharedAtomicArray<A> {
    /// Maps `len` atomics, each `A::default()` (zero, `false`).
    ///
    /// # Errors
    ///
    /// The error of `mmap(2)`, or `OutOfMemory` for a size past `usize`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::AtomicU64;
    /// let a = pool_runtime::shared::SharedAtomicArray::<AtomicU64>::new(8)?;
    /// assert_eq!(a.len(), 8);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(len: usize) -> std::io::Result<Self> {
        Self::from_fn(len, |_| A::default())
    }
}

impl<A: Atomic> SharedAtomicArray<A> {
    /// Maps `len` atomics, element `i` being `f(i)`.
    ///
    /// # Errors
    ///
    /// As [`SharedAtomicArray::new`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicI64, Ordering};
    /// let a = pool_runtime::shared::SharedAtomicArray::from_fn(3, |i| AtomicI64::new(-(i as i64)))?;
    /// assert_eq!(a[2].load(Ordering::Relaxed), -2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn from_fn(len: usize, f: impl FnMut(usize) -> A) -> std::io::Result<Self> {
        Ok(SharedAtomicArray {
            region: Arc::new(Region::new((), len, f)?),
        })
    }
}

impl<A: Atomic> Deref for SharedAtomicArray<A> {
    type Target = [A];
    fn deref(&self) -> &[A] {
        self.region.atomics()
    }
}

impl<A: Atomic> Clone for SharedAtomicArray<A> {
    fn clone(&self) -> Self {
        SharedAtomicArray {
            region: self.region.clone(),
        }
    }
}

impl<A: Atomic + fmt::Debug> fmt::Debug for SharedAtomicArray<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedAtomicArray").field(&&**self).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn clones_share_one_atomic() {
        let a = SharedAtomic::new(AtomicU64::new(1)).unwrap();
        let b = a.clone();
        b.fetch_add(41, Ordering::Relaxed);
        assert_eq!(a.load(Ordering::Relaxed), 42);
        assert_eq!(format!("{a:?}"), "SharedAtomic(42)");
    }

    #[test]
    fn an_empty_array_is_fine() {
        let a = SharedAtomicArray::<AtomicU64>::new(0).unwrap();
        assert!(a.is_empty());
    }
}
