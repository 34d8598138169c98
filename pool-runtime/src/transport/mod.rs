//! The seam between jobs and workers.
//!
//! Above it, `driver/` owns what the caller asked for: jobs, batches, the
//! queue, order, outcomes, timeouts and the failure policy. It talks to each
//! worker over a frame channel (a stream socket per slot, `driver/slot.rs`)
//! and to the [`Transport`] for everything else about worker processes: how
//! one is started with its end of the channel, how the driver learns that
//! it started or ended, how it is killed, which item it is at, and how they
//! all end. A transport knows nothing of jobs.
//!
//! [`fork::ForkServer`] is the first transport: a fork server forked once at
//! `build` forks every worker, which reads its init arguments copy-on-write.

pub(crate) mod exec;
pub(crate) mod fork;
mod zygote;

use std::fmt;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::unistd::Pid;

use crate::channel::control::Exit;
use crate::channel::ring::RingMap;
use crate::sys::Phase;

/// What a transport reports about its workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// The worker asked for in `slot` runs as process `pid`.
    Started { slot: usize, pid: Pid },
    /// No worker could be started in `slot`: why.
    StartFailed { slot: usize, why: String },
    /// Worker `pid` ended, as `exit` says.
    Ended { pid: Pid, exit: Exit },
    /// The transport itself is gone: no worker starts or is reported again.
    Lost(String),
}

/// Where a worker is: the batch under way (its tag), and the item in it and
/// that item's phase once one has started.
pub(crate) type Position = Option<(u64, Option<(u32, Phase)>)>;

/// What the driver reads of a transport whose slots are relays
/// ([`Transport::relayed`]).
#[derive(Debug, Default)]
pub(crate) struct Relayed {
    /// Batches a slot may hold at once, of those no larger than
    /// [`Relayed::small_inputs`] and [`Relayed::small_bytes`] say.
    pub(crate) depth: AtomicUsize,
    /// Batches a slot may hold at once, of the others.
    pub(crate) base: AtomicUsize,
    /// The most inputs, and bytes, of a batch `depth` is for: it was sized
    /// for batches no larger, and one larger goes by `base` (the sizes
    /// `depth` was measured on lag behind a map whose batches grow).
    pub(crate) small_inputs: AtomicU64,
    pub(crate) small_bytes: AtomicU64,
    /// Workers the relays reach (what the chunker balances batches over).
    pub(crate) workers: AtomicUsize,
}

impl Relayed {
    /// Batches a slot may hold at once, for one of `inputs` in `bytes`.
    pub(crate) fn depth_for(&self, inputs: u32, bytes: usize) -> usize {
        let small = u64::from(inputs) <= self.small_inputs.load(Ordering::Relaxed)
            && bytes as u64 <= self.small_bytes.load(Ordering::Relaxed);
        let d = if small { &self.depth } else { &self.base };
        d.load(Ordering::Relaxed).max(1)
    }
}

/// How worker processes start, end and are watched; see the module docs.
pub(crate) trait Transport: Send + fmt::Debug {
    /// Starts a worker for `slot` (its `generation`-th), serving `channel`.
    /// A transport whose workers can share memory with the driver gives
    /// the worker a fresh pair of rings and `doorbell` (the descriptor the
    /// driver polls, to be written when the driver sleeps), and returns the
    /// driver's mapping of them. `Err` says why the transport can start no
    /// worker at all (it is then lost); a failure for this one worker comes
    /// later as [`Event::StartFailed`].
    fn start(
        &mut self,
        slot: usize,
        generation: u32,
        channel: &OwnedFd,
        doorbell: BorrowedFd<'_>,
    ) -> Result<Option<RingMap>, String>;

    /// The frame every new worker is sent before anything else, if any
    /// (a worker started fresh learns its init and arguments from it).
    fn greeting(&self) -> Option<&Arc<Vec<u8>>> {
        None
    }

    /// Words to add when a worker ended `exit` before it was ready, and
    /// without saying why: what that likely means for this transport.
    fn init_exit_hint(&self, exit: Exit) -> Option<&'static str> {
        let _ = exit;
        None
    }

    /// For a transport whose workers are not the driver's slots (Redis
    /// hosts'): has every worker leave, running exit hook `hook`, and
    /// returns each one's outcome. `None`: the driver asks each slot.
    fn leave_with(&mut self, hook: u32, grace: Duration) -> Option<Vec<Vec<u8>>> {
        let _ = (hook, grace);
        None
    }

    /// Outcomes dropped because their input had one already (a transport
    /// whose workers may run an input twice).
    fn duplicates(&self) -> u64 {
        0
    }

    /// For a transport whose slots are not one worker each but relays to
    /// many (a Redis pool's hosts): how many batches a slot may hold at
    /// once, and how many workers the relays reach, kept up to date as
    /// workers come and go. `None`: each slot is one worker, which holds
    /// two batches, none behind one running long.
    fn relayed(&self) -> Option<Arc<Relayed>> {
        None
    }

    /// Whether its slots' pids are processes of this machine. A Redis
    /// pool's slots are relays to hosts: insights show no pid for them.
    fn local_pids(&self) -> bool {
        true
    }

    /// For a transport whose workers are not the driver's slots: what
    /// runs a broadcast on every one of them. `None`: the driver pins one
    /// batch to each slot.
    fn broadcaster(&self) -> Option<Arc<dyn Broadcast>> {
        None
    }

    /// Kills worker `pid` now (a timeout, a protocol error); its end is
    /// reported as for any other death.
    fn kill(&self, pid: Pid);

    /// The descriptor that becomes readable when events wait, if any.
    fn events_fd(&self) -> Option<BorrowedFd<'_>>;

    /// Appends the events that have arrived, without blocking.
    fn read_events(&mut self, out: &mut Vec<Event>);

    /// Where the worker in `slot` is.
    fn position(&self, slot: usize) -> Position;

    /// Takes back batch `tag`, the last one sent to the worker in `slot`,
    /// if that worker has not started it: it then skips the batch, and the
    /// driver may give it to another. Whether it did; `false` where the
    /// transport cannot tell.
    fn take_back(&self, slot: usize, tag: u64) -> bool {
        let _ = (slot, tag);
        false
    }

    /// Whether a batch taken back from the worker in `slot` may still be
    /// unseen by it (its frame unread). A frame sent after it must then
    /// take the socket, behind it: the worker reads its ring first.
    fn take_back_unseen(&self, slot: usize) -> bool {
        let _ = slot;
        false
    }

    /// Once the worker in `slot` is gone: where it was, and a clean slate
    /// for the slot's next worker.
    fn take_position(&self, slot: usize) -> Position;

    /// Once the worker in `slot` is gone: why its sandbox stopped it, as
    /// the word `sandbox::Breach` encodes (0: it did not), cleared for the
    /// slot's next worker.
    fn take_breach(&self, slot: usize) -> u64 {
        let _ = slot;
        0
    }

    /// The transport is gone ([`Event::Lost`]).
    fn is_lost(&self) -> bool;

    /// Ends every worker (each is given `grace` to leave on its own, then
    /// killed) and waits for them. Called once, without the driver's lock.
    fn shutdown(&mut self, grace: Duration);
}

/// Runs one input on every worker of a transport's own (Redis hosts').
pub(crate) trait Broadcast: Send + Sync {
    /// Runs `payload` (a `Run` message of one input, without its length
    /// prefix) once on every live worker; each one's outcome item, in
    /// worker order. `Err`: why it could not be sent.
    fn broadcast(&self, payload: &[u8]) -> Result<Vec<Vec<u8>>, String>;
}

/// The transport of a pool that has shut down: it starts nothing.
#[derive(Debug)]
pub(crate) struct Ended;

impl Transport for Ended {
    fn start(&mut self, _: usize, _: u32, _: &OwnedFd, _: BorrowedFd<'_>) -> Result<Option<RingMap>, String> {
        Err("the pool has shut down".into())
    }
    fn kill(&self, _: Pid) {}
    fn events_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    fn read_events(&mut self, _: &mut Vec<Event>) {}
    fn position(&self, _: usize) -> Position {
        None
    }
    fn take_position(&self, _: usize) -> Position {
        None
    }
    fn is_lost(&self) -> bool {
        true
    }
    fn shutdown(&mut self, _: Duration) {}
}
