//! The messages on a worker channel: a kind byte and fixed little-endian
//! fields, then a body of codec-encoded values. Parsing checks every length.

use std::ops::Range;
use std::sync::Arc;

use super::frame;

const RUN: u8 = 1;
const EXIT: u8 = 2;
const HELLO: u8 = 3;
const READY: u8 = 10;
const STARTED: u8 = 14;
const INIT_FAILED: u8 = 11;
const DONE: u8 = 12;
const EXITED: u8 = 13;

/// Sentinel for "no exit hook" in an `Exit` message.
const NO_HOOK: u32 = u32::MAX;

/// The `task` of a `Run` whose inputs go through a chain of tasks: the body
/// starts with the chain (see [`write::chain`] and [`parse_chain`]).
pub(crate) const CHAIN: u32 = u32::MAX;

/// At most this many stages in a chain.
pub(crate) const MAX_STAGES: usize = 64;

/// One stage of a chain: a task index, and whether the next stage takes the
/// `Ok` side of its `Result`.
pub(crate) type Stage = (u32, bool);

/// Parses the chain at the front of a `CHAIN` run's body; returns it and the
/// inputs after it.
pub(crate) fn parse_chain(body: &[u8]) -> Result<(Vec<Stage>, &[u8]), ProtocolError> {
    let mut c = Cursor(body);
    let n = c.u8()? as usize;
    if n == 0 || n > MAX_STAGES {
        return Err(ProtocolError("chain length out of range"));
    }
    let mut stages = Vec::with_capacity(n);
    for _ in 0..n {
        let task = c.u32()?;
        let via_ok = match c.u8()? {
            0 => false,
            1 => true,
            _ => return Err(ProtocolError("bad chain flag")),
        };
        stages.push((task, via_ok));
    }
    Ok((stages, c.0))
}

/// What a batch runs: one task, or a chain of them.
#[derive(Debug, Clone)]
pub(crate) enum Route {
    Task(u32),
    Chain(Arc<[Stage]>),
}

impl Route {
    /// The task whose input the batch carries.
    pub(crate) fn first_task(&self) -> u32 {
        match self {
            Route::Task(t) => *t,
            Route::Chain(stages) => stages[0].0,
        }
    }

    /// Starts a `Run` frame for this route in `buf` (its count is patched
    /// later); returns where the frame starts.
    pub(crate) fn begin(&self, buf: &mut Vec<u8>, count: u32) -> usize {
        match self {
            Route::Task(t) => write::run(buf, 0, *t, count),
            Route::Chain(stages) => {
                let start = write::run(buf, 0, CHAIN, count);
                write::chain(buf, stages);
                start
            }
        }
    }
}

/// A message, borrowing its body from the frame it was parsed from.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// Driver → worker: run `count` inputs (encoded back to back in `body`) with task `task`.
    Run {
        /// The batch, for the `Done`s that answer it.
        tag: u64,
        /// The task's index in the registry, or [`CHAIN`].
        task: u32,
        /// Inputs in the body.
        count: u32,
        /// The inputs (after the chain, for a [`CHAIN`] run).
        body: &'a [u8],
    },
    /// Driver → worker: run the exit hook (if any), answer `Exited`, then leave.
    Exit {
        /// The exit hook's index in the registry, if there is one.
        hook: Option<u32>,
    },
    /// Driver → a worker started fresh, its first frame: the code the
    /// driver runs and the init with its arguments (`channel/hello.rs`).
    Hello {
        /// The encoded greeting.
        body: &'a [u8],
    },
    /// Worker → driver: init succeeded.
    Ready,
    /// A worker started fresh → driver, its first frame: it is in worker
    /// mode (its init follows).
    Started,
    /// Worker → driver: init failed; the body is the message.
    InitFailed {
        /// What init said.
        message: &'a str,
    },
    /// Worker → driver: outcomes of items `first .. first + count` of batch
    /// `tag`, which took the worker `nanos` to compute. `tally` is what the
    /// worker measured since its previous `Done` (insights); its slow-item
    /// records trail the outcomes in the frame. `body`: where the outcomes
    /// are in the bytes parsed (see [`Message::parse_frame`]).
    Done {
        /// The batch's tag, from its `Run`.
        tag: u64,
        /// The first item's index in the batch.
        first: u32,
        /// Outcomes in the body.
        count: u32,
        /// The worker's time on those items.
        nanos: u64,
        /// What the worker measured since its previous `Done`.
        tally: Tally<'a>,
        /// Where the outcomes are in the bytes parsed.
        body: Range<usize>,
    },
    /// Worker → driver: the exit hook's outcome (status byte + encoded value), empty if none ran.
    Exited {
        /// The outcome.
        body: &'a [u8],
    },
}

/// Worker-side figures carried by a `Done` (see `crate::insights`): time spent
/// decoding and encoding, time spent writing frames, and slow items.
#[derive(Debug, PartialEq, Eq, Clone, Copy, Default)]
pub struct Tally<'a> {
    /// Time spent decoding inputs and encoding outcomes.
    pub codec_nanos: u64,
    /// Time spent writing frames.
    pub io_nanos: u64,
    /// [`SLOW_RECORD`]-byte records: item `u32`, items `u32`, nanos `u64`.
    slow: &'a [u8],
}

/// Bytes of one slow-item record at the end of a `Done` frame.
pub(crate) const SLOW_RECORD: usize = 16;

impl Tally<'_> {
    /// The slow-item records: `(item in the batch, items, nanos)`; `items`
    /// is 1 unless a chunk of cheap items was timed as a whole.
    pub fn slow(&self) -> impl Iterator<Item = (u32, u32, u64)> + '_ {
        self.slow.chunks_exact(SLOW_RECORD).map(|r| {
            (
                u32::from_le_bytes(r[0..4].try_into().unwrap()),
                u32::from_le_bytes(r[4..8].try_into().unwrap()),
                u64::from_le_bytes(r[8..16].try_into().unwrap()),
            )
        })
    }
}

/// A frame that is not a valid message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed message: {0}")]
pub struct ProtocolError(pub(crate) &'static str);

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        if self.0.len() < N {
            return Err(ProtocolError("header cut short"));
        }
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        Ok(head.try_into().unwrap())
    }
    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, ProtocolError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, ProtocolError> {
        Ok(u64::from_le_bytes(self.take()?))
    }
}

impl<'a> Message<'a> {
    /// Parses a frame's payload (without the length prefix).
    pub fn parse(frame: &'a [u8]) -> Result<Self, ProtocolError> {
        let mut c = Cursor(frame);
        let msg = match c.u8()? {
            RUN => Message::Run {
                tag: c.u64()?,
                task: c.u32()?,
                count: c.u32()?,
                body: c.0,
            },
            EXIT => {
                let hook = c.u32()?;
                Message::Exit {
                    hook: (hook != NO_HOOK).then_some(hook),
                }
            }
            HELLO => Message::Hello { body: c.0 },
            READY => Message::Ready,
            STARTED => Message::Started,
            INIT_FAILED => Message::InitFailed {
                message: std::str::from_utf8(c.0)
                    .map_err(|_| ProtocolError("message is not UTF-8"))?,
            },
            DONE => {
                let (tag, first, count, nanos) = (c.u64()?, c.u32()?, c.u32()?, c.u64()?);
                let (codec_nanos, io_nanos, slow) = (c.u64()?, c.u64()?, c.u32()?);
                let trailer = (slow as usize)
                    .checked_mul(SLOW_RECORD)
                    .filter(|&n| n <= c.0.len())
                    .ok_or(ProtocolError("slow-item records cut short"))?;
                let at = frame.len() - c.0.len();
                let body = at..frame.len() - trailer;
                let slow = &frame[body.end..];
                Message::Done {
                    tag,
                    first,
                    count,
                    nanos,
                    tally: Tally {
                        codec_nanos,
                        io_nanos,
                        slow,
                    },
                    body,
                }
            }
            EXITED => Message::Exited { body: c.0 },
            _ => return Err(ProtocolError("unknown message kind")),
        };
        Ok(msg)
    }

    /// Parses a whole frame, its length prefix included: a `Done`'s body is
    /// then where it is in the frame.
    pub fn parse_frame(frame: &'a [u8]) -> Result<Self, ProtocolError> {
        let payload = frame
            .get(frame::PREFIX..)
            .ok_or(ProtocolError("frame cut short"))?;
        let mut msg = Self::parse(payload)?;
        if let Message::Done { body, .. } = &mut msg {
            *body = body.start + frame::PREFIX..body.end + frame::PREFIX;
        }
        Ok(msg)
    }
}

/// Writes message headers into a buffer, inside a frame begun with
/// [`frame::begin`]; the caller appends the body and calls [`frame::finish`].
pub mod write {
    use super::*;

    /// Writes `tag` into the `Run` frame begun at `start`.
    pub(crate) fn patch_run_tag(buf: &mut [u8], start: usize, tag: u64) {
        let at = start + frame::PREFIX + 1;
        buf[at..at + 8].copy_from_slice(&tag.to_le_bytes());
    }

    /// Starts a `Run` frame; returns where the frame starts.
    pub fn run(buf: &mut Vec<u8>, tag: u64, task: u32, count: u32) -> usize {
        let start = frame::begin(buf);
        buf.push(RUN);
        buf.extend_from_slice(&tag.to_le_bytes());
        buf.extend_from_slice(&task.to_le_bytes());
        buf.extend_from_slice(&count.to_le_bytes());
        start
    }

    /// Overwrites the `count` field of a `Run` frame begun at `start`.
    pub fn patch_run_count(buf: &mut [u8], start: usize, count: u32) {
        let at = start + frame::PREFIX + 1 + 8 + 4;
        buf[at..at + 4].copy_from_slice(&count.to_le_bytes());
    }

    /// Appends a chain after a `Run` header whose task is [`CHAIN`]. At most
    /// [`MAX_STAGES`] stages (the caller checks).
    pub(crate) fn chain(buf: &mut Vec<u8>, stages: &[Stage]) {
        debug_assert!(!stages.is_empty() && stages.len() <= MAX_STAGES);
        buf.push(stages.len() as u8);
        for &(task, via_ok) in stages {
            buf.extend_from_slice(&task.to_le_bytes());
            buf.push(via_ok as u8);
        }
    }

    /// Bytes from the start of a plain `Run` frame to its first input.
    #[cfg(test)]
    pub(crate) const RUN_HEADER: usize = frame::PREFIX + 1 + 8 + 4 + 4;

    /// Starts a `Done` frame.
    pub fn done(buf: &mut Vec<u8>, tag: u64, first: u32, count: u32) -> usize {
        let start = frame::begin(buf);
        buf.push(DONE);
        buf.extend_from_slice(&tag.to_le_bytes());
        buf.extend_from_slice(&first.to_le_bytes());
        buf.extend_from_slice(&count.to_le_bytes());
        // nanos, codec nanos, io nanos, slow-item records
        buf.extend_from_slice(&[0; 8 + 8 + 8 + 4]);
        start
    }

    /// Overwrites the `first`, `count` and `nanos` fields of a `Done` frame begun at `start`.
    pub fn patch_done(buf: &mut [u8], start: usize, first: u32, count: u32, nanos: u64) {
        let at = start + frame::PREFIX + 1 + 8;
        buf[at..at + 4].copy_from_slice(&first.to_le_bytes());
        buf[at + 4..at + 8].copy_from_slice(&count.to_le_bytes());
        buf[at + 8..at + 16].copy_from_slice(&nanos.to_le_bytes());
    }

    /// Appends the slow-item records `(item, items, nanos)` after the
    /// outcomes of the `Done` frame begun at `start` (its last bytes), and
    /// fills in its tally fields.
    pub fn finish_tally(
        buf: &mut Vec<u8>,
        start: usize,
        codec_nanos: u64,
        io_nanos: u64,
        slow: &[(u32, u32, u64)],
    ) {
        for &(item, items, nanos) in slow {
            buf.extend_from_slice(&item.to_le_bytes());
            buf.extend_from_slice(&items.to_le_bytes());
            buf.extend_from_slice(&nanos.to_le_bytes());
        }
        let at = start + frame::PREFIX + 1 + 8 + 4 + 4 + 8;
        buf[at..at + 8].copy_from_slice(&codec_nanos.to_le_bytes());
        buf[at + 8..at + 16].copy_from_slice(&io_nanos.to_le_bytes());
        buf[at + 16..at + 20].copy_from_slice(&(slow.len() as u32).to_le_bytes());
    }

    /// A whole `Exit` frame.
    pub fn exit(buf: &mut Vec<u8>, hook: Option<u32>) {
        let start = frame::begin(buf);
        buf.push(EXIT);
        buf.extend_from_slice(&hook.unwrap_or(NO_HOOK).to_le_bytes());
        frame::finish(buf, start, usize::MAX).expect("small frame");
    }

    /// A whole `Hello` frame around `body`.
    pub fn hello(buf: &mut Vec<u8>, body: &[u8]) {
        let start = frame::begin(buf);
        buf.push(HELLO);
        buf.extend_from_slice(body);
        frame::finish(buf, start, usize::MAX).expect("checked against the frame limit at build");
    }

    /// A whole `Started` frame.
    pub fn started(buf: &mut Vec<u8>) {
        let start = frame::begin(buf);
        buf.push(STARTED);
        frame::finish(buf, start, usize::MAX).expect("small frame");
    }

    /// A whole `Ready` frame.
    pub fn ready(buf: &mut Vec<u8>) {
        let start = frame::begin(buf);
        buf.push(READY);
        frame::finish(buf, start, usize::MAX).expect("small frame");
    }

    /// A whole `InitFailed` frame.
    pub fn init_failed(buf: &mut Vec<u8>, message: &str) {
        let start = frame::begin(buf);
        buf.push(INIT_FAILED);
        buf.extend_from_slice(message.as_bytes());
        frame::finish(buf, start, usize::MAX).expect("an init message fits a frame");
    }

    /// Starts an `Exited` frame; the caller appends the outcome.
    pub fn exited(buf: &mut Vec<u8>) -> usize {
        let start = frame::begin(buf);
        buf.push(EXITED);
        start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(buf: &[u8]) -> &[u8] {
        &buf[frame::PREFIX..]
    }

    #[test]
    fn headers_round_trip() {
        let mut buf = Vec::new();
        let s = write::run(&mut buf, 7, 3, 2);
        assert_eq!(buf.len() - s, write::RUN_HEADER);
        buf.extend_from_slice(b"xy");
        frame::finish(&mut buf, s, 100).unwrap();
        assert_eq!(
            Message::parse(payload(&buf)),
            Ok(Message::Run {
                tag: 7,
                task: 3,
                count: 2,
                body: b"xy"
            })
        );

        let mut buf = Vec::new();
        let s = write::done(&mut buf, 9, 0, 0);
        write::patch_done(&mut buf, s, 4, 5, 6);
        frame::finish(&mut buf, s, 100).unwrap();
        assert_eq!(
            Message::parse(payload(&buf)),
            Ok(Message::Done {
                tag: 9,
                first: 4,
                count: 5,
                nanos: 6,
                tally: Tally::default(),
                // A Done header is 45 bytes; no outcome follows.
                body: 45..45
            })
        );

        // Outcomes, then two slow-item records after them.
        let mut buf = Vec::new();
        let s = write::done(&mut buf, 9, 0, 2);
        buf.extend_from_slice(b"ab");
        write::finish_tally(&mut buf, s, 7, 8, &[(0, 1, 50), (1, 3, u64::MAX)]);
        frame::finish(&mut buf, s, 1000).unwrap();
        let Ok(Message::Done { tally, body, .. }) = Message::parse_frame(&buf) else {
            panic!("not a Done");
        };
        assert_eq!(&buf[body], b"ab");
        assert_eq!((tally.codec_nanos, tally.io_nanos), (7, 8));
        assert_eq!(
            tally.slow().collect::<Vec<_>>(),
            vec![(0, 1, 50), (1, 3, u64::MAX)]
        );

        let mut buf = Vec::new();
        write::exit(&mut buf, None);
        assert_eq!(
            Message::parse(payload(&buf)),
            Ok(Message::Exit { hook: None })
        );
    }

    #[test]
    fn chains_round_trip_and_reject_garbage() {
        let mut buf = Vec::new();
        write::chain(&mut buf, &[(3, true), (9, false)]);
        buf.extend_from_slice(b"in");
        assert_eq!(
            parse_chain(&buf),
            Ok((vec![(3, true), (9, false)], &b"in"[..]))
        );
        for cut in 0..buf.len() - 2 {
            assert!(parse_chain(&buf[..cut]).is_err(), "cut at {cut}");
        }
        assert!(parse_chain(&[0]).is_err(), "no stage");
        assert!(parse_chain(&[65]).is_err(), "too many stages");
        assert!(parse_chain(&[1, 0, 0, 0, 0, 2]).is_err(), "bad flag");
    }

    #[test]
    fn every_truncation_and_garbage_is_an_error() {
        let mut buf = Vec::new();
        let s = write::done(&mut buf, 1, 2, 3);
        frame::finish(&mut buf, s, 100).unwrap();
        let p = payload(&buf);
        for cut in 0..p.len() {
            assert!(Message::parse(&p[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Message::parse(&[99]).is_err());

        // A slow-record count past the frame's end, or one that overflows.
        for n in [1u32, u32::MAX] {
            let mut buf = Vec::new();
            let s = write::done(&mut buf, 1, 0, 0);
            buf.extend_from_slice(&[0; SLOW_RECORD - 1]);
            let at = s + frame::PREFIX + 1 + 8 + 4 + 4 + 8 + 16;
            buf[at..at + 4].copy_from_slice(&n.to_le_bytes());
            frame::finish(&mut buf, s, 100).unwrap();
            assert!(Message::parse(payload(&buf)).is_err(), "{n} records");
        }
        assert!(Message::parse(&[INIT_FAILED, 0xff, 0xfe]).is_err());
    }
}
