//! The driver: the one place that owns every worker channel.
//!
//! There is no driver thread. Whichever caller is waiting for results drives
//! the pool: it takes the `polling` role, polls every channel without holding
//! the lock, then, under the lock, reads frames, routes outcomes to their jobs,
//! dispatches queued batches, reaps and replaces dead workers, and wakes the
//! other waiters. A lone caller thus costs the same wake-ups as a raw
//! ping-pong with its worker; several callers share one poller. See
//! `README.md` beside this file for the invariants.

#[cfg(feature = "async")]
mod callback;
mod handles;
mod policy;
#[cfg(feature = "async")]
pub(crate) mod pump;
pub(crate) mod sleep;
mod slot;
mod supervise;
mod take_back;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::socket::{send, MsgFlags};

use crate::channel::item;
use crate::channel::frame::Fill;
use crate::channel::message::{self, Message, Tally};
use crate::channel::ring::RingMap;
use crate::error::Error;
use crate::sys::{self, Internal};
use crate::transport::{self, Event, Relayed, Transport};
use slot::{Slot, SlotState};

/// A job's id: one `map`/`imap`/`apply`/`broadcast` call.
pub(crate) type JobId = u64;

/// Batches a worker may hold at once: one running, one waiting behind it, so
/// a worker never idles between batches.
const DEPTH: usize = 2;

/// Batches a slot may hold at once: a worker's [`DEPTH`], or the depth
/// its relay has now.
fn depth_of(relayed: Option<&Relayed>) -> usize {
    relayed.map_or(DEPTH, |r| r.depth.load(Ordering::Relaxed).max(1))
}

/// A worker whose batch has run this long gets no second one behind it: it
/// stays queued for a worker that is free sooner. Twenty times what the
/// chunker aims a batch at, so a worker held back idles for one round trip
/// (tens of microseconds) after a batch of at least this long.
const HOLD_BACK: Duration = Duration::from_millis(20);

/// How long a dead worker's exit status may take to arrive from the zygote
/// before the driver stops waiting for it.
const EXIT_REPORT_WAIT: Duration = Duration::from_secs(2);

/// What a job gets back.
#[derive(Debug)]
pub(crate) enum Completion {
    /// Outcomes of job items `first .. first + count`, starting at `body` in
    /// `frame`; the worker took `nanos` to compute them.
    Items {
        first: u64,
        count: u32,
        nanos: u64,
        frame: Vec<u8>,
        body: usize,
    },
    /// Job item `index` has no outcome but this error.
    Failed { index: u64, error: Error },
}

impl Completion {
    pub(crate) fn first(&self) -> u64 {
        match self {
            Completion::Items { first, .. } => *first,
            Completion::Failed { index, .. } => *index,
        }
    }
}

#[derive(Debug, Default)]
struct JobRec {
    completions: VecDeque<Completion>,
    /// Live batches of this job.
    outstanding: usize,
    abandoned: bool,
    /// Its latest batch (the only one of a `submit`): what `cancel` looks at.
    tag: Option<u64>,
    /// Its handle does not borrow the pool: shutdown waits for its batches.
    owned: bool,
    /// The `as_completed` set told of each completion (`handles.rs`).
    watch: Option<u64>,
    /// This call's own task timeout, over the pool's (`CallOptions`).
    task_timeout: Option<Duration>,
}

/// A batch on its way in: job items `first .. first + count` of `job`, as a
/// whole `Run` frame (its tag is filled in by [`Core::submit`]).
#[derive(Debug)]
pub(crate) struct NewBatch {
    pub(crate) job: JobId,
    pub(crate) task: u32,
    pub(crate) first: u64,
    pub(crate) count: u32,
    pub(crate) frame: Vec<u8>,
    /// Offset in `frame` where each item's encoded input starts.
    pub(crate) offsets: Vec<u32>,
    /// Workers these inputs have killed already (a retry).
    pub(crate) attempts: u32,
    /// Workers that died holding these inputs, with no item to blame.
    pub(crate) strays: u32,
}

#[derive(Debug)]
struct BatchRec {
    job: JobId,
    task: u32,
    /// Job index of the batch's first item.
    first: u64,
    count: u32,
    /// The whole `Run` frame, shared with the slot's send queue.
    frame: Arc<Vec<u8>>,
    /// Offset in `frame` where each item's encoded input starts.
    offsets: Arc<Vec<u32>>,
    /// Items whose outcome has arrived.
    done: u32,
    /// The slot that holds it, once dispatched.
    slot: Option<usize>,
    /// Must run on this slot (a broadcast).
    pinned: Option<usize>,
    attempts: u32,
    strays: u32,
}

/// Settings fixed at build.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) workers: usize,
    pub(crate) max_frame: usize,
    pub(crate) chunk_size: Option<usize>,
    pub(crate) shutdown_grace: Duration,
    /// Failed init attempts in a row after which a slot stops respawning.
    pub(crate) respawn_limit: u32,
    /// Times an input whose worker died is run again.
    pub(crate) retries: u32,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) init_timeout: Option<Duration>,
    /// When workers leave on their own, and what they run as they do.
    pub(crate) recycle: crate::worker::Recycle,
    /// How long a worker that ran on another CPU than its driver may spin
    /// for its next frame, while fewer workers are busy than CPUs
    /// ([`IDLE_SPIN`] in a local pool; longer on a Redis host).
    pub(crate) idle_spin: Duration,
}

/// A local pool's [`Config::idle_spin`]: a wake-up across cores costs
/// 36–120 µs on the VM measured, a spin that catches the next frame
/// 0.1 µs (BENCHMARKS.md, issue 14).
pub(crate) const IDLE_SPIN: Duration = Duration::from_micros(50);

pub(crate) struct Core {
    slots: Vec<Slot>,
    queue: VecDeque<u64>,
    batches: HashMap<u64, BatchRec>,
    jobs: HashMap<JobId, JobRec>,
    next_tag: u64,
    next_job: JobId,
    /// Who polls, who waits (`sleep/`).
    roles: sleep::Roles,
    /// How workers start, end and are watched.
    transport: Box<dyn Transport>,
    /// Batches a slot may hold, if its transport's slots are relays
    /// (`Transport::relayed`); else [`DEPTH`].
    relayed: Option<Arc<Relayed>>,
    /// Reused list of what the transport reported.
    events: Vec<Event>,
    /// Why the pool can run nothing more, once it cannot.
    broken: Option<String>,
    /// `Pool::terminate` was called: what waits fails with `Terminated`.
    terminated: bool,
    /// `build` has returned: a first init failing now breaks the pool
    /// (`supervise.rs`, `startup_failed`) instead of failing `build`.
    built: bool,
    /// The first init that failed after `build` returned: what waits, and
    /// every later call, fails with `ErrorKind::Init` and this message.
    init_failed: Option<String>,
    /// Slots `0 .. asked` have been asked for a worker; the others wait
    /// until `release_at`, or until the first worker is ready
    /// (`supervise.rs`, `release_held_back`).
    asked: usize,
    /// When the slots held back at build are asked for anyway.
    release_at: Option<Instant>,
    /// Exit-hook outcomes of workers that left on their own: (slot, generation, outcome).
    recycled: Vec<(usize, u32, Vec<u8>)>,
    /// Reused list of descriptors for `poll`.
    pollfds: Vec<libc::pollfd>,
    /// A copy of the poller's wake-up descriptor: a worker with rings
    /// writes it after a frame, if the driver said it sleeps.
    doorbell: Option<Internal<OwnedFd>>,
    /// CPUs this process may run on, at build: one spins for a ring's
    /// frame only while fewer workers are busy.
    cpus: usize,
    config: Config,
    /// Futures and streams waiting for their job (the `async` feature).
    #[cfg(feature = "async")]
    waiters: pump::Waiters,
    /// Owned handles, `as_completed` sets, shutdown (`handles.rs`).
    handles: handles::Handles,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("slots", &self.slots)
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

/// The pool's shared half: the core behind a lock, and the means to wake a poller.
#[derive(Debug)]
pub(crate) struct Driver {
    core: Mutex<Core>,
    /// How each thread waiting on the pool is woken (`sleep/`).
    sleep: sleep::Sleep,
    pub(crate) config: Config,
    /// As the core's `relayed`, read without its lock.
    relayed: Option<Arc<Relayed>>,
    /// The thread that drives the pool for async waiters (the `async` feature).
    #[cfg(feature = "async")]
    pub(crate) pump: pump::Pump,
}

impl Driver {
    pub(crate) fn new(transport: Box<dyn Transport>, sleep: sleep::Sleep, config: Config) -> Self {
        let slots = (0..config.workers)
            .map(|_| Slot::new(config.max_frame))
            .collect();
        let relayed = transport.relayed();
        let core = Core {
            slots,
            queue: VecDeque::new(),
            batches: HashMap::new(),
            jobs: HashMap::new(),
            next_tag: 1,
            next_job: 1,
            roles: Default::default(),
            transport,
            relayed: relayed.clone(),
            events: Vec::new(),
            broken: None,
            terminated: false,
            built: false,
            init_failed: None,
            asked: 0,
            release_at: None,
            pollfds: Vec::new(),
            doorbell: sleep.doorbell(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            recycled: Vec::new(),
            config: config.clone(),
            #[cfg(feature = "async")]
            waiters: Default::default(),
            handles: Default::default(),
        };
        Driver {
            core: Mutex::new(core),
            sleep,
            config,
            relayed,
            #[cfg(feature = "async")]
            pump: Default::default(),
        }
    }

    /// How many batches may be out at once: two per worker, or, when the
    /// slots are relays, as many as their depth allows now.
    pub(crate) fn capacity(&self) -> usize {
        self.config.workers * depth_of(self.relayed.as_deref())
    }

    /// How many workers run the batches: the slots, or, when they are
    /// relays, the workers they reach now, if more.
    pub(crate) fn workers_now(&self) -> usize {
        let reached = self.relayed.as_ref().map_or(0, |r| r.workers.load(Ordering::Relaxed));
        self.config.workers.max(reached)
    }

    /// The core, locked. A thread that panicked while it held the lock (a
    /// bug of the runtime, or an executor's waker that panicked) may have
    /// left it half-changed: the pool is then broken, once, and says why to
    /// every input still waiting; it can still be shut down.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Core> {
        match self.core.lock() {
            Ok(core) => core,
            Err(poisoned) => {
                let mut core = poisoned.into_inner();
                self.core.clear_poison();
                core.poisoned();
                core
            }
        }
    }

    /// At build: starts a worker in every slot and waits until all are
    /// ready, or for the first init failure (no retry at build).
    pub(crate) fn start_workers(&self) -> Result<(), String> {
        self.start(true)
    }

    /// At build: starts slot 0's worker and waits until it is ready, or
    /// for the first init failure (no retry at build). The other slots are
    /// asked for once it is ready, or once its init has taken as long as
    /// its fork did (a slow init is not serialised), whichever comes first:
    /// the fork server forking them while the first worker starts delays
    /// it (measured: 7 % of the start with a 1 GiB heap, BENCHMARKS.md).
    /// They come up while the pool serves; from then on a slot's first
    /// init that fails breaks the pool (`Core::startup_failed`).
    pub(crate) fn start_first_worker(&self) -> Result<(), String> {
        self.start(false)
    }

    /// Starts the slots' workers and waits for one (`all`: every one) to be ready.
    fn start(&self, all: bool) -> Result<(), String> {
        {
            let mut core = self.lock();
            let n = core.slots.len();
            core.asked = if all { n } else { n.min(1) };
            for slot in 0..core.asked {
                core.spawn(slot);
            }
        }
        let mut core = self.wait_until(|core| core.startup_status(all).is_some());
        let status = core.startup_status(all).expect("waited for it");
        core.built = status.is_ok();
        if status.is_ok() {
            core.release_held_back();
        }
        status
    }

    /// Drives the pool until `done` holds, and returns with the lock held.
    pub(crate) fn wait_until(&self, done: impl FnMut(&mut Core) -> bool) -> MutexGuard<'_, Core> {
        self.wait_until_deadline(done, None)
    }

    /// Drives the pool until `done` holds or `deadline` passes, and returns
    /// with the lock held (the caller looks again at what it waits for).
    pub(crate) fn wait_until_deadline(
        &self,
        mut done: impl FnMut(&mut Core) -> bool,
        deadline: Option<Instant>,
    ) -> MutexGuard<'_, Core> {
        let mut core = self.lock();
        // Once per call: after a poll, the channels hold nothing it missed.
        let mut read_first = true;
        let mut polled_once = false;
        loop {
            if done(&mut core) {
                return core;
            }
            let left = match deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    // Out of time: still take what has come (a zero
                    // timeout reads the channels once).
                    _ if !polled_once => {
                        polled_once = true;
                        core = self.step(core);
                        continue;
                    }
                    _ => return core,
                },
            };
            if core.roles.polling() {
                core = self.sleep.follow(core, left);
                continue;
            }
            if read_first {
                if let Some((map, tail, same)) = core.spin_target() {
                    // As a poll would, without the lock: nothing is closed meanwhile.
                    let took = core.roles.take_polling();
                    debug_assert!(took, "no other thread polls: checked above");
                    drop(core);
                    spin_for(&map.get().to_driver, tail, same);
                    core = self.lock();
                    core.roles.end_polling();
                }
            }
            if std::mem::take(&mut read_first) && core.read_lone_worker() {
                // As after a poll: refill the worker, wake whoever waits.
                self.refill_and_wake(&mut core);
                if done(&mut core) {
                    return core;
                }
            }
            let took = core.roles.take_polling();
            debug_assert!(took, "no other thread polls: checked above, under the lock");
            let mut fds = std::mem::take(&mut core.pollfds);
            core.fill_pollfds(&mut fds, self.sleep.fd());
            let mut timeout = core.poll_timeout_ms();
            if let Some(left) = left {
                // Rounded up: waking a little late beats spinning until then.
                let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                timeout = timeout.min(ms.max(1));
            }
            if core.rings_sleep(true) {
                timeout = 0;
            }
            drop(core);
            // The descriptors stay open: only a thread holding the lock while
            // no thread polls closes one, and we poll.
            let polled = sys::poll_raw(&mut fds, timeout);
            core = self.lock();
            core.rings_sleep(false);
            core.roles.end_polling();
            self.after_poll(&mut core, fds, polled);
            polled_once = true;
        }
    }

    /// One step that never blocks: if no thread polls, polls every channel
    /// with a zero timeout and handles what came (a `wait_until` round).
    pub(crate) fn step<'a>(&'a self, mut core: MutexGuard<'a, Core>) -> MutexGuard<'a, Core> {
        if core.roles.polling() {
            // The poller handles the events.
            return core;
        }
        let mut fds = std::mem::take(&mut core.pollfds);
        core.fill_pollfds(&mut fds, self.sleep.fd());
        // Under the lock with no thread polling: no descriptor can be closed
        // meanwhile, and a zero timeout never blocks.
        let polled = sys::poll_raw(&mut fds, 0);
        self.after_poll(&mut core, fds, polled);
        core
    }

    /// What follows every poll: handle what it reported, hand the
    /// descriptors back, check timeouts and deaths, refill the workers and
    /// wake the other waiters.
    fn after_poll(&self, core: &mut Core, fds: Vec<libc::pollfd>, polled: nix::Result<usize>) {
        if polled.is_ok_and(|n| n > 0) {
            if fds[0].revents != 0 {
                self.sleep.woken();
            }
            core.handle_events(&fds);
        }
        // Workers with rings ring the wake-up descriptor, or found the
        // driver awake: look at every ring, whatever the poll said.
        for i in 0..core.slots.len() {
            core.read_ring(i);
        }
        core.pollfds = fds;
        core.tick();
        self.refill_and_wake(core);
    }

    /// Sends queued work to idle workers and wakes the threads waiting for
    /// the poller (a lone caller has no one to wake: no futex call).
    fn refill_and_wake(&self, core: &mut Core) {
        core.dispatch();
        self.sleep.wake_followers(&core.roles);
    }

    /// Wakes the poller, if any, so it polls again with fresh interest (new
    /// data waiting to be written).
    pub(crate) fn nudge(&self, core: &Core) {
        self.sleep.nudge(&core.roles);
    }

    /// Has the transport's own workers leave through exit hook `hook`, if
    /// its workers are not the slots' (see [`Transport::leave_with`]).
    pub(crate) fn leave_with(&self, hook: u32) -> Option<Vec<Vec<u8>>> {
        let mut core = self.lock();
        let grace = core.config.shutdown_grace;
        core.transport.leave_with(hook, grace)
    }

    /// What broadcasts to the transport's own workers, if they are not the
    /// slots' (see [`Transport::broadcaster`]).
    pub(crate) fn broadcaster(&self) -> Option<Arc<dyn transport::Broadcast>> {
        self.lock().transport.broadcaster()
    }

    /// Kills every worker now and fails every input still waiting with
    /// `Terminated`, and wakes every thread waiting on the pool to see it.
    pub(crate) fn terminate(&self) {
        let mut core = self.lock();
        core.terminate();
        self.sleep.wake_followers(&core.roles);
        self.nudge(&core);
    }

    /// Ends the pool: fails what still waits for an outcome, closes every
    /// channel, and has the transport end its workers (SIGKILL after
    /// `grace`, the pool's `shutdown_grace` if `None`) outside the lock.
    /// Idempotent.
    pub(crate) fn shutdown(&self, grace: Option<Duration>) {
        // The pump thread first: it may be the one polling.
        #[cfg(feature = "async")]
        self.stop_pump();
        let mut core = self.lock();
        // Waiters on owned handles may still be here: each gets its outcome
        // now, and the poller among them leaves `poll` before a channel closes.
        core.close_jobs();
        self.sleep.wake_followers(&core.roles);
        while core.roles.polling() {
            self.nudge(&core);
            core = self.sleep.follow(core, Some(Duration::from_millis(10)));
        }
        for slot in &mut core.slots {
            slot.close();
        }
        let grace = grace.unwrap_or(core.config.shutdown_grace);
        let mut transport = std::mem::replace(&mut core.transport, Box::new(transport::Ended));
        #[cfg(feature = "async")]
        let (wakers, tasks) = (core.take_all_wakers(), core.take_runnable());
        drop(core);
        // Owned futures and callbacks still waiting look again, and find
        // their outcome; the callbacks run on this thread.
        #[cfg(feature = "async")]
        {
            wakers.into_iter().for_each(std::task::Waker::wake);
            tasks.iter().for_each(callback::Task::run);
        }
        transport.shutdown(grace);
    }
}

impl Core {
    // ----- jobs ------------------------------------------------------------

    pub(crate) fn new_job(&mut self) -> JobId {
        let id = self.next_job;
        self.next_job += 1;
        self.jobs.insert(id, JobRec::default());
        id
    }

    /// Queues a batch of job items `first .. first + count`. `frame` is a whole
    /// `Run` frame whose tag field is filled in here.
    pub(crate) fn submit(&mut self, batch: NewBatch, pinned: Option<usize>) {
        let NewBatch {
            job,
            task,
            first,
            count,
            mut frame,
            offsets,
            attempts,
            strays,
        } = batch;
        let tag = self.next_tag;
        self.next_tag += 1;
        message::write::patch_run_tag(&mut frame, 0, tag);
        if let Some(j) = self.jobs.get_mut(&job) {
            j.outstanding += 1;
            j.tag = Some(tag);
            if j.owned && !j.abandoned && j.outstanding == 1 {
                self.handles.owned_running += 1;
            }
        }
        self.batches.insert(
            tag,
            BatchRec {
                job,
                task,
                first,
                count,
                frame: Arc::new(frame),
                offsets: Arc::new(offsets),
                done: 0,
                slot: None,
                pinned,
                attempts,
                strays,
            },
        );
        match pinned {
            Some(slot) => self.slots[slot].pinned.push_back(tag),
            None => self.queue.push_back(tag),
        }
        if let Some(why) = self.broken.clone() {
            self.fail_queued(&why);
        } else if let Some(slot) = pinned {
            if let SlotState::Failed(why) = &self.slots[slot].state {
                let why = why.clone();
                self.fail_pinned(slot, &why);
            }
        }
    }

    /// Takes what has arrived for `job`.
    pub(crate) fn take_completions(&mut self, job: JobId, into: &mut VecDeque<Completion>) {
        if let Some(j) = self.jobs.get_mut(&job) {
            into.append(&mut j.completions);
        }
    }

    pub(crate) fn has_completions(&self, job: JobId) -> bool {
        self.jobs
            .get(&job)
            .is_some_and(|j| !j.completions.is_empty())
    }

    /// The caller no longer wants `job`'s outcomes. O(workers): its batches
    /// still queued are dropped when dispatch reaches them, one a worker
    /// holds unstarted is taken back (neither ever runs), and outcomes
    /// still in flight are discarded as they arrive.
    pub(crate) fn abandon(&mut self, job: JobId) {
        let Some(j) = self.jobs.get_mut(&job) else {
            return;
        };
        if j.owned && !j.abandoned && j.outstanding > 0 {
            self.handles.owned_running -= 1;
        }
        j.abandoned = true;
        j.completions.clear();
        if j.outstanding == 0 {
            self.jobs.remove(&job);
            return;
        }
        // What waits in a worker's socket, unstarted, never runs either.
        self.reclaim_unstarted(job);
    }

    /// Drops queued batch `tag` if no one wants its outcomes any more;
    /// whether it did.
    fn drop_if_abandoned(&mut self, tag: u64) -> bool {
        let Some(b) = self.batches.get(&tag) else {
            return true;
        };
        let job = b.job;
        if self.jobs.get(&job).is_some_and(|j| !j.abandoned) {
            return false;
        }
        self.batches.remove(&tag);
        self.batch_gone(job);
        true
    }

    /// Every slot's insights, copied (formatted later, outside the lock).
    pub(crate) fn insights(&self) -> Vec<crate::insights::Snapshot> {
        self.slots
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let pid = s.pid().filter(|_| self.transport.local_pids());
                s.stats.snapshot(i, pid.map(|p| p.as_raw() as u32), s.generation)
            })
            .collect()
    }

    /// Outcomes the transport dropped as second ones (`Insights::duplicates`).
    pub(crate) fn duplicates(&self) -> u64 {
        self.transport.duplicates()
    }

    /// Why the pool can run nothing more, if it cannot.
    pub(crate) fn unusable(&self) -> Option<Error> {
        use crate::error::ErrorKind;
        if let (Some(why), false) = (&self.init_failed, self.terminated) {
            return Some(Error::new(ErrorKind::Init(why.clone())));
        }
        match (&self.broken, self.terminated) {
            (_, true) => Some(Error::new(ErrorKind::Terminated)),
            (Some(why), false) => Some(Error::new(ErrorKind::PoolBroken(why.clone()))),
            (None, false) => None,
        }
    }

    /// Slots whose worker is up and serving.
    pub(crate) fn ready_slots(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| matches!(self.slots[i].state, SlotState::Ready { .. }))
            .collect()
    }

    // ----- events --------------------------------------------------------------

    fn fill_pollfds(&self, fds: &mut Vec<libc::pollfd>, wake: i32) {
        fds.clear();
        fds.push(libc::pollfd {
            fd: wake,
            events: libc::POLLIN,
            revents: 0,
        });
        let events = self.transport.events_fd().map_or(-1, |fd| fd.as_raw_fd());
        fds.push(libc::pollfd {
            fd: events,
            events: libc::POLLIN,
            revents: 0,
        });
        for s in &self.slots {
            let (fd, events) = s.poll_interest();
            fds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
        }
    }

    /// Handles what a poll reported (the wake-up descriptor, first, is the
    /// caller's).
    fn handle_events(&mut self, fds: &[libc::pollfd]) {
        if fds[1].revents != 0 {
            self.handle_transport();
        }
        for (i, p) in fds[2..].iter().enumerate() {
            if p.fd < 0 || p.revents == 0 || i >= self.slots.len() {
                continue;
            }
            // Closed (or replaced) since the poll: not this channel's events.
            if self.slots[i].chan.as_ref().map(|c| c.as_raw_fd()) != Some(p.fd) {
                continue;
            }
            if p.revents & libc::POLLOUT != 0 {
                self.write_slot(i);
            }
            if p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                self.read_slot(i);
            }
        }
    }

    /// With one worker busy, tries a non-blocking read of its channel before
    /// polling: when both run on one core, the answer is usually there
    /// already (the worker ran as soon as it was sent the input), and the
    /// read spares a `poll` per round trip. Returns whether a read was tried.
    fn read_lone_worker(&mut self) -> bool {
        let mut busy = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.inflight.is_empty());
        match (busy.next(), busy.next()) {
            // Its answer comes through the ring: no system call to look.
            (Some((i, s)), None) if s.awaits_ring() => {
                self.read_ring(i);
                true
            }
            (Some((i, _)), None) if self.slots[i].chan.is_some() => {
                self.read_slot(i);
                true
            }
            _ => false,
        }
    }

    /// The lone busy slot, if its answer comes through its ring and the
    /// driver may spin for it (fewer workers are busy than there are CPUs:
    /// one), and whether its worker last ran on this thread's CPU.
    fn spin_target(&self) -> Option<(Arc<RingMap>, u64, bool)> {
        let mut busy = self.slots.iter().filter(|s| !s.inflight.is_empty());
        let (Some(s), None) = (busy.next(), busy.next()) else {
            return None;
        };
        let r = s.rings.as_ref().filter(|_| s.awaits_ring() && self.cpus > 1)?;
        let same = r.to_driver().writer_cpu() == sys::current_cpu();
        Some((r.map.clone(), r.tail, same))
    }

    /// Before a poll: tells each busy worker with rings that the driver
    /// sleeps (or, `false`, woke); whether one already put a frame there.
    fn rings_sleep(&self, sleeps: bool) -> bool {
        let mut ready = false;
        for s in self.slots.iter().filter(|s| !s.inflight.is_empty()) {
            s.driver_sleeps(sleeps);
            ready |= sleeps && s.ring_ready();
        }
        ready
    }

    /// Carries out what the transport reported.
    fn handle_transport(&mut self) {
        let mut events = std::mem::take(&mut self.events);
        self.transport.read_events(&mut events);
        for event in events.drain(..) {
            match event {
                Event::Started { slot, pid } => self.spawned(slot, pid),
                Event::StartFailed { slot, why } if slot < self.slots.len() => {
                    self.slot_failed(slot, why)
                }
                Event::StartFailed { .. } => {}
                Event::Ended { pid, exit } => self.worker_exited(pid, exit),
                Event::Lost(why) => self.break_pool(why),
            }
        }
        self.events = events;
    }

    /// Reads what the worker sent: its ring first, then before each frame
    /// of its socket (and before its end) its ring again, so frames are
    /// handled in the order it sent them.
    fn read_slot(&mut self, i: usize) {
        if !self.read_ring(i) {
            return;
        }
        loop {
            let fill = self.slots[i].fill();
            loop {
                let frame = match self.slots[i].reader.next_frame() {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        self.protocol_failure(i, &e.to_string());
                        return;
                    }
                };
                if !self.read_ring(i) {
                    return;
                }
                if let Err(why) = self.handle_frame(i, frame) {
                    self.protocol_failure(i, why);
                    return;
                }
            }
            match fill {
                Ok(Fill::Data) => continue,
                // Level-triggered poll says so if more comes, or the end.
                Ok(Fill::Drained | Fill::WouldBlock) => return,
                Ok(Fill::Eof) | Err(_) => {
                    if self.read_ring(i) {
                        self.channel_closed(i);
                    }
                    return;
                }
            }
        }
    }

    /// Handles the frames waiting in slot `i`'s ring; `false` if one was
    /// corrupt or wrong (the worker is then killed and its channel closed).
    fn read_ring(&mut self, i: usize) -> bool {
        while self.slots[i].ring_ready() {
            let mut frame = Vec::new();
            let why = match self.slots[i].ring_recv(&mut frame) {
                Ok(false) => return true,
                Ok(true) => match self.handle_frame(i, frame) {
                    Ok(()) => continue,
                    Err(why) => why.to_string(),
                },
                Err(e) => e.to_string(),
            };
            self.protocol_failure(i, &why);
            return false;
        }
        true
    }

    fn handle_frame(&mut self, i: usize, frame: Vec<u8>) -> Result<(), &'static str> {
        self.slots[i].stats.received(frame.len());
        let msg = Message::parse_frame(&frame).map_err(|e| e.0)?;
        match msg {
            Message::Ready => {
                let s = &mut self.slots[i];
                s.stats.ready(s.started_at);
                match s.state {
                    SlotState::Starting { pid } => {
                        s.state = SlotState::Ready { pid };
                        s.init_failures = 0;
                        s.was_ready = true;
                    }
                    SlotState::Spawning { ref mut ready, .. } => *ready = true,
                    _ => return Err("ready twice"),
                }
            }
            Message::Started => self.slots[i].started = true,
            Message::InitFailed { message } => {
                // The worker leaves next; `settle` counts the failure.
                self.slots[i].last_init_error = Some(message.to_string());
            }
            Message::Done {
                tag,
                first,
                count,
                nanos,
                tally,
                body,
            } => {
                // The body ends where the slow-item records begin: the job
                // gets the frame without them.
                self.insights_done(i, tag, (first, count, nanos), tally)?;
                let mut frame = frame;
                frame.truncate(body.end);
                self.batch_done(i, tag, (first, count, nanos), frame, body.start)?;
            }
            Message::Exited { body } => {
                let s = &mut self.slots[i];
                s.exit_result = Some(body.to_vec());
                // Unasked: the worker reached its task or memory limit and
                // leaves; what it held is requeued when its channel closes.
                if let SlotState::Ready { pid } = s.state {
                    s.state = SlotState::Recycling { pid };
                    s.recycling = true;
                }
            }
            Message::Run { .. } | Message::Exit { .. } | Message::Hello { .. } => {
                return Err("a worker sent a driver message")
            }
        }
        Ok(())
    }

    fn batch_done(
        &mut self,
        slot: usize,
        tag: u64,
        (first, count, nanos): (u32, u32, u64),
        frame: Vec<u8>,
        body: usize,
    ) -> Result<(), &'static str> {
        let b = self
            .batches
            .get_mut(&tag)
            .ok_or("outcome for an unknown batch")?;
        if b.slot != Some(slot) || first != b.done || count > b.count - b.done {
            return Err("outcome out of sequence");
        }
        b.done += count;
        let job_first = b.first + first as u64;
        let (job, finished) = (b.job, b.done == b.count);
        if count > 0 {
            let c = Completion::Items {
                first: job_first,
                count,
                nanos,
                frame,
                body,
            };
            self.push_completion(job, c);
        }
        if finished {
            self.batches.remove(&tag);
            let s = &mut self.slots[slot];
            s.inflight.retain(|t| *t != tag);
            if !s.inflight.is_empty() {
                s.head_since = Instant::now();
            }
            self.batch_gone(job);
        }
        Ok(())
    }

    /// Insights from a `Done` (before `batch_done`, which may forget the
    /// batch): the worker's figures, and its slow items with their inputs.
    fn insights_done(
        &mut self,
        slot: usize,
        tag: u64,
        (_, count, nanos): (u32, u32, u64),
        tally: Tally<'_>,
    ) -> Result<(), &'static str> {
        let s = &mut self.slots[slot];
        s.stats
            .done(count, nanos, tally.codec_nanos, tally.io_nanos);
        let pid = s.pid().filter(|_| self.transport.local_pids());
        let pid = pid.map_or(0, |p| p.as_raw() as u32);
        let Some(b) = self.batches.get(&tag) else {
            return Ok(()); // `batch_done` says what is wrong
        };
        for (item, items, nanos) in tally.slow() {
            if items == 0 || item.checked_add(items).is_none_or(|end| end > b.count) {
                return Err("slow-item record out of range");
            }
            // The input's value, without its item head.
            let input = b
                .offsets
                .first()
                .filter(|_| items == 1)
                .and_then(|&at| b.frame.get(at as usize..))
                .and_then(|body| item::nth(body, item));
            let index = b.first + item as u64;
            s.stats.slow(b.task, (index, items, nanos), pid, input);
        }
        Ok(())
    }

    /// A batch of `job` ended (done, failed or replaced).
    fn batch_gone(&mut self, job: JobId) {
        if let Some(j) = self.jobs.get_mut(&job) {
            j.outstanding -= 1;
            if j.owned && !j.abandoned && j.outstanding == 0 {
                self.handles.owned_running -= 1;
            }
            if j.abandoned && j.outstanding == 0 {
                self.jobs.remove(&job);
            }
        }
    }

    // ----- sending -----------------------------------------------------------

    fn assign(&mut self, tag: u64, slot: usize) {
        let b = self.batches.get_mut(&tag).expect("batch exists");
        b.slot = Some(slot);
        let frame = b.frame.clone();
        // The ring only when nothing the worker has not read is in its
        // socket: it reads its ring first (`driver/README.md`, Rings).
        let ring_ok = self.slots[slot].inflight.is_empty()
            && !self.slots[slot].has_output()
            && self.slots[slot].rings.as_ref().is_some_and(|r| r.warm)
            && !self.transport.take_back_unseen(slot);
        let busy = self.slots.iter().filter(|s| !s.inflight.is_empty()).count();
        let spin = if busy < self.cpus { self.config.idle_spin } else { Duration::ZERO };
        let s = &mut self.slots[slot];
        s.stats.sent(frame.len());
        if s.inflight.is_empty() {
            s.head_since = Instant::now();
        }
        s.inflight.push_back(tag);
        if ring_ok {
            match s.ring_send(tag, &frame, spin) {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => return self.protocol_failure(slot, &e.to_string()),
            }
        }
        let s = &mut self.slots[slot];
        if let Some(r) = &mut s.rings {
            r.warm = true;
        }
        s.push_frame(frame);
        self.write_slot(slot);
    }

    /// Hands each ready worker the batches pinned to its slot, then queued
    /// batches to the least busy ready workers; a worker left idle takes
    /// one another holds unstarted.
    pub(crate) fn dispatch(&mut self) {
        for slot in 0..self.slots.len() {
            while matches!(self.slots[slot].state, SlotState::Ready { .. })
                && self.slots[slot].inflight.len() < self.depth()
            {
                let Some(tag) = self.slots[slot].pinned.pop_front() else {
                    break;
                };
                if !self.drop_if_abandoned(tag) {
                    self.assign(tag, slot);
                }
            }
        }
        while let Some(&tag) = self.queue.front() {
            if self.drop_if_abandoned(tag) {
                self.queue.pop_front();
                continue;
            }
            // Least busy first; of two as busy, the one whose batch started
            // last (the other's may be a long one).
            let depth = self.depth_for(tag);
            let best = (0..self.slots.len())
                .filter(|&i| self.has_room(i, depth))
                .min_by_key(|&i| {
                    let s = &self.slots[i];
                    let since = (!s.inflight.is_empty()).then_some(s.head_since);
                    (s.inflight.len(), std::cmp::Reverse(since))
                });
            let Some(slot) = best else { break };
            self.queue.pop_front();
            self.assign(tag, slot);
        }
        self.lend_to_idle();
    }

    /// Batches a slot may hold at once.
    fn depth(&self) -> usize {
        depth_of(self.relayed.as_deref())
    }

    /// Batches a slot may hold at once, for batch `tag`: a relay's depth
    /// depends on the batch's size (`Relayed::depth_for`).
    fn depth_for(&self, tag: u64) -> usize {
        // A local pool's depth is fixed: no look-up of the batch.
        let Some(r) = &self.relayed else {
            return self.depth();
        };
        match self.batches.get(&tag) {
            Some(b) => r.depth_for(b.count, b.frame.len()),
            None => self.depth(),
        }
    }

    /// Whether slot `i`'s worker is ready and may take one more batch: it
    /// holds fewer than `DEPTH`, and none behind one running `HOLD_BACK`.
    /// A relay holds up to `depth`: its batches run on many workers, no
    /// one behind another.
    fn has_room(&self, i: usize, depth: usize) -> bool {
        let s = &self.slots[i];
        if !matches!(s.state, SlotState::Ready { .. }) {
            return false;
        }
        if self.relayed.is_some() {
            return s.inflight.len() < depth;
        }
        match s.inflight.len() {
            0 => true,
            n if n < DEPTH => s.head_since.elapsed() < HOLD_BACK,
            _ => false,
        }
    }

    /// Whether some slot has bytes waiting to be written.
    pub(crate) fn wants_write(&self) -> bool {
        self.slots.iter().any(|s| s.has_output())
    }

    fn flush_writes(&mut self) {
        for i in 0..self.slots.len() {
            self.write_slot(i);
        }
    }

    fn write_slot(&mut self, i: usize) {
        let s = &mut self.slots[i];
        let Some(chan) = &s.chan else {
            s.out.clear();
            return;
        };
        let mut wrote = false;
        while let Some((frame, off)) = s.out.front_mut() {
            match send(
                chan.as_raw_fd(),
                &frame[*off..],
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            ) {
                Ok(n) => {
                    wrote = true;
                    *off += n;
                    if *off == frame.len() {
                        s.out.pop_front();
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                // Full: the poller waits for POLLOUT. Broken: it sees the hang-up.
                Err(_) => break,
            }
        }
        if wrote {
            s.socket_written();
        }
    }
}

/// How long the driver spins for a ring's frame before it polls: a
/// wake-up across cores costs 36–120 µs on the VM measured (BENCHMARKS.md).
const SPIN: Duration = Duration::from_micros(50);

/// Spins until `ring` has a frame after `tail`, for at most [`SPIN`];
/// yielding the CPU at each turn if its writer last ran on this CPU
/// (`same`): it writes only once it runs here.
fn spin_for(ring: &crate::channel::ring::Ring, tail: u64, same: bool) {
    let start = Instant::now();
    while !ring.ready(tail) && start.elapsed() < SPIN {
        if same {
            std::thread::yield_now();
        }
        std::hint::spin_loop();
    }
}

impl BatchRec {
    /// The items `from .. to` of this batch as a new batch, each an
    /// ordinary item (a dense run's values with heads of their own).
    fn clone_range(&self, from: u32, to: u32) -> Option<NewBatch> {
        if from >= to {
            return None;
        }
        // The header, and a pipeline's chain, run up to the first input.
        let head = self.offsets[0] as usize;
        let mut frame = Vec::with_capacity(self.frame.len());
        frame.extend_from_slice(&self.frame[..head]);
        message::write::patch_run_count(&mut frame, 0, to - from);
        item::copy_range(&self.frame[head..], from, to, &mut frame).ok()?;
        crate::channel::frame::finish(&mut frame, 0, usize::MAX).ok()?;
        let mut offsets = Vec::with_capacity((to - from) as usize);
        let mut rest = &frame[head..];
        while !rest.is_empty() {
            offsets.push((frame.len() - rest.len()) as u32);
            rest = item::read(rest).ok()?.2;
        }
        Some(NewBatch {
            job: self.job,
            task: self.task,
            first: self.first + from as u64,
            count: to - from,
            frame,
            offsets,
            attempts: self.attempts,
            strays: self.strays,
        })
    }
}
