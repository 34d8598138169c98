//! [`PoolBuilder`]: how many workers, how work is cut, and `build`.

use std::time::Duration;

use crate::channel::frame::MAX_FRAME;
use crate::driver::{Config, Driver};
use crate::error::{Error, ErrorKind};
use crate::pool::Pool;
use crate::registry;
use crate::task::{Exit, Init};
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
#[derive(Debug, Clone)]
pub struct PoolBuilder {
    workers: usize,
    chunk_size: Option<usize>,
    max_frame: usize,
    shutdown_grace: Duration,
    respawn_limit: u32,
    retries: u32,
    task_timeout: Option<Duration>,
    init_timeout: Option<Duration>,
    recycle: Recycle,
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

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            chunk_size: None,
            max_frame: MAX_FRAME,
            shutdown_grace: Duration::from_secs(2),
            respawn_limit: 3,
            retries: 0,
            task_timeout: None,
            init_timeout: None,
            recycle: Recycle::default(),
            exit_state: None,
            #[cfg(feature = "progress")]
            progress: Default::default(),
        }
    }
}

impl PoolBuilder {
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

    /// Kills a worker whose init runs longer than `limit`: an init failure,
    /// which fails `build` (or, on respawn, counts toward the respawn limit).
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
    /// # Errors
    ///
    /// [`ErrorKind::Init`] if an init returns an error, panics or dies (no
    /// worker process is left behind); [`ErrorKind::Io`] if a process or a
    /// channel cannot be created.
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
        registry::prepare();
        crate::unwind::install_panic_hook();
        self.check_exit_hook::<S>()?;
        // The wake-up descriptor first: once the fork server runs, nothing
        // can fail before the driver owns it (and its drop reaps it).
        let sleep = crate::driver::sleep::Sleep::new()?;
        // Entered only after the fork, so the fork server and the workers
        // (which inherit the subscriber) do not run inside it forever.
        let span = tracing::info_span!(
            "build",
            workers = self.workers,
            zygote = tracing::field::Empty
        );
        let settings = Settings {
            workers: self.workers,
            max_frame: self.max_frame,
            recycle: &self.recycle,
        };
        let transport = ForkServer::start(init, args, settings)?;
        let _build = span.enter();
        span.record("zygote", transport.pid().as_raw());
        let driver = Driver::new(Box::new(transport), sleep, self.config());
        match driver.start_workers() {
            Ok(()) => {
                tracing::info!("pool built");
                let pool = Pool::new(driver);
                #[cfg(feature = "progress")]
                let pool = pool.with_progress(self.progress);
                Ok(pool)
            }
            Err(why) => {
                tracing::warn!(error = %why, "build failed");
                driver.shutdown();
                Err(Error::new(ErrorKind::Init(why)))
            }
        }
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
        }
    }
}
