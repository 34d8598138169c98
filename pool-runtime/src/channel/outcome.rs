//! One item's outcome in a `Done` (or `Exited`) body: an [`item`] whose
//! status is a [`Status`] and whose value is the output, or the message of
//! what went wrong. The worker writes outcomes here, the driver reads them
//! here.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::item::{self, Malformed};
use crate::error::{Error, ErrorKind};
use crate::unwind;

/// The status of an outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Status {
    /// The task returned; its encoded output follows.
    Ok = 0,
    /// User code panicked (the task, or a `Serialize`/`Deserialize` in the
    /// worker); the encoded message follows.
    Panicked = 1,
    /// The input could not be decoded or the output encoded; the message follows.
    Codec = 2,
    /// A pipeline stage returned `Err`; the message (naming the stage) follows.
    Failed = 3,
}

impl Status {
    fn from_bits(b: u8) -> Option<Status> {
        match b {
            0 => Some(Status::Ok),
            1 => Some(Status::Panicked),
            2 => Some(Status::Codec),
            3 => Some(Status::Failed),
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
    item::write(out, status as u8, message, long).expect("a string always encodes");
}

/// The error an input item carries in place of an input (its `Serialize`
/// failed in the driver): its status and message, for the worker to hand
/// back as that input's outcome.
#[cold]
pub(crate) fn carried(status: u8, value: &[u8]) -> (Status, String) {
    let message = item::decode::<String>(value)
        .unwrap_or_else(|e| format!("(the driver's message could not be read: {e})"));
    match Status::from_bits(status) {
        Some(status @ (Status::Panicked | Status::Codec | Status::Failed)) => (status, message),
        Some(Status::Ok) | None => (
            Status::Codec,
            format!("malformed input item: status {status}"),
        ),
    }
}

impl From<Malformed> for Error {
    fn from(m: Malformed) -> Self {
        Error::new(ErrorKind::Codec(m.to_string()))
    }
}

/// Reads the outcome at the front of `bytes`: the item's result (its output,
/// or the error the worker reported), and the bytes after it.
///
/// The output is decoded here, in the caller's thread: its `Deserialize` is
/// user code, so its error is this item's `Codec` error, and its panic this
/// item's `Panicked`; the next item is read all the same. Call it inside
/// [`unwind::quietly`], so that such a panic is not printed and its
/// location is known.
#[inline]
pub fn read<R: DeserializeOwned>(
    bytes: &[u8],
) -> Result<(Result<R, Error>, &[u8]), Malformed> {
    let mut one = None;
    let rest = read_each(bytes, 1, |result| {
        one = Some(result);
        false
    })?;
    Ok((one.expect("one outcome for the one item read"), rest))
}

/// Reads `count` outcomes from the front of `bytes` as [`read`] does, in
/// order, handing each to `take` until it returns `false`; returns the
/// bytes after the last one read. One catch covers a run of items (a catch
/// per item costs more than decoding a small output): a panic in an
/// output's `Deserialize` is that item's `Panicked`, and the run goes on
/// after it. Call it inside [`unwind::quietly`].
pub fn read_each<R: DeserializeOwned>(
    bytes: &[u8],
    count: u32,
    mut take: impl FnMut(Result<R, Error>) -> bool,
) -> Result<&[u8], Malformed> {
    let (mut next, mut left) = (bytes, count);
    while left > 0 {
        let run = unwind::catch(|| {
            while left > 0 {
                let (status, value, rest) = item::read(next)?;
                (next, left) = (rest, left - 1);
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
    Ok(next)
}

#[cold]
fn undecodable(e: crate::codec::CodecError) -> Error {
    Error::new(ErrorKind::Codec(format!(
        "could not decode the result: {e}"
    )))
}

#[cold]
fn panicked(panic: String) -> Error {
    Error::new(ErrorKind::Panicked(format!(
        "while decoding the result: {panic}"
    )))
}

/// The error a worker reported with `status`, its message in `value`.
#[cold]
fn failure(status: u8, value: &[u8]) -> Error {
    let message = || match item::decode::<String>(value) {
        Ok(message) => message,
        Err(e) => format!("(the worker's message could not be read: {e})"),
    };
    Error::new(match Status::from_bits(status) {
        Some(Status::Panicked) => ErrorKind::Panicked(message()),
        Some(Status::Codec) => ErrorKind::Codec(message()),
        Some(Status::Failed) => ErrorKind::Failed(message()),
        Some(Status::Ok) | None => ErrorKind::Codec(format!(
            "malformed outcome from a worker: unknown status {status}"
        )),
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
    fn outcomes_round_trip_back_to_back() {
        let body = body(|out, long| {
            write(out, Status::Ok, &7u64, long);
            write_message(out, Status::Panicked, "boom", long);
            write_message(out, Status::Codec, "bad input", long);
        });
        let (a, rest) = read::<u64>(&body).unwrap();
        let (b, rest) = read::<u64>(rest).unwrap();
        let (c, rest) = read::<u64>(rest).unwrap();
        assert_eq!(a.unwrap(), 7);
        assert!(matches!(b.unwrap_err().kind(), ErrorKind::Panicked(m) if m == "boom"));
        assert!(matches!(c.unwrap_err().kind(), ErrorKind::Codec(m) if m == "bad input"));
        assert!(rest.is_empty());
    }

    #[test]
    fn an_output_that_does_not_decode_fails_alone() {
        let body = body(|out, long| {
            write(out, Status::Ok, "not a number", long);
            write(out, Status::Ok, &9u64, long);
        });
        let (a, rest) = read::<u64>(&body).unwrap();
        let (b, _) = read::<u64>(rest).unwrap();
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
            for x in [1u64, 13, 3, 13, 5] {
                write(out, Status::Ok, &x, long);
            }
            write_message(out, Status::Codec, "bad input", long);
        });
        let mut got = Vec::new();
        unwind::quietly(|| {
            read_each::<Unlucky>(&body, 6, |r| {
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
        read_each::<u64>(&body, 6, |_| {
            seen += 1;
            seen < 2
        })
        .unwrap();
        assert_eq!(seen, 2);
    }

    #[test]
    fn garbage_is_malformed_never_a_panic() {
        assert!(read::<u64>(&[]).is_err());
        assert!(read::<u64>(&[9 << 3, 1, 2]).is_err());
        // A status no worker writes is that item's error.
        assert!(read::<u64>(&[7]).unwrap().0.is_err());
        // A message that is not a string is that item's error too.
        let (r, _) = read::<u64>(&[1 | 1 << 3, 200]).unwrap();
        assert!(matches!(r.unwrap_err().kind(), ErrorKind::Panicked(_)));
        for len in 0..64u8 {
            let bytes: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            let _ = read::<(u64, String, Vec<u8>)>(&bytes);
        }
    }
}
