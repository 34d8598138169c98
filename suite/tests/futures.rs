//! Handles like `concurrent.futures`: `wait_timeout`, `is_finished`,
//! `cancel` (a call no worker has started never runs), owned handles that move to
//! threads and `tokio::spawn`, and the pool's end waiting for them.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pool_runtime::{worker_init, worker_task, Pool, Submitted};

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

/// Creates the file `path` as it starts, then sleeps `ms`.
#[worker_task]
fn touch_then_nap(_: &mut Idle, path: PathBuf, ms: u64) -> bool {
    let ok = std::fs::write(&path, b"ran").is_ok();
    std::thread::sleep(Duration::from_millis(ms));
    ok
}

fn pool(workers: usize) -> Pool<Idle> {
    Pool::builder().workers(workers).build(idle, ()).unwrap()
}

/// A fresh directory of this test's own.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pool-futures-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ran(path: &Path) -> bool {
    path.exists()
}

#[test]
fn wait_timeout_gives_the_handle_back_then_the_outcome() {
    let pool = pool(1);
    let slow = pool.submit(nap, 400);
    let t = Instant::now();
    let slow = slow.wait_timeout(Duration::from_millis(60)).unwrap_err();
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(60), "{waited:?}");
    assert!(waited < Duration::from_millis(300), "{waited:?}");
    // The call went on meanwhile: it ends at about 400 ms, not 460.
    let outcome = slow.wait_timeout(Duration::from_secs(10)).ok().unwrap();
    assert_eq!(outcome.unwrap(), 400);
    assert!(
        t.elapsed() < Duration::from_millis(700),
        "{:?}",
        t.elapsed()
    );
    // Done already: no wait at all.
    let quick = pool.submit(nap, 0);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(quick.wait_timeout(Duration::ZERO).ok().unwrap().unwrap(), 0);
}

#[test]
fn wait_timeout_while_another_thread_drives_the_pool() {
    // The other thread polls; this one follows, and still leaves on time.
    let pool = pool(2);
    std::thread::scope(|s| {
        let busy = s.spawn(|| pool.apply(nap, 600));
        std::thread::sleep(Duration::from_millis(50));
        let t = Instant::now();
        let h = pool
            .submit(nap, 500)
            .wait_timeout(Duration::from_millis(80));
        let waited = t.elapsed();
        assert!(h.is_err());
        assert!(waited >= Duration::from_millis(80), "{waited:?}");
        assert!(waited < Duration::from_millis(400), "{waited:?}");
        assert_eq!(busy.join().unwrap().unwrap(), 600);
    });
}

#[test]
fn is_finished_never_blocks_and_turns_true() {
    let pool = pool(1);
    let h = pool.submit(nap, 150);
    let t = Instant::now();
    assert!(!h.is_finished());
    assert!(
        t.elapsed() < Duration::from_millis(120),
        "{:?}",
        t.elapsed()
    );
    // No other thread drives the pool: `is_finished` itself reads the outcome.
    let until = Instant::now() + Duration::from_secs(10);
    while !h.is_finished() {
        assert!(Instant::now() < until, "never finished");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(t.elapsed() >= Duration::from_millis(150));
    let t = Instant::now();
    assert_eq!(h.wait().unwrap(), 150);
    assert!(
        t.elapsed() < Duration::from_millis(120),
        "wait blocked after is_finished"
    );
}

#[test]
fn a_cancelled_call_never_runs() {
    let dir = scratch("cancel");
    let pool = pool(1);
    // The worker holds two calls at most: the third waits in the queue.
    let running = pool.submit(nap, 300);
    let next = pool.submit(nap, 1);
    let victim = dir.join("cancelled");
    let queued = pool.submit(touch, victim.clone());
    assert!(queued.cancel().is_ok(), "a queued call is cancelled");
    let after = dir.join("after");
    let later = pool.submit(touch, after.clone());
    assert_eq!(running.wait().unwrap(), 300);
    assert_eq!(next.wait().unwrap(), 1);
    // A call queued behind the cancelled one ran: the queue went past it.
    assert!(later.wait().unwrap());
    assert!(ran(&after));
    assert!(!ran(&victim), "the cancelled call ran");
    pool.join().unwrap();
    assert!(!ran(&victim), "the cancelled call ran at the end");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_call_a_worker_holds_or_finished_is_not_cancelled() {
    let dir = scratch("no-cancel");
    let pool = pool(1);
    let path = dir.join("held");
    let held = pool.submit(touch_then_nap, (path.clone(), 200));
    // Once the worker has started it, it runs, whatever cancel says.
    let until = Instant::now() + Duration::from_secs(10);
    while !ran(&path) {
        assert!(Instant::now() < until, "the call never started");
        std::thread::sleep(Duration::from_millis(2));
    }
    let held = held.cancel().unwrap_err();
    assert!(held.wait().unwrap());
    let done = pool.submit(nap, 0);
    let until = Instant::now() + Duration::from_secs(10);
    while !done.is_finished() {
        assert!(Instant::now() < until);
        std::thread::sleep(Duration::from_millis(2));
    }
    let done = done.cancel().unwrap_err();
    assert_eq!(done.wait().unwrap(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn many_cancelled_calls_leave_the_pool_usable() {
    let pool = pool(2);
    let blockers: Vec<_> = (0..4).map(|_| pool.submit(nap, 100)).collect();
    let queued: Vec<_> = (0..1000).map(|i| pool.submit(nap, i % 2)).collect();
    let cancelled = queued.into_iter().filter_map(|h| h.cancel().err()).count();
    assert_eq!(cancelled, 0, "every queued call is cancelled");
    for b in blockers {
        assert_eq!(b.wait().unwrap(), 100);
    }
    assert_eq!(pool.map(nap, [0, 1, 0]).unwrap(), vec![0, 1, 0]);
}

fn assert_owned<T: Send + 'static>(_: &T) {}

#[test]
fn an_owned_handle_moves_to_another_thread() {
    let pool = pool(2);
    let h: Submitted<'static, u64> = pool.submit(nap, 20).into_owned();
    assert_owned(&h);
    let waiter = std::thread::spawn(move || h.wait());
    assert_eq!(waiter.join().unwrap().unwrap(), 20);
    // The pool is as usable as before.
    assert_eq!(pool.apply(nap, 1).unwrap(), 1);
}

#[test]
fn dropping_the_pool_waits_for_the_calls_of_owned_handles() {
    let pool = pool(1);
    let h = pool.submit(nap, 300).into_owned();
    let queued = pool.submit(nap, 50).into_owned();
    let t = Instant::now();
    drop(pool);
    // Both ran to their end before the workers went.
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(h.wait().unwrap(), 300);
    assert_eq!(
        queued.wait_timeout(Duration::ZERO).ok().unwrap().unwrap(),
        50
    );
}

#[test]
fn join_waits_for_owned_calls_waited_on_elsewhere() {
    let pool = pool(2);
    let handles: Vec<_> = (0..6)
        .map(|i| pool.submit(nap, 50 + i).into_owned())
        .collect();
    let waiters: Vec<_> = handles
        .into_iter()
        .map(|h| std::thread::spawn(move || h.wait()))
        .collect();
    pool.join().unwrap();
    let got: Vec<u64> = waiters
        .into_iter()
        .map(|w| w.join().unwrap().unwrap())
        .collect();
    assert_eq!(got, (50..56).collect::<Vec<_>>());
}

#[test]
fn a_dropped_owned_handle_is_not_waited_for() {
    let pool = pool(1);
    let (running, next) = (pool.submit(nap, 200), pool.submit(nap, 1));
    let h = pool.submit(nap, 5_000).into_owned();
    assert!(h.cancel().is_ok(), "queued behind two: cancelled");
    let dropped = pool.submit(nap, 5_000).into_owned();
    drop(dropped);
    drop((running, next));
    let t = Instant::now();
    pool.join().unwrap();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[test]
fn an_owned_handle_goes_to_tokio_spawn() {
    let pool = pool(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let got = rt.block_on(async {
        let tasks: Vec<_> = (0..4)
            .map(|i| tokio::spawn(pool.submit(nap, 10 * i).into_owned()))
            .collect();
        let mut got = Vec::new();
        for t in tasks {
            let r = tokio::time::timeout(Duration::from_secs(10), t).await;
            got.push(r.expect("bounded").unwrap().unwrap());
        }
        got
    });
    assert_eq!(got, vec![0, 10, 20, 30]);
}

#[test]
fn as_completed_yields_in_completion_order() {
    let pool = pool(3);
    let handles: Vec<_> = [600, 20, 300]
        .into_iter()
        .map(|ms| pool.submit(nap, ms))
        .collect();
    let t = Instant::now();
    let mut order = Vec::new();
    for (i, r) in pool_runtime::as_completed(handles) {
        order.push((i, r.unwrap(), t.elapsed()));
    }
    let indices: Vec<usize> = order.iter().map(|o| o.0).collect();
    assert_eq!(indices, vec![1, 2, 0], "{order:?}");
    // Each as it came, not all at the end.
    assert!(order[0].2 < Duration::from_millis(250), "{order:?}");
    assert_eq!(order[0].1, 20);
}

#[test]
fn as_completed_over_thousands_yields_each_once() {
    let pool = pool(2);
    let n = 3000;
    let handles: Vec<_> = (0..n)
        .map(|i| pool.submit(nap, (i % 3 == 0) as u64))
        .collect();
    let t = Instant::now();
    let mut seen = vec![false; n];
    let mut all = pool_runtime::as_completed(handles);
    assert_eq!(all.len(), n);
    for (i, r) in all.by_ref() {
        assert_eq!(r.unwrap(), (i % 3 == 0) as u64);
        assert!(!std::mem::replace(&mut seen[i], true), "{i} twice");
    }
    assert!(all.is_empty());
    assert!(seen.iter().all(|&s| s));
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
}

#[test]
fn as_completed_next_timeout_and_the_rest() {
    let pool = pool(2);
    let mut set = pool_runtime::as_completed(vec![pool.submit(nap, 400), pool.submit(nap, 30)]);
    let t = Instant::now();
    assert!(
        set.next_timeout(Duration::from_millis(5)).is_none(),
        "none yet"
    );
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    let (i, r) = set.next_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!((i, r.unwrap()), (1, 30));
    let rest = set.into_remaining();
    assert_eq!(rest.len(), 1);
    let (i, h) = rest.into_iter().next().unwrap();
    assert_eq!(i, 0);
    assert_eq!(h.wait().unwrap(), 400);
}

#[test]
fn as_completed_wakes_on_terminate() {
    let pool = pool(2);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..6).map(|_| pool.submit(nap, 60_000)).collect();
        let waiter = s.spawn(move || pool_runtime::as_completed(handles).collect::<Vec<_>>());
        std::thread::sleep(Duration::from_millis(100));
        pool.terminate();
        let t = Instant::now();
        let got = waiter.join().unwrap();
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert_eq!(got.len(), 6);
        assert!(got.iter().all(|(_, r)| r.is_err()), "{got:?}");
    });
}

#[worker_task]
fn boom(_: &mut Idle, x: u64) -> u64 {
    assert!(x != 3, "three");
    x
}

const BOUND: Duration = Duration::from_secs(20);

#[test]
fn then_runs_on_the_pump_thread_with_no_one_waiting() {
    let pool = pool(2);
    let (tx, rx) = std::sync::mpsc::channel();
    let caller = std::thread::current().id();
    pool.submit(nap, 50).then(move |r| {
        let me = std::thread::current();
        tx.send((r.unwrap(), me.name().map(String::from), me.id()))
            .unwrap();
    });
    // Nothing here drives the pool: the pump does, and runs the callback.
    let (ms, name, id) = rx.recv_timeout(BOUND).unwrap();
    assert_eq!(ms, 50);
    assert_eq!(name.as_deref(), Some("pool-async-pump"));
    assert_ne!(id, caller);
}

#[test]
fn apply_async_calls_one_callback_or_the_other() {
    let pool = pool(2);
    let (tx, rx) = std::sync::mpsc::channel();
    for x in [1, 3, 5] {
        let (ok, err) = (tx.clone(), tx.clone());
        pool.apply_async(
            boom,
            x,
            move |v| ok.send(Ok(v)).unwrap(),
            move |e| err.send(Err(e.to_string())).unwrap(),
        );
    }
    drop(tx);
    let mut got: Vec<Result<u64, String>> =
        (0..3).map(|_| rx.recv_timeout(BOUND).unwrap()).collect();
    got.sort();
    assert_eq!(got[0], Ok(1));
    assert_eq!(got[1], Ok(5));
    let e = got[2].as_ref().unwrap_err();
    assert!(e.contains("three"), "{e}");
    // Each callback ran once: the senders are all gone now.
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
}

#[test]
fn map_async_hands_the_whole_vec_or_the_first_failure() {
    let pool = pool(2);
    let (tx, rx) = std::sync::mpsc::channel();
    let t2 = tx.clone();
    pool.map_async(boom, vec![0, 1, 2, 4, 5], move |all| tx.send(all).unwrap());
    pool.map_async(boom, 0..10u64, move |all| t2.send(all).unwrap());
    let mut got = [
        rx.recv_timeout(BOUND).unwrap(),
        rx.recv_timeout(BOUND).unwrap(),
    ];
    got.sort_by_key(|r| r.is_err());
    assert_eq!(got[0].as_ref().unwrap(), &vec![0, 1, 2, 4, 5]);
    let e = got[1].as_ref().unwrap_err();
    assert!(e.to_string().contains("three"), "{e}");
    // Many inputs, more than the stream's window.
    let (tx, rx) = std::sync::mpsc::channel();
    pool.map_async(nap, (0..5000).map(|i| i % 2), move |all| {
        tx.send(all).unwrap()
    });
    let all = rx.recv_timeout(BOUND).unwrap().unwrap();
    assert_eq!(all, (0..5000).map(|i| i % 2).collect::<Vec<u64>>());
}

#[test]
fn dropping_the_pool_waits_for_every_callback() {
    let pool = pool(2);
    let (tx, rx) = std::sync::mpsc::channel();
    for ms in [200, 10, 100] {
        let tx = tx.clone();
        pool.submit(nap, ms)
            .then(move |r| tx.send(r.unwrap()).unwrap());
    }
    let tx2 = tx.clone();
    pool.map_async(nap, [30, 40], move |all| {
        tx2.send(all.unwrap().iter().sum()).unwrap()
    });
    drop(tx);
    drop(pool);
    let mut got: Vec<u64> = rx.try_iter().collect();
    got.sort();
    assert_eq!(
        got,
        vec![10, 70, 100, 200],
        "every callback ran before the drop returned"
    );
}

#[test]
fn a_callback_may_use_the_pool() {
    let pool = std::sync::Arc::new(pool(2));
    let (tx, rx) = std::sync::mpsc::channel();
    let inner = std::sync::Arc::clone(&pool);
    pool.submit(nap, 1).then(move |r| {
        let again = inner.apply(nap, r.unwrap() + 1);
        tx.send(again).unwrap();
    });
    assert_eq!(rx.recv_timeout(BOUND).unwrap().unwrap(), 2);
}

#[test]
fn callbacks_after_terminate_get_their_error() {
    let pool = pool(1);
    let (tx, rx) = std::sync::mpsc::channel();
    for _ in 0..3 {
        let tx = tx.clone();
        pool.submit(nap, 60_000).then(move |r| tx.send(r).unwrap());
    }
    drop(tx);
    std::thread::sleep(Duration::from_millis(50));
    pool.terminate();
    for _ in 0..3 {
        let r = rx.recv_timeout(BOUND).unwrap();
        assert_eq!(r.unwrap_err().kind(), &pool_runtime::ErrorKind::Terminated);
    }
}

#[worker_task]
fn pid_after(_: &mut Idle, ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

#[test]
fn a_task_timeout_for_one_call_only() {
    let pool = pool(2);
    let quick = pool.call().task_timeout(Duration::from_millis(150));
    let t = Instant::now();
    let e = quick.apply(nap, 20_000).unwrap_err();
    assert!(
        matches!(e.kind(), pool_runtime::ErrorKind::TimedOut(_)),
        "{e}"
    );
    assert!(
        e.to_string().contains("150ms"),
        "names this call's limit: {e}"
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let outcomes: Vec<_> = quick.imap(nap, [10, 20_000, 10]).collect();
    assert_eq!(outcomes[0].as_ref().unwrap(), &10);
    assert!(outcomes[1].is_err());
    assert_eq!(outcomes[2].as_ref().unwrap(), &10);
    // Other calls keep the pool's (none): this one outlives 150 ms.
    assert_eq!(pool.apply(nap, 400).unwrap(), 400);
    assert_eq!(pool.map(nap, [300, 300]).unwrap(), vec![300, 300]);
}

#[test]
fn a_chunk_size_for_one_call_only() {
    let pool = pool(2);
    // With 10 inputs a frame, each block of 10 runs in one worker.
    let pids = pool
        .call()
        .chunk_size(10)
        .map(pid_after, vec![3; 60])
        .unwrap();
    for block in pids.chunks(10) {
        assert!(block.iter().all(|p| *p == block[0]), "{pids:?}");
    }
    let workers: std::collections::HashSet<_> = pids.iter().collect();
    assert_eq!(workers.len(), 2, "both workers took blocks: {pids:?}");
}

#[test]
fn join_timeout_kills_busy_workers_after_its_grace() {
    let pool = pool(2);
    let pids = pool.broadcast(pid_after, 0).unwrap();
    // Running in both workers, with no one waiting for them.
    drop(pool.submit(nap, 60_000));
    drop(pool.submit(nap, 60_000));
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    pool.join_timeout(Duration::from_millis(100)).unwrap();
    // The pool's default grace is 2 s: this one was 100 ms.
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    assert!(common::wait_gone(&pids, Duration::from_secs(1)).is_empty());
}

#[test]
fn a_callback_that_drops_the_last_handle_on_the_pool_ends_it_without_a_hang() {
    let pool = std::sync::Arc::new(pool(1));
    let (tx, rx) = std::sync::mpsc::channel();
    let last = std::sync::Arc::clone(&pool);
    pool.submit(nap, 1).then(move |r| {
        // The test's own handle is gone by now: this is the last one.
        std::thread::sleep(Duration::from_millis(100));
        drop(last);
        tx.send(r.unwrap()).unwrap();
    });
    let worker = pool.insights().workers[0].pid.unwrap();
    drop(pool);
    assert_eq!(rx.recv_timeout(BOUND).unwrap(), 1);
    // And the pool ended: its worker is gone.
    let until = Instant::now() + BOUND;
    while Path::new(&format!("/proc/{worker}")).exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !Path::new(&format!("/proc/{worker}")).exists(),
        "worker {worker} outlived the pool"
    );
}
