//! A worker's life: init once, say ready (or why not), serve batches until
//! the channel closes or an exit is asked for, then `_exit` (by the caller).

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use crate::channel::frame;
use crate::channel::message::{self, write, Message};
use crate::channel::outcome::{self, Status};
use crate::channel::ring::RingMap;
use crate::batch::stages::Link;
use crate::batch::{Batch, Report};
use crate::insights::WorkerTally;
use crate::registry;
use crate::sys::{self, StepCell, StepCells};
use crate::task::{Init, WorkerInfo};
use crate::unwind;

/// When a worker leaves on its own, to be replaced by a fresh one, and the
/// exit hook it runs as it does (its outcome is kept for `join_with`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Recycle {
    pub(crate) max_tasks: Option<u64>,
    pub(crate) max_rss: Option<u64>,
    pub(crate) exit_hook: Option<u32>,
}

impl Recycle {
    /// Whether a worker that has served `served` items must leave now.
    fn due(&self, served: u64) -> bool {
        self.max_tasks.is_some_and(|n| served >= n)
            || self
                .max_rss
                .is_some_and(|max| rss_bytes().is_some_and(|rss| rss > max))
    }
}

/// This process's resident set size, from `VmRSS` in `/proc/self/status`.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Exit codes a worker uses to tell the driver what went wrong on its side.
pub(crate) mod code {
    /// The channel broke or carried a malformed frame.
    pub(crate) const PROTOCOL: i32 = 3;
}

/// Where a new worker stands, from the zygote.
pub(crate) struct Start<'a> {
    pub(crate) info: WorkerInfo,
    /// The worker's end of its channel.
    pub(crate) chan: OwnedFd,
    /// Its rings' memfd and the driver's doorbell, if it has rings.
    pub(crate) rings: Option<(OwnedFd, OwnedFd)>,
    /// The step cells shared with the driver; the worker's is `info.index`.
    pub(crate) cells: &'a StepCells,
    pub(crate) zygote: Pid,
    pub(crate) max_frame: usize,
    pub(crate) recycle: &'a Recycle,
    /// Applied after init, before `Ready`.
    pub(crate) sandbox: Option<&'a crate::sandbox::Sandbox>,
}

/// The worker's main, in a fork of the fork server: its init and arguments
/// are in memory. Returns its exit code.
pub(crate) fn main<A, S: 'static, I, M>(init: &I, args: &A, start: Start<'_>) -> i32
where
    I: Init<A, S, M>,
{
    live(start, |info, _| match unwind::catch(|| init.init(args, info)) {
        Ok(Ok(state)) => Ok(Box::new(state)),
        Ok(Err(message)) => Err(message),
        Err(panic) => Err(format!("init panicked: {panic}")),
    })
}

/// Says `why` on a worker's channel as an init failure, and closes it.
pub(crate) fn tell_init_failed(chan: OwnedFd, why: &str) {
    let _ = fail_init(&mut UnixStream::from(chan), why);
}

/// A worker's life once started: its state from `init` (or why not),
/// `Ready`, then batches until it leaves. Returns its exit code.
pub(crate) fn live(
    start: Start<'_>,
    init: impl FnOnce(WorkerInfo, &mut UnixStream) -> Result<Box<dyn std::any::Any>, String>,
) -> i32 {
    let Start {
        info,
        chan,
        rings,
        cells,
        zygote,
        max_frame,
        recycle,
        sandbox,
    } = start;
    let cell = cells.get(info.index);
    sys::die_with_parent(zygote);
    // A task's panic is that task's error: the hook installed at build
    // records where it happened, and prints nothing (the driver reports it).
    unwind::record_panics_here();
    let mut stream = UnixStream::from(chan);
    let mut out = Vec::with_capacity(4096);
    let rings = match rings.map(|(memfd, doorbell)| WorkerRings::new(memfd, doorbell)) {
        Some(Err(e)) => return fail_init(&mut stream, &format!("cannot map the rings: {e}")),
        rings => rings.and_then(Result::ok),
    };

    let pid = std::process::id();
    let init_span = tracing::info_span!(
        "init",
        pid,
        worker = info.index,
        generation = info.generation
    )
    .entered();
    let state = match init(info, &mut stream) {
        Ok(state) => state,
        Err(message) => return fail_init(&mut stream, &message),
    };
    // Between init (which may open what the sandbox forbids) and the
    // first task; it lives until the worker's last step.
    let _sandboxed = match sandbox.map(|s| crate::sandbox::enter(s, cell.breach())) {
        Some(Err(why)) => return fail_init(&mut stream, &why),
        entered => entered,
    };
    tracing::info!("worker ready");
    drop(init_span);
    write::ready(&mut out);
    if stream.write_all(&out).is_err() {
        return code::PROTOCOL;
    }
    let server = Server {
        stream,
        rings,
        out,
        cell,
        max_frame,
        recycle,
        served: 0,
        tally: WorkerTally::default(),
        long: false,
        pid,
    };
    server.serve(state)
}

/// A ready worker: what serving batches needs from one to the next.
struct Server<'a> {
    stream: UnixStream,
    rings: Option<WorkerRings>,
    out: Vec<u8>,
    cell: &'a StepCell,
    max_frame: usize,
    recycle: &'a Recycle,
    /// Items run so far, for the task limit.
    served: u64,
    tally: WorkerTally,
    /// Whether results have been long lately (`Batch::guessing_long`).
    long: bool,
    pid: u32,
}

impl Server<'_> {
    /// Serves frames until the channel closes, an `Exit` comes or the
    /// worker's limits say it leaves; returns its exit code.
    fn serve(mut self, mut state: Box<dyn std::any::Any>) -> i32 {
        let mut input = Vec::new();
        // One read brings in a small frame whole (prefix and body), or several.
        let Ok(reader_end) = self.stream.try_clone() else {
            return code::PROTOCOL;
        };
        let mut reader = std::io::BufReader::with_capacity(64 * 1024, ReadWhenReady(reader_end));
        // A frame read from the socket, not yet handled; the last from the ring.
        let (mut held, mut from_ring) = (false, Vec::new());
        loop {
            let via_ring = match self.rings.as_mut() {
                None => match frame::read_blocking(&mut reader, &mut input, self.max_frame) {
                    Ok(true) => false,
                    Ok(false) => return 0, // the driver closed the channel: leave, no exit hook
                    Err(_) => return code::PROTOCOL,
                },
                Some(rings) => match rings.next(&mut reader, (&mut input, &mut held), &mut from_ring, self.max_frame) {
                    Ok(Some(via_ring)) => via_ring,
                    Ok(None) => return 0,
                    Err(()) => return code::PROTOCOL,
                },
            };
            let payload = if via_ring { &from_ring[frame::PREFIX..] } else { &input[..] };
            let hook = match Message::parse(payload) {
                Ok(Message::Run {
                    tag,
                    task,
                    count,
                    body,
                }) => {
                    // Taken back while it waited here: another worker runs it.
                    if !self.cell.claim(tag) {
                        continue;
                    }
                    if let Err(code) = self.run(&mut *state, tag, (task, count, body), via_ring) {
                        return code;
                    }
                    if !self.recycle.due(self.served) {
                        continue;
                    }
                    self.recycle.exit_hook
                }
                Ok(Message::Exit { hook }) => hook,
                _ => return code::PROTOCOL,
            };
            return leave(&mut self.stream, &mut self.out, state, hook, self.max_frame);
        }
    }

    /// Runs batch `tag` (`count` inputs of `task` in `body`) and sends its
    /// outcomes back (through the ring if the batch came `via_ring` and they
    /// fit in one frame); `Err`: the worker must leave, with this exit code.
    fn run(
        &mut self,
        state: &mut dyn std::any::Any,
        tag: u64,
        (task, count, body): (u32, u32, &[u8]),
        via_ring: bool,
    ) -> Result<(), i32> {
        let job = Job::find(task, body).ok_or(code::PROTOCOL)?;
        // Disabled (no subscriber, or above DEBUG), this is a relaxed load
        // and a branch per batch.
        let pid = self.pid;
        let _batch_span = tracing::debug_span!("batch", task = job.entry.name, count, pid).entered();
        self.out.clear();
        let start = write::done(&mut self.out, tag, 0, 0);
        self.cell.begin(tag);
        let mut flusher = Flusher {
            stream: &mut self.stream,
            tag,
            flushed: 0,
            start,
            last: Instant::now(),
            max_frame: self.max_frame,
            broken: false,
            tally: &mut self.tally,
        };
        // The worker's task limit: the items from there on are not started.
        let stop_at = self.recycle.max_tasks.map_or(u32::MAX, |n| {
            n.saturating_sub(self.served).min(u32::MAX as u64) as u32
        });
        let mut batch = Batch::new(job.inputs, count, &mut self.out, &mut flusher)
            .marking(self.cell)
            .stopping_at(stop_at)
            .guessing_long(self.long);
        let ok = match &job.chain {
            None => (job.entry.run)(state, &mut batch).is_ok(),
            Some(links) => batch.run_stages(links, state).is_ok(),
        };
        let (ran, long) = (batch.ran(), batch.long_guess());
        self.long = long;
        if !ok || flusher.broken {
            return Err(code::PROTOCOL);
        }
        let (flushed, nanos) = (flusher.flushed, flusher.last.elapsed().as_nanos() as u64);
        // Nothing runs now: if the worker leaves, no item is to blame, and
        // the driver runs the ones not started elsewhere.
        self.cell.end();
        self.served += ran as u64;
        // Back through the ring only if all of it goes there: one `Done`.
        let ring = self.rings.as_mut().filter(|_| via_ring && flushed == 0);
        let sent = send_done(
            (&mut self.stream, ring),
            &mut self.out,
            (tag, start),
            (flushed, ran - flushed, nanos),
            self.max_frame,
            &mut self.tally,
        );
        sent.then_some(()).ok_or(code::PROTOCOL)
    }
}

/// The worker's end of its channel, for reading: waits in `poll` for input
/// before each read. A `recv` blocked on a stream socket is also woken each
/// time the driver reads what this worker wrote (the socket's write-space
/// wake-up, which `recv` does not filter out); on one core that cost a pair of
/// context switches per round trip, measured. `poll` for input only is not
/// woken by it.
struct ReadWhenReady(UnixStream);

impl std::io::Read for ReadWhenReady {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::fd::AsRawFd;
        let mut fds = [libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        loop {
            match sys::poll_raw(&mut fds, -1) {
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.0.read(buf)
    }
}

/// A worker spins for its next frame as long as its driver allows (a
/// local pool's 50 µs, a Redis host's 1 ms: `Config::idle_spin`); past
/// this much it yields the CPU at each turn, so that a long spin keeps the
/// CPU awake (no wake-up of an idle vCPU for the next frame) without
/// holding back a thread that has work. When the driver last ran on the
/// worker's CPU it yields from the first turn: the driver can only write
/// the next frame once it runs there (`driver/README.md`).
const YIELD_AFTER: Duration = Duration::from_micros(50);

/// A worker asleep on its ring looks at its socket at least this often,
/// should a wake-up have been lost.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// The worker's side of its rings (`channel/ring.rs`): `Run` frames in,
/// `Done` frames out; the socket is still read for the rest.
struct WorkerRings {
    map: RingMap,
    /// The driver's wake-up descriptor: written after a frame if the
    /// driver said it sleeps.
    doorbell: OwnedFd,
    /// Where the worker reads next in `to_worker`.
    tail: u64,
    /// Where the worker writes next in `to_driver`.
    head: u64,
    /// The driver's socket moves seen so far.
    moves: u64,
    /// The socket must be looked at (a sleep ran out).
    look: bool,
    /// No frame came yet: the first `Run` takes the socket, and the worker
    /// sleeps on its socket until then (a socket's wake-up may move the
    /// worker to the CPU its driver leaves; a futex's leaves it where it
    /// ran its init, which at `build` is the CPU the fork server is busy
    /// forking the next worker on: a 1.5–3 ms wait, measured).
    cold: bool,
}

impl WorkerRings {
    fn new(memfd: OwnedFd, doorbell: OwnedFd) -> nix::Result<Self> {
        Ok(WorkerRings {
            map: RingMap::map_received(memfd)?,
            doorbell,
            tail: 0,
            head: 0,
            moves: 0,
            look: true,
            cold: true,
        })
    }

    /// The next frame: from the ring (into `from_ring`, prefix included:
    /// `Some(true)`) or the socket (into `socket.0`, prefix not included:
    /// `Some(false)`), `None` once the driver closed the socket. The ring
    /// first: a frame there is older than any the worker has not read from
    /// the socket (the driver sends one through the ring only then), so a
    /// socket frame read is held (`socket.1`) while the ring has any.
    fn next(
        &mut self,
        reader: &mut std::io::BufReader<ReadWhenReady>,
        (input, held): (&mut Vec<u8>, &mut bool),
        from_ring: &mut Vec<u8>,
        max_frame: usize,
    ) -> Result<Option<bool>, ()> {
        let mut spun = false;
        loop {
            let ring = &self.map.get().to_worker;
            if ring.pop(&mut self.tail, max_frame, from_ring).map_err(drop)? {
                self.map.get().to_driver.set_writer_cpu(sys::current_cpu());
                self.cold = false;
                return Ok(Some(true));
            }
            if std::mem::take(held) {
                self.cold = false;
                return Ok(Some(false));
            }
            let moves = ring.socket_moves();
            if !reader.buffer().is_empty() || std::mem::take(&mut self.look) || moves != self.moves {
                self.moves = moves;
                if !reader.buffer().is_empty() || readable(reader.get_ref()) {
                    match frame::read_blocking(reader, input, max_frame) {
                        // One frame read (perhaps from the buffer alone) may
                        // leave bytes of a move already counted in the
                        // socket: it is looked at again before any sleep.
                        Ok(true) => (*held, self.look) = (true, true),
                        Ok(false) => return Ok(None),
                        Err(_) => return Err(()),
                    }
                    continue;
                }
            }
            if self.cold {
                // The ring is looked at again at least every `LOOK_EVERY`.
                wait_readable(reader.get_ref(), LOOK_EVERY);
                self.look = true;
                continue;
            }
            let budget = ring.spin();
            if !spun && !budget.is_zero() {
                spun = true;
                let same = ring.writer_cpu() == sys::current_cpu();
                let start = Instant::now();
                while !ring.ready(self.tail) && ring.socket_moves() == self.moves {
                    let spent = start.elapsed();
                    if spent >= budget {
                        break;
                    }
                    if same || spent >= YIELD_AFTER {
                        std::thread::yield_now();
                    }
                    std::hint::spin_loop();
                }
                continue;
            }
            let bell = ring.will_wait();
            if !ring.ready(self.tail) && ring.socket_moves() == self.moves {
                self.look = sys::futex_wait(ring.bell_word(), bell, LOOK_EVERY);
            }
            ring.awake();
        }
    }

    /// Sends the finished frame `out` through the ring, waking the driver
    /// if it sleeps; `Ok(false)`: no room, it takes the socket.
    fn send(&mut self, out: &[u8]) -> Result<bool, ()> {
        let ring = &self.map.get().to_driver;
        if !ring.push(&mut self.head, out).map_err(drop)? {
            return Ok(false);
        }
        if ring.wants_bell() {
            let _ = nix::unistd::write(&self.doorbell, &1u64.to_ne_bytes());
        }
        Ok(true)
    }
}

/// Whether the socket has something to read now, or its end.
fn readable(chan: &ReadWhenReady) -> bool {
    wait_readable(chan, Duration::ZERO)
}

/// Waits up to `limit` for the socket to have something to read, or its
/// end; whether it has.
fn wait_readable(chan: &ReadWhenReady, limit: Duration) -> bool {
    use std::os::fd::AsRawFd;
    let mut fds = [libc::pollfd {
        fd: chan.0.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    let ms = limit.as_millis().min(i32::MAX as u128) as i32;
    // An error is seen as readable: the read then says what is wrong.
    !matches!(sys::poll_raw(&mut fds, ms), Ok(0))
}

/// What a `Run` asks for: one task, or a chain of them (a pipeline).
struct Job<'a> {
    entry: &'static registry::TaskEntry,
    chain: Option<Vec<Link>>,
    inputs: &'a [u8],
}

impl<'a> Job<'a> {
    /// `None` if a task index is unknown or the chain is malformed.
    fn find(task: u32, body: &'a [u8]) -> Option<Self> {
        if task != message::CHAIN {
            let entry = registry::task_at(task)?;
            return Some(Job {
                entry,
                chain: None,
                inputs: body,
            });
        }
        let (stages, inputs) = message::parse_chain(body).ok()?;
        let first_task = stages.first()?.0;
        let links = stages
            .into_iter()
            .map(|(task, via_ok)| {
                let entry = registry::task_at(task)?;
                Some(Link {
                    name: entry.name,
                    glue: &entry.stage,
                    via_ok,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Job {
            entry: registry::task_at(first_task)?,
            chain: Some(links),
            inputs,
        })
    }
}

/// Runs the exit hook (if any) on the state, sends its outcome, and returns
/// the exit code.
fn leave(
    stream: &mut UnixStream,
    out: &mut Vec<u8>,
    state: Box<dyn std::any::Any>,
    hook: Option<u32>,
    max_frame: usize,
) -> i32 {
    out.clear();
    let start = write::exited(out);
    if let Some(entry) = hook.and_then(registry::exit_at) {
        if (entry.run)(state, out).is_err() {
            return code::PROTOCOL;
        }
    }
    if frame::finish(out, start, max_frame).is_err() || stream.write_all(out).is_err() {
        return code::PROTOCOL;
    }
    0
}

fn fail_init(stream: &mut UnixStream, message: &str) -> i32 {
    tracing::warn!(error = message, "init failed");
    let mut out = Vec::new();
    write::init_failed(&mut out, message);
    let _ = stream.write_all(&out);
    0
}

/// Finishes the `Done` frame of batch `tag` begun at `start` in `out`, for
/// items `first .. first + count`, computed in `nanos`, with what `tally`
/// measured since the last one, and sends it. A frame over the limit
/// (results too large) is replaced by one error per item.
fn send_done(
    (stream, ring): (&mut UnixStream, Option<&mut WorkerRings>),
    out: &mut Vec<u8>,
    (tag, start): (u64, usize),
    (first, count, nanos): (u32, u32, u64),
    max_frame: usize,
    tally: &mut WorkerTally,
) -> bool {
    write::patch_done(out, start, first, count, nanos);
    let t = &*tally;
    write::finish_tally(out, start, t.codec_nanos, t.io_nanos, &t.pending);
    if frame::finish(out, start, max_frame).is_err() {
        out.clear();
        let start = write::done(out, tag, 0, 0);
        write::patch_done(out, start, first, count, nanos);
        let msg = format!("the results of this batch exceed the frame limit of {max_frame} bytes");
        for _ in 0..count {
            outcome::write_message(out, Status::Codec, &msg, &mut false);
        }
        write::finish_tally(out, start, t.codec_nanos, t.io_nanos, &t.pending);
        if frame::finish(out, start, max_frame).is_err() {
            return false;
        }
    }
    tally.reported();
    let writing = Instant::now();
    let sent = match ring.map(|r| r.send(out)) {
        Some(Ok(true)) => true,
        Some(Err(())) => false,
        Some(Ok(false)) | None => stream.write_all(out).is_ok(),
    };
    tally.io_nanos += writing.elapsed().as_nanos() as u64;
    sent
}

/// Streams finished results back every so often, so a long batch shows
/// progress and loses little if the worker dies.
struct Flusher<'a> {
    stream: &'a mut UnixStream,
    tag: u64,
    /// Items already sent back.
    flushed: u32,
    /// Where the `Done` frame starts in `out`.
    start: usize,
    last: Instant,
    max_frame: usize,
    broken: bool,
    /// Insights: what goes back with the next `Done`.
    tally: &'a mut WorkerTally,
}

impl Report for Flusher<'_> {
    fn chunk_done(&mut self, next: u32, out: &mut Vec<u8>) {
        const EVERY: Duration = Duration::from_millis(20);
        // Large results go back as they end (one a frame, when they are
        // each `BIG_CHUNK` or more): a result that ends its frame becomes
        // the caller's value without a copy.
        let big = out.len() - self.start >= crate::batch::BIG_CHUNK;
        if next > self.flushed && (big || self.last.elapsed() >= EVERY) {
            let span = (
                self.flushed,
                next - self.flushed,
                self.last.elapsed().as_nanos() as u64,
            );
            if !send_done(
                (self.stream, None),
                out,
                (self.tag, self.start),
                span,
                self.max_frame,
                self.tally,
            ) {
                self.broken = true;
            }
            out.clear();
            self.start = write::done(out, self.tag, next, 0);
            self.flushed = next;
            self.last = Instant::now();
        }
    }

    fn chunk_ran(&mut self, first: u32, count: u32, call_nanos: u64, codec_nanos: u64, each: bool) {
        self.tally.codec_nanos += codec_nanos;
        if !each && count > 0 {
            self.tally.offer(first, count, call_nanos);
        }
    }

    fn item_ran(&mut self, index: u32, nanos: u64) {
        self.tally.offer(index, 1, nanos);
    }
}

/// Whether this program can serve the greeting in `body`: the driver's
/// code is its own, and it has the init asked for. `Err` says why not.
pub(crate) fn check_hello(body: &[u8]) -> Result<(crate::channel::hello::Hello<'_>, &'static registry::InitEntry), String> {
    use crate::channel::hello::{self, Hello};
    let hello = Hello::decode(body).map_err(|e| format!("a malformed greeting: {e}"))?;
    let ours = registry::fingerprint();
    let version = (hello.version.as_str(), env!("CARGO_PKG_VERSION"));
    if let Some(diff) = hello::difference(version, &hello.code, &ours) {
        return Err(format!(
            "the worker program was built from different code than the driver: {diff}"
        ));
    }
    let init = registry::init_by_name(&hello.init)
        .ok_or_else(|| format!("no `#[worker_init]` named `{}` here", hello.init))?;
    Ok((hello, init))
}

/// In a worker started fresh (or a Redis host's): the state the greeting
/// in `body` asks for, or why not.
pub(crate) fn state_from_hello(body: &[u8], info: WorkerInfo) -> Result<Box<dyn std::any::Any>, String> {
    let (hello, init) = check_hello(body)?;
    (init.fresh)(hello.args, info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn a_socket_frame_counted_while_an_earlier_one_waited_in_the_buffer_is_read_without_a_sleep() {
        // The driver's side: its rings, and its end of the socket.
        let map = RingMap::new().unwrap();
        let memfd = map.fd().try_clone_to_owned().unwrap();
        let doorbell = nix::sys::eventfd::EventFd::new().unwrap();
        let mut rings = WorkerRings::new(memfd, doorbell.into()).unwrap();
        let (mut driver, worker) = UnixStream::pair().unwrap();
        let mut reader = std::io::BufReader::with_capacity(64 * 1024, ReadWhenReady(worker));
        let ring = &map.get().to_worker;
        let send = |driver: &mut UnixStream, payload: &[u8]| {
            driver.write_all(&framed(payload)).unwrap();
            ring.socket_moved();
        };
        let (mut input, mut held, mut from_ring) = (Vec::new(), false, Vec::new());
        let mut next = |reader: &mut std::io::BufReader<ReadWhenReady>| {
            let got = rings.next(reader, (&mut input, &mut held), &mut from_ring, 1 << 20);
            assert_eq!(got, Ok(Some(false)), "a frame from the socket");
            input.clone()
        };
        // Two frames, one read: the second waits in the worker's buffer.
        send(&mut driver, b"one");
        send(&mut driver, b"two");
        assert_eq!(next(&mut reader), b"one");
        // A third comes while the second is still buffered.
        send(&mut driver, b"three");
        assert_eq!(next(&mut reader), b"two");
        // It is read at once, not after the worker's sleep runs out.
        let t = Instant::now();
        assert_eq!(next(&mut reader), b"three");
        assert!(t.elapsed() < LOOK_EVERY / 2, "slept {:?} with a frame waiting", t.elapsed());
    }
}
