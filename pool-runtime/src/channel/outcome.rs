//! One item's outcome in a `Done` (or `Exited`) body: an [`item`] whose
//! status is a [`Status`] and whose value is the output, or the message of
//! what went wrong. The worker writes outcomes here, the driver reads them
//! here.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::item::{self, Items, Malformed};
use crate::error::{Error, ErrorKind, Location, Panic};
use crate::unwind;

/// The status of an outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Status {
    /// The task returned; its encoded output follows.
    Ok = 0,
    /// User code panicked (the task, or a `Serialize`/`Deserialize` in the
    /// worker); the encoded panic follows (see [`write_panic`]).
    Panicked = 1,
    /// The input could not be decoded or the output encoded; the message follows.
    Codec = 2,
    /// A pipeline stage returned `Err`; the message (naming the stage) follows.
    Failed = 3,
    /// The input has no outcome of its own but an error the pool gave it
    /// where it ran (a Redis host's worker died on it, it timed out there,
    /// it was quarantined): the error follows whole (see [`write_error`]).
    Remote = 4,
}

impl Status {
    fn from_bits(b: u8) -> Option<Status> {
        match b {
            0 => Some(Status::Ok),
            1 => Some(Status::Panicked),
            2 => Some(Status::Codec),
            3 => Some(Status::Failed),
            4 => Some(Status::Remote),
            _ => None,
        }
    }
}

/// Appends an outcome (`long`: see [`item::write`]). An output that cannot
/// be encoded becomes a `Codec` outcome that says why, in the words of the
/// output's own `Serialize`.
pub(crate) fn write<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    status: Status,
    value: &T,
    long: &mut bool,
) {
    if let Err(e) = item::write(out, status as u8, value, long) {
        let message = format!("could not encode the result: {e}");
        write_message(out, Status::Codec, &message, long);
    }
}

/// Appends an error outcome: `status` and its message.
pub(crate) fn write_message(out: &mut Vec<u8>, status: Status, message: &str, long: &mut bool) {
    debug_assert!(status != Status::Panicked, "a panic is written by write_panic");
    item::write(out, status as u8, message, long).expect("a string always encodes");
}

/// A panic on the wire: its whole text, its message, and its location as
/// `(file, line, column)`; read with its strings borrowed from the item.
type PanicView<'a> = (&'a str, &'a str, Option<(&'a str, u32, u32)>);

/// Appends a `Panicked` outcome.
pub(crate) fn write_panic(out: &mut Vec<u8>, panic: &Panic, long: &mut bool) {
    let at = panic.location.as_ref();
    let wire = (
        panic.as_str(),
        &panic.message,
        at.map(|l| (&l.file, l.line, l.column)),
    );
    item::write(out, Status::Panicked as u8, &wire, long).expect("strings always encode");
}

/// An error on the wire: its kind, its text, and for a worker's death its
/// pid and how it ended (`(0, code)` exited, `(1, signal)` killed); read
/// with its text borrowed from the item.
type ErrorView<'a> = (u8, &'a str, Option<u32>, Option<(u8, i32)>);

/// Appends a `Remote` outcome (a Redis host's; tests): `error`, whole, as the pool that ran the
/// input gave it (a panic or a codec error keeps its own status).
#[cfg(any(test, feature = "redis"))]
pub(crate) fn write_error(out: &mut Vec<u8>, error: &Error, long: &mut bool) {
    use crate::error::WorkerExit;
    let (kind, pid, exit) = match error.kind() {
        ErrorKind::Panicked(panic) => return write_panic(out, panic, long),
        ErrorKind::Codec(m) => return write_message(out, Status::Codec, m, long),
        ErrorKind::Failed(m) => return write_message(out, Status::Failed, m, long),
        ErrorKind::WorkerDied(death) => {
            let exit = death.exit.map(|e| match e {
                WorkerExit::Code(n) => (0, n),
                WorkerExit::Signal(n) => (1, n),
            });
            (1, death.pid, exit)
        }
        ErrorKind::TimedOut(_) => (2, None, None),
        ErrorKind::Quarantined(_) => (3, None, None),
        ErrorKind::Init(_) => (4, None, None),
        ErrorKind::Terminated => (5, None, None),
        _ => (6, None, None),
    };
    let wire: ErrorView = (kind, &error_text(error), pid, exit);
    item::write(out, Status::Remote as u8, &wire, long).expect("strings always encode");
}

/// The text of an error without the words `Display` puts before it.
#[cfg(any(test, feature = "redis"))]
fn error_text(error: &Error) -> String {
    match error.kind() {
        ErrorKind::Init(m)
        | ErrorKind::TimedOut(m)
        | ErrorKind::Quarantined(m)
        | ErrorKind::PoolBroken(m)
        | ErrorKind::Io(m) => m.clone(),
        ErrorKind::WorkerDied(death) => death.to_string(),
        _ => error.to_string(),
    }
}

/// The error a `Remote` outcome carries.
#[cold]
fn read_error(value: &[u8], from: &str) -> Error {
    use crate::error::{WorkerDeath, WorkerExit};
    let Ok((kind, text, pid, exit)) = item::decode_borrowed::<ErrorView>(value) else {
        return Error::new(ErrorKind::Codec(format!(
            "malformed item from {from}: an unreadable error"
        )));
    };
    let text = text.to_owned();
    Error::new(match kind {
        1 => {
            let exit = exit.and_then(|(how, n)| match how {
                0 => Some(WorkerExit::Code(n)),
                1 => Some(WorkerExit::Signal(n)),
                _ => None,
            });
            ErrorKind::WorkerDied(WorkerDeath::new(pid, exit, text))
        }
        2 => ErrorKind::TimedOut(text),
        3 => ErrorKind::Quarantined(text),
        4 => ErrorKind::Init(text),
        5 => ErrorKind::Terminated,
        _ => ErrorKind::PoolBroken(text),
    })
}

/// An outcome that is not a value: a message with its status, or a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    Message(Status, String),
    Panicked(Panic),
}

/// Appends a [`Failure`] as its outcome.
pub(crate) fn write_failure(out: &mut Vec<u8>, failure: &Failure, long: &mut bool) {
    match failure {
        Failure::Message(status, message) => write_message(out, *status, message, long),
        Failure::Panicked(panic) => write_panic(out, panic, long),
    }
}

/// The failure an item of `status` carries in `value`, or why it cannot
/// be read (`from` names the peer that wrote it).
#[cold]
fn read_failure(status: u8, value: &[u8], from: &str) -> Failure {
    let unreadable = |e| format!("({from}'s message could not be read: {e})");
    match Status::from_bits(status) {
        Some(Status::Panicked) => match item::decode_borrowed::<PanicView>(value) {
            Ok((text, message, at)) => Failure::Panicked(Panic::from_parts(
                text.to_owned(),
                message.to_owned(),
                at.map(|(file, line, column)| Location {
                    file: file.to_owned(),
                    line,
                    column,
                }),
            )),
            Err(e) => Failure::Panicked(Panic::new("", unreadable(e), None)),
        },
        Some(status @ (Status::Codec | Status::Failed)) => Failure::Message(
            status,
            item::decode_borrowed::<&str>(value).map_or_else(unreadable, str::to_owned),
        ),
        Some(Status::Ok | Status::Remote) | None => Failure::Message(
            Status::Codec,
            format!("malformed item from {from}: unknown status {status}"),
        ),
    }
}

/// The error an input item carries in place of an input (its `Serialize`
/// failed in the driver), for the worker to hand back as that input's
/// outcome.
#[cold]
pub(crate) fn carried(status: u8, value: &[u8]) -> Failure {
    read_failure(status, value, "the driver")
}

impl From<Malformed> for Error {
    fn from(m: Malformed) -> Self {
        Error::new(ErrorKind::Codec(m.to_string()))
    }
}

/// Reads the next outcome from `items`: the item's result (its output, or
/// the error the worker reported).
///
/// The output is decoded here, in the caller's thread: its `Deserialize` is
/// user code, so its error is this item's `Codec` error, and its panic this
/// item's `Panicked`; the next item is read all the same. Call it inside
/// [`unwind::quietly`], so that such a panic is not printed and its
/// location is known.
#[inline]
pub fn read<R: DeserializeOwned>(items: &mut Items<'_>) -> Result<Result<R, Error>, Malformed> {
    let mut one = None;
    read_each(items, 1, |result| {
        one = Some(result);
        false
    })?;
    Ok(one.expect("one outcome for the one item read"))
}

/// The one outcome at the front of `bytes` (a body of one item), as
/// [`read`] reads it.
pub(crate) fn read_one<R: DeserializeOwned>(bytes: &[u8]) -> Result<Result<R, Error>, Malformed> {
    read(&mut Items::new(bytes))
}

/// The outcome at `at` in `frame`, when it is the frame's last item, a
/// success, and its output can take the frame's own allocation (a large
/// `Vec<u8>`, see `codec::take_tail`): then `frame` is left empty. `None`
/// leaves `frame` as it was, for [`read`].
pub(crate) fn take_last<R>(frame: &mut Vec<u8>, at: usize) -> Option<R> {
    let (status, value, rest) = item::read(frame.get(at..)?).ok()?;
    if status != Status::Ok as u8 || !rest.is_empty() {
        return None;
    }
    let value_at = frame.len() - value.len();
    crate::codec::take_tail(frame, value_at)
}

/// Reads `count` outcomes from `items` as [`read`] does, in order, handing
/// each to `take` until it returns `false`; `items` is left after the last
/// one read. One catch covers a run of items (a catch per item costs more
/// than decoding a small output): a panic in an output's `Deserialize` is
/// that item's `Panicked`, and the run goes on after it. Call it inside
/// [`unwind::quietly`].
pub fn read_each<R: DeserializeOwned>(
    items: &mut Items<'_>,
    count: u32,
    mut take: impl FnMut(Result<R, Error>) -> bool,
) -> Result<(), Malformed> {
    let mut left = count;
    while left > 0 {
        let run = unwind::catch(|| {
            while left > 0 {
                let (status, value) = items.next_item()?;
                left -= 1;
                let result = if status == Status::Ok as u8 {
                    item::decode::<R>(value).map_err(undecodable)
                } else {
                    Err(failure(status, value))
                };
                if !take(result) {
                    left = 0;
                }
            }
            Ok(())
        });
        match run {
            Ok(read) => read?,
            Err(panic) => {
                if !take(Err(panicked(panic))) {
                    left = 0;
                }
            }
        }
    }
    Ok(())
}

#[cold]
pub(crate) fn undecodable(e: crate::codec::CodecError) -> Error {
    Error::new(ErrorKind::Codec(format!(
        "could not decode the result: {e}"
    )))
}

#[cold]
fn panicked(panic: unwind::Caught) -> Error {
    Error::new(ErrorKind::Panicked(
        panic.during("while decoding the result"),
    ))
}

/// The error a worker reported with `status`, its message in `value`.
#[cold]
pub(crate) fn failure(status: u8, value: &[u8]) -> Error {
    if status == Status::Remote as u8 {
        return read_error(value, "the worker");
    }
    Error::new(match read_failure(status, value, "the worker") {
        Failure::Panicked(panic) => ErrorKind::Panicked(panic),
        Failure::Message(Status::Failed, message) => ErrorKind::Failed(message),
        Failure::Message(_, message) => ErrorKind::Codec(message),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(f: impl FnOnce(&mut Vec<u8>, &mut bool)) -> Vec<u8> {
        let mut out = Vec::new();
        f(&mut out, &mut false);
        out
    }

    #[test]
    fn a_remote_error_keeps_its_kind() {
        use crate::error::{WorkerDeath, WorkerExit};
        let death = WorkerDeath::new(Some(42), Some(WorkerExit::Signal(9)), "killed by signal 9".into());
        let errors = [
            Error::new(ErrorKind::WorkerDied(death)),
            Error::new(ErrorKind::TimedOut("after 1s".into())),
            Error::new(ErrorKind::Quarantined("killed 3 hosts".into())),
            Error::new(ErrorKind::Codec("bad".into())),
            Error::new(ErrorKind::Terminated),
        ];
        let bytes = body(|out, long| {
            for e in &errors {
                write_error(out, e, long);
            }
        });
        let mut got = Vec::new();
        let mut items = Items::new(&bytes);
        read_each::<u64>(&mut items, errors.len() as u32, |r| {
            got.push(r.unwrap_err());
            true
        })
        .unwrap();
        assert_eq!(items.between(), Some(&[][..]));
        for (sent, got) in errors.iter().zip(&got) {
            assert_eq!(sent.kind(), got.kind());
            assert_eq!(sent.to_string(), got.to_string());
        }
        // Garbage in a remote error is that item's error, never a panic.
        let mut out = Vec::new();
        item::write(&mut out, Status::Remote as u8, &[1u8, 2, 3], &mut false).unwrap();
        let r = read_one::<u64>(&out).unwrap();
        assert!(matches!(r.unwrap_err().kind(), ErrorKind::Codec(_)));
    }

    #[test]
    fn outcomes_round_trip_back_to_back() {
        let body = body(|out, long| {
            write(out, Status::Ok, &7u64, long);
            write_panic(out, &Panic::new("", "boom".into(), None), long);
            write_message(out, Status::Codec, "bad input", long);
            let at = Location {
                file: "src/x.rs".into(),
                line: 3,
                column: 9,
            };
            write_panic(out, &Panic::new("while encoding the result", "no".into(), Some(at)), long);
        });
        let mut items = Items::new(&body);
        let a = read::<u64>(&mut items).unwrap();
        let b = read::<u64>(&mut items).unwrap();
        let c = read::<u64>(&mut items).unwrap();
        let d = read::<u64>(&mut items).unwrap();
        let rest = items.between().unwrap();
        assert_eq!(a.unwrap(), 7);
        assert!(matches!(b.unwrap_err().kind(), ErrorKind::Panicked(m) if m == "boom"));
        assert!(matches!(c.unwrap_err().kind(), ErrorKind::Codec(m) if m == "bad input"));
        let ErrorKind::Panicked(p) = d.unwrap_err().kind().clone() else {
            panic!("a panic")
        };
        assert_eq!(p.as_str(), "while encoding the result: no at src/x.rs:3:9");
        assert_eq!(p.message, "no");
        assert_eq!(p.location.map(|l| (l.line, l.column)), Some((3, 9)));
        assert!(rest.is_empty());
    }

    #[test]
    fn an_output_that_does_not_decode_fails_alone() {
        let body = body(|out, long| {
            write(out, Status::Ok, "not a number", long);
            write(out, Status::Ok, &9u64, long);
        });
        let mut items = Items::new(&body);
        let a = read::<u64>(&mut items).unwrap();
        let b = read::<u64>(&mut items).unwrap();
        assert!(
            matches!(a.unwrap_err().kind(), ErrorKind::Codec(m) if m.contains("decode the result")),
        );
        assert_eq!(b.unwrap(), 9);
    }

    /// Panics in its `Deserialize` when it reads 13.
    #[derive(Debug)]
    struct Unlucky(u64);

    impl<'de> serde::Deserialize<'de> for Unlucky {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            match u64::deserialize(d)? {
                13 => panic!("unlucky"),
                n => Ok(Unlucky(n)),
            }
        }
    }

    #[test]
    fn read_each_goes_on_after_a_panic_and_stops_when_told() {
        let body = body(|out, long| {
            // As the tuple `(x,)`: serde's varint, which `Unlucky` reads
            // (a bare `u64` is written fixed-width, `codec/fast.rs`).
            for x in [1u64, 13, 3, 13, 5] {
                write(out, Status::Ok, &(x,), long);
            }
            write_message(out, Status::Codec, "bad input", long);
        });
        let mut got = Vec::new();
        unwind::quietly(|| {
            read_each::<Unlucky>(&mut Items::new(&body), 6, |r| {
                got.push(r.map(|u| u.0).map_err(|e| e.kind().clone()));
                true
            })
        })
        .unwrap();
        assert_eq!(got.len(), 6);
        assert_eq!((&got[0], &got[2], &got[4]), (&Ok(1), &Ok(3), &Ok(5)));
        for k in [1, 3] {
            assert!(
                matches!(&got[k], Err(ErrorKind::Panicked(m)) if m.starts_with("while decoding the result: unlucky")),
                "{:?}",
                got[k]
            );
        }
        assert_eq!(got[5], Err(ErrorKind::Codec("bad input".into())));
        // `take` says stop: nothing more is read.
        let mut seen = 0;
        read_each::<u64>(&mut Items::new(&body), 6, |_| {
            seen += 1;
            seen < 2
        })
        .unwrap();
        assert_eq!(seen, 2);
    }

    #[test]
    fn garbage_is_malformed_never_a_panic() {
        assert!(read_one::<u64>(&[]).is_err());
        assert!(read_one::<u64>(&[9 << 3, 1, 2]).is_err());
        // A status no worker writes is that item's error.
        assert!(read_one::<u64>(&[7 | 1 << 3, 0]).unwrap().is_err());
        // A message that is not a string is that item's error too.
        let r = read_one::<u64>(&[1 | 1 << 3, 200]).unwrap();
        assert!(matches!(r.unwrap_err().kind(), ErrorKind::Panicked(_)));
        for len in 0..64u8 {
            let bytes: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            let _ = read_one::<(u64, String, Vec<u8>)>(&bytes);
        }
    }
}
