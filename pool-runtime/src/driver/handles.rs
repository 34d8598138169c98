//! What handles ask of the core beyond their own job's completions: cancel
//! a call no worker holds yet, outlive the borrow of the pool (owned
//! handles, which shutdown waits for), and be told, as a set, which of many
//! jobs has an outcome (`as_completed`), in O(1) per completion.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use super::{Completion, Core, JobId};
use crate::error::ErrorKind;

/// In `Core`, under the driver's lock.
#[derive(Debug, Default)]
pub(crate) struct Handles {
    /// Owned jobs, not abandoned, with batches still live: what `join` and
    /// drop wait for.
    pub(super) owned_running: usize,
    /// Each `as_completed` set: its jobs that got a completion, in order.
    sets: HashMap<u64, VecDeque<JobId>>,
    next_set: u64,
}

impl Core {
    /// Adds a completion to `job`, unless no one wants it, and tells its
    /// `as_completed` set, if any.
    pub(super) fn push_completion(&mut self, job: JobId, c: Completion) {
        let Some(j) = self.jobs.get_mut(&job) else {
            return;
        };
        if j.abandoned {
            return;
        }
        if j.completions.is_empty() {
            if let Some(set) = j.watch.and_then(|s| self.handles.sets.get_mut(&s)) {
                set.push_back(job);
            }
        }
        j.completions.push_back(c);
    }

    /// Cancels the one-batch `job` if its batch waits in the queue, or in a
    /// worker's socket unstarted: then it never runs, and its outcomes are
    /// dropped. Whether it did.
    pub(crate) fn try_cancel(&mut self, job: JobId) -> bool {
        let Some(j) = self.jobs.get(&job) else {
            return false;
        };
        let Some(b) = j.tag.and_then(|t| self.batches.get(&t)) else {
            return false;
        };
        if j.abandoned || j.outstanding != 1 || !j.completions.is_empty() || b.done > 0 {
            return false;
        }
        if b.job != job {
            return false;
        }
        // Held by a worker that has not started it: taken back, unrun.
        if let Some(i) = b.slot {
            if !self.take_back_job(i, job) {
                return false;
            }
        }
        // Queued (or pinned, waiting for its slot): dispatch drops an
        // abandoned job's batch when it reaches it.
        self.abandon(job);
        true
    }

    /// `job`'s handle no longer borrows the pool: shutdown waits for it.
    pub(crate) fn own(&mut self, job: JobId) {
        let Some(j) = self.jobs.get_mut(&job) else {
            return;
        };
        if !j.owned && !j.abandoned && j.outstanding > 0 {
            self.handles.owned_running += 1;
        }
        j.owned = true;
    }

    /// No owned handle waits for work still to run, and no callback is
    /// still to run; or nothing can run (shutdown then gives each its
    /// outcome). What `join` and drop wait for.
    pub(crate) fn handles_settled(&self) -> bool {
        #[cfg(feature = "async")]
        let callbacks = self.callbacks_done();
        #[cfg(not(feature = "async"))]
        let callbacks = true;
        (self.handles.owned_running == 0 && callbacks) || self.unusable().is_some()
    }

    /// `job`'s own task timeout, over the pool's.
    pub(crate) fn set_task_timeout(&mut self, job: JobId, timeout: Option<Duration>) {
        if let Some(j) = self.jobs.get_mut(&job) {
            j.task_timeout = timeout;
        }
    }

    /// The task timeout of the batch `tag`: its job's, or the pool's.
    pub(super) fn task_timeout_of(&self, tag: u64) -> Option<Duration> {
        let job = self.batches.get(&tag).map(|b| b.job);
        job.and_then(|job| self.jobs.get(&job))
            .and_then(|j| j.task_timeout)
            .or(self.config.task_timeout)
    }

    /// A new `as_completed` set, told of each completion of `jobs` from now
    /// on; the jobs that have completions already are in it at once.
    pub(crate) fn watch(&mut self, jobs: impl IntoIterator<Item = JobId>) -> u64 {
        let set = self.handles.next_set;
        self.handles.next_set += 1;
        let mut ready = VecDeque::new();
        for job in jobs {
            if let Some(j) = self.jobs.get_mut(&job) {
                j.watch = Some(set);
                if !j.completions.is_empty() {
                    ready.push_back(job);
                }
            }
        }
        self.handles.sets.insert(set, ready);
        set
    }

    /// The next job of `set` that got a completion, if any.
    pub(crate) fn next_ready(&mut self, set: u64) -> Option<JobId> {
        self.handles.sets.get_mut(&set)?.pop_front()
    }

    /// Whether some job of `set` got a completion.
    pub(crate) fn has_ready(&self, set: u64) -> bool {
        self.handles.sets.get(&set).is_some_and(|s| !s.is_empty())
    }

    /// The set is dropped: no one is told any more.
    pub(crate) fn unwatch(&mut self, set: u64) {
        self.handles.sets.remove(&set);
    }

    /// At shutdown: every batch still queued or held fails, so that every
    /// handle still alive gets an outcome; nothing runs any more.
    pub(super) fn close_jobs(&mut self) {
        let why = "the pool was shut down before this call got its outcome";
        self.broken.get_or_insert_with(|| why.to_string());
        for i in 0..self.slots.len() {
            let held: Vec<u64> = self.slots[i].inflight.drain(..).collect();
            for tag in held {
                self.fail_batch_as(tag, || ErrorKind::PoolBroken(why.into()));
            }
        }
        self.fail_queued(why);
    }
}
