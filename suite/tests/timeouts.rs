//! `task_timeout` and `init_timeout`: a task or an init that runs too long
//! is killed with its worker, within the limit plus a little.

use std::time::{Duration, Instant};

use pool_runtime::{worker_init, worker_task, ErrorKind, Pool, WorkerInfo};

struct Gen(u32);

#[worker_init]
fn gen(_: &(), me: WorkerInfo) -> Gen {
    Gen(me.generation())
}

#[worker_init]
fn slow_init(_: &()) -> Gen {
    std::thread::sleep(Duration::from_secs(30));
    Gen(0)
}

#[worker_task]
fn nap(_g: &mut Gen, ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[worker_task]
fn generation(g: &mut Gen) -> u32 {
    g.0
}

#[test]
fn a_task_past_its_timeout_is_killed_and_replaced() {
    let limit = Duration::from_millis(300);
    let pool = Pool::builder()
        .workers(2)
        .task_timeout(limit)
        .build(gen, ())
        .unwrap();
    let start = Instant::now();
    let out: Vec<_> = pool.imap(nap, vec![1, 2, 60_000, 3, 4]).collect();
    let took = start.elapsed();
    assert!(took < limit + Duration::from_secs(1), "took {took:?}");
    assert_eq!(out.len(), 5);
    let e = out[2].as_ref().unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::TimedOut(m) if m.contains("300ms")),
        "{e}"
    );
    for i in [0, 1, 3, 4] {
        assert!(out[i].is_ok(), "{:?}", out[i]);
    }
    assert_eq!(
        pool.broadcast(generation, ()).unwrap().iter().sum::<u32>(),
        1
    );
    // A task within the limit is untouched.
    assert_eq!(pool.apply(nap, 100).unwrap(), 100);
}

#[test]
fn an_init_past_its_timeout_fails_build() {
    let start = Instant::now();
    let e = Pool::builder()
        .workers(2)
        .init_timeout(Duration::from_millis(200))
        .build(slow_init, ())
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        matches!(e.kind(), ErrorKind::Init(m) if m.contains("timed out")),
        "{e}"
    );
}
