//! Start and end of workers: init once per worker, init failures, exit
//! hooks, and no process left behind.

mod common;

use std::time::Duration;

use common::{parent_of, process_alive, wait_gone};
use pool_runtime::{worker_exit, worker_init, worker_task, ErrorKind, Pool, WorkerInfo};

struct Tally {
    pid: u32,
    seen: u64,
}

#[worker_init]
fn tally(_: &(), me: WorkerInfo) -> Tally {
    let _ = me;
    Tally {
        pid: std::process::id(),
        seen: 0,
    }
}

#[worker_task]
fn count(t: &mut Tally, _x: u64) -> u32 {
    t.seen += 1;
    t.pid
}

#[worker_task]
fn pid(t: &mut Tally) -> (u32, u32) {
    (t.pid, nix::unistd::getppid().as_raw() as u32)
}

#[worker_exit]
fn report(t: Tally) -> (u32, u64) {
    (t.pid, t.seen)
}

#[worker_init]
fn refuse(msg: &String) -> Result<Tally, String> {
    Err(msg.clone())
}

#[worker_init]
fn explode(_: &()) -> Tally {
    panic!("init exploded")
}

#[test]
fn init_runs_once_per_worker_and_exit_results_come_back_per_worker() {
    let pool = Pool::builder().workers(3).build(tally, ()).unwrap();
    let pids: Vec<u32> = pool.map(count, 0..3000).unwrap();
    let mut distinct = pids.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() <= 3 && !distinct.is_empty());
    let exits = pool.join_with(report).unwrap();
    assert_eq!(exits.len(), 3);
    assert_eq!(exits.iter().map(|e| e.1).sum::<u64>(), 3000);
    for (pid, seen) in &exits {
        assert_eq!(pids.iter().filter(|p| *p == pid).count() as u64, *seen);
    }
}

#[test]
fn a_failing_init_fails_build_with_its_message() {
    let e = Pool::builder()
        .workers(2)
        .build(refuse, "database is away".to_string())
        .map(|_: Pool<Tally>| ())
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Init(m) if m.contains("database is away")),
        "{e}"
    );
    let e = Pool::builder().workers(2).build(explode, ()).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Init(m) if m.contains("init exploded")),
        "{e}"
    );
}

#[test]
fn no_process_outlives_the_pool() {
    for ending in ["drop", "join", "join_with"] {
        let pool = Pool::builder().workers(2).build(tally, ()).unwrap();
        let ids = pool.broadcast(pid, ()).unwrap();
        let zygote = ids[0].1;
        assert_eq!(
            parent_of(zygote),
            Some(std::process::id()),
            "the fork server is our child"
        );
        let mut all: Vec<u32> = ids.iter().map(|i| i.0).collect();
        all.push(zygote);
        assert!(all.iter().all(|&p| process_alive(p)));
        match ending {
            "drop" => drop(pool),
            "join" => pool.join().unwrap(),
            _ => drop(pool.join_with(report).unwrap()),
        }
        // Every process is reaped before the call returns: no wait needed.
        assert_eq!(
            wait_gone(&all, Duration::ZERO),
            Vec::<u32>::new(),
            "{ending} left processes behind"
        );
    }
}

#[test]
fn workers_ignore_sigint() {
    let pool = Pool::builder().workers(1).build(tally, ()).unwrap();
    let (worker, zygote) = pool.apply(pid, ()).unwrap();
    for p in [worker, zygote] {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        pool.apply(pid, ()).unwrap().0,
        worker,
        "the same worker still serves"
    );
}
