//! One item on the wire: an input in a `Run` body, an outcome in a `Done`
//! body. A head byte holds a 3-bit status and the value's length when it is
//! under [`LONG`] bytes; at [`LONG`], a `u32` little-endian length follows.
//! Then the codec value.
//!
//! The length is what lets one item fail alone: a value whose user
//! `Deserialize` errs or panics part-way leaves the reader at the next
//! item's head, not lost in the middle of the body.
//!
//! A *dense run* holds many items of status `Ok` whose values all have the
//! same width, with one head for all of them: the head byte [`DENSE`], the
//! width (`u8`, 1 to 16), the count (`u32` little-endian), then the values
//! back to back. Values of a fixed-width type (`codec::fixed_width`: their
//! encoding cannot fail, and no user code reads or writes them) go in dense
//! runs, so such a value costs no head to write or parse; any other status
//! (an exception) is an ordinary item between two runs. [`Items`] reads
//! both, so a reader never depends on which one a writer chose.

use serde::Serialize;

use crate::codec::{self, CodecError};

/// Bits of the head byte that hold the status.
const STATUS_BITS: u8 = 0b111;
/// The head byte of a dense run (no status has these bits).
const DENSE: u8 = 0b111;
/// Bytes of a dense run's head: [`DENSE`], the width, the count.
const DENSE_HEAD: usize = 1 + 1 + 4;
/// The widest value a dense run may hold.
const DENSE_MAX_WIDTH: usize = 16;
/// The status of an item in a dense run (`outcome::Status::Ok`).
const OK: u8 = 0;
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

/// [`write()`] with the `u32` length reserved: the guess is that the value is long.
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

/// Appends one item of `status` whose value is the already encoded `value`.
pub(crate) fn write_raw(out: &mut Vec<u8>, status: u8, value: &[u8]) {
    debug_assert!(status <= STATUS_BITS && status != DENSE);
    if value.len() < LONG {
        out.push(status | (value.len() as u8) << 3);
    } else {
        out.push(status | (LONG as u8) << 3);
        // A frame is at most `u32::MAX` bytes, and so is any value in it.
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(value);
}

/// Starts a dense run of values `width` bytes wide (see the module docs);
/// returns where it starts, for [`end_dense`]. The caller appends the
/// values, each exactly `width` bytes.
#[inline]
pub(crate) fn begin_dense(out: &mut Vec<u8>, width: usize) -> usize {
    debug_assert!((1..=DENSE_MAX_WIDTH).contains(&width));
    let at = out.len();
    out.extend_from_slice(&[DENSE, width as u8, 0, 0, 0, 0]);
    at
}

/// Ends the dense run begun at `at`: its count is what was appended since.
/// An empty run is taken back.
#[inline]
pub(crate) fn end_dense(out: &mut Vec<u8>, at: usize) {
    let width = out[at + 1] as usize;
    let bytes = out.len() - at - DENSE_HEAD;
    debug_assert_eq!(bytes % width, 0, "a dense value of the wrong width");
    if bytes == 0 {
        out.truncate(at);
        return;
    }
    // A frame is at most `u32::MAX` bytes: so is the count.
    let count = (bytes / width) as u32;
    out[at + 2..at + DENSE_HEAD].copy_from_slice(&count.to_le_bytes());
}

/// Where a reader of items is inside a dense run: the values left in it,
/// and their width (nothing left: between items).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InRun {
    left: u32,
    width: u8,
}

/// Reads items one after another from a body, ordinary items and dense
/// runs alike.
#[derive(Debug, Clone, Copy)]
pub struct Items<'a> {
    rest: &'a [u8],
    run: InRun,
}

impl<'a> Items<'a> {
    /// A reader at the start of `body` (a `Run` or `Done` body).
    pub fn new(body: &'a [u8]) -> Self {
        Items::resume(body, InRun::default())
    }

    /// A reader where [`into_parts`](Items::into_parts) left another.
    pub fn resume(rest: &'a [u8], run: InRun) -> Self {
        Items { rest, run }
    }

    /// The bytes not read yet (a dense run's values left included) and
    /// where in a run the reader is.
    pub fn into_parts(self) -> (&'a [u8], InRun) {
        (self.rest, self.run)
    }

    /// The bytes not read yet, if the reader is between items (not in a
    /// dense run).
    #[cfg(any(test, fuzzing, feature = "redis"))]
    pub fn between(&self) -> Option<&'a [u8]> {
        (self.run.left == 0).then_some(self.rest)
    }

    /// The next item: its status and its value's bytes.
    #[inline]
    pub fn next_item(&mut self) -> Result<(u8, &'a [u8]), Malformed> {
        if self.run.left > 0 {
            // The run's head checked that its values are all there.
            let (value, rest) = self.rest.split_at(self.run.width as usize);
            (self.rest, self.run.left) = (rest, self.run.left - 1);
            return Ok((OK, value));
        }
        self.next_head()
    }

    /// [`next_item`](Items::next_item) at a head: an ordinary item, or the
    /// first value of a dense run.
    #[inline]
    fn next_head(&mut self) -> Result<(u8, &'a [u8]), Malformed> {
        loop {
            if self.rest.first() != Some(&DENSE) {
                let (status, value, rest) = read(self.rest)?;
                self.rest = rest;
                return Ok((status, value));
            }
            let (head, rest) = self
                .rest
                .split_first_chunk::<DENSE_HEAD>()
                .ok_or(Malformed("dense run's head cut short"))?;
            let width = head[1] as usize;
            let count = u32::from_le_bytes([head[2], head[3], head[4], head[5]]);
            if !(1..=DENSE_MAX_WIDTH).contains(&width) {
                return Err(Malformed("dense run of a bad width"));
            }
            if (count as usize).checked_mul(width).is_none_or(|n| n > rest.len()) {
                return Err(Malformed("dense run cut short"));
            }
            self.rest = rest;
            self.run = InRun {
                left: count,
                width: width as u8,
            };
            if count > 0 {
                return self.next_item();
            }
        }
    }
}

/// The items of `body` from the `from`-th on, up to `to`, each as an
/// ordinary item (a dense run's values each with a head of its own), for a
/// retry of part of a batch or a body cut into items.
pub(crate) fn copy_range(
    body: &[u8],
    from: u32,
    to: u32,
    out: &mut Vec<u8>,
) -> Result<(), Malformed> {
    let mut items = Items::new(body);
    for k in 0..to {
        let (status, value) = items.next_item()?;
        if k >= from {
            write_raw(out, status, value);
        }
    }
    Ok(())
}

/// The value of the `n`-th item of `body` (insights: a slow input).
pub(crate) fn nth(body: &[u8], n: u32) -> Option<&[u8]> {
    let mut items = Items::new(body);
    for _ in 0..n {
        items.next_item().ok()?;
    }
    items.next_item().ok().map(|(_, value)| value)
}

/// The `count` items at the front of `body`, each as an ordinary item's
/// bytes (see [`copy_range`]), and the bytes after them; `Err` if there are
/// not that many or the reader is left inside a dense run.
#[cfg(any(test, feature = "redis"))]
pub(crate) fn split(body: &[u8], count: u32) -> Result<(Vec<Vec<u8>>, &[u8]), Malformed> {
    let mut items = Items::new(body);
    let mut out = Vec::with_capacity(count.min(1 << 16) as usize);
    for _ in 0..count {
        let (status, value) = items.next_item()?;
        let mut one = Vec::with_capacity(value.len() + 5);
        write_raw(&mut one, status, value);
        out.push(one);
    }
    let rest = items.between().ok_or(Malformed("a dense run holds more items"))?;
    Ok((out, rest))
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

/// [`decode`] of a type that borrows its strings from `value`: a length
/// inside is checked against the bytes there before anything is copied,
/// under either codec (bincode's owned decode allocates what a length
/// claims first). For the pool's own wire types (messages, panics, errors).
pub(crate) fn decode_borrowed<'a, T: serde::Deserialize<'a>>(value: &'a [u8]) -> Result<T, CodecError> {
    let (v, rest) = codec::view::<T>(value)?;
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

    // Hand-made runs of `u64`s as postcard's codec writes them (bincode's
    // writes none).
    #[cfg(not(feature = "codec-bincode"))]
    #[test]
    fn dense_runs_and_ordinary_items_read_alike() {
        let mut body = Vec::new();
        let at = begin_dense(&mut body, 8);
        for v in [1u64, 2, 3] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        end_dense(&mut body, at);
        write(&mut body, 2, "oops", &mut false).unwrap();
        let empty = begin_dense(&mut body, 8);
        end_dense(&mut body, empty);
        assert_eq!(body.len(), DENSE_HEAD + 24 + 6, "an empty run is taken back");
        let at = begin_dense(&mut body, 8);
        body.extend_from_slice(&4u64.to_le_bytes());
        end_dense(&mut body, at);
        write(&mut body, 0, &5u64, &mut false).unwrap();
        // A run of none in the middle is skipped.
        let mut with_empty = body.clone();
        with_empty.splice(DENSE_HEAD + 24..DENSE_HEAD + 24, [DENSE, 8, 0, 0, 0, 0]);
        for body in [&body, &with_empty] {
            let mut items = Items::new(body);
            let mut got = Vec::new();
            for _ in 0..6 {
                let (status, value) = items.next_item().unwrap();
                got.push((status, value.to_vec()));
            }
            assert_eq!(items.between(), Some(&[][..]));
            let want: Vec<(u8, Vec<u8>)> = vec![
                (0, 1u64.to_le_bytes().to_vec()),
                (0, 2u64.to_le_bytes().to_vec()),
                (0, 3u64.to_le_bytes().to_vec()),
                (2, [4, b'o', b'o', b'p', b's'].to_vec()),
                (0, 4u64.to_le_bytes().to_vec()),
                (0, 5u64.to_le_bytes().to_vec()),
            ];
            assert_eq!(got, want);
            assert!(items.next_item().is_err());
        }
        // A reader stopped in a run resumes there.
        let mut items = Items::new(&body);
        items.next_item().unwrap();
        assert_eq!(items.between(), None);
        let (rest, run) = items.into_parts();
        let mut again = Items::resume(rest, run);
        assert_eq!(again.next_item().unwrap().1, 2u64.to_le_bytes());
        // Cut into ordinary items: the same statuses and values.
        let (each, rest) = split(&body, 6).unwrap();
        assert!(rest.is_empty());
        let mut flat = Vec::new();
        copy_range(&body, 0, 6, &mut flat).unwrap();
        assert_eq!(flat, each.concat());
        let mut mid = Vec::new();
        copy_range(&body, 1, 4, &mut mid).unwrap();
        assert_eq!(mid, each[1..4].concat());
        assert_eq!(nth(&body, 4), Some(&4u64.to_le_bytes()[..]));
        assert_eq!(nth(&body, 3), Some(&[4, b'o', b'o', b'p', b's'][..]));
        assert_eq!(nth(&body, 6), None);
        let (status, value, _) = read(&each[3]).unwrap();
        assert_eq!((status, value), (2, &[4, b'o', b'o', b'p', b's'][..]));
        assert!(split(&body, 1).is_err(), "stops inside a run");
        assert!(split(&body, 7).is_err(), "more than there are");
    }

    #[test]
    fn a_bad_dense_head_is_malformed() {
        let run = |width: u8, count: u32, have: usize| {
            let mut b = vec![DENSE, width];
            b.extend_from_slice(&count.to_le_bytes());
            b.extend(std::iter::repeat_n(9u8, have));
            b
        };
        let err = |b: &[u8]| Items::new(b).next_item().unwrap_err();
        assert_eq!(err(&run(0, 1, 8)), Malformed("dense run of a bad width"));
        assert_eq!(err(&run(17, 1, 17)), Malformed("dense run of a bad width"));
        assert_eq!(err(&run(8, 2, 15)), Malformed("dense run cut short"));
        assert_eq!(err(&run(16, u32::MAX, 64)), Malformed("dense run cut short"));
        assert_eq!(err(&[DENSE, 8, 1]), Malformed("dense run's head cut short"));
        assert_eq!(err(&run(8, 0, 0)), Malformed("missing"));
        assert!(Items::new(&run(8, 2, 16)).next_item().is_ok());
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
            let mut items = Items::new(&bytes);
            while items.next_item().is_ok() {}
        }
    }
}
