//! Ctrl-C: SIGINT to the whole process group while a `map` runs. Workers and
//! the fork server ignore it; the driver dies of it (the default), and
//! everything it started goes with it, printing nothing.

mod common;

use std::time::{Duration, Instant};

use pool_runtime::{worker_init, worker_task, Pool};

struct Idle;

#[worker_init]
fn idle(_: &()) -> Idle {
    Idle
}

#[worker_task]
fn pids(_: &mut Idle) -> (u32, u32) {
    (std::process::id(), nix::unistd::getppid().as_raw() as u32)
}

#[worker_task]
fn nap(_: &mut Idle, ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

const ROLE: &str = "POOL_TEST_CTRL_C_ROLE";

#[test]
#[ignore = "run by ctrl_c_ends_driver_and_workers as a child process"]
fn ctrl_c_driver_role() {
    if std::env::var(ROLE).is_err() {
        return;
    }
    common::default_sigint();
    let pool = Pool::builder().workers(2).build(idle, ()).unwrap();
    let ids = pool.broadcast(pids, ()).unwrap();
    println!("{}", common::pids_line(&ids));
    let _ = pool.map(nap, vec![50; 2000]);
    println!("MAP RETURNED");
}

#[test]
fn ctrl_c_ends_driver_and_workers() {
    let (mut child, pids) = common::spawn_role("ctrl_c_driver_role", ROLE, true);
    std::thread::sleep(Duration::from_millis(200)); // the map is running
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGINT).unwrap();
    let start = Instant::now();
    let status = child.wait().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "the driver took {:?} to end",
        start.elapsed()
    );
    assert!(!status.success(), "the driver died of SIGINT: {status:?}");
    let left = common::wait_gone(&pids, Duration::from_secs(1));
    assert!(left.is_empty(), "still alive: {left:?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        !stderr.contains("panicked"),
        "something printed a panic: {stderr}"
    );
}
