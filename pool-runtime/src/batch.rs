//! Worker-side glue: decode each input of a batch, call the task, encode each
//! outcome. Monomorphized per task by the registry entries the macros emit.
//!
//! Every step that runs user code (the input's `Deserialize`, the task, the
//! result's `Serialize`) is marked in the worker's step cell first, and
//! runs under a catch: an error or a panic there is that item's outcome, and
//! a death there is blamed on that item by the driver. Items are
//! length-delimited on the wire, so one that fails leaves the others whole.

use std::any::Any;

use serde::Serialize;

use crate::channel::item;
use crate::channel::outcome::{self, Failure, Status};
use crate::codec::CodecError;
use crate::sys::{Phase, StepCell};
use crate::task::Call;
use crate::unwind::{catch, Caught};

pub(crate) mod stages;

/// Called by a batch at the end of each chunk of items: it ships finished
/// results now and then so that a long batch streams back, and takes the
/// batch's timings for insights.
pub trait Report {
    /// Items before `next` are done and their outcomes are in `out`: a
    /// chance to send them back.
    fn chunk_done(&mut self, next: u32, out: &mut Vec<u8>);

    /// Insights: items `first .. first + count` ran, their calls in
    /// `call_nanos`, their decoding and encoding in `codec_nanos`. Unless
    /// `each` (every item was reported to [`item_ran`](Report::item_ran)),
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

/// A chunk whose outcomes take this many bytes or more does not grow: large
/// results then end a chunk one by one, and the worker can send each in a
/// frame of its own (`worker.rs`, `Flusher`), whose allocation the driver
/// hands to the caller as the result (`codec::take_tail`).
pub(crate) const BIG_CHUNK: usize = 1 << 20;

/// Items decoded, run and encoded together: enough for the calls to overlap
/// their memory latency, few enough that outcomes stream back steadily.
const CHUNK: usize = 64;

/// An item that failed before its outcome was written (boxed: the happy
/// path's `Result<A, Failed>` stays small).
type Failed = Box<Failure>;

fn failed(status: Status, message: String) -> Failed {
    Box::new(Failure::Message(status, message))
}

/// A panic in user code `during` a step of an item (empty: in the task).
#[cold]
fn panicked(panic: Caught, during: &str) -> Failed {
    Box::new(Failure::Panicked(panic.during(during)))
}

/// One batch of inputs on its way through a worker.
pub struct Batch<'a> {
    input: item::Items<'a>,
    count: u32,
    out: &'a mut Vec<u8>,
    report: &'a mut dyn Report,
    /// Where the driver sees which item runs, and in which phase.
    cell: Option<&'a StepCell>,
    /// Items from this one on are not started (the worker's task limit).
    stop_at: u32,
    /// The length guess of [`outcome::write`], carried from item to item.
    long: bool,
    /// Items that ran (all of them unless the task limit stopped the batch).
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
    /// A batch of the `count` items of `input` (a `Run` body), whose
    /// outcomes go to `out`, `report` seeing each chunk end.
    pub fn new(
        input: &'a [u8],
        count: u32,
        out: &'a mut Vec<u8>,
        report: &'a mut dyn Report,
    ) -> Self {
        Batch {
            input: item::Items::new(input),
            count,
            out,
            report,
            cell: None,
            stop_at: u32::MAX,
            long: false,
            ran: 0,
        }
    }

    /// Marks each step of each item in `cell`, for the driver to see.
    pub(crate) fn marking(mut self, cell: &'a StepCell) -> Self {
        self.cell = Some(cell);
        self
    }

    /// Starts no item from `stop_at` on.
    pub(crate) fn stopping_at(mut self, stop_at: u32) -> Self {
        self.stop_at = stop_at;
        self
    }

    /// Starts with the length guess of [`outcome::write`] that the last
    /// batch ended with (see [`long_guess`](Batch::long_guess)): a worker
    /// whose results are large keeps guessing so from batch to batch.
    pub(crate) fn guessing_long(mut self, long: bool) -> Self {
        self.long = long;
        self
    }

    /// The length guess the batch ended with.
    pub(crate) fn long_guess(&self) -> bool {
        self.long
    }

    #[inline]
    fn mark(&self, item: u32, phase: Phase) {
        if let Some(cell) = self.cell {
            cell.mark(item, phase);
        }
    }

    fn push<T: Serialize + ?Sized>(&mut self, status: Status, value: &T) {
        outcome::write(self.out, status, value, &mut self.long);
    }

    /// Runs the batch in chunks of up to [`CHUNK`] items, each in three phases:
    /// decode the chunk's inputs, call the task on all of them, encode all
    /// the outcomes. The tight middle loop lets the CPU overlap the memory
    /// latency of one call with the next, which a decode and an encode
    /// between every two calls prevents (measured: 390 → 200 ns per item on
    /// the seeds' workload, BENCHMARKS.md). Chunks start at one item and
    /// double while they take under a millisecond, so slow items still
    /// report one by one. `Err` only for a body that is not a list of items
    /// (a protocol error). `decode` reads one input from all of its bytes.
    fn run<A, R>(
        &mut self,
        decode: impl Fn(&[u8]) -> Result<A, CodecError>,
        mut call: impl FnMut(A) -> R,
    ) -> Result<(), String>
    where
        R: Serialize,
    {
        let room = CHUNK.min(self.count as usize);
        let mut inputs: Vec<Result<A, Failed>> = Vec::with_capacity(room);
        let mut outputs: Vec<Result<R, Failed>> = Vec::with_capacity(room);
        let mut next = 0;
        let mut chunk = 1u32;
        let mut each = false;
        // A chunk starts when the one before it ended (one clock read less
        // per chunk), unless a flush came between them.
        let mut started = std::time::Instant::now();
        // Decoding, calls and encoding are timed apart (two more clock
        // reads) on the first chunks, on chunks timed item by item, and on
        // one full chunk in 8; the others are timed whole, their codec time
        // taken per item from the cheapest chunk measured (the calls get the
        // rest: a slow call stays a slow call; a measure that a preemption
        // or a page fault inflated would take time from it).
        // (nanos, items): none measured yet is dearer than any measure.
        let (mut sample, mut codec_per_item) = (0u32, (u64::MAX, 1u64));
        while next < self.count {
            let end = (next + chunk).min(self.count);
            let split = each || chunk < CHUNK as u32 || sample % 8 == 0;
            sample = sample.wrapping_add(1);
            self.decode_chunk(next, end, &decode, &mut inputs)?;
            let decoded = if split {
                std::time::Instant::now()
            } else {
                started
            };
            let stopped = if each {
                self.call_timed(next, decoded, &mut inputs, &mut outputs, &mut call)
            } else {
                self.call_chunk(next, &mut inputs, &mut outputs, &mut call)
            };
            let called = if split {
                std::time::Instant::now()
            } else {
                started
            };
            let ran = outputs.len() as u32;
            let written = self.out.len();
            self.encode_chunk(next, &mut outputs);
            let big = self.out.len() - written >= BIG_CHUNK;
            let encoded = std::time::Instant::now();
            let total = (encoded - started).as_nanos() as u64;
            let (call_nanos, codec_nanos) = if split {
                let call = (called - decoded).as_nanos() as u64;
                let this = (total.saturating_sub(call), ran.max(1) as u64);
                // Per item, `this` is cheaper: a/b < c/d.
                if u128::from(this.0) * u128::from(codec_per_item.1) < u128::from(codec_per_item.0) * u128::from(this.1) {
                    codec_per_item = this;
                }
                (call, total.saturating_sub(call))
            } else {
                let (codec, items) = codec_per_item;
                let codec = (codec.saturating_mul(ran as u64) / items).min(total);
                (total - codec, codec)
            };
            self.report
                .chunk_ran(next, ran, call_nanos, codec_nanos, each);
            each = ran > 0 && call_nanos >= TIME_EACH_NANOS * ran as u64;
            if stopped {
                self.ran = next + ran;
                return Ok(());
            }
            next = end;
            if chunk < CHUNK as u32
                && !big
                && encoded - started < std::time::Duration::from_millis(1)
            {
                chunk *= 2;
            }
            // The last chunk's outcomes go back with the end of the batch.
            if next < self.count {
                let before = self.out.len();
                self.report.chunk_done(next, self.out);
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

    /// Decodes items `from .. to` into `inputs`: each its value, or why it
    /// has none (its `Deserialize` erred or panicked). One catch covers a
    /// run of items; after a panic the next run starts past the item that
    /// panicked, its bytes skipped by their length.
    fn decode_chunk<A>(
        &mut self,
        from: u32,
        to: u32,
        decode: &impl Fn(&[u8]) -> Result<A, CodecError>,
        inputs: &mut Vec<Result<A, Failed>>,
    ) -> Result<(), String> {
        let mut i = from;
        while i < to {
            let (cell, mut input) = (self.cell, self.input);
            let run = catch(|| {
                while i < to {
                    if let Some(cell) = cell {
                        cell.mark(i, Phase::Decode);
                    }
                    let (status, value) = input.next_item()?;
                    inputs.push(if status == Status::Ok as u8 {
                        decode(value).map_err(|e| {
                            failed(Status::Codec, format!("could not decode the input: {e}"))
                        })
                    } else {
                        // The driver could not encode this input: its error instead.
                        Err(Box::new(outcome::carried(status, value)))
                    });
                    i += 1;
                }
                Ok::<(), item::Malformed>(())
            });
            self.input = input;
            match run {
                Ok(Ok(())) => {}
                Ok(Err(malformed)) => return Err(malformed.to_string()),
                Err(panic) => {
                    inputs.push(Err(panicked(panic, "while decoding the input")));
                    i += 1;
                }
            }
        }
        Ok(())
    }

    /// Encodes the outcomes of items `first ..` from `outputs`, which it
    /// empties. One catch covers a run of items; a panic in a result's
    /// `Serialize` takes back what that item wrote and fails it alone.
    fn encode_chunk<R: Serialize>(&mut self, first: u32, outputs: &mut Vec<Result<R, Failed>>) {
        if self.encode_dense(first, outputs) {
            return;
        }
        let mut k = 0;
        while k < outputs.len() {
            let (cell, out, long) = (self.cell, &mut *self.out, &mut self.long);
            let mut mark = out.len();
            let run = catch(|| {
                while k < outputs.len() {
                    if let Some(cell) = cell {
                        cell.mark(first + k as u32, Phase::Encode);
                    }
                    mark = out.len();
                    match &outputs[k] {
                        Ok(value) => outcome::write(out, Status::Ok, value, long),
                        Err(f) => outcome::write_failure(out, f, long),
                    }
                    k += 1;
                }
            });
            if let Err(panic) = run {
                self.out.truncate(mark);
                let panic = panic.during("while encoding the result");
                outcome::write_panic(self.out, &panic, &mut self.long);
                k += 1;
            }
        }
        outputs.clear();
    }

    /// [`encode_chunk`](Batch::encode_chunk) for a result of a fixed-width
    /// type: the outputs in dense runs (`channel/item.rs`), an item that
    /// failed an ordinary item between two of them. Their encoding is the
    /// codec's own, no user code, and cannot fail or panic. `false` (and
    /// nothing done) for any other type.
    #[inline(always)]
    fn encode_dense<R: Serialize>(&mut self, first: u32, outputs: &mut Vec<Result<R, Failed>>) -> bool {
        let Some(width) = crate::codec::fixed_width::<R>() else {
            return false;
        };
        self.mark(first, Phase::Encode);
        let mut run = item::begin_dense(self.out, width);
        for output in outputs.drain(..) {
            match output {
                Ok(value) => {
                    let written = crate::codec::encode(&value, self.out);
                    debug_assert!(written.is_ok(), "a fixed-width value always encodes");
                }
                Err(f) => {
                    item::end_dense(self.out, run);
                    outcome::write_failure(self.out, &f, &mut self.long);
                    run = item::begin_dense(self.out, width);
                }
            }
        }
        item::end_dense(self.out, run);
        true
    }

    /// The call loop for cheap items: the task on each input of the chunk
    /// (items `first ..`), in order, into `outputs`. One catch covers a run
    /// of calls (a catch per call costs a call frame an item, measured on
    /// tiny tasks); a call that panics fails its item alone, and the run
    /// goes on after it. `true` if the task limit stopped the batch.
    #[inline(always)]
    fn call_chunk<A, R>(
        &self,
        first: u32,
        inputs: &mut Vec<Result<A, Failed>>,
        outputs: &mut Vec<Result<R, Failed>>,
        call: &mut impl FnMut(A) -> R,
    ) -> bool {
        let (cell, stop_at) = (self.cell, self.stop_at);
        let mut each = inputs.drain(..).enumerate();
        loop {
            let run = catch(|| {
                for (k, input) in &mut each {
                    let i = first + k as u32;
                    if i >= stop_at {
                        return true;
                    }
                    outputs.push(match input {
                        Ok(input) => {
                            if let Some(cell) = cell {
                                cell.mark(i, Phase::Run);
                            }
                            Ok(call(input))
                        }
                        Err(failed) => Err(failed),
                    });
                }
                false
            });
            match run {
                Ok(stopped) => return stopped,
                // The item whose call panicked: the drain is past it.
                Err(panic) => outputs.push(Err(panicked(panic, ""))),
            }
        }
    }

    /// Item `i`'s outcome: the task called on its input (which may have
    /// failed to decode), or `None` if the task limit stops the batch before it.
    #[inline(always)]
    fn call_item<A, R>(
        &self,
        i: u32,
        input: Result<A, Failed>,
        call: &mut impl FnMut(A) -> R,
    ) -> Option<Result<R, Failed>> {
        if i >= self.stop_at {
            return None;
        }
        Some(input.and_then(|input| {
            self.mark(i, Phase::Run);
            catch(|| call(input)).map_err(|panic| panicked(panic, ""))
        }))
    }

    /// The call loop for items of a microsecond or more: a clock read after
    /// each, for the slowest items. Kept out of `run`'s loop, whose tight
    /// code it would slow (measured: ~1.5 ns an item on cheap items).
    /// `true` if the task limit stopped the batch.
    #[inline(never)]
    fn call_timed<A, R>(
        &mut self,
        first: u32,
        mut last: std::time::Instant,
        inputs: &mut Vec<Result<A, Failed>>,
        outputs: &mut Vec<Result<R, Failed>>,
        call: &mut impl FnMut(A) -> R,
    ) -> bool {
        for (k, input) in inputs.drain(..).enumerate() {
            let i = first + k as u32;
            let Some(output) = self.call_item(i, input, call) else {
                return true;
            };
            outputs.push(output);
            let now = std::time::Instant::now();
            let took = (now - last).as_nanos() as u64;
            self.report.item_ran(i, took);
            last = now;
        }
        false
    }

    /// How many items ran (or failed to decode): the rest were not started.
    pub fn ran(&self) -> u32 {
        self.ran
    }
}

/// Runs a batch of a task that takes the state `S`, decoding each input
/// with `decode` (the macros pass one that bounds each argument type).
///
/// `Call` has no serde bound, and `R` only the one the worker needs: the
/// macros assert `TaskOutput` on the same type, under the user's result
/// type, which implies it, so a result that is not serde is one error, not
/// one more for this call.
pub fn run_batch<S: 'static, I, R: Serialize, M, F, D>(
    task: F,
    decode: D,
    state: &mut dyn Any,
    batch: &mut Batch<'_>,
) -> Result<(), String>
where
    F: Call<S, M, Input = I, Output = R>,
    D: Fn(&[u8]) -> Result<I, CodecError>,
{
    let state = state.downcast_mut::<S>().ok_or_else(|| {
        format!(
            "task expects a state of type `{}`",
            std::any::type_name::<S>()
        )
    })?;
    batch.run(decode, |input| task.call(state, input))
}

/// Runs a batch of a task that takes no state (see [`run_batch`]).
pub fn run_stateless<I, R: Serialize, M, F, D>(
    task: F,
    decode: D,
    _state: &mut dyn Any,
    batch: &mut Batch<'_>,
) -> Result<(), String>
where
    F: Call<(), M, Input = I, Output = R>,
    D: Fn(&[u8]) -> Result<I, CodecError>,
{
    batch.run(decode, |input| task.call(&mut (), input))
}

/// Consumes a worker's state with an exit hook and appends its outcome.
/// Bounded like [`run_batch`]: by `R: Serialize`, not by [`Exit`](crate::Exit).
pub fn run_exit<S: 'static, R: Serialize, F: Fn(S) -> R>(
    exit: F,
    state: Box<dyn Any>,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let state = state.downcast::<S>().map_err(|_| {
        format!(
            "exit hook expects a state of type `{}`",
            std::any::type_name::<S>()
        )
    })?;
    let mark = out.len();
    let mut long = false;
    let written = catch(|| match catch(move || exit(*state)) {
        Ok(output) => outcome::write(out, Status::Ok, &output, &mut long),
        Err(panic) => outcome::write_panic(out, &panic.during(""), &mut long),
    });
    if let Err(panic) = written {
        out.truncate(mark);
        let panic = panic.during("while encoding the result");
        outcome::write_panic(out, &panic, &mut false);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use serde::de::DeserializeOwned;

    struct NoReport;
    impl Report for NoReport {
        fn chunk_done(&mut self, _: u32, _: &mut Vec<u8>) {}
    }

    /// `values` as the items of a `Run` body.
    fn body<T: Serialize>(values: &[T]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut long = false;
        for v in values {
            item::write(&mut out, 0, v, &mut long).unwrap();
        }
        out
    }

    /// The outcomes of a `Done` body, read as the driver does.
    fn outcomes<R: DeserializeOwned>(body: &[u8]) -> Vec<Result<R, ErrorKind>> {
        let mut all = Vec::new();
        let mut items = item::Items::new(body);
        while items.between().is_none_or(|rest| !rest.is_empty()) {
            let r = outcome::read::<R>(&mut items).unwrap();
            all.push(r.map_err(|e| e.kind().clone()));
        }
        all
    }

    /// `values` as one dense run, as the driver writes fixed-width inputs
    /// (ordinary items under a codec with no fixed width: bincode's).
    fn dense(values: &[u64]) -> Vec<u8> {
        if crate::codec::fixed_width::<u64>().is_none() {
            return body(values);
        }
        let mut out = Vec::new();
        let run = item::begin_dense(&mut out, 8);
        for v in values {
            crate::codec::encode(v, &mut out).unwrap();
        }
        item::end_dense(&mut out, run);
        out
    }

    fn run_square(inputs: &[u8], count: u32) -> Vec<u8> {
        fn square(x: u64) -> u64 {
            if x == 3 {
                panic!("three");
            }
            x * x
        }
        let mut out = Vec::new();
        let mut p = NoReport;
        let mut batch = Batch::new(inputs, count, &mut out, &mut p);
        run_stateless(square, item::decode, &mut (), &mut batch).unwrap();
        out
    }

    #[test]
    fn dense_inputs_give_dense_outcomes_with_failures_between() {
        let values: Vec<u64> = (0..200).collect();
        let out = run_square(&dense(&values), 200);
        let got = outcomes::<u64>(&out);
        assert_eq!(got.len(), 200);
        for (k, r) in got.iter().enumerate() {
            if k == 3 {
                assert!(matches!(r, Err(ErrorKind::Panicked(m)) if m.contains("three")), "{r:?}");
            } else {
                assert_eq!(r, &Ok(k as u64 * k as u64));
            }
        }
        // One head per run, not per item: well under 9 bytes an outcome.
        assert!(out.len() < 200 * 8 + 100, "{} bytes", out.len());
        // Ordinary items and a dense run in one body read alike.
        let mut mixed = body(&[5u64]);
        mixed.extend(dense(&[6, 7]));
        mixed.extend(body(&["eight".to_string()]));
        let got = outcomes::<u64>(&run_square(&mixed, 4));
        assert_eq!(&got[..3], &[Ok(25), Ok(36), Ok(49)]);
        assert!(matches!(&got[3], Err(ErrorKind::Codec(m)) if m.contains("decode the input")));
    }

    #[test]
    fn each_item_gets_its_outcome() {
        let out = outcomes::<u64>(&run_square(&body(&[2u64, 3, 4]), 3));
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], Ok(4));
        assert!(matches!(&out[1], Err(ErrorKind::Panicked(m)) if m.contains("three")));
        assert_eq!(out[2], Ok(16));
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

    impl Report for Timings {
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
        let inputs = body(&(0..count as u64).collect::<Vec<_>>());
        let (mut out, mut t) = (Vec::new(), Timings::default());
        let mut batch = Batch::new(&inputs, count, &mut out, &mut t);
        run_stateless(task, item::decode, &mut (), &mut batch).unwrap();
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
    fn calls_that_panic_fail_alone_and_the_chunk_goes_on() {
        fn even(x: u64) -> u64 {
            assert!(x.is_multiple_of(2), "odd");
            x
        }
        let inputs = dense(&(0..300).collect::<Vec<_>>());
        let (mut out, mut p) = (Vec::new(), NoReport);
        let mut batch = Batch::new(&inputs, 300, &mut out, &mut p).stopping_at(250);
        run_stateless(even, item::decode, &mut (), &mut batch).unwrap();
        assert_eq!(batch.ran(), 250);
        let got = outcomes::<u64>(&out);
        assert_eq!(got.len(), 250);
        for (k, r) in got.iter().enumerate() {
            match r {
                Ok(v) => assert!(k.is_multiple_of(2) && *v == k as u64, "item {k}: {r:?}"),
                Err(ErrorKind::Panicked(m)) => assert!(k % 2 == 1 && m.contains("odd"), "{k}: {m}"),
                Err(e) => panic!("item {k}: {e:?}"),
            }
        }
    }

    #[test]
    fn large_results_end_their_chunks_one_by_one() {
        fn big(n: u64) -> Vec<u8> {
            vec![n as u8; BIG_CHUNK]
        }
        let inputs = body(&(0..5u64).collect::<Vec<_>>());
        let (mut out, mut t) = (Vec::new(), Timings::default());
        let mut batch = Batch::new(&inputs, 5, &mut out, &mut t);
        run_stateless(big, item::decode, &mut (), &mut batch).unwrap();
        let sizes: Vec<u32> = t.chunks.iter().map(|c| c.1).collect();
        assert_eq!(sizes, [1, 1, 1, 1, 1]);
        let got = outcomes::<Vec<u8>>(&out);
        assert!(got.iter().enumerate().all(|(k, r)| r.as_ref().is_ok_and(|v| v[0] == k as u8)));
    }

    #[test]
    fn an_undecodable_input_fails_alone() {
        // A string where a number is due, between two numbers.
        let mut inputs = body(&[2u64]);
        inputs.extend(body(&["two".to_string()]));
        inputs.extend(body(&[4u64]));
        let out = outcomes::<u64>(&run_square(&inputs, 3));
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], Ok(4));
        assert!(
            matches!(&out[1], Err(ErrorKind::Codec(m)) if m.contains("decode the input")),
            "{:?}",
            out[1]
        );
        assert_eq!(out[2], Ok(16));
    }

    /// Fails as its value says, in its `Serialize` or `Deserialize`.
    #[derive(Debug)]
    struct Touchy(u8);

    impl Serialize for Touchy {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self.0 {
                1 => Err(serde::ser::Error::custom("touchy refuses to be written")),
                2 => panic!("touchy panics when written"),
                n => s.serialize_u8(n),
            }
        }
    }

    impl<'de> serde::Deserialize<'de> for Touchy {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            match u8::deserialize(d)? {
                11 => Err(serde::de::Error::custom("touchy refuses to be read")),
                12 => panic!("touchy panics when read"),
                n => Ok(Touchy(n)),
            }
        }
    }

    #[test]
    fn user_serde_failures_fail_their_item_alone_with_the_users_words() {
        fn echo(t: Touchy) -> Touchy {
            Touchy(t.0 % 10)
        }
        // Inputs: fine, refuses to decode, panics decoding, fine; then
        // results that refuse to encode and panic encoding, and fine.
        let inputs = body(&[0u8, 11, 12, 3, 1, 2, 4]);
        let mut out = Vec::new();
        let mut p = NoReport;
        let mut batch = Batch::new(&inputs, 7, &mut out, &mut p);
        run_stateless(echo, item::decode, &mut (), &mut batch).unwrap();
        assert_eq!(batch.ran(), 7);
        let got = outcomes::<u8>(&out);
        assert_eq!(got.len(), 7);
        assert_eq!(got[0], Ok(0));
        assert!(
            matches!(&got[1], Err(ErrorKind::Codec(m)) if m == "could not decode the input: touchy refuses to be read"),
            "{:?}",
            got[1]
        );
        assert!(
            matches!(&got[2], Err(ErrorKind::Panicked(m)) if m.starts_with("while decoding the input: touchy panics when read")),
            "{:?}",
            got[2]
        );
        assert_eq!(got[3], Ok(3));
        assert!(
            matches!(&got[4], Err(ErrorKind::Codec(m)) if m == "could not encode the result: touchy refuses to be written"),
            "{:?}",
            got[4]
        );
        assert!(
            matches!(&got[5], Err(ErrorKind::Panicked(m)) if m.starts_with("while encoding the result: touchy panics when written")),
            "{:?}",
            got[5]
        );
        assert_eq!(got[6], Ok(4));
    }

    #[test]
    fn a_body_that_is_not_items_is_a_protocol_error() {
        let mut out = Vec::new();
        let mut p = NoReport;
        // A head that claims 30 bytes, and 2 there.
        let mut batch = Batch::new(&[30 << 3, 1, 2], 1, &mut out, &mut p);
        assert!(run_stateless(|x: u64| x, item::decode, &mut (), &mut batch).is_err());
    }
}
