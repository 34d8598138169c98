//! One item on the wire: an input in a `Run` body, an outcome in a `Done`
//! body. A head byte holds a 3-bit status and the value's length when it is
//! under [`LONG`] bytes; at [`LONG`], a `u32` little-endian length follows.
//! Then the codec value.
//!
//! The length is what lets one item fail alone: a value whose user
//! `Deserialize` errs or panics part-way leaves the reader at the next
//! item's head, not lost in the middle of the body.

use serde::Serialize;

use crate::codec::{self, CodecError};

/// Bits of the head byte that hold the status.
const STATUS_BITS: u8 = 0b111;
/// The length field of a head byte that says: a `u32` length follows.
const LONG: usize = 31;

/// Appends one item: `status`, then `value` encoded. On an encoding error
/// nothing is appended.
///
/// `long` is a guess, updated here, that the value will take [`LONG`] bytes
/// or more: the head then reserves the `u32` length before encoding, so a
/// run of large values is never moved after it is written. A wrong guess
/// costs one move of a value (too short) or four bytes (too long).
#[inline]
pub(crate) fn write<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    status: u8,
    value: &T,
    long: &mut bool,
) -> Result<(), CodecError> {
    debug_assert!(status <= STATUS_BITS);
    if *long {
        return write_long(out, status, value, long);
    }
    let mark = out.len();
    out.push(status);
    if let Err(e) = codec::encode(value, out) {
        out.truncate(mark);
        return Err(e);
    }
    let len = out.len() - mark - 1;
    if len < LONG {
        out[mark] = status | (len as u8) << 3;
    } else {
        widen(out, mark, len);
        *long = true;
    }
    Ok(())
}

/// [`write`] with the `u32` length reserved: the guess is that the value is long.
#[inline(never)]
fn write_long<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    status: u8,
    value: &T,
    long: &mut bool,
) -> Result<(), CodecError> {
    let mark = out.len();
    out.extend_from_slice(&[status | (LONG as u8) << 3, 0, 0, 0, 0]);
    if let Err(e) = codec::encode(value, out) {
        out.truncate(mark);
        return Err(e);
    }
    let len = out.len() - mark - 5;
    // A frame is at most `u32::MAX` bytes, and so is any value in it.
    out[mark + 1..mark + 5].copy_from_slice(&(len as u32).to_le_bytes());
    *long = len >= LONG;
    Ok(())
}

/// Turns the short head at `mark` into a long one, for a value of `len`
/// bytes after it: the value moves four bytes on.
#[cold]
fn widen(out: &mut Vec<u8>, mark: usize, len: usize) {
    out[mark] |= (LONG as u8) << 3;
    out.splice(mark + 1..mark + 1, (len as u32).to_le_bytes());
}

/// An item's bytes do not fit the body they are in: the rest of the body
/// cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed item from the peer: {0}")]
pub struct Malformed(pub(crate) &'static str);

/// Reads the item at the front of `bytes`: its status, its value's bytes,
/// and the bytes after it.
#[inline]
pub fn read(bytes: &[u8]) -> Result<(u8, &[u8], &[u8]), Malformed> {
    let (&head, rest) = bytes.split_first().ok_or(Malformed("missing"))?;
    let (len, rest) = match (head >> 3) as usize {
        LONG => {
            let (len, rest) = rest
                .split_first_chunk::<4>()
                .ok_or(Malformed("length cut short"))?;
            (u32::from_le_bytes(*len) as usize, rest)
        }
        short => (short, rest),
    };
    if len > rest.len() {
        return Err(Malformed("value cut short"));
    }
    let (value, rest) = rest.split_at(len);
    Ok((head & STATUS_BITS, value, rest))
}

/// The value of an item's bytes, decoded; its bytes must all be read.
#[inline]
pub fn decode<T: serde::de::DeserializeOwned>(value: &[u8]) -> Result<T, CodecError> {
    let (v, rest) = codec::decode::<T>(value)?;
    if !rest.is_empty() {
        return Err(unread(rest.len(), value.len()));
    }
    Ok(v)
}

#[cold]
fn unread(left: usize, of: usize) -> CodecError {
    CodecError::new(format!(
        "{left} of its {of} bytes were left unread (do its `Serialize` and `Deserialize` agree?)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(values: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut long = false;
        for (k, v) in values.iter().enumerate() {
            write(&mut out, (k % 8) as u8, v, &mut long).unwrap();
        }
        out
    }

    #[test]
    fn short_and_long_values_round_trip_whatever_the_guess() {
        // Lengths around the switch, in every order, so the guess is wrong
        // both ways.
        let sizes = [0usize, 1, 29, 30, 31, 200, 3, 70_000, 70_000, 2, 29, 30];
        let values: Vec<Vec<u8>> = sizes.iter().map(|&n| vec![7u8; n]).collect();
        let body = items(&values);
        let mut rest = &body[..];
        for (k, v) in values.iter().enumerate() {
            let (status, bytes, next) = read(rest).unwrap();
            assert_eq!(status, (k % 8) as u8);
            assert_eq!(&decode::<Vec<u8>>(bytes).unwrap(), v);
            rest = next;
        }
        assert!(rest.is_empty());
    }

    #[test]
    fn an_undecodable_value_leaves_the_next_item_readable() {
        let mut out = Vec::new();
        let mut long = false;
        write(&mut out, 0, "not a number", &mut long).unwrap();
        write(&mut out, 0, &5u64, &mut long).unwrap();
        let (_, bytes, rest) = read(&out).unwrap();
        assert!(decode::<u64>(bytes).is_err());
        let (_, bytes, rest) = read(rest).unwrap();
        assert_eq!(decode::<u64>(bytes).unwrap(), 5);
        assert!(rest.is_empty());
    }

    #[test]
    fn a_value_read_in_part_is_an_error() {
        let mut out = Vec::new();
        write(&mut out, 0, &(1u8, 2u8), &mut false).unwrap();
        let (_, bytes, _) = read(&out).unwrap();
        let e = decode::<u8>(bytes).unwrap_err();
        assert!(e.to_string().contains("left unread"), "{e}");
    }

    #[test]
    fn garbage_is_malformed_never_a_panic() {
        assert_eq!(read(&[]), Err(Malformed("missing")));
        assert_eq!(read(&[31 << 3, 1, 0]), Err(Malformed("length cut short")));
        assert_eq!(read(&[3 << 3, 1, 2]), Err(Malformed("value cut short")));
        assert_eq!(
            read(&[31 << 3, 0xff, 0xff, 0xff, 0xff, 1]),
            Err(Malformed("value cut short"))
        );
        for len in 0..64u8 {
            let bytes: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            let mut rest = &bytes[..];
            while let Ok((_, _, next)) = read(rest) {
                if next.len() == rest.len() {
                    break;
                }
                rest = next;
            }
        }
    }
}
