//! Plain data behind a cross-process lock that a holder's death poisons
//! instead of deadlocking: one value ([`SharedMutex`]) or an array
//! ([`SharedArray`]), both locked into a [`SharedGuard`].

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::raw_mutex::RawMutex;
use super::region::Region;
use super::Plain;

/// What [`SharedMutex::lock`] and [`SharedArray::lock`] return: the guard,
/// or the guard inside [`Poisoned`].
pub type LockResult<G> = Result<G, Poisoned<G>>;

/// A value of plain data in memory the driver and every worker share,
/// behind a robust cross-process lock: `multiprocessing.Value` with its
/// `Lock`, that cannot deadlock on a dead holder.
///
/// Create it before `build` and pass it (or a struct holding it) as init's
/// argument; clones are cheap and refer to the same value and lock.
///
/// **Poisoning.** A holder that dies (killed, `exit`, a crash) or panics
/// with the guard alive leaves the value possibly half-updated: every later
/// `lock`, in any process, returns `Err(`[`Poisoned`]`)`, which still holds
/// the lock and the value, until someone calls [`Poisoned::recover`] or
/// [`SharedMutex::clear_poison`]. A panic in a `#[worker_task]` counts
/// (the pool catches it and the worker lives on, but the guard was dropped
/// mid-update), as in std's `Mutex`.
///
/// The lock is a pthread mutex (`PTHREAD_PROCESS_SHARED`,
/// `PTHREAD_MUTEX_ROBUST`, `PTHREAD_MUTEX_ERRORCHECK`): locking it again in
/// the thread that holds it panics instead of hanging.
///
/// # Examples
///
/// The seeds' example: four tasks each add 1 under the lock 10,000 times.
///
/// ```
/// use pool_runtime::shared::SharedMutex;
/// use pool_runtime::{worker_init, worker_task, Pool};
///
/// #[worker_init]
/// fn keep(total: &SharedMutex<u64>) -> SharedMutex<u64> { total.clone() }
///
/// #[worker_task]
/// fn add_many(total: &mut SharedMutex<u64>, times: u32) {
///     for _ in 0..times {
///         *total.lock().unwrap() += 1;
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let total = SharedMutex::new(0u64)?;
/// let pool = Pool::builder().workers(2).build(keep, total.clone())?;
/// pool.map(add_many, [10_000; 4])?;
/// assert_eq!(*total.lock().unwrap(), 40_000);
/// # Ok(()) }
/// ```
pub struct SharedMutex<T: Plain> {
    region: Arc<Region<RawMutex, T>>,
}

/// Exclusive access to a [`SharedMutex`]'s value or a [`SharedArray`]'s
/// elements (`T` is then `[E]`); the lock is released when it drops.
///
/// It cannot be sent to another thread (a pthread mutex is unlocked by the
/// thread that locked it). Dropped during a panic, it poisons the lock.
///
/// # Examples
///
/// ```
/// let m = pool_runtime::shared::SharedMutex::new([0u8; 4])?;
/// let mut guard = m.lock().unwrap();
/// guard[1] = 9;
/// drop(guard);
/// assert_eq!(*m.lock().unwrap(), [0, 9, 0, 0]);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct SharedGuard<'a, T: ?Sized> {
    lock: &'a RawMutex,
    data: NonNull<T>,
    /// Neither `Send` nor `Sync`: tied to the locking thread.
    _thread: PhantomData<*mut ()>,
}

/// A lock whose last holder died or panicked holding it; it holds the lock
/// now, as the guard `G`, which [`into_inner`](Poisoned::into_inner) or
/// [`recover`](Poisoned::recover) gives back.
///
/// # Examples
///
/// ```
/// use pool_runtime::shared::SharedMutex;
///
/// let m = SharedMutex::new(5u32)?;
/// let _ = std::panic::catch_unwind(|| {
///     let _held = m.lock().unwrap();
///     panic!("mid-update");
/// });
/// let poisoned = m.lock().unwrap_err();
/// let mut guard = poisoned.recover(); // the value is checked: fine again
/// *guard += 1;
/// drop(guard);
/// assert_eq!(*m.lock().unwrap(), 6);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Poisoned<G> {
    guard: G,
}

/// Why [`SharedMutex::try_lock`] or [`SharedMutex::lock_timeout`] (and the
/// same on [`SharedArray`]) returned no clean guard.
///
/// # Examples
///
/// ```
/// use pool_runtime::shared::{SharedMutex, TryLockError};
///
/// let m = SharedMutex::new(0u8)?;
/// let held = m.lock().unwrap();
/// std::thread::scope(|s| {
///     s.spawn(|| assert!(matches!(m.try_lock(), Err(TryLockError::WouldBlock))));
/// });
/// drop(held);
/// assert!(m.try_lock().is_ok());
/// # Ok::<(), std::io::Error>(())
/// ```
pub enum TryLockError<G> {
    /// The lock was taken, from a holder that died or panicked.
    Poisoned(Poisoned<G>),
    /// Another thread or process holds it (past the timeout, for `lock_timeout`).
    WouldBlock,
}

impl<T: Plain> SharedMutex<T> {
    /// Maps a new shared page holding `value` and its lock.
    ///
    /// # Errors
    ///
    /// The error of `mmap(2)`.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = pool_runtime::shared::SharedMutex::new(1.5f64)?;
    /// assert_eq!(*m.lock().unwrap(), 1.5);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(value: T) -> std::io::Result<Self> {
        let region = Region::new(RawMutex::uninit(), 1, |_| value)?;
        region.header().init();
        Ok(SharedMutex {
            region: Arc::new(region),
        })
    }

    /// Blocks until this thread holds the lock, wherever the holder runs.
    ///
    /// # Errors
    ///
    /// [`Poisoned`], holding the guard, if a holder died or panicked holding
    /// the lock and the poison was not cleared since.
    ///
    /// # Panics
    ///
    /// If this thread holds the lock already.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = pool_runtime::shared::SharedMutex::new(0i32)?;
    /// *m.lock().unwrap() -= 1;
    /// assert_eq!(*m.lock().unwrap(), -1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn lock(&self) -> LockResult<SharedGuard<'_, T>> {
        let lock = self.region.header();
        lock.lock();
        poison_check(self.guard())
    }

    /// The lock if no one holds it now.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if it is held; [`TryLockError::Poisoned`] as for
    /// [`lock`](Self::lock).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = pool_runtime::shared::SharedMutex::new(0u8)?;
    /// assert!(m.try_lock().is_ok());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_lock(&self) -> Result<SharedGuard<'_, T>, TryLockError<SharedGuard<'_, T>>> {
        try_check(self.region.header().try_lock().map(|_| self.guard()))
    }

    /// The lock if it comes free within `wait`: a locker that must never
    /// hang, whatever the other processes do. The deadline is on the
    /// realtime clock (`pthread_mutex_timedlock(3)`).
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if it was still held at the deadline;
    /// [`TryLockError::Poisoned`] as for [`lock`](Self::lock).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let m = pool_runtime::shared::SharedMutex::new(0u8)?;
    /// *m.lock_timeout(Duration::from_secs(5)).ok().unwrap() = 3;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn lock_timeout(
        &self,
        wait: Duration,
    ) -> Result<SharedGuard<'_, T>, TryLockError<SharedGuard<'_, T>>> {
        try_check(self.region.header().lock_timeout(wait).map(|_| self.guard()))
    }

    /// Whether a holder died or panicked holding the lock, and nothing
    /// cleared the poison since.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = pool_runtime::shared::SharedMutex::new(0u8)?;
    /// assert!(!m.is_poisoned());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_poisoned(&self) -> bool {
        self.region.header().poisoned.load(Ordering::Acquire)
    }

    /// Declares the value sound again, for every process: later locks
    /// return `Ok`.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = pool_runtime::shared::SharedMutex::new(0u8)?;
    /// let _ = std::panic::catch_unwind(|| { let _g = m.lock(); panic!() });
    /// assert!(m.is_poisoned());
    /// m.clear_poison();
    /// assert!(m.lock().is_ok());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn clear_poison(&self) {
        self.region.header().poisoned.store(false, Ordering::Release);
    }

    /// A guard over the value; the caller has just taken the lock.
    fn guard(&self) -> SharedGuard<'_, T> {
        SharedGuard {
            lock: self.region.header(),
            data: NonNull::new(self.region.data_ptr()).expect("a mapping is never at 0"),
            _thread: PhantomData,
        }
    }
}

/// `Err(Poisoned)` if the lock (now held by `guard`) is poisoned.
fn poison_check<T: ?Sized>(guard: SharedGuard<'_, T>) -> LockResult<SharedGuard<'_, T>> {
    if guard.lock.poisoned.load(Ordering::Acquire) {
        Err(Poisoned { guard })
    } else {
        Ok(guard)
    }
}

/// `try_lock`'s result from the guard, if the lock was taken.
fn try_check<T: ?Sized>(
    taken: Option<SharedGuard<'_, T>>,
) -> Result<SharedGuard<'_, T>, TryLockError<SharedGuard<'_, T>>> {
    match taken.map(poison_check) {
        None => Err(TryLockError::WouldBlock),
        Some(Ok(guard)) => Ok(guard),
        Some(Err(poisoned)) => Err(TryLockError::Poisoned(poisoned)),
    }
}

/// A fixed number of plain-data elements in memory the driver and every
/// worker share, behind one robust cross-process lock:
/// `multiprocessing.Array` (which has a lock by default). The guard derefs
/// to `[T]`. Poisoning, clones and the lock are as for [`SharedMutex`].
///
/// For integers each changed on its own, [`SharedAtomicArray`](super::SharedAtomicArray)
/// needs no lock.
///
/// # Examples
///
/// ```
/// use pool_runtime::shared::SharedArray;
/// use pool_runtime::{worker_init, worker_task, Pool};
///
/// #[worker_init]
/// fn keep(out: &SharedArray<f64>) -> SharedArray<f64> { out.clone() }
///
/// #[worker_task]
/// fn root(out: &mut SharedArray<f64>, i: usize) {
///     let r = (i as f64).sqrt();
///     out.lock().unwrap()[i] = r;
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let out = SharedArray::new(5, 0.0f64)?;
/// let pool = Pool::builder().workers(2).build(keep, out.clone())?;
/// pool.map(root, 0..5)?;
/// assert_eq!(out.lock().unwrap()[4], 2.0);
/// # Ok(()) }
/// ```
pub struct SharedArray<T: Plain> {
    region: Arc<Region<RawMutex, T>>,
}

impl<T: Plain> SharedArray<T> {
    /// Maps `len` elements, each `value`, and their lock.
    ///
    /// # Errors
    ///
    /// The error of `mmap(2)`, or `OutOfMemory` for a size past `usize`.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = pool_runtime::shared::SharedArray::new(3, 7u16)?;
    /// assert_eq!(*a.lock().unwrap(), [7, 7, 7]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(len: usize, value: T) -> std::io::Result<Self> {
        Self::from_fn(len, |_| value)
    }

    /// Maps a copy of `values`, and their lock.
    ///
    /// # Errors
    ///
    /// As [`SharedArray::new`].
    ///
    /// # Examples
    ///
    /// ```
    /// let a = pool_runtime::shared::SharedArray::from_slice(&[1, 2, 3])?;
    /// assert_eq!(a.lock().unwrap().iter().sum::<i32>(), 6);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn from_slice(values: &[T]) -> std::io::Result<Self> {
        Self::from_fn(values.len(), |i| values[i])
    }

    /// Maps `len` elements, element `i` being `f(i)`, and their lock.
    ///
    /// # Errors
    ///
    /// As [`SharedArray::new`].
    ///
    /// # Examples
    ///
    /// ```
    /// let a = pool_runtime::shared::SharedArray::from_fn(4, |i| i * i)?;
    /// assert_eq!(a.lock().unwrap()[3], 9);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn from_fn(len: usize, f: impl FnMut(usize) -> T) -> std::io::Result<Self> {
        let region = Region::new(RawMutex::uninit(), len, f)?;
        region.header().init();
        Ok(SharedArray {
            region: Arc::new(region),
        })
    }

    /// How many elements (no lock needed: it never changes).
    ///
    /// # Examples
    ///
    /// ```
    /// let a = pool_runtime::shared::SharedArray::new(10, 0u8)?;
    /// assert_eq!(a.len(), 10);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.region.len()
    }

    /// Whether it has no element.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(pool_runtime::shared::SharedArray::<u8>::new(0, 0)?.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// As [`SharedMutex::lock`]: blocks until this thread holds the lock.
    ///
    /// # Errors
    ///
    /// [`Poisoned`] if a holder died or panicked holding it.
    ///
    /// # Panics
    ///
    /// If this thread holds the lock already.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = pool_runtime::shared::SharedArray::new(2, 0u8)?;
    /// a.lock().unwrap().copy_from_slice(&[4, 5]);
    /// assert_eq!(*a.lock().unwrap(), [4, 5]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn lock(&self) -> LockResult<SharedGuard<'_, [T]>> {
        self.region.header().lock();
        poison_check(self.guard())
    }

    /// As [`SharedMutex::try_lock`].
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if it is held; [`TryLockError::Poisoned`].
    ///
    /// # Examples
    ///
    /// ```
    /// let a = pool_runtime::shared::SharedArray::new(2, 0u8)?;
    /// assert!(a.try_lock().is_ok());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_lock(&self) -> Result<SharedGuard<'_, [T]>, TryLockError<SharedGuard<'_, [T]>>> {
        try_check(self.region.header().try_lock().map(|_| self.guard()))
    }

    /// As [`SharedMutex::lock_timeout`].
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] past the deadline; [`TryLockError::Poisoned`].
    ///
    /// # Examples
    ///
    /// ```
    /// let a = pool_runtime::shared::SharedArray::new(2, 0u8)?;
    /// assert!(a.lock_timeout(std::time::Duration::from_secs(1)).is_ok());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn lock_timeout(
        &self,
        wait: Duration,
    ) -> Result<SharedGuard<'_, [T]>, TryLockError<SharedGuard<'_, [T]>>> {
        try_check(self.region.header().lock_timeout(wait).map(|_| self.guard()))
    }

    /// As [`SharedMutex::is_poisoned`].
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!pool_runtime::shared::SharedArray::new(1, 0u8)?.is_poisoned());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_poisoned(&self) -> bool {
        self.region.header().poisoned.load(Ordering::Acquire)
    }

    /// As [`SharedMutex::clear_poison`].
    ///
    /// # Examples
    ///
    /// ```
    /// let a = pool_runtime::shared::SharedArray::new(1, 0u8)?;
    /// a.clear_poison();
    /// assert!(a.lock().is_ok());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn clear_poison(&self) {
        self.region.header().poisoned.store(false, Ordering::Release);
    }

    /// A guard over the elements; the caller has just taken the lock.
    fn guard(&self) -> SharedGuard<'_, [T]> {
        let first = NonNull::new(self.region.data_ptr()).expect("a mapping is never at 0");
        SharedGuard {
            lock: self.region.header(),
            data: NonNull::slice_from_raw_parts(first, self.region.len()),
            _thread: PhantomData,
        }
    }
}

impl<T: ?Sized> Deref for SharedGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `data` is the mutex's value (or elements), valid while the
        // mapping lives, which the `'a` borrow of its handle keeps; this
        // guard holds the lock, so no other thread or process touches it.
        unsafe { self.data.as_ref() }
    }
}

impl<T: ?Sized> DerefMut for SharedGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference
        // through the guard.
        unsafe { self.data.as_mut() }
    }
}

impl<T: ?Sized> Drop for SharedGuard<'_, T> {
    fn drop(&mut self) {
        // A panic with the guard alive may have left the value half-updated,
        // like a holder's death: say so to every later locker (std's rule).
        if std::thread::panicking() {
            self.lock.poisoned.store(true, Ordering::Release);
        }
        self.lock.unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for SharedGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<'a, T: ?Sized> Poisoned<SharedGuard<'a, T>> {
    /// The guard, and the poison cleared for every process: for a caller
    /// that checked or repaired the value.
    ///
    /// # Examples
    ///
    /// See [`Poisoned`].
    pub fn recover(self) -> SharedGuard<'a, T> {
        self.guard.lock.poisoned.store(false, Ordering::Release);
        self.guard
    }
}

impl<G> Poisoned<G> {
    /// The guard, the poison left in place (later locks still see it).
    ///
    /// # Examples
    ///
    /// ```
    /// let m = pool_runtime::shared::SharedMutex::new(1u8)?;
    /// let _ = std::panic::catch_unwind(|| { let _g = m.lock(); panic!() });
    /// let value = *m.lock().unwrap_err().into_inner();
    /// assert_eq!(value, 1);
    /// assert!(m.is_poisoned());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_inner(self) -> G {
        self.guard
    }

    /// The guard, borrowed.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = pool_runtime::shared::SharedMutex::new(1u8)?;
    /// let _ = std::panic::catch_unwind(|| { let _g = m.lock(); panic!() });
    /// assert_eq!(**m.lock().unwrap_err().get_ref(), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn get_ref(&self) -> &G {
        &self.guard
    }

    /// The guard, borrowed mutably.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = pool_runtime::shared::SharedMutex::new(1u8)?;
    /// let _ = std::panic::catch_unwind(|| { let _g = m.lock(); panic!() });
    /// **m.lock().unwrap_err().get_mut() = 2;
    /// assert_eq!(*m.lock().unwrap_err().into_inner(), 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn get_mut(&mut self) -> &mut G {
        &mut self.guard
    }
}

impl<G> fmt::Debug for Poisoned<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Poisoned").finish_non_exhaustive()
    }
}

impl<G> fmt::Display for Poisoned<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a holder of this shared lock died or panicked holding it")
    }
}

impl<G> std::error::Error for Poisoned<G> {}

impl<G> fmt::Debug for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::Poisoned(p) => f.debug_tuple("Poisoned").field(p).finish(),
            TryLockError::WouldBlock => f.write_str("WouldBlock"),
        }
    }
}

impl<G> fmt::Display for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::Poisoned(p) => p.fmt(f),
            TryLockError::WouldBlock => f.write_str("the shared lock is held by another"),
        }
    }
}

impl<G> std::error::Error for TryLockError<G> {}

impl<T: Plain> Clone for SharedMutex<T> {
    fn clone(&self) -> Self {
        SharedMutex {
            region: self.region.clone(),
        }
    }
}

impl<T: Plain> Clone for SharedArray<T> {
    fn clone(&self) -> Self {
        SharedArray {
            region: self.region.clone(),
        }
    }
}

impl<T: Plain + fmt::Debug> fmt::Debug for SharedMutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never blocks: a held lock shows as such.
        let mut d = f.debug_struct("SharedMutex");
        match self.try_lock() {
            Ok(g) => d.field("data", &*g),
            Err(TryLockError::Poisoned(p)) => d.field("data", &**p.get_ref()).field("poisoned", &true),
            Err(TryLockError::WouldBlock) => d.field("data", &format_args!("<locked>")),
        };
        d.finish()
    }
}

impl<T: Plain + fmt::Debug> fmt::Debug for SharedArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedArray")
            .field("len", &self.len())
            .field("poisoned", &self.is_poisoned())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
