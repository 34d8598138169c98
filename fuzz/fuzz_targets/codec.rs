//! The codec on task envelopes (`pool_runtime::codec`, public API).
//!
//! 1. Hostile bytes, decoded as each of several types: an error or a value,
//!    never a panic, a hang or a large allocation; a value re-encodes and
//!    decodes to itself; every proper prefix of what a value consumed is an
//!    error (a truncated envelope never passes for a shorter value); decoding
//!    back to back (as a worker walks a `Run` body) always makes progress.
//! 2. Round trip: values built by `arbitrary` from the input, encoded back to
//!    back into one buffer (as inputs are in a `Run` body) decode to
//!    themselves, in order, and leave nothing behind.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use pool_runtime::codec::{decode, encode};
use pool_runtime_fuzz::{largest, on_small_stack, reset_largest, Kind, Record, Tree, ALLOC_BOUND};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

/// One value of one of the fuzzed types.
#[derive(Arbitrary, Debug, Clone, PartialEq)]
enum Value {
    U64(u64),
    Str(String),
    Bytes(Vec<u8>),
    Pair((u64, String)),
    Rec(Record),
    Res(Result<Vec<u8>, String>),
    Kinds(Vec<Kind>),
    Opt(Option<i16>),
    Unit(()),
    Tree(Tree),
}

fuzz_target!(|data: &[u8]| on_small_stack(data, one));

fn one(data: &[u8]) {
    reset_largest();

    hostile::<u64>(data);
    hostile::<String>(data);
    hostile::<Vec<u8>>(data);
    hostile::<(u64, String)>(data);
    hostile::<Record>(data);
    hostile::<Result<Vec<u8>, String>>(data);
    hostile::<Vec<Kind>>(data);
    hostile::<Option<i16>>(data);
    hostile::<Tree>(data);

    round_trip(data);

    let big = largest();
    assert!(big <= ALLOC_BOUND, "an allocation of {big} bytes (bound {ALLOC_BOUND})");
}

fn hostile<T: Serialize + DeserializeOwned + PartialEq + Debug + 'static>(data: &[u8]) {
    let Ok((value, rest)) = decode::<T>(data) else {
        return;
    };
    assert!(
        rest.len() <= data.len() && std::ptr::eq(rest.as_ptr_range().end, data.as_ptr_range().end),
        "the rest is not a suffix of the input"
    );
    let used = data.len() - rest.len();

    // A value re-encodes to at most what it was read from, and reads back.
    let mut again = Vec::new();
    encode(&value, &mut again).expect("a decoded value encodes");
    assert!(again.len() <= used, "{} bytes re-encoded from {used}", again.len());
    let (back, left) = decode::<T>(&again).expect("a re-encoded value decodes");
    assert_eq!(back, value);
    assert!(left.is_empty());
    forget_deep(back);

    // Every cut of those bytes is an error (all cuts when short, else 64 of them).
    let cuts: Box<dyn Iterator<Item = usize>> = if used <= 64 {
        Box::new(0..used)
    } else {
        Box::new((0..64).map(|k| k * used / 64))
    };
    for cut in cuts {
        match decode::<T>(&data[..cut]) {
            Err(_) => {}
            Ok((v, _)) => panic!("{cut} of {used} bytes decoded as {v:?}"),
        }
    }
    forget_deep(value);

    // Back to back: each value takes at least one byte (no zero-sized types here).
    let mut rest = rest;
    while let Ok((v, r)) = decode::<T>(rest) {
        assert!(r.len() < rest.len(), "a decode consumed nothing");
        rest = r;
        forget_deep(v);
    }
}

fn round_trip(data: &[u8]) {
    let Ok(values) = Vec::<Value>::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let mut buf = Vec::new();
    for v in &values {
        match v {
            Value::U64(x) => encode(x, &mut buf),
            Value::Str(x) => encode(x, &mut buf),
            Value::Bytes(x) => encode(x, &mut buf),
            Value::Pair(x) => encode(x, &mut buf),
            Value::Rec(x) => encode(x, &mut buf),
            Value::Res(x) => encode(x, &mut buf),
            Value::Kinds(x) => encode(x, &mut buf),
            Value::Opt(x) => encode(x, &mut buf),
            Value::Unit(x) => encode(x, &mut buf),
            Value::Tree(x) => encode(x, &mut buf),
        }
        .expect("every fuzzed value encodes");
    }
    let mut rest = &buf[..];
    for v in values {
        rest = match v {
            Value::U64(x) => same(x, rest),
            Value::Str(x) => same(x, rest),
            Value::Bytes(x) => same(x, rest),
            Value::Pair(x) => same(x, rest),
            Value::Rec(x) => same(x, rest),
            Value::Res(x) => same(x, rest),
            Value::Kinds(x) => same(x, rest),
            Value::Opt(x) => same(x, rest),
            Value::Unit(x) => same(x, rest),
            Value::Tree(x) => same(x, rest),
        };
    }
    assert!(rest.is_empty(), "{} bytes left after the last value", rest.len());
}

/// Decodes the next value of `bytes` and checks that it is `want`.
fn same<T: DeserializeOwned + PartialEq + Debug + 'static>(want: T, bytes: &[u8]) -> &[u8] {
    let (got, rest) = decode::<T>(bytes).expect("an encoded value decodes");
    assert_eq!(got, want);
    forget_deep(got);
    forget_deep(want);
    rest
}

/// Drops a value that may be a deep [`Tree`] without recursing.
fn forget_deep<T: 'static>(v: T) {
    let mut slot = Some(v);
    if let Some(t) = (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<Tree>>() {
        if let Some(t) = t.take() {
            t.drop_flat();
        }
    }
}
