//! The one place that knows how values become bytes.
//!
//! Default: postcard (a stable, documented wire format). With the
//! `codec-bincode` feature: bincode 2.0.1 (see the README for why it is not
//! the default). Everything else in the crate calls only these functions.

use serde::de::DeserializeOwned;
use serde::Serialize;

mod de_guard;
#[cfg(not(feature = "codec-bincode"))]
mod fast;
#[cfg(not(feature = "codec-bincode"))]
mod ser_error;

use de_guard::Note;
#[cfg(not(feature = "codec-bincode"))]
use de_guard::{Caught, Keep, Plain};

/// A value that could not be encoded or decoded. Its text is the message of
/// the user's own `Serialize` or `Deserialize` when one of them failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(String);

impl CodecError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        CodecError(message.into())
    }
}

impl From<CodecError> for crate::Error {
    fn from(e: CodecError) -> Self {
        crate::Error::new(crate::ErrorKind::Codec(e.0))
    }
}

/// Appends the encoding of `value` to `out`.
///
/// `to_io` into a `Vec` measured as fast as any other postcard output path
/// (BENCHMARKS.md, "Codec").
#[cfg(not(feature = "codec-bincode"))]
#[inline]
pub fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    if fast::encode(value, out) {
        return Ok(());
    }
    encode_serde(value, out)
}

/// [`encode`] through serde: a type with no fast path (kept apart so that
/// the fast path inlines into the callers' loops).
#[cfg(not(feature = "codec-bincode"))]
fn encode_serde<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let mark = out.len();
    match postcard::to_io(value, &mut *out) {
        Ok(_) => Ok(()),
        Err(e) => {
            out.truncate(mark);
            Err(encode_error(value, e))
        }
    }
}

/// The error of a failed encode, in the words of the value's `Serialize`
/// when it raised one.
#[cfg(not(feature = "codec-bincode"))]
#[cold]
fn encode_error<T: Serialize + ?Sized>(value: &T, e: postcard::Error) -> CodecError {
    let message = match e {
        postcard::Error::SerdeSerCustom => ser_error::message_of(value),
        _ => None,
    };
    CodecError(message.unwrap_or_else(|| e.to_string()))
}

/// Decodes one value from the front of `bytes`, returning it and the rest.
///
/// Never trusts `bytes`: lengths inside are checked against what is there,
/// so a hostile input is an error, not a panic or a large allocation.
#[cfg(not(feature = "codec-bincode"))]
#[inline]
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, &[u8]), CodecError> {
    if let Some(fast) = fast::decode::<T>(bytes) {
        return fast;
    }
    decode_serde(bytes)
}

/// [`decode`] through serde: a type with no fast path.
#[cfg(not(feature = "codec-bincode"))]
fn decode_serde<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, &[u8]), CodecError> {
    // `postcard::take_from_bytes`, with a bound on nesting.
    let mut de = postcard::Deserializer::from_bytes(bytes);
    let value = match de_guard::deserialize::<T, _, Plain>(&mut de, &Note::default()) {
        Ok(value) => value,
        Err(e) => return Err(decode_error::<T>(bytes, e)),
    };
    let rest = de.finalize().map_err(|e| CodecError(e.to_string()))?;
    Ok((value, rest))
}

/// The error of a failed decode of a `T` from `bytes`, in the words of the
/// `Deserialize` that raised it: postcard drops that message (its `custom`
/// gives `SerdeDeCustom` whatever it was told), so the decode runs again,
/// keeping it. A `Deserialize` fails the same way on the same bytes.
#[cfg(not(feature = "codec-bincode"))]
#[cold]
fn decode_error<T: DeserializeOwned>(bytes: &[u8], e: postcard::Error) -> CodecError {
    if e != postcard::Error::SerdeDeCustom {
        return CodecError(e.to_string());
    }
    let note = Note::default();
    let mut de = postcard::Deserializer::from_bytes(bytes);
    match de_guard::deserialize::<T, _, Keep>(&mut de, &note) {
        Err(Caught::User(message)) => CodecError(message),
        Err(Caught::Inner(again)) => CodecError(note.take().unwrap_or_else(|| again.to_string())),
        Ok(_) => CodecError(e.to_string()),
    }
}

/// The value at the front of `bytes`, borrowed from them, and the rest: a
/// `&[u8]` or `&str` where [`encode`] wrote a `Vec<u8>` or a `String`
/// (the same bytes: a length, then the bytes), with no copy. No depth
/// guard: only for types of a fixed, shallow shape (the pool's own).
#[cfg(not(feature = "codec-bincode"))]
pub(crate) fn view<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<(T, &'a [u8]), CodecError> {
    postcard::take_from_bytes(bytes).map_err(|e| CodecError(e.to_string()))
}

/// How many bytes [`encode`] writes for every `T`, if that is the same for
/// every value and the encoding cannot fail (the fixed-width primitives):
/// values of such a type may go back to back in a dense run
/// (`channel/item.rs`).
#[cfg(not(feature = "codec-bincode"))]
#[inline(always)]
pub(crate) fn fixed_width<T: ?Sized>() -> Option<usize> {
    fast::width::<T>()
}

/// The bincode codec writes varints: never.
#[cfg(feature = "codec-bincode")]
#[inline(always)]
// The same signature as the postcard codec's, whose `T` picks the width.
#[allow(clippy::extra_unused_type_parameters)]
pub(crate) fn fixed_width<T: ?Sized>() -> Option<usize> {
    None
}

/// `buf[at..]` as the `T` it encodes, when that can take `buf`'s own
/// allocation (a large `Vec<u8>` that ends the buffer: its bytes move to
/// the front); `None` leaves `buf` untouched, for [`decode`].
#[cfg(not(feature = "codec-bincode"))]
pub(crate) fn take_tail<T>(buf: &mut Vec<u8>, at: usize) -> Option<T> {
    fast::take_tail(buf, at)
}

/// The bincode codec has no such path: always `None`.
#[cfg(feature = "codec-bincode")]
pub(crate) fn take_tail<T>(_buf: &mut Vec<u8>, _at: usize) -> Option<T> {
    None
}

/// The most bincode may allocate for one value: the largest frame either
/// side accepts by default (1 GiB, `channel::frame::MAX_FRAME`).
#[cfg(feature = "codec-bincode")]
const LIMIT: usize = 1 << 30;

#[cfg(feature = "codec-bincode")]
fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<LIMIT>()
}

/// Appends the encoding of `value` to `out`.
#[cfg(feature = "codec-bincode")]
pub fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let mark = out.len();
    bincode::serde::encode_into_std_write(value, &mut *out, config())
        .map(drop)
        .map_err(|e| {
            out.truncate(mark);
            match e {
                // bincode keeps the user's message, but shows it as `Debug`.
                bincode::error::EncodeError::OtherString(message) => CodecError(message),
                e => CodecError(e.to_string()),
            }
        })
}

/// Decodes one value from the front of `bytes`, returning it and the rest.
#[cfg(feature = "codec-bincode")]
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, &[u8]), CodecError> {
    let note = Note::default();
    bincode::serde::seed_decode_from_slice(de_guard::seed::<T>(&note), bytes, config())
        .map(|(v, n)| (v, &bytes[n..]))
        .map_err(|e| match e {
            bincode::error::DecodeError::OtherString(message) => {
                CodecError(note.take().unwrap_or(message))
            }
            e => CodecError(e.to_string()),
        })
}

/// The value at the front of `bytes`, borrowed from them, and the rest
/// (see the postcard codec's `view`).
#[cfg(feature = "codec-bincode")]
pub(crate) fn view<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<(T, &'a [u8]), CodecError> {
    bincode::serde::borrow_decode_from_slice(bytes, config())
        .map(|(v, n)| (v, &bytes[n..]))
        .map_err(|e| CodecError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_back_to_back() {
        let mut buf = Vec::new();
        encode(&(7u64, "seven".to_string()), &mut buf).unwrap();
        encode(&vec![1u8, 2, 3], &mut buf).unwrap();
        let ((n, s), rest): ((u64, String), _) = decode(&buf).unwrap();
        let (v, rest): (Vec<u8>, _) = decode(rest).unwrap();
        assert_eq!(
            (n, s.as_str(), v, rest.len()),
            (7, "seven", vec![1, 2, 3], 0)
        );
    }

    #[test]
    fn a_view_borrows_what_encode_wrote_for_bytes_and_text() {
        let mut buf = Vec::new();
        encode(&vec![0u8, 1, 255], &mut buf).unwrap();
        encode(&"été".to_string(), &mut buf).unwrap();
        let (bytes, rest): (&[u8], _) = view(&buf).unwrap();
        let (text, rest): (&str, _) = view(rest).unwrap();
        assert_eq!((bytes, text, rest.len()), (&[0u8, 1, 255][..], "été", 0));
        // Borrowed, not copied.
        assert!(buf.as_ptr_range().contains(&bytes.as_ptr()));
        // A length past the bytes, and text that is not UTF-8, are errors.
        assert!(view::<&[u8]>(&buf[..2]).is_err());
        let mut bad = Vec::new();
        encode(&vec![0xffu8, 0xfe], &mut bad).unwrap();
        assert!(view::<&str>(&bad).is_err());
    }

    #[test]
    fn hostile_length_is_an_error_not_an_allocation() {
        // A Vec<u8> claiming u32::MAX elements, followed by three bytes.
        let mut buf = Vec::new();
        encode(&(u32::MAX as u64), &mut buf).unwrap();
        buf.extend_from_slice(&[1, 2, 3]);
        assert!(decode::<Vec<u8>>(&buf).is_err());
        assert!(decode::<Vec<u64>>(&buf).is_err());
        assert!(decode::<String>(&buf).is_err());
    }

    /// A recursive type: one level per two bytes.
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    enum Tree {
        Leaf(u8),
        Node(Vec<Tree>),
    }

    /// `levels` nested `Node`s around a `Leaf`.
    fn nested(levels: usize) -> Vec<u8> {
        // The codec writes a bare integer fixed-width (`codec/fast.rs`); a
        // variant index and a length are varints, as serde writes them.
        let mut buf = Vec::new();
        for _ in 0..levels {
            buf.extend([1, 1]); // variant Node, one child
        }
        buf.extend([0, 0]); // variant Leaf, 0u8
        buf
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // Found while fuzzing (fuzz/README.md, seeds/*/regress-deep-tree):
        // with no depth limit, 2,027 levels (4 KB) overflowed a spawned
        // thread's stack in a debug build, 43,838 (88 KB) the main thread's
        // in release, and a stack overflow aborts the whole driver.
        let deep = nested(100_000);
        assert!(decode::<Tree>(&deep).is_err());
        // On a small stack too (a spawned thread, a debug build).
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || assert!(decode::<Tree>(&deep).is_err()))
            .unwrap()
            .join()
            .unwrap();
        // Nesting within the limit decodes (two levels per `Node`).
        let within = nested(de_guard::MAX_DEPTH / 2 - 1);
        let (tree, rest) = decode::<Tree>(&within).unwrap();
        assert!(matches!(tree, Tree::Node(_)) && rest.is_empty());
        assert!(decode::<Tree>(&nested(de_guard::MAX_DEPTH / 2)).is_err());
    }

    #[test]
    fn truncated_input_is_an_error() {
        let mut buf = Vec::new();
        encode(&"hello world".to_string(), &mut buf).unwrap();
        for cut in 0..buf.len() {
            assert!(decode::<String>(&buf[..cut]).is_err(), "cut at {cut}");
        }
    }
}
