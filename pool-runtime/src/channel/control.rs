//! The control packets between the driver and the fork server (over their
//! own `SOCK_SEQPACKET` pair, a worker's channel attached to a `Spawn`), and
//! how a worker process ended.

use std::fmt;

use crate::error::WorkerExit;

/// How a worker process ended, as the fork server reaped it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// It exited with this code (`WIFEXITED`).
    Code(i32),
    /// A signal with this number killed it (`WIFSIGNALED`).
    Signal(i32),
}

impl Exit {
    /// On the wire: the code, or the signal's number negated.
    fn to_wire(self) -> i32 {
        match self {
            Exit::Code(code) => code,
            Exit::Signal(signal) => -signal,
        }
    }

    fn from_wire(n: i32) -> Exit {
        if n < 0 {
            Exit::Signal(n.saturating_neg())
        } else {
            Exit::Code(n)
        }
    }
}

/// The public face of an exit, in [`WorkerDeath`](crate::WorkerDeath).
impl From<Exit> for WorkerExit {
    fn from(exit: Exit) -> WorkerExit {
        match exit {
            Exit::Code(code) => WorkerExit::Code(code),
            Exit::Signal(n) => WorkerExit::Signal(n),
        }
    }
}

/// In words, for an error message: `exited with code 3`, `killed by signal 9 (SIGKILL)`.
impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        WorkerExit::from(*self).fmt(f)
    }
}

/// A control packet between driver and zygote: a kind and two numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ctl {
    /// Driver → zygote: fork a worker for `slot` (its channel is attached).
    Spawn { slot: u32, generation: u32 },
    /// Driver → zygote: send `signal` to worker `pid`.
    Kill { pid: i32, signal: i32 },
    /// Driver → zygote: stop; SIGKILL whatever still runs after `grace_ms`.
    Shutdown { grace_ms: u32 },
    /// Zygote → driver: the worker for `slot` is process `pid`.
    Spawned { slot: u32, pid: i32 },
    /// Zygote → driver: fork failed for `slot` with `errno`.
    SpawnFailed { slot: u32, errno: i32 },
    /// Zygote → driver: `pid` ended, as `how` says.
    Exited { pid: i32, how: Exit },
}

impl Ctl {
    /// Bytes of a packet: a kind byte, then two `u32`/`i32` little-endian.
    pub(crate) const SIZE: usize = 9;

    /// The packet's bytes.
    pub(crate) fn encode(self) -> [u8; Self::SIZE] {
        let (k, a, b): (u8, u32, i32) = match self {
            Ctl::Spawn { slot, generation } => (1, slot, generation as i32),
            Ctl::Kill { pid, signal } => (2, pid as u32, signal),
            Ctl::Shutdown { grace_ms } => (3, grace_ms, 0),
            Ctl::Spawned { slot, pid } => (10, slot, pid),
            Ctl::SpawnFailed { slot, errno } => (11, slot, errno),
            Ctl::Exited { pid, how } => (12, pid as u32, how.to_wire()),
        };
        let mut out = [0u8; Self::SIZE];
        out[0] = k;
        out[1..5].copy_from_slice(&a.to_le_bytes());
        out[5..9].copy_from_slice(&b.to_le_bytes());
        out
    }

    /// A packet from its bytes; `None` if they are not one.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Ctl> {
        if bytes.len() != Self::SIZE {
            return None;
        }
        let a = u32::from_le_bytes(bytes[1..5].try_into().unwrap());
        let b = i32::from_le_bytes(bytes[5..9].try_into().unwrap());
        Some(match bytes[0] {
            1 => Ctl::Spawn {
                slot: a,
                generation: b as u32,
            },
            2 => Ctl::Kill {
                pid: a as i32,
                signal: b,
            },
            3 => Ctl::Shutdown { grace_ms: a },
            10 => Ctl::Spawned { slot: a, pid: b },
            11 => Ctl::SpawnFailed { slot: a, errno: b },
            12 => Ctl::Exited {
                pid: a as i32,
                how: Exit::from_wire(b),
            },
            _ => return None,
        })
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctl_round_trip() {
        for m in [
            Ctl::Spawn {
                slot: 3,
                generation: 9,
            },
            Ctl::Kill {
                pid: 1234,
                signal: 9,
            },
            Ctl::Shutdown { grace_ms: 500 },
            Ctl::Spawned { slot: 1, pid: 77 },
            Ctl::SpawnFailed { slot: 2, errno: 11 },
            Ctl::Exited {
                pid: 88,
                how: Exit::Signal(11),
            },
            Ctl::Exited {
                pid: 89,
                how: Exit::Code(0),
            },
            Ctl::Exited {
                pid: 90,
                how: Exit::Code(7),
            },
        ] {
            assert_eq!(Ctl::decode(&m.encode()), Some(m));
        }
        assert_eq!(Ctl::decode(&[0; 3]), None);
        assert_eq!(Ctl::decode(&[99; Ctl::SIZE]), None);
    }

    #[test]
    fn exits_are_said_with_the_signal_name() {
        assert_eq!(Exit::Signal(9).to_string(), "killed by signal 9 (SIGKILL)");
        assert_eq!(Exit::Signal(11).to_string(), "killed by signal 11 (SIGSEGV)");
        assert_eq!(Exit::Signal(99).to_string(), "killed by signal 99");
        assert_eq!(Exit::Code(3).to_string(), "exited with code 3");
        assert_eq!(Exit::from_wire(i32::MIN), Exit::Signal(i32::MAX));
    }
}
