//! Sleeping on a shared 32-bit word until another process changes it: the
//! two `futex(2)` operations the event and the barrier need. Not
//! `FUTEX_PRIVATE_FLAG`: the word is in memory several processes map.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Sleeps while `word` holds `expected`, for at most `timeout` (forever
/// with `None`). Returns on a wake, a change, a signal or the timeout
/// alike: the caller looks at the word again and at its own deadline.
pub(super) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let timeout = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().try_into().unwrap_or(libc::time_t::MAX),
        tv_nsec: d.subsec_nanos().into(),
    });
    let timeout_ptr = timeout.as_ref().map_or(std::ptr::null(), |t| t as *const _);
    // SAFETY: `word` is a live, aligned 32-bit atomic for the whole call,
    // and `timeout_ptr` null or a valid relative timespec; FUTEX_WAIT only
    // reads them. Its result is not needed (see above).
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            timeout_ptr,
        )
    };
}

/// Wakes every process and thread sleeping on `word`.
pub(super) fn wake_all(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned 32-bit atomic; FUTEX_WAKE does not
    // touch memory.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX) };
}
