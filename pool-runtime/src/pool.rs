//! [`Pool`]: the calls users make, and the lazy result streams behind them.

use std::collections::{BTreeMap, VecDeque};
use std::iter::FusedIterator;
use std::marker::PhantomData;
use std::sync::{Arc, MutexGuard};
use std::task::Poll;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::channel::frame;
use crate::channel::item::{self, InRun, Items};
use crate::channel::message::{write, Route};
use crate::channel::outcome::{self, Status};
use crate::driver::{Completion, Core, Driver, JobId, NewBatch};
use crate::error::{Error, ErrorKind};
use crate::registry;
use crate::task::{Exit, Task};
use chunker::Chunker;

mod as_completed;
#[cfg(feature = "async")]
mod asynch;
#[cfg(feature = "async")]
mod callback;
mod call;
mod chunker;
mod handle;
#[cfg(feature = "progress")]
pub(crate) mod progress;
mod slab;
mod sticky;
#[cfg(feature = "async")]
pub use asynch::ImapStream;
pub use as_completed::{as_completed, AsCompleted};
pub use call::Call;
pub use handle::Submitted;
pub use slab::{Slab, SlabItem, SlabIter};

/// A pool of worker processes, each holding its own state `S`.
///
/// `Pool<S>` is `Send + Sync` whatever `S` is: the state only ever lives in
/// the workers. Several threads may submit to one pool at once.
///
/// Dropping the pool (or [`join`](Pool::join)) ends the workers without
/// running an exit hook; [`join_with`](Pool::join_with) runs one. Either way,
/// no worker process, running or zombie, outlives the pool.
pub struct Pool<S> {
    // In an `Arc` so that the `async` feature's pump thread can hold it; it
    // is joined before the pool ends.
    driver: Arc<Driver>,
    /// The progress bar every `map`/`imap` of the pool gets (`progress.rs`).
    #[cfg(feature = "progress")]
    progress: progress::ProgressMode,
    /// The limit of each worker's exit hook at `join_with`, if any.
    exit_timeout: Option<std::time::Duration>,
    _state: PhantomData<fn() -> S>,
}

impl<S> std::fmt::Debug for Pool<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.driver.config.workers)
            .finish_non_exhaustive()
    }
}

impl<S: 'static> Pool<S> {
    pub(crate) fn new(driver: Driver) -> Self {
        let driver = Arc::new(driver);
        #[cfg(feature = "async")]
        crate::driver::pump::Pump::attach(&driver);
        Pool {
            driver,
            #[cfg(feature = "progress")]
            progress: Default::default(),
            exit_timeout: None,
            _state: PhantomData,
        }
    }

    /// The same pool, with `limit` on each worker's exit hook at `join_with`.
    pub(crate) fn with_exit_timeout(mut self, limit: Option<std::time::Duration>) -> Self {
        self.exit_timeout = limit;
        self
    }

    /// The same pool, drawing `mode`'s progress bar for every `map`/`imap`.
    #[cfg(feature = "progress")]
    pub(crate) fn with_progress(mut self, mode: progress::ProgressMode) -> Self {
        self.progress = mode;
        self
    }

    /// A stream of `route` over `inputs`, in input order or not, with the
    /// pool's progress bar if it has one: every `imap` starts here.
    pub(crate) fn stream<I, R>(
        &self,
        route: Result<Route, Error>,
        inputs: I,
        ordered: bool,
    ) -> Imap<'_, I, R>
    where
        I: Iterator,
        I::Item: Serialize,
        R: DeserializeOwned,
    {
        #[cfg_attr(not(feature = "progress"), allow(unused_mut))]
        let mut stream = Imap::new(&self.driver, route, inputs, ordered);
        #[cfg(feature = "progress")]
        {
            stream.progress = progress::Slot::from_mode(self.progress);
        }
        stream
    }

    /// The number of worker slots: `workers(n)` as built. On a Redis pool
    /// these are the driver's relays to the hosts, whose own workers run
    /// the tasks (as many as they run, at any number of relays).
    pub fn workers(&self) -> usize {
        self.driver.config.workers
    }

    /// What each worker has done so far: its pid, restarts, init time, items
    /// run, busy and idle time, time spent encoding, decoding and writing,
    /// bytes moved, and the slowest items with their input (its `Debug`
    /// text when its type has one, else its index). `Display` prints a table.
    ///
    /// Cheap to call, and cheap to have: workers time chunks of items, and
    /// time items one by one only when they take a microsecond or more, so a
    /// slow item among cheap ones may show as the chunk that held it
    /// ([`SlowInput::Range`](crate::SlowInput::Range)). Waits first for
    /// the workers still starting since `build`, so that every slot has its
    /// pid and init time.
    ///
    /// ```
    /// use pool_runtime::{worker_init, worker_task, Pool, SlowInput};
    ///
    /// #[worker_init]
    /// fn start(_: &()) -> u64 { 0 }
    ///
    /// #[worker_task]
    /// fn nap(calls: &mut u64, ms: u64) -> u64 {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    ///     *calls += 1;
    ///     *calls
    /// }
    ///
    /// # fn main() -> Result<(), pool_runtime::Error> {
    /// let pool = Pool::builder().workers(2).build(start, ())?;
    /// pool.map(nap, [1, 1, 30, 1, 1])?;
    /// let insights = pool.insights();
    /// assert_eq!(insights.tasks(), 5);
    /// assert_eq!(insights.workers.len(), 2);
    /// // Each of these items takes a millisecond or more: each is timed alone.
    /// let slow = insights.slowest.iter().find(|s| s.time.as_millis() >= 30).unwrap();
    /// assert_eq!(slow.input, SlowInput::Debug("30".into()));
    /// println!("{insights}");
    /// # Ok(()) }
    /// ```
    pub fn insights(&self) -> crate::Insights {
        let (snapshots, duplicates) = {
            // Workers still starting after `build` are waited for: every
            // slot then has its pid and its init time.
            let core = self.driver.wait_until(|core| core.startup_settled());
            (core.insights(), core.duplicates())
        };
        crate::insights::report(snapshots, duplicates)
    }

    /// Runs `task` on every input; returns the outputs in input order.
    ///
    /// # Errors
    ///
    /// The first failure in input order (a panic, a worker that died, a
    /// codec error); the inputs not yet started are then dropped. Use
    /// [`imap`](Pool::imap) to get one outcome per input instead.
    pub fn map<T, M, I>(&self, task: T, inputs: I) -> Result<Vec<T::Output>, Error>
    where
        T: Task<S, M>,
        I: IntoIterator<Item = T::Input>,
    {
        self.imap(task, inputs).collect_vec()
    }

    /// Like [`map`](Pool::map), for a task whose output is a `Vec<u8>` or a
    /// `String`: the outputs stay in the frames the workers sent them in,
    /// and the [`Slab`] lends each as a `&[u8]` or a `&str`. No allocation
    /// or copy per output in the caller's thread, where `map` makes one of
    /// each; for many small outputs that is most of the caller's work.
    ///
    /// ```
    /// use pool_runtime::{worker_init, worker_task, Pool};
    ///
    /// #[worker_init]
    /// fn names(_: &()) -> Vec<&'static str> { vec!["zero", "one", "two"] }
    ///
    /// #[worker_task]
    /// fn name(names: &Vec<&'static str>, i: usize) -> String { names[i % 3].to_string() }
    ///
    /// # fn main() -> Result<(), pool_runtime::Error> {
    /// let pool = Pool::builder().workers(2).build(names, ())?;
    /// let slab = pool.map_slab(name, 0..4)?;
    /// assert_eq!(slab.len(), 4);
    /// assert_eq!(&slab[3], "zero");
    /// assert_eq!(slab.iter().collect::<Vec<&str>>(), ["zero", "one", "two", "zero"]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`map`](Pool::map): the first failure in input order.
    pub fn map_slab<T, M, I>(&self, task: T, inputs: I) -> Result<Slab<T::Output>, Error>
    where
        T: Task<S, M>,
        T::Output: SlabItem,
        I: IntoIterator<Item = T::Input>,
    {
        self.imap(task, inputs).collect_slab()
    }

    /// Runs `task` on every input, lazily: inputs are pulled from the
    /// iterator only as workers need them (a bounded window), and outcomes
    /// come back in input order, one per input.
    pub fn imap<T, M, I>(&self, _task: T, inputs: I) -> Imap<'_, I::IntoIter, T::Output>
    where
        T: Task<S, M>,
        I: IntoIterator<Item = T::Input>,
    {
        self.stream(route::<T>(), inputs.into_iter(), true)
    }

    /// Like [`imap`](Pool::imap), but outcomes come back as soon as they are
    /// ready, in whatever order that is.
    pub fn imap_unordered<T, M, I>(&self, _task: T, inputs: I) -> Imap<'_, I::IntoIter, T::Output>
    where
        T: Task<S, M>,
        I: IntoIterator<Item = T::Input>,
    {
        self.stream(route::<T>(), inputs.into_iter(), false)
    }

    /// Runs `task` on one input and waits for its output.
    pub fn apply<T, M>(&self, task: T, input: T::Input) -> Result<T::Output, Error>
    where
        T: Task<S, M>,
    {
        self.submit(task, input).wait()
    }

    /// Starts `task` on one input now; the handle gives the output later.
    /// Dropping the handle discards the output.
    pub fn submit<T, M>(&self, task: T, input: T::Input) -> Submitted<'_, T::Output>
    where
        T: Task<S, M>,
    {
        self.submit_with(task, input, None)
    }

    /// [`submit`](Pool::submit), with this call's own task timeout.
    pub(crate) fn submit_with<T, M>(
        &self,
        _task: T,
        input: T::Input,
        task_timeout: Option<std::time::Duration>,
    ) -> Submitted<'_, T::Output>
    where
        T: Task<S, M>,
    {
        let job = {
            let mut core = self.driver.lock();
            let job = core.new_job();
            core.set_task_timeout(job, task_timeout);
            job
        };
        let stream =
            match task_index::<T>().and_then(|task| self.send_one(job, task, &input, &[None])) {
                Ok(count) => Imap::attached(&self.driver, job, count, true),
                Err(e) => Imap::failed(&self.driver, job, e),
            };
        Submitted::new(stream)
    }

    /// Runs `task` once on every worker, with the same input; returns the
    /// outputs in worker order. Waits first for any worker still starting
    /// since `build`, or being replaced, to be up; a slot that can no
    /// longer start a worker is left out.
    ///
    /// # Errors
    ///
    /// The first failure, in worker order.
    pub fn broadcast<T, M>(&self, _task: T, input: T::Input) -> Result<Vec<T::Output>, Error>
    where
        T: Task<S, M>,
    {
        if let Some(remote) = self.driver.broadcaster() {
            return broadcast_remote::<T::Output>(&*remote, task_index::<T>()?, &input);
        }
        let job = self.driver.lock().new_job();
        // A slot between two workers (a respawn under way) gets its new
        // worker first: "every worker" means every slot that can have one.
        let core = self.driver.wait_until(|core| core.all_settled());
        // A pool that can run nothing has no worker to broadcast to: say
        // why, rather than return no outcome at all.
        if let Some(e) = core.unusable() {
            return Err(e);
        }
        let slots: Vec<Option<usize>> = core.ready_slots().into_iter().map(Some).collect();
        drop(core);
        let count = self.send_one(job, task_index::<T>()?, &input, &slots)?;
        Imap::<std::iter::Empty<()>, T::Output>::attached(&self.driver, job, count, true).collect()
    }

    /// Encodes `input` once and queues it as one batch per entry of `slots`
    /// (`None`: any worker). Returns how many batches were queued.
    fn send_one<A: Serialize>(
        &self,
        job: JobId,
        task: u32,
        input: &A,
        slots: &[Option<usize>],
    ) -> Result<u64, Error> {
        let mut bytes = Vec::new();
        let start = write::run(&mut bytes, 0, task, 1);
        let offset = bytes.len() as u32;
        encode_input(&mut bytes, input, &mut false)?;
        frame::finish(&mut bytes, start, self.driver.config.max_frame)
            .map_err(|e| Error::new(ErrorKind::Codec(format!("input too large to send: {e}"))))?;
        let mut core = self.driver.lock();
        let last = slots.len().saturating_sub(1);
        let mut bytes = Some(bytes);
        for (i, &slot) in slots.iter().enumerate() {
            // Each batch owns its frame; the last one takes this one (an
            // `apply` copies nothing).
            let frame = if i == last {
                bytes.take().unwrap_or_default()
            } else {
                bytes.clone().unwrap_or_default()
            };
            let batch = NewBatch {
                job,
                task,
                first: i as u64,
                count: 1,
                frame,
                offsets: vec![offset],
                attempts: 0,
                strays: 0,
            };
            core.submit(batch, slot);
        }
        core.dispatch();
        self.driver.nudge(&core);
        Ok(slots.len() as u64)
    }

    /// Ends the workers, running `exit` on each one's state; returns what
    /// each returned, in worker order.
    ///
    /// # Errors
    ///
    /// If a worker died before or during its exit hook, the hook panicked,
    /// or it ran past the pool's [`exit_timeout`](crate::PoolBuilder::exit_timeout).
    pub fn join_with<E: Exit<S>>(self, exit: E) -> Result<Vec<E::Output>, Error> {
        let limit = self.exit_timeout;
        self.join_with_limit(exit, limit)
    }

    /// [`join_with`](Pool::join_with), with each worker's exit hook given
    /// `limit` (over the pool's [`exit_timeout`](crate::PoolBuilder::exit_timeout)):
    /// a worker whose hook runs longer is killed, and its outcome is
    /// [`ErrorKind::TimedOut`], which says so.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pool_runtime::{worker_exit, worker_init, ErrorKind, Pool, WorkerInfo};
    ///
    /// #[worker_init]
    /// fn slot(_: &(), info: WorkerInfo) -> usize { info.index() }
    ///
    /// /// Worker 1's hook hangs; worker 0's returns.
    /// #[worker_exit]
    /// fn leave(slot: usize) -> usize {
    ///     if slot == 1 { std::thread::sleep(Duration::from_secs(60)) }
    ///     slot
    /// }
    ///
    /// # fn main() -> Result<(), pool_runtime::Error> {
    /// let pool = Pool::builder().workers(2).build(slot, ())?;
    /// let e = pool.join_with_timeout(leave, Duration::from_millis(200)).unwrap_err();
    /// assert!(matches!(e.kind(), ErrorKind::TimedOut(m) if m.contains("worker 1")));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`join_with`](Pool::join_with).
    pub fn join_with_timeout<E: Exit<S>>(
        self,
        exit: E,
        limit: std::time::Duration,
    ) -> Result<Vec<E::Output>, Error> {
        self.join_with_limit(exit, Some(limit))
    }

    fn join_with_limit<E: Exit<S>>(
        self,
        _exit: E,
        limit: Option<std::time::Duration>,
    ) -> Result<Vec<E::Output>, Error> {
        let hook = registry::exit_index::<E>()
            .ok_or_else(|| Error::new(ErrorKind::NotRegistered(std::any::type_name::<E>())))?;
        if let Some(bodies) = self.driver.leave_with(hook) {
            // A Redis pool: one outcome per worker of every host.
            self.driver.shutdown(None);
            return bodies
                .iter()
                .map(|body| crate::unwind::quietly(|| outcome::read_one::<E::Output>(body))?)
                .collect();
        }
        let recycle_hook = self.driver.config.recycle.exit_hook;
        // A slot between two workers (one recycled, the next starting) gets
        // its new worker first, so that every slot ends through the hook.
        let (asked, recycled) = {
            let mut core = self
                .driver
                .wait_until(|core| core.handles_settled() && core.all_settled());
            if let Some(e) = core.init_failure() {
                drop(core);
                self.driver.shutdown(None);
                return Err(e);
            }
            (core.begin_exit(Some(hook)), core.take_recycled())
        };
        if !recycled.is_empty() && recycle_hook != Some(hook) {
            self.driver.shutdown(None);
            let msg =
                "workers were recycled with another exit hook than the one given to join_with";
            return Err(Error::new(ErrorKind::Init(msg.into())));
        }
        let mut outcomes: Vec<Option<Result<Vec<u8>, Error>>> =
            asked.iter().map(|_| None).collect();
        let mut arrived = |core: &mut Core| {
            for (i, &slot) in asked.iter().enumerate() {
                if outcomes[i].is_none() {
                    outcomes[i] = core.exit_outcome(slot);
                }
            }
            outcomes.iter().all(Option::is_some)
        };
        let deadline = limit.and_then(|l| std::time::Instant::now().checked_add(l));
        let mut core = self.driver.wait_until_deadline(&mut arrived, deadline);
        if let Some(limit) = limit.filter(|_| !arrived(&mut core)) {
            // Past the limit: the hooks still running end with their worker.
            for &slot in &asked {
                core.exit_overdue(slot, limit);
            }
            drop(core);
            core = self.driver.wait_until(&mut arrived);
        }
        drop(core);
        self.driver.shutdown(None);
        // Recycled workers first (their slot, then their generation), then
        // the last workers, in slot order.
        let mut recycled = recycled;
        recycled.sort_by_key(|(slot, generation, _)| (*slot, *generation));
        let earlier = recycled.into_iter().map(|(_, _, body)| Ok(body));
        let last = outcomes
            .into_iter()
            .map(|o| o.expect("waited for every outcome"));
        earlier
            .chain(last)
            .map(|body| {
                let body = body?;
                crate::unwind::quietly(|| outcome::read_one::<E::Output>(&body))?
            })
            .collect()
    }

    /// Kills every worker now, from any thread, while others wait on the
    /// pool: every input without its outcome yet gets
    /// [`ErrorKind::Terminated`], and so does every later call. Returns at
    /// once, even if tasks never return; no worker is started again. The
    /// processes are reaped when the pool is dropped or joined.
    ///
    /// ```
    /// # use pool_runtime::{worker_init, worker_task, ErrorKind, Pool};
    /// # #[worker_init] fn nothing(_: &()) -> u8 { 0 }
    /// #[worker_task]
    /// fn forever(_: &mut u8) -> u8 {
    ///     loop { std::thread::park() }
    /// }
    ///
    /// # fn main() -> Result<(), pool_runtime::Error> {
    /// let pool = Pool::builder().workers(2).build(nothing, ())?;
    /// std::thread::scope(|s| {
    ///     let stuck = s.spawn(|| pool.apply(forever, ()));
    ///     std::thread::sleep(std::time::Duration::from_millis(50));
    ///     pool.terminate();
    ///     let e = stuck.join().unwrap().unwrap_err();
    ///     assert_eq!(e.kind(), &ErrorKind::Terminated);
    /// });
    /// assert_eq!(pool.apply(forever, ()).unwrap_err().kind(), &ErrorKind::Terminated);
    /// # Ok(()) }
    /// ```
    pub fn terminate(&self) {
        self.driver.terminate();
    }

    /// Ends the workers without running an exit hook, and waits until every
    /// worker process is gone. Dropping the pool does the same.
    ///
    /// Calls of [owned handles](Submitted::into_owned) still alive run to
    /// their end first; their handles then hold the outcome.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Init`] if the init of a worker still starting when
    /// `build` returned failed (see [`PoolBuilder::build`](crate::PoolBuilder::build)):
    /// `join` waits for those inits, so a program that joins always learns
    /// of such a failure, whenever it happened.
    pub fn join(self) -> Result<(), Error> {
        self.end(None)
    }

    /// [`join`](Pool::join), with workers still busy after `grace` killed
    /// (the pool's [`shutdown_grace`](crate::PoolBuilder::shutdown_grace),
    /// 2 s by default, otherwise): `Duration::ZERO` ends them at once.
    /// Calls of owned handles and callbacks still run to their end first.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use pool_runtime::{worker_init, worker_task, Pool};
    ///
    /// #[worker_init]
    /// fn none(_: &()) -> u8 { 0 }
    ///
    /// #[worker_task]
    /// fn nap(ms: u64) { std::thread::sleep(Duration::from_millis(ms)) }
    ///
    /// # fn main() -> Result<(), pool_runtime::Error> {
    /// let pool: Pool<u8> = Pool::builder().workers(1).build(none, ())?;
    /// drop(pool.submit(nap, 60_000)); // runs on, no one waits for it
    /// let t = Instant::now();
    /// pool.join_timeout(Duration::from_millis(50))?;
    /// assert!(t.elapsed() < Duration::from_secs(2));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`join`](Pool::join); an init still running after `grace` is
    /// killed with its worker and is no failure.
    pub fn join_timeout(self, grace: std::time::Duration) -> Result<(), Error> {
        self.end(Some(grace))
    }

    /// Waits for the calls of owned handles, then for the inits still
    /// running since `build` (for at most `grace`, if given), then shuts
    /// the driver down; the init failure, if there was one.
    fn end(&self, grace: Option<std::time::Duration>) -> Result<(), Error> {
        drop(self.driver.wait_until(|core| core.handles_settled()));
        let deadline = grace.and_then(|g| std::time::Instant::now().checked_add(g));
        let core = self
            .driver
            .wait_until_deadline(|core| core.startup_settled(), deadline);
        let failure = core.init_failure();
        drop(core);
        self.driver.shutdown(grace);
        failure.map_or(Ok(()), Err)
    }
}

impl<S> Drop for Pool<S> {
    fn drop(&mut self) {
        #[cfg(feature = "async")]
        if self.driver.on_pump_thread() {
            // A callback dropped the last `Arc<Pool>`: waiting here for the
            // pool's callbacks would wait for this very one. Another thread
            // ends the pool once it has returned.
            let driver = Arc::clone(&self.driver);
            let ended = std::thread::Builder::new()
                .name("pool-end".into())
                .spawn(move || {
                    drop(driver.wait_until(|core| core.handles_settled()));
                    driver.shutdown(None);
                });
            if ended.is_err() {
                // No thread to be had: end it now; what is still pending
                // gets the outcome shutdown gives it.
                self.driver.shutdown(None);
            }
            return;
        }
        drop(self.driver.wait_until(|core| core.handles_settled()));
        self.driver.shutdown(None);
    }
}

/// A broadcast to workers the driver does not address by slot (a Redis
/// pool's hosts): one `Run` of `input`, each worker's outcome back.
fn broadcast_remote<R: DeserializeOwned>(
    remote: &dyn crate::transport::Broadcast,
    task: u32,
    input: &impl Serialize,
) -> Result<Vec<R>, Error> {
    let mut bytes = Vec::new();
    let start = write::run(&mut bytes, 0, task, 1);
    encode_input(&mut bytes, input, &mut false)?;
    frame::finish(&mut bytes, start, usize::MAX)
        .map_err(|e| Error::new(ErrorKind::Codec(format!("input too large to send: {e}"))))?;
    let outcomes = remote
        .broadcast(&bytes[start + frame::PREFIX..])
        .map_err(|why| Error::new(ErrorKind::PoolBroken(why)))?;
    outcomes
        .iter()
        .map(|item| crate::unwind::quietly(|| outcome::read_one::<R>(item))?)
        .collect()
}

pub(crate) fn task_index<T: 'static>() -> Result<u32, Error> {
    registry::task_index::<T>()
        .ok_or_else(|| Error::new(ErrorKind::NotRegistered(std::any::type_name::<T>())))
}

fn route<T: 'static>() -> Result<Route, Error> {
    task_index::<T>().map(Route::Task)
}

/// Appends one input as an item of a `Run` body (`long`: see
/// [`item::write`]). Its `Serialize` is user code: an error or a panic there
/// is this input's error, and appends nothing.
fn encode_input<A: Serialize + ?Sized>(
    bytes: &mut Vec<u8>,
    input: &A,
    long: &mut bool,
) -> Result<(), Error> {
    let at = bytes.len();
    let kind = match crate::unwind::catch_quiet(|| item::write(bytes, OK, input, long)) {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => ErrorKind::Codec(unencodable(e)),
        Err(panic) => ErrorKind::Panicked(panicked_encoding(panic)),
    };
    bytes.truncate(at);
    Err(Error::new(kind))
}

/// The message of an input whose `Serialize` returned an error.
fn unencodable(e: crate::codec::CodecError) -> String {
    format!("could not encode the input: {e}")
}

/// The error of an input whose `Serialize` panicked.
fn panicked_encoding(panic: crate::unwind::Caught) -> crate::error::Panic {
    panic.during("while encoding the input")
}

/// The status of an input item that holds an input.
const OK: u8 = Status::Ok as u8;

/// Inputs taken from the iterator at a time, then encoded under one catch:
/// a catch per input costs more than encoding a small one.
const RUN: usize = 64;

/// Moves inputs from the front of `spare` into the `Run` body in `bytes`,
/// each an item whose offset goes to `offsets`, until the frame holds
/// `want` items or [`BATCH_BYTES`]. An input whose `Serialize` errs or
/// panics (user code) becomes an item that carries its error instead: the
/// worker hands it back as that input's outcome, in its place. Inputs of a
/// fixed-width type go in one dense run (`channel/item.rs`), each offset
/// the run's: their encoding is the codec's own and cannot fail.
fn encode_inputs<A: Serialize>(
    bytes: &mut Vec<u8>,
    offsets: &mut Vec<u32>,
    spare: &mut VecDeque<A>,
    want: u32,
    long: &mut bool,
) {
    if let Some(width) = crate::codec::fixed_width::<A>() {
        let run = item::begin_dense(bytes, width);
        while (offsets.len() as u32) < want && bytes.len() < BATCH_BYTES {
            let Some(input) = spare.pop_front() else {
                break;
            };
            offsets.push(run as u32);
            let written = crate::codec::encode(&input, bytes);
            debug_assert!(written.is_ok(), "a fixed-width value always encodes");
        }
        item::end_dense(bytes, run);
        return;
    }
    crate::unwind::quietly(|| loop {
        let mut at = bytes.len();
        let run = crate::unwind::catch(|| {
            while (offsets.len() as u32) < want && bytes.len() < BATCH_BYTES {
                let Some(input) = spare.pop_front() else {
                    return;
                };
                at = bytes.len();
                offsets.push(at as u32);
                if let Err(e) = item::write(bytes, OK, &input, long) {
                    outcome::write_message(bytes, Status::Codec, &unencodable(e), long);
                }
            }
        });
        match run {
            Ok(()) => return,
            Err(panic) => {
                bytes.truncate(at);
                outcome::write_panic(bytes, &panicked_encoding(panic), long);
            }
        }
    })
}

// ---------------------------------------------------------------------------

/// A frame stops taking inputs past this size.
const BATCH_BYTES: usize = 4 << 20;

/// Where the stream is in one completion's outcomes.
#[derive(Debug)]
struct Cursor {
    frame: Vec<u8>,
    at: usize,
    /// Where in a dense run `at` is.
    run: InRun,
    next: u64,
    left: u32,
}

/// A lazy stream of outcomes, one per input: from [`Pool::imap`] and
/// [`Pool::imap_unordered`].
///
/// Inputs are pulled from the source iterator only to keep the workers busy
/// (a bounded window). Dropping the stream early stops pulling and discards
/// outcomes still in flight; the pool stays usable.
pub struct Imap<'p, I: Iterator, R> {
    // Held, not borrowed, so that an owned handle can keep it (`handle.rs`);
    // `'p` still ties a stream from the pool's methods to the pool.
    driver: Arc<Driver>,
    _pool: PhantomData<&'p Driver>,
    job: JobId,
    route: Route,
    inputs: Option<I>,
    /// Inputs taken from the iterator but not yet in a frame (see [`RUN`]).
    spare: VecDeque<I::Item>,
    /// The length guess of [`item::write`], carried from input to input.
    long: bool,
    ordered: bool,
    pulled: u64,
    delivered: u64,
    arrived: VecDeque<Completion>,
    pending: BTreeMap<u64, Completion>,
    cursor: Option<Cursor>,
    chunker: Chunker,
    setup_error: Option<Error>,
    _out: PhantomData<fn() -> R>,
    /// The progress bar, if asked for (`progress.rs`).
    #[cfg(feature = "progress")]
    pub(crate) progress: progress::Slot,
}

impl<I: Iterator, R> std::fmt::Debug for Imap<'_, I, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imap")
            .field("pulled", &self.pulled)
            .field("delivered", &self.delivered)
            .finish_non_exhaustive()
    }
}

impl<'p, I, R> Imap<'p, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    pub(crate) fn new(
        driver: &Arc<Driver>,
        route: Result<Route, Error>,
        inputs: I,
        ordered: bool,
    ) -> Self {
        let hint = match inputs.size_hint() {
            (lo, Some(hi)) if lo == hi => Some(hi),
            _ => None,
        };
        let job = driver.lock().new_job();
        let mut s = Self::with_job(driver, job, Some(inputs), 0, ordered, hint);
        match route {
            Ok(r) => s.route = r,
            Err(e) => s.setup_error = Some(e),
        }
        s
    }

    fn with_job(
        driver: &Arc<Driver>,
        job: JobId,
        inputs: Option<I>,
        pulled: u64,
        ordered: bool,
        hint: Option<usize>,
    ) -> Self {
        Imap {
            driver: Arc::clone(driver),
            _pool: PhantomData,
            job,
            route: Route::Task(0),
            inputs,
            spare: VecDeque::new(),
            long: false,
            ordered,
            pulled,
            delivered: 0,
            arrived: VecDeque::new(),
            pending: BTreeMap::new(),
            cursor: None,
            chunker: Chunker::new(driver.config.chunk_size, hint, driver.workers_now()),
            setup_error: None,
            _out: PhantomData,
            #[cfg(feature = "progress")]
            progress: Default::default(),
        }
    }

    /// A stream over a job whose `count` items were queued elsewhere.
    pub(crate) fn attached(driver: &Arc<Driver>, job: JobId, count: u64, ordered: bool) -> Self {
        Self::with_job(driver, job, None, count, ordered, None)
    }

    /// A stream whose only outcome is `error`.
    pub(crate) fn failed(driver: &Arc<Driver>, job: JobId, error: Error) -> Self {
        let mut s = Self::with_job(driver, job, None, 0, true, None);
        s.setup_error = Some(error);
        s
    }

    /// How many inputs may be out (pulled, outcome not yet handed back):
    /// twice as many frames as may be in flight.
    fn window(&self) -> u64 {
        (self.chunker.size() as u64 * self.driver.capacity() as u64 * 2).max(8)
    }

    /// Pulls inputs into frames and queues them, while the window has room.
    fn feed(&mut self) {
        while self.pulled - self.delivered < self.window() {
            if self.inputs.is_none() && self.spare.is_empty() {
                return;
            }
            let want = self.chunker.size();
            // Fixed-width inputs: the frame's size is known, so it is
            // allocated once, not grown by doubling.
            let items = crate::codec::fixed_width::<I::Item>()
                .map_or(0, |w| (want as usize).min(BATCH_BYTES / w + 1));
            let width = crate::codec::fixed_width::<I::Item>().unwrap_or(0);
            let mut bytes = Vec::with_capacity(if items > 0 { items * width + 64 } else { 0 });
            let start = self.route.begin(&mut bytes, 0);
            let mut offsets = Vec::with_capacity(items);
            let first = self.pulled;
            while (offsets.len() as u32) < want && bytes.len() < BATCH_BYTES {
                if self.spare.is_empty() {
                    // The iterator is user code that may panic as it likes:
                    // it runs outside the catch that the encoding runs under.
                    let Some(inputs) = self.inputs.as_mut() else {
                        break;
                    };
                    let room = (want as usize - offsets.len()).min(RUN);
                    self.spare.extend(inputs.by_ref().take(room));
                    if self.spare.len() < room {
                        self.inputs = None;
                    }
                    if self.spare.is_empty() {
                        break;
                    }
                }
                encode_inputs(
                    &mut bytes,
                    &mut offsets,
                    &mut self.spare,
                    want,
                    &mut self.long,
                );
            }
            let count = offsets.len() as u32;
            if count == 0 {
                return;
            }
            write::patch_run_count(&mut bytes, start, count);
            match frame::finish(&mut bytes, start, self.driver.config.max_frame) {
                Ok(()) => {
                    let mut core = self.driver.lock();
                    let batch = NewBatch {
                        job: self.job,
                        task: self.route.first_task(),
                        first,
                        count,
                        frame: bytes,
                        offsets,
                        attempts: 0,
                        strays: 0,
                    };
                    core.submit(batch, None);
                    core.dispatch();
                    if core.wants_write() {
                        self.driver.nudge(&core);
                    }
                }
                Err(e) => {
                    for k in 0..count as u64 {
                        let error =
                            Error::new(ErrorKind::Codec(format!("input too large to send: {e}")));
                        self.pending.insert(
                            first + k,
                            Completion::Failed {
                                index: first + k,
                                error,
                            },
                        );
                    }
                }
            }
            self.pulled += count as u64;
        }
    }

    /// Every output in input order, or the first error: what `map` returns.
    ///
    /// Decodes each completion's outputs straight into the `Vec`, in one
    /// loop, rather than one `next` call per item through `collect`; and
    /// sizes the `Vec` from the inputs' size hint.
    pub(crate) fn collect_vec(mut self) -> Result<Vec<R>, Error> {
        let mut out = Vec::with_capacity(self.size_hint().0);
        loop {
            if let Some(cur) = self.cursor.take() {
                let bytes = &cur.frame[cur.at.min(cur.frame.len())..];
                let mut items = Items::resume(bytes, cur.run);
                let mut failed = None;
                crate::unwind::quietly(|| {
                    outcome::read_each::<R>(&mut items, cur.left, |result| {
                        #[cfg(feature = "progress")]
                        self.progress.observe(Some(&result));
                        match result {
                            Ok(output) => out.push(output),
                            Err(e) => failed = Some(e),
                        }
                        failed.is_none()
                    })
                })?;
                if let Some(e) = failed {
                    return Err(e);
                }
                self.delivered += cur.left as u64;
                continue;
            }
            match self.next() {
                Some(item) => out.push(item?),
                None => return Ok(out),
            }
        }
    }

    /// The next outcome of the open completion, if any.
    fn next_in_cursor(&mut self) -> Option<Result<R, Error>> {
        let cur = self.cursor.as_mut()?;
        if cur.left == 0 {
            self.cursor = None;
            return None;
        }
        cur.left -= 1;
        cur.next += 1;
        self.delivered += 1;
        if cur.left == 0 && cur.run == InRun::default() {
            // A large `Vec<u8>` that ends its frame becomes the frame.
            if let Some(output) = outcome::take_last::<R>(&mut cur.frame, cur.at) {
                cur.at = 0;
                return Some(Ok(output));
            }
        }
        let bytes = &cur.frame[cur.at.min(cur.frame.len())..];
        let mut items = Items::resume(bytes, cur.run);
        match crate::unwind::quietly(|| outcome::read::<R>(&mut items)) {
            Ok(result) => {
                let (rest, run) = items.into_parts();
                (cur.at, cur.run) = (cur.frame.len() - rest.len(), run);
                Some(result)
            }
            Err(malformed) => {
                // The rest of this frame cannot be read: each item left fails.
                (cur.at, cur.run) = (cur.frame.len(), InRun::default());
                Some(Err(malformed.into()))
            }
        }
    }

    /// The completion that comes next in input order, if it is here.
    fn take_in_order(&mut self) -> Option<Completion> {
        let (&first, _) = self.pending.first_key_value()?;
        (first == self.delivered).then(|| self.pending.remove(&first))?
    }

    /// Opens the next completion that may be handed out.
    fn open_next(&mut self) -> Option<Result<R, Error>> {
        let entry = if self.ordered {
            self.take_in_order()?
        } else {
            self.pending.pop_first()?.1
        };
        match entry {
            Completion::Failed { error, .. } => {
                self.delivered += 1;
                Some(Err(error))
            }
            Completion::Items {
                first,
                count,
                frame,
                body,
                ..
            } => {
                self.cursor = Some(Cursor {
                    frame,
                    at: body,
                    run: InRun::default(),
                    next: first,
                    left: count,
                });
                self.next_in_cursor()
            }
        }
    }

    /// The next outcome, or the end; `receive` is called when completions
    /// are needed, and may give up (`Pending`: then so does `step`).
    fn step(
        &mut self,
        mut receive: impl FnMut(&mut Self) -> Poll<()>,
    ) -> Poll<Option<Result<R, Error>>> {
        if let Some(e) = self.setup_error.take() {
            self.inputs = None;
            self.spare.clear();
            self.pulled = self.delivered;
            return Poll::Ready(Some(Err(e)));
        }
        loop {
            if let Some(outcome) = self.next_in_cursor() {
                return Poll::Ready(Some(outcome));
            }
            if let Some(outcome) = self.open_next() {
                return Poll::Ready(Some(outcome));
            }
            self.feed();
            if self.is_finished() {
                return Poll::Ready(None);
            }
            if self
                .pending
                .first_key_value()
                .is_some_and(|(&k, _)| !self.ordered || k == self.delivered)
            {
                continue;
            }
            if receive(self).is_pending() {
                return Poll::Pending;
            }
        }
    }

    /// Every outcome was handed out, and no input is left.
    fn is_finished(&self) -> bool {
        self.setup_error.is_none()
            && self.inputs.is_none()
            && self.spare.is_empty()
            && self.delivered == self.pulled
    }

    /// Waits for completions of this job, and takes them.
    fn receive(&mut self) {
        let job = self.job;
        let core = self.driver.wait_until(|core| core.has_completions(job));
        Self::absorb(core, job, &mut self.arrived);
        self.sort_arrived();
    }

    /// Takes the completions of `job` that `core` holds into `arrived`, and
    /// releases the lock (then [`sort_arrived`](Imap::sort_arrived)).
    fn absorb(mut core: MutexGuard<'_, Core>, job: JobId, arrived: &mut VecDeque<Completion>) {
        core.take_completions(job, arrived);
    }

    /// Files what [`absorb`](Imap::absorb) took, by first index.
    fn sort_arrived(&mut self) {
        for c in self.arrived.drain(..) {
            if let Completion::Items { count, nanos, .. } = &c {
                self.chunker.observe(*count, *nanos as f64);
            }
            self.pending.insert(c.first(), c);
        }
    }
}

impl<I, R> Iterator for Imap<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    type Item = Result<R, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        #[cfg(feature = "progress")]
        if self.progress.is_wanted() {
            self.progress.start(self.size_hint());
        }
        let waited = self.step(|s| {
            s.receive();
            Poll::Ready(())
        });
        let Poll::Ready(outcome) = waited else {
            unreachable!("a blocking receive always comes back with completions")
        };
        #[cfg(feature = "progress")]
        self.progress.observe(outcome.as_ref());
        outcome
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let out = (self.pulled - self.delivered) as usize + self.spare.len();
        match &self.inputs {
            None => (out, Some(out)),
            Some(i) => {
                let (lo, hi) = i.size_hint();
                (out + lo, hi.map(|h| h + out))
            }
        }
    }
}

impl<I, R> FusedIterator for Imap<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
}

impl<I: Iterator, R> Drop for Imap<'_, I, R> {
    fn drop(&mut self) {
        let mut core = self.driver.lock();
        #[cfg(feature = "async")]
        core.forget_waker(self.job);
        core.abandon(self.job);
    }
}
