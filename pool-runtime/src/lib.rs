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
#![deny(missing_docs, missing_debug_implementations, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub use pool_macros::{worker_exit, worker_init, worker_task};

mod builder;
mod channel;
pub mod codec;
mod dispatch;
mod driver;
mod error;
mod insights;
mod pool;
pub mod registry;
mod sys;
mod task;
mod worker;
mod zygote;

pub use builder::PoolBuilder;
pub use error::{Error, ErrorKind};
pub use insights::{Insights, SlowInput, SlowTask, WorkerInsights};
pub use pool::{Imap, Pool, Submitted};
pub use task::{marker, Exit, Init, Task, WorkerInfo};

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz_api;

/// The README's examples, compiled and run as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
