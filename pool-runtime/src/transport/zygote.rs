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
use crate::task::WorkerInfo;
use crate::worker;

/// How a forked child becomes a worker: runs the worker's main in place
/// (the fork transport), or execs the worker program (workers started
/// fresh). Returns the exit code for `_exit`.
pub(crate) type Launch<'a> = &'a dyn Fn(worker::Start<'_>) -> i32;

/// What the zygote needs to start workers.
pub(crate) struct Zygote<'a> {
    pub(crate) launch: Launch<'a>,
    pub(crate) cells: &'a StepCells,
    pub(crate) ctl: &'a OwnedFd,
    pub(crate) max_frame: usize,
    pub(crate) recycle: &'a crate::worker::Recycle,
    /// What each worker locks itself into after its init.
    pub(crate) sandbox: Option<&'a crate::sandbox::Sandbox>,
}

/// What the zygote keeps track of from one poll to the next.
struct Life {
    /// Live workers, by pid: their slot.
    children: HashMap<Pid, u32>,
    /// The driver's end is still there.
    ctl_open: bool,
    /// A shutdown asked to be done by then (SIGKILL for what still runs).
    deadline: Option<Instant>,
}

impl Zygote<'_> {
    /// The zygote's whole life. Returns the exit code for `_exit`.
    pub(crate) fn main(self) -> i32 {
        sys::ignore_sigint();
        let mut chld = SigSet::empty();
        chld.add(Signal::SIGCHLD);
        let Ok(old_mask) = chld.thread_swap_mask(SigmaskHow::SIG_BLOCK) else {
            return 2;
        };
        let Ok(sfd) = SignalFd::with_flags(&chld, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        else {
            return 2;
        };
        let mut life = Life {
            children: HashMap::new(),
            ctl_open: true,
            deadline: None,
        };
        loop {
            if !life.ctl_open || life.deadline.is_some() {
                if life.children.is_empty() {
                    return 0;
                }
                if life.deadline.is_some_and(|d| Instant::now() >= d) {
                    kill_all(&life);
                }
            }
            let Ok(ctl_ready) = self.wait(&sfd, &life) else {
                return 2;
            };
            self.reap(&sfd, &mut life);
            if ctl_ready {
                self.receive(&mut life, &sfd, &old_mask);
            }
        }
    }

    /// Waits for a child to end or a control packet (until the shutdown's
    /// deadline, if any); `Ok(true)` if a packet waits.
    fn wait(&self, sfd: &SignalFd, life: &Life) -> nix::Result<bool> {
        let timeout = match life.deadline {
            Some(d) => PollTimeout::try_from(
                d.saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            )
            .unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
        };
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if life.ctl_open {
            fds.push(PollFd::new(self.ctl.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
        Ok(life.ctl_open && fds[1].any().unwrap_or(false))
    }

    /// Reaps every child that ended, and tells the driver how.
    fn reap(&self, sfd: &SignalFd, life: &mut Life) {
        while let Ok(Some(_)) = sfd.read_signal() {}
        loop {
            let (pid, how) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Exit::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, Exit::Signal(sig as i32)),
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            };
            life.children.remove(&pid);
            if life.ctl_open {
                self.send(Ctl::Exited {
                    pid: pid.as_raw(),
                    how,
                });
            }
        }
    }

    /// Takes one control packet and does what it says.
    fn receive(&self, life: &mut Life, sfd: &SignalFd, old_mask: &SigSet) {
        let mut buf = [0u8; 64];
        match sys::recv_packet(self.ctl.as_fd(), &mut buf) {
            Ok((0, _)) | Err(_) => {
                // The driver is gone (or dropped the pool): nothing may outlive it.
                life.ctl_open = false;
                kill_all(life);
            }
            Ok((n, fds)) => match Ctl::decode(&buf[..n]) {
                Some(Ctl::Spawn { slot, generation }) if life.deadline.is_none() => {
                    let mut fds = fds.into_iter();
                    if let Some(chan) = fds.next() {
                        let info = WorkerInfo {
                            index: slot as usize,
                            generation,
                        };
                        // The rings' memfd and the driver's doorbell, if sent.
                        let rings = fds.next().zip(fds.next());
                        self.spawn(life, info, (chan, rings), (sfd, old_mask));
                    }
                }
                Some(Ctl::Kill { pid, signal }) => {
                    let pid = Pid::from_raw(pid);
                    if life.children.contains_key(&pid) {
                        if let Ok(sig) = Signal::try_from(signal) {
                            let _ = kill(pid, sig);
                        }
                    }
                }
                Some(Ctl::Shutdown { grace_ms }) => {
                    life.deadline = Some(Instant::now() + Duration::from_millis(grace_ms.into()));
                }
                _ => {}
            },
        }
    }

    /// Forks the worker `info` says, on channel `chan` (and its rings, if
    /// any), and tells the driver its pid (or why there is none).
    fn spawn(
        &self,
        life: &mut Life,
        info: WorkerInfo,
        (chan, rings): (OwnedFd, Option<(OwnedFd, OwnedFd)>),
        (sfd, old_mask): (&SignalFd, &SigSet),
    ) {
        let me = nix::unistd::getpid();
        let (ctl_raw, sfd_raw) = (self.ctl.as_raw_fd(), sfd.as_raw_fd());
        let slot = info.index as u32;
        let forked = sys::fork_with(|| {
            sys::close_raw(ctl_raw);
            sys::close_raw(sfd_raw);
            let _ = old_mask.thread_set_mask();
            (self.launch)(worker::Start {
                info,
                chan,
                rings,
                cells: self.cells,
                zygote: me,
                max_frame: self.max_frame,
                recycle: self.recycle,
                sandbox: self.sandbox,
            })
        });
        // `chan` and the rings were moved into the closure and dropped with
        // it: the zygote keeps no copy of any worker's channel.
        match forked {
            Ok(pid) => {
                life.children.insert(pid, slot);
                self.send(Ctl::Spawned {
                    slot,
                    pid: pid.as_raw(),
                });
            }
            Err(e) => self.send(Ctl::SpawnFailed {
                slot,
                errno: e as i32,
            }),
        }
    }

    fn send(&self, msg: Ctl) {
        let _ = sys::send_packet(self.ctl.as_fd(), &msg.encode(), &[]);
    }
}

/// SIGKILL for every live worker.
fn kill_all(life: &Life) {
    for pid in life.children.keys() {
        let _ = kill(*pid, Signal::SIGKILL);
    }
}
