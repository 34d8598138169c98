//! Values whose own serde code fails, the way CPython's
//! `test_concurrent_futures/test_deadlock.py` poisons pickling: an input
//! whose `Deserialize`, a result whose `Serialize` or `Deserialize`, or the
//! task itself exits, crashes, aborts, panics or returns an error, and the
//! outcome each must give.
#![allow(dead_code)]

use std::time::Duration;

use pool_runtime::{worker_init, worker_task, ErrorKind, WorkerInfo};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where a poisoned value fails.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The input's `Serialize`, in the driver.
    InputEncode,
    /// The input's `Deserialize`, in the worker.
    InputDecode,
    /// The task.
    Task,
    /// The result's `Serialize`, in the worker.
    ResultEncode,
    /// The result's `Deserialize`, in the driver.
    ResultDecode,
}

/// How it fails.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `std::process::exit(7)`.
    Exit,
    /// A real invalid write.
    Segv,
    /// `std::process::abort()`.
    Abort,
    /// A panic.
    Panic,
    /// The serde error (or, in the task, an `Err` returned).
    Err,
    /// Sleeps for a minute: only on a pool with a task timeout.
    Hang,
}

impl Fault {
    /// The faults that end the process: only ever poisoned in a worker.
    pub fn kills(self) -> bool {
        matches!(self, Fault::Exit | Fault::Segv | Fault::Abort | Fault::Hang)
    }
}

/// An input, poisoned or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Input {
    pub x: u64,
    pub poison: Option<(Stage, Fault)>,
}

impl Input {
    pub fn clean(x: u64) -> Self {
        Input { x, poison: None }
    }

    pub fn poisoned(x: u64, stage: Stage, fault: Fault) -> Self {
        Input {
            x,
            poison: Some((stage, fault)),
        }
    }
}

/// What the task returns: the input's number and its poison, carried on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Output {
    pub x: u64,
    pub poison: Option<(Stage, Fault)>,
}

/// The wire form of both: plain derived serde.
#[derive(Serialize, Deserialize)]
struct Raw {
    x: u64,
    poison: Option<(Stage, Fault)>,
}

/// Fails as `fault` says, here and now; returns the error of an `Err`.
fn strike(fault: Fault, x: u64, what: &str) -> String {
    match fault {
        Fault::Exit => std::process::exit(7),
        Fault::Segv => {
            // A raised SIGSEGV is swallowed by std's stack-overflow handler.
            // SAFETY: not safe at all, on purpose: this must crash the worker.
            unsafe { std::ptr::null_mut::<u64>().write_volatile(x) };
            unreachable!("the write crashed the process")
        }
        Fault::Abort => std::process::abort(),
        Fault::Panic => panic!("{what} {x} panics"),
        Fault::Err => format!("{what} {x} refuses"),
        Fault::Hang => {
            std::thread::sleep(Duration::from_secs(60));
            format!("{what} {x} woke up")
        }
    }
}

fn raw_of(x: u64, poison: Option<(Stage, Fault)>) -> Raw {
    Raw { x, poison }
}

impl Serialize for Input {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let Some((Stage::InputEncode, fault)) = self.poison {
            return Err(serde::ser::Error::custom(strike(
                fault,
                self.x,
                "encoding input",
            )));
        }
        raw_of(self.x, self.poison).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Input {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Raw { x, poison } = Raw::deserialize(d)?;
        if let Some((Stage::InputDecode, fault)) = poison {
            return Err(serde::de::Error::custom(strike(fault, x, "decoding input")));
        }
        Ok(Input { x, poison })
    }
}

impl Serialize for Output {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let Some((Stage::ResultEncode, fault)) = self.poison {
            return Err(serde::ser::Error::custom(strike(
                fault,
                self.x,
                "encoding result",
            )));
        }
        raw_of(self.x, self.poison).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Output {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Raw { x, poison } = Raw::deserialize(d)?;
        if let Some((Stage::ResultDecode, fault)) = poison {
            return Err(serde::de::Error::custom(strike(
                fault,
                x,
                "decoding result",
            )));
        }
        Ok(Output { x, poison })
    }
}

/// A worker's state: its slot's generation (how many workers the slot had
/// before it), and how many items it ran.
pub struct Worker {
    pub generation: u32,
    pub ran: u64,
}

#[worker_init]
pub fn worker(_: &(), me: WorkerInfo) -> Worker {
    Worker {
        generation: me.generation(),
        ran: 0,
    }
}

/// The task: fails if poisoned at `Task`, else hands the poison on.
#[worker_task]
pub fn probe(w: &mut Worker, input: Input) -> Result<Output, String> {
    w.ran += 1;
    if let Some((Stage::Task, fault)) = input.poison {
        return Err(strike(fault, input.x, "task on"));
    }
    Ok(Output {
        x: input.x,
        poison: input.poison,
    })
}

/// A first pipeline stage that hands its input on, unchanged.
#[worker_task]
pub fn touch(_: &mut Worker, input: Input) -> Input {
    input
}

#[worker_task]
pub fn generation(w: &mut Worker) -> u32 {
    w.generation
}

/// The worker deaths so far: the sum of the slots' generations.
pub fn deaths(pool: &pool_runtime::Pool<Worker>) -> u32 {
    pool.broadcast(generation, ()).unwrap().iter().sum()
}

/// What the outcome of `input` must be, `Ok` or the error's kind, as
/// `(kind name, words its message must hold)`.
pub enum Expect {
    Value,
    /// The task's own `Err`, given back.
    TaskErr,
    Error(&'static str, Vec<String>),
}

/// The outcome `input` must have on a pool without retries.
pub fn expected(input: &Input) -> Expect {
    let Some((stage, fault)) = input.poison else {
        return Expect::Value;
    };
    let x = input.x;
    let (what, phase) = match stage {
        Stage::InputEncode => ("encoding input", "encod"),
        Stage::InputDecode => ("decoding input", "decod"),
        Stage::Task => ("task on", ""),
        Stage::ResultEncode => ("encoding result", "encod"),
        Stage::ResultDecode => ("decoding result", "decod"),
    };
    let side = match stage {
        Stage::InputEncode | Stage::InputDecode => "input",
        Stage::Task => "",
        Stage::ResultEncode | Stage::ResultDecode => "result",
    };
    let words = |w: &[&str]| {
        w.iter()
            .filter(|w| !w.is_empty())
            .map(|w| w.to_string())
            .collect()
    };
    match fault {
        Fault::Err if stage == Stage::Task => Expect::TaskErr,
        // The user's own message, and where it failed.
        Fault::Err => Expect::Error(
            "Codec",
            words(&[&format!("{what} {x} refuses"), phase, side]),
        ),
        // The panic's message and its location.
        Fault::Panic => Expect::Error(
            "Panicked",
            words(&[&format!("{what} {x} panics"), "faults/mod.rs:", phase, side]),
        ),
        Fault::Exit => Expect::Error("WorkerDied", words(&["exited with code 7", phase, side])),
        Fault::Segv => Expect::Error("WorkerDied", words(&["SIGSEGV", phase, side])),
        Fault::Abort => Expect::Error("WorkerDied", words(&["SIGABRT", phase, side])),
        Fault::Hang => Expect::Error("TimedOut", words(&["past the task timeout", phase, side])),
    }
}

/// Checks one outcome against [`expected`]; the text says what is wrong.
pub fn check(
    input: &Input,
    got: &Result<Result<Output, String>, pool_runtime::Error>,
) -> Result<(), String> {
    let bad = |why: &str| Err(format!("input {input:?}: {why}: got {got:?}"));
    match (expected(input), got) {
        (Expect::Value, Ok(Ok(out))) if out.x == input.x => Ok(()),
        (Expect::TaskErr, Ok(Err(e))) if *e == format!("task on {} refuses", input.x) => Ok(()),
        (Expect::Error(kind, words), Err(e)) => {
            let (name, message) = match e.kind() {
                ErrorKind::Codec(m) => ("Codec", m.as_str()),
                ErrorKind::Panicked(m) => ("Panicked", m.as_str()),
                ErrorKind::WorkerDied(m) => ("WorkerDied", m.as_str()),
                ErrorKind::TimedOut(m) => ("TimedOut", m.as_str()),
                _ => return bad("an error of another kind"),
            };
            if name != kind {
                return bad(&format!("expected a {kind} error"));
            }
            match words.iter().find(|w| !message.contains(w.as_str())) {
                Some(w) => bad(&format!("the message lacks {w:?}")),
                None => Ok(()),
            }
        }
        _ => bad("not the outcome expected"),
    }
}

/// Runs `inputs` through `imap` and checks that each got exactly the
/// outcome [`check`] wants, in input order; `what` names the case.
pub fn imap_and_check(pool: &pool_runtime::Pool<Worker>, inputs: &[Input], what: &str) {
    let out: Vec<_> = pool.imap(probe, inputs.iter().copied()).collect();
    assert_eq!(out.len(), inputs.len(), "{what}: one outcome per input");
    let wrong: Vec<String> = inputs
        .iter()
        .zip(&out)
        .filter_map(|(i, o)| check(i, o).err())
        .collect();
    assert!(
        wrong.is_empty(),
        "{what}:
{}",
        wrong.join("\n")
    );
}

/// Aborts the whole test process if it is still armed after `limit`: a hang
/// is a failure, never a stuck run.
pub struct Watchdog(Option<std::sync::mpsc::Sender<()>>);

impl Watchdog {
    pub fn new(limit: Duration, what: &'static str) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!("watchdog: {what} still running after {limit:?}: a hang");
                std::process::abort();
            }
        });
        Watchdog(Some(tx))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}
