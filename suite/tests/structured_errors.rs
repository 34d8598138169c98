//! Errors a caller can match on: a panic's message and location, a dead
//! worker's pid and how it ended, in every place they can arise.

use pool_runtime::{
    worker_exit, worker_init, worker_task, Error, ErrorKind, Panic, Pool, WorkerDeath, WorkerExit,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

struct Idle;

#[worker_init]
fn idle(_: &()) -> Idle {
    Idle
}

/// Returns the line after its `line!()`, where it panics on 5.
#[worker_task]
fn refuse_five(x: u64) -> u32 {
    let here = line!();
    assert!(x != 5, "no five");
    here + 1
}

/// Dies as `how` says on 5, else returns its pid.
#[worker_task]
fn die_on_five(x: u64, how: String) -> u32 {
    if x == 5 {
        match how.as_str() {
            "abort" => std::process::abort(),
            _ => std::process::exit(7),
        }
    }
    std::process::id()
}

/// A value whose `Deserialize` panics on 5 and `Serialize` on 6: as an
/// input they panic in the worker and in the caller's thread, as a result
/// the other way round.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Touchy(u64);

impl Serialize for Touchy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        assert!(self.0 != 6, "touchy six");
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Touchy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        assert!(v != 5, "touchy five");
        Ok(Touchy(v))
    }
}

#[worker_task]
fn take_touchy(t: Touchy) -> u64 {
    t.0
}

#[worker_task]
fn give_touchy(x: u64) -> Touchy {
    Touchy(x)
}

#[worker_exit]
fn abort_on_exit(_: Idle) -> u32 {
    std::process::abort()
}

fn pool() -> Pool<Idle> {
    Pool::builder().workers(2).build(idle, ()).unwrap()
}

fn panic_of(e: &Error) -> &Panic {
    match e.kind() {
        ErrorKind::Panicked(p) => p,
        other => panic!("expected a panic, got {other:?}"),
    }
}

fn death_of(e: &Error) -> &WorkerDeath {
    match e.kind() {
        ErrorKind::WorkerDied(d) => d,
        other => panic!("expected a death, got {other:?}"),
    }
}

#[test]
fn a_task_panic_has_its_message_and_location() {
    let pool = pool();
    let out: Vec<_> = pool.imap(refuse_five, 0..10).collect();
    let line = *out[0].as_ref().unwrap();
    let e = out[5].as_ref().unwrap_err();
    let p = panic_of(e);
    assert_eq!(p.message, "no five");
    let at = p.location.as_ref().expect("the hook saw where");
    assert!(at.file.ends_with("structured_errors.rs"), "{at}");
    assert_eq!(at.line, line);
    assert!(matches!(
        e.kind(),
        ErrorKind::Panicked(Panic { location: Some(l), .. }) if l.column > 0
    ));
    // The text reads as before.
    assert_eq!(p.as_str(), format!("no five at {at}"));
    assert_eq!(e.to_string(), format!("task panicked: no five at {at}"));
    // Every other input has its result.
    assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 9);
}

#[test]
fn a_panic_in_serde_code_says_where_and_keeps_its_parts() {
    let pool = pool();
    let here = |p: &Panic| {
        let at = p.location.as_ref().expect("the hook saw where");
        at.file.ends_with("structured_errors.rs")
    };
    let inputs: Vec<Touchy> = (0..10).map(Touchy).collect();
    let out: Vec<_> = pool.imap(take_touchy, inputs).collect();
    // In the worker, decoding the input.
    let p = panic_of(out[5].as_ref().unwrap_err());
    assert_eq!(p.message, "touchy five");
    assert!(
        p.starts_with("while decoding the input: touchy five at "),
        "{p}"
    );
    assert!(here(p));
    // In the caller's thread, encoding the input: the error travels in the
    // input's place and comes back whole.
    let p = panic_of(out[6].as_ref().unwrap_err());
    assert_eq!(p.message, "touchy six");
    assert!(
        p.starts_with("while encoding the input: touchy six at "),
        "{p}"
    );
    assert!(here(p));
    assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 8);
    // One call, encoded in the caller's thread.
    let e = pool.apply(take_touchy, Touchy(6)).unwrap_err();
    assert_eq!(panic_of(&e).message, "touchy six");
    assert!(here(panic_of(&e)));
    // In the caller's thread, decoding the result; in the worker, encoding it.
    let out: Vec<_> = pool.imap(give_touchy, 0..10).collect();
    let p = panic_of(out[5].as_ref().unwrap_err());
    assert_eq!(p.message, "touchy five");
    assert!(
        p.starts_with("while decoding the result: touchy five at "),
        "{p}"
    );
    assert!(here(p));
    let p = panic_of(out[6].as_ref().unwrap_err());
    assert_eq!(p.message, "touchy six");
    assert!(
        p.starts_with("while encoding the result: touchy six at "),
        "{p}"
    );
    assert!(here(p));
    assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 8);
}

#[test]
fn a_dead_worker_has_its_pid_and_signal_or_exit_code() {
    let pool = pool();
    for (how, exit) in [
        ("abort", WorkerExit::Signal(6)),
        ("exit", WorkerExit::Code(7)),
    ] {
        let out: Vec<_> = pool
            .imap(die_on_five, (0..10).map(|x| (x, how.to_string())))
            .collect();
        let d = death_of(out[5].as_ref().unwrap_err());
        assert_eq!(d.exit, Some(exit), "{how}: {d}");
        let pid = d.pid.expect("the worker's pid is known");
        assert_ne!(pid, std::process::id());
        assert!(d.contains(&format!("(pid {pid})")), "{d}");
        match exit {
            WorkerExit::Signal(n) => assert_eq!((d.signal(), d.exit_code()), (Some(n), None)),
            _ => assert_eq!((d.signal(), d.exit_code()), (None, Some(7))),
        }
        assert!(matches!(
            out[5].as_ref().unwrap_err().kind(),
            ErrorKind::WorkerDied(WorkerDeath { exit: Some(e), .. }) if *e == exit
        ));
        assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 9, "{how}");
    }
}

#[test]
fn a_worker_that_dies_in_its_exit_hook_is_named_with_its_signal() {
    let pool = pool();
    let e = pool.join_with(abort_on_exit).unwrap_err();
    let d = death_of(&e);
    assert_eq!(d.signal(), Some(6), "{d}");
    assert!(d.pid.is_some());
    assert!(
        d.starts_with("in its exit hook: killed by signal 6 (SIGABRT)"),
        "{d}"
    );
}
