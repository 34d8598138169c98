//! Hooks for the fuzz targets in `fuzz/` (feature `fuzzing`, never on by
//! default): thin public wrappers around the crate-private code that reads
//! bytes from a peer process. Not an API: no stability, hidden from the docs.
//!
//! * [`FrameReader`] — the driver's non-blocking frame reassembly;
//!   [`read_blocking`] — the worker's blocking frame read.
//! * [`parse`] — the message parser, and [`write`] the header writers, so a
//!   target can check that what parses re-encodes to the same bytes.
//! * [`OutcomeCursor`] — walks the outcomes of a `Done` body the way
//!   `Imap::next_in_cursor` does (`channel::outcome::read`, item by item).
//! * [`run_inputs`] — decodes the inputs of a `Run` body the way a worker
//!   does (`batch::Batch`), echoing each input back as its output.
//! * [`read_item`] and [`decode_item`] — one item of a body, as both sides
//!   read it (`channel::item`).

use std::io::{self, Read};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::channel::frame;
use crate::channel::item;
use crate::channel::message::{self, Message};
use crate::channel::outcome;
use crate::batch::{self, Batch, Report};
use crate::error::Error;

/// Bytes in a frame's length prefix.
pub const PREFIX: usize = frame::PREFIX;

/// What one [`FrameReader::fill`] saw (mirror of the private `Fill`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Some bytes arrived.
    Data,
    /// Nothing to read right now.
    WouldBlock,
    /// The peer closed its end.
    Eof,
}

/// A refused frame (mirror of the private `FrameError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The prefix asks for more than the limit.
    TooLarge {
        /// What the prefix asked for.
        len: usize,
        /// The reader's limit.
        limit: usize,
    },
    /// The stream ended inside a frame.
    Truncated {
        /// Bytes buffered.
        have: usize,
        /// Bytes the frame at the front needs (prefix included).
        want: usize,
    },
}

impl From<frame::FrameError> for FrameError {
    fn from(e: frame::FrameError) -> Self {
        match e {
            frame::FrameError::TooLarge { len, limit } => FrameError::TooLarge { len, limit },
            frame::FrameError::Truncated { have, want } => FrameError::Truncated { have, want },
        }
    }
}

/// The driver's frame reader.
#[derive(Debug)]
pub struct FrameReader(frame::FrameReader);

impl FrameReader {
    /// A reader that refuses frames longer than `limit`.
    pub fn new(limit: usize) -> Self {
        FrameReader(frame::FrameReader::new(limit))
    }

    /// One read from `src` into the buffer.
    pub fn fill(&mut self, src: &mut impl Read) -> Result<Fill, FrameError> {
        Ok(match self.0.fill(src)? {
            frame::Fill::Data | frame::Fill::Drained => Fill::Data,
            frame::Fill::WouldBlock => Fill::WouldBlock,
            frame::Fill::Eof => Fill::Eof,
        })
    }

    /// The complete frame at the front, without its prefix.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        Ok(self.0.next_frame()?.map(|mut f| {
            f.drain(..frame::PREFIX);
            f
        }))
    }

    /// After [`Fill::Eof`]: an error if a frame was cut short.
    pub fn check_clean_eof(&self) -> Result<(), FrameError> {
        Ok(self.0.check_clean_eof()?)
    }
}

/// The worker's blocking read of one frame into `buf`.
pub fn read_blocking(src: &mut impl Read, buf: &mut Vec<u8>, limit: usize) -> io::Result<bool> {
    frame::read_blocking(src, buf, limit)
}

/// A parsed message (mirror of the private `Message`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Parsed<'a> {
    Run {
        tag: u64,
        task: u32,
        count: u32,
        body: &'a [u8],
    },
    Exit {
        hook: Option<u32>,
    },
    Ready,
    InitFailed {
        message: &'a str,
    },
    Done {
        tag: u64,
        first: u32,
        count: u32,
        nanos: u64,
        codec_nanos: u64,
        io_nanos: u64,
        /// `(item, items, nanos)` records.
        slow: Vec<(u32, u32, u64)>,
        body: &'a [u8],
    },
    Exited {
        body: &'a [u8],
    },
}

/// Parses a frame's payload; the error is the parser's reason.
pub fn parse(frame: &[u8]) -> Result<Parsed<'_>, &'static str> {
    Ok(match Message::parse(frame).map_err(|e| e.0)? {
        Message::Run {
            tag,
            task,
            count,
            body,
        } => Parsed::Run {
            tag,
            task,
            count,
            body,
        },
        Message::Exit { hook } => Parsed::Exit { hook },
        Message::Ready => Parsed::Ready,
        Message::InitFailed { message } => Parsed::InitFailed { message },
        Message::Done {
            tag,
            first,
            count,
            nanos,
            tally,
            body,
        } => Parsed::Done {
            tag,
            first,
            count,
            nanos,
            codec_nanos: tally.codec_nanos,
            io_nanos: tally.io_nanos,
            slow: tally.slow().collect(),
            body: &frame[body],
        },
        Message::Exited { body } => Parsed::Exited { body },
    })
}

/// Writes `msg` as a whole frame (prefix included) with the crate's own
/// writers, as the sending side would.
pub fn write(msg: &Parsed<'_>) -> Vec<u8> {
    use message::write;
    let mut buf = Vec::new();
    let start = match *msg {
        Parsed::Run {
            tag,
            task,
            count,
            body,
        } => {
            let s = write::run(&mut buf, tag, task, 0);
            write::patch_run_count(&mut buf, s, count);
            buf.extend_from_slice(body);
            s
        }
        Parsed::Exit { hook } => {
            write::exit(&mut buf, hook);
            return buf;
        }
        Parsed::Ready => {
            write::ready(&mut buf);
            return buf;
        }
        Parsed::InitFailed { message } => {
            write::init_failed(&mut buf, message);
            return buf;
        }
        Parsed::Done {
            tag,
            first,
            count,
            nanos,
            codec_nanos,
            io_nanos,
            ref slow,
            body,
        } => {
            let s = write::done(&mut buf, tag, 0, 0);
            write::patch_done(&mut buf, s, first, count, nanos);
            buf.extend_from_slice(body);
            write::finish_tally(&mut buf, s, codec_nanos, io_nanos, slow);
            s
        }
        Parsed::Exited { body } => {
            let s = write::exited(&mut buf);
            buf.extend_from_slice(body);
            s
        }
    };
    frame::finish(&mut buf, start, usize::MAX).expect("a fuzz frame fits a u32");
    buf
}

/// Walks the outcomes of a `Done` body the way `Imap::next_in_cursor`
/// does: one [`outcome::read`] per item, and once the bytes cannot be read,
/// a "malformed" error for every item left.
#[derive(Debug)]
pub struct OutcomeCursor<'a> {
    frame: &'a [u8],
    at: usize,
    left: u32,
    malformed: u32,
}

impl<'a> OutcomeCursor<'a> {
    /// A cursor over `count` outcomes at the start of `body`.
    pub fn new(body: &'a [u8], count: u32) -> Self {
        OutcomeCursor {
            frame: body,
            at: 0,
            left: count,
            malformed: 0,
        }
    }

    /// Outcomes reported as malformed so far.
    pub fn malformed(&self) -> u32 {
        self.malformed
    }

    /// Bytes of the body not consumed yet.
    pub fn rest(&self) -> &'a [u8] {
        &self.frame[self.at.min(self.frame.len())..]
    }

    /// The next outcome, as the user would get it from `imap`.
    #[allow(clippy::should_implement_trait)]
    pub fn next<R: DeserializeOwned>(&mut self) -> Option<Result<R, Error>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        match crate::unwind::quietly(|| outcome::read::<R>(self.rest())) {
            Ok((result, rest)) => {
                self.at = self.frame.len() - rest.len();
                Some(result)
            }
            Err(malformed) => {
                self.at = self.frame.len();
                self.malformed += 1;
                Some(Err(malformed.into()))
            }
        }
    }
}

struct NoFlush;
impl Report for NoFlush {
    fn chunk_done(&mut self, _: u32, _: &mut Vec<u8>) {}
}

fn echo<A>(a: A) -> A {
    a
}

/// Runs a `Run` body of `count` inputs of type `A` through the worker's batch
/// loop with a task that returns its input; returns the outcomes as they
/// would follow a `Done` header, or why the worker would leave (the body is
/// not `count` items: a protocol error).
pub fn run_inputs<A>(body: &[u8], count: u32) -> Result<Vec<u8>, String>
where
    A: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let mut out = Vec::new();
    let mut progress = NoFlush;
    let mut batch = Batch::new(body, count, &mut out, &mut progress);
    batch::run_stateless(echo::<A>, item::decode, &mut (), &mut batch)?;
    Ok(out)
}

/// The item at the front of `bytes`: its status, its value's bytes, and
/// the bytes after it; or why the bytes are not an item.
pub fn read_item(bytes: &[u8]) -> Result<(u8, &[u8], &[u8]), &'static str> {
    item::read(bytes).map_err(|m| m.0)
}

/// An item's value, decoded from all of its bytes.
pub fn decode_item<T: DeserializeOwned>(value: &[u8]) -> Result<T, String> {
    item::decode(value).map_err(|e| e.to_string())
}
