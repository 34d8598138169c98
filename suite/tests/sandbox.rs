//! Sandboxed workers (`PoolBuilder::sandbox`): each act a sandbox forbids
//! fails its own input with an error that says which rule it broke, while
//! the other inputs of the same map succeed; init is not sandboxed; a pool
//! without a sandbox can do all of it (`sandbox_off_…`, which is what makes
//! every other test here able to fail). `cargo test sandbox` runs them.

mod common;

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pool_runtime::{worker_init, worker_task, Error, ErrorKind, Pool, Sandbox, WorkerExit};
use serde::{Deserialize, Serialize};

pool_runtime::worker_mode_before_main!();

/// Every wait of these tests is bounded by this.
const LIMIT: Duration = Duration::from_secs(30);

/// What a task is asked to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Act {
    Compute(u64),
    /// A new UDP socket.
    Socket,
    /// `execve` of a path that does not exist: `ENOENT` if allowed.
    Exec,
    /// `fork`, the child leaving at once.
    Fork,
    /// A file in this directory, written.
    Write(PathBuf),
    /// This many bytes, allocated and dropped.
    Allocate(usize),
    /// CPU spent, in seconds.
    Spin(u64),
    /// A thread started and joined.
    Thread,
    /// A round trip on the socket init opened, and a read of the file it opened.
    UseWhatInitOpened,
    /// This many descriptors opened at once.
    OpenFiles(usize),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Setup {
    /// A file init opens.
    file: PathBuf,
}

struct Held {
    socket: UdpSocket,
    file: std::fs::File,
}

/// Opens what the sandbox then forbids tasks to open: a socket, a file.
#[worker_init]
fn open(setup: &Setup) -> Result<Held, String> {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    socket
        .connect(socket.local_addr().unwrap())
        .map_err(|e| e.to_string())?;
    let file = std::fs::File::open(&setup.file).map_err(|e| e.to_string())?;
    Ok(Held { socket, file })
}

/// Does `act`: `Ok` with what it did, `Err` with the error it met.
#[worker_task]
fn act(held: &mut Held, act: Act) -> Result<String, String> {
    let e = |e: std::io::Error| e.to_string();
    match act {
        Act::Compute(x) => Ok((x * x).to_string()),
        Act::Socket => UdpSocket::bind("127.0.0.1:0")
            .map(|_| "bound".into())
            .map_err(e),
        Act::Exec => {
            let path = c"/nonexistent/pool-sandbox-test";
            let argv = [path.as_ptr(), std::ptr::null()];
            // SAFETY: a NUL-terminated path and argument list; on success
            // (it never succeeds: no such file) this process would be replaced.
            unsafe { libc::execv(path.as_ptr(), argv.as_ptr()) };
            Err(e(std::io::Error::last_os_error()))
        }
        Act::Fork => {
            // SAFETY: the child calls only `_exit`.
            match unsafe { libc::fork() } {
                -1 => Err(e(std::io::Error::last_os_error())),
                0 => unsafe { libc::_exit(0) },
                pid => {
                    let mut status = 0;
                    // SAFETY: waits for the child just forked.
                    unsafe { libc::waitpid(pid, &mut status, 0) };
                    Ok(format!("forked {pid}"))
                }
            }
        }
        Act::Write(dir) => {
            let path = dir.join(format!("out-{}", std::process::id()));
            std::fs::write(&path, vec![7u8; 64 << 10]).map_err(e)?;
            Ok(path.display().to_string())
        }
        Act::Allocate(n) => {
            let v = vec![1u8; n];
            Ok(v.len().to_string())
        }
        Act::Spin(seconds) => {
            let start = cpu_seconds();
            let wall = Instant::now();
            let mut x = 0u64;
            while cpu_seconds() - start < seconds as f64 && wall.elapsed() < LIMIT {
                for i in 0..100_000u64 {
                    x = x.wrapping_mul(31).wrapping_add(i);
                }
            }
            Ok(std::hint::black_box(x).to_string())
        }
        Act::Thread => std::thread::spawn(|| 6 * 7)
            .join()
            .map(|n| n.to_string())
            .map_err(|_| "the thread panicked".into()),
        Act::UseWhatInitOpened => {
            held.socket.send(b"ping").map_err(e)?;
            let mut buf = [0u8; 4];
            held.socket.recv(&mut buf).map_err(e)?;
            let mut text = String::new();
            use std::io::Seek;
            held.file.rewind().map_err(e)?;
            held.file.read_to_string(&mut text).map_err(e)?;
            Ok(format!("{} {}", String::from_utf8_lossy(&buf), text.trim()))
        }
        Act::OpenFiles(n) => {
            let files = (0..n)
                .map(|_| std::fs::File::open("/proc/self/status"))
                .collect::<Result<Vec<_>, _>>()
                .map_err(e)?;
            Ok(files.len().to_string())
        }
    }
}

/// CPU seconds this process has used.
fn cpu_seconds() -> f64 {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    t(usage.user_time()) + t(usage.system_time())
}

/// A fresh directory under the system's temp dir, with a file for init.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("pool-sandbox-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("allowed")).unwrap();
        std::fs::create_dir_all(dir.join("elsewhere")).unwrap();
        std::fs::write(dir.join("init.txt"), "opened by init\n").unwrap();
        Scratch { dir }
    }
    fn setup(&self) -> Setup {
        Setup {
            file: self.dir.join("init.txt"),
        }
    }
    fn allowed(&self) -> PathBuf {
        self.dir.join("allowed")
    }
    fn elsewhere(&self) -> PathBuf {
        self.dir.join("elsewhere")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pool(sandbox: Option<Sandbox>, scratch: &Scratch) -> Pool<Held> {
    let mut b = Pool::builder().workers(1).task_timeout(LIMIT);
    if let Some(sandbox) = sandbox {
        b = b.sandbox(sandbox);
    }
    b.build(open, scratch.setup()).unwrap()
}

/// The outcome of each act, in input order.
fn run(pool: &Pool<Held>, acts: Vec<Act>) -> Vec<Result<Result<String, String>, Error>> {
    let started = Instant::now();
    let out: Vec<_> = pool.imap(act, acts).collect();
    assert!(
        started.elapsed() < LIMIT * 2,
        "took {:?}",
        started.elapsed()
    );
    out
}

/// `[Compute(1), bad, Compute(2)]`: the first and last give 1 and 4.
fn around(bad: Act) -> Vec<Act> {
    vec![Act::Compute(1), bad, Act::Compute(2)]
}

fn assert_neighbours_ok(out: &[Result<Result<String, String>, Error>]) {
    assert_eq!(out[0].as_ref().unwrap(), &Ok("1".to_string()), "{out:?}");
    assert_eq!(out[2].as_ref().unwrap(), &Ok("4".to_string()), "{out:?}");
}

/// The input's error is its worker's death by `signal`, with these words.
fn assert_died(outcome: &Result<Result<String, String>, Error>, signal: i32, words: &[&str]) {
    let err = match outcome {
        Err(err) => err,
        Ok(ok) => panic!("the act succeeded: {ok:?}"),
    };
    let ErrorKind::WorkerDied(death) = err.kind() else {
        panic!("not a worker death: {err}");
    };
    assert_eq!(death.exit, Some(WorkerExit::Signal(signal)), "{err}");
    for w in words {
        assert!(err.to_string().contains(w), "{w:?} not in: {err}");
    }
}

fn compute_only(scratch: &Scratch) -> Sandbox {
    Sandbox::compute_only().allow_write(scratch.allowed())
}

#[test]
fn sandbox_off_every_act_succeeds() {
    let scratch = Scratch::new("off");
    let pool = pool(None, &scratch);
    let acts = vec![
        Act::Socket,
        Act::Fork,
        Act::Write(scratch.elsewhere()),
        Act::Allocate(1 << 30),
        Act::Spin(2),
        Act::OpenFiles(200),
    ];
    for (a, outcome) in acts.clone().into_iter().zip(run(&pool, acts)) {
        assert!(matches!(outcome, Ok(Ok(_))), "{a:?}: {outcome:?}");
    }
    // Allowed, `execve` finds no such program.
    let exec = pool.apply(act, Act::Exec).unwrap().unwrap_err();
    assert!(exec.contains("No such file"), "{exec}");
}

#[test]
fn sandbox_kills_a_task_that_opens_a_socket_naming_the_call() {
    let scratch = Scratch::new("socket");
    let pool = pool(Some(compute_only(&scratch)), &scratch);
    let out = run(&pool, around(Act::Socket));
    assert_neighbours_ok(&out);
    assert_died(
        &out[1],
        libc::SIGSYS,
        &["SIGSYS", "the sandbox forbids the system call `socket`"],
    );
    // The pool goes on, in a fresh worker.
    assert_eq!(pool.apply(act, Act::Compute(3)).unwrap(), Ok("9".into()));
}

#[test]
fn sandbox_kills_a_task_that_execs() {
    let scratch = Scratch::new("exec");
    let pool = pool(Some(compute_only(&scratch)), &scratch);
    let out = run(&pool, around(Act::Exec));
    assert_neighbours_ok(&out);
    assert_died(&out[1], libc::SIGSYS, &["system call `execve`"]);
}

#[test]
fn sandbox_kills_a_task_that_forks_but_lets_it_start_threads() {
    let scratch = Scratch::new("fork");
    let pool = pool(Some(compute_only(&scratch)), &scratch);
    let out = run(
        &pool,
        vec![Act::Compute(1), Act::Fork, Act::Compute(2), Act::Thread],
    );
    assert_neighbours_ok(&out);
    assert_died(
        &out[1],
        libc::SIGSYS,
        &["system call `clone`", "which would start a process"],
    );
    assert_eq!(out[3].as_ref().unwrap(), &Ok("42".to_string()));
}

#[test]
fn sandbox_refuses_writes_outside_the_allowed_directory() {
    let scratch = Scratch::new("write");
    let pool = pool(Some(compute_only(&scratch)), &scratch);
    let acts = vec![
        Act::Write(scratch.allowed()),
        Act::Write(scratch.elsewhere()),
        Act::Write(std::env::temp_dir()),
        Act::Compute(2),
    ];
    let out = run(&pool, acts);
    let written = out[0].as_ref().unwrap().as_ref().unwrap();
    assert!(
        Path::new(written).starts_with(scratch.allowed()),
        "{written}"
    );
    for refused in &out[1..3] {
        let why = refused.as_ref().unwrap().as_ref().unwrap_err();
        assert!(why.contains("Permission denied"), "{why}");
    }
    assert_eq!(out[3].as_ref().unwrap(), &Ok("4".to_string()));
    assert_eq!(std::fs::read_dir(scratch.elsewhere()).unwrap().count(), 0);
}

#[test]
fn sandbox_memory_limit_fails_the_allocation_past_it() {
    let scratch = Scratch::new("memory");
    let sandbox = compute_only(&scratch).max_memory(256 << 20);
    let pool = pool(Some(sandbox), &scratch);
    let out = run(
        &pool,
        vec![
            Act::Allocate(1 << 20),
            Act::Allocate(1 << 30),
            Act::Compute(2),
        ],
    );
    assert_eq!(out[0].as_ref().unwrap(), &Ok((1 << 20).to_string()));
    assert_died(
        &out[1],
        libc::SIGABRT,
        &["resource limit: address space", "268435456 bytes"],
    );
    assert_eq!(out[2].as_ref().unwrap(), &Ok("4".to_string()));
}

#[test]
fn sandbox_cpu_limit_kills_a_task_that_spins_past_it() {
    let scratch = Scratch::new("cpu");
    let sandbox = compute_only(&scratch).cpu_seconds(1);
    let pool = pool(Some(sandbox), &scratch);
    // Far past it: the kernel counts CPU time by ticks, `getrusage` (which
    // the task watches) adds time a VM's host stole; the wall-clock bound
    // of the spin ends it otherwise.
    let out = run(&pool, around(Act::Spin(25)));
    assert_neighbours_ok(&out);
    assert_died(
        &out[1],
        libc::SIGXCPU,
        &["resource limit: CPU seconds", "1 s of CPU"],
    );
}

#[test]
fn sandbox_file_and_descriptor_limits() {
    let scratch = Scratch::new("files");
    let sandbox = compute_only(&scratch)
        .max_file_size(4096)
        .max_open_files(64);
    let pool = pool(Some(sandbox), &scratch);
    let out = run(
        &pool,
        vec![
            Act::Compute(1),
            Act::Write(scratch.allowed()),
            Act::Compute(2),
            Act::OpenFiles(200),
        ],
    );
    assert_neighbours_ok(&out);
    assert_died(
        &out[1],
        libc::SIGXFSZ,
        &["resource limit: file size", "4096 bytes"],
    );
    let why = out[3].as_ref().unwrap().as_ref().unwrap_err();
    assert!(why.contains("Too many open files"), "{why}");
}

#[test]
fn sandbox_lets_init_open_what_tasks_then_use() {
    let scratch = Scratch::new("init");
    let pool = pool(Some(compute_only(&scratch)), &scratch);
    let out = run(
        &pool,
        vec![Act::UseWhatInitOpened, Act::Socket, Act::UseWhatInitOpened],
    );
    assert_eq!(
        out[0].as_ref().unwrap(),
        &Ok("ping opened by init".to_string())
    );
    assert_died(&out[1], libc::SIGSYS, &["`socket`"]);
    // In the replacement worker: init ran again, before its sandbox.
    assert_eq!(
        out[2].as_ref().unwrap(),
        &Ok("ping opened by init".to_string())
    );
}

#[test]
fn sandbox_can_fail_forbidden_calls_instead_of_killing() {
    let scratch = Scratch::new("eperm");
    let sandbox = compute_only(&scratch).fail_forbidden_calls();
    let pool = pool(Some(sandbox), &scratch);
    let out = run(&pool, vec![Act::Socket, Act::Fork, Act::Thread, Act::Exec]);
    for refused in [&out[0], &out[1], &out[3]] {
        let why = refused.as_ref().unwrap().as_ref().unwrap_err();
        assert!(why.contains("Operation not permitted"), "{why}");
    }
    assert_eq!(out[2].as_ref().unwrap(), &Ok("42".to_string()));
}

#[test]
fn sandbox_allows_more_calls_when_asked() {
    let scratch = Scratch::new("allow");
    let sandbox = compute_only(&scratch).allow_syscalls(Sandbox::NETWORK);
    let pool = pool(Some(sandbox), &scratch);
    assert_eq!(pool.apply(act, Act::Socket).unwrap(), Ok("bound".into()));
}

#[test]
fn sandbox_deaths_are_retried_then_quarantined() {
    let scratch = Scratch::new("retry");
    let pool = Pool::builder()
        .workers(1)
        .retries(1)
        .task_timeout(LIMIT)
        .sandbox(compute_only(&scratch))
        .build(open, scratch.setup())
        .unwrap();
    let out = run(&pool, around(Act::Socket));
    assert_neighbours_ok(&out);
    let err = out[1].as_ref().unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Quarantined(_)), "{err}");
    assert!(err.to_string().contains("`socket`"), "{err}");
}

#[test]
fn sandbox_with_an_unknown_call_fails_build() {
    let scratch = Scratch::new("unknown");
    let err = Pool::builder()
        .workers(1)
        .sandbox(Sandbox::compute_only().allow_syscalls(["sockte"]))
        .build::<_, Held, _, _>(open, scratch.setup())
        .expect_err("build succeeded");
    assert!(matches!(err.kind(), ErrorKind::Init(_)), "{err}");
    assert!(err.to_string().contains("`sockte`"), "{err}");
}

#[test]
fn sandbox_with_a_missing_writable_path_fails_build() {
    let scratch = Scratch::new("missing");
    let err = Pool::builder()
        .workers(1)
        .sandbox(Sandbox::compute_only().allow_write(scratch.dir.join("no-such-dir")))
        .build::<_, Held, _, _>(open, scratch.setup())
        .expect_err("build succeeded");
    assert!(
        err.to_string().contains("cannot apply the sandbox"),
        "{err}"
    );
    assert!(err.to_string().contains("no-such-dir"), "{err}");
}

#[test]
fn sandbox_applies_to_spawn_workers_too() {
    let scratch = Scratch::new("spawn");
    let pool: Pool<Held> = Pool::builder()
        .spawn()
        .workers(1)
        .task_timeout(LIMIT)
        .sandbox(compute_only(&scratch).max_memory(256 << 20))
        .build(open, scratch.setup())
        .unwrap();
    let out = run(
        &pool,
        vec![
            Act::Compute(1),
            Act::Socket,
            Act::Compute(2),
            Act::Write(scratch.elsewhere()),
            Act::Allocate(1 << 30),
            Act::UseWhatInitOpened,
        ],
    );
    assert_neighbours_ok(&out);
    assert_died(
        &out[1],
        libc::SIGSYS,
        &["the sandbox forbids the system call `socket`"],
    );
    let why = out[3].as_ref().unwrap().as_ref().unwrap_err();
    assert!(why.contains("Permission denied"), "{why}");
    assert_died(&out[4], libc::SIGABRT, &["resource limit: address space"]);
    assert_eq!(
        out[5].as_ref().unwrap(),
        &Ok("ping opened by init".to_string())
    );
}

#[test]
fn sandbox_leaves_a_pool_without_one_and_its_neighbours_alone() {
    let scratch = Scratch::new("neighbours");
    let plain = pool(None, &scratch);
    let boxed = pool(Some(compute_only(&scratch)), &scratch);
    let died = run(&boxed, vec![Act::Socket]);
    assert_died(&died[0], libc::SIGSYS, &["`socket`"]);
    // Two pools at once: the sandbox is the workers', never the driver's.
    assert_eq!(plain.apply(act, Act::Socket).unwrap(), Ok("bound".into()));
    let mut socket = std::net::TcpListener::bind("127.0.0.1:0")
        .map(|_| ())
        .is_ok();
    socket &= std::fs::File::create(scratch.elsewhere().join("driver"))
        .and_then(|mut f| f.write_all(b"x"))
        .is_ok();
    assert!(socket, "the driver itself is not sandboxed");
}
