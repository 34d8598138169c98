//! A [`Sandbox`] in words, for a worker started fresh (`spawn()`), which
//! reads it from [`SANDBOX_ENV`] next to its other settings: `1;` then
//! `key=value` fields, paths in hex (any bytes), `-` for none.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use super::{Files, Sandbox, Syscalls};

/// The variable that carries a fresh worker's sandbox.
pub(crate) const SANDBOX_ENV: &str = "POOL_RUNTIME_SANDBOX";

impl Sandbox {
    /// In words, for [`SANDBOX_ENV`].
    pub(crate) fn to_env(&self) -> String {
        let n = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
        let paths = |ps: &[PathBuf]| {
            ps.iter()
                .map(|p| hex(p.as_os_str().as_bytes()))
                .collect::<Vec<_>>()
                .join(",")
        };
        let l = &self.limits;
        let mut out = format!(
            "1;mem={};cpu={};files={};fsize={};procs={};best={}",
            n(l.memory),
            n(l.cpu_seconds),
            n(l.open_files),
            n(l.file_size),
            n(l.processes),
            u8::from(self.best_effort)
        );
        if let Some(s) = &self.syscalls {
            out += &format!(";sys={};fail={}", s.extra.join(","), u8::from(s.fail));
        }
        if let Some(f) = &self.files {
            out += &format!(";read={};write={}", paths(&f.read), paths(&f.write));
        }
        out
    }

    /// The sandbox [`to_env`](Sandbox::to_env) wrote; `None` if malformed.
    pub(crate) fn parse(text: &str) -> Option<Sandbox> {
        let mut fields = text.split(';');
        if fields.next()? != "1" {
            return None;
        }
        let mut sandbox = Sandbox::default();
        let (mut sys, mut files) = (None::<Syscalls>, None::<Files>);
        for field in fields {
            let (key, value) = field.split_once('=')?;
            let l = &mut sandbox.limits;
            match key {
                "mem" => l.memory = number(value)?,
                "cpu" => l.cpu_seconds = number(value)?,
                "files" => l.open_files = number(value)?,
                "fsize" => l.file_size = number(value)?,
                "procs" => l.processes = number(value)?,
                "best" => sandbox.best_effort = flag(value)?,
                "sys" => sys.get_or_insert_with(Syscalls::default).extra = list(value),
                "fail" => sys.get_or_insert_with(Syscalls::default).fail = flag(value)?,
                "read" => files.get_or_insert_with(Files::default).read = path_list(value)?,
                "write" => files.get_or_insert_with(Files::default).write = path_list(value)?,
                _ => return None,
            }
        }
        sandbox.syscalls = sys;
        sandbox.files = files;
        Some(sandbox)
    }
}

fn number(v: &str) -> Option<Option<u64>> {
    match v {
        "-" => Some(None),
        n => n.parse().ok().map(Some),
    }
}

fn flag(v: &str) -> Option<bool> {
    match v {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

fn list(v: &str) -> Vec<String> {
    v.split(',').filter(|s| !s.is_empty()).map(String::from).collect()
}

fn path_list(v: &str) -> Option<Vec<PathBuf>> {
    list(v)
        .iter()
        .map(|h| unhex(h).map(|b| PathBuf::from(OsString::from_vec(b))))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sandbox_round_trips_through_the_environment() {
        let full = Sandbox::compute_only()
            .max_memory(1 << 30)
            .cpu_seconds(3)
            .max_open_files(20)
            .max_file_size(99)
            .max_processes(7)
            .allow_syscalls(["socket", "connect"])
            .fail_forbidden_calls()
            .allow_write("/tmp/a;b,c=d")
            .allow_read("/usr")
            .best_effort();
        for sandbox in [full, Sandbox::new(), Sandbox::compute_only(), Sandbox::new().allow_write("/x")] {
            let text = sandbox.to_env();
            assert_eq!(Sandbox::parse(&text), Some(sandbox), "{text}");
        }
        for bad in ["", "2;mem=1", "1;mem=x", "1;nope=1", "1;write=abc", "1;best=2"] {
            assert_eq!(Sandbox::parse(bad), None, "{bad}");
        }
    }
}
