//! The pool against rayon and raw IPC, each case printing the pool's figure,
//! the reference's (measured in the same process, the same run, interleaved
//! round by round) and their ratio. See BENCHMARKS.md for the figures.
//!
//! ```text
//! cargo bench -p pool-suite --bench pool                       # everything (~2 min)
//! cargo bench -p pool-suite --bench pool -- --quick            # smoke run, smaller sizes (< 1 min)
//! cargo bench -p pool-suite --bench pool -- roundtrip start    # only the cases whose name matches
//! cargo bench -p pool-suite --bench pool -- --runs 9           # more runs per figure (never < 5)
//! cargo bench -p pool-suite --bench pool -- --no-python tiny   # without the Python references (profiling)
//! ```
//!
//! Cases: `seeds`, `tiny`, `roundtrip`, `start`, `sharing`, `big`, `scaling`,
//! `pipeline`, `spawn`, `handles`, `hol`.
//! The raw references fork this process with `libc::fork`; each child only
//! makes system calls on memory set up before the fork, and ends with `_exit`.

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;
use std::io::Write as _;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{median, median_ratio, Opts};
use pool_runtime::{worker_init, worker_task, Pool};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

// ===========================================================================
// Worker functions

/// The state of pools whose tasks need none.
struct NoState;

/// Init of every pool here whose state is not needed: nothing at all.
#[worker_init]
fn no_state(_: &()) -> NoState {
    NoState
}

/// This worker's process id, to pin it to a CPU from the driver.
#[worker_task]
fn worker_pid() -> u32 {
    std::process::id()
}

#[worker_task]
fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

/// The one-bits of the seeds' outputs: their checksum.
fn ones<'a>(outputs: impl Iterator<Item = &'a [u8]>) -> u64 {
    outputs
        .map(|v| v.iter().map(|&b| b as u64).sum::<u64>())
        .sum()
}

/// The seeds' converter: a key's cached binary string as a vector of 0/1 bytes.
fn to_bits(cache: &[String], key: u64) -> Vec<u8> {
    cache[key as usize].bytes().map(|b| b - b'0').collect()
}

#[worker_init]
fn load_cache(cache: &Arc<Vec<String>>) -> Arc<Vec<String>> {
    cache.clone()
}

#[worker_task]
fn convert(cache: &Arc<Vec<String>>, key: u64) -> Vec<u8> {
    to_bits(cache, key)
}

#[worker_task]
fn convert_bytes(cache: &Arc<Vec<String>>, key: u64) -> serde_bytes::ByteBuf {
    serde_bytes::ByteBuf::from(to_bits(cache, key))
}

#[worker_init]
fn share_table(table: &Arc<Vec<u8>>) -> Arc<Vec<u8>> {
    table.clone()
}

/// Reads every byte of the table, then reports what this process dirtied.
#[worker_task]
fn read_table(table: &Arc<Vec<u8>>) -> (u64, u64, u32) {
    let sum = checksum(table);
    (sum, private_dirty_kb(), std::process::id())
}

#[worker_task]
fn big_result(seed: u64) -> Vec<u8> {
    vec![seed as u8; BIG]
}

#[worker_task]
fn big_result_bytes(seed: u64) -> serde_bytes::ByteBuf {
    serde_bytes::ByteBuf::from(vec![seed as u8; BIG])
}

/// Pipeline stages (case 8): a line to a number, the number to a feature
/// vector (512 bytes), the vector to one score.
#[worker_task]
fn parse_line(line: String) -> Result<u64, String> {
    line.parse().map_err(|_| line)
}

#[worker_task]
fn features(x: u64) -> Vec<u64> {
    (0..64u64)
        .map(|k| x.wrapping_mul(k | 1).rotate_left(k as u32))
        .collect()
}

#[worker_task]
fn score(f: Vec<u64>) -> u64 {
    f.iter().fold(0u64, |a, &b| a ^ b)
}

#[worker_task]
fn spin(ns: u64) -> u64 {
    spin_for(ns)
}

const BIG: usize = 4 << 20;

fn spin_for(ns: u64) -> u64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_nanos() < ns as u128 {
        n += 1;
    }
    n
}

fn checksum(bytes: &[u8]) -> u64 {
    let mut acc = 0u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        acc = acc.wrapping_add(u64::from_le_bytes(w.try_into().unwrap()));
    }
    for &b in words.remainder() {
        acc = acc.wrapping_add(b as u64);
    }
    acc
}

/// `Private_Dirty` of this process, from `/proc/self/smaps_rollup`, in KiB.
fn private_dirty_kb() -> u64 {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("Private_Dirty:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

// ===========================================================================
// Raw references: fork + socketpair, or fork + shared memory, by hand.

mod raw {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    pub struct Child {
        pub pid: libc::pid_t,
        /// The parent's end of the socketpair.
        pub fd: i32,
    }

    fn socketpair() -> (i32, i32) {
        let mut fds = [0i32; 2];
        // SAFETY: `fds` is a valid array of two ints for the kernel to fill.
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(r, 0, "socketpair failed");
        (fds[0], fds[1])
    }

    /// Forks a child that runs `body(fd)` on its end of a fresh socketpair
    /// and `_exit`s. `body` must only make system calls on memory that
    /// existed before the fork (the process may have other threads).
    pub fn spawn(body: impl FnOnce(i32)) -> Child {
        let (mine, theirs) = socketpair();
        // SAFETY: the child runs only `body` (system calls on pre-existing
        // memory, no allocation, no locks) and then `_exit`, never returning
        // into code that assumes this process's other threads exist.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: closing our copy of the parent's end in the child.
            unsafe { libc::close(mine) };
            // A panic must not unwind into the parent's code: it ends the child too.
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(theirs)));
            // SAFETY: `_exit` ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(if ok.is_ok() { 0 } else { 101 }) };
        }
        // SAFETY: the child's end, not used in the parent.
        unsafe { libc::close(theirs) };
        Child { pid, fd: mine }
    }

    impl Child {
        /// Closes the parent's end and reaps the child.
        pub fn finish(self) {
            // SAFETY: our own descriptor and child; `status` is a valid out-pointer.
            unsafe {
                libc::close(self.fd);
                let mut status = 0;
                libc::waitpid(self.pid, &mut status, 0);
            }
        }
    }

    pub fn write_all(fd: i32, mut buf: &[u8]) -> bool {
        while !buf.is_empty() {
            // SAFETY: `buf` is valid for `buf.len()` bytes.
            let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
            if n <= 0 {
                if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return false;
            }
            buf = &buf[n as usize..];
        }
        true
    }

    /// Reads exactly `buf.len()` bytes; false at end of stream.
    pub fn read_exact(fd: i32, buf: &mut [u8]) -> bool {
        let mut at = 0;
        while at < buf.len() {
            // SAFETY: `buf[at..]` is valid and writable for its length.
            let n = unsafe { libc::read(fd, buf[at..].as_mut_ptr().cast(), buf.len() - at) };
            if n <= 0 {
                if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return false;
            }
            at += n as usize;
        }
        true
    }

    /// The child of a ping-pong: answers each 8-byte request with its square, until EOF.
    pub fn echo_square(fd: i32) {
        let mut b = [0u8; 8];
        while read_exact(fd, &mut b) {
            let x = u64::from_le_bytes(b);
            if !write_all(fd, &x.wrapping_mul(x).to_le_bytes()) {
                return;
            }
        }
    }

    /// `n` blocking 8-byte round trips with a child running [`echo_square`];
    /// reaps the child.
    pub fn ping_pong_with(child: &Child, n: u64) -> (Duration, (u64, u64)) {
        // One round trip to be sure the child runs, outside the timing.
        let mut b = [0u8; 8];
        assert!(write_all(child.fd, &3u64.to_le_bytes()) && read_exact(child.fd, &mut b));
        let before = super::switches_and_cpu(child.pid);
        let t = Instant::now();
        for i in 0..n {
            write_all(child.fd, &i.to_le_bytes());
            read_exact(child.fd, &mut b);
            assert_eq!(u64::from_le_bytes(b), i.wrapping_mul(i));
        }
        let d = t.elapsed();
        let after = super::switches_and_cpu(child.pid);
        // SAFETY: our own descriptor and child.
        unsafe {
            libc::close(child.fd);
            libc::waitpid(child.pid, std::ptr::null_mut(), 0);
        }
        (d, (after.0 - before.0, after.1 - before.1))
    }

    /// `n` 8-byte round trips through shared memory, both sides spinning:
    /// the floor a spin-then-block channel could reach on this machine.
    pub fn spin_pong(n: u64, after_fork: impl FnOnce()) -> Duration {
        // Two cache lines: [request seq, value] and [response seq, value].
        let len = 4096;
        // SAFETY: a fresh anonymous shared mapping, zero-filled, aliasing nothing.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        // SAFETY: the mapping is page-aligned, 4096 bytes, zeroed; AtomicU64 has the layout of u64.
        let cells: &[AtomicU64] =
            unsafe { std::slice::from_raw_parts(p.cast::<AtomicU64>(), len / 8) };
        let (req, req_v, resp, resp_v) = (&cells[0], &cells[1], &cells[8], &cells[9]);
        let child = spawn(|_fd| {
            // Serve until the parent writes u64::MAX as the request seq; give
            // up after 30 s of silence so no child can outlive a crash.
            let mut seen = 0u64;
            let mut idle = Instant::now();
            loop {
                let s = req.load(Ordering::Acquire);
                if s == u64::MAX {
                    return;
                }
                if s != seen {
                    seen = s;
                    let x = req_v.load(Ordering::Relaxed);
                    resp_v.store(x.wrapping_mul(x), Ordering::Relaxed);
                    resp.store(s, Ordering::Release);
                    idle = Instant::now();
                } else {
                    std::hint::spin_loop();
                    if idle.elapsed() > Duration::from_secs(30) {
                        return;
                    }
                }
            }
        });
        after_fork();
        let round = |seq: u64, x: u64| {
            req_v.store(x, Ordering::Relaxed);
            req.store(seq, Ordering::Release);
            while resp.load(Ordering::Acquire) != seq {
                std::hint::spin_loop();
            }
            resp_v.load(Ordering::Relaxed)
        };
        round(1, 3);
        let t = Instant::now();
        for i in 0..n {
            let r = round(i + 2, i);
            debug_assert_eq!(r, i.wrapping_mul(i));
        }
        let d = t.elapsed();
        req.store(u64::MAX, Ordering::Release);
        child.finish();
        // SAFETY: unmapping what we mapped; the child is gone.
        unsafe { libc::munmap(p, len) };
        d
    }

    /// A shared anonymous page, zeroed, as atomics (the raw ping-pongs').
    fn shared_page() -> (*mut libc::c_void, &'static [AtomicU64]) {
        // SAFETY: a fresh anonymous shared mapping, zero-filled, aliasing nothing.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        // SAFETY: page-aligned, 4096 bytes, zeroed; AtomicU64 has the layout
        // of u64. Unmapped by the caller only after the child is gone and
        // the slice is no longer used.
        (p, unsafe {
            std::slice::from_raw_parts(p.cast::<AtomicU64>(), 512)
        })
    }

    /// In a raw child: die with the parent, so no child outlives a crash.
    fn die_with_parent() {
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    }

    fn eventfd() -> i32 {
        // SAFETY: no pointers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        assert!(fd >= 0, "eventfd failed");
        fd
    }

    /// `n` 8-byte round trips through a shared page, each side blocking on
    /// its own eventfd (one `write` to wake the peer, one `read` to wait):
    /// the floor of a ring with an eventfd doorbell that is always rung.
    pub fn eventfd_pong(n: u64, after_fork: impl FnOnce()) -> Duration {
        let (p, cells) = shared_page();
        let (req_v, resp_v) = (&cells[0], &cells[8]);
        let (to_child, to_parent) = (eventfd(), eventfd());
        let child = spawn(|_fd| {
            die_with_parent();
            let mut b = [0u8; 8];
            while read_exact(to_child, &mut b) {
                let x = req_v.load(Ordering::Acquire);
                if x == u64::MAX {
                    return;
                }
                resp_v.store(x.wrapping_mul(x), Ordering::Release);
                write_all(to_parent, &1u64.to_ne_bytes());
            }
        });
        after_fork();
        let mut b = [0u8; 8];
        let mut round = |x: u64| {
            req_v.store(x, Ordering::Release);
            write_all(to_child, &1u64.to_ne_bytes());
            read_exact(to_parent, &mut b);
            resp_v.load(Ordering::Acquire)
        };
        round(3);
        let t = Instant::now();
        for i in 0..n {
            let r = round(i);
            debug_assert_eq!(r, i.wrapping_mul(i));
        }
        let d = t.elapsed();
        req_v.store(u64::MAX, Ordering::Release);
        write_all(to_child, &1u64.to_ne_bytes());
        child.finish();
        // SAFETY: our descriptors and mapping; the child is gone.
        unsafe {
            libc::close(to_child);
            libc::close(to_parent);
            libc::munmap(p, 4096);
        }
        d
    }

    fn futex_wait(word: &AtomicU64, expected: u32) {
        let timeout = libc::timespec {
            tv_sec: 30,
            tv_nsec: 0,
        };
        // SAFETY: the low half (little-endian) of a live, aligned u64 is an
        // aligned 32-bit word; FUTEX_WAIT only reads it and `timeout`.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr().cast::<u32>(),
                libc::FUTEX_WAIT,
                expected,
                &timeout as *const libc::timespec,
            )
        };
    }

    fn futex_wake(word: &AtomicU64) {
        // SAFETY: as above; FUTEX_WAKE touches no memory.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr().cast::<u32>(),
                libc::FUTEX_WAKE,
                1,
            )
        };
    }

    /// `n` 8-byte round trips through a shared page, each side sleeping on
    /// a futex word of it (one wake, one wait per side and round trip).
    pub fn futex_pong(n: u64, after_fork: impl FnOnce()) -> Duration {
        let (p, cells) = shared_page();
        let (req, req_v, resp, resp_v) = (&cells[0], &cells[1], &cells[8], &cells[9]);
        let child = spawn(|_fd| {
            die_with_parent();
            let mut seen = 0u64;
            loop {
                let s = req.load(Ordering::Acquire);
                if s == seen {
                    futex_wait(req, s as u32);
                    continue;
                }
                if s == u64::MAX {
                    return;
                }
                seen = s;
                let x = req_v.load(Ordering::Relaxed);
                resp_v.store(x.wrapping_mul(x), Ordering::Relaxed);
                resp.store(s, Ordering::Release);
                futex_wake(resp);
            }
        });
        after_fork();
        let round = |seq: u64, x: u64| {
            req_v.store(x, Ordering::Relaxed);
            req.store(seq, Ordering::Release);
            futex_wake(req);
            loop {
                let s = resp.load(Ordering::Acquire);
                if s == seq {
                    break;
                }
                futex_wait(resp, s as u32);
            }
            resp_v.load(Ordering::Relaxed)
        };
        round(1, 3);
        let t = Instant::now();
        for i in 0..n {
            let r = round(i + 2, i);
            debug_assert_eq!(r, i.wrapping_mul(i));
        }
        let d = t.elapsed();
        req.store(u64::MAX, Ordering::Release);
        futex_wake(req);
        child.finish();
        // SAFETY: unmapping what we mapped; the child is gone.
        unsafe { libc::munmap(p, 4096) };
        d
    }

    /// Fork → the child sends 8 bytes → the parent has them: one raw start.
    pub fn fork_first_result() -> Duration {
        let t = Instant::now();
        let child = spawn(|fd| {
            write_all(fd, &9u64.to_le_bytes());
        });
        let mut b = [0u8; 8];
        assert!(read_exact(child.fd, &mut b));
        let d = t.elapsed();
        child.finish();
        d
    }

    /// Fork, fork again (both from this process, one after the other) →
    /// the first child's 8 bytes are here: the floor of a driver that forks
    /// each of two workers itself and starts serving once the first is up.
    ///
    /// Here and in [`zygote_two_first_result`] the children stay until the
    /// parent has read (as a pool's workers do): a child tearing down its
    /// copy of the heap as it exits is no part of a start.
    pub fn two_forks_first_result() -> Duration {
        let t = Instant::now();
        let first = spawn(write_and_linger);
        let second = spawn(write_and_linger);
        let mut b = [0u8; 8];
        assert!(read_exact(first.fd, &mut b));
        let d = t.elapsed();
        assert!(read_exact(second.fd, &mut b));
        // The second child holds a copy of the first's parent end: it goes first.
        second.finish();
        first.finish();
        d
    }

    /// Writes 8 bytes on `fd`, then waits for the peer to close it.
    fn write_and_linger(fd: i32) {
        write_all(fd, &9u64.to_le_bytes());
        let mut b = [0u8; 1];
        while read_exact(fd, &mut b) {}
    }

    /// Forks a child that runs [`write_and_linger`] on `fd` and `_exit`s;
    /// in the child, only `write`, `read` and `_exit` run.
    fn fork_writer(fd: i32) -> libc::pid_t {
        // SAFETY: the child makes system calls on memory that existed
        // before the fork, then `_exit`s; it never returns into this code.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            write_and_linger(fd);
            // SAFETY: ends the child without the parent's atexit handlers.
            unsafe { libc::_exit(0) };
        }
        pid
    }

    /// Fork a zygote, which forks two children in turn → the first child's
    /// 8 bytes are here (the second is still being forked meanwhile): the
    /// floor of a pool whose fork server forks its workers and which starts
    /// serving once the first is up.
    pub fn zygote_two_first_result() -> Duration {
        let (first, first_theirs) = socketpair();
        let (second, second_theirs) = socketpair();
        let t = Instant::now();
        let zygote = spawn(|_| {
            // SAFETY: the zygote's copies of the parent's ends, which its
            // children must not hold (they wait for the parent to close them).
            unsafe {
                libc::close(first);
                libc::close(second);
            }
            let kids = [fork_writer(first_theirs), fork_writer(second_theirs)];
            for pid in kids.into_iter().filter(|&p| p > 0) {
                let mut status = 0;
                // SAFETY: our own child; `status` is a valid out-pointer.
                unsafe { libc::waitpid(pid, &mut status, 0) };
            }
        });
        let mut b = [0u8; 8];
        assert!(read_exact(first, &mut b));
        let d = t.elapsed();
        assert!(read_exact(second, &mut b));
        // Closing our ends lets the children leave.
        for fd in [first, first_theirs, second, second_theirs] {
            // SAFETY: descriptors made above, used by no one any more.
            unsafe { libc::close(fd) };
        }
        zygote.finish();
        d
    }

    /// A child reads every byte of `table` (inherited copy-on-write) and
    /// reports its `Private_Dirty` (KiB) over the socket.
    pub fn fork_read_private_dirty(table: &[u8]) -> u64 {
        // The child must not allocate: it reads smaps_rollup into a stack buffer.
        let child = spawn(|fd| {
            let sum = super::checksum(table);
            std::hint::black_box(sum);
            let kb = private_dirty_no_alloc();
            write_all(fd, &kb.to_le_bytes());
        });
        let mut b = [0u8; 8];
        assert!(read_exact(child.fd, &mut b));
        child.finish();
        u64::from_le_bytes(b)
    }

    fn private_dirty_no_alloc() -> u64 {
        let mut buf = [0u8; 4096];
        // SAFETY: a NUL-terminated path; `buf` is valid for its length.
        let n = unsafe {
            let fd = libc::open(c"/proc/self/smaps_rollup".as_ptr(), libc::O_RDONLY);
            if fd < 0 {
                return u64::MAX;
            }
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            libc::close(fd);
            n
        };
        if n <= 0 {
            return u64::MAX;
        }
        let text = &buf[..n as usize];
        let key = b"Private_Dirty:";
        let Some(at) = text.windows(key.len()).position(|w| w == key) else {
            return u64::MAX;
        };
        text[at + key.len()..]
            .iter()
            .skip_while(|b| **b == b' ')
            .take_while(|b| b.is_ascii_digit())
            .fold(0, |acc, b| acc * 10 + (b - b'0') as u64)
    }

    /// A child streams `count` results of `size` bytes (each filled, as a
    /// task would build it) over a socketpair; the parent reads each into a
    /// fresh Vec. Returns the time from the first request to the last byte.
    pub fn stream(count: usize, size: usize) -> Duration {
        stream_into(count, size, false)
    }

    /// [`stream`], keeping every result (as `map` must) instead of dropping
    /// each before the next: every receive buffer is then fresh memory whose
    /// pages fault in as the bytes arrive.
    pub fn stream_kept(count: usize, size: usize) -> Duration {
        stream_into(count, size, true)
    }

    fn stream_into(count: usize, size: usize, keep: bool) -> Duration {
        let mut scratch = vec![0u8; size];
        let scratch_ptr = scratch.as_mut_ptr();
        let child = spawn(move |fd| {
            let mut go = [0u8; 1];
            if !read_exact(fd, &mut go) {
                return;
            }
            for k in 0..count {
                // SAFETY: `scratch` was allocated before the fork and is ours (copy-on-write).
                let buf = unsafe { std::slice::from_raw_parts_mut(scratch_ptr, size) };
                buf.fill(k as u8);
                if !write_all(fd, buf) {
                    return;
                }
            }
        });
        let t = Instant::now();
        write_all(child.fd, &[1]);
        let mut total = 0u64;
        let mut kept = Vec::new();
        for k in 0..count {
            let mut v = vec![0u8; size];
            assert!(read_exact(child.fd, &mut v));
            total += v[k % size] as u64;
            std::hint::black_box(&v);
            if keep {
                kept.push(v);
            }
        }
        let d = t.elapsed();
        drop(kept);
        std::hint::black_box(total);
        child.finish();
        drop(scratch);
        d
    }

    /// Items per frame of [`pump`]: as many as the pool's chunker puts in a
    /// frame of `map(square, 0..1M)` on two workers once it has grown.
    pub const PUMP_ITEMS: usize = 4096;

    /// A raw two-child frame pump, the floor of `pool.map` on two workers:
    /// the parent cuts `inputs` into frames of [`PUMP_ITEMS`] (a `u32`
    /// length, then what `encode` writes), deals them to the two children in
    /// turn with two frames in flight per child, and reads the answers back
    /// in input order, handing each payload to `take`. A child answers each
    /// frame with one frame, whose payload `serve` writes from the request's.
    /// No scheduling, no failure handling, no insights: only the copies and
    /// wake-ups any two-process map pays. The children allocate (glibc's
    /// `fork` leaves malloc usable in the child, and nothing else is locked).
    pub fn pump(
        inputs: &[u64],
        encode: impl Fn(&[u64], &mut Vec<u8>),
        serve: impl Fn(&[u8], &mut Vec<u8>) + Copy,
        mut take: impl FnMut(&[u8]),
    ) -> Duration {
        // `other`: the parent's end of the first child's channel, which the
        // second inherits and must close (or the first never sees its end).
        let child = |other: Option<i32>| {
            spawn(move |fd| {
                if let Some(other) = other {
                    // SAFETY: this child's copy of a descriptor it does not use.
                    unsafe { libc::close(other) };
                }
                let (mut req, mut out) = (Vec::new(), Vec::new());
                loop {
                    let mut len = [0u8; 4];
                    if !read_exact(fd, &mut len) {
                        return;
                    }
                    req.resize(u32::from_le_bytes(len) as usize, 0);
                    if !read_exact(fd, &mut req) {
                        return;
                    }
                    out.clear();
                    out.extend_from_slice(&[0; 4]);
                    serve(&req, &mut out);
                    let n = (out.len() - 4) as u32;
                    out[..4].copy_from_slice(&n.to_le_bytes());
                    if !write_all(fd, &out) {
                        return;
                    }
                }
            })
        };
        let first = child(None);
        let children = [child(Some(first.fd)), first];
        let frames: Vec<&[u64]> = inputs.chunks(PUMP_ITEMS).collect();
        let (mut buf, mut reply) = (Vec::new(), Vec::new());
        let t = Instant::now();
        let mut sent = 0;
        for k in 0..frames.len() {
            while sent < frames.len() && sent < k + 4 {
                buf.clear();
                buf.extend_from_slice(&[0; 4]);
                encode(frames[sent], &mut buf);
                let n = (buf.len() - 4) as u32;
                buf[..4].copy_from_slice(&n.to_le_bytes());
                assert!(write_all(children[sent % 2].fd, &buf));
                sent += 1;
            }
            let fd = children[k % 2].fd;
            let mut len = [0u8; 4];
            assert!(read_exact(fd, &mut len));
            reply.resize(u32::from_le_bytes(len) as usize, 0);
            assert!(read_exact(fd, &mut reply));
            take(&reply);
        }
        let d = t.elapsed();
        for c in children {
            c.finish();
        }
        d
    }

    /// [`pump`] of `square` with raw `u64` frames: 8 bytes little endian per
    /// input and per result, collected into a `Vec<u64>`.
    pub fn pump_square_raw(inputs: &[u64]) -> (Duration, Vec<u64>) {
        let mut out = Vec::with_capacity(inputs.len());
        let d = pump(
            inputs,
            |xs, buf| {
                xs.iter()
                    .for_each(|x| buf.extend_from_slice(&x.to_le_bytes()))
            },
            |req, out| {
                for x in req.chunks_exact(8) {
                    let x = u64::from_le_bytes(x.try_into().unwrap());
                    out.extend_from_slice(&x.wrapping_mul(x).to_le_bytes());
                }
            },
            |reply| {
                out.extend(
                    reply
                        .chunks_exact(8)
                        .map(|b| u64::from_le_bytes(b.try_into().unwrap())),
                )
            },
        );
        (d, out)
    }

    /// [`pump`] of `square` with the codec: each input and result one
    /// postcard value (a varint), decoded one by one.
    pub fn pump_square_codec(inputs: &[u64]) -> (Duration, Vec<u64>) {
        let mut out = Vec::with_capacity(inputs.len());
        let d = pump(
            inputs,
            |xs, buf| {
                for x in xs {
                    postcard::to_io(x, &mut *buf).unwrap();
                }
            },
            |req, out| {
                let mut rest = req;
                while !rest.is_empty() {
                    let (x, r) = postcard::take_from_bytes::<u64>(rest).unwrap();
                    postcard::to_io(&x.wrapping_mul(x), &mut *out).unwrap();
                    rest = r;
                }
            },
            |reply| {
                let mut rest = reply;
                while !rest.is_empty() {
                    let (x, r) = postcard::take_from_bytes::<u64>(rest).unwrap();
                    out.push(x);
                    rest = r;
                }
            },
        );
        (d, out)
    }

    /// [`pump`] doing the seeds' lookup: the children turn each key into
    /// its bit vector and write it as a byte string (a varint length, the
    /// bytes); the parent makes one `Vec<u8>` of each.
    pub fn pump_seeds(cache: &[String], keys: &[u64]) -> (Duration, Vec<Vec<u8>>) {
        let mut out = Vec::with_capacity(keys.len());
        let d = pump(
            keys,
            |xs, buf| {
                xs.iter()
                    .for_each(|x| buf.extend_from_slice(&x.to_le_bytes()))
            },
            |req, out| {
                for k in req.chunks_exact(8) {
                    let bits = super::to_bits(cache, u64::from_le_bytes(k.try_into().unwrap()));
                    postcard::to_io(&bits.len(), &mut *out).unwrap();
                    out.extend_from_slice(&bits);
                }
            },
            |reply| {
                let mut rest = reply;
                while !rest.is_empty() {
                    let (len, r) = postcard::take_from_bytes::<usize>(rest).unwrap();
                    out.push(r[..len].to_vec());
                    rest = &r[len..];
                }
            },
        );
        (d, out)
    }

    /// [`pump_seeds`] keeping the results in their frames (a slab): the
    /// parent copies each reply frame once and keeps `(frame, offset, len)`
    /// per result, no `Vec` of its own per result.
    pub fn pump_seeds_slab(cache: &[String], keys: &[u64]) -> (Duration, Slab) {
        let mut slab = Slab::default();
        let d = pump(
            keys,
            |xs, buf| {
                xs.iter()
                    .for_each(|x| buf.extend_from_slice(&x.to_le_bytes()))
            },
            |req, out| {
                for k in req.chunks_exact(8) {
                    let bits = super::to_bits(cache, u64::from_le_bytes(k.try_into().unwrap()));
                    postcard::to_io(&bits.len(), &mut *out).unwrap();
                    out.extend_from_slice(&bits);
                }
            },
            |reply| {
                let frame = slab.frames.len() as u32;
                let mut rest = reply;
                while !rest.is_empty() {
                    let (len, r) = postcard::take_from_bytes::<usize>(rest).unwrap();
                    let at = (reply.len() - r.len()) as u32;
                    slab.spans.push((frame, at, len as u32));
                    rest = &r[len..];
                }
                slab.frames.push(reply.to_vec());
            },
        );
        (d, slab)
    }

    /// Results kept in the frames they came in.
    #[derive(Default)]
    pub struct Slab {
        pub frames: Vec<Vec<u8>>,
        /// Per result: its frame, offset and length.
        pub spans: Vec<(u32, u32, u32)>,
    }

    impl Slab {
        /// Result `i`'s bytes.
        pub fn get(&self, i: usize) -> &[u8] {
            let (f, at, len) = self.spans[i];
            &self.frames[f as usize][at as usize..(at + len) as usize]
        }
    }
}

// ===========================================================================
// CPU accounting: where the time of a run goes, process by process.

/// CPU time (ns) a thread has run, from `/proc/<pid>/task/<tid>/schedstat`.
fn cpu_ns(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// Context switches (voluntary + involuntary) of a thread or process, from its `status`.
fn ctx_switches(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("ctxt_switches:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// (context switches, CPU ns) of this thread plus process `pid`.
fn switches_and_cpu(pid: i32) -> (u64, u64) {
    (
        ctx_switches("/proc/thread-self/status") + ctx_switches(&format!("/proc/{pid}/status")),
        cpu_ns("/proc/thread-self/schedstat") + cpu_ns(&format!("/proc/{pid}/schedstat")),
    )
}

/// The driver thread (this one) and the pool's worker processes.
struct CpuMeter {
    workers: Vec<u32>,
}

impl CpuMeter {
    fn new<S: 'static>(pool: &Pool<S>) -> CpuMeter {
        let mut workers = pool.broadcast(worker_pid, ()).expect("broadcast");
        workers.sort();
        workers.dedup();
        CpuMeter { workers }
    }
    /// (driver thread ns, sum over workers ns) so far.
    fn read(&self) -> (u64, u64) {
        let driver = cpu_ns("/proc/thread-self/schedstat");
        let workers = self
            .workers
            .iter()
            .map(|p| cpu_ns(&format!("/proc/{p}/schedstat")))
            .sum();
        (driver, workers)
    }
}

/// Prints CPU per task of the driver and the workers over `runs` runs of `n` tasks.
fn print_cpu(
    label: &str,
    n: u64,
    before: (u64, u64),
    after: (u64, u64),
    runs: usize,
) -> (f64, f64) {
    let tasks = (n * runs as u64) as f64;
    let d = (after.0 - before.0) as f64 / tasks;
    let w = (after.1 - before.1) as f64 / tasks;
    let cores = all_cpus().len() as f64;
    println!(
        "{label}: CPU per task: driver thread {d:.1} ns + workers {w:.1} ns = {:.1} ns; on {cores} cores that caps the rate at {}",
        d + w,
        fmt_rate(cores * 1e9 / (d + w))
    );
    (d, w)
}

// ===========================================================================
// Reporting

/// One line of the final summary.
struct Row {
    case: &'static str,
    pool: String,
    reference: String,
    ratio: String,
    target: String,
    met: Option<bool>,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn fmt_dur(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.2} µs", s * 1e6)
    }
}

fn fmt_rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2} M/s", per_s / 1e6)
    } else if per_s >= 1e3 {
        format!("{:.1} k/s", per_s / 1e3)
    } else {
        format!("{per_s:.1}/s")
    }
}

fn header(name: &str, what: &str) {
    println!("\n=== {name}: {what}");
}

fn flush() {
    let _ = std::io::stdout().flush();
}

// ===========================================================================
// 1. The seeds' workload

fn case_seeds(opts: &Opts, rows: &mut Vec<Row>) {
    const CACHE: usize = 1 << 20;
    let keys_n = opts.size(1_000_000, 100_000);
    header("seeds", &format!("{CACHE}-entry Vec<String> cache, {keys_n} random keys -> Vec<u8> bit vectors; 2 workers / 2 threads"));
    let cache: Arc<Vec<String>> = Arc::new((0..CACHE).map(|k| format!("{k:b}")).collect());
    let mut rng = rand::rngs::SmallRng::seed_from_u64(0x5eed);
    let keys: Vec<u64> = (0..keys_n)
        .map(|_| rng.random_range(0..CACHE as u64))
        .collect();

    let sequential =
        |keys: &[u64]| -> Vec<Vec<u8>> { keys.iter().map(|&k| to_bits(&cache, k)).collect() };
    let parallel =
        |keys: &[u64]| -> Vec<Vec<u8>> { keys.par_iter().map(|&k| to_bits(&cache, k)).collect() };
    let expect = ones(sequential(&keys).iter().map(Vec::as_slice));

    let (build, pool) = common::time(|| {
        Pool::builder()
            .workers(2)
            .build(load_cache, cache.clone())
            .expect("build")
    });
    println!("pool build (not in the timings): {}", fmt_dur(secs(build)));

    let meter = CpuMeter::new(&pool);
    let mut cpu = (0, 0);
    let (mut seq, mut ray, mut pl, mut pb) = (vec![], vec![], vec![], vec![]);
    let (mut pump, mut slab, mut ps) = (vec![], vec![], vec![]);
    for round in 0..=opts.runs {
        // The input is cloned outside the timings: map takes it by value.
        let input = keys.clone();
        let (d_seq, out) = common::time(|| sequential(&keys));
        drop(black_box(out));
        let (d_ray, out) = common::time(|| parallel(&keys));
        drop(black_box(out));
        let (d_pump, out) = raw::pump_seeds(&cache, &keys);
        assert_eq!(out.len(), keys.len());
        drop(black_box(out));
        let (d_slab, out) = raw::pump_seeds_slab(&cache, &keys);
        assert_eq!(out.spans.len(), keys.len());
        assert_eq!(
            out.get(keys.len() - 1),
            &to_bits(&cache, keys[keys.len() - 1])[..]
        );
        drop(black_box(out));
        let before = meter.read();
        let (d_pool, out) = common::time(|| pool.map(convert, input).expect("map"));
        let after = meter.read();
        if round > 0 {
            cpu = (cpu.0 + after.0 - before.0, cpu.1 + after.1 - before.1);
        }
        assert_eq!(ones(out.iter().map(Vec::as_slice)), expect, "checksum");
        drop(out);
        // The same, the outputs left in their frames (`map_slab`).
        let input = keys.clone();
        let (d_slab_pool, out) = common::time(|| pool.map_slab(convert, input).expect("map_slab"));
        assert_eq!(ones(out.iter()), expect, "checksum of the slab");
        drop(out);
        // The same, with the bit vectors returned as serde_bytes::ByteBuf.
        let input = keys.clone();
        let (d_bytes, out) = common::time(|| pool.map(convert_bytes, input).expect("map"));
        assert_eq!(out.len(), keys.len());
        drop(out);
        if round > 0 {
            seq.push(secs(d_seq));
            ray.push(secs(d_ray));
            pump.push(secs(d_pump));
            slab.push(secs(d_slab));
            pl.push(secs(d_pool));
            pb.push(secs(d_bytes));
            ps.push(secs(d_slab_pool));
        }
    }
    let (s, r, p) = (median(&seq), median(&ray), median(&pl));
    let ratio = median_ratio(&pl, &ray);
    println!(
        "sequential {}  rayon par_iter {}  pool.map {}   (medians of {})",
        fmt_dur(s),
        fmt_dur(r),
        fmt_dur(p),
        opts.runs
    );
    println!("pool / rayon = {ratio:.2}x (target <= 1.5x)   pool / sequential = {:.2}x   rayon / sequential = {:.2}x", median_ratio(&pl, &seq), median_ratio(&ray, &seq));
    println!(
        "same keys, bit vectors returned as serde_bytes::ByteBuf: pool.map {} = {:.2}x rayon",
        fmt_dur(median(&pb)),
        median_ratio(&pb, &ray)
    );
    let slab_ratio = median_ratio(&ps, &ray);
    println!(
        "same keys, outputs left in their frames: pool.map_slab {} = {slab_ratio:.2}x rayon (target <= 1.5x)",
        fmt_dur(median(&ps)),
    );
    println!(
        "floor: raw two-child frame pump doing the same lookups (one Vec per result): {} = {:.2}x rayon;  pool / pump = {:.2}x",
        fmt_dur(median(&pump)),
        median_ratio(&pump, &ray),
        median_ratio(&pl, &pump)
    );
    println!(
        "floor: the same pump keeping results in their frames (a slab, offsets, no Vec per result): {} = {:.2}x rayon;  pool / slab pump = {:.2}x",
        fmt_dur(median(&slab)),
        median_ratio(&slab, &ray),
        median_ratio(&pl, &slab)
    );
    print_cpu("pool.map(convert)", keys_n as u64, (0, 0), cpu, opts.runs);
    println!(
        "sequential CPU per key: {:.1} ns (the work itself, with its allocation)",
        s * 1e9 / keys_n as f64
    );
    rows.push(Row {
        case: "1 seeds: pool.map vs rayon (wall)",
        pool: fmt_dur(p),
        reference: format!(
            "rayon {} (seq {}; raw pump {})",
            fmt_dur(r),
            fmt_dur(s),
            fmt_dur(median(&pump))
        ),
        ratio: format!(
            "{ratio:.2}x (ByteBuf results {:.2}x)",
            median_ratio(&pb, &ray)
        ),
        target: "<= 1.5x".into(),
        met: Some(ratio <= 1.5),
    });
    rows.push(Row {
        case: "1 seeds: pool.map_slab vs rayon (wall)",
        pool: fmt_dur(median(&ps)),
        reference: format!("rayon {}", fmt_dur(r)),
        ratio: format!("{slab_ratio:.2}x"),
        target: "<= 1.5x".into(),
        met: Some(slab_ratio <= 1.5),
    });
}

// ===========================================================================
// 2. Tiny tasks

fn python() -> Option<String> {
    for p in ["python3", "python"] {
        if Command::new(p)
            .arg("-c")
            .arg("import multiprocessing")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(p.to_string());
        }
    }
    None
}

fn script(name: &str) -> String {
    format!("{}/benches/python/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs a Python bench script and returns the numbers it prints as `key=value` lines.
fn run_python(py: &str, name: &str, args: &[String]) -> Option<Vec<(String, f64)>> {
    let out = Command::new(py)
        .arg(script(name))
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("{name} failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter_map(|(k, v)| Some((k.trim().to_string(), v.trim().parse().ok()?)))
            .collect(),
    )
}

fn get(kv: &[(String, f64)], key: &str) -> Option<f64> {
    kv.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

fn case_tiny(opts: &Opts, rows: &mut Vec<Row>) {
    let n = opts.size(1_000_000, 100_000) as u64;
    header("tiny", &format!("pool.map(square, 0..{n}), 2 workers, no chunk_size; vs Python multiprocessing.Pool(2).map"));
    let pool = Pool::builder()
        .workers(2)
        .build(no_state, ())
        .expect("build");
    let py = if opts.no_python { None } else { python() };
    if py.is_none() {
        println!("python3 not found: the Python reference is skipped");
    }
    // POOL_BENCH_PROGRESS=1: each round also runs the same map with a
    // progress bar drawn (feature `progress`; forced, so drawn into a pipe
    // too), interleaved with the plain one.
    let progress_bar = std::env::var_os("POOL_BENCH_PROGRESS").is_some_and(|v| v == "1");
    let mut with_bar = vec![];
    let meter = CpuMeter::new(&pool);
    let (mut pl, mut pyt, mut seq) = (vec![], vec![], vec![]);
    let (mut pump_raw, mut pump_codec) = (vec![], vec![]);
    let mut cpu = (0, 0);
    for round in 0..=opts.runs {
        let before = meter.read();
        let (d, out) = common::time(|| pool.map(square, 0..n).expect("map"));
        let after = meter.read();
        if round > 0 {
            cpu = (cpu.0 + after.0 - before.0, cpu.1 + after.1 - before.1);
        }
        assert_eq!(out[n as usize - 1], (n - 1) * (n - 1));
        drop(out);
        if progress_bar {
            let (d_bar, out) = common::time(|| {
                pool.imap(square, 0..n)
                    .progress_mode(pool_runtime::ProgressMode::Always)
                    .collect::<Result<Vec<u64>, _>>()
                    .expect("map")
            });
            assert_eq!(out[n as usize - 1], (n - 1) * (n - 1));
            drop(out);
            if round > 0 {
                with_bar.push(secs(d_bar));
            }
        }
        let (d_seq, out) =
            common::time(|| (0..n).map(|x| square(black_box(x))).collect::<Vec<u64>>());
        drop(black_box(out));
        // The floors: a raw two-child frame pump, raw u64 frames and with the codec.
        let inputs: Vec<u64> = (0..n).collect();
        let (d_raw, out) = raw::pump_square_raw(&inputs);
        assert_eq!(out[n as usize - 1], (n - 1) * (n - 1));
        let (d_codec, out) = raw::pump_square_codec(&inputs);
        assert_eq!(out[n as usize - 1], (n - 1) * (n - 1));
        drop(inputs);
        // Python: a fresh interpreter each round, its pool made before its
        // clock starts (as ours is); only the map is timed.
        let p = py.as_deref().and_then(|py| {
            run_python(
                py,
                "tiny_tasks.py",
                &["--n".into(), n.to_string(), "--runs".into(), "1".into()],
            )
        });
        if round > 0 {
            pl.push(secs(d));
            seq.push(secs(d_seq));
            pump_raw.push(secs(d_raw));
            pump_codec.push(secs(d_codec));
            if let Some(t) = p.as_deref().and_then(|kv| get(kv, "median_s")) {
                pyt.push(t);
            }
        }
    }
    let rate = n as f64 / median(&pl);
    println!(
        "pool.map: {} = {} tasks/s   (median of {}; target >= 60 M/s)",
        fmt_dur(median(&pl)),
        fmt_rate(rate),
        opts.runs
    );
    println!(
        "in-process sequential map: {} = {} (context: the work itself)",
        fmt_dur(median(&seq)),
        fmt_rate(n as f64 / median(&seq))
    );
    if progress_bar {
        println!(
            "the same map with a progress bar: {} = {} tasks/s; time with bar / without = {:.3} (median of the rounds' ratios)",
            fmt_dur(median(&with_bar)),
            fmt_rate(n as f64 / median(&with_bar)),
            median_ratio(&with_bar, &pl)
        );
    }
    println!(
        "floors: raw two-child frame pump ({} items a frame), raw u64 frames {} = {}, with the codec (postcard per item) {} = {};  pool / pump rate = {:.2}x raw, {:.2}x codec",
        raw::PUMP_ITEMS,
        fmt_dur(median(&pump_raw)),
        fmt_rate(n as f64 / median(&pump_raw)),
        fmt_dur(median(&pump_codec)),
        fmt_rate(n as f64 / median(&pump_codec)),
        median_ratio(&pump_raw, &pl),
        median_ratio(&pump_codec, &pl)
    );
    print_cpu("pool.map(square)", n, (0, 0), cpu, opts.runs);
    let py_note = if pyt.len() == pl.len() {
        let py_rate = n as f64 / median(&pyt);
        let ratio = median_ratio(&pyt, &pl);
        println!("python multiprocessing.Pool(2).map: {} = {} tasks/s;  pool is {ratio:.2}x Python's rate", fmt_dur(median(&pyt)), fmt_rate(py_rate));
        format!("Python Pool(2).map {} ({ratio:.2}x)", fmt_rate(py_rate))
    } else {
        "Python not measured".into()
    };
    rows.push(Row {
        case: "2 tiny tasks: pool.map(square, 0..1M) rate",
        pool: fmt_rate(rate),
        reference: format!(
            "raw pump {} (codec {}); {py_note}",
            fmt_rate(n as f64 / median(&pump_raw)),
            fmt_rate(n as f64 / median(&pump_codec))
        ),
        ratio: format!(
            "{:.2}x Python",
            if pyt.len() == pl.len() {
                median_ratio(&pyt, &pl)
            } else {
                f64::NAN
            }
        ),
        target: ">= 60 M/s (issue 14)".into(),
        met: Some(rate >= 60e6),
    });
}

// ===========================================================================
// 3. Round trip

/// Pins the calling thread (and so the processes it forks from now on) to `cpus`.
fn pin(cpus: &[usize]) {
    // SAFETY: `set` is a plain bit set, zeroed then filled with valid CPU numbers.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Every online CPU (not `available_parallelism`, which shrinks to the
/// calling thread's affinity once it is pinned).
fn all_cpus() -> Vec<usize> {
    // SAFETY: sysconf takes no pointers.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    (0..n.max(1) as usize).collect()
}

/// Where the driver and the worker (or the raw parent and child) run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Placement {
    /// Wherever the scheduler puts them.
    Free,
    /// Both on CPU 0: each wake-up is a context switch on one core.
    SameCore,
    /// Driver / parent on CPU 0, worker / child on CPU 1: each wake-up crosses cores.
    CrossCore,
}

impl Placement {
    fn name(self) -> &'static str {
        match self {
            Placement::Free => "free (scheduler's choice)",
            Placement::SameCore => "same core (both pinned to CPU 0)",
            Placement::CrossCore => "cross core (driver CPU 0, worker CPU 1)",
        }
    }
    /// Pins this thread for the fork of a worker / child, then for the driver side.
    fn fork_side(self) {
        match self {
            Placement::Free => pin(&all_cpus()),
            Placement::SameCore => pin(&[0]),
            Placement::CrossCore => pin(&[1]),
        }
    }
    fn pin_pid(self, pid: libc::pid_t) {
        let cpus = match self {
            Placement::Free => all_cpus(),
            Placement::SameCore => vec![0],
            Placement::CrossCore => vec![1],
        };
        // SAFETY: `set` is a plain bit set, zeroed then filled with valid CPU numbers.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for c in cpus {
                libc::CPU_SET(c, &mut set);
            }
            libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
    fn driver_side(self) {
        match self {
            Placement::Free => pin(&all_cpus()),
            Placement::SameCore | Placement::CrossCore => pin(&[0]),
        }
    }
}

fn case_roundtrip(opts: &Opts, rows: &mut Vec<Row>) {
    let n = opts.size(20_000, 2_000) as u64;
    header("roundtrip", &format!("{n} sequential pool.apply(square, i) on a 1-worker pool vs raw 8-byte ping-pong (fork + socketpair)"));
    println!("(on this VM a wake-up of an idle vCPU costs tens of µs while a switch on one core costs a few: the");
    println!(" scheduler's placement decides the figure, so both sides are measured in three placements)");
    let mut placements = vec![Placement::Free];
    if all_cpus().len() >= 2 {
        placements.extend([Placement::SameCore, Placement::CrossCore]);
    }
    for placement in placements {
        let pool = Pool::builder()
            .workers(1)
            .build(no_state, ())
            .expect("build");
        // The worker is pinned by pid, once it runs.
        let pid = pool.apply(worker_pid, ()).expect("pid") as libc::pid_t;
        placement.pin_pid(pid);
        placement.driver_side();
        assert_eq!(pool.apply(square, 3).expect("apply"), 9);
        let raw_run = || {
            placement.fork_side();
            let child = raw::spawn(raw::echo_square);
            placement.driver_side();
            raw::ping_pong_with(&child, n)
        };
        let (mut pl, mut rw, mut sp) = (vec![], vec![], vec![]);
        // The floors of a shared-memory channel that blocks: eventfd and futex.
        let (mut ev, mut fx) = (vec![], vec![]);
        // Context switches and CPU time per call, summed over the runs.
        let (mut pool_stats, mut raw_stats) = ((0u64, 0u64), (0u64, 0u64));
        for round in 0..=opts.runs {
            let pool_run = || {
                let before = switches_and_cpu(pid);
                let t = Instant::now();
                for i in 0..n {
                    let r = pool.apply(square, i).expect("apply");
                    debug_assert_eq!(r, i * i);
                    black_box(r);
                }
                let d = t.elapsed();
                let after = switches_and_cpu(pid);
                (d, (after.0 - before.0, after.1 - before.1))
            };
            // Alternate the order, so neither side always runs first.
            let (d_pool, d_raw) = if round % 2 == 0 {
                let a = pool_run();
                (a, raw_run())
            } else {
                let b = raw_run();
                (pool_run(), b)
            };
            let d_spin = if placement == Placement::CrossCore {
                Placement::CrossCore.fork_side();
                let d = raw::spin_pong(n, || Placement::CrossCore.driver_side());
                Placement::CrossCore.driver_side();
                Some(d)
            } else {
                None
            };
            placement.fork_side();
            let d_ev = raw::eventfd_pong(n, || placement.driver_side());
            placement.fork_side();
            let d_fx = raw::futex_pong(n, || placement.driver_side());
            placement.driver_side();
            let ((d_pool, ps), (d_raw, rs)) = (d_pool, d_raw);
            if round > 0 {
                ev.push(secs(d_ev) / n as f64);
                fx.push(secs(d_fx) / n as f64);
                pool_stats = (pool_stats.0 + ps.0, pool_stats.1 + ps.1);
                raw_stats = (raw_stats.0 + rs.0, raw_stats.1 + rs.1);
                pl.push(secs(d_pool) / n as f64);
                rw.push(secs(d_raw) / n as f64);
                if let Some(d) = d_spin {
                    sp.push(secs(d) / n as f64);
                }
            }
        }
        drop(pool);
        pin(&all_cpus());
        let ratio = median_ratio(&pl, &rw);
        println!(
            "{:<42} pool.apply {:>9} per call   raw ping-pong {:>9}   ratio {ratio:.2}x (target <= 0.8x)",
            placement.name(),
            fmt_dur(median(&pl)),
            fmt_dur(median(&rw))
        );
        println!(
            "{:<42} floors: eventfd ping-pong {} ({:.2}x raw), futex ping-pong {} ({:.2}x raw), through a shared page",
            "",
            fmt_dur(median(&ev)),
            median_ratio(&ev, &rw),
            fmt_dur(median(&fx)),
            median_ratio(&fx, &rw)
        );
        println!(
            "{:<42} ratio range over runs: {}",
            "",
            ratio_range(&pl, &rw)
        );
        let calls = (n * opts.runs as u64) as f64;
        println!(
            "{:<42} per call: pool {:.2} context switches, {} CPU (both sides); raw {:.2} switches, {} CPU",
            "",
            pool_stats.0 as f64 / calls,
            fmt_dur(pool_stats.1 as f64 / calls * 1e-9),
            raw_stats.0 as f64 / calls,
            fmt_dur(raw_stats.1 as f64 / calls * 1e-9)
        );
        if !sp.is_empty() {
            println!("{:<42} shared-memory spin ping-pong: {} per round trip (the floor of a spin-then-block channel)", "", fmt_dur(median(&sp)));
        }
        flush();
        rows.push(Row {
            case: match placement {
                Placement::Free => "3 round trip, free placement",
                Placement::SameCore => "3 round trip, same core",
                Placement::CrossCore => "3 round trip, cross core",
            },
            pool: format!("{} /call", fmt_dur(median(&pl))),
            reference: if sp.is_empty() {
                format!(
                    "raw {} (eventfd {}, futex {})",
                    fmt_dur(median(&rw)),
                    fmt_dur(median(&ev)),
                    fmt_dur(median(&fx))
                )
            } else {
                format!(
                    "raw {} (eventfd {}, futex {}, shm spin {})",
                    fmt_dur(median(&rw)),
                    fmt_dur(median(&ev)),
                    fmt_dur(median(&fx)),
                    fmt_dur(median(&sp))
                )
            },
            ratio: format!("{ratio:.2}x"),
            target: match placement {
                Placement::SameCore => "<= 0.8x (goal 0.6x)".into(),
                Placement::CrossCore => "<= 0.8x (goal 0.05x)".into(),
                Placement::Free => "<= 0.8x".into(),
            },
            met: Some(ratio <= 0.8),
        });
    }
}

/// The lowest and highest of the runs' ratios `a[i] / b[i]`.
fn ratio_range(a: &[f64], b: &[f64]) -> String {
    let r: Vec<f64> = a.iter().zip(b).map(|(a, b)| a / b).collect();
    let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = r.iter().copied().fold(0.0, f64::max);
    format!("{lo:.2}x – {hi:.2}x")
}

// ===========================================================================
// 4. Start

/// A driver heap of `bytes`, every page touched: mapped, and so shared by
/// every fork that follows (which copies its page tables).
///
/// With `POOL_BENCH_MADV_HUGEPAGE=1` the heap is first given
/// `madvise(MADV_HUGEPAGE)` (transparent huge pages, when the kernel's
/// setting is `madvise` or `always`): forks then copy one entry per 2 MiB.
fn touched_heap(bytes: usize) -> Vec<u8> {
    let mut heap = vec![0u8; bytes];
    if std::env::var_os("POOL_BENCH_MADV_HUGEPAGE").is_some() {
        const HUGE: usize = 2 << 20;
        let start = (heap.as_mut_ptr() as usize).next_multiple_of(HUGE);
        let end = (heap.as_ptr() as usize + bytes) / HUGE * HUGE;
        if end > start {
            // SAFETY: advice on whole pages inside `heap`'s own allocation;
            // it changes how they are backed, never their contents.
            let r = unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE)
            };
            assert_eq!(r, 0, "madvise(MADV_HUGEPAGE) failed");
        }
    }
    for (i, page) in heap.chunks_mut(4096).enumerate() {
        page[0] = i as u8;
    }
    black_box(heap)
}

/// This process's memory in transparent huge pages (KiB), from `/proc`.
fn anon_huge_kb() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    let line = text.lines().find(|l| l.starts_with("AnonHugePages:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn case_start(opts: &Opts, rows: &mut Vec<Row>) {
    let heap = opts.size(1 << 30, 128 << 20);
    header(
        "start",
        &format!(
            "build -> first result, with a {} MiB driver heap, vs one raw fork -> first 8 bytes",
            heap >> 20
        ),
    );
    let ballast = touched_heap(heap);
    if let Some(kb) = anon_huge_kb() {
        println!("driver AnonHugePages: {} MiB", kb >> 10);
    }
    let pool_run = |workers: usize| {
        let t = Instant::now();
        let pool = Pool::builder()
            .workers(workers)
            .build(no_state, ())
            .expect("build");
        let r = pool.apply(square, 7).expect("apply");
        let d = t.elapsed();
        assert_eq!(r, 49);
        drop(pool);
        d
    };
    // pool(2), pool(1), one raw fork, two serial raw forks, zygote + two.
    let mut t: [Vec<f64>; 5] = Default::default();
    for round in 0..=opts.runs {
        // Rotate the order, so no side always runs first.
        let mut d = [Duration::ZERO; 5];
        for k in 0..5 {
            let which = (k + round) % 5;
            d[which] = match which {
                0 => pool_run(2),
                1 => pool_run(1),
                2 => raw::fork_first_result(),
                3 => raw::two_forks_first_result(),
                _ => raw::zygote_two_first_result(),
            };
        }
        if round > 0 {
            for (xs, d) in t.iter_mut().zip(d) {
                xs.push(secs(d));
            }
        }
    }
    drop(ballast);
    let [p2, p1, rw, two, zyg] = &t;
    let ratio = median_ratio(p2, rw);
    println!(
        "pool(2 workers) build -> first result {}   raw fork -> first result {}   ratio {ratio:.2}x (target <= 2.5x, goal <= 2.0x)",
        fmt_dur(median(p2)),
        fmt_dur(median(rw))
    );
    println!(
        "  floors, same run: two serial raw forks -> first result {} (pool {:.2}x of it);  zygote + two -> first result {} (pool {:.2}x of it)",
        fmt_dur(median(two)),
        median_ratio(p2, two),
        fmt_dur(median(zyg)),
        median_ratio(p2, zyg)
    );
    println!(
        "  the floors vs one raw fork: two serial {:.2}x, zygote + two {:.2}x",
        median_ratio(two, rw),
        median_ratio(zyg, rw)
    );
    println!(
        "pool(1 worker)  build -> first result {}   ratio {:.2}x  (the driver forks the fork server, which forks each worker in turn;",
        fmt_dur(median(p1)),
        median_ratio(p1, rw)
    );
    println!(" build returns once the first is ready, so n workers cost about two raw forks before the first result)");
    let mb = heap >> 20;
    let py_note = match (if opts.no_python { None } else { python() }).and_then(|py| {
        run_python(
            &py,
            "start.py",
            &[
                "--mib".into(),
                mb.to_string(),
                "--runs".into(),
                opts.runs.to_string(),
            ],
        )
    }) {
        Some(kv) => {
            let t = get(&kv, "median_s").unwrap_or(f64::NAN);
            println!(
                "python multiprocessing.Pool(2) (fork) with a {mb} MiB heap: Pool(2) -> first apply result {} (median of {}; separate process: compare with the raw fork above)",
                fmt_dur(t),
                opts.runs
            );
            format!("; Python Pool(2) {}", fmt_dur(t))
        }
        None => String::new(),
    };
    rows.push(Row {
        case: "4 start: build(2) -> first result, 1 GiB heap",
        pool: format!(
            "{} (1 worker: {})",
            fmt_dur(median(p2)),
            fmt_dur(median(p1))
        ),
        reference: format!(
            "raw fork {}; floors: two serial forks {}, zygote + two {}{py_note}",
            fmt_dur(median(rw)),
            fmt_dur(median(two)),
            fmt_dur(median(zyg))
        ),
        ratio: format!(
            "{ratio:.2}x (1 worker: {:.2}x; vs zygote + two: {:.2}x)",
            median_ratio(p1, rw),
            median_ratio(p2, zyg)
        ),
        target: "<= 2.5x (goal <= 2.0x)".into(),
        met: Some(ratio <= 2.5),
    });
}

// ===========================================================================
// 5. Sharing

fn case_sharing(opts: &Opts, rows: &mut Vec<Row>) {
    let size = opts.size(1 << 30, 64 << 20);
    header("sharing", &format!("2 workers each read every byte of a {} MiB table passed to init; Private_Dirty per worker", size >> 20));
    let table: Arc<Vec<u8>> = Arc::new(
        (0..size)
            .map(|i| ((i * 2654435761usize) >> 13) as u8)
            .collect(),
    );
    let expect = checksum(&table);
    let (mut worst, mut raw_kb, mut times) = (vec![], vec![], vec![]);
    for round in 0..=opts.runs {
        // A fresh pool each run: a worker's first full read is what is measured.
        let pool = Pool::builder()
            .workers(2)
            .build(share_table, table.clone())
            .expect("build");
        let (d, per_worker) = common::time(|| pool.broadcast(read_table, ()).expect("broadcast"));
        drop(pool);
        assert_eq!(per_worker.len(), 2);
        assert!(per_worker.iter().all(|&(sum, _, _)| sum == expect));
        assert_ne!(per_worker[0].2, per_worker[1].2, "two distinct workers");
        let kb = raw::fork_read_private_dirty(&table);
        if round > 0 {
            worst.push(per_worker.iter().map(|w| w.1).max().unwrap() as f64);
            raw_kb.push(kb as f64);
            times.push(secs(d));
        }
        if round == opts.runs {
            println!(
                "last run, per worker (pid, Private_Dirty): {:?}",
                per_worker
                    .iter()
                    .map(|w| (w.2, format!("{:.1} MiB", w.1 as f64 / 1024.0)))
                    .collect::<Vec<_>>()
            );
        }
    }
    let (w, r) = (median(&worst), median(&raw_kb));
    println!(
        "worst worker Private_Dirty {:.1} MiB (target <= 64 MiB) = {:.2}% of the table;  a raw forked child reading the same table: {:.1} MiB;  both workers' read took {}",
        w / 1024.0,
        100.0 * w / (size as f64 / 1024.0),
        r / 1024.0,
        fmt_dur(median(&times))
    );
    drop(table);
    // The contrast: Python's fork pool reading a table of Python objects.
    let mib = opts.size(512, 32);
    let py_note = match (if opts.no_python { None } else { python() }).and_then(|py| {
        run_python(
            &py,
            "sharing.py",
            &[
                "--mib".into(),
                mib.to_string(),
                "--runs".into(),
                opts.runs.to_string(),
            ],
        )
    }) {
        Some(kv) => {
            let (kb, frac) = (
                get(&kv, "worst_private_dirty_kb").unwrap_or(f64::NAN),
                get(&kv, "dirty_fraction").unwrap_or(f64::NAN),
            );
            println!(
                "python multiprocessing.Pool(2), fork, reading a {mib} MiB list of str: worst worker Private_Dirty {:.1} MiB = {:.0}% of the table (median of {})",
                kb / 1024.0,
                100.0 * frac,
                opts.runs
            );
            format!(
                "; Python fork pool: {:.0}% of a {mib} MiB list dirtied",
                100.0 * frac
            )
        }
        None => String::new(),
    };
    rows.push(Row {
        case: "5 sharing: Private_Dirty per worker, 1 GiB table read",
        pool: format!("{:.1} MiB", w / 1024.0),
        reference: format!("raw fork child {:.1} MiB{py_note}", r / 1024.0),
        ratio: format!("{:.2}% of table", 100.0 * w / (size as f64 / 1024.0)),
        target: "<= 64 MiB".into(),
        met: Some(w <= 64.0 * 1024.0),
    });
}

// ===========================================================================
// 6. Big results

fn case_big(opts: &Opts, rows: &mut Vec<Row>) {
    let count = opts.size(64, 8);
    header("big", &format!("{count} tasks each returning a 4 MiB Vec<u8>; GB/s vs a raw socketpair stream of the same bytes"));
    let bytes = (count * BIG) as f64;
    let pool1 = Pool::builder()
        .workers(1)
        .build(no_state, ())
        .expect("build");
    let pool2 = Pool::builder()
        .workers(2)
        .build(no_state, ())
        .expect("build");
    let (mut p1, mut p2, mut pb, mut rw) = (vec![], vec![], vec![], vec![]);
    let (mut kept, mut streamed) = (vec![], vec![]);
    for round in 0..=opts.runs {
        let run = |pool: &Pool<NoState>| {
            let (d, out) = common::time(|| pool.map(big_result, 0..count as u64).expect("map"));
            assert!(out
                .iter()
                .enumerate()
                .all(|(i, v)| v.len() == BIG && v[BIG - 1] == i as u8));
            drop(out);
            d
        };
        let d_raw = raw::stream(count, BIG);
        let d1 = run(&pool1);
        let d2 = run(&pool2);
        // Taken one by one and dropped, as the raw stream does with its buffer.
        let (ds, ()) = common::time(|| {
            for (i, v) in pool1.imap(big_result, 0..count as u64).enumerate() {
                let v = v.expect("imap");
                assert!(v.len() == BIG && v[BIG - 1] == i as u8);
            }
        });
        let (db, out) = common::time(|| pool1.map(big_result_bytes, 0..count as u64).expect("map"));
        assert!(out.iter().all(|v| v.len() == BIG));
        drop(out);
        // Last in the round: 256 MiB freed just before would change the next figure.
        let d_kept = raw::stream_kept(count, BIG);
        if round > 0 {
            p1.push(secs(d1));
            p2.push(secs(d2));
            pb.push(secs(db));
            rw.push(secs(d_raw));
            kept.push(secs(d_kept));
            streamed.push(secs(ds));
        }
    }
    let gbps = |xs: &[f64]| bytes / median(xs) / 1e9;
    let ratio = median_ratio(&rw, &p1); // throughput ratio = time(raw) / time(pool)
    println!(
        "pool (1 worker) {:.2} GB/s   pool (2 workers) {:.2} GB/s   raw socketpair {:.2} GB/s   pool(1)/raw = {ratio:.2}x",
        gbps(&p1),
        gbps(&p2),
        gbps(&rw)
    );
    println!(
        "raw stream keeping every result (fresh pages each, as a map's results): {:.2} GB/s;  pool(1) / that = {:.2}x",
        gbps(&kept),
        median_ratio(&kept, &p1)
    );
    let streamed_ratio = median_ratio(&rw, &streamed);
    println!(
        "pool (1 worker) imap, each result dropped before the next (as the raw stream): {:.2} GB/s = {streamed_ratio:.2}x raw",
        gbps(&streamed)
    );
    println!(
        "same bytes returned as serde_bytes::ByteBuf (1 worker): {:.2} GB/s = {:.2}x raw",
        gbps(&pb),
        median_ratio(&rw, &pb)
    );
    rows.push(Row {
        case: "6 big results: 4 MiB Vec<u8> per task",
        pool: format!("{:.2} GB/s (ByteBuf {:.2})", gbps(&p1), gbps(&pb)),
        reference: format!("raw stream {:.2} GB/s", gbps(&rw)),
        ratio: format!("{ratio:.2}x (ByteBuf {:.2}x)", median_ratio(&rw, &pb)),
        target: ">= 0.5x (issue 14)".into(),
        met: Some(ratio >= 0.5),
    });
    rows.push(Row {
        case: "6 big results, imap, each dropped before the next",
        pool: format!("{:.2} GB/s", gbps(&streamed)),
        reference: format!("raw stream {:.2} GB/s", gbps(&rw)),
        ratio: format!("{streamed_ratio:.2}x"),
        target: ">= 0.5x (issue 14)".into(),
        met: Some(streamed_ratio >= 0.5),
    });
}

// ===========================================================================
// 8. Pipelines: fused in the worker vs chained maps

fn case_pipeline(opts: &Opts, rows: &mut Vec<Row>) {
    let n = opts.size(200_000, 20_000) as u64;
    header("pipeline", &format!("{n} lines through parse -> features (512 B) -> score: one fused pipeline vs three chained pool.map calls"));
    let pool = Pool::builder()
        .workers(2)
        .build(no_state, ())
        .expect("build");
    let lines: Vec<String> = (0..n).map(|i| (i * 7919).to_string()).collect();
    let expected: Vec<u64> = lines
        .iter()
        .map(|l| score(features(parse_line(l.clone()).unwrap())))
        .collect();
    let chain = pool.pipeline(parse_line).then(features).then(score);
    let (mut fused, mut chained) = (vec![], vec![]);
    for round in 0..=opts.runs {
        let (df, out) = common::time(|| chain.map(lines.clone()).expect("pipeline"));
        assert_eq!(out, expected);
        let (dc, out) = common::time(|| {
            let xs: Vec<u64> = pool
                .map(parse_line, lines.clone())
                .expect("map")
                .into_iter()
                .map(|r| r.expect("parse"))
                .collect();
            let fs = pool.map(features, xs).expect("map");
            pool.map(score, fs).expect("map")
        });
        assert_eq!(out, expected);
        if round > 0 {
            fused.push(secs(df));
            chained.push(secs(dc));
        }
    }
    let ratio = median_ratio(&chained, &fused);
    println!(
        "fused pipeline {}   chained maps {}   chained/fused = {ratio:.2}x",
        fmt_dur(median(&fused)),
        fmt_dur(median(&chained))
    );
    rows.push(Row {
        case: "8 pipeline: 3 stages fused vs 3 chained maps",
        pool: fmt_dur(median(&fused)),
        reference: format!("chained {}", fmt_dur(median(&chained))),
        ratio: format!("{ratio:.2}x faster"),
        target: "none set (report)".into(),
        met: None,
    });
}

// ===========================================================================
// 7. Scaling with work

fn case_scaling(opts: &Opts, rows: &mut Vec<Row>) {
    let costs_us: [u64; 4] = [1, 10, 100, 1000];
    // Each side does about this much work per run, spread on 2 workers.
    let budget = opts.size(400_000_000, 20_000_000) as u64; // ns of total work
    header(
        "scaling",
        "tasks/s for busy-spin tasks of 1 µs .. 1 ms, 2 workers vs rayon (2 threads)",
    );
    let pool = Pool::builder()
        .workers(2)
        .build(no_state, ())
        .expect("build");
    let mut points = Vec::new();
    for &us in &costs_us {
        let ns = us * 1000;
        let n = (budget / ns).max(20);
        let (mut pl, mut ry) = (vec![], vec![]);
        for round in 0..=opts.runs {
            let (d_pool, out) = common::time(|| {
                pool.map(spin, std::iter::repeat_n(ns, n as usize))
                    .expect("map")
            });
            drop(out);
            let (d_ray, out) = common::time(|| {
                (0..n)
                    .into_par_iter()
                    .map(|_| spin_for(ns))
                    .collect::<Vec<u64>>()
            });
            drop(black_box(out));
            if round > 0 {
                pl.push(secs(d_pool));
                ry.push(secs(d_ray));
            }
        }
        let (tp, tr) = (median(&pl), median(&ry));
        let ideal = 2.0 / (ns as f64 * 1e-9);
        // Overhead per task: worker-time spent on something else than the task.
        let over_pool = (tp * 2.0 / n as f64) - ns as f64 * 1e-9;
        let over_ray = (tr * 2.0 / n as f64) - ns as f64 * 1e-9;
        let ratio = median_ratio(&pl, &ry);
        // The pool's extra worker-time per task over rayon's, run by run: this
        // one holds even when the machine lends fewer than 2 cores to both.
        let extra: Vec<f64> = pl
            .iter()
            .zip(&ry)
            .map(|(p, r)| (p - r) * 2.0 / n as f64)
            .collect();
        let extra = median(&extra);
        println!(
            "cost {us:>5} µs  n={n:>7}  pool {:>11} ({:>5.1}% of ideal, overhead {:>8}/task)  rayon {:>11} ({:>5.1}%, overhead {:>8}/task)  pool/rayon time {ratio:.2}x, pool - rayon {}/task",
            fmt_rate(n as f64 / tp),
            100.0 * (n as f64 / tp) / ideal,
            fmt_dur(over_pool.max(0.0)),
            fmt_rate(n as f64 / tr),
            100.0 * (n as f64 / tr) / ideal,
            fmt_dur(over_ray.max(0.0)),
            if extra < 0.0 { format!("-{}", fmt_dur(-extra)) } else { fmt_dur(extra) },
        );
        flush();
        points.push((
            us,
            n as f64 / tp,
            n as f64 / tr,
            ideal,
            over_pool,
            ratio,
            extra,
        ));
    }
    let out_dir = if opts.quick {
        format!("{}/../target/bench-quick", env!("CARGO_MANIFEST_DIR"))
    } else {
        format!("{}/benches/results", env!("CARGO_MANIFEST_DIR"))
    };
    std::fs::create_dir_all(&out_dir).expect("mkdir");
    let svg = format!("{out_dir}/scaling.svg");
    match chart(&svg, &points, opts.runs) {
        Ok(()) => println!("chart: {svg}"),
        Err(e) => println!("chart failed: {e}"),
    }
    for &(us, p, r, ideal, over, ratio, extra) in &points {
        rows.push(Row {
            case: match us {
                1 => "7 scaling: 1 µs tasks",
                10 => "7 scaling: 10 µs tasks",
                100 => "7 scaling: 100 µs tasks",
                _ => "7 scaling: 1 ms tasks",
            },
            pool: format!("{} ({:.0}% of ideal)", fmt_rate(p), 100.0 * p / ideal),
            reference: format!("rayon {}", fmt_rate(r)),
            ratio: format!("{ratio:.2}x time"),
            target: format!(
                "overhead {}/task ({} more than rayon)",
                fmt_dur(over.max(0.0)),
                fmt_dur(extra.max(0.0))
            ),
            met: None,
        });
    }
}

/// (cost µs, pool tasks/s, rayon tasks/s, ideal tasks/s, pool overhead s/task,
/// pool/rayon time, pool - rayon s/task)
type Point = (u64, f64, f64, f64, f64, f64, f64);

/// Two panels: tasks/s (log-log, with the ideal 2 / cost), and the pool's
/// rate as a share of rayon's, with the pool's extra time per task as labels.
fn chart(path: &str, points: &[Point], runs: usize) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "Busy-spin tasks, 2 workers: pool.map vs rayon (median of {runs} runs; load average {})",
        common::loadavg()
    );
    let root = root.titled(&title, ("sans-serif", 18))?;
    let (left, right) = root.split_horizontally(500);
    let xs = (0.7f64..1400f64).log_scale();
    let series = |f: fn(&Point) -> f64| {
        points
            .iter()
            .map(move |p| (p.0 as f64, f(p)))
            .collect::<Vec<_>>()
    };
    let line = |x: i32, y: i32, c: RGBColor| PathElement::new(vec![(x, y), (x + 20, y)], c);

    let ymax = points
        .iter()
        .map(|p| p.3.max(p.1).max(p.2))
        .fold(0.0, f64::max)
        * 2.0;
    let ymin = points
        .iter()
        .map(|p| p.1.min(p.2).min(p.3))
        .fold(f64::INFINITY, f64::min)
        / 2.0;
    let mut c = ChartBuilder::on(&left)
        .caption("tasks per second", ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(38)
        .y_label_area_size(60)
        .build_cartesian_2d(xs.clone(), (ymin..ymax).log_scale())?;
    c.configure_mesh()
        .x_desc("task cost (µs)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| match *y {
            y if y >= 1e6 => format!("{:.1}M", y / 1e6),
            y if y >= 1e3 => format!("{:.0}k", y / 1e3),
            y => format!("{y:.0}"),
        })
        .draw()?;
    c.draw_series(LineSeries::new(series(|p| p.3), BLACK.stroke_width(1)))?
        .label("ideal: 2 / cost")
        .legend(move |(x, y)| line(x, y, BLACK));
    c.draw_series(LineSeries::new(series(|p| p.2), BLUE.stroke_width(2)))?
        .label("rayon par_iter, 2 threads")
        .legend(move |(x, y)| line(x, y, BLUE));
    c.draw_series(
        series(|p| p.2)
            .into_iter()
            .map(|p| Circle::new(p, 3, BLUE.filled())),
    )?;
    c.draw_series(LineSeries::new(series(|p| p.1), RED.stroke_width(2)))?
        .label("pool.map, 2 workers")
        .legend(move |(x, y)| line(x, y, RED));
    c.draw_series(
        series(|p| p.1)
            .into_iter()
            .map(|p| Circle::new(p, 3, RED.filled())),
    )?;
    c.configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;

    // Right: the pool's rate as a share of rayon's, measured run by run in
    // the same process: unlike the share of the ideal, it holds when the
    // machine lends both sides fewer than 2 cores.
    let top = points.iter().map(|p| 100.0 / p.5).fold(100.0, f64::max) * 1.15;
    let mut c = ChartBuilder::on(&right)
        .caption(
            "pool's rate as % of rayon's (labels: extra time per task)",
            ("sans-serif", 15),
        )
        .margin(10)
        .x_label_area_size(38)
        .y_label_area_size(45)
        .build_cartesian_2d(xs, 0f64..top)?;
    c.configure_mesh()
        .x_desc("task cost (µs)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}%"))
        .draw()?;
    let share = points
        .iter()
        .map(|p| (p.0 as f64, 100.0 / p.5))
        .collect::<Vec<_>>();
    c.draw_series(LineSeries::new(
        vec![(0.7, 100.0), (1400.0, 100.0)],
        BLUE.stroke_width(1),
    ))?;
    c.draw_series(LineSeries::new(share.clone(), RED.stroke_width(2)))?;
    c.draw_series(share.iter().map(|&p| Circle::new(p, 3, RED.filled())))?;
    for p in points {
        let at = (
            p.0 as f64 * if p.0 >= 1000 { 0.35 } else { 0.75 },
            100.0 / p.5 - top / 12.0,
        );
        let label = if p.6 < 0.0 {
            format!("-{}", fmt_dur(-p.6))
        } else {
            format!("+{}", fmt_dur(p.6))
        };
        c.draw_series(std::iter::once(Text::new(
            label,
            at,
            ("sans-serif", 12).into_font().color(&RED),
        )))?;
    }
    root.present()?;
    Ok(())
}

// ===========================================================================

/// Ends the bench with a message if one case runs far longer than it should:
/// a hang of the pool must show as a failure, not as a bench that never ends.
fn watchdog(case: &'static str, limit: Duration) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static GEN: AtomicU64 = AtomicU64::new(0);
    static STARTED: OnceLock<()> = OnceLock::new();
    static CURRENT: std::sync::Mutex<(&str, Option<Instant>, Duration)> =
        std::sync::Mutex::new(("", None, Duration::ZERO));
    *CURRENT.lock().unwrap() = (case, Some(Instant::now()), limit);
    GEN.fetch_add(1, Ordering::Relaxed);
    STARTED.get_or_init(|| {
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_secs(1));
            let (case, since, limit) = *CURRENT.lock().unwrap();
            if since.is_some_and(|s| s.elapsed() > limit) {
                eprintln!("\nFAILED: case `{case}` has run for more than {} s: the pool hung (driver and worker both waiting).", limit.as_secs());
                std::process::exit(2);
            }
        });
    });
}

// ===========================================================================
// 9. Workers started fresh

/// `(Rss, Pss, Private_Dirty)` of process `pid`, in KiB.
fn memory_kb(pid: u32) -> (u64, u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"), field("Private_Dirty:"))
}

fn case_spawn(opts: &Opts, rows: &mut Vec<Row>) {
    let heap = opts.size(1 << 30, 128 << 20);
    header(
        "spawn",
        &format!(
            "workers started fresh (spawn) vs forked: build(2) -> first result, apply round trip, memory per worker; {} MiB driver heap",
            heap >> 20
        ),
    );
    let ballast = touched_heap(heap);
    let build = |fresh: bool| {
        let b = Pool::builder().workers(2);
        if fresh {
            b.spawn().build(no_state, ()).expect("build")
        } else {
            b.build(no_state, ()).expect("build")
        }
    };
    let start = |fresh: bool| {
        let t = Instant::now();
        let pool = build(fresh);
        assert_eq!(pool.apply(square, 7).expect("apply"), 49);
        let d = t.elapsed();
        drop(pool);
        d
    };
    let n = opts.size(2_000, 200);
    let round_trip = |fresh: bool| {
        let pool = Pool::builder().workers(1);
        let pool = if fresh {
            pool.spawn().build(no_state, ()).expect("build")
        } else {
            pool.build(no_state, ()).expect("build")
        };
        assert_eq!(pool.apply(square, 3).expect("apply"), 9);
        let t = Instant::now();
        for i in 0..n as u64 {
            black_box(pool.apply(square, i).expect("apply"));
        }
        t.elapsed() / n as u32
    };
    let (mut sf, mut ss, mut rf, mut rs) = (vec![], vec![], vec![], vec![]);
    for round in 0..=opts.runs {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for fresh in order {
            let (d, r) = (start(fresh), round_trip(fresh));
            if round > 0 {
                let (s, t) = if fresh {
                    (&mut ss, &mut rs)
                } else {
                    (&mut sf, &mut rf)
                };
                s.push(secs(d));
                t.push(secs(r));
            }
        }
    }
    // Memory of one worker of each kind, after a little work.
    let mem = |fresh: bool| {
        let pool = build(fresh);
        let _ = pool.map(square, 0..10_000u64).expect("map");
        let pids = pool.broadcast(worker_pid, ()).expect("pids");
        memory_kb(pids[0])
    };
    let (fm, sm) = (mem(false), mem(true));
    drop(ballast);
    let start_ratio = median_ratio(&ss, &sf);
    let rt_ratio = median_ratio(&rs, &rf);
    println!(
        "build(2) -> first result: spawn {}   fork {}   ratio {start_ratio:.2}x",
        fmt_dur(median(&ss)),
        fmt_dur(median(&sf))
    );
    println!(
        "apply round trip (1 worker, {n} calls): spawn {}   fork {}   ratio {rt_ratio:.2}x",
        fmt_dur(median(&rs)),
        fmt_dur(median(&rf))
    );
    for (name, (rss, pss, dirty)) in [("fork", fm), ("spawn", sm)] {
        println!("one {name} worker: Rss {rss} KiB, Pss {pss} KiB, Private_Dirty {dirty} KiB");
    }
    rows.push(Row {
        case: "9 spawn: build(2) -> first result, 1 GiB heap",
        pool: fmt_dur(median(&ss)),
        reference: format!("fork server {}", fmt_dur(median(&sf))),
        ratio: format!("{start_ratio:.2}x"),
        target: "-".into(),
        met: None,
    });
    rows.push(Row {
        case: "9 spawn: apply round trip",
        pool: fmt_dur(median(&rs)),
        reference: format!("fork server {}", fmt_dur(median(&rf))),
        ratio: format!("{rt_ratio:.2}x"),
        target: "-".into(),
        met: None,
    });
    rows.push(Row {
        case: "9 spawn: memory of one worker (Rss / Pss / Private_Dirty)",
        pool: format!("{} / {} / {} KiB", sm.0, sm.1, sm.2),
        reference: format!("fork {} / {} / {} KiB", fm.0, fm.1, fm.2),
        ratio: "-".into(),
        target: "-".into(),
        met: None,
    });
}

// ===========================================================================
// 10. Many outstanding handles

fn case_handles(opts: &Opts, rows: &mut Vec<Row>) {
    let (small, large) = (opts.size(2_000, 500), opts.size(32_000, 4_000));
    header(
        "handles",
        &format!("N submits, then N waits (Python's apply_async in a loop, then .get()), 2 workers: per-call cost at N = {large} vs N = {small}"),
    );
    let pool = Pool::builder()
        .workers(2)
        .build(no_state, ())
        .expect("build");
    let per_call = |n: usize| {
        let t = Instant::now();
        let handles: Vec<_> = (0..n as u64).map(|i| pool.submit(square, i)).collect();
        for h in handles {
            black_box(h.wait().expect("wait"));
        }
        secs(t.elapsed()) / n as f64
    };
    let (mut s, mut l) = (vec![], vec![]);
    for round in 0..=opts.runs {
        let (a, b) = if round % 2 == 0 {
            (per_call(small), per_call(large))
        } else {
            let b = per_call(large);
            (per_call(small), b)
        };
        if round > 0 {
            s.push(a);
            l.push(b);
        }
    }
    let ratio = median_ratio(&l, &s);
    println!(
        "per call: {} at {small} outstanding, {} at {large}   ratio {ratio:.2}x (target <= 1.5x)",
        fmt_dur(median(&s)),
        fmt_dur(median(&l))
    );
    rows.push(Row {
        case: "10 handles: per call at 32k outstanding vs 2k",
        pool: fmt_dur(median(&l)),
        reference: format!("at 2k: {}", fmt_dur(median(&s))),
        ratio: format!("{ratio:.2}x"),
        target: "<= 1.5x".into(),
        met: Some(ratio <= 1.5),
    });
}

// ===========================================================================
// 11. Head-of-line blocking

/// Sleeps `ms`: a call that takes time without taking a core.
#[worker_task]
fn nap_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn case_hol(opts: &Opts, rows: &mut Vec<Row>) {
    const LONG: u64 = 600;
    header(
        "hol",
        &format!("one {LONG} ms call, then eight 10 ms calls (submit each), 2 workers: when the last short one is done, over {LONG} ms"),
    );
    let pool = Pool::builder()
        .workers(2)
        .build(no_state, ())
        .expect("build");
    let once = || {
        let t = Instant::now();
        let handles: Vec<_> = std::iter::once(LONG)
            .chain([10; 8])
            .map(|ms| pool.submit(nap_ms, ms))
            .collect();
        let mut last_short = Duration::ZERO;
        for (i, r) in pool_runtime::as_completed(handles) {
            r.expect("nap");
            if i > 0 {
                last_short = last_short.max(t.elapsed());
            }
        }
        secs(last_short) / (LONG as f64 / 1e3)
    };
    let ratios: Vec<f64> = (0..=opts.runs).map(|_| once()).skip(1).collect();
    let ratio = median(&ratios);
    println!(
        "last short call done at {ratio:.3} x the long call ({}; runs: {})   (target <= 0.3)",
        fmt_dur(ratio * LONG as f64 / 1e3),
        ratios
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    rows.push(Row {
        case: "11 hol: last 10 ms call done / 600 ms call",
        pool: fmt_dur(ratio * LONG as f64 / 1e3),
        reference: format!("{LONG} ms"),
        ratio: format!("{ratio:.3}x"),
        target: "<= 0.3x".into(),
        met: Some(ratio <= 0.3),
    });
}

fn main() {
    // Workers started fresh (case 9) are this bench run again.
    pool_runtime::worker_mode();
    let opts = Opts::from_args();
    println!(
        "# pool bench{}",
        if opts.quick {
            " (--quick: smaller sizes, smoke run)"
        } else {
            ""
        }
    );
    println!("machine: {}", common::machine());
    println!("load average at start: {}", common::loadavg());
    println!(
        "command: cargo bench -p pool-suite --bench pool --{}{}   (every figure: median of {} runs, after one warm-up run)",
        if opts.quick { " --quick" } else { "" },
        opts.filters.iter().map(|f| format!(" {f}")).collect::<String>(),
        opts.runs
    );
    let mut rows = Vec::new();
    type Case = fn(&Opts, &mut Vec<Row>);
    let cases: [(&str, Case); 11] = [
        ("seeds", case_seeds),
        ("tiny", case_tiny),
        ("roundtrip", case_roundtrip),
        ("start", case_start),
        ("sharing", case_sharing),
        ("big", case_big),
        ("scaling", case_scaling),
        ("pipeline", case_pipeline),
        ("spawn", case_spawn),
        ("handles", case_handles),
        ("hol", case_hol),
    ];
    let t = Instant::now();
    let limit = Duration::from_secs(if opts.quick { 45 } else { 300 });
    for (name, case) in cases {
        if opts.wants(name) {
            let t = Instant::now();
            watchdog(name, limit);
            case(&opts, &mut rows);
            println!("({name}: {:.1} s)", t.elapsed().as_secs_f64());
            flush();
        }
    }
    println!(
        "\n## Summary (median of {} runs; ratio = pool / reference unless said){}\n",
        opts.runs,
        if opts.quick {
            "\n--quick: smaller sizes than the case names say; a smoke run, not figures"
        } else {
            ""
        }
    );
    println!("| case | pool | reference | ratio | target | met |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "-",
        };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.case, r.pool, r.reference, r.ratio, r.target, met
        );
    }
    println!(
        "\ntotal {:.1} s; load average at the end: {}",
        t.elapsed().as_secs_f64(),
        common::loadavg()
    );
}
