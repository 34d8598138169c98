//! What a host's threads for one pool share: whether it leaves, and
//! whether its lease is surely alive. A consumer runs nothing it took
//! before the lease lapsed: by then another host may have taken it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a session's threads share.
pub(super) struct Live {
    /// The pool is gone or ending, or this host leaves: take no more.
    pub(super) leaving: AtomicBool,
    /// Until when (µs after `born`) this host's lease is surely alive: a
    /// quarter lease short of the lease from when the last heartbeat that
    /// renewed it was sent (Redis counts from when it ran it, later).
    leased_until: AtomicU64,
    /// How many heartbeats found the lease had lapsed: what a consumer
    /// held before one of them may be another host's now.
    pub(super) lapses: AtomicU64,
    born: Instant,
}

impl Live {
    pub(super) fn new() -> Live {
        Live {
            leaving: AtomicBool::new(false),
            leased_until: AtomicU64::new(0),
            lapses: AtomicU64::new(0),
            born: Instant::now(),
        }
    }

    /// A heartbeat sent at `sent` renewed a lease of `lease`; it had
    /// lapsed before, if `lapsed`.
    pub(super) fn renewed(&self, sent: Instant, lease: Duration, lapsed: bool) {
        if lapsed {
            self.lapses.fetch_add(1, Ordering::AcqRel);
        }
        let until = (sent + lease - lease / 4).saturating_duration_since(self.born);
        self.leased_until.fetch_max(until.as_micros() as u64, Ordering::AcqRel);
    }

    fn leased(&self) -> bool {
        (self.born.elapsed().as_micros() as u64) < self.leased_until.load(Ordering::Acquire)
    }

    /// Whether what a consumer took when `lapses` was `seen` is still its
    /// own to run: waits while the lease may have lapsed, until a
    /// heartbeat says whether it had. `false` also when the host leaves.
    pub(super) fn still_own(&self, seen: u64) -> bool {
        loop {
            if self.lapses.load(Ordering::Acquire) != seen || self.leaving.load(Ordering::Acquire) {
                return false;
            }
            if self.leased() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

