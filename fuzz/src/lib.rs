//! Shared by the fuzz targets: the value types they decode, an allocator that
//! records the largest single allocation, and a reader that hands a byte
//! slice out in pseudo-random pieces.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{mpsc, Mutex, OnceLock};

use arbitrary::Arbitrary;
use serde::{Deserialize, Serialize};

/// The frame limit of the fuzzed readers: 1 MiB (the pool's default is 1 GiB).
pub const FRAME_LIMIT: usize = 1 << 20;

/// The frame reader grows its buffer by at least this much per read.
pub const READ_STEP: usize = 64 * 1024;

/// The largest single allocation the frame path may make with
/// [`FRAME_LIMIT`]: the reader's buffer holds at most one frame plus one read
/// step, and `Vec` may double its capacity once past that (amortized growth).
/// serde preallocates at most 1 MiB for a sequence, whatever length it claims.
pub const ALLOC_BOUND: usize = 2 * (FRAME_LIMIT + pool_runtime::channel::frame::PREFIX + READ_STEP);

/// The stack the targets run on: 256 KiB. Real threads have 2 MiB (spawned)
/// to 8 MiB (main), which a deep enough value in a 1 GiB frame overruns all
/// the same; a small stack lets a recursion problem show up in inputs of a
/// few KiB, which the fuzzer reaches in seconds.
pub const STACK: usize = 256 * 1024;

/// Runs `f(data)` on a long-lived thread with a [`STACK`]-byte stack, and
/// waits for it. (A panic there aborts the process, as libfuzzer-sys's panic
/// hook does in the main thread, so libFuzzer sees it as a crash.) One thread
/// for the whole run: spawning one per input costs more than the input.
pub fn on_small_stack(data: &[u8], f: fn(&[u8])) {
    type Job = (fn(&[u8]), Vec<u8>);
    static WORKER: OnceLock<Mutex<(mpsc::Sender<Job>, mpsc::Receiver<()>)>> = OnceLock::new();
    let worker = WORKER.get_or_init(|| {
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("fuzz-small-stack".into())
            .stack_size(STACK)
            .spawn(move || {
                for (f, data) in job_rx {
                    f(&data);
                    if done_tx.send(()).is_err() {
                        return;
                    }
                }
            })
            .expect("spawn the fuzzing thread");
        Mutex::new((job_tx, done_rx))
    });
    let worker = worker.lock().unwrap_or_else(|e| e.into_inner());
    worker.0.send((f, data.to_vec())).expect("the fuzzing thread runs");
    worker.1.recv().expect("the fuzzing thread answers");
}

// ---------------------------------------------------------------- allocator

/// The system allocator, recording the largest single request since [`reset`].
pub struct Recording;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to `System` unchanged; only records sizes.
unsafe impl GlobalAlloc for Recording {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Recording = Recording;

/// Forgets the largest allocation seen so far.
pub fn reset_largest() {
    LARGEST.store(0, Relaxed);
}

/// The largest single allocation since [`reset_largest`].
pub fn largest() -> usize {
    LARGEST.load(Relaxed)
}

// ---------------------------------------------------------------- reader

/// Hands out a byte slice in pseudo-random pieces (xorshift from a seed),
/// now and then answering `WouldBlock` (non-blocking) or `Interrupted`
/// (blocking) instead; `Ok(0)` once the slice is used up.
pub struct Pieces<'a> {
    data: &'a [u8],
    state: u64,
    /// Largest piece: 1 to 65,536 bytes.
    max: usize,
    blocking: bool,
}

impl<'a> Pieces<'a> {
    /// `shape` picks the piece sizes (0: 1–4 bytes, 1: up to 64, 2: up to
    /// 4,096, 3: up to 65,536); `seed` the sequence.
    pub fn new(data: &'a [u8], seed: u16, shape: u8, blocking: bool) -> Self {
        let max = [4, 64, 4096, 65536][(shape & 3) as usize];
        Pieces {
            data,
            state: 0x9E37_79B9_7F4A_7C15 ^ u64::from(seed),
            max,
            blocking,
        }
    }

    fn draw(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }
}

impl Read for Pieces<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.data.is_empty() || out.is_empty() {
            return Ok(0);
        }
        let r = self.draw();
        if r.is_multiple_of(8) {
            return Err(if self.blocking {
                io::ErrorKind::Interrupted
            } else {
                io::ErrorKind::WouldBlock
            }
            .into());
        }
        if r % 8 == 1 && !self.blocking {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = (1 + (r >> 8) as usize % self.max)
            .min(out.len())
            .min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

// ---------------------------------------------------------------- values

/// A task-like record: a struct with vectors, an option and an enum.
#[derive(Arbitrary, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub id: u64,
    pub name: String,
    pub tags: Vec<String>,
    pub payload: Vec<u8>,
    pub kind: Kind,
    pub score: Option<i32>,
    pub pairs: Vec<(u16, Kind)>,
}

/// An enum with every variant shape serde has.
#[derive(Arbitrary, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Empty,
    Number(i64),
    Text(String),
    Pair(u8, char),
    Named { flag: bool, wide: i128, small: i8 },
}

/// A recursive type: decoded from hostile bytes, how deep it nests is
/// bounded only by the bytes (and the codec's depth limit, if any).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Tree {
    Leaf(u32),
    Node(Vec<Tree>),
}

/// Levels of `Node` in a tree built by `arbitrary`: deep enough to matter,
/// within what any codec must accept (2 × 48 + 1 serde levels < 128), and
/// shallow enough that building it does not overflow the fuzzing stack (a
/// derived `Arbitrary` recursion is bounded only by the input).
pub const ARBITRARY_TREE_DEPTH: usize = 48;

impl<'a> Arbitrary<'a> for Tree {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        fn build(u: &mut arbitrary::Unstructured<'_>, depth: usize) -> arbitrary::Result<Tree> {
            if depth >= ARBITRARY_TREE_DEPTH || u.is_empty() || u.ratio(1, 3)? {
                return Ok(Tree::Leaf(u.arbitrary()?));
            }
            let children = u.int_in_range(0..=3)?;
            (0..children)
                .map(|_| build(u, depth + 1))
                .collect::<arbitrary::Result<_>>()
                .map(Tree::Node)
        }
        build(u, 0)
    }
}

impl Tree {
    /// Drops a tree without recursion (a deep tree's own `Drop` would
    /// overflow the stack before the codec is even blamed).
    pub fn drop_flat(self) {
        let mut stack = vec![self];
        while let Some(t) = stack.pop() {
            if let Tree::Node(children) = t {
                stack.extend(children);
            }
        }
    }
}
