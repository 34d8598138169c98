//! The attributes of `pool-runtime`: [`macro@worker_init`], [`macro@worker_task`]
//! and [`macro@worker_exit`].
//!
//! Depend on `pool-runtime`, not on this crate: it re-exports the three
//! attributes, and their output names items of `pool_runtime` only.
//!
//! Each attribute leaves the function exactly as written, so it stays a plain
//! function that unit tests call directly and that is passed to the pool by
//! name (`pool.map(classify, rows)`). Next to it the attribute adds one
//! unnamed `const _: () = { … };` block holding one call of a hidden
//! `macro_rules!` of `pool_runtime` (`task_entry!`, `exit_entry!` or
//! `init_check!`), passed the function's name and the types written in its
//! signature, each with its span. That macro, part of the runtime, writes
//!
//! * type assertions on those types, so that a state that is not `'static`,
//!   an argument that is not `DeserializeOwned` or a result that is not
//!   `Serialize` is reported once, under that type in the signature;
//! * for tasks and exit hooks, an entry in the runtime's registry (a
//!   [`linkme`](https://docs.rs/linkme) distributed slice) under the stable
//!   name `module::path::fn_name`, so a worker that is not a fork of the
//!   driver can find the function by name.
//!
//! So this crate names nothing of the runtime but that macro: the glue
//! changes with the runtime, which pins this crate's version exactly.
//!
//! Nothing is added to the value or type namespace: a `let classify = 1;`
//! next to `#[worker_task] fn classify` still compiles.
//!
//! The attributes go on free functions, at module level or inside a function
//! body, not on associated functions in an `impl` block: the registration
//! names the function by its bare name, which an `impl` does not provide.
//!
//! A signature the attribute cannot accept is reported with every mistake at
//! once, each under the tokens at fault and saying what to write instead; the
//! function is then emitted untouched, so its callers keep compiling.
//!
//! The examples below are shown as text: the attributes expand to paths into
//! `pool_runtime`, which this crate's doctests cannot use. The same signatures,
//! accepted and rejected, are compiled by the workspace's UI tests
//! (`tests/ui/pass/*.rs`, and `tests/ui/*.rs` with the exact errors in the
//! `.stderr` files beside them).
#![forbid(unsafe_code)]

mod check;
mod ctxt;
mod expand;
mod fallback;
mod parse;
mod pretty;

use proc_macro::TokenStream;

use crate::parse::Kind;

/// Marks a function that a pool runs on its workers.
///
/// The first parameter is the worker's state, `&mut S` or `&S`, where `S` is
/// the state the pool's [`macro@worker_init`] returns; a task without such a
/// parameter is stateless and runs on any pool. Up to six arguments follow.
/// They travel to the worker with serde, so each is an owned type that
/// implements `Serialize` and `DeserializeOwned`; several arguments arrive as
/// one tuple (`pool.map(add, vec![(1, 2), (3, 4)])`). The result, `()` when
/// there is no return type, travels back the same way; a `Result<T, E>` comes
/// back to the caller as is.
///
/// The function runs in a worker process, once per input, with that worker's
/// state. Any pattern is accepted for the arguments: `(x, y): (u64, u64)`,
/// `_: u64`, `mut n: u64`.
///
/// # Examples
///
/// ```text
/// use pool_runtime::worker_task;
///
/// #[worker_task]
/// fn classify(c: &mut Classifier, row: Row) -> Label {
///     c.hits += 1;
///     c.table.lookup(&row)
/// }
///
/// let labels: Vec<Label> = pool.map(classify, rows)?;   // pool: Pool<Classifier>
/// assert_eq!(classify(&mut classifier, row), label);    // still a plain function
/// ```
///
/// An argument is sent by value, so it cannot borrow:
///
/// ```text
/// #[worker_task]
/// fn count(c: &mut Counter, word: &str) -> u64 { … }
/// ```
///
/// ```text
/// error: `#[worker_task]` arguments are sent to the worker by value; take an owned type such as `String` instead of `&str`
///  --> src/main.rs:2:33
///   |
/// 2 | fn count(c: &mut Counter, word: &str) -> u64 { … }
///   |                                 ^^^^
/// ```
///
/// Also rejected, each with its own error: `async`, `unsafe`, `extern` and
/// generic functions, `self`, a second state parameter, `impl Trait` types,
/// more than six arguments, and attribute arguments (none are accepted).
#[proc_macro_attribute]
pub fn worker_task(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(Kind::Task, args.into(), item.into()).into()
}

/// Marks the function that builds a worker's state.
///
/// It takes the pool's arguments by shared reference, `&A`, optionally
/// followed by a `WorkerInfo` (the worker's index and generation), and
/// returns the state `S` of the `Pool<S>`, or `Result<S, E>` with
/// `E: Display` to make `build` fail with that error.
///
/// It runs once per worker process, after the fork, and again in each worker
/// that replaces a dead one. `A` is read in place, copy-on-write from the
/// driver's memory: it is never serialized and need not be `Send`, which is
/// why the init cannot take it by value or by `&mut`. `S` lives as long as
/// the worker, so it must own its data (`'static`); it need not be
/// `Serialize` or `Send`.
///
/// # Examples
///
/// ```text
/// use pool_runtime::{worker_init, Pool, WorkerInfo};
///
/// #[worker_init]
/// fn load(table: &Arc<Table>, me: WorkerInfo) -> Result<Classifier, io::Error> {
///     Classifier::open(table.clone(), me.index())
/// }
///
/// let pool: Pool<Classifier> = Pool::builder().workers(4).build(load, table)?;
/// ```
///
/// Without a return type there is no state:
///
/// ```text
/// #[worker_init]
/// fn load(table: &Arc<Table>) { … }
/// ```
///
/// ```text
/// error: `#[worker_init]` must return the worker's state (or `Result<State, E>`); add `-> State`
///  --> src/main.rs:2:1
///   |
/// 2 | fn load(table: &Arc<Table>) { … }
///   | ^^^^^^^^^^^^^^^^^^^^^^^^^^^
/// ```
///
/// Also rejected: no parameter, `&mut A` or `A` by value, a second parameter
/// that is not a `WorkerInfo`, more than two parameters, a state that borrows
/// (`-> Parser<'_>`), `impl Trait`, and what [`macro@worker_task`] rejects
/// for every attribute (`async`, `unsafe`, `extern`, generics, `self`,
/// attribute arguments).
#[proc_macro_attribute]
pub fn worker_init(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(Kind::Init, args.into(), item.into()).into()
}

/// Marks a function that consumes a worker's state when the worker ends.
///
/// It takes the state `S` by value as its only parameter and returns what
/// `Pool::join_with` collects, one value per worker, sent back with serde;
/// `()` when there is no return type.
///
/// It runs once per worker process, after the worker's channel closes and
/// before the process leaves: flush a batch, close a connection, return a
/// summary.
///
/// # Examples
///
/// ```text
/// use pool_runtime::worker_exit;
///
/// #[worker_exit]
/// fn report(c: Classifier) -> u64 {
///     c.hits
/// }
///
/// let hits: Vec<u64> = pool.join_with(report)?;   // one per worker
/// ```
///
/// The state is consumed, so a reference is rejected:
///
/// ```text
/// #[worker_exit]
/// fn report(c: &Classifier) -> u64 { c.hits }
/// ```
///
/// ```text
/// error: `#[worker_exit]` consumes the state; take it by value: `c: Classifier`
///  --> src/main.rs:2:14
///   |
/// 2 | fn report(c: &Classifier) -> u64 { c.hits }
///   |              ^^^^^^^^^^^
/// ```
///
/// Also rejected: no parameter or more than one, a result that borrows,
/// `impl Trait`, and what every attribute rejects (`async`, `unsafe`,
/// `extern`, generics, `self`, attribute arguments).
#[proc_macro_attribute]
pub fn worker_exit(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(Kind::Exit, args.into(), item.into()).into()
}
