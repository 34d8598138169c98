//! A limit on exit hooks at `join_with` (mpire's `worker_exit_timeout`):
//! a worker whose hook runs past it is killed, and its outcome says so.

mod common;

use std::time::{Duration, Instant};

use pool_runtime::{worker_exit, worker_init, worker_task, ErrorKind, Pool, WorkerInfo};

#[worker_init]
fn slot(_: &(), info: WorkerInfo) -> usize {
    info.index()
}

#[worker_task]
fn pid(_: &usize) -> u32 {
    std::process::id()
}

/// Worker 1's hook takes a minute; the others' return at once.
#[worker_exit]
fn slow_on_one(slot: usize) -> usize {
    if slot == 1 {
        std::thread::sleep(Duration::from_secs(60));
    }
    slot
}

#[worker_exit]
fn quick(slot: usize) -> usize {
    slot
}

#[test]
fn a_hook_past_the_pools_exit_timeout_is_killed_and_says_so() {
    let pool = Pool::builder()
        .workers(3)
        .exit_timeout(Duration::from_millis(300))
        .build(slot, ())
        .unwrap();
    let pids = pool.broadcast(pid, ()).unwrap();
    let t = Instant::now();
    let e = pool.join_with(slow_on_one).unwrap_err();
    let took = t.elapsed();
    match e.kind() {
        ErrorKind::TimedOut(m) => {
            assert!(m.contains("exit hook of worker 1"), "{m}");
            assert!(m.contains("300ms"), "{m}");
            assert!(m.contains("killed"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let left = common::wait_gone(&pids, Duration::from_secs(10));
    assert!(left.is_empty(), "still there: {left:?}");
}

#[test]
fn join_with_timeout_sets_the_limit_for_one_call() {
    // No limit on the pool: the call's own one holds.
    let pool = Pool::builder().workers(2).build(slot, ()).unwrap();
    let t = Instant::now();
    let e = pool
        .join_with_timeout(slow_on_one, Duration::from_millis(200))
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::TimedOut(m) if m.contains("worker 1")),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

#[test]
fn hooks_within_the_limit_give_their_outcomes() {
    let pool = Pool::builder()
        .workers(3)
        .exit_timeout(Duration::from_secs(20))
        .build(slot, ())
        .unwrap();
    assert_eq!(pool.join_with(quick).unwrap(), vec![0, 1, 2]);
    let pool = Pool::builder().workers(2).build(slot, ()).unwrap();
    let ok = pool.join_with_timeout(quick, Duration::from_secs(20));
    assert_eq!(ok.unwrap(), vec![0, 1]);
}
