//! When the driver is killed, every worker is gone within a second.
//!
//! The driver is this test binary run again as a child, in the role given by
//! the environment; it builds a pool, prints the pids, and waits to be killed.

mod common;

use std::time::{Duration, Instant};

use pool_runtime::{worker_init, worker_task, Pool};

struct Idle;

#[worker_init]
fn nothing(_: &()) -> Idle {
    Idle
}

#[worker_task]
fn pids(_: &mut Idle) -> (u32, u32) {
    (std::process::id(), nix::unistd::getppid().as_raw() as u32)
}

#[worker_task]
fn sleep_long(_: &mut Idle, ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

const ROLE: &str = "POOL_TEST_DRIVER_ROLE";

#[test]
#[ignore = "run by driver_killed_takes_workers_along as a child process"]
fn driver_role() {
    if std::env::var(ROLE).is_err() {
        return;
    }
    let pool = Pool::builder().workers(2).build(nothing, ()).unwrap();
    let ids = pool.broadcast(pids, ()).unwrap();
    println!("{}", common::pids_line(&ids));
    // One worker busy in a long task, one idle: both must go.
    let _busy = pool.submit(sleep_long, 60_000);
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn driver_killed_takes_workers_along() {
    let (mut child, pids) = common::spawn_role("driver_role", ROLE, false);
    assert_eq!(pids.len(), 3);
    std::thread::sleep(Duration::from_millis(100));
    child.kill().unwrap(); // SIGKILL: no destructor, no shutdown runs
    child.wait().unwrap();
    let start = Instant::now();
    let left = common::wait_gone(&pids, Duration::from_secs(1));
    assert!(
        left.is_empty(),
        "still alive after {:?}: {left:?}",
        start.elapsed()
    );
}
