//! Worker-side glue: decode each input of a batch, call the task, encode each
//! outcome. Monomorphized per task by the registry entries the macros emit.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::channel::outcome::{self, Status};
use crate::codec;
use crate::task::{Exit, Task};

pub(crate) mod stages;

/// Called by a batch at the start of each item: it records progress where the
/// driver can see it if the worker dies, and ships finished results now and
/// then so that a long batch streams back.
pub(crate) trait Progress {
    /// Item `index` of the batch is about to run. `false` stops the batch
    /// before it (the worker is to leave: its task limit is reached).
    fn item_started(&mut self, index: u32) -> bool;

    /// Items before `next` are done and their outcomes are in `out`: a
    /// chance to send them back.
    fn chunk_done(&mut self, next: u32, out: &mut Vec<u8>);

    /// Insights: items `first .. first + count` ran, their calls in
    /// `call_nanos`, their decoding and encoding in `codec_nanos`. Unless
    /// `each` (every item was reported to [`item_ran`](Progress::item_ran)),
    /// the chunk was timed as a whole.
    fn chunk_ran(
        &mut self,
        _first: u32,
        _count: u32,
        _call_nanos: u64,
        _codec_nanos: u64,
        _each: bool,
    ) {
    }

    /// Insights: item `index` ran in `nanos` (only items that take a
    /// microsecond or more are timed one by one).
    fn item_ran(&mut self, _index: u32, _nanos: u64) {}
}

/// Items of a chunk are timed one by one when the previous chunk's took at
/// least this long each: a clock read (~25 ns) is then under 3 % of an item.
const TIME_EACH_NANOS: u64 = 1_000;

/// Items decoded, run and encoded together: enough for the calls to overlap
/// their memory latency, few enough that outcomes stream back steadily.
const CHUNK: usize = 64;

/// One batch of inputs on its way through a worker.
pub struct Batch<'a> {
    input: &'a [u8],
    count: u32,
    out: &'a mut Vec<u8>,
    progress: &'a mut dyn Progress,
    /// Items that ran (all of them unless the progress stopped the batch).
    ran: u32,
}

impl std::fmt::Debug for Batch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl<'a> Batch<'a> {
    pub(crate) fn new(
        input: &'a [u8],
        count: u32,
        out: &'a mut Vec<u8>,
        progress: &'a mut dyn Progress,
    ) -> Self {
        Batch {
            input,
            count,
            out,
            progress,
            ran: 0,
        }
    }

    fn push<T: Serialize + ?Sized>(&mut self, status: Status, value: &T) {
        outcome::write(self.out, status, value);
    }

    /// Runs the batch in chunks of up to [`CHUNK`] items, each in three phases:
    /// decode the chunk's inputs, call the task on all of them, encode all
    /// the outcomes. The tight middle loop lets the CPU overlap the memory
    /// latency of one call with the next, which a decode and an encode
    /// between every two calls prevents (measured: 390 → 200 ns per item on
    /// the seeds' workload, BENCHMARKS.md). Chunks start at one item and
    /// double while they take under a millisecond, so slow items still
    /// report one by one.
    fn run<A, R>(&mut self, mut call: impl FnMut(A) -> R) -> Result<(), String>
    where
        A: DeserializeOwned,
        R: Serialize,
    {
        let room = CHUNK.min(self.count as usize);
        let mut inputs: Vec<A> = Vec::with_capacity(room);
        let mut outputs: Vec<Result<R, String>> = Vec::with_capacity(room);
        let mut next = 0;
        let mut chunk = 1u32;
        let mut each = false;
        // A chunk starts when the one before it ended (one clock read less
        // per chunk), unless a flush came between them.
        let mut started = std::time::Instant::now();
        // Decoding, calls and encoding are timed apart (two more clock
        // reads) on the first chunks, on chunks timed item by item, and on
        // one full chunk in 8; the others are timed whole, their codec time
        // taken per item from the last chunk measured (the calls get the
        // rest: a slow call stays a slow call).
        let (mut sample, mut codec_per_item) = (0u32, (0u64, 1u64));
        while next < self.count {
            let end = (next + chunk).min(self.count);
            let split = each || chunk < CHUNK as u32 || sample % 8 == 0;
            sample = sample.wrapping_add(1);
            let mut undecodable = None;
            for _ in next..end {
                match codec::decode::<A>(self.input) {
                    Ok((input, rest)) => {
                        self.input = rest;
                        inputs.push(input);
                    }
                    Err(e) => {
                        undecodable = Some(e);
                        break;
                    }
                }
            }
            let decoded = if split {
                std::time::Instant::now()
            } else {
                started
            };
            let mut stopped = false;
            if each {
                stopped = self.call_timed(next, decoded, &mut inputs, &mut outputs, &mut call);
            } else {
                for (k, input) in inputs.drain(..).enumerate() {
                    if !self.progress.item_started(next + k as u32) {
                        stopped = true;
                        break;
                    }
                    outputs.push(
                        catch_unwind(AssertUnwindSafe(|| call(input)))
                            .map_err(|p| panic_message(&*p)),
                    );
                }
            }
            let called = if split {
                std::time::Instant::now()
            } else {
                started
            };
            let ran = outputs.len() as u32;
            for output in outputs.drain(..) {
                match output {
                    Ok(value) => self.push(Status::Ok, &value),
                    Err(message) => self.push(Status::Panicked, &message),
                }
            }
            let encoded = std::time::Instant::now();
            let total = (encoded - started).as_nanos() as u64;
            let (call_nanos, codec_nanos) = if split {
                let call = (called - decoded).as_nanos() as u64;
                codec_per_item = (total.saturating_sub(call), ran.max(1) as u64);
                (call, total.saturating_sub(call))
            } else {
                let (codec, items) = codec_per_item;
                let codec = (codec.saturating_mul(ran as u64) / items).min(total);
                (total - codec, codec)
            };
            self.progress
                .chunk_ran(next, ran, call_nanos, codec_nanos, each);
            each = ran > 0 && call_nanos >= TIME_EACH_NANOS * ran as u64;
            if stopped {
                self.ran = next + ran;
                return Ok(());
            }
            if let Some(e) = undecodable {
                // The cursor is lost: this item and every later one fail.
                let msg = format!("could not decode the input: {e}");
                for _ in next + ran..self.count {
                    self.push(Status::Codec, msg.as_str());
                }
                break;
            }
            next = end;
            if chunk < CHUNK as u32 && encoded - started < std::time::Duration::from_millis(1) {
                chunk *= 2;
            }
            // The last chunk's outcomes go back with the end of the batch.
            if next < self.count {
                let before = self.out.len();
                self.progress.chunk_done(next, self.out);
                // A flush sent the outcomes (and counted its time as io).
                started = if self.out.len() < before {
                    std::time::Instant::now()
                } else {
                    encoded
                };
            }
        }
        self.ran = self.count;
        Ok(())
    }

    /// The call loop for items of a microsecond or more: a clock read after
    /// each, for the slowest items. Kept out of `run`'s loop, whose tight
    /// code it would slow (measured: ~1.5 ns an item on cheap items).
    /// `true` if the progress stopped the batch.
    #[inline(never)]
    fn call_timed<A, R>(
        &mut self,
        first: u32,
        mut last: std::time::Instant,
        inputs: &mut Vec<A>,
        outputs: &mut Vec<Result<R, String>>,
        call: &mut impl FnMut(A) -> R,
    ) -> bool {
        for (k, input) in inputs.drain(..).enumerate() {
            if !self.progress.item_started(first + k as u32) {
                return true;
            }
            outputs.push(
                catch_unwind(AssertUnwindSafe(|| call(input))).map_err(|p| panic_message(&*p)),
            );
            let now = std::time::Instant::now();
            let took = (now - last).as_nanos() as u64;
            self.progress.item_ran(first + k as u32, took);
            last = now;
        }
        false
    }

    /// How many items ran (or failed to decode): the rest were not started.
    pub(crate) fn ran(&self) -> u32 {
        self.ran
    }
}

thread_local! {
    /// The message and location of the last panic on this thread, recorded by
    /// the panic hook (the payload alone has no location).
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
    /// This thread is a worker's: its panics are recorded, not printed.
    static RECORDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs, once per process, a panic hook that records panics on worker
/// threads and hands every other panic to the hook that was there before.
///
/// Called in the driver before its first fork, never in a worker: setting a
/// hook takes std's hook lock for writing, and a fork copies that lock as it
/// is, so a worker forked while some driver thread was panicking would wait
/// for it forever. Reading it, as a panic does, is fine.
pub(crate) fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if RECORDING.with(std::cell::Cell::get) {
                let text = match info.payload().downcast_ref::<&str>() {
                    Some(s) => s.to_string(),
                    None => info
                        .payload()
                        .downcast_ref::<String>()
                        .cloned()
                        .unwrap_or_else(|| "Box<dyn Any>".into()),
                };
                let at = info
                    .location()
                    .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()))
                    .unwrap_or_default();
                LAST_PANIC.with(|last| *last.borrow_mut() = Some(format!("{text}{at}")));
            } else {
                previous(info);
            }
        }));
    });
}

/// In a worker: record this thread's panics as task errors instead of printing them.
pub(crate) fn record_panics_here() {
    RECORDING.with(|r| r.set(true));
}

/// The text of a panic: what the worker's hook recorded, else the payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(recorded) = LAST_PANIC.with(|p| p.borrow_mut().take()) {
        return recorded;
    }
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

/// Runs a batch of a task that takes the state `S`.
pub fn run_batch<S: 'static, M, T: Task<S, M>>(
    task: T,
    state: &mut dyn Any,
    batch: &mut Batch<'_>,
) -> Result<(), String> {
    let state = state.downcast_mut::<S>().ok_or_else(|| {
        format!(
            "task expects a state of type `{}`",
            std::any::type_name::<S>()
        )
    })?;
    batch.run(|input| task.call(state, input))
}

/// Runs a batch of a task that takes no state.
pub fn run_stateless<M, T: Task<(), M>>(
    task: T,
    _state: &mut dyn Any,
    batch: &mut Batch<'_>,
) -> Result<(), String> {
    batch.run(|input| task.call(&mut (), input))
}

/// Consumes a worker's state with an exit hook and encodes what it returns,
/// preceded by its status byte.
pub fn run_exit<S: 'static, E: Exit<S>>(
    exit: E,
    state: Box<dyn Any>,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let state = state.downcast::<S>().map_err(|_| {
        format!(
            "exit hook expects a state of type `{}`",
            std::any::type_name::<S>()
        )
    })?;
    let mut p = NoProgress;
    let mut batch = Batch::new(&[], 0, out, &mut p);
    match catch_unwind(AssertUnwindSafe(move || exit.call(*state))) {
        Ok(output) => batch.push(Status::Ok, &output),
        Err(payload) => batch.push(Status::Panicked, &panic_message(&*payload)),
    }
    Ok(())
}

struct NoProgress;
impl Progress for NoProgress {
    fn item_started(&mut self, _: u32) -> bool {
        true
    }

    fn chunk_done(&mut self, _: u32, _: &mut Vec<u8>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_square(inputs: &[u8], count: u32) -> Vec<u8> {
        fn square(x: u64) -> u64 {
            if x == 3 {
                panic!("three");
            }
            x * x
        }
        let mut out = Vec::new();
        let mut p = NoProgress;
        let mut batch = Batch::new(inputs, count, &mut out, &mut p);
        run_stateless(square, &mut (), &mut batch).unwrap();
        out
    }

    #[test]
    fn each_item_gets_its_outcome() {
        let mut inputs = Vec::new();
        for x in [2u64, 3, 4] {
            codec::encode(&x, &mut inputs).unwrap();
        }
        let out = run_square(&inputs, 3);
        let (s0, rest) = (out[0], &out[1..]);
        let (v0, rest): (u64, _) = codec::decode(rest).unwrap();
        let (s1, rest) = (rest[0], &rest[1..]);
        let (m1, rest): (String, _) = codec::decode(rest).unwrap();
        let (s2, rest) = (rest[0], &rest[1..]);
        let (v2, rest): (u64, _) = codec::decode(rest).unwrap();
        assert_eq!((s0, v0, s1, s2, v2, rest.len()), (0, 4, 1, 0, 16, 0));
        assert!(m1.contains("three"), "{m1}");
    }

    /// What a batch reports for insights: `(first, count, each)` per chunk,
    /// and the items timed one by one.
    #[derive(Default)]
    struct Timings {
        chunks: Vec<(u32, u32, bool)>,
        /// Each chunk's call time, in ns.
        nanos: Vec<u64>,
        items: Vec<u32>,
    }

    impl Progress for Timings {
        fn item_started(&mut self, _: u32) -> bool {
            true
        }
        fn chunk_done(&mut self, _: u32, _: &mut Vec<u8>) {}
        fn chunk_ran(&mut self, first: u32, count: u32, call: u64, _: u64, each: bool) {
            self.chunks.push((first, count, each));
            self.nanos.push(call);
        }
        fn item_ran(&mut self, index: u32, _: u64) {
            self.items.push(index);
        }
    }

    fn timings(count: u32, task: fn(u64) -> u64) -> Timings {
        let mut inputs = Vec::new();
        for x in 0..count as u64 {
            codec::encode(&x, &mut inputs).unwrap();
        }
        let (mut out, mut t) = (Vec::new(), Timings::default());
        let mut batch = Batch::new(&inputs, count, &mut out, &mut t);
        run_stateless(task, &mut (), &mut batch).unwrap();
        t
    }

    #[test]
    fn cheap_items_are_timed_per_chunk_and_slow_ones_one_by_one() {
        fn cheap(x: u64) -> u64 {
            x + 1
        }
        fn slow(x: u64) -> u64 {
            std::thread::sleep(std::time::Duration::from_micros(20));
            x
        }
        // Cheap: chunks of 1, 2, 4 … 64. A chunk is timed item by item
        // exactly when the one before took a microsecond or more per item
        // (the first call is often cold; a preempted chunk is slow too, so
        // how many are is the machine's business, not this test's).
        let t = timings(10_000, cheap);
        assert_eq!(t.chunks.iter().map(|c| c.1).sum::<u32>(), 10_000);
        assert_eq!(t.chunks[0].1, 1);
        assert!(t.chunks.iter().all(|c| c.1 <= CHUNK as u32));
        let mut timed = Vec::new();
        for k in 1..t.chunks.len() {
            let (first, count, each) = t.chunks[k];
            let before = t.nanos[k - 1] >= TIME_EACH_NANOS * t.chunks[k - 1].1 as u64;
            assert_eq!(each, before, "chunk {k}: {:?}", t.chunks[k]);
            if each {
                timed.extend(first..first + count);
            }
        }
        assert_eq!(t.items, timed);
        // Slow: the first item alone, then every later one on its own clock.
        let t = timings(50, slow);
        assert_eq!(t.items, (1..50).collect::<Vec<_>>());
        assert_eq!(t.chunks[0], (0, 1, false));
        assert!(t.chunks[1..].iter().all(|c| c.2), "{:?}", t.chunks);
    }

    #[test]
    fn undecodable_input_fails_the_rest_of_the_batch() {
        let out = run_square(&[0xff], 2);
        assert_eq!(out[0], Status::Codec as u8);
        let (msg, rest): (String, _) = codec::decode(&out[1..]).unwrap();
        assert!(msg.contains("decode"), "{msg}");
        assert_eq!(rest[0], Status::Codec as u8);
    }
}
