//! What a worker that broke its sandbox was stopped for, as one word in its
//! step cell: the worker's signal handler writes it as it dies, the driver
//! reads it with the worker's exit and puts it in the input's error.

use std::fmt;

/// Why the sandbox stopped a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Breach {
    /// The seccomp filter forbids system call number this.
    Syscall(i64),
    /// The worker aborted under a limit of this many bytes of address space
    /// beyond init's: `sure` when an allocation had just failed.
    AddressSpace { limit: u64, sure: bool },
    /// CPU time ran past this many seconds after init.
    CpuSeconds(u64),
    /// A file would have grown past this many bytes.
    FileSize(u64),
}

/// The kind, in the word's top byte; the value in the rest.
const SHIFT: u32 = 56;
const VALUE: u64 = (1 << SHIFT) - 1;

impl Breach {
    /// The word for the step cell (never 0, which means none).
    pub(crate) fn encode(self) -> u64 {
        let (kind, value) = match self {
            Breach::Syscall(nr) => (1, nr as u64),
            Breach::AddressSpace { limit, sure: true } => (2, limit),
            Breach::AddressSpace { limit, sure: false } => (5, limit),
            Breach::CpuSeconds(n) => (3, n),
            Breach::FileSize(n) => (4, n),
        };
        kind << SHIFT | (value & VALUE)
    }

    /// The breach a step cell's word says, if any.
    pub(crate) fn decode(word: u64) -> Option<Breach> {
        let value = word & VALUE;
        Some(match word >> SHIFT {
            1 => Breach::Syscall(value as i64),
            2 => Breach::AddressSpace { limit: value, sure: true },
            5 => Breach::AddressSpace { limit: value, sure: false },
            3 => Breach::CpuSeconds(value),
            4 => Breach::FileSize(value),
            _ => return None,
        })
    }
}

/// The words after the worker's exit: `the sandbox forbids the system call
/// `socket` (41)`, `resource limit: CPU seconds (…)`.
impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Breach::Syscall(nr) => {
                let name = super::syscalls::name(nr).unwrap_or("?");
                write!(f, "the sandbox forbids the system call `{name}` ({nr})")?;
                if matches!(name, "clone" | "clone3" | "fork" | "vfork") {
                    write!(f, ", which would start a process")?;
                }
                Ok(())
            }
            Breach::AddressSpace { limit, sure } => {
                let how = if sure { "an allocation failed" } else { "it aborted, most likely as an allocation failed" };
                write!(
                    f,
                    "resource limit: address space ({how}; the sandbox lets a worker map {limit} bytes beyond what it had after init)"
                )
            }
            Breach::CpuSeconds(n) => write!(
                f,
                "resource limit: CPU seconds (the sandbox gives a worker {n} s of CPU after init)"
            ),
            Breach::FileSize(n) => write!(
                f,
                "resource limit: file size (the sandbox lets a worker write files of at most {n} bytes)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_breach_round_trips_through_its_word() {
        for b in [
            Breach::Syscall(libc::SYS_socket),
            Breach::AddressSpace { limit: 1 << 30, sure: true },
            Breach::AddressSpace { limit: 1 << 30, sure: false },
            Breach::CpuSeconds(2),
            Breach::FileSize(4096),
        ] {
            assert_ne!(b.encode(), 0);
            assert_eq!(Breach::decode(b.encode()), Some(b));
        }
        assert_eq!(Breach::decode(0), None);
        let text = Breach::Syscall(libc::SYS_socket).to_string();
        assert!(text.contains("`socket`"), "{text}");
    }
}
