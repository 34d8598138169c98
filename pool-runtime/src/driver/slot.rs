//! One worker slot as the driver sees it: the channel, what is queued to be
//! written, which batches the worker holds, and where it is in its life.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::unistd::Pid;

use crate::channel::control::Exit;
use crate::channel::frame::{Fill, FrameError, FrameReader, ReadSpare};
use crate::channel::ring::{Ring, RingError};
use crate::insights::SlotStats;
use crate::channel::ring::RingMap;
use crate::sys::{self, Internal};

/// Where a worker slot is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SlotState {
    /// Nothing yet.
    Empty,
    /// Asked the zygote for a worker; no pid yet. The worker's channel and
    /// the zygote's report race: the worker may say `Ready` (or die) before
    /// its pid arrives, so both are remembered here.
    Spawning { ready: bool, closed: bool },
    /// The worker runs its init.
    Starting { pid: Pid },
    /// The worker serves batches.
    Ready { pid: Pid },
    /// The worker was asked to run its exit hook and leave.
    Exiting { pid: Pid },
    /// The worker reached its task or memory limit, ran its exit hook and leaves.
    Recycling { pid: Pid },
    /// The worker's channel closed; its exit status may still be coming.
    Dead {
        pid: Pid,
        exit: Option<Exit>,
        since: Instant,
        during_init: bool,
        exiting: bool,
    },
    /// The worker `pid` left after (or while) running its exit hook: how it
    /// ended, if known, and in words.
    Gone {
        pid: Pid,
        exit: Option<Exit>,
        how: String,
    },
    /// No worker can be started in this slot: why.
    Failed(String),
}

#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) generation: u32,
    pub(crate) state: SlotState,
    pub(crate) chan: Option<Internal<OwnedFd>>,
    pub(crate) reader: FrameReader,
    /// Frames to write, and how much of the front one is written.
    pub(crate) out: VecDeque<(Arc<Vec<u8>>, usize)>,
    /// Tags of the batches the worker holds, oldest first.
    pub(crate) inflight: VecDeque<u64>,
    /// Since when the oldest of them has been the worker's to run.
    pub(crate) head_since: Instant,
    /// Tags of batches that must run in this slot (a broadcast), waiting
    /// for its worker to be ready: a worker that leaves takes no new one,
    /// and its replacement gets them.
    pub(crate) pinned: VecDeque<u64>,
    pub(crate) exit_result: Option<Vec<u8>>,
    /// Init attempts that failed in a row.
    pub(crate) init_failures: u32,
    /// A worker of this slot has been ready: its first init is behind it,
    /// and an init failing from now on is a respawn's, not the pool's.
    pub(crate) was_ready: bool,
    pub(crate) last_init_error: Option<String>,
    pub(crate) protocol_error: Option<String>,
    /// When the current worker was asked for.
    pub(crate) started_at: Instant,
    /// The current worker said `Started` (a worker started fresh is in
    /// worker mode).
    pub(crate) started: bool,
    /// The item seen running, and since when: `(batch tag, item, first seen)`.
    pub(crate) watch: Option<(u64, u32, Instant)>,
    /// The driver killed this worker for running past a timeout, after this long.
    pub(crate) timed_out: Option<std::time::Duration>,
    /// Start a worker here again at this time (back-off after init failures).
    pub(crate) respawn_at: Option<Instant>,
    /// The worker is leaving on its own (recycled).
    pub(crate) recycling: bool,
    /// Insights: what the slot's workers did.
    pub(crate) stats: SlotStats,
    /// The current worker's rings, if its transport gave it some.
    pub(crate) rings: Option<SlotRings>,
    max_frame: usize,
}

/// The driver's side of one worker generation's rings (`channel/ring.rs`).
#[derive(Debug)]
pub(crate) struct SlotRings {
    /// Shared with a thread that spins on it without the lock.
    pub(crate) map: Arc<RingMap>,
    /// Where the driver writes next in `to_worker`.
    head: u64,
    /// Where the driver reads next in `to_driver`.
    pub(crate) tail: u64,
    /// The last batch sent through the ring: its outcome comes back there.
    pub(crate) sent: Option<u64>,
    /// A `Run` went to this worker already (through the socket: the first
    /// always does, see `driver/README.md`, Rings).
    pub(crate) warm: bool,
}

impl SlotRings {
    pub(crate) fn new(map: RingMap) -> Self {
        SlotRings {
            map: Arc::new(map),
            head: 0,
            tail: 0,
            sent: None,
            warm: false,
        }
    }

    fn to_worker(&self) -> &Ring {
        &self.map.get().to_worker
    }

    pub(crate) fn to_driver(&self) -> &Ring {
        &self.map.get().to_driver
    }

    /// Wakes the worker if it said it sleeps.
    fn ring_worker(&self) {
        if self.to_worker().wants_bell() {
            sys::futex_wake(self.to_worker().bell());
        }
    }

    /// The driver wrote to the worker's socket, or closed it: a worker
    /// asleep on its ring looks there.
    fn socket_moved(&self) {
        self.to_worker().socket_moved();
        self.ring_worker();
    }
}

impl Slot {
    pub(crate) fn new(max_frame: usize) -> Self {
        Slot {
            generation: 0,
            state: SlotState::Empty,
            chan: None,
            reader: FrameReader::new(max_frame),
            out: VecDeque::new(),
            inflight: VecDeque::new(),
            head_since: Instant::now(),
            pinned: VecDeque::new(),
            exit_result: None,
            init_failures: 0,
            was_ready: false,
            last_init_error: None,
            protocol_error: None,
            started_at: Instant::now(),
            started: false,
            watch: None,
            timed_out: None,
            respawn_at: None,
            recycling: false,
            stats: SlotStats::default(),
            rings: None,
            max_frame,
        }
    }

    /// Creates a fresh channel; keeps the driver's end (non-blocking) and
    /// returns the worker's end, to be handed to the zygote. Both ends are
    /// internal (no fork server forked meanwhile keeps a copy) until they
    /// are dropped.
    pub(crate) fn open_channel(&mut self) -> nix::Result<Internal<OwnedFd>> {
        self.close();
        let (mine, theirs) = sys::stream_pair()?;
        let (mine, theirs) = (Internal::new(mine), Internal::new(theirs));
        let flags = OFlag::from_bits_truncate(fcntl(&*mine, FcntlArg::F_GETFL)?);
        fcntl(&*mine, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        self.chan = Some(mine);
        self.reader = FrameReader::new(self.max_frame);
        Ok(theirs)
    }

    /// Closes the driver's end of the channel, if open, and its rings
    /// (telling a worker asleep on them to look at the socket).
    pub(crate) fn close(&mut self) {
        self.chan = None;
        self.out.clear();
        if let Some(rings) = self.rings.take() {
            rings.socket_moved();
        }
    }

    /// Sends `frame` (batch `tag`) through the ring, if there is one with
    /// room; `spin`: how long the worker may spin for the next one. `Ok(false)`:
    /// it takes the socket.
    pub(crate) fn ring_send(&mut self, tag: u64, frame: &[u8], spin: std::time::Duration) -> Result<bool, RingError> {
        let Some(r) = &mut self.rings else {
            return Ok(false);
        };
        let map = &*r.map;
        let ring = &map.get().to_worker;
        ring.set_spin(spin);
        ring.set_writer_cpu(sys::current_cpu());
        if !ring.push(&mut r.head, frame)? {
            return Ok(false);
        }
        r.sent = Some(tag);
        r.ring_worker();
        Ok(true)
    }

    /// The driver wrote bytes to the worker's socket: a worker asleep on its
    /// ring looks there.
    pub(crate) fn socket_written(&self) {
        if let Some(r) = &self.rings {
            r.socket_moved();
        }
    }

    /// Takes the next frame the worker put in its ring, if any.
    pub(crate) fn ring_recv(&mut self, out: &mut Vec<u8>) -> Result<bool, RingError> {
        match &mut self.rings {
            Some(r) => {
                let map = &*r.map;
                map.get().to_driver.pop(&mut r.tail, self.max_frame, out)
            }
            None => Ok(false),
        }
    }

    /// Whether the worker put something in its ring.
    pub(crate) fn ring_ready(&self) -> bool {
        self.rings.as_ref().is_some_and(|r| r.to_driver().ready(r.tail))
    }

    /// Whether the outcome of the slot's only batch comes through the ring.
    pub(crate) fn awaits_ring(&self) -> bool {
        self.inflight.len() == 1
            && self.rings.as_ref().is_some_and(|r| r.sent.as_ref() == self.inflight.front())
    }

    /// Says to the worker that the driver is about to sleep (`true`: it
    /// then writes the doorbell after a frame), or is awake.
    pub(crate) fn driver_sleeps(&self, sleeps: bool) {
        if let Some(r) = &self.rings {
            if sleeps {
                r.to_driver().will_wait();
            } else {
                r.to_driver().awake();
            }
        }
    }

    pub(crate) fn pid(&self) -> Option<Pid> {
        match self.state {
            SlotState::Starting { pid }
            | SlotState::Ready { pid }
            | SlotState::Exiting { pid }
            | SlotState::Recycling { pid }
            | SlotState::Dead { pid, .. } => Some(pid),
            _ => None,
        }
    }

    /// The descriptor to poll and the events wanted (`-1`: none).
    pub(crate) fn poll_interest(&self) -> (i32, i16) {
        match &self.chan {
            Some(c) if self.out.is_empty() => (c.as_raw_fd(), libc::POLLIN),
            Some(c) => (c.as_raw_fd(), libc::POLLIN | libc::POLLOUT),
            None => (-1, 0),
        }
    }

    pub(crate) fn push_frame(&mut self, frame: Arc<Vec<u8>>) {
        self.out.push_back((frame, 0));
    }

    pub(crate) fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Reads what the channel has now.
    pub(crate) fn fill(&mut self) -> Result<Fill, FrameError> {
        let Some(chan) = &self.chan else {
            return Ok(Fill::Eof);
        };
        let mut src = NonBlocking(chan.as_raw_fd());
        let fill = self.reader.fill_spare(&mut src)?;
        if fill == Fill::Eof {
            self.reader.check_clean_eof()?;
        }
        Ok(fill)
    }
}

/// Reads from a non-blocking socket, into a buffer's spare capacity.
struct NonBlocking(i32);

impl ReadSpare for NonBlocking {
    fn read_spare(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        sys::recv_spare(self.0, buf, max).map_err(io::Error::from)
    }
}
