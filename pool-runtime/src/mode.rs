//! [`worker_mode`]: where a process started as a worker (fresh, `fresh.rs`)
//! or as a Redis host (`redis/host.rs`) leaves `main`'s path.

/// Makes this process a pool's worker if it was started as one, and never
/// returns then; otherwise returns at once and does nothing.
///
/// A program that builds pools with [`PoolBuilder::spawn`](crate::PoolBuilder::spawn)
/// calls it first thing in `main`: each worker is the same program, run
/// again, and this is where it leaves `main`'s path to serve the driver.
///
/// ```no_run
/// # use pool_runtime::{worker_init, worker_task, Pool};
/// # #[worker_init] fn open(path: &String) -> String { path.clone() }
/// # #[worker_task] fn size(s: &mut String) -> usize { s.len() }
/// fn main() {
///     pool_runtime::worker_mode();
///     let pool = Pool::builder().spawn().workers(2).build(open, "db.sqlite".to_string()).unwrap();
///     println!("{:?}", pool.broadcast(size, ()).unwrap());
/// }
/// ```
///
/// In an integration test under the `cargo test` harness, whose `main` is
/// not yours, write [`worker_mode_before_main!()`](crate::worker_mode_before_main)
/// once in the test file instead.
///
/// With the `redis` feature, a process started with
/// `pool_runtime::redis::HOST_ENV` set serves as a Redis host here.
pub fn worker_mode() {
    #[cfg(feature = "redis")]
    if std::env::var_os(crate::redis::HOST_ENV).is_some() && crate::fresh::claim() {
        let code = crate::redis::host::main();
        crate::sys::exit_now(code)
    }
    crate::fresh::enter()
}
