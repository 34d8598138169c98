//! The driver: the one place that owns every worker channel.
//!
//! There is no driver thread. Whichever caller is waiting for results drives
//! the pool: it takes the `polling` role, polls every channel without holding
//! the lock, then, under the lock, reads frames, routes outcomes to their jobs,
//! dispatches queued batches, reaps and replaces dead workers, and wakes the
//! other waiters. A lone caller thus costs the same wake-ups as a raw
//! ping-pong with its worker; several callers share one poller. See
//! `README.md` beside this file for the invariants.

mod slot;

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{send, MsgFlags};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::channel::frame::Fill;
use crate::channel::message::{self, Message};
use crate::error::{Error, ErrorKind};
use crate::sys::{self, Cells};
use crate::zygote::{describe_exit, Ctl};
use slot::{Slot, SlotState};

/// A job's id: one `map`/`imap`/`apply`/`broadcast` call.
pub(crate) type JobId = u64;

/// Batches a worker may hold at once: one running, one waiting behind it, so
/// a worker never idles between batches.
const DEPTH: usize = 2;

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
}

pub(crate) struct Core {
    slots: Vec<Slot>,
    queue: VecDeque<u64>,
    batches: HashMap<u64, BatchRec>,
    jobs: HashMap<JobId, JobRec>,
    next_tag: u64,
    next_job: JobId,
    /// A thread is inside `poll` with the descriptors of this core.
    polling: bool,
    zygote_ctl: Option<OwnedFd>,
    zygote_pid: Pid,
    cells: Cells,
    /// Why the pool can run nothing more, once it cannot.
    broken: Option<String>,
    /// Reused list of descriptors for `poll`.
    pollfds: Vec<libc::pollfd>,
    config: Config,
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
    cv: Condvar,
    wake: EventFd,
    pub(crate) config: Config,
}

impl Driver {
    pub(crate) fn new(
        zygote_ctl: OwnedFd,
        zygote_pid: Pid,
        cells: Cells,
        config: Config,
    ) -> Result<Self, Error> {
        let wake = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
        sys::register_internal(wake.as_fd().as_raw_fd());
        let slots = (0..config.workers)
            .map(|_| Slot::new(config.max_frame))
            .collect();
        let core = Core {
            slots,
            queue: VecDeque::new(),
            batches: HashMap::new(),
            jobs: HashMap::new(),
            next_tag: 1,
            next_job: 1,
            polling: false,
            zygote_ctl: Some(zygote_ctl),
            zygote_pid,
            cells,
            broken: None,
            pollfds: Vec::new(),
            config: config.clone(),
        };
        Ok(Driver {
            core: Mutex::new(core),
            cv: Condvar::new(),
            wake,
            config,
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drives the pool until `done` holds, and returns with the lock held.
    pub(crate) fn wait_until(
        &self,
        mut done: impl FnMut(&mut Core) -> bool,
    ) -> MutexGuard<'_, Core> {
        let mut core = self.lock();
        loop {
            if done(&mut core) {
                return core;
            }
            if core.polling {
                core = self.cv.wait(core).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            core.polling = true;
            let mut fds = std::mem::take(&mut core.pollfds);
            core.fill_pollfds(&mut fds, self.wake.as_fd().as_raw_fd());
            let timeout = core.poll_timeout_ms();
            drop(core);
            // The descriptors stay open: only a thread holding the lock while
            // `polling` is false closes one, and we hold `polling`.
            let polled = sys::poll_raw(&mut fds, timeout);
            core = self.lock();
            core.polling = false;
            if polled.is_ok() {
                core.handle_events(&fds, &self.wake);
            }
            core.pollfds = fds;
            core.tick();
            core.dispatch();
            self.cv.notify_all();
        }
    }

    /// Wakes the poller, if any, so it polls again with fresh interest (new
    /// data waiting to be written).
    pub(crate) fn nudge(&self, core: &Core) {
        if core.polling {
            let _ = self.wake.write(1);
        }
    }

    /// Ends the pool: closes every channel, lets the zygote reap its workers
    /// (SIGKILL after the grace period), and reaps the zygote. Idempotent.
    pub(crate) fn shutdown(&self) {
        let mut core = self.lock();
        debug_assert!(!core.polling, "shutdown needs exclusive use of the pool");
        for slot in &mut core.slots {
            slot.close();
        }
        let grace = core.config.shutdown_grace;
        let Some(ctl) = core.zygote_ctl.take() else {
            return;
        };
        let _ = sys::send_packet(
            ctl.as_fd(),
            &Ctl::Shutdown {
                grace_ms: grace.as_millis() as u32,
            }
            .encode(),
            None,
        );
        let pid = core.zygote_pid;
        drop(core);
        // The zygote leaves once its workers are reaped, within `grace`; past
        // that (it should never happen) it is killed, so this never hangs.
        let give_up = Instant::now() + grace + Duration::from_secs(2);
        loop {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) if Instant::now() < give_up => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Ok(WaitStatus::StillAlive) => {
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                    let _ = waitpid(pid, None);
                    break;
                }
                _ => break,
            }
        }
        sys::unregister_internal(ctl.as_raw_fd());
        drop(ctl);
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        sys::unregister_internal(self.wake.as_fd().as_raw_fd());
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
        } = batch;
        let tag = self.next_tag;
        self.next_tag += 1;
        frame[crate::channel::frame::PREFIX + 1..crate::channel::frame::PREFIX + 9]
            .copy_from_slice(&tag.to_le_bytes());
        if let Some(j) = self.jobs.get_mut(&job) {
            j.outstanding += 1;
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
            },
        );
        match pinned {
            Some(slot) => self.assign(tag, slot),
            None => self.queue.push_back(tag),
        }
        if let Some(why) = self.broken.clone() {
            self.fail_queued(&why);
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

    /// The caller no longer wants `job`'s outcomes: drop its queued batches;
    /// outcomes still in flight are discarded as they arrive.
    pub(crate) fn abandon(&mut self, job: JobId) {
        let Some(j) = self.jobs.get_mut(&job) else {
            return;
        };
        j.abandoned = true;
        j.completions.clear();
        let batches = &mut self.batches;
        let jobs = &mut self.jobs;
        self.queue.retain(|tag| {
            if batches[tag].job == job {
                batches.remove(tag);
                jobs.get_mut(&job).unwrap().outstanding -= 1;
                false
            } else {
                true
            }
        });
        if self.jobs[&job].outstanding == 0 {
            self.jobs.remove(&job);
        }
    }

    /// Slots whose worker is up and serving.
    pub(crate) fn ready_slots(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| matches!(self.slots[i].state, SlotState::Ready { .. }))
            .collect()
    }

    // ----- start and end of workers ------------------------------------------

    /// Asks the zygote for a worker in `slot`.
    pub(crate) fn spawn(&mut self, slot: usize) {
        let Some(ctl) = &self.zygote_ctl else { return };
        let s = &mut self.slots[slot];
        let generation = s.generation;
        match s.open_channel() {
            Ok(worker_end) => {
                let msg = Ctl::Spawn {
                    slot: slot as u32,
                    generation,
                };
                let sent = sys::send_packet(ctl.as_fd(), &msg.encode(), Some(worker_end.as_fd()));
                sys::unregister_internal(worker_end.as_raw_fd());
                drop(worker_end);
                if sent.is_ok() {
                    s.state = SlotState::Spawning {
                        ready: false,
                        closed: false,
                    };
                    return;
                }
                s.close();
                self.break_pool("the fork server is gone".into(), true);
            }
            Err(e) => {
                s.state = SlotState::Failed(format!("cannot create a channel: {e}"));
                self.check_all_failed();
            }
        }
    }

    /// Whether every slot reached `Ready`, or the first init failure.
    /// At build: `Ok` once every worker is ready, the first init failure
    /// (no retry at build), or `None` while workers are still starting.
    pub(crate) fn startup_status(&self) -> Option<Result<(), String>> {
        let mut all_ready = true;
        for s in &self.slots {
            if let Some(why) = &s.last_init_error {
                if !matches!(s.state, SlotState::Starting { .. }) {
                    return Some(Err(why.clone()));
                }
            }
            match &s.state {
                SlotState::Failed(why) => return Some(Err(why.clone())),
                SlotState::Ready { .. } => {}
                _ => all_ready = false,
            }
        }
        if all_ready {
            Some(Ok(()))
        } else {
            self.broken.clone().map(Err)
        }
    }

    /// Sends an `Exit` to every live worker; returns the slots asked.
    pub(crate) fn begin_exit(&mut self, hook: Option<u32>) -> Vec<usize> {
        let mut asked = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            if let SlotState::Ready { pid } = s.state {
                let mut frame = Vec::new();
                message::write::exit(&mut frame, hook);
                s.push_frame(Arc::new(frame));
                s.state = SlotState::Exiting { pid };
                asked.push(i);
            }
        }
        self.flush_writes();
        asked
    }

    /// The exit outcome of `slot`: `None` while it is still coming.
    pub(crate) fn exit_outcome(&mut self, slot: usize) -> Option<Result<Vec<u8>, Error>> {
        let s = &mut self.slots[slot];
        if let Some(body) = s.exit_result.take() {
            return Some(Ok(body));
        }
        match &s.state {
            SlotState::Exiting { .. } | SlotState::Dead { .. } => None,
            SlotState::Gone { how } => Some(Err(Error::new(ErrorKind::WorkerDied(format!(
                "in its exit hook: {how}"
            ))))),
            _ => Some(Err(Error::new(ErrorKind::WorkerDied(
                "before its exit hook ran".into(),
            )))),
        }
    }

    // ----- events --------------------------------------------------------------

    fn fill_pollfds(&self, fds: &mut Vec<libc::pollfd>, wake: i32) {
        fds.clear();
        fds.push(libc::pollfd {
            fd: wake,
            events: libc::POLLIN,
            revents: 0,
        });
        let ctl = self.zygote_ctl.as_ref().map_or(-1, |c| c.as_raw_fd());
        fds.push(libc::pollfd {
            fd: ctl,
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

    fn poll_timeout_ms(&self) -> i32 {
        // Bounded, so a lost wake-up or a missing exit report costs at most this.
        if self
            .slots
            .iter()
            .any(|s| matches!(s.state, SlotState::Dead { code: None, .. }))
        {
            100
        } else {
            1000
        }
    }

    fn handle_events(&mut self, fds: &[libc::pollfd], wake: &EventFd) {
        if fds[0].revents != 0 {
            let _ = wake.read();
        }
        if fds[1].revents != 0 {
            self.handle_ctl();
        }
        for (i, p) in fds[2..].iter().enumerate() {
            if p.fd < 0 || p.revents == 0 || i >= self.slots.len() {
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

    fn handle_ctl(&mut self) {
        let mut buf = [0u8; 64];
        loop {
            let Some(ctl) = &self.zygote_ctl else { return };
            let got = nix::sys::socket::recv(ctl.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT);
            match got {
                Ok(0) => {
                    self.break_pool("the fork server died".into(), true);
                    return;
                }
                Ok(n) => match Ctl::decode(&buf[..n]) {
                    Some(Ctl::Spawned { slot, pid }) => {
                        self.spawned(slot as usize, Pid::from_raw(pid))
                    }
                    Some(Ctl::SpawnFailed { slot, errno }) => {
                        if let Some(s) = self.slots.get_mut(slot as usize) {
                            s.close();
                            s.state = SlotState::Failed(format!(
                                "fork failed: {}",
                                nix::errno::Errno::from_raw(errno).desc()
                            ));
                        }
                        self.check_all_failed();
                    }
                    Some(Ctl::Exited { pid, code }) => self.worker_exited(Pid::from_raw(pid), code),
                    _ => {}
                },
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => {
                    self.break_pool("the fork server's channel failed".into(), true);
                    return;
                }
            }
        }
    }

    fn spawned(&mut self, i: usize, pid: Pid) {
        let Some(s) = self.slots.get_mut(i) else {
            return;
        };
        let SlotState::Spawning { ready, closed } = s.state else {
            return;
        };
        s.state = match (ready, closed) {
            (_, true) => SlotState::Dead {
                pid,
                code: None,
                since: Instant::now(),
                during_init: !ready,
                exiting: false,
            },
            (true, false) => SlotState::Ready { pid },
            (false, false) => SlotState::Starting { pid },
        };
        if ready {
            s.init_failures = 0;
        }
        self.settle(i);
    }

    fn worker_exited(&mut self, pid: Pid, code: i32) {
        let Some(i) = self.slots.iter().position(|s| s.pid() == Some(pid)) else {
            return;
        };
        // The process is gone, so everything it wrote is in the socket: read
        // it all (its last outcomes, an init error) before looking further.
        if self.slots[i].chan.is_some() {
            self.read_slot(i);
        }
        // No end of stream seen means some other process holds a stray copy
        // of the worker's end; the report is what counts.
        if self.slots[i].chan.is_some() {
            self.channel_closed(i);
        }
        if let SlotState::Dead {
            code: known @ None, ..
        } = &mut self.slots[i].state
        {
            *known = Some(code);
        }
        self.settle(i);
    }

    fn read_slot(&mut self, i: usize) {
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
                if let Err(why) = self.handle_frame(i, frame) {
                    self.protocol_failure(i, why);
                    return;
                }
            }
            match fill {
                Ok(Fill::Data) => continue,
                Ok(Fill::WouldBlock) => return,
                Ok(Fill::Eof) | Err(_) => {
                    self.channel_closed(i);
                    return;
                }
            }
        }
    }

    fn handle_frame(&mut self, i: usize, frame: Vec<u8>) -> Result<(), &'static str> {
        let msg = Message::parse(&frame).map_err(|e| e.0)?;
        match msg {
            Message::Ready => {
                let s = &mut self.slots[i];
                match s.state {
                    SlotState::Starting { pid } => {
                        s.state = SlotState::Ready { pid };
                        s.init_failures = 0;
                    }
                    SlotState::Spawning { ref mut ready, .. } => *ready = true,
                    _ => return Err("ready twice"),
                }
            }
            Message::InitFailed { message } => {
                // The worker leaves next; `settle` counts the failure.
                self.slots[i].last_init_error = Some(message.to_string());
            }
            Message::Done {
                tag,
                first,
                count,
                nanos,
                body,
            } => {
                let body_at = frame.len() - body.len();
                self.batch_done(i, tag, (first, count, nanos), frame, body_at)?;
            }
            Message::Exited { body } => {
                self.slots[i].exit_result = Some(body.to_vec());
            }
            Message::Run { .. } | Message::Exit { .. } => {
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
        if let Some(j) = self.jobs.get_mut(&job) {
            if !j.abandoned && count > 0 {
                j.completions.push_back(Completion::Items {
                    first: job_first,
                    count,
                    nanos,
                    frame,
                    body,
                });
            }
        }
        if finished {
            self.batches.remove(&tag);
            let s = &mut self.slots[slot];
            s.inflight.retain(|t| *t != tag);
            self.batch_gone(job);
        }
        Ok(())
    }

    /// A batch of `job` ended (done, failed or replaced).
    fn batch_gone(&mut self, job: JobId) {
        if let Some(j) = self.jobs.get_mut(&job) {
            j.outstanding -= 1;
            if j.abandoned && j.outstanding == 0 {
                self.jobs.remove(&job);
            }
        }
    }

    fn protocol_failure(&mut self, i: usize, why: &str) {
        // A worker that speaks nonsense is killed and replaced like a crashed one.
        if let Some(pid) = self.slots[i].pid() {
            self.kill(pid);
        }
        self.slots[i].protocol_error = Some(why.to_string());
        self.channel_closed(i);
    }

    fn kill(&self, pid: Pid) {
        if let Some(ctl) = &self.zygote_ctl {
            let msg = Ctl::Kill {
                pid: pid.as_raw(),
                signal: nix::sys::signal::Signal::SIGKILL as i32,
            };
            let _ = sys::send_packet(ctl.as_fd(), &msg.encode(), None);
        }
    }

    fn channel_closed(&mut self, i: usize) {
        let s = &mut self.slots[i];
        s.close();
        match s.state {
            // Its pid is still on the way: `spawned` takes it from here.
            SlotState::Spawning { ref mut closed, .. } => *closed = true,
            SlotState::Starting { pid } => {
                s.state = SlotState::Dead {
                    pid,
                    code: None,
                    since: Instant::now(),
                    during_init: true,
                    exiting: false,
                }
            }
            SlotState::Ready { pid } => {
                s.state = SlotState::Dead {
                    pid,
                    code: None,
                    since: Instant::now(),
                    during_init: false,
                    exiting: false,
                }
            }
            SlotState::Exiting { pid } => {
                s.state = SlotState::Dead {
                    pid,
                    code: None,
                    since: Instant::now(),
                    during_init: false,
                    exiting: true,
                }
            }
            SlotState::Dead { .. }
            | SlotState::Gone { .. }
            | SlotState::Failed(_)
            | SlotState::Empty => {}
        }
        self.settle(i);
    }

    /// A dead worker whose exit status is known (or long overdue): give its
    /// work a new home, and start its replacement.
    fn settle(&mut self, i: usize) {
        let SlotState::Dead {
            pid,
            code,
            since,
            during_init,
            exiting,
        } = self.slots[i].state
        else {
            return;
        };
        if code.is_none() && since.elapsed() < EXIT_REPORT_WAIT {
            return;
        }
        let how = match (&self.slots[i].protocol_error, code) {
            (Some(why), _) => format!("protocol error ({why})"),
            (None, Some(code)) => describe_exit(code),
            (None, None) => "exit status unknown".to_string(),
        };
        if exiting {
            self.slots[i].state = SlotState::Gone { how };
            return;
        }
        let slot = &mut self.slots[i];
        slot.state = SlotState::Empty;
        slot.protocol_error = None;
        let inflight: Vec<u64> = slot.inflight.drain(..).collect();
        let cell = self.cells.get(i);
        let running_tag = cell.tag.load(std::sync::atomic::Ordering::Acquire);
        let running_item = cell.item.load(std::sync::atomic::Ordering::Acquire);
        cell.tag.store(0, std::sync::atomic::Ordering::Release);
        let mut requeue = Vec::new();
        for tag in inflight {
            let Some(b) = self.batches.remove(&tag) else {
                continue;
            };
            let job = b.job;
            if b.pinned.is_some() {
                for k in b.done..b.count {
                    self.fail_item(
                        job,
                        b.first + k as u64,
                        Error::new(ErrorKind::WorkerDied(how.clone())),
                    );
                }
            } else if tag == running_tag && running_item >= b.done && running_item < b.count {
                // That item was running when the worker died: it is the one
                // that gets the error. Items before it finished but their
                // outcomes were lost with the worker; they run again, as do
                // the items after it.
                self.fail_item(
                    job,
                    b.first + running_item as u64,
                    Error::new(ErrorKind::WorkerDied(format!("{how} (pid {pid})"))),
                );
                requeue.extend(b.clone_range(b.done, running_item));
                requeue.extend(b.clone_range(running_item + 1, b.count));
            } else {
                requeue.extend(b.clone_range(b.done, b.count));
            }
            self.batch_gone(job);
        }
        // Back to the front of the queue, in their original order.
        for piece in requeue.into_iter().rev() {
            self.resubmit_front(piece);
        }
        let slot = &mut self.slots[i];
        slot.generation += 1;
        if during_init {
            slot.init_failures += 1;
            if slot.last_init_error.is_none() {
                slot.last_init_error = Some(format!("worker died during init: {how}"));
            }
            if slot.init_failures >= self.config.respawn_limit.max(1) {
                slot.state = SlotState::Failed(slot.last_init_error.clone().unwrap_or(how));
                self.check_all_failed();
                return;
            }
        }
        if self.zygote_ctl.is_some() {
            self.spawn(i);
        }
    }

    fn resubmit_front(&mut self, batch: NewBatch) {
        if self.jobs.get(&batch.job).is_none_or(|j| j.abandoned) {
            return;
        }
        self.submit(batch, None);
        // `submit` queued it at the back; move it to the front.
        if let Some(tag) = self.queue.pop_back() {
            self.queue.push_front(tag);
        }
    }

    fn fail_item(&mut self, job: JobId, index: u64, error: Error) {
        if let Some(j) = self.jobs.get_mut(&job) {
            if !j.abandoned {
                j.completions.push_back(Completion::Failed { index, error });
            }
        }
    }

    /// If no slot can ever run anything again, the pool is broken.
    fn check_all_failed(&mut self) {
        if self
            .slots
            .iter()
            .all(|s| matches!(s.state, SlotState::Failed(_)))
        {
            let why = self.slots.iter().find_map(|s| match &s.state {
                SlotState::Failed(w) => Some(w.clone()),
                _ => None,
            });
            self.break_pool(
                format!("no worker could be started: {}", why.unwrap_or_default()),
                false,
            );
        }
    }

    fn break_pool(&mut self, why: String, zygote_gone: bool) {
        if self.broken.is_none() {
            self.broken = Some(why.clone());
        }
        if zygote_gone {
            if let Some(ctl) = self.zygote_ctl.take() {
                sys::unregister_internal(ctl.as_raw_fd());
            }
        }
        self.fail_queued(&why);
    }

    /// Fails every batch that waits for a worker.
    fn fail_queued(&mut self, why: &str) {
        let queued: Vec<u64> = self.queue.drain(..).collect();
        for tag in queued {
            if let Some(b) = self.batches.remove(&tag) {
                for k in b.done..b.count {
                    self.fail_item(
                        b.job,
                        b.first + k as u64,
                        Error::new(ErrorKind::PoolBroken(why.to_string())),
                    );
                }
                self.batch_gone(b.job);
            }
        }
    }

    /// Periodic work: settle dead workers whose exit report is overdue.
    fn tick(&mut self) {
        for i in 0..self.slots.len() {
            self.settle(i);
        }
    }

    // ----- sending -----------------------------------------------------------

    fn assign(&mut self, tag: u64, slot: usize) {
        let b = self.batches.get_mut(&tag).expect("batch exists");
        b.slot = Some(slot);
        let frame = b.frame.clone();
        let s = &mut self.slots[slot];
        s.inflight.push_back(tag);
        s.push_frame(frame);
        self.write_slot(slot);
    }

    /// Hands queued batches to the least busy ready workers.
    pub(crate) fn dispatch(&mut self) {
        while let Some(&tag) = self.queue.front() {
            let best = (0..self.slots.len())
                .filter(|&i| {
                    matches!(self.slots[i].state, SlotState::Ready { .. })
                        && self.slots[i].inflight.len() < DEPTH
                })
                .min_by_key(|&i| self.slots[i].inflight.len());
            let Some(slot) = best else { break };
            self.queue.pop_front();
            self.assign(tag, slot);
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
        while let Some((frame, off)) = s.out.front_mut() {
            match send(
                chan.as_raw_fd(),
                &frame[*off..],
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            ) {
                Ok(n) => {
                    *off += n;
                    if *off == frame.len() {
                        s.out.pop_front();
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                // Full: the poller waits for POLLOUT. Broken: it sees the hang-up.
                Err(_) => return,
            }
        }
    }
}

impl BatchRec {
    /// The items `from .. to` of this batch as a new batch.
    fn clone_range(&self, from: u32, to: u32) -> Option<NewBatch> {
        if from >= to {
            return None;
        }
        let start = self.offsets[from as usize] as usize;
        let end = self
            .offsets
            .get(to as usize)
            .map_or(self.frame.len(), |&o| o as usize);
        let mut frame = Vec::with_capacity(message::write::RUN_HEADER + end - start);
        let f = message::write::run(&mut frame, 0, self.task, to - from);
        let shift = frame.len();
        frame.extend_from_slice(&self.frame[start..end]);
        crate::channel::frame::finish(&mut frame, f, usize::MAX).ok()?;
        let offsets = self.offsets[from as usize..to as usize]
            .iter()
            .map(|&o| o - start as u32 + shift as u32)
            .collect();
        Some(NewBatch {
            job: self.job,
            task: self.task,
            first: self.first + from as u64,
            count: to - from,
            frame,
            offsets,
        })
    }
}
