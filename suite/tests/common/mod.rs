//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// Whether process `pid` is gone (or a zombie no one of ours must reap).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state is the field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// Whether process `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    !process_gone(pid)
}

/// Waits up to `limit` for every pid to be gone; returns the ones still there.
pub fn wait_gone(pids: &[u32], limit: Duration) -> Vec<u32> {
    let until = Instant::now() + limit;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|&p| !process_gone(p)).collect();
        if left.is_empty() || Instant::now() >= until {
            return left;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The parent pid of `pid`, from `/proc`.
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The child processes of `pid`, zombies included (a child not reaped is
/// still a process left behind), from every process's parent in `/proc`
/// (children forked by any of `pid`'s threads).
pub fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| parent_of(p) == Some(pid))
        .collect()
}

/// Runs the ignored test `role` of this same test binary as a child process
/// (in its own process group when `own_group`), with `env_var` set, and
/// reads the pids it prints on a line `PIDS <worker> <worker> … <zygote>`.
pub fn spawn_role(role: &str, env_var: &str, own_group: bool) -> (std::process::Child, Vec<u32>) {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--ignored",
        "--exact",
        role,
        "--nocapture",
        "--test-threads=1",
    ])
    .env(env_var, "1")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if own_group {
        cmd.process_group(0);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let pids = loop {
        let line = lines.next().expect("the child printed its pids").unwrap();
        // The harness may print "test <role> ... " before it on the same line.
        if let Some((_, rest)) = line.split_once("PIDS ") {
            break rest.split(' ').map(|p| p.parse().unwrap()).collect();
        }
    };
    (child, pids)
}

/// The line a child driver prints for [`spawn_role`]: its workers' pids, then the fork server's.
pub fn pids_line(ids: &[(u32, u32)]) -> String {
    let all: Vec<String> = ids
        .iter()
        .map(|i| i.0.to_string())
        .chain([ids[0].1.to_string()])
        .collect();
    format!("PIDS {}", all.join(" "))
}

/// SIGINT back to its default action, as under an interactive shell: a
/// test run from a background job (`cmd &` in a script) starts with it
/// ignored, and so would a driver role spawned from it.
pub fn default_sigint() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: SIG_DFL installs no handler code.
    unsafe { signal(Signal::SIGINT, SigHandler::SigDfl) }.expect("SIGINT to its default");
}
