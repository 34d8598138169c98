//! The resource limits (`setrlimit(2)`), each with soft and hard limits
//! alike so that a task cannot raise them again (the seccomp filter also
//! forbids `setrlimit`). Memory and CPU count from now, the end of init.

use nix::sys::resource::{getrusage, setrlimit, Resource, UsageWho};

use super::Limits;

/// Sets `limits`, and no core dumps.
pub(crate) fn apply(limits: &Limits) -> Result<(), String> {
    // A worker the sandbox kills dies of a signal whose default is a core
    // dump: one per breach would fill the disk.
    set(Resource::RLIMIT_CORE, 0, 0, "core dumps")?;
    if let Some(extra) = limits.memory {
        let now = address_space().ok_or("cannot read the worker's address space size")?;
        let max = now.saturating_add(extra);
        set(Resource::RLIMIT_AS, max, max, "address space")?;
    }
    if let Some(seconds) = limits.cpu_seconds {
        let soft = cpu_used()?.saturating_add(seconds);
        // `SIGXCPU` at the soft limit; `SIGKILL` a second later, for a task
        // that set it aside.
        set(Resource::RLIMIT_CPU, soft, soft + 1, "CPU seconds")?;
    }
    let rest = [
        (Resource::RLIMIT_NOFILE, limits.open_files, "open files"),
        (Resource::RLIMIT_FSIZE, limits.file_size, "file size"),
        (Resource::RLIMIT_NPROC, limits.processes, "processes"),
    ];
    for (resource, limit, what) in rest {
        if let Some(n) = limit {
            set(resource, n, n, what)?;
        }
    }
    Ok(())
}

fn set(resource: Resource, soft: u64, hard: u64, what: &str) -> Result<(), String> {
    setrlimit(resource, soft, hard)
        .map_err(|e| format!("cannot set the resource limit on {what}: {}", e.desc()))
}

/// Bytes this process maps now (`VmSize` in `/proc/self/status`).
fn address_space() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmSize:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Whole CPU seconds this process has used (every thread), rounded up.
fn cpu_used() -> Result<u64, String> {
    let usage = getrusage(UsageWho::RUSAGE_SELF)
        .map_err(|e| format!("cannot read the worker's CPU time: {}", e.desc()))?;
    let (user, system) = (usage.user_time(), usage.system_time());
    let micros = (user.tv_sec() + system.tv_sec()) as u64 * 1_000_000
        + (user.tv_usec() + system.tv_usec()) as u64;
    Ok(micros.div_ceil(1_000_000))
}
