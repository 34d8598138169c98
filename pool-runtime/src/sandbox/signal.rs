//! The worker's handlers for the signals a breach raises (`SIGSYS` from the
//! seccomp filter, `SIGXCPU`, `SIGXFSZ`, and `SIGABRT` after a failed
//! allocation): each writes the [`Breach`] in the worker's step cell, then
//! lets the signal kill the worker as it would have. The sandbox's only
//! `unsafe` is here.

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use super::Breach;

/// The breach word of this worker's step cell; null when none is watched.
static CELL: AtomicPtr<AtomicU64> = AtomicPtr::new(ptr::null_mut());
/// The limits, for the words the driver prints.
static MEMORY: AtomicU64 = AtomicU64::new(0);
static CPU: AtomicU64 = AtomicU64::new(0);
static FILE_SIZE: AtomicU64 = AtomicU64::new(0);

/// `si_code` of a `SIGSYS` sent by a seccomp filter's `SECCOMP_RET_TRAP`.
const SYS_SECCOMP: i32 = 1;

/// What a breach handler reports, and with which limits.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    pub(crate) syscalls: bool,
    pub(crate) memory: Option<u64>,
    pub(crate) cpu: Option<u64>,
    pub(crate) file_size: Option<u64>,
}

/// While it lives, breaches are written to the step cell it was made with.
#[derive(Debug)]
pub(crate) struct Watching(());

impl Drop for Watching {
    fn drop(&mut self) {
        // The cell may be unmapped after this: handlers write nowhere.
        CELL.store(ptr::null_mut(), Ordering::Release);
    }
}

/// Installs the handlers `watch` asks for, writing into `cell`, which must
/// stay mapped as long as the returned guard lives.
pub(crate) fn watch(watch: &Watch, cell: &AtomicU64) -> Result<Watching, String> {
    MEMORY.store(watch.memory.unwrap_or(0), Ordering::Relaxed);
    CPU.store(watch.cpu.unwrap_or(0), Ordering::Relaxed);
    FILE_SIZE.store(watch.file_size.unwrap_or(0), Ordering::Relaxed);
    CELL.store(ptr::from_ref(cell).cast_mut(), Ordering::Release);
    let guard = Watching(());
    let signals = [
        (Signal::SIGSYS, watch.syscalls),
        (Signal::SIGXCPU, watch.cpu.is_some()),
        (Signal::SIGXFSZ, watch.file_size.is_some()),
        (Signal::SIGABRT, watch.memory.is_some()),
    ];
    // Reset to the default after one: the handler raises it again to die of it.
    let action = SigAction::new(
        SigHandler::SigAction(on_breach),
        SaFlags::SA_SIGINFO | SaFlags::SA_RESETHAND,
        SigSet::empty(),
    );
    for (signal, wanted) in signals {
        if wanted {
            // SAFETY: `on_breach` only does what a signal handler may: atomic
            // loads and stores, reading `errno`, `raise`.
            unsafe { sigaction(signal, &action) }
                .map_err(|e| format!("cannot watch for {signal}: {}", e.desc()))?;
        }
    }
    Ok(guard)
}

extern "C" fn on_breach(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let breach = match sig {
        libc::SIGSYS => trapped_syscall(info).map(Breach::Syscall),
        libc::SIGXCPU => Some(Breach::CpuSeconds(CPU.load(Ordering::Relaxed))),
        libc::SIGXFSZ => Some(Breach::FileSize(FILE_SIZE.load(Ordering::Relaxed))),
        // Rust aborts when an allocation fails, and malloc's `ENOMEM` is
        // still in `errno` then, unless printing a backtrace (`RUST_BACKTRACE`)
        // set it again: then the abort is only likely the limit's.
        libc::SIGABRT => Some(Breach::AddressSpace {
            limit: MEMORY.load(Ordering::Relaxed),
            sure: std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOMEM),
        }),
        _ => None,
    };
    let cell = CELL.load(Ordering::Acquire);
    if let Some(breach) = breach.filter(|_| !cell.is_null()) {
        // SAFETY: `cell` is the step cell's word, mapped while `Watching`
        // lives, which it does: it is cleared before the cell goes.
        unsafe { &*cell }.store(breach.encode(), Ordering::Release);
    }
    // The action is the default again (`SA_RESETHAND`); the signal is
    // blocked while this runs, and kills the worker once it returns.
    // SAFETY: `raise(3)` is async-signal-safe.
    unsafe { libc::raise(sig) };
}

/// The system call a seccomp trap stopped, from the `SIGSYS`'s siginfo.
fn trapped_syscall(info: *const libc::siginfo_t) -> Option<i64> {
    /// The head of a `siginfo_t` for `SIGSYS` (`_sigsys` in the kernel's
    /// union, which starts 8-aligned after the three ints).
    #[repr(C)]
    struct Sigsys {
        signo: i32,
        errno: i32,
        code: i32,
        #[cfg(target_pointer_width = "64")]
        _pad: i32,
        call_addr: *mut libc::c_void,
        syscall: i32,
        arch: u32,
    }
    const _: () = assert!(size_of::<Sigsys>() <= size_of::<libc::siginfo_t>());
    if info.is_null() {
        return None;
    }
    // SAFETY: the kernel passes an `SA_SIGINFO` handler a valid `siginfo_t`,
    // larger than `Sigsys`, whose layout it has for a `SIGSYS`.
    let head = unsafe { &*info.cast::<Sigsys>() };
    (head.code == SYS_SECCOMP).then_some(head.syscall as i64)
}
