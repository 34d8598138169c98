//! One item's outcome in a `Done` (or `Exited`) body: a [`Status`] byte,
//! then one codec value: the output, or the message of what went wrong.
//! The worker writes outcomes here, the driver reads them here.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;
use crate::error::{Error, ErrorKind};

/// The first byte of an outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Status {
    /// The task returned; its encoded output follows.
    Ok = 0,
    /// The task panicked; the encoded message follows.
    Panicked = 1,
    /// The input could not be decoded or the output encoded; the message follows.
    Codec = 2,
    /// A pipeline stage returned `Err`; the message (naming the stage) follows.
    Failed = 3,
}

impl Status {
    fn from_byte(b: u8) -> Option<Status> {
        match b {
            0 => Some(Status::Ok),
            1 => Some(Status::Panicked),
            2 => Some(Status::Codec),
            3 => Some(Status::Failed),
            _ => None,
        }
    }
}

/// Appends an outcome. An output that cannot be encoded becomes a `Codec`
/// outcome saying why.
pub(crate) fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, status: Status, value: &T) {
    let mark = out.len();
    out.push(status as u8);
    if let Err(e) = codec::encode(value, out) {
        out.truncate(mark);
        out.push(Status::Codec as u8);
        let msg = format!("could not encode the result: {e}");
        codec::encode(msg.as_str(), out).expect("a string always encodes");
    }
}

/// Bytes that do not hold an outcome: the rest of the body cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed outcome from a worker: {0}")]
pub(crate) struct Malformed(String);

impl From<Malformed> for Error {
    fn from(m: Malformed) -> Self {
        Error::new(ErrorKind::Codec(m.to_string()))
    }
}

/// Reads the outcome at the front of `bytes`: the item's result (its output,
/// or the error the worker reported), and the bytes after it.
pub(crate) fn read<R: DeserializeOwned>(
    bytes: &[u8],
) -> Result<(Result<R, Error>, &[u8]), Malformed> {
    let (&status, rest) = bytes
        .split_first()
        .ok_or_else(|| Malformed("missing".into()))?;
    let message = |rest| codec::decode::<String>(rest).map_err(|e| Malformed(e.to_string()));
    match Status::from_byte(status) {
        Some(Status::Ok) => {
            let (value, rest) = codec::decode::<R>(rest).map_err(|e| Malformed(e.to_string()))?;
            Ok((Ok(value), rest))
        }
        Some(Status::Panicked) => {
            let (msg, rest) = message(rest)?;
            Ok((Err(Error::new(ErrorKind::Panicked(msg))), rest))
        }
        Some(Status::Codec) => {
            let (msg, rest) = message(rest)?;
            Ok((Err(Error::new(ErrorKind::Codec(msg))), rest))
        }
        Some(Status::Failed) => {
            let (msg, rest) = message(rest)?;
            Ok((Err(Error::new(ErrorKind::Failed(msg))), rest))
        }
        None => Err(Malformed(format!("unknown status byte {status}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_back_to_back() {
        let mut body = Vec::new();
        write(&mut body, Status::Ok, &7u64);
        write(&mut body, Status::Panicked, "boom");
        write(&mut body, Status::Codec, "bad input");
        let (a, rest) = read::<u64>(&body).unwrap();
        let (b, rest) = read::<u64>(rest).unwrap();
        let (c, rest) = read::<u64>(rest).unwrap();
        assert_eq!(a.unwrap(), 7);
        assert!(matches!(b.unwrap_err().kind(), ErrorKind::Panicked(m) if m == "boom"));
        assert!(matches!(c.unwrap_err().kind(), ErrorKind::Codec(m) if m == "bad input"));
        assert!(rest.is_empty());
    }

    #[test]
    fn garbage_is_malformed_never_a_panic() {
        assert!(read::<u64>(&[]).is_err());
        assert!(read::<u64>(&[9, 1, 2]).is_err());
        assert!(read::<String>(&[0, 200]).is_err());
        // A status of "panicked" whose message claims more bytes than there are.
        assert!(read::<u64>(&[1, 50, b'x']).is_err());
        for len in 0..64u8 {
            let bytes: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            let _ = read::<(u64, String, Vec<u8>)>(&bytes);
        }
    }
}
