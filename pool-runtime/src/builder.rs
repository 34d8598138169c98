//! [`PoolBuilder`]: how many workers, how work is cut, and `build`.

use std::time::Duration;

use crate::channel::frame::MAX_FRAME;
use crate::driver::{Config, Driver};
use crate::error::{Error, ErrorKind};
use crate::pool::Pool;
use crate::registry;
use crate::sandbox::Sandbox;
use crate::task::{Exit, Init};
use crate::transport::exec::Program;
use crate::transport::fork::{ForkServer, Settings};
use crate::worker::Recycle;
use std::any::TypeId;

/// Configures and starts a [`Pool`]. Get one from [`Pool::builder`].
///
/// ```
/// use pool_runtime::{worker_init, Pool};
///
/// #[worker_init]
/// fn open(name: &String) -> String { name.clone() }
///
/// # fn main() -> Result<(), pool_runtime::Error> {
/// let pool = Pool::builder().workers(2).chunk_size(64).build(open, "db".to_string())?;
/// assert_eq!(pool.workers(), 2);
/// # Ok(()) }
/// ```
///
/// Workers are forks of a fork server made at `build` ([`Fork`], the
/// default); [`spawn`](PoolBuilder::spawn) starts them fresh instead
/// ([`Spawn`]).
#[derive(Debug, Clone)]
pub struct PoolBuilder<Start = Fork> {
    start: Start,
    workers: usize,
    chunk_size: Option<usize>,
    max_frame: usize,
    shutdown_grace: Duration,
    respawn_limit: u32,
    retries: u32,
    task_timeout: Option<Duration>,
    init_timeout: Option<Duration>,
    exit_timeout: Option<Duration>,
    recycle: Recycle,
    sandbox: Option<Sandbox>,
    /// The state type the exit hook given to [`exit_hook`](Self::exit_hook) consumes.
    exit_state: Option<(TypeId, &'static str)>,
    #[cfg(feature = "progress")]
    progress: crate::ProgressMode,
}

impl Pool<()> {
    /// A builder with the default settings (one worker per CPU).
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }
}

/// How workers start: forks of the driver's memory, taken at `build` (the
/// default). Init arguments need no serde; see [`PoolBuilder::build`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Fork;

/// How workers start: each is the program run again in worker mode (see
/// [`worker_mode`](crate::worker_mode)), sharing nothing with the driver's
/// memory. From [`PoolBuilder::spawn`].
#[derive(Debug, Clone, Default)]
pub struct Spawn {
    program: Option<std::path::PathBuf>,
}

/// Init arguments of workers started fresh: they cross to each worker,
/// once, with serde.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the init arguments of workers started with `spawn()`: they cross to each worker with serde",
    label = "sent once to every worker, which is not a fork and cannot read it from the driver's memory",
    note = "pass what a worker needs to build its state itself (a path, a URL, a config that implements `Serialize` and `DeserializeOwned`) and let the `#[worker_init]` fn open the rest: that init is a factory, found in the worker by its name",
    note = "or drop `.spawn()`: forked workers read init arguments of any type from memory"
)]
pub trait SpawnArgs: serde::Serialize + serde::de::DeserializeOwned {}
#[diagnostic::do_not_recommend]
impl<T: serde::Serialize + serde::de::DeserializeOwned> SpawnArgs for T {}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            start: Fork,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            chunk_size: None,
            max_frame: MAX_FRAME,
            shutdown_grace: Duration::from_secs(2),
            respawn_limit: 3,
            retries: 0,
            task_timeout: None,
            exit_timeout: None,
            init_timeout: None,
            recycle: Recycle::default(),
            sandbox: None,
            exit_state: None,
            #[cfg(feature = "progress")]
            progress: Default::default(),
        }
    }
}

impl PoolBuilder<Fork> {
    /// Starts the workers: each runs `init(&args)` once, after the fork.
    ///
    /// `args` is moved in and never serialized: it need not be `Serialize`,
    /// `Send`, `Clone` or even `'static` (a `&Table` works). The workers read
    /// it copy-on-write from the fork server, a copy of this process taken
    /// now; the driver's own copy is dropped before `build` returns.
    ///
    /// An init that returns `Result<S, E>` can leave the pool's state type to
    /// be inferred from the tasks used on it; where nothing else names it,
    /// write the type: `let pool: Pool<State> = ...`.
    ///
    /// # When it returns
    ///
    /// As soon as one worker is ready: the others run their init while the
    /// pool already serves (with a 1 GiB heap, a worker costs a fork's
    /// worth of page-table copying, so waiting for all would cost one more
    /// per worker). Calls that mean every worker wait for them:
    /// [`broadcast`](Pool::broadcast), [`join_with`](Pool::join_with),
    /// [`join`](Pool::join) and [`insights`](Pool::insights).
    /// [`submit_to`](Pool::submit_to) a slot still starting waits for it.
    ///
    /// If the first init of some worker fails after `build` has returned
    /// (it returns an error, panics, dies, or runs past the
    /// [`init_timeout`](PoolBuilder::init_timeout)), the pool breaks as
    /// `build` would have failed: every worker is killed, every input
    /// without its outcome yet fails with [`ErrorKind::Init`] and that
    /// init's message (the same error `build` returns), and so does every
    /// later call; [`join`](Pool::join) and [`join_with`](Pool::join_with)
    /// wait for every first init and return it, so a program that joins
    /// always learns of it. Outcomes handed out before stay valid: they
    /// ran on a worker whose init succeeded. The failure is never retried;
    /// a replacement worker's init failing later (after a crash) is
    /// governed by [`respawn_limit`](PoolBuilder::respawn_limit) instead.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Init`] if an init returns an error, panics or dies
    /// before any worker is ready (no worker process is left behind);
    /// [`ErrorKind::Io`] if a process or a channel cannot be created.
    ///
    /// # Fork safety
    ///
    /// The fork happens here, once. If other threads of the program hold a
    /// lock at that instant (a `Mutex` that `init` needs, say), the workers
    /// find it locked forever: build pools before starting such threads, or
    /// make sure they hold no lock `init` takes.
    pub fn build<A, S, I, M>(self, init: I, args: A) -> Result<Pool<S>, Error>
    where
        I: Init<A, S, M>,
        S: 'static,
    {
        self.prepare::<S>()?;
        // The wake-up descriptor first: once the fork server runs, nothing
        // can fail before the driver owns it (and its drop reaps it).
        let sleep = crate::driver::sleep::Sleep::new()?;
        let transport = ForkServer::start(init, args, self.settings(), self.sandbox.as_ref())?;
        self.finish(sleep, transport)
    }

    /// Starts workers with fresh address spaces: each is this program run
    /// again, which enters worker mode at its first line,
    /// [`pool_runtime::worker_mode()`](crate::worker_mode) (or
    /// [`worker_mode_before_main!()`](crate::worker_mode_before_main) in a
    /// test binary). For a program that cannot fork safely at `build`
    /// (threads holding locks, a running async runtime, a GPU or database
    /// client that breaks across fork), or that wants workers sharing
    /// nothing with it.
    ///
    /// Everything else works as with forked workers. The init arguments
    /// cross to each worker once, with serde; tasks and exit hooks are
    /// found by their stable names, and a worker whose program registers
    /// other functions than the driver's is refused at `build`, naming the
    /// first that differs.
    ///
    /// ```no_run
    /// use pool_runtime::{worker_init, worker_task, Pool};
    ///
    /// #[worker_init]
    /// fn open(path: &String) -> String { std::fs::read_to_string(path).unwrap() }
    ///
    /// #[worker_task]
    /// fn lines(text: &mut String) -> usize { text.lines().count() }
    ///
    /// fn main() {
    ///     pool_runtime::worker_mode();
    ///     let pool = Pool::builder()
    ///         .spawn()
    ///         .workers(2)
    ///         .build(open, "/etc/hosts".to_string())
    ///         .unwrap();
    ///     println!("{:?}", pool.broadcast(lines, ()).unwrap());
    /// }
    /// ```
    pub fn spawn(self) -> PoolBuilder<Spawn> {
        self.starting(Spawn::default())
    }

    /// Runs the workers on *hosts*, through Redis Streams at `url`
    /// (`redis://[user:password@]host:port[/db]`, or `redis+unix:///path`;
    /// for a Redis Cluster, any of its nodes): the same tasks and calls, on
    /// as many machines as run a host. A host
    /// is this same program started with [`HOST_ENV`](crate::redis::HOST_ENV)
    /// set to the URL; it enters host mode in [`worker_mode`](crate::worker_mode).
    /// As with [`spawn`](PoolBuilder::spawn), the init arguments cross
    /// with serde, once per host.
    ///
    /// In flight at once: two batches for each worker of the hosts that
    /// serve the pool (one running, one waiting, as locally), followed as
    /// hosts join and leave, and at least `2n` for `workers(n)` (default
    /// 8), the driver's relays to Redis; at most 64 per relay, so hosts of
    /// more than `32n` workers in all want a larger `n`. Each host runs one
    /// worker per CPU (or [`HOST_WORKERS_ENV`](crate::redis::HOST_WORKERS_ENV)),
    /// with this builder's retries, task timeout, init timeout, respawn
    /// limit, task limit and frame limit. `build` waits until
    /// [`hosts`](PoolBuilder::hosts) hosts serve the pool. See
    /// [`crate::redis`] for the guarantees.
    ///
    /// ```no_run
    /// # use pool_runtime::{worker_init, worker_task, Pool};
    /// # #[worker_init] fn open(path: &String) -> String { path.clone() }
    /// # #[worker_task] fn size(s: &mut String, n: u64) -> u64 { s.len() as u64 + n }
    /// fn main() -> Result<(), pool_runtime::Error> {
    ///     pool_runtime::worker_mode(); // a host leaves `main` here
    ///     let pool = Pool::builder()
    ///         .redis("redis://127.0.0.1:6379")
    ///         .hosts(2)
    ///         .build(open, "db.sqlite".to_string())?;
    ///     let sizes = pool.map(size, 0..1000)?;
    ///     # let _ = sizes;
    ///     pool.join()
    /// }
    /// ```
    #[cfg(feature = "redis")]
    pub fn redis(self, url: impl Into<String>) -> PoolBuilder<crate::redis::Redis> {
        let mut b = self.starting(crate::redis::Redis::new(url.into()));
        b.workers = 8;
        b
    }
}

#[cfg(feature = "redis")]
impl PoolBuilder<crate::redis::Redis> {
    /// `build` waits until this many hosts serve the pool (default 1).
    pub fn hosts(mut self, n: usize) -> Self {
        self.start.min_hosts = n.max(1);
        self
    }

    /// How long `build` waits for the hosts (default 30 s); it then fails
    /// with `ErrorKind::Init`, saying how many came. The same bound holds
    /// once the pool runs: when no host has served it for this long while
    /// inputs wait (the hosts it had died or left), each of those fails
    /// with `ErrorKind::PoolBroken` saying so, never a hang, and so does
    /// what is sent after, at once, until a host serves the pool again;
    /// then it runs as before.
    pub fn host_wait(mut self, limit: Duration) -> Self {
        self.start.host_wait = limit;
        self
    }

    /// How long a host may go without renewing its lease before it is
    /// taken for dead and its batches go to other hosts (default 2 s; it
    /// renews it every quarter of that). A live host's long task is never
    /// run twice, however long it runs.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.start.lease = lease.max(Duration::from_millis(100));
        self
    }

    /// Deliveries of an input to hosts that died (or went silent past
    /// their lease) holding it, after which it is `ErrorKind::Quarantined`
    /// and its entry goes to the pool's dead-letter stream (default 3). A
    /// batch of several inputs whose host died goes on as one entry per
    /// input, each counting from there: a death while a host held many
    /// inputs blames none of them, so only the input that kills hosts is
    /// quarantined.
    pub fn max_deliveries(mut self, n: u32) -> Self {
        self.start.max_deliveries = n.max(1);
        self
    }

    /// How long the pool's keys outlive a driver that died without ending
    /// it (default 30 s; the driver renews them while it lives). Its hosts
    /// stop its work when they go.
    pub fn key_ttl(mut self, ttl: Duration) -> Self {
        self.start.key_ttl = ttl.max(Duration::from_millis(500));
        self
    }

    /// A CA certificate (PEM file) to trust for a `rediss://` URL, besides
    /// the system's (feature `redis-tls`); hosts take theirs from
    /// [`CA_ENV`](crate::redis::CA_ENV).
    pub fn redis_ca(mut self, pem: impl Into<std::path::PathBuf>) -> Self {
        self.start.ca = Some(pem.into());
        self
    }

    /// How long the driver keeps trying to reach Redis after a cut before
    /// every input waiting fails with `ErrorKind::PoolBroken` (default 30 s).
    pub fn redis_patience(mut self, limit: Duration) -> Self {
        self.start.patience = limit;
        self
    }

    /// Publishes the pool on Redis and waits for its hosts; each builds its
    /// workers' state with `init` from `args`, sent once to each host.
    ///
    /// # Errors
    ///
    /// `ErrorKind::Init` if Redis cannot be reached or refuses the
    /// connection (a wrong password, in Redis's words), if hosts refuse
    /// the pool (they run other code: the difference is named; or their
    /// init failed), or if too few hosts came in time.
    pub fn build<A, S, I, M>(self, init: I, args: A) -> Result<Pool<S>, Error>
    where
        I: Init<A, S, M> + 'static,
        S: 'static,
        A: SpawnArgs,
    {
        self.prepare::<S>()?;
        if self.sandbox.is_some() {
            return Err(Error::new(ErrorKind::Init(
                "a sandbox is not supported on Redis hosts: their workers would run unsandboxed".into(),
            )));
        }
        let hello = hello_of(&init, &args)?;
        drop((init, args));
        let config = crate::redis::HostConfig {
            lease: self.start.lease,
            max_deliveries: self.start.max_deliveries,
            retries: self.retries,
            task_timeout: self.task_timeout,
            init_timeout: self.init_timeout,
            respawn_limit: self.respawn_limit,
            max_frame: self.max_frame,
            max_tasks: self.recycle.max_tasks,
            exit_hook: self.recycle.exit_hook,
        };
        let sleep = crate::driver::sleep::Sleep::new()?;
        let transport = crate::redis::connect(&self.start, hello, config, (self.max_frame, self.workers))?;
        let span = tracing::info_span!("build", window = self.workers, redis = %transport.pool());
        let _build = span.enter();
        let mut b = self;
        // The hosts run the tasks under these; the relays need none.
        b.task_timeout = None;
        b.recycle = Recycle::default();
        // A Redis pool's slots are relays, up at once: it waits for all.
        b.finish_with(sleep, Box::new(transport), true)
    }
}

/// The greeting of workers that are not forks: the init's name and its
/// arguments, encoded.
fn hello_of<A: SpawnArgs, I: 'static>(_init: &I, args: &A) -> Result<Vec<u8>, Error> {
    let entry = registry::init_of::<I>().ok_or_else(|| {
        Error::new(ErrorKind::NotRegistered(
            "the init given to `build` (mark it with #[worker_init])",
        ))
    })?;
    let mut bytes = Vec::new();
    crate::codec::encode(args, &mut bytes).map_err(|e| {
        Error::new(ErrorKind::Codec(format!("could not encode the init arguments: {e}")))
    })?;
    Ok(crate::fresh::hello(entry.name, &bytes))
}

impl PoolBuilder<Spawn> {
    /// The program workers run (default: this very program,
    /// `/proc/self/exe`). It must register the same `#[worker_task]`,
    /// `#[worker_exit]` and `#[worker_init]` functions as the driver, and
    /// call [`worker_mode`](crate::worker_mode) first.
    pub fn worker_program(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.start.program = Some(path.into());
        self
    }

    /// Starts the workers: each is the worker program run again, which
    /// receives `args` (encoded once, here) and runs `init(&args)`.
    ///
    /// `init` must carry `#[worker_init]` (the worker finds it by name),
    /// and `args` must implement `Serialize` and `DeserializeOwned`
    /// ([`SpawnArgs`]): a compile error says so otherwise.
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`]; also [`ErrorKind::NotRegistered`] for an
    /// init without `#[worker_init]`, and [`ErrorKind::Init`] when a worker
    /// cannot start the program, it never enters worker mode, or it was
    /// built from other code (the message names the first function that
    /// differs).
    pub fn build<A, S, I, M>(self, init: I, args: A) -> Result<Pool<S>, Error>
    where
        I: Init<A, S, M> + 'static,
        S: 'static,
        A: SpawnArgs,
    {
        self.prepare::<S>()?;
        let hello = hello_of(&init, &args)?;
        drop((init, args));
        let program = Program::new(self.start.program.as_deref())
            .map_err(|why| Error::new(ErrorKind::Init(why)))?;
        let sleep = crate::driver::sleep::Sleep::new()?;
        let transport =
            ForkServer::start_fresh(self.settings(), self.sandbox.as_ref(), &program, hello)?;
        self.finish(sleep, transport)
    }
}

impl<Start> PoolBuilder<Start> {
    /// What every `build` checks and prepares first.
    fn prepare<S: 'static>(&self) -> Result<(), Error> {
        crate::fresh::check_not_a_forgotten_worker().map_err(|why| Error::new(ErrorKind::Init(why)))?;
        registry::prepare();
        crate::unwind::install_panic_hook();
        if let Some(sandbox) = &self.sandbox {
            sandbox.check().map_err(|why| Error::new(ErrorKind::Init(why)))?;
        }
        self.check_exit_hook::<S>()
    }

    fn settings(&self) -> Settings<'_> {
        Settings {
            workers: self.workers,
            max_frame: self.max_frame,
            recycle: &self.recycle,
        }
    }

    /// The same settings, another way to start workers.
    fn starting<T>(self, start: T) -> PoolBuilder<T> {
        PoolBuilder {
            start,
            workers: self.workers,
            chunk_size: self.chunk_size,
            max_frame: self.max_frame,
            shutdown_grace: self.shutdown_grace,
            respawn_limit: self.respawn_limit,
            retries: self.retries,
            task_timeout: self.task_timeout,
            init_timeout: self.init_timeout,
            exit_timeout: self.exit_timeout,
            recycle: self.recycle,
            sandbox: self.sandbox,
            exit_state: self.exit_state,
            #[cfg(feature = "progress")]
            progress: self.progress,
        }
    }

    /// The driver over `transport`, once its first worker is ready.
    fn finish<S: 'static>(
        self,
        sleep: crate::driver::sleep::Sleep,
        transport: ForkServer,
    ) -> Result<Pool<S>, Error> {
        // Made after the fork, so the fork server and its workers (which
        // inherit the subscriber) do not run inside it forever.
        let zygote = transport.pid().as_raw();
        let span = tracing::info_span!("build", workers = self.workers, zygote);
        let _build = span.enter();
        self.finish_with(sleep, Box::new(transport), false)
    }

    /// The driver over `transport`, once one worker is ready (`all`: every
    /// one); the others come up while the pool serves.
    fn finish_with<S: 'static>(
        self,
        sleep: crate::driver::sleep::Sleep,
        transport: Box<dyn crate::transport::Transport>,
        all: bool,
    ) -> Result<Pool<S>, Error> {
        let driver = Driver::new(transport, sleep, self.config());
        let started = if all {
            driver.start_workers()
        } else {
            driver.start_first_worker()
        };
        match started {
            Ok(()) => {
                tracing::info!("pool built");
                let pool = Pool::new(driver).with_exit_timeout(self.exit_timeout);
                #[cfg(feature = "progress")]
                let pool = pool.with_progress(self.progress);
                Ok(pool)
            }
            Err(why) => {
                tracing::warn!(error = %why, "build failed");
                driver.shutdown(None);
                Err(Error::new(ErrorKind::Init(why)))
            }
        }
    }
}

impl<Start> PoolBuilder<Start> {
    /// Number of worker processes (default: the number of CPUs). At least 1.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Inputs per frame sent to a worker. By default the pool picks it as it
    /// goes, from how long tasks take (aiming at a few milliseconds of work
    /// per frame), so tiny tasks travel by the thousand and slow ones alone.
    pub fn chunk_size(mut self, n: usize) -> Self {
        self.chunk_size = Some(n.clamp(1, u32::MAX as usize));
        self
    }

    /// The largest frame either side accepts (default 1 GiB). An input or a
    /// batch of results larger than this is an error for those inputs.
    pub fn max_frame_bytes(mut self, bytes: usize) -> Self {
        self.max_frame = bytes.clamp(1024, u32::MAX as usize);
        self
    }

    /// How long workers still busy when the pool ends may finish before
    /// they are killed (default 2 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// How many times in a row a slot may fail to start a replacement worker
    /// (its init failing or crashing) before it stays empty (default 3).
    /// Between attempts the pool waits 100 ms, then 200 ms, 400 ms, … (at
    /// most 5 s), so a database that went away is not hammered.
    pub fn respawn_limit(mut self, n: u32) -> Self {
        self.respawn_limit = n.max(1);
        self
    }

    /// Runs an input whose worker died (signal, `abort`, `exit`, OOM kill)
    /// again, up to `n` times, each time in a fresh worker (default 0). An
    /// input that kills `n + 1` workers is quarantined: it fails with
    /// [`ErrorKind::Quarantined`] and is not run again, so a poison pill
    /// never takes the pool down. With 0, it fails with
    /// [`ErrorKind::WorkerDied`]. Retried inputs may run more than once:
    /// make tasks with side effects idempotent.
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// Kills a task that runs longer than `limit`, with its worker: the input
    /// fails with [`ErrorKind::TimedOut`] and a fresh worker takes the slot.
    /// Enforced within `limit` plus a tenth of it (at most 250 ms more), while
    /// some thread waits on the pool.
    pub fn task_timeout(mut self, limit: Duration) -> Self {
        self.task_timeout = Some(limit);
        self
    }

    /// Kills a worker whose exit hook runs longer than `limit` at
    /// [`join_with`](crate::Pool::join_with) (mpire's `worker_exit_timeout`):
    /// that worker's outcome is then [`ErrorKind::TimedOut`], saying so, and
    /// `join_with` returns it (the first failure, in worker order). No limit
    /// by default; [`join_with_timeout`](crate::Pool::join_with_timeout)
    /// sets one for one call.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use pool_runtime::{worker_exit, worker_init, ErrorKind, Pool};
    ///
    /// #[worker_init]
    /// fn none(_: &()) -> u8 { 0 }
    ///
    /// #[worker_exit]
    /// fn flush_forever(_: u8) -> u8 { loop { std::thread::park() } }
    ///
    /// # fn main() -> Result<(), pool_runtime::Error> {
    /// let pool = Pool::builder()
    ///     .workers(2)
    ///     .exit_timeout(Duration::from_millis(100))
    ///     .build(none, ())?;
    /// let t = Instant::now();
    /// let e = pool.join_with(flush_forever).unwrap_err();
    /// assert!(matches!(e.kind(), ErrorKind::TimedOut(m) if m.contains("exit hook")));
    /// assert!(t.elapsed() < Duration::from_secs(5));
    /// # Ok(()) }
    /// ```
    pub fn exit_timeout(mut self, limit: Duration) -> Self {
        self.exit_timeout = Some(limit);
        self
    }

    /// Kills a worker whose init runs longer than `limit`: an init failure,
    /// which fails `build`, or breaks the pool if `build` has returned
    /// meanwhile (see [`build`](PoolBuilder::build)), or, on respawn,
    /// counts toward the respawn limit. Checked while some thread waits on
    /// the pool.
    pub fn init_timeout(mut self, limit: Duration) -> Self {
        self.init_timeout = Some(limit);
        self
    }

    /// Replaces a worker once it has run `n` tasks: it runs the
    /// [`exit_hook`](Self::exit_hook), if any, and leaves; a fresh worker runs
    /// init again. Bounds what a leaky task or library can accumulate.
    pub fn max_tasks_per_worker(mut self, n: u64) -> Self {
        self.recycle.max_tasks = Some(n.max(1));
        self
    }

    /// Replaces a worker whose resident memory has grown past `bytes`,
    /// checked after each batch of tasks, the same way as
    /// [`max_tasks_per_worker`](Self::max_tasks_per_worker).
    pub fn max_worker_rss(mut self, bytes: u64) -> Self {
        self.recycle.max_rss = Some(bytes);
        self
    }

    /// Locks every worker into `sandbox` after its init and before its
    /// first task, and again in every replacement: resource limits,
    /// `no_new_privs`, a seccomp filter, Landlock rules (see [`Sandbox`]).
    /// A task that breaks it fails that input with an error that says so
    /// (`the sandbox forbids the system call `socket``, `resource limit:
    /// CPU seconds`), and its worker is replaced; init itself is not
    /// sandboxed, so it may open what tasks then use.
    ///
    /// ```
    /// use pool_runtime::{worker_init, worker_task, Pool, Sandbox};
    ///
    /// #[worker_init]
    /// fn load(words: &Vec<String>) -> Vec<String> { words.clone() }
    ///
    /// #[worker_task]
    /// fn lookup(words: &Vec<String>, i: usize) -> Option<String> { words.get(i).cloned() }
    ///
    /// # fn main() -> Result<(), pool_runtime::Error> {
    /// # let compute_only = Sandbox::compute_only().best_effort();
    /// # /*
    /// let compute_only = Sandbox::compute_only();
    /// # */
    /// let pool = Pool::builder()
    ///     .workers(2)
    ///     .sandbox(compute_only.cpu_seconds(60))
    ///     .build(load, vec!["a".to_string(), "b".to_string()])?;
    /// assert_eq!(pool.apply(lookup, 1)?, Some("b".to_string()));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// `build` fails with [`ErrorKind::Init`] if a worker cannot apply the
    /// sandbox (the message says which part and why: no Landlock on this
    /// kernel, say), unless it asked for [`Sandbox::best_effort`]; and for
    /// a pool on Redis hosts, which do not support it yet.
    pub fn sandbox(mut self, sandbox: Sandbox) -> Self {
        self.sandbox = Some(sandbox);
        self
    }

    /// The `#[worker_exit]` hook a recycled worker runs as it leaves. Its
    /// outcomes are kept and returned by [`Pool::join_with`] (which must be
    /// called with the same hook), ahead of those of the last workers.
    ///
    /// # Errors
    ///
    /// `build` fails with [`ErrorKind::NotRegistered`] if `exit` carries no
    /// `#[worker_exit]`, and with [`ErrorKind::Init`] if it consumes another
    /// state type than the pool's.
    pub fn exit_hook<S: 'static, E: Exit<S>>(mut self, _exit: E) -> Self {
        self.recycle.exit_hook = Some(registry::exit_index::<E>().unwrap_or(u32::MAX));
        self.exit_state = Some((TypeId::of::<S>(), std::any::type_name::<S>()));
        self
    }

    /// Draws a progress bar for every `map`, `imap` and `imap_unordered`
    /// of the pool (feature `progress`): [`ProgressMode::Auto`](crate::ProgressMode::Auto)
    /// on stderr when it is a terminal, [`ProgressMode::Always`](crate::ProgressMode::Always)
    /// even when it is not. One call can change it with
    /// [`Imap::progress_mode`](crate::Imap::progress_mode). Default: off.
    ///
    /// A `map` stops at its first error, so its bar shows at most one.
    ///
    /// *Feature `progress` (on by default).*
    #[cfg(feature = "progress")]
    pub fn progress(mut self, mode: crate::ProgressMode) -> Self {
        self.progress = mode;
        self
    }

    /// The exit hook given to [`exit_hook`](Self::exit_hook) is registered
    /// and consumes the pool's state type `S`.
    fn check_exit_hook<S: 'static>(&self) -> Result<(), Error> {
        if self.recycle.exit_hook == Some(u32::MAX) {
            return Err(Error::new(ErrorKind::NotRegistered(
                "the exit hook given to `exit_hook`",
            )));
        }
        match self.exit_state {
            Some((ty, name)) if ty != TypeId::of::<S>() => {
                let msg = format!(
                    "the exit hook consumes a `{name}`, but this pool's state is a `{}`",
                    std::any::type_name::<S>()
                );
                Err(Error::new(ErrorKind::Init(msg)))
            }
            _ => Ok(()),
        }
    }

    /// The driver's settings.
    fn config(&self) -> Config {
        Config {
            workers: self.workers,
            max_frame: self.max_frame,
            chunk_size: self.chunk_size,
            shutdown_grace: self.shutdown_grace,
            respawn_limit: self.respawn_limit,
            retries: self.retries,
            task_timeout: self.task_timeout,
            init_timeout: self.init_timeout,
            recycle: self.recycle.clone(),
            idle_spin: crate::driver::IDLE_SPIN,
        }
    }
}
