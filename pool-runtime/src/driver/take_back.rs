//! Taking back a batch a worker holds but has not started: an idle worker
//! runs what waits behind another's long task, and a cancelled call that
//! waits in a worker's socket never runs.
//!
//! A `Run` frame written to a worker's socket cannot be unsent, so the
//! worker claims each batch in its step cell before it starts it
//! (`StepCell::claim`), and the driver takes one back by marking the cell
//! first (`StepCell::take_back`): one compare-and-swap decides which side
//! won. Only a slot's last batch is ever taken back, so a claim of it is
//! the last claim the cell has seen. The worker skips a frame it finds
//! taken back; the driver gives the batch a new tag, so the skipped frame
//! and the new one never match.

use std::sync::Arc;

use super::slot::SlotState;
use super::{Core, JobId};
use crate::channel::message;

impl Core {
    /// Takes back the last batch slot `i`'s worker holds, if it has not
    /// started it (and, unless `pinned_too`, it is not pinned there); its
    /// tag, now in no slot.
    fn take_back_last(&mut self, i: usize, pinned_too: bool) -> Option<u64> {
        let &tag = self.slots[i].inflight.back()?;
        let b = self.batches.get(&tag)?;
        if (b.pinned.is_some() && !pinned_too) || b.done > 0 || !self.transport.take_back(i, tag)
        {
            return None;
        }
        // Its frame is still written, if it is not yet: the worker's skip
        // of it clears the cell for the next take-back.
        self.slots[i].inflight.pop_back();
        Some(tag)
    }

    /// After dispatch: a worker with nothing to do while the queue is empty
    /// takes the batch waiting behind another worker's running one (that
    /// one may run for long: head-of-line blocking).
    pub(super) fn lend_to_idle(&mut self) {
        if !self.queue.is_empty() {
            return;
        }
        let idle = |s: &super::Slot| {
            matches!(s.state, SlotState::Ready { .. }) && s.inflight.is_empty() && s.pinned.is_empty()
        };
        for thief in 0..self.slots.len() {
            if !idle(&self.slots[thief]) {
                continue;
            }
            for victim in 0..self.slots.len() {
                if self.slots[victim].inflight.len() < 2 {
                    continue;
                }
                if let Some(old) = self.take_back_last(victim, false) {
                    // No one wants it any more (its take-back at `abandon`
                    // had to wait): dropped, unrun.
                    if self.drop_if_abandoned(old) {
                        continue;
                    }
                    let tag = self.retag(old);
                    self.assign(tag, thief);
                    break;
                }
            }
        }
    }

    /// Batch `old`, taken back, under a fresh tag (the skipped frame keeps
    /// the old one); returns it.
    fn retag(&mut self, old: u64) -> u64 {
        let mut b = self.batches.remove(&old).expect("batch exists");
        let tag = self.next_tag;
        self.next_tag += 1;
        let mut frame = Vec::clone(&b.frame);
        message::write::patch_run_tag(&mut frame, 0, tag);
        b.frame = Arc::new(frame);
        b.slot = None;
        if let Some(j) = self.jobs.get_mut(&b.job) {
            if j.tag == Some(old) {
                j.tag = Some(tag);
            }
        }
        self.batches.insert(tag, b);
        tag
    }

    /// `job` was abandoned: its batches that workers hold but have not
    /// started are taken back and dropped, unrun. O(workers).
    pub(super) fn reclaim_unstarted(&mut self, job: JobId) {
        for i in 0..self.slots.len() {
            self.take_back_job(i, job);
        }
    }

    /// Takes back and drops slot `i`'s last batch if it is `job`'s and
    /// unstarted; whether it did.
    pub(super) fn take_back_job(&mut self, i: usize, job: JobId) -> bool {
        let Some(&tag) = self.slots[i].inflight.back() else {
            return false;
        };
        if self.batches.get(&tag).is_none_or(|b| b.job != job) {
            return false;
        }
        // Pinned or not: it is dropped, not moved.
        let Some(tag) = self.take_back_last(i, true) else {
            return false;
        };
        self.batches.remove(&tag);
        self.batch_gone(job);
        true
    }
}
