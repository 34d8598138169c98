//! Types the codec moves without serde's per-element path. Driver and
//! worker are the same program, and a type is recognised by its `TypeId`
//! (`sys::as_same`), so the choice costs nothing at run time and both sides
//! make the same one.
//!
//! * `Vec<u8>` is written and read as postcard's byte string (the length,
//!   then the bytes: what postcard writes for a sequence of `u8` too), one
//!   copy each way instead of one serde call per byte.
//! * Integers of 16 bits and more, `f32` and `f64` are fixed-width little
//!   endian (`usize`/`isize` as 64 bits): one store and one load instead of
//!   a varint loop and a `memcpy` call. Unlike the rest, these are not
//!   postcard's bytes: a value must be read as the type it was written as
//!   (the pool always does; a `u32` read as a `u64` is an error).
//! * `String`, `u8`, `i8`, `bool` and `char` are read with postcard without
//!   the depth adapter of `de_guard.rs`: they cannot nest, and their
//!   `Deserialize` is std's, so there is no user message to keep.
//!
//! A length is checked against the bytes that are there before anything is
//! allocated, as postcard does. Figures: BENCHMARKS.md, issue 14.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Serialize;

use super::CodecError;
use crate::sys::{as_same, as_same_mut, Lifeless};

/// A `Vec<u8>` written as postcard's byte string.
struct AsBytes<'a>(&'a [u8]);

impl Serialize for AsBytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// A `Vec<u8>` read as postcard's byte string: one allocation of its
/// length, one copy.
struct ByteVec(Vec<u8>);

impl<'de> de::Deserialize<'de> for ByteVec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_byte_buf(ByteVisitor)
    }
}

struct ByteVisitor;

impl Visitor<'_> for ByteVisitor {
    type Value = ByteVec;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<ByteVec, E> {
        Ok(ByteVec(v.to_vec()))
    }
}

/// Appends `value` if its type has a fast path, and says whether it did.
#[inline(always)]
pub(super) fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> bool {
    macro_rules! fixed {
        ($($t:ty as $w:ty),*) => {
            $(
                if let Some(v) = as_same::<$t, T>(value) {
                    out.extend_from_slice(&(*v as $w).to_le_bytes());
                    return true;
                }
            )*
        };
    }
    fixed!(
        u64 as u64, u32 as u32, i64 as i64, i32 as i32, usize as u64, isize as i64, f64 as f64,
        f32 as f32, u16 as u16, i16 as i16, u128 as u128, i128 as i128
    );
    let Some(bytes) = as_same::<Vec<u8>, T>(value) else {
        return false;
    };
    // Writing into a `Vec` cannot fail.
    postcard::to_io(&AsBytes(bytes), &mut *out).is_ok()
}

/// The bytes [`encode`] always writes for a `T`, if it writes the same
/// number for every value (the fixed-width types): such values may be
/// written back to back with no head of their own (`channel/item.rs`,
/// dense runs).
#[inline(always)]
pub(super) fn width<T: ?Sized>() -> Option<usize> {
    macro_rules! each {
        ($($t:ty as $w:ty),*) => {
            $(
                if typeid::of::<T>() == std::any::TypeId::of::<$t>() {
                    return Some(std::mem::size_of::<$w>());
                }
            )*
        };
    }
    each!(
        u64 as u64, u32 as u32, i64 as i64, i32 as i32, usize as u64, isize as i64, f64 as f64,
        f32 as f32, u16 as u16, i16 as i16, u128 as u128, i128 as i128
    );
    None
}

/// The value at the front of `bytes` and the rest, if `T`'s type has a
/// fast path (`None`: it has none).
#[inline(always)]
pub(super) fn decode<T>(bytes: &[u8]) -> Option<Result<(T, &[u8]), CodecError>> {
    let mut slot: Option<T> = None;
    let rest = if let Some(s) = as_same_mut::<Option<Vec<u8>>, _>(&mut slot) {
        take(bytes, s, |b: ByteVec| b.0)
    } else if let Some(rest) = fixed(bytes, &mut slot) {
        rest
    } else {
        plain(bytes, &mut slot)?
    };
    Some(rest.map(|rest| (slot.expect("a value was read"), rest)))
}

/// [`decode`] for the fixed-width types.
#[inline(always)]
fn fixed<'b, T>(bytes: &'b [u8], slot: &mut Option<T>) -> Option<Result<&'b [u8], CodecError>> {
    macro_rules! each {
        ($($t:ty as $w:ty),*) => {
            $(
                if let Some(s) = as_same_mut::<Option<$t>, _>(slot) {
                    const N: usize = std::mem::size_of::<$w>();
                    return Some(match bytes.split_first_chunk::<N>() {
                        Some((head, rest)) => {
                            *s = Some(<$w>::from_le_bytes(*head) as $t);
                            Ok(rest)
                        }
                        None => Err(cut_short()),
                    });
                }
            )*
        };
    }
    each!(
        u64 as u64, u32 as u32, i64 as i64, i32 as i32, usize as u64, isize as i64, f64 as f64,
        f32 as f32, u16 as u16, i16 as i16, u128 as u128, i128 as i128
    );
    None
}

/// A fixed-width value with fewer bytes than its width: postcard's words.
#[cold]
fn cut_short() -> CodecError {
    CodecError(postcard::Error::DeserializeUnexpectedEnd.to_string())
}

/// [`decode`] for `String` and the primitives.
#[inline(always)]
fn plain<'b, T>(bytes: &'b [u8], slot: &mut Option<T>) -> Option<Result<&'b [u8], CodecError>> {
    macro_rules! each {
        ($($t:ty),*) => {
            $(
                if let Some(s) = as_same_mut::<Option<$t>, _>(slot) {
                    return Some(take(bytes, s, |v: $t| v));
                }
            )*
        };
    }
    each!(u8, i8, bool, char, String);
    None
}

/// Reads a `W` with postcard into `slot`, as `V`.
#[inline(always)]
fn take<'b, W: de::DeserializeOwned, V: Lifeless>(
    bytes: &'b [u8],
    slot: &mut Option<V>,
    into: impl FnOnce(W) -> V,
) -> Result<&'b [u8], CodecError> {
    match postcard::take_from_bytes::<W>(bytes) {
        Ok((value, rest)) => {
            *slot = Some(into(value));
            Ok(rest)
        }
        Err(e) => Err(CodecError(e.to_string())),
    }
}

/// Byte strings from this size up may take their buffer's allocation.
const TAKE_MIN: usize = 64 * 1024;

/// `buf[at..]` as the `T` it encodes, if `T` is `Vec<u8>`, `buf[at..]` is
/// exactly one byte string of at least 64 KiB, and it is at least half of
/// `buf`'s allocation: the bytes move to the front of `buf`, which becomes
/// the value (no new allocation, whose pages would all fault in, and no
/// second buffer to free). `None` leaves `buf` as it was.
pub(super) fn take_tail<T>(buf: &mut Vec<u8>, at: usize) -> Option<T> {
    let mut slot: Option<T> = None;
    let s = as_same_mut::<Option<Vec<u8>>, _>(&mut slot)?;
    let (len, rest) = postcard::take_from_bytes::<usize>(buf.get(at..)?).ok()?;
    if len != rest.len() || len < TAKE_MIN || len < buf.capacity() / 2 {
        return None;
    }
    let start = buf.len() - len;
    buf.drain(..start);
    *s = Some(std::mem::take(buf));
    slot
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What postcard itself writes for `value`, through serde.
    fn postcard_bytes<T: Serialize>(value: &T) -> Vec<u8> {
        postcard::to_allocvec(value).unwrap()
    }

    #[test]
    fn a_byte_vector_is_written_as_postcard_writes_it() {
        for len in [0usize, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
            let v: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut out = vec![9];
            assert!(encode(&v, &mut out));
            assert_eq!(out[1..], postcard_bytes(&v)[..], "length {len}");
            let (back, rest) = decode::<Vec<u8>>(&out[1..]).unwrap().unwrap();
            assert_eq!((back, rest.len()), (v, 0));
        }
        // Other types take serde's path.
        assert!(!encode(&vec![1u16], &mut Vec::new()));
        assert!(!encode("str", &mut Vec::new()));
        assert!(decode::<Vec<u16>>(&[0]).is_none());
        assert!(decode::<(u8, u8)>(&[0, 0]).is_none());
    }

    #[test]
    fn plain_types_read_what_postcard_wrote() {
        let mut bytes = postcard_bytes(&"héllo".to_string());
        bytes.extend(postcard_bytes(&'λ'));
        bytes.extend(postcard_bytes(&true));
        let (b, rest) = decode::<String>(&bytes).unwrap().unwrap();
        let (d, rest) = decode::<char>(rest).unwrap().unwrap();
        let (e, rest) = decode::<bool>(rest).unwrap().unwrap();
        assert_eq!((b.as_str(), d, e, rest.len()), ("héllo", 'λ', true, 0));
    }

    #[test]
    fn fixed_width_values_round_trip_and_a_short_one_is_an_error() {
        let mut out = Vec::new();
        assert!(encode(&u64::MAX, &mut out));
        assert!(encode(&-3i32, &mut out));
        assert!(encode(&usize::MAX, &mut out));
        assert!(encode(&1.5f64, &mut out));
        assert!(encode(&u128::MAX, &mut out));
        assert_eq!(out.len(), 8 + 4 + 8 + 8 + 16);
        assert_eq!(
            (width::<u64>(), width::<i32>(), width::<usize>(), width::<u128>()),
            (Some(8), Some(4), Some(8), Some(16))
        );
        assert_eq!((width::<u8>(), width::<String>(), width::<(u64, u64)>()), (None, None, None));
        let (a, rest) = decode::<u64>(&out).unwrap().unwrap();
        let (b, rest) = decode::<i32>(rest).unwrap().unwrap();
        let (c, rest) = decode::<usize>(rest).unwrap().unwrap();
        let (d, rest) = decode::<f64>(rest).unwrap().unwrap();
        let (e, rest) = decode::<u128>(rest).unwrap().unwrap();
        assert_eq!((a, b, c, d, e, rest.len()), (u64::MAX, -3, usize::MAX, 1.5, u128::MAX, 0));
        for cut in 0..8 {
            assert!(decode::<u64>(&out[..cut]).unwrap().is_err(), "cut at {cut}");
        }
        // A tuple of them is serde's (postcard's) own.
        assert!(!encode(&(1u64, 2u64), &mut out));
        assert!(decode::<(u64, u64)>(&out).is_none());
    }

    #[test]
    fn a_large_byte_string_at_the_end_takes_the_buffer() {
        let value = vec![7u8; 100_000];
        let mut buf = vec![1, 2, 3];
        assert!(encode(&value, &mut buf));
        let ptr = buf.as_ptr();
        let taken = take_tail::<Vec<u8>>(&mut buf, 3).unwrap();
        assert_eq!((taken.as_ptr(), &taken), (ptr, &value));
        assert!(buf.is_empty());
        // Not for other types, small values, a value that does not end the
        // buffer or whose length is not what is there: the buffer stays.
        let mut buf = vec![];
        encode(&value, &mut buf);
        let whole = buf.clone();
        assert!(take_tail::<String>(&mut buf, 0).is_none());
        assert!(take_tail::<Vec<u8>>(&mut buf, 1).is_none());
        buf.push(0);
        assert!(take_tail::<Vec<u8>>(&mut buf, 0).is_none());
        buf.pop();
        buf.pop();
        assert!(take_tail::<Vec<u8>>(&mut buf, 0).is_none());
        assert_eq!(buf[..], whole[..whole.len() - 1]);
        let mut small = vec![];
        encode(&vec![7u8; 100], &mut small);
        assert!(take_tail::<Vec<u8>>(&mut small, 0).is_none());
    }

    #[test]
    fn a_hostile_length_is_an_error_before_any_allocation() {
        // Claims u32::MAX bytes, has three.
        let mut bytes = postcard_bytes(&(u32::MAX as usize));
        bytes.extend([1, 2, 3]);
        assert!(decode::<Vec<u8>>(&bytes).unwrap().is_err());
        assert!(decode::<String>(&bytes).unwrap().is_err());
        // Cut short anywhere, and not UTF-8.
        let full = postcard_bytes(&vec![5u8; 300]);
        for cut in 0..full.len() {
            assert!(decode::<Vec<u8>>(&full[..cut]).unwrap().is_err(), "cut at {cut}");
        }
        assert!(decode::<String>(&[2, 0xff, 0xfe]).unwrap().is_err());
        assert!(decode::<bool>(&[2]).unwrap().is_err());
    }
}
