//! The seccomp filter of the compute preset, built with `seccompiler`: an
//! allow-list (what the worker's runtime and plain computing need), where
//! everything else traps (`SIGSYS`, the worker dies naming the call) or
//! fails with `EPERM`.
//!
//! Two filters are installed, and the kernel takes the stricter answer of
//! the two: one that answers `clone3` with `ENOSYS`, so
//! that glibc starts threads with `clone` (whose flags the allow-list can
//! read: a thread passes, a process does not) instead of dying; then the
//! allow-list.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::syscalls;
use super::Syscalls;

/// Calls allowed whatever their arguments. Names this architecture lacks
/// (`open`, `poll` on aarch64) are skipped.
const ALWAYS: &[&str] = &[
    // Memory.
    "brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "mincore", "membarrier",
    // Threads, waiting, time.
    "futex", "futex_waitv", "set_robust_list", "get_robust_list", "rseq", "set_tid_address",
    "sched_yield", "sched_getaffinity", "nanosleep", "clock_nanosleep", "clock_gettime",
    "clock_getres", "gettimeofday", "time", "times", "getrusage", "getrandom",
    // Leaving, and signals to itself (`tgkill` is below).
    "exit", "exit_group", "rt_sigreturn", "rt_sigaction", "rt_sigprocmask", "rt_sigpending",
    "rt_sigtimedwait", "sigaltstack", "restart_syscall",
    // Who it is.
    "getpid", "gettid", "getppid", "getuid", "geteuid", "getgid", "getegid", "getresuid",
    "getresgid", "getgroups", "getpgrp", "getpgid", "getsid", "uname", "sysinfo", "umask",
    "getcwd", "getrlimit",
    // I/O on descriptors it has: its channel, what init opened.
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2",
    "pwritev2", "lseek", "close", "close_range", "dup", "dup2", "dup3", "fcntl", "flock",
    "fstat", "fstatfs", "fsync", "fdatasync", "ftruncate", "fallocate", "fadvise64",
    "poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1", "epoll_ctl",
    "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2", "pipe", "pipe2",
    "timerfd_create", "timerfd_settime", "timerfd_gettime", "memfd_create", "splice", "tee",
    "copy_file_range", "sendfile",
    // Sockets it has (none new): receiving, and sending without an address.
    "recvfrom", "recvmsg", "shutdown", "getsockname", "getpeername", "getsockopt",
    // Paths: what Landlock allows (with no Landlock, anything).
    "open", "openat", "openat2", "stat", "lstat", "newfstatat", "statx", "statfs", "access",
    "faccessat", "faccessat2", "readlink", "readlinkat", "getdents", "getdents64", "chdir",
    "fchdir", "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat", "rename", "renameat",
    "renameat2", "link", "linkat", "symlink", "symlinkat", "truncate", "utimensat", "fchmod",
    "fchmodat", "chmod",
];

/// `ioctl` requests allowed: what `isatty`, non-blocking mode and
/// close-on-exec ask. (Their type is glibc's `c_ulong`, musl's `c_int`.)
#[allow(clippy::unnecessary_cast)]
const IOCTLS: &[u64] = &[
    libc::TCGETS as u64,
    libc::TIOCGWINSZ as u64,
    libc::FIONBIO as u64,
    libc::FIOCLEX as u64,
    libc::FIONCLEX as u64,
    libc::FIONREAD as u64,
];

/// `prctl` options allowed: naming threads and mappings (glibc does).
const PRCTLS: &[u64] = &[
    libc::PR_SET_NAME as u64,
    libc::PR_GET_NAME as u64,
    0x5356_4d41, // PR_SET_VMA
];

/// Every name in `extra` is a system call here.
pub(crate) fn check_names(extra: &[String]) -> Result<(), String> {
    match extra.iter().find(|n| syscalls::number(n).is_none()) {
        Some(name) => Err(format!(
            "the sandbox allows a system call `{name}` that this architecture does not have"
        )),
        None => Ok(()),
    }
}

/// The two programs to install, in order, for the worker whose pid is `pid`.
pub(crate) fn programs(filter: &Syscalls, pid: i32) -> Result<[BpfProgram; 2], String> {
    check_names(&filter.extra)?;
    let arch = arch()?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in ALWAYS.iter().filter_map(|n| syscalls::number(n)) {
        rules.insert(nr, Vec::new());
    }
    let on = |index, value| rule(&[(index, SeccompCmpOp::Eq, value)]);
    let any_of = |index, values: &[u64]| values.iter().map(|&v| on(index, v)).collect::<Result<Vec<_>, _>>();
    rules.insert(libc::SYS_ioctl, any_of(1, IOCTLS)?);
    rules.insert(libc::SYS_prctl, any_of(0, PRCTLS)?);
    // A new thread, not a new process.
    let thread = libc::CLONE_THREAD as u64;
    rules.insert(libc::SYS_clone, vec![rule(&[(0, SeccompCmpOp::MaskedEq(thread), thread)])?]);
    rules.insert(libc::SYS_clone3, Vec::new());
    // Signals to itself only (`raise`, `pthread_kill`).
    rules.insert(libc::SYS_tgkill, vec![on(0, pid as u64)?]);
    // Reading its limits, never changing them.
    rules.insert(libc::SYS_prlimit64, vec![rule(&[(0, SeccompCmpOp::Eq, 0), (2, SeccompCmpOp::Eq, 0)])?]);
    // Sending on a socket it has, to no new address.
    rules.insert(libc::SYS_sendto, vec![on(4, 0)?]);
    for nr in filter.extra.iter().filter_map(|n| syscalls::number(n)) {
        rules.insert(nr, Vec::new());
    }
    let denied = if filter.fail {
        SeccompAction::Errno(libc::EPERM as u32)
    } else {
        SeccompAction::Trap
    };
    let allow = SeccompFilter::new(rules, denied, SeccompAction::Allow, arch);
    let clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    );
    let compile = |f: Result<SeccompFilter, seccompiler::BackendError>| {
        f.and_then(BpfProgram::try_from)
            .map_err(|e| format!("the seccomp filter cannot be built: {e}"))
    };
    // The allow-list last: `seccompiler` calls `prctl` and `seccomp` to
    // install a filter, which it forbids.
    Ok([compile(clone3)?, compile(allow)?])
}

/// A rule whose conditions on the call's arguments all hold.
fn rule(conditions: &[(u8, SeccompCmpOp, u64)]) -> Result<SeccompRule, String> {
    let conditions = conditions
        .iter()
        .map(|(index, op, value)| {
            SeccompCondition::new(*index, SeccompCmpArgLen::Qword, op.clone(), *value)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    SeccompRule::new(conditions).map_err(|e| e.to_string())
}

fn arch() -> Result<TargetArch, String> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|_| format!("no seccomp filter for the {} architecture", std::env::consts::ARCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compute_filter_compiles_and_names_are_checked() {
        let [clone3, allow] = programs(&Syscalls::default(), 1).unwrap();
        assert!(!allow.is_empty() && !clone3.is_empty());
        let extra = Syscalls {
            extra: vec!["socket".into(), "not_a_call".into()],
            fail: false,
        };
        let err = programs(&extra, 1).unwrap_err();
        assert!(err.contains("`not_a_call`"), "{err}");
    }
}
