//! The one error type of the crate: what went wrong, said plainly.

use std::fmt;

/// Why a call on a pool failed, or why one input got no result.
///
/// Inspect it with [`Error::kind`]; print it for a message that says what
/// happened (a panic's message and location, the signal that killed a worker,
/// the init's own error).
pub struct Error {
    kind: ErrorKind,
}

/// Reads like `Display`, so that `main` returning an `Error` prints the
/// message, not a struct dump.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A worker's init returned an error or panicked.
    Init(String),
    /// User code panicked on this input, the worker lives on: the task, or
    /// a `Serialize`/`Deserialize` of its input or result (wherever it ran,
    /// in a worker or in the caller's thread; the text then starts with
    /// where, e.g. `while decoding the input: `). The text gives the panic's
    /// message and location.
    Panicked(String),
    /// A stage of a [`Pipeline`](crate::Pipeline) returned `Err` for this
    /// input, which went no further: the text names the stage and gives the
    /// error's `Display`.
    Failed(String),
    /// The worker running this input died: the text says how (signal, exit
    /// code) and, when it died in the input's `Deserialize` or the result's
    /// `Serialize`, where (`… while decoding the input`).
    WorkerDied(String),
    /// The input ran past the pool's task timeout; its worker was killed.
    TimedOut(String),
    /// The input killed more workers than the pool's retries allow; it is
    /// not run again.
    Quarantined(String),
    /// The input could not be encoded or decoded, or the output could not:
    /// the text says which (`could not decode the input: …`) and why, in the
    /// words of the type's own `Serialize` or `Deserialize` when it was the
    /// one that refused.
    Codec(String),
    /// The function passed to the pool carries no `#[worker_task]` or
    /// `#[worker_exit]` attribute, so workers cannot find it by name.
    NotRegistered(&'static str),
    /// The pool can no longer run anything (its fork server died, or no
    /// worker could be started).
    PoolBroken(String),
    /// A system call failed.
    Io(String),
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    pub(crate) fn new(kind: ErrorKind) -> Self {
        Error { kind }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Init(m) => write!(f, "worker init failed: {m}"),
            // A panic in serde code says where it was ("while decoding …").
            ErrorKind::Panicked(m) if m.starts_with("while ") => write!(f, "panicked {m}"),
            ErrorKind::Panicked(m) => write!(f, "task panicked: {m}"),
            ErrorKind::Failed(m) => write!(f, "pipeline stage failed: {m}"),
            ErrorKind::WorkerDied(m) => write!(f, "the worker running this input died: {m}"),
            ErrorKind::TimedOut(m) => write!(f, "task timed out: {m}"),
            ErrorKind::Quarantined(m) => write!(f, "input quarantined: {m}"),
            ErrorKind::Codec(m) => write!(f, "serialization failed: {m}"),
            ErrorKind::NotRegistered(name) => write!(
                f,
                "`{name}` is not registered: mark it with #[worker_task] (or #[worker_exit])"
            ),
            ErrorKind::PoolBroken(m) => write!(f, "the pool cannot run tasks: {m}"),
            ErrorKind::Io(m) => write!(f, "system error: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<nix::Error> for Error {
    fn from(e: nix::Error) -> Self {
        Error::new(ErrorKind::Io(e.desc().to_string()))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::new(ErrorKind::Io(e.to_string()))
    }
}
