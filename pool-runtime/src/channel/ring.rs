//! One-way rings in memory the driver and one worker share: small frames
//! cross in them without a socket's system calls (`driver/README.md`, Rings, says
//! when a frame may take a ring).
//!
//! A ring carries frames exactly as the socket would (length prefix and
//! payload), each padded to 8 bytes. One side writes, the other reads; each
//! keeps its own position and only publishes it, so a peer that scribbles
//! on the shared indices or lengths can make a read fail, never make it
//! panic, read out of bounds or allocate more than the frame limit. There is
//! no lock: a writer that dies mid-frame has published nothing of it.

use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// The longest a driver may let a worker spin for its next frame.
pub const MAX_SPIN: Duration = Duration::from_millis(10);

/// Bytes of frames a ring holds at once; a larger frame takes the socket.
pub const CAPACITY: usize = 32 * 1024;
const WORDS: usize = CAPACITY / 8;

/// What a peer wrote that cannot be a ring's state.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RingError {
    /// The published positions say more is written than the ring holds, or
    /// are not where a frame can start.
    #[error("corrupt ring indices: {written} bytes written past {read} read")]
    Indices {
        /// The writer's published position.
        written: u64,
        /// The reader's position.
        read: u64,
    },
    /// A frame's length prefix asks for more than the limit, or runs past
    /// what was published.
    #[error("corrupt ring frame: {len} bytes with {available} published, limit {limit}")]
    Length {
        /// The length the prefix asks for.
        len: usize,
        /// Bytes published after the reader's position.
        available: u64,
        /// The reader's frame limit.
        limit: usize,
    },
}

/// The writer's cache line.
#[repr(C, align(64))]
#[derive(Debug)]
struct Writer {
    /// Bytes published, ever (a multiple of 8).
    head: AtomicU64,
    /// The CPU the writer ran on when it last wrote or read.
    cpu: AtomicU32,
    /// Driver to worker only: how long (µs) the driver allows the worker
    /// to spin for its next frame (0: not at all; fewer workers are busy
    /// than there are CPUs otherwise).
    spin: AtomicU32,
    /// Driver to worker only: bumped when the driver wrote to the worker's
    /// socket or closed it, so a sleeping worker knows to look there.
    socket: AtomicU64,
}

/// The reader's cache line.
#[repr(C, align(64))]
#[derive(Debug)]
struct Reader {
    /// Bytes consumed, ever (a multiple of 8).
    tail: AtomicU64,
    /// The reader is going to sleep, or sleeps: the writer rings it.
    waits: AtomicU32,
    /// Driver to worker only: the futex word the worker sleeps on.
    bell: AtomicU32,
}

/// One direction: the two positions, then the frames' bytes.
#[repr(C)]
#[derive(Debug)]
pub struct Ring {
    writer: Writer,
    reader: Reader,
    data: [AtomicU64; WORDS],
}

/// A worker's pair of rings, one mapping (`RingMap`). All-zero bytes
/// are a valid, empty pair.
#[repr(C)]
#[derive(Debug)]
pub struct RingPair {
    /// `Run` frames, from the driver.
    pub to_worker: Ring,
    /// `Done` frames, from the worker.
    pub to_driver: Ring,
}

// SAFETY: every field is an atomic integer (all-zero bytes: an empty pair),
// and every access goes through those atomics.
unsafe impl crate::sys::Zeroed for RingPair {}

/// One worker generation's [`RingPair`], mapped from a sealed memfd.
pub(crate) type RingMap = crate::sys::SharedMap<RingPair>;

#[cfg(any(test, fuzzing))]
impl RingPair {
    /// An empty pair on the heap (tests; processes share a mapping).
    pub fn boxed() -> Box<RingPair> {
        Box::new(RingPair {
            to_worker: Ring::new(),
            to_driver: Ring::new(),
        })
    }
}

impl Ring {
    #[cfg(any(test, fuzzing))]
    fn new() -> Ring {
        Ring {
            writer: Writer {
                head: AtomicU64::new(0),
                cpu: AtomicU32::new(0),
                spin: AtomicU32::new(0),
                socket: AtomicU64::new(0),
            },
            reader: Reader {
                tail: AtomicU64::new(0),
                waits: AtomicU32::new(0),
                bell: AtomicU32::new(0),
            },
            data: [const { AtomicU64::new(0) }; WORDS],
        }
    }

    /// In the writer: appends `frame` (its length prefix included) after
    /// position `head`, and publishes it. `Ok(false)`: no room now (or the
    /// frame is larger than the ring); it takes the socket.
    pub fn push(&self, head: &mut u64, frame: &[u8]) -> Result<bool, RingError> {
        let total = frame.len().next_multiple_of(8);
        if total > CAPACITY {
            return Ok(false);
        }
        let read = self.reader.tail.load(Ordering::Acquire);
        let used = head.wrapping_sub(read);
        if used > CAPACITY as u64 || !read.is_multiple_of(8) {
            return Err(RingError::Indices {
                written: *head,
                read,
            });
        }
        if CAPACITY - (used as usize) < total {
            return Ok(false);
        }
        let mut at = *head;
        for chunk in frame.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.word(at).store(u64::from_le_bytes(word), Ordering::Relaxed);
            at += 8;
        }
        *head += total as u64;
        self.writer.head.store(*head, Ordering::Release);
        Ok(true)
    }

    /// In the reader: takes the frame at position `tail` into `out`
    /// (cleared first; length prefix included), if one was published.
    /// A frame of more than `limit` bytes (prefix not counted) is an error,
    /// found before anything is allocated.
    pub fn pop(&self, tail: &mut u64, limit: usize, out: &mut Vec<u8>) -> Result<bool, RingError> {
        let written = self.writer.head.load(Ordering::Acquire);
        let available = written.wrapping_sub(*tail);
        if available == 0 {
            return Ok(false);
        }
        if available > CAPACITY as u64 || !available.is_multiple_of(8) {
            return Err(RingError::Indices {
                written,
                read: *tail,
            });
        }
        let first = self.word(*tail).load(Ordering::Relaxed).to_le_bytes();
        let len = u32::from_le_bytes(first[..4].try_into().expect("four bytes")) as usize;
        let frame = 4 + len;
        if len > limit || frame.next_multiple_of(8) as u64 > available {
            return Err(RingError::Length {
                len,
                available,
                limit,
            });
        }
        out.clear();
        out.reserve(frame);
        out.extend_from_slice(&first[..frame.min(8)]);
        let mut at = *tail + 8;
        while out.len() < frame {
            let word = self.word(at).load(Ordering::Relaxed).to_le_bytes();
            let take = (frame - out.len()).min(8);
            out.extend_from_slice(&word[..take]);
            at += 8;
        }
        *tail += frame.next_multiple_of(8) as u64;
        self.reader.tail.store(*tail, Ordering::Release);
        Ok(true)
    }

    /// In the reader: whether a frame is published after `tail` (or the
    /// indices are corrupt, which [`pop`](Ring::pop) then says).
    pub fn ready(&self, tail: u64) -> bool {
        self.writer.head.load(Ordering::Acquire) != tail
    }

    fn word(&self, at: u64) -> &AtomicU64 {
        &self.data[(at / 8) as usize % WORDS]
    }

    /// In the reader, before it sleeps: says so, then returns the bell's
    /// value to sleep on. The caller looks at the ring once more after
    /// this, and sleeps only if it is still empty: a writer that published
    /// meanwhile sees the flag ([`wants_bell`](Ring::wants_bell)).
    pub fn will_wait(&self) -> u32 {
        self.reader.waits.store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.reader.bell.load(Ordering::Acquire)
    }

    /// In the reader, awake again.
    pub fn awake(&self) {
        self.reader.waits.store(0, Ordering::Relaxed);
    }

    /// In the writer, after it published: whether the reader has said it
    /// sleeps, so it must be woken. Pairs with [`will_wait`](Ring::will_wait):
    /// of the two, at least one sees the other's store.
    pub fn wants_bell(&self) -> bool {
        fence(Ordering::SeqCst);
        self.reader.waits.load(Ordering::Relaxed) != 0
    }

    /// In the writer: changes the bell word, so a reader about to sleep on
    /// its old value does not; returns it, for the futex wake.
    pub fn bell(&self) -> &AtomicU32 {
        self.reader.bell.fetch_add(1, Ordering::Release);
        &self.reader.bell
    }

    /// The bell word itself, for the reader's futex wait.
    pub fn bell_word(&self) -> &AtomicU32 {
        &self.reader.bell
    }

    /// Records the CPU the writer runs on now.
    pub fn set_writer_cpu(&self, cpu: u32) {
        self.writer.cpu.store(cpu, Ordering::Relaxed);
    }

    /// The CPU the writer last said it runs on.
    pub fn writer_cpu(&self) -> u32 {
        self.writer.cpu.load(Ordering::Relaxed)
    }

    /// Driver to worker: how long the worker may spin for its next frame
    /// (zero: not at all).
    pub fn set_spin(&self, spin: Duration) {
        let micros = spin.min(MAX_SPIN).as_micros() as u32;
        self.writer.spin.store(micros, Ordering::Relaxed);
    }

    /// Driver to worker: see [`set_spin`](Ring::set_spin); never more than
    /// [`MAX_SPIN`], whatever the word holds.
    pub fn spin(&self) -> Duration {
        let micros = self.writer.spin.load(Ordering::Relaxed);
        Duration::from_micros(micros.into()).min(MAX_SPIN)
    }

    /// Driver to worker: the driver wrote to the socket, or closed it.
    pub fn socket_moved(&self) {
        self.writer.socket.fetch_add(1, Ordering::Release);
    }

    /// Driver to worker: how often the socket moved.
    pub fn socket_moves(&self) -> u64 {
        self.writer.socket.load(Ordering::Acquire)
    }

    /// The published positions (tests, fuzzing: what a hostile peer could
    /// write).
    #[cfg(any(test, fuzzing))]
    pub fn scribble(&self, head: Option<u64>, tail: Option<u64>, word: Option<(usize, u64)>) {
        if let Some(h) = head {
            self.writer.head.store(h, Ordering::Relaxed);
        }
        if let Some(t) = tail {
            self.reader.tail.store(t, Ordering::Relaxed);
        }
        if let Some((i, w)) = word {
            self.data[i % WORDS].store(w, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn frames_wrap_around_the_end() {
        let pair = RingPair::boxed();
        let ring = &pair.to_worker;
        let (mut head, mut tail, mut out) = (0u64, 0u64, Vec::new());
        // Odd sizes, so frames start and end at every offset near the end.
        for i in 0..3_000usize {
            let payload: Vec<u8> = (0..(i * 37) % 5_000).map(|b| (b ^ i) as u8).collect();
            assert!(ring.push(&mut head, &frame(&payload)).unwrap());
            assert!(ring.ready(tail));
            assert!(ring.pop(&mut tail, 1 << 20, &mut out).unwrap());
            assert_eq!(&out[4..], &payload[..], "frame {i}");
            assert!(!ring.pop(&mut tail, 1 << 20, &mut out).unwrap());
        }
        assert!(head > 10 * CAPACITY as u64);
    }

    #[test]
    fn the_spin_a_driver_allows_is_bounded_whatever_the_word_holds() {
        let pair = RingPair::boxed();
        let ring = &pair.to_worker;
        assert_eq!(ring.spin(), Duration::ZERO);
        ring.set_spin(Duration::from_micros(50));
        assert_eq!(ring.spin(), Duration::from_micros(50));
        ring.set_spin(Duration::from_secs(3600));
        assert_eq!(ring.spin(), MAX_SPIN);
        // A word no driver wrote (the mapping is shared): still bounded.
        ring.writer.spin.store(u32::MAX, Ordering::Relaxed);
        assert_eq!(ring.spin(), MAX_SPIN);
    }

    #[test]
    fn a_full_ring_refuses_until_read() {
        let pair = RingPair::boxed();
        let ring = &pair.to_driver;
        let (mut head, mut tail, mut out) = (0u64, 0u64, Vec::new());
        let f = frame(&[7; 1020]); // 1024 bytes
        for _ in 0..CAPACITY / 1024 {
            assert!(ring.push(&mut head, &f).unwrap());
        }
        assert!(!ring.push(&mut head, &f).unwrap(), "full");
        assert!(ring.pop(&mut tail, 1 << 20, &mut out).unwrap());
        assert!(ring.push(&mut head, &f).unwrap(), "room again");
        // Larger than the ring: the socket's.
        assert!(!ring.push(&mut 0, &frame(&vec![0; CAPACITY])).unwrap());
        let mut n = 0;
        while ring.pop(&mut tail, 1 << 20, &mut out).unwrap() {
            assert_eq!(out, f);
            n += 1;
        }
        assert_eq!(n, CAPACITY / 1024);
    }

    #[test]
    fn corrupt_indices_and_lengths_are_errors() {
        let pair = RingPair::boxed();
        let ring = &pair.to_driver;
        let mut out = Vec::new();
        // Written past the ring's size.
        ring.scribble(Some(CAPACITY as u64 + 8), None, None);
        assert!(matches!(ring.pop(&mut 0, 1 << 20, &mut out), Err(RingError::Indices { .. })));
        // Behind the reader (wraps to a huge distance), or misaligned.
        ring.scribble(Some(0), None, None);
        assert!(matches!(ring.pop(&mut 64, 1 << 20, &mut out), Err(RingError::Indices { .. })));
        ring.scribble(Some(12), None, None);
        assert!(matches!(ring.pop(&mut 0, 1 << 20, &mut out), Err(RingError::Indices { .. })));
        // A length past what was published, or past the limit.
        ring.scribble(Some(16), None, Some((0, 100)));
        assert!(matches!(ring.pop(&mut 0, 1 << 20, &mut out), Err(RingError::Length { len: 100, .. })));
        ring.scribble(Some(8), None, Some((0, u32::MAX as u64)));
        assert!(matches!(ring.pop(&mut 0, 1 << 20, &mut out), Err(RingError::Length { .. })));
        let mut head = 0;
        let pair = RingPair::boxed();
        let ring = &pair.to_worker;
        assert!(ring.push(&mut head, &frame(b"hello, limit")).unwrap());
        assert!(matches!(ring.pop(&mut 0, 4, &mut out), Err(RingError::Length { len: 12, .. })));
        assert!(out.capacity() < 64, "nothing allocated for a refused frame");
        // The writer refuses a reader position it cannot have reached.
        ring.scribble(None, Some(1 << 40), None);
        assert!(matches!(ring.push(&mut head, &frame(b"x")), Err(RingError::Indices { .. })));
        ring.scribble(None, Some(4), None);
        assert!(matches!(ring.push(&mut head, &frame(b"x")), Err(RingError::Indices { .. })));
    }

    #[test]
    fn a_writer_that_dies_mid_frame_published_nothing() {
        let pair = RingPair::boxed();
        let ring = &pair.to_driver;
        // The bytes of a frame, without the head that publishes them.
        ring.scribble(None, None, Some((0, 5)));
        ring.scribble(None, None, Some((1, 0x0061_6161_6161)));
        let mut out = Vec::new();
        assert!(!ring.ready(0));
        assert!(!ring.pop(&mut 0, 1 << 20, &mut out).unwrap());
    }

    /// Every state a peer can write: random positions, lengths and bytes.
    /// A read returns a frame within the limit and what was published, or
    /// an error: never a panic, never a large allocation.
    #[test]
    fn any_scribble_is_a_frame_or_an_error() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let pair = RingPair::boxed();
        let ring = &pair.to_driver;
        let limit = 4096;
        let mut out = Vec::new();
        for _ in 0..20_000 {
            let tail = match next() % 4 {
                0 => next(),
                1 => (next() % (4 * CAPACITY as u64)) & !7,
                _ => 0,
            };
            let head = match next() % 4 {
                0 => next(),
                1 => tail.wrapping_add(next() % (CAPACITY as u64 + 64)),
                _ => tail.wrapping_add((next() % 64) * 8),
            };
            let len = match next() % 3 {
                0 => next() & 0xffff_ffff,
                _ => next() % 5000,
            };
            ring.scribble(Some(head), None, Some(((tail / 8) as usize, len | (next() << 32))));
            let mut t = tail;
            if let Ok(true) = ring.pop(&mut t, limit, &mut out) {
                assert!(out.len() >= 4 && out.len() - 4 <= limit);
                assert!(t - tail <= head.wrapping_sub(tail));
            }
            assert!(out.capacity() <= 2 * (limit + 8));
        }
    }

    #[test]
    fn a_waiting_reader_is_seen_by_the_writer() {
        let pair = RingPair::boxed();
        let ring = &pair.to_worker;
        assert!(!ring.wants_bell());
        let bell = ring.will_wait();
        assert!(ring.wants_bell());
        assert_ne!(ring.bell().load(Ordering::Relaxed), bell, "the bell moved");
        ring.awake();
        assert!(!ring.wants_bell());
    }
}
