//! A `build` that runs out of file descriptors at any point fails cleanly:
//! it leaves no descriptor open and no process behind, and the next pool
//! works. Its own test binary: the descriptor limit is the whole process's.

mod common;

use std::collections::BTreeSet;

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use pool_runtime::{worker_task, ErrorKind, Pool};

#[worker_task]
fn square(x: u64) -> u64 {
    x * x
}

/// This process's open descriptors.
fn open_fds() -> BTreeSet<i32> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

#[test]
fn a_build_out_of_descriptors_leaves_none_open_and_no_process() {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    // Warm up: the first pool of a process opens what it keeps (the
    // registry, the panic hook, std's own descriptors).
    drop(Pool::builder().workers(3).build(|_: &()| (), ()).unwrap());
    let before = open_fds();
    let highest = *before.iter().max().unwrap() as u64;
    let (mut failed, mut built) = (0, 0);
    // New descriptors take the lowest free numbers, below the limit: from
    // none free up to enough for the pool and its three workers' channels,
    // each limit stops `build` at another point.
    for limit in 3..highest + 16 {
        setrlimit(Resource::RLIMIT_NOFILE, limit, hard).unwrap();
        let result = Pool::builder()
            .workers(3)
            .build(|_: &()| (), ())
            .and_then(|pool: Pool<()>| pool.map(square, 0..10u64));
        setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
        match result {
            Ok(out) => {
                assert_eq!(out, (0..10).map(|x| x * x).collect::<Vec<_>>());
                built += 1;
            }
            Err(e) => {
                assert!(
                    matches!(e.kind(), ErrorKind::Io(_) | ErrorKind::Init(_)),
                    "limit {limit}: {e}"
                );
                failed += 1;
            }
        }
        // `build` and `drop` reap what they started before they return.
        let leftover = common::children_of(std::process::id());
        assert!(
            leftover.is_empty(),
            "limit {limit}: processes left: {leftover:?}"
        );
        assert_eq!(open_fds(), before, "limit {limit}: descriptors left open");
    }
    eprintln!("{failed} builds failed, {built} built");
    assert!(failed > 0 && built > 0, "{failed} failed, {built} built");
    // The next pool, with the limit back, works.
    let pool = Pool::builder().workers(2).build(|_: &()| (), ()).unwrap();
    assert_eq!(pool.map(square, 0..4u64).unwrap(), vec![0, 1, 4, 9]);
}
