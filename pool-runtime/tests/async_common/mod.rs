//! Tasks and helpers shared by the `async_*` tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use pool_runtime::{worker_exit, worker_init, worker_task, ErrorKind, Pool, WorkerInfo};

/// A worker's state: which generation of its slot it is.
pub struct Me {
    pub generation: u32,
}

#[worker_init]
pub fn me(_: &(), info: WorkerInfo) -> Me {
    Me {
        generation: info.generation(),
    }
}

/// The worker's generation, as it leaves.
#[worker_exit]
pub fn leave(m: Me) -> u32 {
    m.generation
}

#[worker_task]
pub fn square(x: u64) -> u64 {
    x * x
}

/// Panics on 3.
#[worker_task]
pub fn panic_on_three(x: u64) -> u64 {
    if x == 3 {
        panic!("three is right out");
    }
    x
}

/// Aborts its worker on 5.
#[worker_task]
pub fn abort_on_five(x: u64) -> u64 {
    if x == 5 {
        std::process::abort();
    }
    x
}

/// Sleeps `ms`, then returns it.
#[worker_task]
pub fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// The worker's pid and generation.
#[worker_task]
pub fn whoami(m: &Me) -> (u32, u32) {
    (std::process::id(), m.generation)
}

/// Leaves a mark `dir/x` when it starts; input 0 returns at once, any other
/// waits until `dir/release` exists (at most a minute, so nothing hangs).
#[worker_task]
pub fn gated(dir: String, x: u64) -> u64 {
    let dir = Path::new(&dir);
    std::fs::write(dir.join(x.to_string()), b"").unwrap();
    if x != 0 {
        let until = Instant::now() + Duration::from_secs(60);
        while !dir.join("release").exists() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    x
}

/// A fresh directory for the marks of [`gated`].
pub struct Gate {
    pub dir: PathBuf,
}

impl Gate {
    pub fn new(name: &str) -> Gate {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pool-async-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Gate { dir }
    }

    pub fn input(&self, x: u64) -> (String, u64) {
        (self.dir.to_string_lossy().into_owned(), x)
    }

    pub fn release(&self) {
        std::fs::write(self.dir.join("release"), b"").unwrap();
    }

    /// The inputs that started, in order.
    pub fn started(&self) -> Vec<u64> {
        let mut v: Vec<u64> = std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().to_str()?.parse().ok())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether process `pid` is gone (or a zombie no one of ours must reap).
pub fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// The workers' (pid, generation), in slot order.
pub fn workers(pool: &Pool<Me>) -> Vec<(u32, u32)> {
    pool.broadcast(whoami, ()).unwrap()
}

/// A pool stays whole: `map` is right, and the same workers serve.
pub fn assert_usable(pool: &Pool<Me>, before: &[(u32, u32)]) {
    let got = pool.map(square, 0..200u64).unwrap();
    assert_eq!(got, (0..200u64).map(|x| x * x).collect::<Vec<_>>());
    assert_eq!(workers(pool), before, "no worker was lost or replaced");
}

pub fn is_panicked(e: &pool_runtime::Error) -> bool {
    matches!(e.kind(), ErrorKind::Panicked(m) if m.contains("three is right out"))
}

pub fn is_abort(e: &pool_runtime::Error) -> bool {
    matches!(e.kind(), ErrorKind::WorkerDied(m) if m.contains("SIGABRT"))
}

/// Generous: only there so that a bug fails the test instead of hanging it.
pub const HANG: Duration = Duration::from_secs(120);

/// While alive, a watchdog: past [`HANG`], it ends the whole test process
/// with a message instead of letting a lost wake-up hang the test. (Not a
/// timeout future: one would poll the future again when it fires, and so
/// hide a lost wake-up.)
pub struct Dog {
    done: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Dog {
    pub fn arm(what: &str) -> Dog {
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let what = what.to_string();
        let thread = std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(HANG) {
                eprintln!("{what}: hung for {HANG:?}");
                std::process::exit(3);
            }
        });
        Dog {
            done: Some(done),
            thread: Some(thread),
        }
    }
}

impl Drop for Dog {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs `f` under a [`Dog`].
pub fn watchdog<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let _dog = Dog::arm(what);
    f()
}

/// Polls `f` once, with a waker that does nothing.
pub fn poll_once<F: std::future::Future + Unpin>(f: &mut F) -> std::task::Poll<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    std::pin::Pin::new(f).poll(&mut cx)
}
