//! The fork server ("zygote"): the only process the driver ever forks.
//!
//! `build` forks it once, holding the std io locks; from then on it is a
//! single-threaded copy of the driver that holds the init arguments
//! copy-on-write. It forks every worker, first ones and replacements alike, so
//! no fork ever happens in the multithreaded driver after `build`. It reaps its
//! workers and reports how each ended. When its control socket closes (the
//! pool ended, or the driver died) it kills what is left and leaves.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::channel::control::{Ctl, Exit};
use crate::sys::{self, StepCells};
use crate::task::{Init, WorkerInfo};
use crate::worker;

/// What the zygote needs to start workers.
pub(crate) struct Zygote<'a, A, I> {
    pub(crate) init: &'a I,
    pub(crate) args: &'a A,
    pub(crate) cells: &'a StepCells,
    pub(crate) ctl: &'a OwnedFd,
    pub(crate) max_frame: usize,
    pub(crate) recycle: &'a crate::worker::Recycle,
}

impl<A, I> Zygote<'_, A, I> {
    /// The zygote's whole life. Returns the exit code for `_exit`.
    pub(crate) fn main<S: 'static, M>(self) -> i32
    where
        I: Init<A, S, M>,
    {
        sys::ignore_sigint();
        let me = nix::unistd::getpid();
        let mut chld = SigSet::empty();
        chld.add(Signal::SIGCHLD);
        let Ok(old_mask) = chld.thread_swap_mask(SigmaskHow::SIG_BLOCK) else {
            return 2;
        };
        let Ok(sfd) = SignalFd::with_flags(&chld, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        else {
            return 2;
        };
        let mut children: HashMap<Pid, u32> = HashMap::new();
        let mut ctl_open = true;
        let mut deadline: Option<Instant> = None;
        let mut buf = [0u8; 64];
        let send = |ctl: &OwnedFd, msg: Ctl| {
            let _ = sys::send_packet(ctl.as_fd(), &msg.encode(), None);
        };

        loop {
            if !ctl_open || deadline.is_some() {
                if children.is_empty() {
                    return 0;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    for pid in children.keys() {
                        let _ = kill(*pid, Signal::SIGKILL);
                    }
                }
            }
            let timeout = match deadline {
                Some(d) => PollTimeout::try_from(
                    d.saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(1)),
                )
                .unwrap_or(PollTimeout::MAX),
                None => PollTimeout::NONE,
            };
            let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
            if ctl_open {
                fds.push(PollFd::new(self.ctl.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return 2,
            }
            let ctl_ready = ctl_open && fds[1].any().unwrap_or(false);
            drop(fds);

            // Reap every child that ended, and say how.
            while let Ok(Some(_)) = sfd.read_signal() {}
            loop {
                match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(pid, code)) => {
                        children.remove(&pid);
                        if ctl_open {
                            let how = Exit::Code(code);
                            send(self.ctl, Ctl::Exited { pid: pid.as_raw(), how });
                        }
                    }
                    Ok(WaitStatus::Signaled(pid, sig, _)) => {
                        children.remove(&pid);
                        if ctl_open {
                            let how = Exit::Signal(sig as i32);
                            send(self.ctl, Ctl::Exited { pid: pid.as_raw(), how });
                        }
                    }
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => {}
                }
            }

            if !ctl_ready {
                continue;
            }
            match sys::recv_packet(self.ctl.as_fd(), &mut buf) {
                Ok((0, _)) | Err(_) => {
                    // The driver is gone (or dropped the pool): nothing may outlive it.
                    ctl_open = false;
                    for pid in children.keys() {
                        let _ = kill(*pid, Signal::SIGKILL);
                    }
                }
                Ok((n, fd)) => match Ctl::decode(&buf[..n]) {
                    Some(Ctl::Spawn { slot, generation }) if deadline.is_none() => {
                        let Some(chan) = fd else { continue };
                        let info = WorkerInfo {
                            index: slot as usize,
                            generation,
                        };
                        let (ctl_raw, sfd_raw) = (self.ctl.as_raw_fd(), sfd.as_raw_fd());
                        let forked = sys::fork_with(|| {
                            sys::close_raw(ctl_raw);
                            sys::close_raw(sfd_raw);
                            let _ = old_mask.thread_set_mask();
                            worker::main(
                                self.init,
                                self.args,
                                worker::Start {
                                    info,
                                    chan,
                                    cell: self.cells.get(slot as usize),
                                    zygote: me,
                                    max_frame: self.max_frame,
                                    recycle: self.recycle,
                                },
                            )
                        });
                        match forked {
                            Ok(pid) => {
                                children.insert(pid, slot);
                                send(
                                    self.ctl,
                                    Ctl::Spawned {
                                        slot,
                                        pid: pid.as_raw(),
                                    },
                                );
                            }
                            Err(e) => send(
                                self.ctl,
                                Ctl::SpawnFailed {
                                    slot,
                                    errno: e as i32,
                                },
                            ),
                        }
                        // `chan` was moved into the closure and dropped here: the
                        // zygote keeps no copy of any worker's channel.
                    }
                    Some(Ctl::Kill { pid, signal }) => {
                        let pid = Pid::from_raw(pid);
                        if children.contains_key(&pid) {
                            if let Ok(sig) = Signal::try_from(signal) {
                                let _ = kill(pid, sig);
                            }
                        }
                    }
                    Some(Ctl::Shutdown { grace_ms }) => {
                        deadline = Some(Instant::now() + Duration::from_millis(grace_ms.into()));
                    }
                    _ => {}
                },
            }
        }
    }
}
