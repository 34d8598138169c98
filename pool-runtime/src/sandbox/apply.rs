//! Entering the sandbox, in a worker whose init is over: what is checked,
//! in which order each part is applied, and what best effort skips.

use std::sync::atomic::AtomicU64;

use super::filesystem::{self, Outcome};
use super::signal::{self, Watch, Watching};
use super::{filter, limits, Sandbox};

/// Locks this worker down as `sandbox` says; breaches are written to
/// `cell` while the guard lives. `Err`: why the sandbox cannot be applied
/// (the worker reports it as an init failure).
pub(crate) fn enter(sandbox: &Sandbox, cell: &AtomicU64) -> Result<Watching, String> {
    let fail = |why: String| format!("cannot apply the sandbox: {why}");
    let trap = sandbox.syscalls.as_ref().is_some_and(|s| !s.fail);
    let l = &sandbox.limits;
    let watch = Watch {
        syscalls: trap,
        memory: l.memory,
        cpu: l.cpu_seconds,
        file_size: l.file_size,
    };
    let watching = signal::watch(&watch, cell).map_err(fail)?;
    // Built before the limits, which may leave little memory.
    let programs = match &sandbox.syscalls {
        Some(s) => Some(filter::programs(s, std::process::id() as i32).map_err(fail)?),
        None => None,
    };
    nix::sys::prctl::set_no_new_privs().map_err(|e| fail(format!("no_new_privs: {}", e.desc())))?;
    if let Some(files) = &sandbox.files {
        files_only(sandbox, files).map_err(fail)?;
    }
    limits::apply(&sandbox.limits).map_err(fail)?;
    // Last: it forbids what the steps before it call.
    for program in programs.iter().flatten() {
        if let Err(e) = seccompiler::apply_filter_all_threads(program) {
            let why = format!("the seccomp filter was refused: {e}");
            if !sandbox.best_effort {
                return Err(fail(why));
            }
            tracing::warn!(why, "sandbox without its seccomp filter (best effort)");
            break;
        }
    }
    Ok(watching)
}

/// The Landlock rules, or (best effort) a warning saying why not.
fn files_only(sandbox: &Sandbox, files: &super::Files) -> Result<(), String> {
    let skip = |why: &str| {
        if sandbox.best_effort {
            tracing::warn!(why, "sandbox without filesystem rules (best effort)");
            Ok(())
        } else {
            Err(format!("{why}; ask for `Sandbox::best_effort()` to run without them"))
        }
    };
    // Landlock binds the thread that applies it and the threads it starts
    // later, not the ones running already (before Landlock ABI 8).
    let threads = thread_count();
    if threads > 1 {
        return skip(&format!(
            "init left {} other threads running, which the filesystem rules would not bind",
            threads - 1
        ));
    }
    match filesystem::restrict(files)? {
        Outcome::Enforced => Ok(()),
        Outcome::Partly if sandbox.best_effort => {
            tracing::warn!("filesystem rules partly enforced: this kernel's Landlock is older than ABI 3");
            Ok(())
        }
        Outcome::Partly => Err(
            "this kernel's Landlock enforces only part of the filesystem rules (it is older than ABI 3, Linux 6.2); ask for `Sandbox::best_effort()` to accept that"
                .into(),
        ),
        Outcome::Not => skip("this kernel has no Landlock, or it is disabled (see `/sys/kernel/security/lsm`), so the filesystem rules cannot be enforced"),
    }
}

/// Threads of this process, from `/proc/self/status`.
fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Threads:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(1)
}
