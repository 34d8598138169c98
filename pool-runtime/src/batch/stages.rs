//! Worker-side glue for pipelines: each task's registry entry carries a
//! type-erased [`StageGlue`], and [`Batch::run_stages`] threads one input
//! through a chain of them, so that the values between stages stay in the
//! worker's memory and never touch the codec.
//!
//! The chain is checked at compile time where the pipeline is built (the
//! driver): here a type that does not match is a protocol error, not a panic.

use super::{Batch, CHUNK};
use crate::channel::outcome::{self, Status};
use crate::sys::Phase;
use crate::codec::CodecError;
use crate::error::Panic;
use crate::task::Call;
use crate::unwind::catch;
use serde::Serialize;
use std::any::Any;
use std::fmt::Display;
use std::marker::PhantomData;

/// A boxed stage value: an input, or an output on its way to the next stage.
pub type Value = Box<dyn Any>;

/// Decodes one input from all of its bytes.
pub type DecodeGlue = fn(&[u8]) -> Result<Value, String>;

/// What a stage's output becomes when the next stage takes its `Ok` side.
#[derive(Debug)]
pub enum Split {
    /// `Ok(v)`: `v` goes on to the next stage.
    Next(Value),
    /// `Err(e)`: the input ends here with `e`'s `Display`.
    Stop(String),
    /// The output is not a `Result<T, E: Display>` (never, for a pipeline
    /// that compiled).
    NotAResult,
}

/// One task's type-erased entry points, for use as a pipeline stage.
#[derive(Debug, Clone, Copy)]
pub struct StageGlue {
    /// Decodes one input of the task from all of its bytes.
    pub decode: DecodeGlue,
    /// Calls the task on the worker's state and a boxed input.
    pub call: fn(&mut dyn Any, Value) -> Result<Value, String>,
    /// Appends the boxed output as an `Ok` outcome (the `bool`: the length
    /// guess carried from one outcome to the next).
    pub encode: fn(&dyn Any, &mut Vec<u8>, &mut bool) -> Result<(), String>,
    /// Splits a boxed `Result<T, E>` output into its `T` or `E`'s message.
    pub split: fn(Value) -> Split,
}

/// [`StageGlue::decode`] of a task whose input `decode` reads (the macros
/// pass one that bounds each argument type, as for [`run_batch`](super::run_batch)).
pub fn stage_decode<I: 'static, D>(decode: D, bytes: &[u8]) -> Result<Value, String>
where
    D: Fn(&[u8]) -> Result<I, CodecError>,
{
    decode(bytes)
        .map(|v| Box::new(v) as Value)
        .map_err(|e| format!("could not decode the input: {e}"))
}

/// [`StageGlue::call`] of a task taking the state `S`. No serde bound: the
/// values stay in the worker.
pub fn stage_call<S: 'static, I: 'static, R: 'static, M, F>(
    task: F,
    state: &mut dyn Any,
    input: Value,
) -> Result<Value, String>
where
    F: Call<S, M, Input = I, Output = R>,
{
    let state = state.downcast_mut::<S>().ok_or_else(|| {
        format!(
            "task expects a state of type `{}`",
            std::any::type_name::<S>()
        )
    })?;
    let input = input.downcast::<I>().map_err(|_| mismatch::<I>())?;
    Ok(Box::new(task.call(state, *input)))
}

/// [`StageGlue::call`] of a task taking no state.
pub fn stage_call_stateless<I: 'static, R: 'static, M, F>(
    task: F,
    _state: &mut dyn Any,
    input: Value,
) -> Result<Value, String>
where
    F: Call<(), M, Input = I, Output = R>,
{
    let input = input.downcast::<I>().map_err(|_| mismatch::<I>())?;
    Ok(Box::new(task.call(&mut (), *input)))
}

/// [`StageGlue::encode`] of a task returning `R` (bounded as in
/// [`run_batch`](super::run_batch)).
pub fn stage_encode<R: Serialize + 'static>(
    output: &dyn Any,
    out: &mut Vec<u8>,
    long: &mut bool,
) -> Result<(), String> {
    let output = output.downcast_ref::<R>().ok_or_else(mismatch::<R>)?;
    outcome::write(out, Status::Ok, output, long);
    Ok(())
}

fn mismatch<T>() -> String {
    format!(
        "a pipeline stage got a value that is not a `{}`",
        std::any::type_name::<T>()
    )
}

/// Picks [`StageGlue::split`] for an output type `R` by autoref
/// specialization: the macros call `(&SplitProbe::<R>::NEW).split_glue()` on
/// the concrete type, and get the `Result` split when `R` is a
/// `Result<T, E: Display>`, else one that says it is not.
#[derive(Debug)]
pub struct SplitProbe<R>(PhantomData<fn() -> R>);

impl<R> SplitProbe<R> {
    /// The probe; only its type matters.
    pub const NEW: Self = SplitProbe(PhantomData);
}

/// The specialized case: `R` is a `Result` whose error has a `Display`.
pub trait SplitResult {
    /// The glue that splits the `Result`.
    fn split_glue(&self) -> fn(Value) -> Split;
}

impl<T: 'static, E: Display + 'static> SplitResult for &SplitProbe<Result<T, E>> {
    fn split_glue(&self) -> fn(Value) -> Split {
        |value| match value.downcast::<Result<T, E>>() {
            Ok(r) => match *r {
                Ok(v) => Split::Next(Box::new(v)),
                Err(e) => Split::Stop(e.to_string()),
            },
            Err(_) => Split::NotAResult,
        }
    }
}

/// The fallback: any other output cannot be split.
pub trait SplitNone {
    /// Glue that says the output is not a `Result`.
    fn split_glue(&self) -> fn(Value) -> Split;
}

impl<R> SplitNone for SplitProbe<R> {
    fn split_glue(&self) -> fn(Value) -> Split {
        |_| Split::NotAResult
    }
}

/// One link of a chain, as the worker runs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Link {
    /// The stage's task, by its stable name (for messages).
    pub(crate) name: &'static str,
    pub(crate) glue: &'static StageGlue,
    /// Whether the next stage takes this one's `Ok` side.
    pub(crate) via_ok: bool,
}

/// What happened to one input on its way through the chain.
enum Fate {
    Done(Value),
    /// The input's `Deserialize` failed: the message says how.
    Undecodable(String),
    /// A stage returned `Err`: the message names it.
    Stopped(String),
    Panicked(Panic),
    /// The chain itself is wrong (a protocol error).
    Broken(String),
}

impl Batch<'_> {
    /// Runs the batch through a chain of stages, item by item, in chunks that
    /// double while they take under a millisecond (as [`Batch::run`] does),
    /// reporting progress at chunk ends. Each step of each item is marked
    /// and caught as in [`Batch::run`]. `Err` when the chain cannot run at
    /// all (empty, or a value of the wrong type) or the body is not a list
    /// of items: the worker then leaves.
    pub(crate) fn run_stages(&mut self, links: &[Link], state: &mut dyn Any) -> Result<(), String> {
        let (Some(first), Some(final_stage)) = (links.first(), links.last()) else {
            return Err("a pipeline with no stage".into());
        };
        let mut next = 0;
        let mut chunk = 1u32;
        // Time items one by one (for the slowest, in insights) once they
        // are known to take a microsecond or more, as `Batch::run` does.
        let mut each = true;
        while next < self.count {
            let end = (next + chunk).min(self.count).min(next + CHUNK as u32);
            let started = std::time::Instant::now();
            let mut last = started;
            for i in next..end {
                if i >= self.stop_at {
                    self.ran = i;
                    return Ok(());
                }
                self.mark(i, Phase::Decode);
                let (status, bytes) = self.input.next_item().map_err(|e| e.to_string())?;
                if status != Status::Ok as u8 {
                    // The driver could not encode this input: its error instead.
                    outcome::write_failure(self.out, &outcome::carried(status, bytes), &mut self.long);
                    continue;
                }
                let fate = match catch(|| (first.glue.decode)(bytes)) {
                    Ok(Ok(input)) => {
                        self.mark(i, Phase::Run);
                        through(links, state, input)
                    }
                    Ok(Err(message)) => Fate::Undecodable(message),
                    Err(panic) => Fate::Panicked(panic.during("while decoding the input")),
                };
                match fate {
                    Fate::Done(v) => {
                        self.mark(i, Phase::Encode);
                        let mark = self.out.len();
                        let encode = final_stage.glue.encode;
                        let (out, long) = (&mut *self.out, &mut self.long);
                        match catch(|| encode(&*v, out, long)) {
                            Ok(written) => written?,
                            Err(panic) => {
                                self.out.truncate(mark);
                                let panic = panic.during("while encoding the result");
                                outcome::write_panic(self.out, &panic, &mut self.long);
                            }
                        }
                    }
                    Fate::Undecodable(msg) => self.push(Status::Codec, msg.as_str()),
                    Fate::Stopped(msg) => self.push(Status::Failed, msg.as_str()),
                    Fate::Panicked(panic) => outcome::write_panic(self.out, &panic, &mut self.long),
                    Fate::Broken(msg) => return Err(msg),
                }
                if each {
                    let now = std::time::Instant::now();
                    self.report.item_ran(i, (now - last).as_nanos() as u64);
                    last = now;
                }
            }
            // Decoding the first input and encoding the last output count
            // as the pipeline's own time: they are not timed apart.
            let took = started.elapsed();
            let ran = end - next;
            let nanos = took.as_nanos() as u64;
            self.report.chunk_ran(next, ran, nanos, 0, each);
            each = nanos >= super::TIME_EACH_NANOS * ran as u64;
            next = end;
            if chunk < CHUNK as u32 && took < std::time::Duration::from_millis(1) {
                chunk *= 2;
            }
            if next < self.count {
                self.report.chunk_done(next, self.out);
            }
        }
        self.ran = self.count;
        Ok(())
    }
}

/// One input through every stage.
fn through(links: &[Link], state: &mut dyn Any, input: Value) -> Fate {
    let mut value = input;
    for (k, link) in links.iter().enumerate() {
        value = match catch(|| (link.glue.call)(state, value)) {
            Ok(Ok(v)) => v,
            Ok(Err(msg)) => return Fate::Broken(msg),
            Err(panic) => return Fate::Panicked(panic.during("")),
        };
        if link.via_ok && k + 1 < links.len() {
            // The error's `Display` is user code too: it may panic.
            value = match catch(|| (link.glue.split)(value)) {
                Err(panic) => return Fate::Panicked(panic.during("")),
                Ok(Split::Next(v)) => v,
                Ok(Split::Stop(msg)) => {
                    return Fate::Stopped(format!("`{}` returned an error: {msg}", link.name))
                }
                Ok(Split::NotAResult) => {
                    return Fate::Broken(format!("`{}` does not return a Result", link.name))
                }
            };
        }
    }
    Fate::Done(value)
}
