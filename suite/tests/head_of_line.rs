//! Head-of-line blocking (issue 13): a worker left idle takes the call
//! waiting behind another worker's long one, and a call cancelled, or
//! dropped after a timed-out wait, while it waits unstarted in a worker
//! never runs.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pool_runtime::{as_completed, worker_init, worker_task, Pool};

struct Idle;

#[worker_init]
fn idle(_: &()) -> Idle {
    Idle
}

#[worker_task]
fn nap(_: &mut Idle, ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// The visible side effect: creates the file `path`.
#[worker_task]
fn touch(_: &mut Idle, path: PathBuf) -> bool {
    std::fs::write(&path, b"ran").is_ok()
}

fn pool(workers: usize) -> Pool<Idle> {
    Pool::builder().workers(workers).build(idle, ()).unwrap()
}

/// A fresh directory of this test's own.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pool-hol-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ran(path: &Path) -> bool {
    path.exists()
}

#[test]
fn short_calls_do_not_wait_behind_a_long_one() {
    const LONG: u64 = 1_000;
    let pool = pool(2);
    let t = Instant::now();
    // The second short call goes behind the long one, on its worker.
    let handles: Vec<_> = std::iter::once(LONG)
        .chain([10; 8])
        .map(|ms| pool.submit(nap, ms))
        .collect();
    let mut done = as_completed(handles);
    let mut last_short = None;
    let mut long = None;
    while !done.is_empty() {
        let (i, outcome) = done.next_timeout(Duration::from_secs(20)).expect("in time");
        outcome.unwrap();
        let at = t.elapsed();
        match i {
            0 => long = Some(at),
            _ => last_short = Some(at),
        }
    }
    let (long, last_short) = (long.unwrap(), last_short.unwrap());
    assert!(long >= Duration::from_millis(LONG), "{long:?}");
    // Alone on the other worker, the eight take 80 ms; a short call left
    // behind the long one would end after it.
    assert!(
        last_short < Duration::from_millis(LONG / 2),
        "the last short call ended at {last_short:?}, the long one at {long:?}"
    );
}

#[test]
fn a_call_waiting_unstarted_in_a_worker_is_cancelled_and_never_runs() {
    let dir = scratch("cancel-held");
    let pool = pool(1);
    let running = pool.submit(nap, 300);
    // The worker holds two calls: this one waits in its socket, unstarted.
    let victim = dir.join("cancelled");
    let held = pool.submit(touch, victim.clone());
    assert!(held.cancel().is_ok(), "an unstarted call is cancelled");
    assert_eq!(running.wait().unwrap(), 300);
    // A call after it runs: the worker went past the cancelled one.
    let after = dir.join("after");
    assert!(pool.apply(touch, after.clone()).unwrap());
    assert!(ran(&after));
    assert!(!ran(&victim), "the cancelled call ran");
    pool.join().unwrap();
    assert!(!ran(&victim), "the cancelled call ran at the end");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_call_dropped_after_a_timed_out_wait_never_runs() {
    let dir = scratch("timed-out");
    let pool = pool(1);
    let running = pool.submit(nap, 300);
    let victim = dir.join("dropped");
    let held = pool.submit(touch, victim.clone());
    let held = held
        .wait_timeout(Duration::from_millis(30))
        .expect_err("it waits behind a 300 ms call");
    drop(held);
    assert_eq!(running.wait().unwrap(), 300);
    let after = dir.join("after");
    assert!(pool.apply(touch, after.clone()).unwrap());
    assert!(ran(&after));
    assert!(!ran(&victim), "the dropped call ran");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_map_behind_a_long_call_keeps_its_order_and_the_idle_worker() {
    let pool = pool(2);
    let t = Instant::now();
    let long = pool.submit(nap, 800);
    // Inputs taken back and run elsewhere still come back in input order.
    let out = pool.map(nap, vec![5; 40]).unwrap();
    let took = t.elapsed();
    assert_eq!(out, vec![5; 40]);
    assert!(took < Duration::from_millis(600), "{took:?}");
    assert_eq!(long.wait().unwrap(), 800);
}

/// Appends one byte to `dir/<i>`, after `ms`: a call run twice leaves two.
#[worker_task]
fn mark(_: &mut Idle, dir: PathBuf, i: u32, ms: u64) -> u32 {
    use std::io::Write as _;
    std::thread::sleep(Duration::from_millis(ms));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(i.to_string()))
        .unwrap();
    f.write_all(b"x").unwrap();
    i
}

#[test]
fn calls_taken_back_run_once_and_cancelled_ones_never() {
    let dir = scratch("once");
    let pool = pool(2);
    let mut kept = Vec::new();
    let mut cancelled = Vec::new();
    for i in 0..300u32 {
        // Mostly quick calls, with a long one now and then for the others
        // to queue behind.
        let ms = [0, 0, 1, 0, 40][i as usize % 5];
        let h = pool.submit(mark, (dir.clone(), i, ms));
        if i % 3 == 1 {
            match h.cancel() {
                Ok(()) => cancelled.push(i),
                Err(h) => kept.push((i, h)),
            }
        } else {
            kept.push((i, h));
        }
    }
    assert!(!cancelled.is_empty(), "no call was cancelled");
    for (i, h) in kept {
        let got = h
            .wait_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("call {i} not done in 30 s"));
        assert_eq!(got.unwrap(), i);
        let ran = std::fs::read(dir.join(i.to_string())).unwrap();
        assert_eq!(ran, b"x", "call {i} ran {} times", ran.len());
    }
    pool.join().unwrap();
    for i in cancelled {
        assert!(!ran(&dir.join(i.to_string())), "cancelled call {i} ran");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
