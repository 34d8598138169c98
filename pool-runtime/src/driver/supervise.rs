//! Supervision: starting workers, noticing how they end, giving the work of
//! a dead one a new home (retry, or an error that names the cause), killing
//! a task past its timeout, recycling, and respawning with back-off.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::policy::{self, Death, Held, Rules};
use super::slot::{SlotRings, SlotState};
use super::{Completion, Core, JobId, NewBatch, EXIT_REPORT_WAIT};
use crate::channel::message;
use crate::error::{Error, ErrorKind, WorkerDeath};
use crate::sandbox::Breach;
use crate::channel::control::Exit;

/// A worker started fresh says `Started` within this long, or it is taken
/// for a program that never enters worker mode (its `main` runs instead).
const START_DEADLINE: Duration = Duration::from_secs(2);

/// Wait before the `n`-th respawn in a row of a slot whose init keeps failing.
fn backoff(n: u32) -> Duration {
    Duration::from_millis(100u64 << n.min(6)).min(Duration::from_secs(5))
}

impl Core {
    /// Asks the transport for a worker in `slot`.
    pub(crate) fn spawn(&mut self, slot: usize) {
        if self.transport.is_lost() || self.terminated || self.init_failed.is_some() {
            return;
        }
        let s = &mut self.slots[slot];
        let generation = s.generation;
        s.respawn_at = None;
        if generation > 0 {
            s.stats.restarted();
        }
        match (s.open_channel(), &self.doorbell) {
            (Ok(worker_end), Some(doorbell)) => {
                let started = self.transport.start(slot, generation, &worker_end, doorbell.as_fd());
                // The transport's worker holds its own copy now.
                drop(worker_end);
                let s = &mut self.slots[slot];
                if let Err(why) = started {
                    s.close();
                    self.break_pool(why);
                } else {
                    s.rings = started.ok().flatten().map(SlotRings::new);
                    s.state = SlotState::Spawning {
                        ready: false,
                        closed: false,
                    };
                    s.started_at = Instant::now();
                    s.started = false;
                    if let Some(greeting) = self.transport.greeting() {
                        s.push_frame(greeting.clone());
                        self.write_slot(slot);
                    }
                }
            }
            (Err(e), _) => self.slot_failed(slot, format!("cannot create a channel: {e}")),
            (Ok(_), None) => self.slot_failed(slot, "cannot copy the wake-up descriptor".into()),
        }
    }

    /// At build: `Ok` once a worker is ready (`all`: every one), the
    /// first init failure (no retry at build), or `None` while workers are
    /// still starting. A failure seen first wins over a worker ready.
    pub(crate) fn startup_status(&self, all: bool) -> Option<Result<(), String>> {
        let mut ready = 0;
        for s in &self.slots {
            if let Some(why) = &s.last_init_error {
                if !matches!(s.state, SlotState::Starting { .. }) {
                    return Some(Err(why.clone()));
                }
            }
            match &s.state {
                SlotState::Failed(why) => return Some(Err(why.clone())),
                SlotState::Ready { .. } => ready += 1,
                _ => {}
            }
        }
        if ready == self.slots.len() || (!all && ready > 0) {
            Some(Ok(()))
        } else {
            self.broken.clone().map(Err)
        }
    }

    /// Every slot's first worker has been ready, or the pool can run
    /// nothing more: what `build` used to wait for, and what `join`,
    /// `broadcast` and `insights` wait for now.
    pub(crate) fn startup_settled(&self) -> bool {
        self.broken.is_some()
            || self.terminated
            || self.slots.iter().all(|s| s.was_ready)
    }

    /// The error of the first init that failed after `build` returned.
    pub(crate) fn init_failure(&self) -> Option<Error> {
        let why = self.init_failed.as_ref()?;
        Some(Error::new(ErrorKind::Init(why.clone())))
    }

    /// No slot is between two workers (recycling, respawning): each is ready
    /// or will never run again.
    pub(crate) fn all_settled(&self) -> bool {
        self.broken.is_some()
            || self
                .slots
                .iter()
                .all(|s| matches!(s.state, SlotState::Ready { .. } | SlotState::Failed(_)))
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

    /// `slot`'s worker still runs its exit hook past `limit`: it is killed,
    /// and its outcome says so.
    pub(crate) fn exit_overdue(&mut self, slot: usize, limit: Duration) {
        let s = &mut self.slots[slot];
        if let SlotState::Exiting { pid } = s.state {
            if s.exit_result.is_none() && s.timed_out.is_none() {
                s.timed_out = Some(limit);
                self.kill(pid);
            }
        }
    }

    /// The exit outcome of `slot`: `None` while it is still coming.
    pub(crate) fn exit_outcome(&mut self, slot: usize) -> Option<Result<Vec<u8>, Error>> {
        let s = &mut self.slots[slot];
        if let Some(body) = s.exit_result.take() {
            return Some(Ok(body));
        }
        match &s.state {
            SlotState::Exiting { .. } | SlotState::Dead { .. } => None,
            SlotState::Gone { .. } if s.timed_out.is_some() => {
                let limit = s.timed_out.unwrap_or_default();
                Some(Err(Error::new(ErrorKind::TimedOut(format!(
                    "the exit hook of worker {slot} ran past its {limit:?} limit; the worker was killed"
                )))))
            }
            SlotState::Gone { pid, exit, how } => Some(Err(Error::new(ErrorKind::WorkerDied(
                WorkerDeath::new(Some(pid.as_raw() as u32), exit.map(Into::into), format!("in its exit hook: {how}")),
            )))),
            _ => Some(Err(Error::new(ErrorKind::WorkerDied(WorkerDeath::new(
                s.pid().map(|p| p.as_raw() as u32),
                None,
                "before its exit hook ran".into(),
            ))))),
        }
    }

    /// Exit-hook outcomes of workers recycled so far: `(slot, generation, hook, outcome)`.
    pub(crate) fn take_recycled(&mut self) -> Vec<(usize, u32, Vec<u8>)> {
        std::mem::take(&mut self.recycled)
    }

    // ----- what the transport and the channels say -----------------------------

    /// Asks for a worker in every slot held back at build.
    pub(crate) fn release_held_back(&mut self) {
        self.release_at = None;
        while self.asked < self.slots.len() {
            self.asked += 1;
            self.spawn(self.asked - 1);
        }
    }

    pub(super) fn spawned(&mut self, i: usize, pid: Pid) {
        if i == 0 && self.asked < self.slots.len() && self.release_at.is_none() {
            // The first worker's init may take as long as its fork took
            // before the others are forked anyway.
            let fork = self.slots[0].started_at.elapsed();
            self.release_at = Some(Instant::now() + fork);
        }
        let Some(s) = self.slots.get_mut(i) else {
            return;
        };
        let SlotState::Spawning { ready, closed } = s.state else {
            return;
        };
        s.state = match (ready, closed) {
            (_, true) => SlotState::Dead {
                pid,
                exit: None,
                since: Instant::now(),
                during_init: !ready,
                exiting: false,
            },
            (true, false) => SlotState::Ready { pid },
            (false, false) => SlotState::Starting { pid },
        };
        if ready {
            s.init_failures = 0;
            s.was_ready = true;
        }
        // Asked for before `terminate`, started after it.
        if self.terminated {
            self.kill(pid);
        }
        self.settle(i);
    }

    pub(super) fn worker_exited(&mut self, pid: Pid, exit: Exit) {
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
            exit: known @ None, ..
        } = &mut self.slots[i].state
        {
            *known = Some(exit);
        }
        self.settle(i);
    }

    /// A worker that speaks nonsense is killed and replaced like a crashed one.
    pub(super) fn protocol_failure(&mut self, i: usize, why: &str) {
        if let Some(pid) = self.slots[i].pid() {
            self.kill(pid);
        }
        self.slots[i].protocol_error = Some(why.to_string());
        self.channel_closed(i);
    }

    fn kill(&self, pid: Pid) {
        self.transport.kill(pid);
    }

    pub(super) fn channel_closed(&mut self, i: usize) {
        let s = &mut self.slots[i];
        s.close();
        let dead = |pid, during_init, exiting| SlotState::Dead {
            pid,
            exit: None,
            since: Instant::now(),
            during_init,
            exiting,
        };
        match s.state {
            // Its pid is still on the way: `spawned` takes it from here.
            SlotState::Spawning { ref mut closed, .. } => *closed = true,
            SlotState::Starting { pid } => s.state = dead(pid, true, false),
            SlotState::Ready { pid } | SlotState::Recycling { pid } => {
                s.state = dead(pid, false, false)
            }
            SlotState::Exiting { pid } => s.state = dead(pid, false, true),
            SlotState::Dead { .. }
            | SlotState::Gone { .. }
            | SlotState::Failed(_)
            | SlotState::Empty => {}
        }
        self.settle(i);
    }

    /// A dead worker whose exit status is known (or long overdue): give its
    /// work a new home, and start its replacement.
    pub(super) fn settle(&mut self, i: usize) {
        let SlotState::Dead {
            pid,
            exit,
            since,
            during_init,
            exiting,
        } = self.slots[i].state
        else {
            return;
        };
        if exit.is_none() && since.elapsed() < EXIT_REPORT_WAIT {
            return;
        }
        let mut how = match (&self.slots[i].protocol_error, exit) {
            (Some(why), _) => format!("protocol error ({why})"),
            (None, Some(exit)) => exit.to_string(),
            (None, None) => "exit status unknown".to_string(),
        };
        // A sandboxed worker's handler wrote why the sandbox stopped it.
        if let Some(breach) = Breach::decode(self.transport.take_breach(i)) {
            how = format!("{how}: {breach}");
        }
        self.slots[i].stats.ended();
        if exiting {
            self.slots[i].state = SlotState::Gone { pid, exit, how };
            return;
        }
        let respawn = tracing::info_span!(
            "respawn",
            slot = i,
            old_pid = pid.as_raw(),
            why = %how,
            generation = self.slots[i].generation + 1
        );
        let _respawn = respawn.enter();
        let (timed_out, recycled) = self.clear_slot(i);
        let death = Death {
            how: &how,
            exit,
            pid: pid.as_raw(),
            timed_out,
            recycled,
        };
        self.rehome_work(i, &death);
        self.replace_worker(i, during_init, &death);
    }

    /// Slot `i`'s dead worker is forgotten: the slot is empty, and keeps
    /// a recycled worker's exit-hook outcome. Returns whether the driver
    /// timed it out (after how long), and whether it was recycled.
    fn clear_slot(&mut self, i: usize) -> (Option<Duration>, bool) {
        let slot = &mut self.slots[i];
        slot.state = SlotState::Empty;
        slot.protocol_error = None;
        slot.watch = None;
        let timed_out = slot.timed_out.take();
        let recycled = std::mem::take(&mut slot.recycling);
        if let Some(outcome) = slot.exit_result.take() {
            if recycled {
                self.recycled.push((i, slot.generation, outcome));
            }
        }
        (timed_out, recycled)
    }

    /// Carries out the policy's verdict on every batch the dead worker of
    /// slot `i` held: the item to blame fails, the rest goes back to the
    /// front of the queue (a broadcast's, to the front of its slot's), in
    /// their original order.
    fn rehome_work(&mut self, i: usize, death: &Death<'_>) {
        let inflight: Vec<u64> = self.slots[i].inflight.drain(..).collect();
        let at = self.transport.take_position(i);
        let mut requeue = Vec::new();
        for (k, tag) in inflight.into_iter().enumerate() {
            // The call's own timeout, if it has one, is the one it ran past.
            let rules = Rules {
                retries: self.config.retries,
                task_timeout: self.task_timeout_of(tag),
            };
            let Some(b) = self.batches.remove(&tag) else {
                continue;
            };
            let held = Held {
                done: b.done,
                count: b.count,
                attempts: b.attempts,
                strays: b.strays,
                oldest: k == 0,
            };
            // The item the worker was at, if it was in this batch.
            let at = at.and_then(|(t, step)| step.filter(|_| t == tag));
            let verdict = policy::on_death(held, at, death, &rules);
            if let Some((item, kind)) = verdict.fail {
                self.fail_item(b.job, b.first + item as u64, Error::new(kind));
            }
            for again in verdict.again {
                let piece = b.clone_range(again.items.start, again.items.end);
                requeue.extend(piece.map(|mut piece| {
                    piece.attempts = again.attempts;
                    piece.strays = again.strays;
                    (piece, b.pinned)
                }));
            }
            self.batch_gone(b.job);
        }
        requeue.sort_by_key(|(b, _)| std::cmp::Reverse(b.first));
        for (piece, pinned) in requeue {
            self.resubmit_front(piece, pinned);
        }
    }

    /// Starts the next worker of slot `i`: now, or after a back-off if the
    /// dead one never finished its init; never, once init failed
    /// `respawn_limit` times in a row (the slot fails).
    fn replace_worker(&mut self, i: usize, during_init: bool, death: &Death<'_>) {
        let slot = &mut self.slots[i];
        slot.generation += 1;
        if !during_init {
            if !self.transport.is_lost() {
                tracing::info!("worker ended; respawning");
                self.spawn(i);
            }
            return;
        }
        slot.init_failures += 1;
        if slot.last_init_error.is_none() {
            let hint = death
                .exit
                .and_then(|e| self.transport.init_exit_hint(e))
                .unwrap_or_default();
            slot.last_init_error = Some(match death.timed_out {
                Some(t) => format!("init timed out after {t:.1?}"),
                None => format!("worker died during init: {}{hint}", death.how),
            });
        }
        // A first init failing once `build` has returned: as `build` would
        // have failed, the pool does.
        if self.built && !slot.was_ready {
            let why = slot
                .last_init_error
                .clone()
                .unwrap_or_else(|| death.how.to_string());
            self.startup_failed(why);
            return;
        }
        if slot.init_failures >= self.config.respawn_limit.max(1) {
            let why = slot
                .last_init_error
                .clone()
                .unwrap_or_else(|| death.how.to_string());
            self.slot_failed(i, why);
            return;
        }
        // The database went away, say: wait before trying again.
        let wait = backoff(slot.init_failures - 1);
        slot.respawn_at = Some(Instant::now() + wait);
        tracing::warn!(
            ?wait,
            "worker died during init; respawning after a back-off"
        );
    }

    /// Queues a piece of a dead worker's batch first in line: first in the
    /// queue, or first for its slot if it is pinned there.
    fn resubmit_front(&mut self, batch: NewBatch, pinned: Option<usize>) {
        if self.jobs.get(&batch.job).is_none_or(|j| j.abandoned) {
            return;
        }
        self.submit(batch, pinned);
        // `submit` queued it at the back; move it to the front.
        let queue = match pinned {
            Some(slot) => &mut self.slots[slot].pinned,
            None => &mut self.queue,
        };
        if let Some(tag) = queue.pop_back() {
            queue.push_front(tag);
        }
    }

    /// Slot `i` can never start a worker again: why.
    pub(super) fn slot_failed(&mut self, i: usize, why: String) {
        self.slots[i].close();
        if self.built && !self.slots[i].was_ready {
            // Its first worker never came: the pool's start failed.
            self.slots[i].state = SlotState::Failed(why.clone());
            return self.startup_failed(why);
        }
        self.fail_pinned(i, &why);
        self.slots[i].state = SlotState::Failed(why);
        self.check_all_failed();
    }

    /// A slot's first worker could not be started or failed its init
    /// after `build` had returned with another worker ready: the pool
    /// breaks, as `build` would have failed had it waited. Like
    /// [`terminate`](Self::terminate), with the init's error: every worker
    /// is killed, every input without its outcome yet fails with
    /// `ErrorKind::Init(why)`, and so does every later call; no worker is
    /// started again.
    fn startup_failed(&mut self, why: String) {
        if self.terminated || self.init_failed.is_some() || self.broken.is_some() {
            return;
        }
        tracing::warn!(error = %why, "a worker's first init failed after build; the pool breaks");
        self.init_failed = Some(why.clone());
        self.broken = Some(why.clone());
        for i in 0..self.slots.len() {
            let held: Vec<u64> = self.slots[i].inflight.drain(..).collect();
            for tag in held {
                self.fail_batch_as(tag, || ErrorKind::Init(why.clone()));
            }
            if let Some(pid) = self.slots[i].pid() {
                self.kill(pid);
            }
            self.slots[i].respawn_at = None;
        }
        self.fail_queued(&why);
    }

    /// Fails the batches pinned to slot `i` that wait for its worker.
    pub(super) fn fail_pinned(&mut self, i: usize, why: &str) {
        let pinned: Vec<u64> = self.slots[i].pinned.drain(..).collect();
        for tag in pinned {
            self.fail_batch(tag, why);
        }
    }

    pub(super) fn fail_item(&mut self, job: JobId, index: u64, error: Error) {
        self.push_completion(job, Completion::Failed { index, error });
    }

    /// If no slot can ever run anything again, the pool is broken.
    pub(super) fn check_all_failed(&mut self) {
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
            );
        }
    }

    /// The lock was poisoned (see `Driver::lock`): nothing more runs.
    pub(super) fn poisoned(&mut self) {
        let why = "a thread panicked while it held the pool's state; the pool runs nothing more";
        self.break_pool(why.into());
    }

    pub(super) fn break_pool(&mut self, why: String) {
        if self.broken.is_none() {
            self.broken = Some(why.clone());
        }
        self.fail_queued(&why);
    }

    /// Fails every batch that waits for a worker.
    pub(super) fn fail_queued(&mut self, why: &str) {
        let queued: Vec<u64> = self.queue.drain(..).collect();
        for tag in queued {
            self.fail_batch(tag, why);
        }
        for i in 0..self.slots.len() {
            self.fail_pinned(i, why);
        }
    }

    /// Fails every item left of a batch no worker holds: the pool cannot run it.
    fn fail_batch(&mut self, tag: u64, why: &str) {
        if self.terminated {
            return self.fail_batch_as(tag, || ErrorKind::Terminated);
        }
        if let Some(init) = self.init_failed.clone() {
            return self.fail_batch_as(tag, || ErrorKind::Init(init.clone()));
        }
        self.fail_batch_as(tag, || ErrorKind::PoolBroken(why.to_string()));
    }

    /// Fails every item left of batch `tag` with `kind`.
    pub(super) fn fail_batch_as(&mut self, tag: u64, kind: impl Fn() -> ErrorKind) {
        if let Some(b) = self.batches.remove(&tag) {
            for k in b.done..b.count {
                self.fail_item(b.job, b.first + k as u64, Error::new(kind()));
            }
            self.batch_gone(b.job);
        }
    }

    /// `Pool::terminate`: every input without its outcome yet fails with
    /// `Terminated`, every worker is killed now and none is started again;
    /// later calls fail the same way. What the killed workers still send is
    /// dropped (their batches are gone).
    pub(crate) fn terminate(&mut self) {
        if self.terminated {
            return;
        }
        self.terminated = true;
        let why = "the pool was terminated";
        self.broken.get_or_insert_with(|| why.to_string());
        for i in 0..self.slots.len() {
            let held: Vec<u64> = self.slots[i].inflight.drain(..).collect();
            for tag in held {
                self.fail_batch_as(tag, || ErrorKind::Terminated);
            }
            if let Some(pid) = self.slots[i].pid() {
                self.kill(pid);
            }
            self.slots[i].respawn_at = None;
        }
        self.fail_queued(why);
    }

    // ----- the clock -------------------------------------------------------------

    /// Periodic work, after every poll: ask for the slots held back at
    /// build once their time has come, settle dead workers whose exit report
    /// is overdue, kill tasks and inits past their timeout, start respawns
    /// whose back-off is over.
    pub(super) fn tick(&mut self) {
        let now = Instant::now();
        if self.release_at.is_some_and(|t| t <= now) {
            self.release_held_back();
        }
        for i in 0..self.slots.len() {
            self.settle(i);
            let s = &mut self.slots[i];
            match s.state {
                SlotState::Empty if s.respawn_at.is_some_and(|t| t <= now) => self.spawn(i),
                SlotState::Ready { pid } => {
                    let Some((tag, at)) = self.transport.position(i) else {
                        s.watch = None;
                        continue;
                    };
                    let Some(limit) = self.task_timeout_of(tag) else {
                        continue;
                    };
                    let s = &mut self.slots[i];
                    // The same item in another phase is still the same item.
                    let item = at.map_or(u32::MAX, |(item, _)| item);
                    if s.inflight.is_empty() {
                        s.watch = None;
                        continue;
                    }
                    // The driver cannot see when an item started, only that
                    // the same one is still running since it first looked.
                    match s.watch {
                        Some((t, it, since)) if t == tag && it == item => {
                            if since.elapsed() >= limit && s.timed_out.is_none() {
                                s.timed_out = Some(since.elapsed());
                                self.kill(pid);
                            }
                        }
                        _ => s.watch = Some((tag, item, now)),
                    }
                }
                SlotState::Starting { pid }
                    if !s.started
                        && s.last_init_error.is_none()
                        && self.transport.greeting().is_some()
                        && s.started_at.elapsed() >= START_DEADLINE =>
                {
                    s.last_init_error = Some(format!(
                        "the worker program did not enter worker mode within {START_DEADLINE:?}: \
                         call `pool_runtime::worker_mode()` first in its `main`"
                    ));
                    self.kill(pid);
                }
                SlotState::Starting { pid } => {
                    let Some(limit) = self.config.init_timeout else {
                        continue;
                    };
                    let ran = s.started_at.elapsed();
                    if ran >= limit && s.timed_out.is_none() {
                        s.timed_out = Some(ran);
                        self.kill(pid);
                    }
                }
                _ => {}
            }
        }
    }

    /// How long the poller may sleep: until the next deadline, and never
    /// more than a second, so a lost wake-up costs at most that.
    pub(super) fn poll_timeout_ms(&self) -> i32 {
        let now = Instant::now();
        let mut wait = Duration::from_secs(1);
        if let Some(t) = self.release_at {
            wait = wait.min(t.saturating_duration_since(now));
        }
        for s in &self.slots {
            match s.state {
                SlotState::Dead { exit: None, .. } => wait = wait.min(Duration::from_millis(100)),
                SlotState::Empty => {
                    if let Some(t) = s.respawn_at {
                        wait = wait.min(t.saturating_duration_since(now));
                    }
                }
                SlotState::Ready { .. } if !s.inflight.is_empty() => {
                    let limit = s.inflight.iter().filter_map(|&t| self.task_timeout_of(t)).min();
                    if let Some(limit) = limit {
                        wait = wait.min(
                            (limit / 10)
                                .clamp(Duration::from_millis(5), Duration::from_millis(250)),
                        );
                    }
                }
                SlotState::Starting { .. } | SlotState::Spawning { .. } => {
                    if !s.started && self.transport.greeting().is_some() {
                        wait = wait.min(Duration::from_millis(100));
                    }
                    if let Some(limit) = self.config.init_timeout {
                        wait = wait.min(
                            (limit / 10)
                                .clamp(Duration::from_millis(5), Duration::from_millis(250)),
                        );
                    }
                }
                _ => {}
            }
        }
        wait.as_millis().max(1) as i32
    }
}
