//! The raw system calls the pool needs and nix does not wrap: fork with the
//! io locks held, `_exit`, descriptor hygiene across forks, the shared
//! step cells, dying with the parent. Every `unsafe` of the crate is here.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use nix::unistd::{ForkResult, Pid};

// Re-typing by TypeId serves the postcard fast paths only.
#[cfg(not(feature = "codec-bincode"))]
mod same;
mod spare;

#[cfg(not(feature = "codec-bincode"))]
pub(crate) use same::{as_same, as_same_mut, Lifeless};
pub(crate) use spare::recv_spare;

/// Ends this process at once: no atexit handlers, no flushing of stdio
/// buffers inherited from the driver, no destructors. See `_exit(2)`.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is async-signal-safe and takes no pointers; it is the
    // documented way for a forked child to end without running the parent's
    // cleanup a second time.
    unsafe { libc::_exit(code) }
}

/// Forks; the child runs `child` and never returns into the caller's code.
///
/// Holds the std io locks across the fork, so that no other thread of a
/// multithreaded driver can own them at the instant of the fork (the child
/// would find them locked forever). glibc's own `fork` does the same for the
/// allocator's locks.
pub(crate) fn fork_with<F: FnOnce() -> i32>(child: F) -> nix::Result<Pid> {
    let out = std::io::stdout().lock();
    let err = std::io::stderr().lock();
    // SAFETY: the child below only runs `child` and then `_exit`s, never
    // returning into code that assumes the parent's threads exist. The locks
    // another thread could have held (stdio here, malloc's in glibc) are held
    // by this thread across the fork. `child` is the zygote or a worker main,
    // written for a process whose only thread is this one.
    let forked = unsafe { nix::unistd::fork() };
    match forked? {
        ForkResult::Child => {
            drop((out, err));
            let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)) {
                Ok(code) => code,
                Err(payload) => {
                    // User code runs under its own catch_unwind: this is a
                    // bug of the runtime, and must not go unsaid.
                    let msg = crate::unwind::panic_message(&*payload);
                    eprintln!(
                        "pool-runtime: internal error in process {}: {msg}",
                        std::process::id()
                    );
                    101
                }
            };
            exit_now(code)
        }
        ForkResult::Parent { child } => Ok(child),
    }
}

/// A connected pair of stream sockets, both close-on-exec. See `socketpair(2)`.
pub(crate) fn stream_pair() -> nix::Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
}

/// A connected pair of packet sockets (message boundaries kept), close-on-exec.
pub(crate) fn packet_pair() -> nix::Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
}

/// Sends one packet, with `fds` attached (`SCM_RIGHTS`).
pub(crate) fn send_packet(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> nix::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg: Vec<ControlMessage<'_>> = if raw.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(&raw)]
    };
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(bytes)],
        &cmsg,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    Ok(())
}

/// The most descriptors one packet carries.
const PACKET_FDS: usize = 3;

/// Receives one packet into `buf`; returns its length (0 at end of stream)
/// and the descriptors attached to it, in order (at most three).
pub(crate) fn recv_packet(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
) -> nix::Result<(usize, Vec<OwnedFd>)> {
    let mut space = nix::cmsg_space!([RawFd; PACKET_FDS]);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raws) = c {
            for raw in raws {
                // SAFETY: the kernel just installed `raw` in this process for
                // us (SCM_RIGHTS); nothing else owns it yet.
                fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
    }
    Ok((msg.bytes, fds))
}

// ---------------------------------------------------------------------------
// Descriptor hygiene. Linux has no close-on-fork flag, so the driver keeps a
// list of the descriptors it owns for pools; a freshly forked fork server
// closes them all, so that it never holds another pool's channels (or its
// own driver's end of one, which would hide the driver's death from it).
// Lock-free, because the child reads it right after a fork.

const SLOTS: usize = 4096;
static INTERNAL_FDS: [AtomicI32; SLOTS] = [const { AtomicI32::new(-1) }; SLOTS];

/// A driver-side descriptor that children must not keep: registered as
/// internal for as long as this owns it, from construction to drop, so that
/// no number stays registered after its descriptor is closed (the next fork
/// server would close whatever reuses the number in its children).
#[derive(Debug)]
pub(crate) struct Internal<T: AsRawFd>(T);

impl<T: AsRawFd> Internal<T> {
    pub(crate) fn new(fd: T) -> Self {
        register_internal(fd.as_raw_fd());
        Internal(fd)
    }
}

impl<T: AsRawFd> std::ops::Deref for Internal<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: AsRawFd> Drop for Internal<T> {
    fn drop(&mut self) {
        // Before the descriptor closes (its field drops after this).
        unregister_internal(self.0.as_raw_fd());
    }
}

/// Remembers `fd` as a driver-side descriptor that children must not keep.
fn register_internal(fd: RawFd) {
    for slot in &INTERNAL_FDS {
        if slot
            .compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
    }
    // More than SLOTS live channels: the extra one is just not tracked; its
    // only cost is that a fork server may hold a stray copy of it.
}

/// Forgets `fd` (it is about to be closed).
fn unregister_internal(fd: RawFd) {
    for slot in &INTERNAL_FDS {
        if slot
            .compare_exchange(fd, -1, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
    }
}

/// In a fresh child: closes every registered driver-side descriptor but `keep`.
pub(crate) fn close_internal_fds(keep: RawFd) {
    for slot in &INTERNAL_FDS {
        let fd = slot.swap(-1, Ordering::AcqRel);
        if fd >= 0 && fd != keep {
            // SAFETY: `fd` is a driver-side descriptor the child inherited and
            // must not keep; no object in the child is used with it again (the
            // parent's owners of it are never dropped here: the child `_exit`s).
            unsafe { libc::close(fd) };
        }
    }
}

/// Closes a raw descriptor number this process inherited and will not use.
pub(crate) fn close_raw(fd: RawFd) {
    // SAFETY: called in a fresh child on descriptors whose owning objects
    // belong to the parent's code and are never dropped in the child.
    unsafe { libc::close(fd) };
}

// ---------------------------------------------------------------------------
// Step cells: one cache line per worker slot in a shared anonymous
// mapping, created before the fork server, so the driver, the fork server and
// every worker see the same memory. A worker writes which item it is working
// on, and at what; if it dies, the driver reads there which input killed it.

/// What a worker does with one item, in the order it does it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Decoding the item's input (the user's `Deserialize`).
    Decode = 0,
    /// Running the task on it.
    Run = 1,
    /// Encoding its result (the user's `Serialize`).
    Encode = 2,
}

/// `StepCell::step` before the batch's first item.
const NO_STEP: u64 = u64::MAX;

/// In `StepCell::gate`: the driver took back the batch whose tag is the rest.
const TAKEN_BACK: u64 = 1 << 63;

/// What one worker is doing, visible to the driver.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct StepCell {
    /// The batch the worker is running (0: none).
    tag: AtomicU64,
    /// Where in that batch: `item << 2 | phase`, or [`NO_STEP`].
    step: AtomicU64,
    /// Who owns the batch the worker has been sent last: the tag it
    /// claimed last, or `tag | TAKEN_BACK` once the driver took `tag` back
    /// before the worker claimed it (one at a time). One word changed only
    /// by compare-and-swap, so exactly one side wins each batch.
    gate: AtomicU64,
    /// Why the sandbox stopped the worker (`sandbox::Breach`), 0 if it did not.
    breach: AtomicU64,
}

impl StepCell {
    /// In the worker: batch `tag` starts; no item is under way yet.
    pub(crate) fn begin(&self, tag: u64) {
        self.step.store(NO_STEP, Ordering::Release);
        self.tag.store(tag, Ordering::Release);
    }

    /// In the worker: item `item` of the batch enters `phase`.
    #[inline]
    pub(crate) fn mark(&self, item: u32, phase: Phase) {
        self.step
            .store((item as u64) << 2 | phase as u64, Ordering::Release);
    }

    /// In the worker: the batch is over; nothing runs.
    pub(crate) fn end(&self) {
        self.tag.store(0, Ordering::Release);
    }

    /// In the worker, before starting batch `tag`: whether it may, or the
    /// driver took it back (it then runs elsewhere; the worker skips it).
    pub(crate) fn claim(&self, tag: u64) -> bool {
        let mut cur = self.gate.load(Ordering::Acquire);
        loop {
            if cur == tag | TAKEN_BACK {
                // The driver leaves the gate alone while a take-back is
                // pending: this store races with nothing.
                self.gate.store(0, Ordering::Release);
                return false;
            }
            if cur & TAKEN_BACK != 0 {
                // A later batch was taken back: this one is still ours.
                return true;
            }
            match self
                .gate
                .compare_exchange_weak(cur, tag, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// In the driver: takes back `tag`, the batch it sent this worker last,
    /// if the worker has not claimed it; whether it did. Refused while an
    /// earlier take-back is still unseen by the worker.
    pub(crate) fn take_back(&self, tag: u64) -> bool {
        let mut cur = self.gate.load(Ordering::Acquire);
        loop {
            // `tag` is the last batch sent: a worker that claimed it has
            // claimed nothing since, so the gate still says `tag`.
            if cur == tag || cur & TAKEN_BACK != 0 {
                return false;
            }
            match self.gate.compare_exchange_weak(
                cur,
                tag | TAKEN_BACK,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// In the driver: whether a batch it took back may still be unseen by
    /// the worker (it clears the mark as it skips the batch).
    pub(crate) fn take_back_unseen(&self) -> bool {
        self.gate.load(Ordering::Acquire) & TAKEN_BACK != 0
    }

    /// In the driver: the batch under way, if any, and the item in it and
    /// its phase, once one has started.
    pub(crate) fn read(&self) -> Option<(u64, Option<(u32, Phase)>)> {
        let tag = self.tag.load(Ordering::Acquire);
        (tag != 0).then(|| (tag, Self::decode(self.step.load(Ordering::Acquire))))
    }

    /// In the driver, once the worker is gone: [`read`](StepCell::read), and
    /// clear the cell for the slot's next worker.
    pub(crate) fn take(&self) -> Option<(u64, Option<(u32, Phase)>)> {
        let at = self.read();
        self.tag.store(0, Ordering::Release);
        self.gate.store(0, Ordering::Release);
        at
    }

    /// In the worker: where its sandbox writes a breach as it dies.
    pub(crate) fn breach(&self) -> &AtomicU64 {
        &self.breach
    }

    /// In the driver, once the worker is gone: the breach it wrote (0 if
    /// none), cleared for the slot's next worker.
    pub(crate) fn take_breach(&self) -> u64 {
        self.breach.swap(0, Ordering::AcqRel)
    }

    fn decode(step: u64) -> Option<(u32, Phase)> {
        let phase = match step & 3 {
            0 => Phase::Decode,
            1 => Phase::Run,
            2 => Phase::Encode,
            _ => return None,
        };
        u32::try_from(step >> 2).ok().map(|item| (item, phase))
    }
}

/// The shared mapping of [`StepCell`]s, one per worker slot.
#[derive(Debug)]
pub(crate) struct StepCells {
    ptr: NonNull<StepCell>,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the mapping only holds atomics, which may be shared across threads.
unsafe impl Send for StepCells {}
// SAFETY: as above; every access goes through `&StepCell`, whose fields are atomic.
unsafe impl Sync for StepCells {}

impl StepCells {
    /// A fresh mapping of `len` cells, all clear, in a memfd: forked
    /// children share the mapping itself, a worker started fresh maps the
    /// memfd it inherits ([`StepCells::map_inherited`]).
    pub(crate) fn new(len: usize) -> nix::Result<Self> {
        use nix::sys::memfd::{memfd_create, MFdFlags};
        let len = len.max(1);
        let fd = memfd_create("pool-step-cells", MFdFlags::MFD_CLOEXEC)?;
        nix::unistd::ftruncate(&fd, (len * std::mem::size_of::<StepCell>()) as i64)?;
        Self::map(fd, len)
    }

    /// In a worker started fresh: the cells of the memfd it inherited.
    pub(crate) fn map_inherited(fd: OwnedFd, len: usize) -> nix::Result<Self> {
        let bytes = nix::sys::stat::fstat(&fd)?.st_size as usize;
        if len == 0 || bytes < len * std::mem::size_of::<StepCell>() {
            return Err(nix::errno::Errno::EINVAL);
        }
        Self::map(fd, len)
    }

    fn map(fd: OwnedFd, len: usize) -> nix::Result<Self> {
        use nix::sys::mman::{mmap, MapFlags, ProtFlags};
        let bytes = std::num::NonZeroUsize::new(len * std::mem::size_of::<StepCell>()).unwrap();
        // SAFETY: a new shared mapping of a memfd at least `bytes` long,
        // aliased only by other mappings of the same cells, whose every
        // access is atomic; a fresh memfd is zeroed, and all-zero bytes are
        // a valid `StepCell` (atomics of 0).
        let ptr = unsafe {
            mmap(
                None,
                bytes,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &fd,
                0,
            )
        }?;
        Ok(StepCells {
            ptr: ptr.cast(),
            len,
            fd,
        })
    }

    pub(crate) fn get(&self, i: usize) -> &StepCell {
        assert!(i < self.len, "cell {i} of {}", self.len);
        // SAFETY: `i` is in bounds of the mapping, which lives as long as `self`.
        unsafe { &*self.ptr.as_ptr().add(i) }
    }

    /// How many cells.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The memfd, for a worker started fresh to map.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for StepCells {
    fn drop(&mut self) {
        // SAFETY: the mapping was created by `new` with this length and no
        // reference into it outlives `self`.
        let _ = unsafe {
            nix::sys::mman::munmap(self.ptr.cast(), self.len * std::mem::size_of::<StepCell>())
        };
    }
}

// ---------------------------------------------------------------------------
// Rings: one sealed memfd per worker generation holds its pair of rings
// (`channel/ring.rs`), mapped by the driver and by that worker only. The
// seals keep its size: a worker cannot shrink it under the driver (whose
// next access would be a SIGBUS).

/// A type that may live in memory shared with another process, mapped by
/// [`SharedMap`].
///
/// # Safety
/// All-zero bytes must be a valid value, and every access through `&Self`
/// must be atomic (the peer writes the same memory at any time).
pub(crate) unsafe trait Zeroed: Sync {}

/// A `T` (one worker generation's rings: `channel::ring::RingMap`) in a
/// sealed memfd, mapped.
#[derive(Debug)]
pub(crate) struct SharedMap<T: Zeroed> {
    ptr: NonNull<T>,
    /// Internal: another pool's fork server does not keep it.
    fd: Internal<OwnedFd>,
}

// SAFETY: the mapping only holds atomics (`Zeroed`), which may be shared
// across threads.
unsafe impl<T: Zeroed> Send for SharedMap<T> {}
// SAFETY: as above; every access goes through `&T`, which is atomic.
unsafe impl<T: Zeroed> Sync for SharedMap<T> {}

impl<T: Zeroed> SharedMap<T> {
    /// A fresh, all-zero `T` in a new memfd, sealed at its size.
    pub(crate) fn new() -> nix::Result<Self> {
        use nix::fcntl::{fcntl, FcntlArg, SealFlag};
        use nix::sys::memfd::{memfd_create, MFdFlags};
        let fd = memfd_create(
            "pool-rings",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )?;
        nix::unistd::ftruncate(&fd, std::mem::size_of::<T>() as i64)?;
        let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
        fcntl(&fd, FcntlArg::F_ADD_SEALS(seals))?;
        Self::map(fd)
    }

    /// In a worker: the `T` in the memfd the driver sent, which must be
    /// large enough and sealed against shrinking.
    pub(crate) fn map_received(fd: OwnedFd) -> nix::Result<Self> {
        use nix::fcntl::{fcntl, FcntlArg, SealFlag};
        let bytes = nix::sys::stat::fstat(&fd)?.st_size as usize;
        let seals = SealFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GET_SEALS)?);
        if bytes < std::mem::size_of::<T>() || !seals.contains(SealFlag::F_SEAL_SHRINK) {
            return Err(nix::errno::Errno::EINVAL);
        }
        Self::map(fd)
    }

    fn map(fd: OwnedFd) -> nix::Result<Self> {
        use nix::sys::mman::{mmap, MapFlags, ProtFlags};
        let bytes = std::num::NonZeroUsize::new(std::mem::size_of::<T>()).unwrap();
        // SAFETY: a new shared mapping of a memfd sealed at least `bytes`
        // long (it cannot shrink under us), aliased only by the peer's
        // mapping, whose every access is atomic; a fresh memfd is zeroed,
        // and all-zero bytes are a valid `T` (`Zeroed`).
        let ptr = unsafe {
            mmap(
                None,
                bytes,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &fd,
                0,
            )
        }?;
        Ok(SharedMap {
            ptr: ptr.cast(),
            fd: Internal::new(fd),
        })
    }

    /// The mapped value.
    pub(crate) fn get(&self) -> &T {
        // SAFETY: mapped by `map` with room for a `T`, valid (atomics
        // only) for as long as `self`, which the reference borrows.
        unsafe { self.ptr.as_ref() }
    }

    /// The memfd, to send to the worker.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl<T: Zeroed> Drop for SharedMap<T> {
    fn drop(&mut self) {
        // SAFETY: the mapping `map` made, with its length; no reference into
        // it outlives `self`.
        let _ = unsafe { nix::sys::mman::munmap(self.ptr.cast(), std::mem::size_of::<T>()) };
    }
}

/// Sleeps while `word` holds `expected`, for at most `timeout`; returns on
/// a wake, a change, a signal or the timeout alike (the caller looks
/// again), `true` if the timeout ran out. Not `FUTEX_PRIVATE_FLAG`: the
/// word is shared with another process. See `futex(2)`.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: std::time::Duration) -> bool {
    let timeout = libc::timespec {
        tv_sec: timeout.as_secs().try_into().unwrap_or(libc::time_t::MAX),
        tv_nsec: timeout.subsec_nanos().into(),
    };
    // SAFETY: `word` is a live, aligned 32-bit atomic for the whole call and
    // `timeout` a valid relative timespec; FUTEX_WAIT only reads them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &timeout as *const libc::timespec,
        )
    };
    r < 0 && nix::errno::Errno::last() == nix::errno::Errno::ETIMEDOUT
}

/// Wakes the one process sleeping on `word`, if any.
pub(crate) fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned 32-bit atomic; FUTEX_WAKE does not
    // touch memory.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1) };
}

/// The CPU this thread runs on now (`u32::MAX` if unknown). A vDSO call on
/// x86-64 and arm64, no system call. See `sched_getcpu(3)`.
pub(crate) fn current_cpu() -> u32 {
    // SAFETY: takes no arguments, touches no memory of ours.
    let cpu = unsafe { libc::sched_getcpu() };
    u32::try_from(cpu).unwrap_or(u32::MAX)
}

// ---------------------------------------------------------------------------

/// In a worker: die with the fork server that started it (SIGKILL on its
/// death), and leave now if it is already gone. See `prctl(2)`.
pub(crate) fn die_with_parent(parent: Pid) {
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if nix::unistd::getppid() != parent {
        exit_now(0);
    }
}

/// In a worker started fresh: the descriptor its parent left open for it
/// under number `fd`, or `None` if there is none.
pub(crate) fn take_inherited_fd(fd: RawFd) -> Option<OwnedFd> {
    // Open, and not one of the standard streams.
    // SAFETY: F_GETFD only reads the flags of whatever `fd` names, and
    // fails with EBADF if it names nothing; no memory is involved.
    if fd <= 2 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the fork server left `fd` open across `exec` for this process
    // alone, and nothing else in it knows the number: it is owned here once
    // (`fresh.rs` claims the inherited descriptors once per process).
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Lets `fd` survive the `exec` that follows (clears close-on-exec).
pub(crate) fn keep_across_exec(fd: BorrowedFd<'_>) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).map(drop)
}

/// Ignores the terminal's SIGINT: the driver decides what Ctrl-C means.
pub(crate) fn ignore_sigint() {
    // SAFETY: SIG_IGN installs no handler code, so nothing can run in a
    // signal context.
    let _ = unsafe { signal(Signal::SIGINT, SigHandler::SigIgn) };
}

/// Waits for events on raw descriptors. See `poll(2)`.
///
/// Takes raw `pollfd`s so the caller can wait without holding the lock of the
/// structure that owns the descriptors; the caller guarantees they stay open
/// for the whole call.
pub(crate) fn poll_raw(fds: &mut [libc::pollfd], timeout_ms: i32) -> nix::Result<usize> {
    // SAFETY: `fds` is a valid, exclusively borrowed array of `pollfd` for the
    // length passed; the kernel writes only the `revents` fields.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    nix::errno::Errno::result(n).map(|n| n as usize)
}

/// Set by [`flag_leave_signals`]' handler: SIGTERM or SIGINT came.
#[cfg(feature = "redis")]
static LEAVE_ASKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cfg(feature = "redis")]
extern "C" fn note_leave(_: libc::c_int) {
    LEAVE_ASKED.store(true, Ordering::Release);
}

/// Makes SIGTERM and SIGINT ask this process to leave ([`leave_asked`])
/// rather than kill it: a Redis host finishes what it holds first.
#[cfg(feature = "redis")]
pub(crate) fn flag_leave_signals() {
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        let _ = unsafe { signal(sig, SigHandler::Handler(note_leave)) };
    }
}

/// Whether SIGTERM or SIGINT came since [`flag_leave_signals`].
#[cfg(feature = "redis")]
pub(crate) fn leave_asked() -> bool {
    LEAVE_ASKED.load(Ordering::Acquire)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell() -> StepCell {
        StepCell {
            tag: AtomicU64::new(0),
            step: AtomicU64::new(NO_STEP),
            gate: AtomicU64::new(0),
            breach: AtomicU64::new(0),
        }
    }

    #[test]
    fn a_batch_is_either_claimed_or_taken_back_never_both() {
        let c = cell();
        assert!(c.claim(1));
        // Claimed: the driver cannot take it back.
        assert!(!c.take_back(1));
        // Sent next, not claimed yet: taken back, and the worker skips it.
        assert!(c.take_back(2));
        assert!(!c.claim(2));
        // The batch after it runs.
        assert!(c.claim(3));
    }

    #[test]
    fn a_take_back_waits_for_the_worker_to_see_the_last_one() {
        let c = cell();
        assert!(c.take_back(2));
        // A second one is refused until the worker skipped the first.
        assert!(!c.take_back(3));
        // The batch before the one taken back still runs, and leaves the mark.
        assert!(c.claim(1));
        assert!(!c.take_back(3));
        assert!(!c.claim(2));
        assert!(c.take_back(3));
        assert!(!c.claim(3));
    }

    #[test]
    fn claim_and_take_back_race_to_one_winner() {
        for tag in 1..2_000u64 {
            let c = cell();
            let (claimed, taken) = std::thread::scope(|s| {
                let w = s.spawn(|| c.claim(tag));
                let taken = c.take_back(tag);
                (w.join().unwrap(), taken)
            });
            assert!(claimed != taken, "tag {tag}: claimed {claimed}, taken back {taken}");
        }
    }
}
