//! The bytes a worker (or the driver) receives from its peer: frames →
//! messages → outcomes. Whatever the bytes, the readers agree with a
//! reference model of the framing, nothing panics, hangs, or allocates more
//! than one frame's worth (see `ALLOC_BOUND`).
//!
//! It calls pool-runtime's own code, public under `--cfg fuzzing` (which
//! `cargo fuzz` sets): `channel::frame::{FrameReader, read_blocking}`,
//! `channel::message::{Message::parse_frame, write}`,
//! `channel::outcome::{read_each, read}`, `channel::item::{read, decode, Items}`
//! and the worker's batch loop (`batch::Batch`, `batch::run_stateless`).
//!
//! Input: `[config, seed_lo, seed_hi, stream...]`.
//! * config bits 0-1: piece sizes of the reads (see `Pieces`);
//!   bits 2-4: the type outcomes and inputs are decoded as;
//!   bit 5: a small frame limit (`stream[0]`, 0-255 bytes, so the fuzzer
//!   hits the limit's edges) instead of 1 MiB.
//! * seed: the sequence of piece sizes and `WouldBlock`s.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pool_runtime::batch::{self, Batch, Report};
use pool_runtime::channel::frame::{self, Fill, FrameError, FrameReader, PREFIX};
use pool_runtime::channel::message::{write, Message};
use pool_runtime::channel::{hello, item, outcome};
use pool_runtime::marker::Stateless;
use pool_runtime::Error;
use pool_runtime_fuzz::{
    largest, on_small_stack, reset_largest, Kind, Pieces, Record, Tree, ALLOC_BOUND, FRAME_LIMIT,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// How the stream ends, by the reference model.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Clean,
    TooLarge { len: usize },
    Truncated { have: usize, want: usize },
}

/// The framing, the simplest way: the frames `stream` holds and how it ends.
fn reference(stream: &[u8], limit: usize) -> (Vec<&[u8]>, End) {
    let mut frames = Vec::new();
    let mut at = 0;
    loop {
        let rest = &stream[at..];
        if rest.is_empty() {
            return (frames, End::Clean);
        }
        if rest.len() < PREFIX {
            return (frames, End::Truncated { have: rest.len(), want: PREFIX });
        }
        let len = u32::from_le_bytes(rest[..PREFIX].try_into().unwrap()) as usize;
        if len > limit {
            return (frames, End::TooLarge { len });
        }
        if rest.len() < PREFIX + len {
            return (frames, End::Truncated { have: rest.len(), want: PREFIX + len });
        }
        frames.push(&rest[PREFIX..PREFIX + len]);
        at += PREFIX + len;
    }
}

fuzz_target!(|data: &[u8]| on_small_stack(data, one));

fn one(data: &[u8]) {
    if data.len() < 3 {
        return;
    }
    let config = data[0];
    let seed = u16::from_le_bytes([data[1], data[2]]);
    let stream = &data[3..];
    let limit = if config & 0x20 != 0 {
        stream.first().map_or(0, |&b| b as usize)
    } else {
        FRAME_LIMIT
    };
    let (want_frames, want_end) = reference(stream, limit);

    reset_largest();

    // The driver side: non-blocking reads in pieces, frames drained after
    // every read (as `Core::read_slot` does).
    let mut reader = FrameReader::new(limit);
    let mut src = Pieces::new(stream, seed, config, false);
    let mut got = 0;
    let end = 'read: loop {
        let fill = reader.fill(&mut src);
        loop {
            match reader.next_frame() {
                Ok(Some(frame)) => {
                    // The frame comes with its length prefix.
                    let payload = &frame[PREFIX..];
                    assert!(payload.len() <= limit, "a frame past the limit");
                    assert_eq!(Some(&payload), want_frames.get(got), "frame {got}");
                    assert_eq!(frame[..PREFIX], (payload.len() as u32).to_le_bytes());
                    got += 1;
                    message(&frame, config);
                }
                Ok(None) => break,
                Err(FrameError::TooLarge { len, limit: l }) => {
                    assert_eq!(l, limit);
                    break 'read End::TooLarge { len };
                }
                Err(e) => panic!("next_frame: {e:?}"),
            }
        }
        match fill {
            Ok(Fill::Data | Fill::Drained | Fill::WouldBlock) => continue,
            Ok(Fill::Eof) => {
                break match reader.check_clean_eof() {
                    Ok(()) => End::Clean,
                    Err(FrameError::Truncated { have, want }) => End::Truncated { have, want },
                    Err(e) => panic!("check_clean_eof: {e:?}"),
                }
            }
            // The frame at the front is too large: `next_frame` said so first.
            Err(e) => panic!("fill failed but next_frame did not: {e:?}"),
        }
    };
    assert_eq!(got, want_frames.len(), "frames");
    assert_eq!(end, want_end);

    // The worker side: blocking reads of whole frames.
    let mut src = Pieces::new(stream, seed.rotate_left(8), config >> 2, true);
    let mut buf = Vec::new();
    let mut got = 0;
    loop {
        match frame::read_blocking(&mut src, &mut buf, limit) {
            Ok(true) => {
                assert_eq!(Some(&&buf[..]), want_frames.get(got), "blocking frame {got}");
                got += 1;
            }
            Ok(false) => {
                assert_eq!(want_end, End::Clean);
                break;
            }
            Err(e) => {
                match want_end {
                    End::TooLarge { .. } => assert_eq!(e.kind(), std::io::ErrorKind::InvalidData),
                    End::Truncated { .. } => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof),
                    End::Clean => panic!("blocking read of a clean stream: {e}"),
                }
                break;
            }
        }
    }
    assert_eq!(got, want_frames.len(), "blocking frames");

    let big = largest();
    assert!(big <= ALLOC_BOUND, "an allocation of {big} bytes (bound {ALLOC_BOUND})");
}

/// One whole frame (its prefix included), handled as the driver (or the
/// worker) would.
fn message(frame: &[u8], config: u8) {
    let Ok(msg) = Message::parse_frame(frame) else {
        return;
    };
    // What parses is what the crate's writers write.
    let written = rewrite(frame, &msg);
    let end = match msg {
        // These ignore trailing bytes.
        Message::Exit { .. } | Message::Ready | Message::Started => written.len(),
        _ => frame.len(),
    };
    assert_eq!(&written[PREFIX..], &frame[PREFIX..end], "re-encoded {msg:?}");
    assert_eq!(Message::parse_frame(&written).as_ref(), Ok(&msg));

    match msg {
        Message::Done { count, body, .. } => {
            with_type(config, Walk { body: &frame[body], count })
        }
        Message::Exited { body } => with_type(config, Walk { body, count: 1 }),
        Message::Run { count, body, .. } => with_type(config, Worker { body, count }),
        // A worker started fresh reads its greeting; whatever the bytes,
        // that is a value or an error.
        Message::Hello { body } => {
            let _ = hello::Hello::decode(body);
        }
        Message::Exit { .. } | Message::Ready | Message::Started | Message::InitFailed { .. } => {}
    }
}

/// `msg` (parsed from `frame`) written again, prefix included, with the
/// writers the sending side uses: the header first, the counts patched in
/// after the body, as the driver and the worker do.
fn rewrite(frame: &[u8], msg: &Message<'_>) -> Vec<u8> {
    let mut buf = Vec::new();
    let start = match *msg {
        Message::Run { tag, task, count, body } => {
            let s = write::run(&mut buf, tag, task, 0);
            buf.extend_from_slice(body);
            write::patch_run_count(&mut buf, s, count);
            s
        }
        Message::Exit { hook } => {
            write::exit(&mut buf, hook);
            return buf;
        }
        Message::Ready => {
            write::ready(&mut buf);
            return buf;
        }
        Message::Started => {
            write::started(&mut buf);
            return buf;
        }
        Message::Hello { body } => {
            write::hello(&mut buf, body);
            return buf;
        }
        Message::InitFailed { message } => {
            write::init_failed(&mut buf, message);
            return buf;
        }
        Message::Done { tag, first, count, nanos, tally, ref body } => {
            let s = write::done(&mut buf, tag, 0, 0);
            buf.extend_from_slice(&frame[body.clone()]);
            write::patch_done(&mut buf, s, first, count, nanos);
            let slow: Vec<_> = tally.slow().collect();
            write::finish_tally(&mut buf, s, tally.codec_nanos, tally.io_nanos, &slow);
            s
        }
        Message::Exited { body } => {
            let s = write::exited(&mut buf);
            buf.extend_from_slice(body);
            s
        }
    };
    frame::finish(&mut buf, start, usize::MAX).expect("a fuzzed frame fits a u32");
    buf
}

/// Something to do with one value type.
trait WithType {
    fn run<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + Send + Sync + 'static>(
        self,
    );
}

fn with_type(config: u8, f: impl WithType) {
    match (config >> 2) & 7 {
        0 => f.run::<u64>(),
        1 => f.run::<String>(),
        2 => f.run::<Vec<u8>>(),
        3 => f.run::<(u64, String)>(),
        4 => f.run::<Record>(),
        5 => f.run::<Result<Vec<u8>, String>>(),
        6 => f.run::<Option<Kind>>(),
        _ => f.run::<Tree>(),
    }
}

/// Items past the end of the body all fail the same way: walking more than
/// one of them adds nothing (the driver bounds `count` by its batch).
fn cap(count: u32, body: &[u8]) -> u32 {
    count.min(body.len() as u32 + 1)
}

/// The driver's reading of the outcomes of a `Done` (or `Exited`) body.
struct Walk<'a> {
    body: &'a [u8],
    count: u32,
}

impl WithType for Walk<'_> {
    fn run<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + Send + Sync + 'static>(
        self,
    ) {
        let count = cap(self.count, self.body);
        // As `map` reads them (`Imap::collect_vec`): one `read_each` over the
        // body, one result per item until an item's bytes cannot be read.
        // (A panic in a `Deserialize` would abort under libFuzzer's panic
        // hook: none of the fuzzed types panics.)
        let mut all = Vec::new();
        let mut items = item::Items::new(self.body);
        let end = outcome::read_each::<T>(&mut items, count, |result| {
            all.push(result);
            true
        });
        match end {
            Ok(_) => assert_eq!(all.len(), count as usize, "one outcome per item"),
            Err(_) => assert!(all.len() < count as usize, "a malformed item ends the reading"),
        }
        // As `Imap::next` reads them: one `read` per item, with the same
        // results and the same end.
        let mut one_by_one = item::Items::new(self.body);
        for (k, want) in all.iter().enumerate() {
            let got = outcome::read::<T>(&mut one_by_one).expect("read_each read this item");
            same_outcome(k, got, want);
        }
        match end {
            Ok(()) => assert_eq!(
                items.into_parts(),
                one_by_one.into_parts(),
                "where the outcomes end"
            ),
            Err(_) => assert!(
                outcome::read::<T>(&mut one_by_one).is_err(),
                "read and read_each disagree"
            ),
        }
        all.into_iter().for_each(forget_outcome);
    }
}

/// Two readings of item `k`'s outcome agree.
fn same_outcome<T: PartialEq + std::fmt::Debug + 'static>(
    k: usize,
    got: Result<T, Error>,
    want: &Result<T, Error>,
) {
    match (&got, want) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "item {k}"),
        (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind(), "item {k}"),
        _ => panic!("item {k}: read says {got:?}, read_each {want:?}"),
    }
    forget_outcome(got);
}

/// The worker's decoding of a `Run` body; the outcomes it writes must read
/// back, on the driver's side, as exactly `count` well-formed outcomes.
struct Worker<'a> {
    body: &'a [u8],
    count: u32,
}

/// A batch's report that ships nothing early: the whole body stays in `out`.
struct NoFlush;

impl Report for NoFlush {
    fn chunk_done(&mut self, _next: u32, _out: &mut Vec<u8>) {}
}

/// The task the fuzzed worker runs: it hands back its input.
fn echo<T>(x: T) -> T {
    x
}

impl WithType for Worker<'_> {
    fn run<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + Send + Sync + 'static>(
        self,
    ) {
        let count = cap(self.count, self.body);
        let mut out = Vec::new();
        let mut report = NoFlush;
        let mut batch = Batch::new(self.body, count, &mut out, &mut report);
        let run = batch::run_stateless::<T, T, Stateless<(T,)>, _, _>(
            echo::<T>,
            item::decode::<T>,
            &mut (),
            &mut batch,
        );
        if run.is_err() {
            // The worker leaves (a protocol error) only for a body that is
            // not `count` items.
            let mut items = item::Items::new(self.body);
            for _ in 0..count {
                if items.next_item().is_err() {
                    return;
                }
            }
            panic!("the worker refused a body of {count} well-formed items");
        }
        assert_eq!(batch.ran(), count, "no task limit: every item runs");
        let mut outcomes = Vec::new();
        let mut written = item::Items::new(&out);
        outcome::read_each::<T>(&mut written, count, |result| {
            outcomes.push(result);
            true
        })
        .expect("the worker wrote a malformed outcome");
        assert_eq!(written.between(), Some(&[][..]), "bytes left after the outcomes");
        assert_eq!(outcomes.len(), count as usize, "one outcome per input");
        let mut input = item::Items::new(self.body);
        for (i, outcome) in outcomes.into_iter().enumerate() {
            // The echo task returns its input: the value the driver reads
            // back is the one the worker decoded. Items are length-delimited:
            // one that does not decode fails alone.
            let (status, value) = input.next_item().expect("the worker read every item");
            if status != 0 {
                // An item that carries the driver's error in place of an
                // input: the worker hands back an error for it.
                assert!(outcome.is_err(), "item {i}: {outcome:?} for an error item");
                continue;
            }
            let expected = item::decode::<T>(value).ok();
            match (outcome, expected) {
                (Ok(v), Some(e)) => {
                    assert_eq!(v, e, "item {i}");
                    forget_deep(v);
                    forget_deep(e);
                }
                (Err(e), None) => assert!(
                    matches!(e.kind(), pool_runtime::ErrorKind::Codec(m) if m.contains("could not decode the input")),
                    "item {i}: {e}"
                ),
                (o, e) => panic!("item {i}: worker said {o:?}, decoding says {e:?}"),
            }
        }
    }
}

/// Drops an outcome whose value may be a deep [`Tree`] without recursing.
fn forget_outcome<T: 'static>(outcome: Result<T, Error>) {
    if let Ok(v) = outcome {
        forget_deep(v);
    }
}

/// Drops a value that may be a deep [`Tree`] without recursing.
fn forget_deep<T: 'static>(v: T) {
    let mut slot = Some(v);
    if let Some(t) = (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<Tree>>() {
        if let Some(t) = t.take() {
            t.drop_flat();
        }
    }
}
