//! Workers started fresh (`Pool::builder().spawn()`): the core behaviours of
//! the pool, each on workers that are this test binary run again in worker
//! mode, not forks. `cargo test spawn` runs them.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pool_runtime::{
    worker_exit, worker_init, worker_task, ErrorKind, Pool, WorkerExit, WorkerInfo,
};
use serde::{Deserialize, Serialize};

pool_runtime::worker_mode_before_main!();

/// Set in the driver before `build`: a fork would see it, a fresh worker not.
static MARK: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Config {
    name: String,
    scale: u64,
}

struct State {
    config: Config,
    info: WorkerInfo,
    inits: u64,
    served: u64,
}

static INITS: AtomicU64 = AtomicU64::new(0);

#[worker_init]
fn open(config: &Config, info: WorkerInfo) -> State {
    State {
        config: config.clone(),
        info,
        inits: INITS.fetch_add(1, Ordering::Relaxed) + 1,
        served: 0,
    }
}

#[worker_init]
fn refuse(why: &String) -> Result<State, String> {
    Err(why.clone())
}

#[worker_task]
fn scaled(s: &mut State, x: u64) -> u64 {
    s.served += 1;
    x * s.config.scale
}

/// `(pid, parent pid, inits in this process, slot, generation, MARK)`.
#[worker_task]
fn whoami(s: &mut State) -> (u32, u32, u64, usize, u32, u64) {
    (
        std::process::id(),
        nix::unistd::getppid().as_raw() as u32,
        s.inits,
        s.info.index(),
        s.info.generation(),
        MARK.load(Ordering::Relaxed),
    )
}

#[worker_task]
fn misbehave(_: &mut State, x: u64, how: String) -> u64 {
    if x == 5 {
        match how.as_str() {
            "panic" => panic!("five is right out"),
            "abort" => std::process::abort(),
            "hang" => std::thread::sleep(Duration::from_secs(60)),
            _ => {}
        }
    }
    x
}

#[worker_task]
fn parse(_: &mut State, line: String) -> Result<u64, String> {
    line.trim()
        .parse()
        .map_err(|_| format!("not a number: {line:?}"))
}

#[worker_task]
fn double(_: &mut State, x: u64) -> u64 {
    2 * x
}

#[worker_task]
fn nap(_: &mut State, ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// `(pid, parent pid)`, for the driver-death and Ctrl-C roles.
#[worker_task]
fn pids(_: &mut State) -> (u32, u32) {
    (std::process::id(), nix::unistd::getppid().as_raw() as u32)
}

#[worker_exit]
fn served(s: State) -> (u32, u64) {
    (std::process::id(), s.served)
}

fn config() -> Config {
    Config {
        name: "fresh".into(),
        scale: 3,
    }
}

fn pool(workers: usize) -> Pool<State> {
    Pool::builder()
        .spawn()
        .workers(workers)
        .build(open, config())
        .unwrap()
}

#[test]
fn spawn_workers_are_fresh_processes_that_build_their_state_once() {
    MARK.store(42, Ordering::Relaxed);
    let pool = pool(2);
    let me = std::process::id();
    let ids = pool.broadcast(whoami, ()).unwrap();
    assert_eq!(ids.len(), 2);
    for (slot, (pid, parent, inits, index, generation, mark)) in ids.iter().enumerate() {
        assert_ne!(*pid, me);
        // A child of the fork server, itself our child.
        assert_eq!(common::parent_of(*parent), Some(me));
        assert_eq!((*inits, *index, *generation), (1, slot, 0));
        assert_eq!(*mark, 0, "a fresh process does not see the driver's memory");
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert_eq!(exe, std::env::current_exe().unwrap());
    }
    // Many tasks later, still one init per worker.
    let _ = pool.map(scaled, 0..1000u64).unwrap();
    let again = pool.broadcast(whoami, ()).unwrap();
    assert!(again.iter().all(|w| w.2 == 1), "{again:?}");
}

#[test]
fn spawn_map_keeps_order_with_the_init_arguments_shipped_once() {
    let pool = pool(2);
    let out = pool.map(scaled, 0..10_000u64).unwrap();
    assert_eq!(out, (0..10_000u64).map(|x| 3 * x).collect::<Vec<_>>());
}

#[test]
fn spawn_every_call_shape_works() {
    let pool = pool(2);
    let mut unordered: Vec<u64> = pool
        .imap_unordered(scaled, 0..500u64)
        .map(Result::unwrap)
        .collect();
    unordered.sort();
    assert_eq!(unordered, (0..500u64).map(|x| 3 * x).collect::<Vec<_>>());
    assert_eq!(pool.apply(scaled, 7).unwrap(), 21);
    let handles: Vec<_> = (0..20u64).map(|x| pool.submit(scaled, x)).collect();
    let got: Vec<u64> = handles.into_iter().map(|h| h.wait().unwrap()).collect();
    assert_eq!(got, (0..20u64).map(|x| 3 * x).collect::<Vec<_>>());
    // A submitted call is a future too (the `async` feature).
    let fut = pool.submit(scaled, 5);
    assert_eq!(futures_lite_block_on(fut).unwrap(), 15);
}

/// A minimal executor: polls `f` on this thread until it is ready.
fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Thread(std::thread::Thread);
    impl Wake for Thread {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark()
        }
    }
    let waker = Waker::from(std::sync::Arc::new(Thread(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        assert!(Instant::now() < until, "the future never finished");
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

#[test]
fn spawn_imap_pulls_inputs_lazily() {
    let pool = pool(2);
    let pulled = AtomicU64::new(0);
    let source = (0..u64::MAX).inspect(|_| {
        pulled.fetch_add(1, Ordering::Relaxed);
    });
    let first: Vec<u64> = pool
        .imap(scaled, source)
        .take(10)
        .map(Result::unwrap)
        .collect();
    assert_eq!(first, (0..10).map(|x| 3 * x).collect::<Vec<_>>());
    assert!(
        pulled.load(Ordering::Relaxed) < 100_000,
        "pulled {pulled:?}"
    );
}

#[test]
fn spawn_a_panic_fails_that_input_alone() {
    let pool = pool(2);
    let out: Vec<_> = pool
        .imap(misbehave, (0..10).map(|x| (x, "panic".to_string())))
        .collect();
    let ErrorKind::Panicked(p) = out[5].as_ref().unwrap_err().kind() else {
        panic!("{:?}", out[5]);
    };
    assert_eq!(p.message, "five is right out");
    assert!(p.location.as_ref().unwrap().file.ends_with("spawn.rs"));
    assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 9);
}

#[test]
fn spawn_a_crash_fails_one_input_and_a_fresh_worker_takes_the_slot() {
    let pool = pool(2);
    let out: Vec<_> = pool
        .imap(misbehave, (0..20).map(|x| (x, "abort".to_string())))
        .collect();
    let ErrorKind::WorkerDied(d) = out[5].as_ref().unwrap_err().kind() else {
        panic!("{:?}", out[5]);
    };
    assert_eq!(d.exit, Some(WorkerExit::Signal(6)), "{d}");
    assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 19);
    let ids = pool.broadcast(whoami, ()).unwrap();
    assert!(
        ids.iter().any(|w| w.4 == 1),
        "one slot has its second worker: {ids:?}"
    );
    assert!(
        ids.iter().all(|w| w.2 == 1),
        "each built its state once: {ids:?}"
    );
}

#[test]
fn spawn_a_hung_task_times_out_and_the_rest_completes() {
    let pool = Pool::builder()
        .spawn()
        .workers(2)
        .task_timeout(Duration::from_millis(300))
        .build(open, config())
        .unwrap();
    let start = Instant::now();
    let out: Vec<_> = pool
        .imap(misbehave, (0..10).map(|x| (x, "hang".to_string())))
        .collect();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(out[5].as_ref().unwrap_err().kind(), ErrorKind::TimedOut(_)),
        "{:?}",
        out[5]
    );
    assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 9);
}

#[test]
fn spawn_retries_then_quarantines_a_poison_input() {
    let pool = Pool::builder()
        .spawn()
        .workers(2)
        .retries(1)
        .build(open, config())
        .unwrap();
    let out: Vec<_> = pool
        .imap(misbehave, (0..10).map(|x| (x, "abort".to_string())))
        .collect();
    assert!(
        matches!(out[5].as_ref().unwrap_err().kind(), ErrorKind::Quarantined(m) if m.contains("killed 2 workers")),
        "{:?}",
        out[5]
    );
    assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 9);
}

#[test]
fn spawn_recycled_workers_run_their_exit_hook_and_join_with_collects_it() {
    let pool = Pool::builder()
        .spawn()
        .workers(2)
        .chunk_size(5)
        .max_tasks_per_worker(50)
        .exit_hook(served)
        .build(open, config())
        .unwrap();
    let out = pool.map(scaled, 0..400u64).unwrap();
    assert_eq!(out.len(), 400);
    let exits = pool.join_with(served).unwrap();
    // 400 inputs, at most 50 per worker: at least 8 workers ran, each
    // through its exit hook, and together they served every input.
    assert!(exits.len() >= 8, "{exits:?}");
    assert_eq!(exits.iter().map(|e| e.1).sum::<u64>(), 400);
    assert!(exits.iter().all(|e| e.1 <= 50), "{exits:?}");
}

#[test]
fn spawn_pipelines_run_on_fresh_workers() {
    let pool = pool(2);
    let lines = vec!["1".to_string(), "x".to_string(), "3".to_string()];
    let out: Vec<_> = pool.pipeline(parse).then(double).imap(lines).collect();
    assert_eq!(*out[0].as_ref().unwrap(), 2);
    assert!(
        matches!(out[1].as_ref().unwrap_err().kind(), ErrorKind::Failed(m) if m.contains("not a number"))
    );
    assert_eq!(*out[2].as_ref().unwrap(), 6);
}

#[test]
fn spawn_an_init_error_fails_build_with_its_message() {
    let start = Instant::now();
    let e = Pool::builder()
        .spawn()
        .workers(2)
        .build(refuse, "the database is away".to_string())
        .map(|_: Pool<State>| ())
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Init(m) if m.contains("the database is away")),
        "{e}"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn spawn_insights_count_every_input() {
    let pool = pool(2);
    let _ = pool.map(scaled, 0..1000u64).unwrap();
    let report = pool.insights();
    let done: u64 = report.workers.iter().map(|w| w.tasks).sum();
    assert_eq!(done, 1000, "{report}");
}

#[test]
fn spawn_refuses_a_worker_built_from_other_code() {
    let start = Instant::now();
    let e = Pool::builder()
        .spawn()
        .workers(2)
        .worker_program(env!("CARGO_BIN_EXE_spawn_other_code"))
        .build(open, config())
        .map(|_| ())
        .unwrap_err();
    let ErrorKind::Init(m) = e.kind() else {
        panic!("{e}")
    };
    assert!(
        m.contains("built from different code than the driver"),
        "{m}"
    );
    // The first of the driver's functions, by name, that the other program lacks.
    assert!(m.contains("is not in this worker's program"), "{m}");
    assert!(m.contains("`spawn::"), "{m}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

/// Live processes running `program`.
fn running(program: &str) -> Vec<u32> {
    let program = std::path::Path::new(program);
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|exe| exe == program))
        .filter(|&p| common::process_alive(p))
        .collect()
}

#[test]
fn spawn_a_program_that_forgot_the_entry_fails_build_at_once() {
    let program = env!("CARGO_BIN_EXE_spawn_no_entry");
    // Its `main` builds a pool, ends, or does something else for a minute.
    for (mode, expect, within) in [
        ("build", "did not enter worker mode", 1),
        ("exit", "worker_mode()", 1),
        ("sleep", "did not enter worker mode within 2s", 4),
    ] {
        let start = Instant::now();
        // Read by the program's `main`; the lock of `std::env` orders it
        // with the other tests' reads.
        std::env::set_var("SPAWN_NO_ENTRY", mode);
        let e = Pool::builder()
            .spawn()
            .workers(2)
            .worker_program(program)
            .build(open, config())
            .map(|_| ())
            .unwrap_err();
        std::env::remove_var("SPAWN_NO_ENTRY");
        assert!(
            matches!(e.kind(), ErrorKind::Init(m) if m.contains(expect)),
            "{mode}: {e}"
        );
        let took = start.elapsed();
        assert!(took < Duration::from_secs(within), "{mode}: {took:?}");
        assert_eq!(
            running(program),
            Vec::<u32>::new(),
            "{mode}: no process is left"
        );
    }
}

const ROLE: &str = "POOL_TEST_SPAWN_ROLE";

#[test]
#[ignore = "run by spawn_driver_killed_takes_workers_along and spawn_ctrl_c as a child process"]
fn spawn_driver_role() {
    if std::env::var(ROLE).is_err() {
        return;
    }
    common::default_sigint();
    let pool = pool(2);
    let ids = pool.broadcast(pids, ()).unwrap();
    println!("{}", common::pids_line(&ids));
    let _ = pool.map(nap, vec![50; 2000]);
    println!("MAP RETURNED");
}

#[test]
fn spawn_driver_killed_takes_workers_along() {
    let (mut child, pids) = common::spawn_role("spawn_driver_role", ROLE, false);
    assert_eq!(pids.len(), 3);
    std::thread::sleep(Duration::from_millis(100));
    child.kill().unwrap();
    child.wait().unwrap();
    let left = common::wait_gone(&pids, Duration::from_secs(1));
    assert!(left.is_empty(), "still alive: {left:?}");
}

#[test]
fn spawn_ctrl_c_ends_driver_and_workers() {
    let (mut child, pids) = common::spawn_role("spawn_driver_role", ROLE, true);
    std::thread::sleep(Duration::from_millis(200));
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGINT).unwrap();
    let start = Instant::now();
    let status = child.wait().unwrap();
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(!status.success(), "the driver died of SIGINT: {status:?}");
    let left = common::wait_gone(&pids, Duration::from_secs(1));
    assert!(left.is_empty(), "still alive: {left:?}");
}

#[test]
fn spawn_no_process_outlives_the_pool() {
    let me = std::process::id();
    let pool = pool(2);
    let ids = pool.broadcast(pids, ()).unwrap();
    let mut all: Vec<u32> = ids.iter().map(|i| i.0).collect();
    all.push(ids[0].1);
    drop(pool);
    assert_eq!(common::wait_gone(&all, Duration::ZERO), Vec::<u32>::new());
    assert!(!common::children_of(me).iter().any(|p| all.contains(p)));
}

#[test]
fn spawn_progress_bar_and_async_streams_work() {
    use std::pin::Pin;
    use std::task::{Context, Poll};
    let pool = pool(2);
    // A bar drawn nowhere still counts every outcome on its way.
    let out: Vec<u64> = pool
        .imap(scaled, 0..300u64)
        .progress_to(pool_runtime::ProgressDrawTarget::hidden())
        .map(Result::unwrap)
        .collect();
    assert_eq!(out, (0..300u64).map(|x| 3 * x).collect::<Vec<_>>());
    // The same stream as an async `Stream`, polled by hand.
    let mut stream = pool.imap(scaled, 0..100u64).into_stream();
    let mut got = Vec::new();
    let next = std::future::poll_fn(|cx: &mut Context<'_>| loop {
        match futures_core::Stream::poll_next(Pin::new(&mut stream), cx) {
            Poll::Ready(Some(r)) => got.push(r.unwrap()),
            Poll::Ready(None) => return Poll::Ready(()),
            Poll::Pending => return Poll::Pending,
        }
    });
    futures_lite_block_on(next);
    assert_eq!(got, (0..100u64).map(|x| 3 * x).collect::<Vec<_>>());
}

#[test]
fn spawn_terminate_kills_fresh_workers_and_fails_what_waits() {
    let pool = pool(2);
    let ids = pool.broadcast(pids, ()).unwrap();
    let workers: Vec<u32> = ids.iter().map(|i| i.0).collect();
    std::thread::scope(|s| {
        let waiting = s.spawn(|| pool.map(nap, vec![60_000; 4]));
        std::thread::sleep(Duration::from_millis(200));
        pool.terminate();
        let out = waiting.join().unwrap();
        assert!(
            matches!(&out, Err(e) if *e.kind() == ErrorKind::Terminated),
            "{out:?}"
        );
    });
    assert!(common::wait_gone(&workers, Duration::from_secs(1)).is_empty());
    assert!(matches!(pool.apply(scaled, 1), Err(e) if *e.kind() == ErrorKind::Terminated));
}
