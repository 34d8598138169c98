//! `Pool::terminate`: from any thread, while others wait on the pool, the
//! workers are killed at once and every pending input fails with
//! `Terminated`, as does every later call.

mod common;

use std::time::{Duration, Instant};

use pool_runtime::{worker_init, worker_task, ErrorKind, Pool};

struct Idle;

#[worker_init]
fn idle(_: &()) -> Idle {
    Idle
}

/// Never returns on its own.
#[worker_task]
fn stuck(_: &mut Idle, x: u64) -> u64 {
    std::thread::sleep(Duration::from_secs(600));
    x
}

#[worker_task]
fn pid(_: &mut Idle) -> u32 {
    std::process::id()
}

/// The fork server's pid: the worker's parent.
#[worker_task]
fn parent(_: &mut Idle) -> u32 {
    nix::unistd::getppid().as_raw() as u32
}

#[worker_task]
fn double(_: &mut Idle, x: u64) -> u64 {
    2 * x
}

fn terminated(r: &Result<impl std::fmt::Debug, pool_runtime::Error>) -> bool {
    matches!(r, Err(e) if *e.kind() == ErrorKind::Terminated)
}

#[test]
fn terminate_fails_every_waiting_input_at_once_and_kills_the_workers() {
    let pool = Pool::builder().workers(2).build(idle, ()).unwrap();
    let pids = pool.broadcast(pid, ()).unwrap();
    let zygote = pool.apply(parent, ()).unwrap();
    std::thread::scope(|s| {
        let mapped = s.spawn(|| pool.map(stuck, 0..10u64));
        let streamed = s.spawn(|| pool.imap(stuck, 0..5u64).collect::<Vec<_>>());
        let submitted = s.spawn(|| pool.submit(stuck, 7).wait());
        std::thread::sleep(Duration::from_millis(200)); // all three wait
        let t = Instant::now();
        pool.terminate();
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        let mapped = mapped.join().unwrap();
        let streamed = streamed.join().unwrap();
        let submitted = submitted.join().unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "waiters took {:?}",
            t.elapsed()
        );
        assert!(terminated(&mapped), "{mapped:?}");
        assert_eq!(streamed.len(), 5, "one outcome per input");
        assert!(streamed.iter().all(terminated), "{streamed:?}");
        assert!(terminated(&submitted), "{submitted:?}");
    });
    // The workers are gone now, not when the pool is dropped.
    let left = common::wait_gone(&pids, Duration::from_secs(1));
    assert!(left.is_empty(), "still alive: {left:?}");
    // Every later call says so too, and no worker starts again.
    assert!(terminated(&pool.apply(double, 1)));
    assert!(terminated(&pool.map(double, 0..3u64)));
    assert!(pool.imap(double, 0..3u64).all(|r| terminated(&r)));
    assert!(terminated(&pool.broadcast(pid, ())));
    std::thread::sleep(Duration::from_millis(300));
    let workers = common::children_of(zygote);
    assert!(
        workers.iter().all(|p| !common::process_alive(*p)),
        "a worker started after terminate: {workers:?}"
    );
    // Terminating again, then dropping, is fine.
    pool.terminate();
    drop(pool);
}

#[test]
fn terminate_on_an_idle_pool_and_then_join() {
    let pool = Pool::builder().workers(2).build(idle, ()).unwrap();
    assert_eq!(pool.apply(double, 21).unwrap(), 42);
    let pids = pool.broadcast(pid, ()).unwrap();
    pool.terminate();
    assert!(common::wait_gone(&pids, Duration::from_secs(1)).is_empty());
    assert!(terminated(&pool.apply(double, 1)));
    pool.join().unwrap();
}
