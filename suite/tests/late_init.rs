//! `build` returns once its first worker is ready; the others come up while
//! the pool serves. What that must not change: every call that means "every
//! worker" (`broadcast`, `join_with`, `insights`, sticky routing) still sees
//! them all, and an init that fails still fails the pool, deterministically:
//! a first init failing after `build` returned breaks it with that init's
//! `ErrorKind::Init`, for the input in flight, every later call and `join`.
//!
//! Each case runs for forked workers and for workers started fresh
//! (`spawn()`), with 1 to 4 workers. Worker 0's init returns at once; the
//! others wait at a gate (a file) that only a task on worker 0 opens, so
//! which worker is ready first, and when the others end their init, is
//! fixed by the test, not by timing.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pool_runtime::{worker_exit, worker_init, worker_task, Error, ErrorKind, Pool, WorkerInfo};
use serde::{Deserialize, Serialize};

pool_runtime::worker_mode_before_main!();

/// What the inits get: the directory where the gate file appears.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Gate {
    dir: String,
}

impl Gate {
    /// A fresh, empty gate directory for one pool.
    fn new() -> Gate {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pool-late-init-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Gate {
            dir: dir.to_string_lossy().into_owned(),
        }
    }

    fn file(&self) -> PathBuf {
        Path::new(&self.dir).join("open")
    }

    /// Opens the gate: the inits waiting at it go on.
    fn open(&self) {
        std::fs::write(self.file(), b"").unwrap();
    }

    /// Waits (at most 20 s) for the gate; whether it opened.
    fn wait(&self) -> bool {
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if self.file().exists() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }
}

/// Removes a gate's directory when the test is done with it (not in
/// `Gate`'s own drop: every copy of it would, the driver's and the workers').
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Slot {
    index: usize,
    /// A later worker saw the gate open (it did not give up waiting).
    through_gate: bool,
    gate: Gate,
}

/// Worker 0 at once; the others once the gate is open.
#[worker_init]
fn gated(gate: &Gate, info: WorkerInfo) -> Slot {
    let through_gate = info.index() == 0 || gate.wait();
    Slot {
        index: info.index(),
        through_gate,
        gate: gate.clone(),
    }
}

/// Worker 0 at once; the others fail, once the gate is open.
#[worker_init]
fn gated_then_refuse(gate: &Gate, info: WorkerInfo) -> Result<Slot, String> {
    if info.index() == 0 {
        return Ok(gated(gate, info));
    }
    gate.wait();
    Err(format!("worker {} found no GPU", info.index()))
}

/// Worker 0 waits at the gate, which every other worker's init opens: a
/// slow first init must not hold the others back until it is done.
#[worker_init]
fn first_waits(gate: &Gate, info: WorkerInfo) -> Slot {
    let through_gate = if info.index() == 0 {
        gate.wait()
    } else {
        gate.open();
        true
    };
    Slot {
        index: info.index(),
        through_gate,
        gate: gate.clone(),
    }
}

/// Opens the gate; then naps `ms` milliseconds. Returns the worker's slot.
#[worker_task]
fn open_gate(s: &mut Slot, ms: u64) -> usize {
    s.gate.open();
    std::thread::sleep(Duration::from_millis(ms));
    s.index
}

/// `(slot, through the gate, pid)`.
#[worker_task]
fn which(s: &mut Slot) -> (usize, bool, u32) {
    (s.index, s.through_gate, std::process::id())
}

#[worker_exit]
fn leave(s: Slot) -> usize {
    s.index
}

/// A pool of `n` workers, forked or started fresh, whose later inits
/// succeed (`refuse`: fail) once the gate is open.
fn start(fresh: bool, n: usize, refuse: bool, gate: &Gate) -> Result<Pool<Slot>, Error> {
    let b = Pool::builder().workers(n);
    match (fresh, refuse) {
        (false, false) => b.build(gated, gate.clone()),
        (false, true) => b.build(gated_then_refuse, gate.clone()),
        (true, false) => b.spawn().build(gated, gate.clone()),
        (true, true) => b.spawn().build(gated_then_refuse, gate.clone()),
    }
}

/// Every case: forked and fresh, 1 to 4 workers.
fn each_case(test: impl Fn(bool, usize)) {
    for fresh in [false, true] {
        for n in 1..=4 {
            test(fresh, n);
        }
    }
}

fn is_the_init_failure(e: &Error, n: usize, what: &str) {
    assert!(
        matches!(e.kind(), ErrorKind::Init(m) if m.contains("found no GPU")),
        "{what} ({n} workers): {e:?}"
    );
}

#[test]
fn build_returns_with_the_first_worker_and_every_call_on_all_workers_sees_the_rest() {
    each_case(|fresh, n| {
        let gate = Gate::new();
        let _cleanup = Cleanup(gate.dir.clone());
        let t = Instant::now();
        let pool = start(fresh, n, false, &gate).unwrap();
        // Only worker 0 can be ready: the others wait for this very call.
        assert_eq!(
            pool.apply(open_gate, 0).unwrap(),
            0,
            "fresh {fresh}, {n} workers"
        );
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "build waited for the gate"
        );
        // A broadcast waits for the workers still starting: all of them.
        let all = pool.broadcast(which, ()).unwrap();
        assert_eq!(all.len(), n);
        for (i, &(slot, through, _)) in all.iter().enumerate() {
            assert_eq!(slot, i);
            assert!(
                through,
                "worker {i} gave up at the gate: build waited for it"
            );
        }
        let insights = pool.insights();
        assert_eq!(insights.workers.len(), n);
        for (w, &(_, _, pid)) in insights.workers.iter().zip(&all) {
            assert_eq!(w.pid, Some(pid), "{insights:?}");
            assert!(w.init.is_some(), "{insights:?}");
        }
        assert_eq!(pool.submit_to(n - 1, which, ()).wait().unwrap().0, n - 1);
        let w = pool.worker_for("key");
        assert_eq!(pool.submit_to(w, which, ()).wait().unwrap().0, w);
        assert_eq!(pool.join_with(leave).unwrap(), (0..n).collect::<Vec<_>>());
        let pids: Vec<u32> = all.iter().map(|&(_, _, pid)| pid).collect();
        assert_eq!(
            common::wait_gone(&pids, Duration::from_secs(5)),
            Vec::<u32>::new()
        );
    });
}

#[test]
fn a_later_workers_failed_init_breaks_the_pool_with_that_init_error() {
    each_case(|fresh, n| {
        let gate = Gate::new();
        let _cleanup = Cleanup(gate.dir.clone());
        let pool = start(fresh, n, true, &gate).unwrap();
        let (_, _, first) = pool.apply(which, ()).unwrap();
        if n == 1 {
            assert_eq!(pool.apply(open_gate, 0).unwrap(), 0);
            assert_eq!(pool.broadcast(which, ()).unwrap().len(), 1);
            return pool.join().unwrap();
        }
        // The other inits fail as soon as the gate opens: the driver may
        // learn of it before it reads this call's answer, which then fails
        // with that init error, as every input without its outcome does.
        match pool.apply(open_gate, 0) {
            Ok(slot) => assert_eq!(slot, 0),
            Err(e) => is_the_init_failure(&e, n, "the apply that opened the gate"),
        }
        // The broadcast waits for every worker's init: it sees the failure.
        is_the_init_failure(&pool.broadcast(which, ()).unwrap_err(), n, "broadcast");
        // From then on, every call fails the same way, `join` too.
        is_the_init_failure(&pool.apply(which, ()).unwrap_err(), n, "apply");
        is_the_init_failure(&pool.map(which, vec![(); 10]).unwrap_err(), n, "map");
        is_the_init_failure(&pool.join().unwrap_err(), n, "join");
        assert_eq!(
            common::wait_gone(&[first], Duration::from_secs(5)),
            Vec::<u32>::new()
        );
    });
}

#[test]
fn an_input_in_flight_when_a_later_init_fails_fails_with_that_init_error() {
    each_case(|fresh, n| {
        let gate = Gate::new();
        let _cleanup = Cleanup(gate.dir.clone());
        let pool = start(fresh, n, true, &gate).unwrap();
        let t = Instant::now();
        // Worker 0 opens the gate and naps: the failure comes meanwhile,
        // and worker 0 is killed with its input.
        let nap = if n == 1 { 10 } else { 30_000 };
        let outcome = pool.apply(open_gate, nap);
        if n == 1 {
            assert_eq!(outcome.unwrap(), 0);
            return pool.join().unwrap();
        }
        is_the_init_failure(&outcome.unwrap_err(), n, "the input in flight");
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "it waited for the nap"
        );
        is_the_init_failure(&pool.join_with(leave).unwrap_err(), n, "join_with");
    });
}

#[test]
fn join_learns_of_a_later_init_failure_no_call_saw() {
    each_case(|fresh, n| {
        let gate = Gate::new();
        let _cleanup = Cleanup(gate.dir.clone());
        let pool = start(fresh, n, true, &gate).unwrap();
        // No call drives the pool while the later inits fail: `join` waits
        // for them, so the failure is never lost.
        gate.open();
        match pool.join() {
            Ok(()) => assert_eq!(n, 1),
            Err(e) => is_the_init_failure(&e, n, "join"),
        }
    });
}

#[test]
fn dropping_a_pool_whose_workers_are_still_starting_leaves_no_process() {
    each_case(|fresh, n| {
        let gate = Gate::new();
        let _cleanup = Cleanup(gate.dir.clone());
        let pool = start(fresh, n, false, &gate).unwrap();
        let (_, _, first) = pool.apply(which, ()).unwrap();
        // The later workers wait at the gate, in their init: killed with the pool.
        let t = Instant::now();
        drop(pool);
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "drop waited for the inits"
        );
        assert_eq!(
            common::wait_gone(&[first], Duration::from_secs(5)),
            Vec::<u32>::new()
        );
    });
}

#[test]
fn a_slow_first_init_does_not_hold_back_the_other_workers() {
    // With one worker there is no other to open the gate.
    for fresh in [false, true] {
        for n in 2..=4 {
            let gate = Gate::new();
            let _cleanup = Cleanup(gate.dir.clone());
            let b = Pool::builder().workers(n);
            let pool = if fresh {
                b.spawn().build(first_waits, gate.clone())
            } else {
                b.build(first_waits, gate.clone())
            }
            .unwrap();
            let all = pool.broadcast(which, ()).unwrap();
            assert!(
                all[0].1,
                "worker 0 gave up at the gate: the others waited for its init"
            );
            assert_eq!(pool.join_with(leave).unwrap(), (0..n).collect::<Vec<_>>());
        }
    }
}
