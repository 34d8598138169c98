//! Workers started fresh: the fork server's child execs the worker program
//! (by default this very program, `/proc/self/exe`) in worker mode, its
//! channel and the step cells' memfd left open across the `exec`
//! (`fresh.rs` is the other side).

use std::ffi::{CString, OsStr};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::fresh::{self, Spec};
use crate::sys;
use crate::worker;

/// The program a worker started fresh runs, and what it is told.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    path: CString,
    /// `argv[0]`: the driver's own.
    name: CString,
}

impl Program {
    /// `path`, or this very program.
    pub(crate) fn new(path: Option<&Path>) -> Result<Program, String> {
        let path: PathBuf = path.map_or_else(|| PathBuf::from("/proc/self/exe"), Path::to_path_buf);
        let c = |s: &OsStr| CString::new(s.as_bytes()).map_err(|_| "a NUL in a path".to_string());
        let name = std::env::args_os().next().unwrap_or_else(|| path.clone().into_os_string());
        Ok(Program {
            path: c(path.as_os_str())?,
            name: c(&name)?,
        })
    }

    /// The program's path, in words.
    pub(crate) fn display(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }
}

/// In the fork server's fresh child: becomes the worker `start` describes,
/// running `program` in worker mode. Returns only if the `exec` failed, with
/// the exit code; the driver is told why first.
pub(crate) fn launch(program: &Program, start: worker::Start<'_>) -> i32 {
    // The worker dies with the fork server, as a forked one does: the
    // setting survives `exec`.
    sys::die_with_parent(start.zygote);
    let spec = Spec {
        slot: start.info.index as u32,
        generation: start.info.generation,
        zygote: start.zygote.as_raw(),
        chan: start.chan.as_raw_fd(),
        cells: start.cells.fd().as_raw_fd(),
        cell_count: start.cells.len() as u32,
        max_frame: start.max_frame as u64,
        recycle: start.recycle.clone(),
        sandbox: start.sandbox.cloned(),
    };
    let kept = sys::keep_across_exec(std::os::fd::AsFd::as_fd(&start.chan))
        .and_then(|()| sys::keep_across_exec(start.cells.fd()));
    let env: Vec<CString> = fresh::environment(&spec)
        .into_iter()
        .filter_map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    let error = match kept {
        Ok(()) => match nix::unistd::execve(&program.path, &[&program.name], &env) {
            Err(e) => e,
            Ok(never) => match never {},
        },
        Err(e) => e,
    };
    let why = format!(
        "cannot start the worker program {}: {}",
        program.display(),
        error.desc()
    );
    worker::tell_init_failed(start.chan, &why);
    127
}
