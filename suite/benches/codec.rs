//! Which codec, and which encode path, for pool frames: measured on frames
//! like ours — values appended back to back to one `Vec<u8>`, then decoded
//! one by one from the front of the buffer (take-from-front).
//!
//! ```text
//! cargo bench -p pool-suite --bench codec                 # full run (~1 min)
//! cargo bench -p pool-suite --bench codec -- --quick      # smoke run, smaller sizes
//! cargo bench -p pool-suite --bench codec -- u64          # one payload
//! ```
//!
//! Candidates (serde-based unless said):
//! * postcard 1.x `to_io` — the reference, and what `pool-runtime/src/codec.rs` uses;
//! * postcard `to_extend` — `Extend<u8>` flavor, Vec moved in and out;
//! * postcard with a custom `Flavor` that pushes straight into `&mut Vec<u8>`
//!   (what codec.rs used between commits d79ea1a and b365136),
//!   and one whose `try_extend` copies short runs (varints) without `memmove`;
//! * bincode 2.0.1 (serde feature, `standard()` + limit, as codec.rs's opt-in):
//!   `encode_into_std_write` and `encode_into_writer` with a Vec writer;
//! * wincode (crates.io latest): it has NO serde support — it only encodes
//!   types that implement its own `SchemaWrite`/`SchemaRead` (derive macros),
//!   so it cannot serve an API whose contract is `Serialize + DeserializeOwned`.
//!   Measured anyway, with its own derives, to show what that costs us.

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Instant;

use common::{median, Opts};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------
// Payloads

#[derive(
    Serialize, Deserialize, wincode::SchemaWrite, wincode::SchemaRead, Clone, PartialEq, Debug,
)]
struct Record {
    id: u64,
    data: Vec<u8>,
}

/// The same record with its bytes as `serde_bytes`: one length + one memcpy
/// instead of one serde call per byte. Shown for users with bulk bytes.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
struct RecordBytes {
    id: u64,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

// ---------------------------------------------------------------------------
// Encode paths

/// postcard flavor that appends to a borrowed Vec: one `push` per byte,
/// one `extend_from_slice` per run of bytes, no move of the Vec.
struct VecFlavor<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for VecFlavor<'_> {
    type Output = ();
    #[inline(always)]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }
    #[inline(always)]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }
    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// postcard flavor like [`VecFlavor`], but whose `try_extend` copies short
/// runs (postcard's varints: at most 10 bytes) byte by byte into reserved
/// space, instead of calling `memmove` for 1–3 bytes.
struct VecFlavorSmall<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for VecFlavorSmall<'_> {
    type Output = ();
    #[inline(always)]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }
    #[inline(always)]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if data.len() <= 16 {
            self.0.reserve(16);
            let len = self.0.len();
            // SAFETY: 16 bytes are reserved past `len`; `data.len() <= 16`
            // bytes are written there, then the length covers exactly them.
            unsafe {
                let dst = self.0.as_mut_ptr().add(len);
                for (i, &b) in data.iter().enumerate() {
                    dst.add(i).write(b);
                }
                self.0.set_len(len + data.len());
            }
        } else {
            self.0.extend_from_slice(data);
        }
        Ok(())
    }
    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// bincode writer that appends to a borrowed Vec.
struct BincodeVec<'a>(&'a mut Vec<u8>);

impl bincode::enc::write::Writer for BincodeVec<'_> {
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

fn bincode_config() -> impl bincode::config::Config {
    // As pool-runtime's codec-bincode: standard (varint) with the 1 GiB frame limit.
    bincode::config::standard().with_limit::<{ 1 << 30 }>()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path {
    PostcardIo,
    PostcardExtend,
    PostcardFlavor,
    PostcardSmall,
    BincodeStdWrite,
    BincodeWriter,
    Wincode,
}

const PATHS: [Path; 7] = [
    Path::PostcardIo,
    Path::PostcardExtend,
    Path::PostcardFlavor,
    Path::PostcardSmall,
    Path::BincodeStdWrite,
    Path::BincodeWriter,
    Path::Wincode,
];

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::PostcardIo => "postcard to_io (reference, = codec.rs)",
            Path::PostcardExtend => "postcard to_extend",
            Path::PostcardFlavor => "postcard Vec flavor",
            Path::PostcardSmall => "postcard Vec flavor, short-copy",
            Path::BincodeStdWrite => "bincode 2 std_write",
            Path::BincodeWriter => "bincode 2 Vec writer",
            Path::Wincode => "wincode (own derive, no serde)",
        }
    }
}

/// What a payload type must support to be run through every path.
trait Payload: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug {
    fn wincode_encode(&self, out: &mut Vec<u8>);
    fn wincode_decode(bytes: &mut &[u8]) -> Self;
    const HAS_WINCODE: bool = true;
}

macro_rules! wincode_payload {
    ($($t:ty),*) => {$(
        impl Payload for $t {
            #[inline(always)]
            fn wincode_encode(&self, out: &mut Vec<u8>) {
                <$t as wincode::Serialize>::serialize_into(&mut *out, self).expect("wincode encode");
            }
            #[inline(always)]
            fn wincode_decode(bytes: &mut &[u8]) -> Self {
                <$t as wincode::DeserializeOwned>::deserialize_from(bytes).expect("wincode decode")
            }
        }
    )*};
}
wincode_payload!(u64, (u64, String), Record, Vec<u8>);

impl Payload for RecordBytes {
    fn wincode_encode(&self, _: &mut Vec<u8>) {
        unreachable!()
    }
    fn wincode_decode(_: &mut &[u8]) -> Self {
        unreachable!()
    }
    const HAS_WINCODE: bool = false;
}

#[inline(always)]
fn encode<T: Payload>(path: Path, v: &T, out: &mut Vec<u8>) {
    match path {
        Path::PostcardIo => {
            postcard::to_io(v, &mut *out).expect("encode");
        }
        Path::PostcardExtend => {
            let buf = std::mem::take(out);
            *out = postcard::to_extend(v, buf).expect("encode");
        }
        Path::PostcardFlavor => postcard::serialize_with_flavor(v, VecFlavor(out)).expect("encode"),
        Path::PostcardSmall => {
            postcard::serialize_with_flavor(v, VecFlavorSmall(out)).expect("encode")
        }
        Path::BincodeStdWrite => {
            bincode::serde::encode_into_std_write(v, out, bincode_config()).expect("encode");
        }
        Path::BincodeWriter => {
            bincode::serde::encode_into_writer(v, BincodeVec(out), bincode_config())
                .expect("encode")
        }
        Path::Wincode => v.wincode_encode(out),
    }
}

#[inline(always)]
fn decode<T: Payload>(path: Path, bytes: &mut &[u8]) -> T {
    match path {
        Path::PostcardIo | Path::PostcardExtend | Path::PostcardFlavor | Path::PostcardSmall => {
            let (v, rest) = postcard::take_from_bytes::<T>(bytes).expect("decode");
            *bytes = rest;
            v
        }
        Path::BincodeStdWrite | Path::BincodeWriter => {
            let (v, n) =
                bincode::serde::decode_from_slice::<T, _>(bytes, bincode_config()).expect("decode");
            *bytes = &bytes[n..];
            v
        }
        Path::Wincode => T::wincode_decode(bytes),
    }
}

// ---------------------------------------------------------------------------
// Measurement

struct Sample {
    enc: Vec<f64>,
    dec: Vec<f64>,
    bytes: usize,
}

fn run_case<T: Payload>(opts: &Opts, name: &str, values: &[T]) {
    if !opts.wants(name) {
        return;
    }
    let n = values.len();
    let paths: Vec<Path> = PATHS
        .iter()
        .copied()
        .filter(|p| T::HAS_WINCODE || *p != Path::Wincode)
        .collect();
    let mut samples: Vec<Sample> = paths
        .iter()
        .map(|_| Sample {
            enc: vec![],
            dec: vec![],
            bytes: 0,
        })
        .collect();
    let mut buf: Vec<u8> = Vec::new();
    let mut reference: Option<Vec<u8>> = None;
    // One warm-up round, then `runs` rounds; in each round every path runs
    // once, interleaved, so a noisy moment of the VM hits them all.
    for round in 0..=opts.runs {
        for (k, &path) in paths.iter().enumerate() {
            buf.clear();
            let t = Instant::now();
            for v in values {
                encode(path, black_box(v), &mut buf);
            }
            let enc = t.elapsed().as_nanos() as f64 / n as f64;
            black_box(&buf);
            // The postcard paths must produce exactly the same bytes.
            if matches!(path, Path::PostcardIo) {
                reference = Some(buf.clone());
            } else if matches!(
                path,
                Path::PostcardExtend | Path::PostcardFlavor | Path::PostcardSmall
            ) {
                assert!(
                    reference.as_deref() == Some(&buf[..]),
                    "{} differs from to_io",
                    path.name()
                );
            }
            let t = Instant::now();
            let mut rest: &[u8] = &buf;
            for _ in 0..n {
                let v: T = decode(path, &mut rest);
                black_box(&v);
            }
            let dec = t.elapsed().as_nanos() as f64 / n as f64;
            assert!(rest.is_empty());
            if round == 0 {
                // Check the round trip once, outside the timed loop.
                let mut rest: &[u8] = &buf;
                for v in values.iter().take(3) {
                    let back: T = decode(path, &mut rest);
                    assert_eq!(&back, v, "{} does not round-trip", path.name());
                }
                continue;
            }
            let s = &mut samples[k];
            s.enc.push(enc);
            s.dec.push(dec);
            s.bytes = buf.len();
        }
    }
    let base_enc = median(&samples[0].enc);
    let base_dec = median(&samples[0].dec);
    println!("\n### {name} ({n} values, median of {} runs)\n", opts.runs);
    println!("| path | encode ns/value | decode ns/value | bytes/value | encode speed vs to_io | decode speed vs postcard |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (k, &path) in paths.iter().enumerate() {
        let s = &samples[k];
        let (e, d) = (median(&s.enc), median(&s.dec));
        println!(
            "| {} | {} | {} | {:.1} | {:.2}x | {:.2}x |",
            path.name(),
            fmt_ns(e),
            fmt_ns(d),
            s.bytes as f64 / n as f64,
            base_enc / e,
            base_dec / d,
        );
    }
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 100.0 {
        format!("{ns:.0}")
    } else {
        format!("{ns:.2}")
    }
}

fn main() {
    let opts = Opts::from_args();
    println!("## Codec bench\n");
    println!("machine: {}", common::machine());
    println!("load average at start: {}", common::loadavg());
    println!(
        "command: cargo bench -p pool-suite --bench codec --{}",
        if opts.quick { " --quick" } else { "" }
    );
    println!(
        "speed ratios: time of postcard `to_io` (the reference) / time of the path; > 1 = faster"
    );

    // The tiny-task case: the inputs of `pool.map(square, 0..1_000_000)`.
    let n = opts.size(1_000_000, 100_000);
    let ints: Vec<u64> = (0..n as u64).collect();
    run_case(&opts, "u64", &ints);
    // Its results: squares, up to 2^40 (6 varint bytes).
    let squares: Vec<u64> = (0..n as u64).map(|x| x * x).collect();
    run_case(&opts, "u64-square", &squares);
    drop((ints, squares));

    let n = opts.size(200_000, 20_000);
    let pairs: Vec<(u64, String)> = (0..n as u64)
        .map(|i| (i * 7919, format!("key-{i:08}")))
        .collect();
    run_case(&opts, "(u64,String)", &pairs);
    drop(pairs);

    let n = opts.size(2_000, 200);
    let records: Vec<Record> = (0..n as u64)
        .map(|i| Record {
            id: i,
            data: (0..4096).map(|b| (b as u64 * 31 + i) as u8).collect(),
        })
        .collect();
    run_case(&opts, "struct-4KiB", &records);
    let rb: Vec<RecordBytes> = records
        .iter()
        .map(|r| RecordBytes {
            id: r.id,
            data: r.data.clone(),
        })
        .collect();
    run_case(&opts, "struct-4KiB-serde_bytes", &rb);
    drop((records, rb));

    let n = opts.size(16, 4);
    let big: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            (0..4 << 20)
                .map(|b: usize| (b.wrapping_mul(2654435761) >> 7) as u8 ^ i as u8)
                .collect()
        })
        .collect();
    run_case(&opts, "Vec<u8>-4MiB", &big);
    let bigb: Vec<serde_bytes::ByteBuf> = big.into_iter().map(serde_bytes::ByteBuf::from).collect();
    run_case_bytes(&opts, "Vec<u8>-4MiB-serde_bytes", &bigb);
}

impl Payload for serde_bytes::ByteBuf {
    fn wincode_encode(&self, _: &mut Vec<u8>) {
        unreachable!()
    }
    fn wincode_decode(_: &mut &[u8]) -> Self {
        unreachable!()
    }
    const HAS_WINCODE: bool = false;
}

fn run_case_bytes(opts: &Opts, name: &str, values: &[serde_bytes::ByteBuf]) {
    run_case(opts, name, values)
}
