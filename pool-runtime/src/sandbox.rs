//! [`Sandbox`]: what a worker may still do once its init is over.
//!
//! A worker builds its state with init (which may open its database, its
//! model file, a socket), then locks itself down and only then says it is
//! ready: no task ever runs unsandboxed. In that order: resource limits
//! (`setrlimit(2)`), `no_new_privs`, Landlock rules on the filesystem,
//! and last a seccomp filter (`seccomp(2)`, built with `seccompiler`) that
//! covers every thread of the worker. A task that breaks it fails that
//! input alone, with an error that says which rule it broke; its worker is
//! replaced. See `sandbox/README.md` for the design.

use std::path::PathBuf;

mod apply;
mod breach;
mod filter;
mod filesystem;
mod limits;
mod signal;
mod spec;
mod syscalls;

pub(crate) use apply::enter;
pub(crate) use breach::Breach;
pub(crate) use spec::SANDBOX_ENV;

/// Least privilege for a pool's workers, applied in each worker after its
/// init and before its first task: resource limits, `no_new_privs`, a
/// seccomp filter of system calls, and Landlock rules on the filesystem.
/// Give it to [`PoolBuilder::sandbox`](crate::PoolBuilder::sandbox).
///
/// [`Sandbox::compute_only`] is the preset for code that computes on what
/// it is sent: no new sockets, no `execve`, no new processes, no `ptrace`,
/// files readable but written nowhere. Widen it with
/// [`allow_syscalls`](Sandbox::allow_syscalls) and
/// [`allow_write`](Sandbox::allow_write); [`Sandbox::new`] starts from
/// nothing restricted.
///
/// ```
/// use pool_runtime::{worker_init, worker_task, Pool, Sandbox};
///
/// #[worker_init]
/// fn open(base: &u64) -> u64 { *base }
///
/// #[worker_task]
/// fn add(base: &u64, x: u64) -> u64 { base + x }
///
/// # fn main() -> Result<(), pool_runtime::Error> {
/// let sandbox = Sandbox::compute_only()
///     .max_memory(512 << 20)   // 512 MiB more than the worker has after init
///     .cpu_seconds(60)
///     .max_open_files(64);
/// # let sandbox = sandbox.best_effort(); // the doc tests may run where seccomp is off
/// let pool = Pool::builder().workers(2).sandbox(sandbox).build(open, 10)?;
/// assert_eq!(pool.map(add, 1..4u64)?, [11, 12, 13]);
/// # Ok(()) }
/// ```
///
/// # What a breach does
///
/// * A forbidden system call kills the worker with `SIGSYS`; its input fails
///   with [`ErrorKind::WorkerDied`](crate::ErrorKind::WorkerDied) naming the
///   call (`killed by signal 31 (SIGSYS): the sandbox forbids the system
///   call `socket``). With [`fail_forbidden_calls`](Sandbox::fail_forbidden_calls)
///   the call fails with `EPERM` instead, and the task sees the error.
/// * An allocation past [`max_memory`](Sandbox::max_memory) aborts the
///   worker: `resource limit: address space`.
/// * CPU time past [`cpu_seconds`](Sandbox::cpu_seconds): `resource limit:
///   CPU seconds`; a file grown past [`max_file_size`](Sandbox::max_file_size):
///   `resource limit: file size`.
/// * A write outside the allowed directories fails in the task with
///   `EACCES` (Landlock refuses; nothing dies), like an open file past
///   [`max_open_files`](Sandbox::max_open_files) fails with `EMFILE`.
///
/// Retries and quarantine ([`PoolBuilder::retries`](crate::PoolBuilder::retries))
/// apply to a death by the sandbox as to any other.
///
/// # Where the kernel lacks a part
///
/// A worker that cannot apply every part (no Landlock, no seccomp) fails
/// `build` with [`ErrorKind::Init`](crate::ErrorKind::Init) saying which
/// part and why, unless [`best_effort`](Sandbox::best_effort) was asked:
/// then what cannot be applied is skipped, with a `tracing` warning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sandbox {
    pub(crate) limits: Limits,
    /// `None`: no seccomp filter.
    pub(crate) syscalls: Option<Syscalls>,
    /// `None`: no Landlock rules.
    pub(crate) files: Option<Files>,
    pub(crate) best_effort: bool,
}

/// Resource limits, each `None` when not set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Bytes of address space beyond the worker's at the end of init.
    pub(crate) memory: Option<u64>,
    /// CPU seconds from the end of init.
    pub(crate) cpu_seconds: Option<u64>,
    pub(crate) open_files: Option<u64>,
    pub(crate) file_size: Option<u64>,
    pub(crate) processes: Option<u64>,
}

/// The seccomp filter: the compute preset, plus these calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Syscalls {
    pub(crate) extra: Vec<String>,
    /// A forbidden call fails with `EPERM` instead of killing the worker.
    pub(crate) fail: bool,
}

/// The Landlock rules: reads beneath `read` (everywhere if empty), reads
/// and writes beneath `write`, nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Files {
    pub(crate) read: Vec<PathBuf>,
    pub(crate) write: Vec<PathBuf>,
}

impl Sandbox {
    /// The system calls of networking, for
    /// [`allow_syscalls`](Sandbox::allow_syscalls): new sockets, connecting,
    /// listening, sending to addresses.
    ///
    /// ```
    /// let sandbox = pool_runtime::Sandbox::compute_only().allow_syscalls(pool_runtime::Sandbox::NETWORK);
    /// # let _ = sandbox;
    /// ```
    pub const NETWORK: &'static [&'static str] = &[
        "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4", "sendto",
        "sendmsg", "sendmmsg", "recvmmsg", "setsockopt",
    ];

    /// A sandbox that restricts nothing yet but sets `no_new_privs`: add
    /// limits to it, or rules with [`allow_write`](Sandbox::allow_write)
    /// and [`allow_read`](Sandbox::allow_read).
    ///
    /// ```
    /// let sandbox = pool_runtime::Sandbox::new().cpu_seconds(10).max_file_size(1 << 20);
    /// # let _ = sandbox;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The preset for workers that compute on what they are sent:
    ///
    /// * a seccomp filter that allows memory, time, threads, signals to
    ///   itself, and I/O on descriptors it has (its channel, what init
    ///   opened), and kills the worker on anything else: no new sockets
    ///   (`socket`, `socketpair`), no `connect`, `bind` or `listen`, no
    ///   `execve`, no `fork` or `clone` of a process (threads may be started),
    ///   no `ptrace`, no `kill` of another process, no `mount`, `unshare`,
    ///   `bpf`, `io_uring` or `setrlimit`;
    /// * Landlock rules: every file may be read, none written (nor created,
    ///   removed or renamed);
    /// * `no_new_privs`, and no core dumps.
    ///
    /// ```
    /// let sandbox = pool_runtime::Sandbox::compute_only().allow_write("/tmp/out");
    /// # let _ = sandbox;
    /// ```
    pub fn compute_only() -> Self {
        Sandbox {
            syscalls: Some(Syscalls::default()),
            files: Some(Files::default()),
            ..Self::default()
        }
    }

    /// Address space a worker may map beyond what it has when its init
    /// ends (`RLIMIT_AS`): an allocation past it fails, and the worker
    /// aborts (`resource limit: address space`). Counted from the end of
    /// init because a forked worker starts with the driver's whole address
    /// space mapped (every thread's stack and malloc arena), which the
    /// caller does not control. Thread stacks count too.
    ///
    /// ```
    /// let sandbox = pool_runtime::Sandbox::new().max_memory(256 << 20);
    /// # let _ = sandbox;
    /// ```
    pub fn max_memory(mut self, bytes: u64) -> Self {
        self.limits.memory = Some(bytes);
        self
    }

    /// CPU seconds a worker may use from the end of its init on
    /// (`RLIMIT_CPU`): past them it dies with `SIGXCPU`, failing the input
    /// it was running with `resource limit: CPU seconds`. The count is the
    /// worker's, over all the tasks it runs, not each task's: pair it with
    /// [`max_tasks_per_worker`](crate::PoolBuilder::max_tasks_per_worker)
    /// to bound a few tasks, or use
    /// [`task_timeout`](crate::PoolBuilder::task_timeout) for wall-clock time
    /// per task.
    ///
    /// ```
    /// let sandbox = pool_runtime::Sandbox::new().cpu_seconds(30);
    /// # let _ = sandbox;
    /// ```
    pub fn cpu_seconds(mut self, seconds: u64) -> Self {
        self.limits.cpu_seconds = Some(seconds.max(1));
        self
    }

    /// Descriptors a worker may have open (`RLIMIT_NOFILE`, which counts
    /// the highest number, not how many): opening more fails with `EMFILE`
    /// in the task. The worker's channel and what init opened count.
    ///
    /// ```
    /// let sandbox = pool_runtime::Sandbox::new().max_open_files(32);
    /// # let _ = sandbox;
    /// ```
    pub fn max_open_files(mut self, n: u64) -> Self {
        self.limits.open_files = Some(n);
        self
    }

    /// The largest file a worker may write (`RLIMIT_FSIZE`): writing past
    /// it kills the worker with `SIGXFSZ`, failing the input with
    /// `resource limit: file size`.
    ///
    /// ```
    /// let sandbox = pool_runtime::Sandbox::new().max_file_size(64 << 20);
    /// # let _ = sandbox;
    /// ```
    pub fn max_file_size(mut self, bytes: u64) -> Self {
        self.limits.file_size = Some(bytes);
        self
    }

    /// Processes the worker's user may have (`RLIMIT_NPROC`). The kernel
    /// counts every process of the user, not the worker's children, and
    /// does not apply it to root: the seccomp filter of
    /// [`compute_only`](Sandbox::compute_only) is what stops a task from
    /// starting processes; this is a second fence for a pool run as an
    /// unprivileged user.
    ///
    /// ```
    /// let sandbox = pool_runtime::Sandbox::new().max_processes(1000);
    /// # let _ = sandbox;
    /// ```
    pub fn max_processes(mut self, n: u64) -> Self {
        self.limits.processes = Some(n);
        self
    }

    /// Allows these system calls too, by name (`"socket"`, `"execve"`; see
    /// [`Sandbox::NETWORK`]), whatever their arguments. Turns the seccomp
    /// filter of [`compute_only`](Sandbox::compute_only) on if it was off.
    ///
    /// # Errors
    ///
    /// `build` fails with [`ErrorKind::Init`](crate::ErrorKind::Init) for a
    /// name this architecture has no system call for.
    ///
    /// ```
    /// let sandbox = pool_runtime::Sandbox::compute_only().allow_syscalls(["ptrace"]);
    /// # let _ = sandbox;
    /// ```
    pub fn allow_syscalls<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        let filter = self.syscalls.get_or_insert_with(Syscalls::default);
        filter.extra.extend(names.into_iter().map(|n| n.as_ref().to_string()));
        self
    }

    /// A forbidden system call fails with `EPERM` (the task sees an
    /// `Operation not permitted` error and may carry on) instead of
    /// killing the worker with `SIGSYS`. Thread creation still works.
    ///
    /// ```
    /// let sandbox = pool_runtime::Sandbox::compute_only().fail_forbidden_calls();
    /// # let _ = sandbox;
    /// ```
    pub fn fail_forbidden_calls(mut self) -> Self {
        self.syscalls.get_or_insert_with(Syscalls::default).fail = true;
        self
    }

    /// No seccomp filter: every system call is allowed (the limits and
    /// filesystem rules stay).
    ///
    /// ```
    /// let sandbox = pool_runtime::Sandbox::compute_only().no_syscall_filter();
    /// # let _ = sandbox;
    /// ```
    pub fn no_syscall_filter(mut self) -> Self {
        self.syscalls = None;
        self
    }

    /// Files beneath `path` (a directory or a file) may be written, created,
    /// removed and renamed too, besides being read. Turns the filesystem
    /// rules on if they were off (every file readable, none writable
    /// elsewhere). `path` must exist when the worker applies the sandbox.
    ///
    /// ```
    /// let sandbox = pool_runtime::Sandbox::compute_only().allow_write("/var/tmp/results");
    /// # let _ = sandbox;
    /// ```
    pub fn allow_write(mut self, path: impl Into<PathBuf>) -> Self {
        self.files.get_or_insert_with(Files::default).write.push(path.into());
        self
    }

    /// Reads are allowed beneath `path` only (and beneath any other path
    /// given here or to [`allow_write`](Sandbox::allow_write)), not the
    /// whole filesystem. Turns the filesystem rules on if they were off.
    ///
    /// ```
    /// let sandbox = pool_runtime::Sandbox::compute_only().allow_read("/usr/share/models");
    /// # let _ = sandbox;
    /// ```
    pub fn allow_read(mut self, path: impl Into<PathBuf>) -> Self {
        self.files.get_or_insert_with(Files::default).read.push(path.into());
        self
    }

    /// No filesystem rules (the limits and the seccomp filter stay).
    ///
    /// ```
    /// let sandbox = pool_runtime::Sandbox::compute_only().no_filesystem_rules();
    /// # let _ = sandbox;
    /// ```
    pub fn no_filesystem_rules(mut self) -> Self {
        self.files = None;
        self
    }

    /// Applies what this kernel allows and skips the rest, with a `tracing`
    /// warning from the worker, instead of failing `build`: Landlock
    /// missing or disabled, rules only partly enforced on an older
    /// Landlock, threads left running by init (Landlock binds only the
    /// thread that applies it on kernels before its ABI 8), or a seccomp
    /// that refuses filters.
    ///
    /// ```
    /// let sandbox = pool_runtime::Sandbox::compute_only().best_effort();
    /// # let _ = sandbox;
    /// ```
    pub fn best_effort(mut self) -> Self {
        self.best_effort = true;
        self
    }

    /// What is wrong with this sandbox before any worker starts: a system
    /// call name this architecture lacks.
    pub(crate) fn check(&self) -> Result<(), String> {
        if let Some(filter) = &self.syscalls {
            filter::check_names(&filter.extra)?;
        }
        Ok(())
    }
}
