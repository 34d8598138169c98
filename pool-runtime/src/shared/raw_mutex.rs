//! A robust, process-shared, error-checking pthread mutex placed in shared
//! memory, and a poison flag beside it. See `pthread_mutexattr_setrobust(3)`.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

/// How a lock was taken.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Taken {
    /// From an unlock.
    Clean,
    /// From a holder that died holding it (`EOWNERDEAD`); the mutex is made
    /// consistent again at once, and the poison flag set.
    OwnerDied,
}

/// The lock of a shared mutex or array. Lives in a shared mapping, and is
/// never moved once [`RawMutex::init`] has run.
pub(super) struct RawMutex {
    mutex: UnsafeCell<libc::pthread_mutex_t>,
    /// Set when a holder died or panicked; cleared only on request. Kept
    /// beside the mutex so that every process sees it, not only the one
    /// that got `EOWNERDEAD`.
    pub(super) poisoned: AtomicBool,
}

// SAFETY: the pthread mutex is made for concurrent use through a pointer
// (that is its purpose); it is only reached through `UnsafeCell::get`.
unsafe impl Sync for RawMutex {}

// A panic with the lock held poisons it (as std's `Mutex`), so a value seen
// across a caught panic is flagged, not silently broken.
impl std::panic::RefUnwindSafe for RawMutex {}

fn check(call: &str, rc: libc::c_int) {
    assert_eq!(rc, 0, "{call}: {}", std::io::Error::from_raw_os_error(rc));
}

impl RawMutex {
    /// Not usable before `init` (all zeroes, as the mapping's pages).
    pub(super) fn uninit() -> Self {
        RawMutex {
            // SAFETY: `pthread_mutex_t` is a C struct of integers, for which
            // all-zero bytes are a valid value (it is glibc's static initializer).
            mutex: UnsafeCell::new(unsafe { std::mem::zeroed() }),
            poisoned: AtomicBool::new(false),
        }
    }

    /// Initializes the mutex where it lies, shared between processes,
    /// robust (a holder's death hands the next locker `EOWNERDEAD`) and
    /// error-checking (relocking in the holding thread fails, not hangs).
    pub(super) fn init(&self) {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        let attr = attr.as_mut_ptr();
        // SAFETY: `attr` points to writable storage for an attribute object.
        check("pthread_mutexattr_init", unsafe { libc::pthread_mutexattr_init(attr) });
        // SAFETY: `attr` was initialized just above.
        let shared = unsafe { libc::pthread_mutexattr_setpshared(attr, libc::PTHREAD_PROCESS_SHARED) };
        check("pthread_mutexattr_setpshared", shared);
        // SAFETY: as above.
        let robust = unsafe { libc::pthread_mutexattr_setrobust(attr, libc::PTHREAD_MUTEX_ROBUST) };
        check("pthread_mutexattr_setrobust", robust);
        // SAFETY: as above.
        let kind = unsafe { libc::pthread_mutexattr_settype(attr, libc::PTHREAD_MUTEX_ERRORCHECK) };
        check("pthread_mutexattr_settype", kind);
        // SAFETY: the mutex lies in the shared mapping, which no other
        // process or thread can reach yet (its handle is being made), and
        // stays there unmoved for the mapping's life.
        check("pthread_mutex_init", unsafe { libc::pthread_mutex_init(self.mutex.get(), attr) });
        // SAFETY: `attr` is initialized, and no longer needed by the mutex.
        unsafe { libc::pthread_mutexattr_destroy(attr) };
    }

    /// Blocks until this thread holds the lock.
    ///
    /// # Panics
    ///
    /// If this thread already holds it (`EDEADLK`: waiting would be forever).
    pub(super) fn lock(&self) -> Taken {
        // SAFETY: an initialized mutex that outlives the call.
        let rc = unsafe { libc::pthread_mutex_lock(self.mutex.get()) };
        self.taken(rc).expect("pthread_mutex_lock only returns once it holds the lock")
    }

    /// The lock if it is free now.
    pub(super) fn try_lock(&self) -> Option<Taken> {
        // SAFETY: an initialized mutex that outlives the call.
        let rc = unsafe { libc::pthread_mutex_trylock(self.mutex.get()) };
        self.taken(rc)
    }

    /// The lock if it comes free within `wait`. The deadline is on the
    /// realtime clock (`pthread_mutex_timedlock(3)`; libc binds no
    /// `clocklock`), so a jump of the wall clock moves it.
    pub(super) fn lock_timeout(&self, wait: Duration) -> Option<Taken> {
        let since_epoch = (SystemTime::now() + wait)
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let deadline = libc::timespec {
            tv_sec: since_epoch.as_secs().try_into().unwrap_or(libc::time_t::MAX),
            tv_nsec: since_epoch.subsec_nanos().into(),
        };
        // SAFETY: an initialized mutex that outlives the call, and a valid timespec.
        let rc = unsafe { libc::pthread_mutex_timedlock(self.mutex.get(), &deadline) };
        self.taken(rc)
    }

    /// Reads a lock call's result: held (how), or busy.
    fn taken(&self, rc: libc::c_int) -> Option<Taken> {
        match rc {
            0 => Some(Taken::Clean),
            libc::EOWNERDEAD => {
                self.poisoned.store(true, Ordering::Release);
                // Consistent at once: the poison flag carries the news to
                // every later locker, and an unlock without this call would
                // leave the mutex unusable for good (`ENOTRECOVERABLE`).
                // SAFETY: this thread holds the mutex (EOWNERDEAD means so).
                check("pthread_mutex_consistent", unsafe {
                    libc::pthread_mutex_consistent(self.mutex.get())
                });
                Some(Taken::OwnerDied)
            }
            libc::EBUSY | libc::ETIMEDOUT => None,
            libc::EDEADLK => panic!(
                "a shared mutex was locked again by the thread that holds it; \
                 drop the first guard before locking again"
            ),
            rc => panic!("locking a shared mutex: {}", std::io::Error::from_raw_os_error(rc)),
        }
    }

    /// Releases the lock this thread holds.
    pub(super) fn unlock(&self) {
        // SAFETY: called only by a guard, which this thread's lock call made.
        check("pthread_mutex_unlock", unsafe { libc::pthread_mutex_unlock(self.mutex.get()) });
    }
}
