//! Soak: many tasks while a chaos thread kills random workers. Every input
//! gets exactly one outcome, and no process outlives the pool.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use pool_runtime::{worker_init, worker_task, ErrorKind, Pool};

struct Idle;

#[worker_init]
fn idle(_: &()) -> Idle {
    Idle
}

#[worker_task]
fn echo(_: &mut Idle, x: u64) -> u64 {
    x
}

#[worker_task]
fn zygote_pid(_: &mut Idle) -> u32 {
    nix::unistd::getppid().as_raw() as u32
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn soak(tasks: u64, retries: u32) {
    // The chaos thread also kills workers during their init, which counts
    // toward the respawn limit (three in a row by default): lift it here,
    // where those kills are not the init's fault.
    let pool = Pool::builder()
        .workers(2)
        .retries(retries)
        .respawn_limit(u32::MAX)
        .build(idle, ())
        .unwrap();
    // `broadcast` waits for every first init: a kill during one would
    // break the pool by design (a later worker's first init failing is a
    // failed `build`), and the chaos below is not about that.
    let zygote = pool.broadcast(zygote_pid, ()).unwrap()[0];
    let done = AtomicBool::new(false);
    let kills = AtomicUsize::new(0);
    let mut seen = BTreeSet::new();
    let outcomes: Vec<_> = std::thread::scope(|s| {
        s.spawn(|| {
            let mut n = 0u64;
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(3 + n % 7));
                n += 1;
                let workers = children(zygote);
                if let Some(&victim) = workers.get((n as usize) % workers.len().max(1)) {
                    let pid = nix::unistd::Pid::from_raw(victim as i32);
                    if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).is_ok() {
                        kills.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        let out: Vec<_> = pool
            .imap(echo, 0..tasks)
            .inspect(|_| {
                for w in children(zygote) {
                    seen.insert(w);
                }
            })
            .take(tasks as usize + 1)
            .collect();
        done.store(true, Ordering::Relaxed);
        out
    });
    // Exactly one outcome per input, in order, each the input's own.
    assert_eq!(outcomes.len() as u64, tasks);
    let mut failed = 0;
    for (i, r) in outcomes.iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(*v, i as u64),
            Err(e) => {
                failed += 1;
                assert!(
                    matches!(e.kind(), ErrorKind::WorkerDied(m) if m.contains("SIGKILL"))
                        || matches!(e.kind(), ErrorKind::Quarantined(m) if m.contains("SIGKILL")),
                    "{e}"
                );
            }
        }
    }
    let kills = kills.load(Ordering::Relaxed);
    assert!(kills > 0, "the chaos thread killed nothing");
    assert!(failed <= kills, "{failed} failures for {kills} kills");
    println!("{tasks} tasks, {kills} workers killed, {failed} inputs failed");
    drop(pool);
    seen.insert(zygote);
    let all: Vec<u32> = seen.into_iter().collect();
    assert_eq!(
        common::wait_gone(&all, Duration::ZERO),
        Vec::<u32>::new(),
        "processes left behind"
    );
}

#[test]
fn every_input_gets_one_outcome_while_workers_are_killed() {
    soak(200_000, 0);
}

#[test]
fn with_retries_killed_inputs_mostly_succeed() {
    soak(200_000, 3);
}

/// The long version: `cargo test --release -p pool-suite --test soak -- --ignored`.
#[test]
#[ignore = "long: 10 million tasks"]
fn ten_million_tasks_under_chaos() {
    soak(10_000_000, 3);
}
