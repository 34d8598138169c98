//! Process pools whose workers each build their own state once, with no globals.
//!
//! Mark the function that builds a worker's state with [`worker_init`], the
//! functions that use it with [`worker_task`], and optionally the one that
//! consumes it at the end with [`worker_exit`]. [`Pool::builder`] forks the
//! workers; init reads its arguments straight from the driver's memory
//! (copy-on-write), so they are never serialized and need not be `Send`.
//!
//! ```
//! use pool_runtime::{worker_exit, worker_init, worker_task, Pool};
//!
//! struct Counter { base: u64, seen: u64 }
//!
//! #[worker_init]
//! fn start(base: &u64) -> Counter { Counter { base: *base, seen: 0 } }
//!
//! #[worker_task]
//! fn add(c: &mut Counter, x: u64) -> u64 { c.seen += 1; c.base + x }
//!
//! #[worker_exit]
//! fn seen(c: Counter) -> u64 { c.seen }
//!
//! # fn main() -> Result<(), pool_runtime::Error> {
//! let pool = Pool::builder().workers(2).build(start, 100)?;
//! assert_eq!(pool.map(add, 0..4)?, vec![100, 101, 102, 103]);
//! let per_worker: Vec<u64> = pool.join_with(seen)?;
//! assert_eq!(per_worker.iter().sum::<u64>(), 4);
//! # Ok(()) }
//! ```
//!
//! **Linux only**: the pool relies on `fork(2)`, `prctl(PR_SET_PDEATHSIG)`,
//! `eventfd(2)` and `/proc`; elsewhere the crate is one `compile_error!`.
//!
//! # Beyond `map`
//!
//! * [`Pool::pipeline`] chains tasks that each input runs in one worker,
//!   checked at compile time ([`Pipeline`]).
//! * Feature `progress`: `pool.imap(task, xs).progress()` draws a bar
//!   (`Imap::progress`, `ProgressMode`).
//! * Feature `async`: [`Submitted`] is a `Future`, and `Imap::into_stream`
//!   a `Stream`, on any executor.
//! * [`Pool::map_slab`]: for outputs that are `Vec<u8>` or `String`, a
//!   [`Slab`] lending each as `&[u8]` or `&str` from the frames the workers
//!   sent, with no allocation per output.
//! * [`Pool::insights`] and `tracing` spans, below.
//! * [`shared`]: state every worker maps, made before `build`: atomics,
//!   plain data behind a cross-process lock that a holder's death poisons
//!   instead of deadlocking, an event and a barrier.
//!
//! # Insights and tracing
//!
//! [`Pool::insights`] tells, per worker slot, the pid, restarts, init time,
//! items run, busy and idle time, codec and write time, bytes moved, and the
//! slowest items with their input; its `Display` is a table.
//!
//! The pool emits [`tracing`](https://docs.rs/tracing) spans, and prints
//! nothing unless the program installs a subscriber: `build` (fields
//! `workers`, `zygote`), `init` in each worker (`pid`, `worker`,
//! `generation`, then a `worker ready` event), `batch` in the worker for
//! each batch, at `DEBUG` (`task`, `count`, `pid`), and `respawn` in the
//! driver (`slot`, `old_pid`, `why`, `generation`). Workers are forks: a
//! subscriber installed *before* `build` is inherited by them, and they
//! write through its writer from their own processes. So:
//!
//! * write to something every process can share: a file opened with
//!   `append` (lines then never overwrite each other), stderr, a pipe;
//!   `Arc<File>` is a writer that takes no lock;
//! * a writer behind a `Mutex` that another thread holds at the instant of
//!   the fork stays locked in the workers (the fork rule of the README);
//! * a non-blocking writer (`tracing-appender`) hands lines to a thread, and
//!   that thread does not exist in a forked worker: the workers' lines are
//!   lost. A subscriber installed after `build` is not seen by the workers.
#![deny(missing_docs, missing_debug_implementations, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub use pool_macros::{worker_exit, worker_init, worker_task};

// The pool forks with `fork(2)`, dies with its parent through
// `prctl(PR_SET_PDEATHSIG)`, reads `/proc`, and wakes with `eventfd(2)`: it
// is for Linux, and says so in one line rather than in a wall of errors
// from the system calls other kernels lack.
#[cfg(not(target_os = "linux"))]
compile_error!(
    "pool-runtime runs on Linux only: it relies on fork(2), prctl(PR_SET_PDEATHSIG), eventfd(2) and /proc"
);

// The `macro_rules!` the attributes expand to (`__private01::task_entry!`
// and its siblings): outside `linux_only!`, so that `__private01` can
// re-export them by path.
mod entry;

/// The crate's items, compiled on Linux only (see the `compile_error!` above).
macro_rules! linux_only {
    ($($item:item)*) => { $( #[cfg(target_os = "linux")] $item )* };
}

linux_only! {
mod builder;
// `cargo fuzz` builds every crate with `--cfg fuzzing`: the fuzz targets in
// fuzz/ then call the code that reads a peer's bytes as it is, `channel`
// (frames, messages, items, outcomes) and `batch` (the worker's decoding of
// a `Run` body). Not an API: no stability, hidden from the docs; the normal
// build keeps both modules private.
#[cfg(not(fuzzing))]
mod channel;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod channel;
pub mod codec;
#[cfg(not(fuzzing))]
mod batch;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod batch;
mod driver;
mod error;
mod fresh;
mod insights;
mod mode;
mod pipeline;
mod pool;
#[cfg(feature = "redis")]
pub mod redis;
pub mod registry;
mod sandbox;
pub mod shared;
mod sys;
mod task;
mod transport;
mod unwind;
mod worker;

pub use builder::{Fork, PoolBuilder, Spawn, SpawnArgs};
pub use mode::worker_mode;
pub use sandbox::Sandbox;
pub use error::{Error, ErrorKind, Location, Panic, WorkerDeath, WorkerExit};
pub use insights::{Insights, SlowInput, SlowTask, WorkerInsights};
pub use pipeline::{feed, Feeds, Pipeline};
#[cfg(feature = "progress")]
pub use pool::progress::{ProgressDrawTarget, ProgressMode};
#[cfg(feature = "async")]
pub use pool::ImapStream;
pub use pool::{as_completed, AsCompleted, Call, Imap, Pool, Slab, SlabItem, SlabIter, Submitted};
pub use task::{marker, Exit, Init, Task, WorkerInfo};

/// What the macros' output names. Renamed (`__private01` for 0.1) whenever
/// what the macros emit changes: pool-runtime pins pool-macros exactly.
#[doc(hidden)]
#[path = "private.rs"]
pub mod __private01;
}

/// The README's examples, compiled and run as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
