//! State shared by all workers: atomics, plain-data values and arrays
//! behind a robust cross-process lock, an event and a barrier, in memory
//! the driver and every worker map.
//!
//! Python's `multiprocessing.Value`, `Array`, `Lock`, `Event` and
//! `Barrier`, typed. Each handle owns an anonymous `MAP_SHARED` mapping
//! (see `mmap(2)`): create it **before** [`build`](crate::PoolBuilder::build)
//! and pass it, or a struct of them, as init's argument. The fork server
//! and every worker it forks, replacements included, then map the same
//! pages; a clone is an `Arc` of the mapping, so init keeps one in the
//! worker's state. A handle created after `build` is seen by the driver
//! alone.
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use pool_runtime::shared::{SharedAtomic, SharedMutex};
//! use pool_runtime::{worker_init, worker_task, Pool};
//!
//! #[derive(Clone)]
//! struct Shared { total: SharedMutex<u64>, calls: SharedAtomic<AtomicU64> }
//!
//! #[worker_init]
//! fn keep(shared: &Shared) -> Shared { shared.clone() }
//!
//! #[worker_task]
//! fn add(s: &mut Shared, times: u32) {
//!     s.calls.fetch_add(1, Ordering::Relaxed);
//!     for _ in 0..times {
//!         *s.total.lock().unwrap() += 1;
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let shared = Shared { total: SharedMutex::new(0)?, calls: SharedAtomic::new(AtomicU64::new(0))? };
//! let pool = Pool::builder().workers(2).build(keep, shared.clone())?;
//! pool.map(add, [10_000; 4])?;
//! assert_eq!(*shared.total.lock().unwrap(), 40_000);
//! assert_eq!(shared.calls.load(Ordering::Relaxed), 4);
//! # Ok(()) }
//! ```
//!
//! * **What may be shared.** The std atomics ([`Atomic`]), and [`Plain`]
//!   data: numbers, arrays of them, your `#[repr(C)]` structs of them. No
//!   pointer means the same thing in two processes, so nothing holding one
//!   (`String`, `Vec`, `Box`) can be put there.
//! * **A holder's death poisons, never deadlocks.** A worker killed, or
//!   exiting, while it holds a [`SharedMutex`] or [`SharedArray`] lock
//!   makes the next `lock`, in any process, return `Err(`[`Poisoned`]`)`
//!   with the lock held, as does a panic with the guard alive (std's rule).
//!   [`SharedBarrier::wait_timeout`] and [`SharedEvent::wait_timeout`]
//!   bound the wait for a party that may have died.
//! * **Forked workers only.** Workers started with
//!   [`spawn()`](crate::PoolBuilder::spawn) exec a fresh program, which maps
//!   none of this. The handles are not `Serialize`, so passing one to a
//!   spawn pool's `build` is a compile error (`SpawnArgs` is not
//!   implemented), never memory silently not shared:
//!
//!   ```compile_fail,E0277
//!   use pool_runtime::shared::SharedMutex;
//!   use pool_runtime::{worker_init, Pool};
//!
//!   #[worker_init]
//!   fn keep(total: &SharedMutex<u64>) -> SharedMutex<u64> { total.clone() }
//!
//!   fn main() {
//!       let total = SharedMutex::new(0u64).unwrap();
//!       // error[E0277]: `SharedMutex<u64>` cannot cross to a worker started fresh
//!       let _pool = Pool::builder().spawn().build(keep, total);
//!   }
//!   ```
//! * **Lifetime.** The memory goes when the last process holding a handle
//!   drops it (or ends); nothing in it is dropped, which is why only
//!   `Copy` data and atomics go there.

mod atomic;
mod barrier;
mod event;
mod futex;
mod mutex;
mod plain;
mod raw_mutex;
mod region;

pub use atomic::{SharedAtomic, SharedAtomicArray};
pub use barrier::{BarrierTimedOut, SharedBarrier};
pub use event::SharedEvent;
pub use mutex::{LockResult, Poisoned, SharedArray, SharedGuard, SharedMutex, TryLockError};
pub use plain::{Atomic, Plain};
