//! The messages on a worker channel: a kind byte and fixed little-endian
//! fields, then a body of codec-encoded values. Parsing checks every length.

use super::frame;

const RUN: u8 = 1;
const EXIT: u8 = 2;
const READY: u8 = 10;
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

/// A message, borrowing its body from the frame it was parsed from.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Message<'a> {
    /// Driver → worker: run `count` inputs (encoded back to back in `body`) with task `task`.
    Run {
        tag: u64,
        task: u32,
        count: u32,
        body: &'a [u8],
    },
    /// Driver → worker: run the exit hook (if any), answer `Exited`, then leave.
    Exit { hook: Option<u32> },
    /// Worker → driver: init succeeded.
    Ready,
    /// Worker → driver: init failed; the body is the message.
    InitFailed { message: &'a str },
    /// Worker → driver: outcomes of items `first .. first + count` of batch
    /// `tag`, which took the worker `nanos` to compute.
    Done {
        tag: u64,
        first: u32,
        count: u32,
        nanos: u64,
        body: &'a [u8],
    },
    /// Worker → driver: the exit hook's outcome (status byte + encoded value), empty if none ran.
    Exited { body: &'a [u8] },
}

/// A frame that is not a valid message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed message: {0}")]
pub(crate) struct ProtocolError(pub(crate) &'static str);

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
    pub(crate) fn parse(frame: &'a [u8]) -> Result<Self, ProtocolError> {
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
            READY => Message::Ready,
            INIT_FAILED => Message::InitFailed {
                message: std::str::from_utf8(c.0)
                    .map_err(|_| ProtocolError("message is not UTF-8"))?,
            },
            DONE => Message::Done {
                tag: c.u64()?,
                first: c.u32()?,
                count: c.u32()?,
                nanos: c.u64()?,
                body: c.0,
            },
            EXITED => Message::Exited { body: c.0 },
            _ => return Err(ProtocolError("unknown message kind")),
        };
        Ok(msg)
    }
}

/// Writes message headers into a buffer, inside a frame begun with
/// [`frame::begin`]; the caller appends the body and calls [`frame::finish`].
pub(crate) mod write {
    use super::*;

    /// Starts a `Run` frame; returns where the frame starts.
    pub(crate) fn run(buf: &mut Vec<u8>, tag: u64, task: u32, count: u32) -> usize {
        let start = frame::begin(buf);
        buf.push(RUN);
        buf.extend_from_slice(&tag.to_le_bytes());
        buf.extend_from_slice(&task.to_le_bytes());
        buf.extend_from_slice(&count.to_le_bytes());
        start
    }

    /// Overwrites the `count` field of a `Run` frame begun at `start`.
    pub(crate) fn patch_run_count(buf: &mut [u8], start: usize, count: u32) {
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
    pub(crate) fn done(buf: &mut Vec<u8>, tag: u64, first: u32, count: u32) -> usize {
        let start = frame::begin(buf);
        buf.push(DONE);
        buf.extend_from_slice(&tag.to_le_bytes());
        buf.extend_from_slice(&first.to_le_bytes());
        buf.extend_from_slice(&count.to_le_bytes());
        buf.extend_from_slice(&0u64.to_le_bytes());
        start
    }

    /// Overwrites the `first`, `count` and `nanos` fields of a `Done` frame begun at `start`.
    pub(crate) fn patch_done(buf: &mut [u8], start: usize, first: u32, count: u32, nanos: u64) {
        let at = start + frame::PREFIX + 1 + 8;
        buf[at..at + 4].copy_from_slice(&first.to_le_bytes());
        buf[at + 4..at + 8].copy_from_slice(&count.to_le_bytes());
        buf[at + 8..at + 16].copy_from_slice(&nanos.to_le_bytes());
    }

    /// A whole `Exit` frame.
    pub(crate) fn exit(buf: &mut Vec<u8>, hook: Option<u32>) {
        let start = frame::begin(buf);
        buf.push(EXIT);
        buf.extend_from_slice(&hook.unwrap_or(NO_HOOK).to_le_bytes());
        frame::finish(buf, start, usize::MAX).expect("small frame");
    }

    /// A whole `Ready` frame.
    pub(crate) fn ready(buf: &mut Vec<u8>) {
        let start = frame::begin(buf);
        buf.push(READY);
        frame::finish(buf, start, usize::MAX).expect("small frame");
    }

    /// A whole `InitFailed` frame.
    pub(crate) fn init_failed(buf: &mut Vec<u8>, message: &str) {
        let start = frame::begin(buf);
        buf.push(INIT_FAILED);
        buf.extend_from_slice(message.as_bytes());
        frame::finish(buf, start, usize::MAX).expect("an init message fits a frame");
    }

    /// Starts an `Exited` frame; the caller appends the outcome.
    pub(crate) fn exited(buf: &mut Vec<u8>) -> usize {
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
                body: b""
            })
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
        assert!(Message::parse(&[INIT_FAILED, 0xff, 0xfe]).is_err());
    }
}
