//! Workers started fresh (`Pool::builder().spawn()`): the program re-run
//! in worker mode instead of a fork of the driver.
//!
//! The fork server forks, and the child execs the worker program with its
//! channel and the step cells' memfd left open, and [`WORKER_ENV`] saying
//! where they are. The program's first line, [`worker_mode`](crate::worker_mode), sees it and
//! becomes the worker: it reads the driver's `Hello` (the driver's code
//! and the init to run, with its encoded arguments), refuses to serve
//! other code than its own, builds the state, and serves batches like a
//! forked worker; it never returns into `main`.

use std::any::Any;
use std::ffi::{OsStr, OsString};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::de::DeserializeOwned;

use nix::unistd::Pid;

use crate::channel::frame;
use crate::channel::hello::Hello;
use crate::channel::message::{self, Message};
use crate::registry;
use crate::sandbox::{Sandbox, SANDBOX_ENV};
use crate::sys::{self, StepCells};
use crate::task::{Init, WorkerInfo};
use crate::worker::{self, Recycle};

/// The variable that makes a process a worker, and tells it where it stands.
pub(crate) const WORKER_ENV: &str = "POOL_RUNTIME_WORKER";

/// This process entered worker mode.
static IN_WORKER_MODE: AtomicBool = AtomicBool::new(false);

/// The descriptors this process inherited as a worker were taken: by worker
/// mode, or by a `build` that told the driver it never entered it. Taken
/// once: a second owner of the numbers would close what reuses them.
static CLAIMED: AtomicBool = AtomicBool::new(false);

/// What a worker started fresh is told in [`WORKER_ENV`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spec {
    pub(crate) slot: u32,
    pub(crate) generation: u32,
    pub(crate) zygote: i32,
    /// Descriptor numbers: the channel, the step cells' memfd.
    pub(crate) chan: i32,
    pub(crate) cells: i32,
    /// Cells in the memfd.
    pub(crate) cell_count: u32,
    pub(crate) max_frame: u64,
    pub(crate) recycle: Recycle,
    /// Carried in its own variable, `sandbox::SANDBOX_ENV`.
    pub(crate) sandbox: Option<Sandbox>,
}

impl Spec {
    /// In words: `1:slot:generation:...`, `-` for what is not set.
    pub(crate) fn to_env(&self) -> String {
        let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        let r = &self.recycle;
        format!(
            "1:{}:{}:{}:{}:{}:{}:{}:{}:{}:{}",
            self.slot,
            self.generation,
            self.zygote,
            self.chan,
            self.cells,
            self.cell_count,
            self.max_frame,
            opt(r.max_tasks),
            opt(r.max_rss),
            opt(r.exit_hook.map(u64::from)),
        )
    }

    pub(crate) fn parse(text: &OsStr) -> Option<Spec> {
        let text = text.to_str()?;
        let mut f = text.split(':');
        if f.next()? != "1" {
            return None;
        }
        let mut num = || f.next()?.parse::<u64>().ok();
        let (slot, generation, zygote) = (num()?, num()?, num()?);
        let (chan, cells, cell_count, max_frame) = (num()?, num()?, num()?, num()?);
        let mut opt = || -> Option<Option<u64>> {
            match f.next()? {
                "-" => Some(None),
                n => n.parse().ok().map(Some),
            }
        };
        let (max_tasks, max_rss, hook) = (opt()?, opt()?, opt()?);
        if f.next().is_some() {
            return None;
        }
        Some(Spec {
            slot: slot.try_into().ok()?,
            generation: generation.try_into().ok()?,
            zygote: zygote.try_into().ok()?,
            chan: chan.try_into().ok()?,
            cells: cells.try_into().ok()?,
            cell_count: cell_count.try_into().ok()?,
            max_frame,
            recycle: Recycle {
                max_tasks,
                max_rss,
                exit_hook: match hook {
                    Some(h) => Some(h.try_into().ok()?),
                    None => None,
                },
            },
            sandbox: None,
        })
    }
}

/// Serves as a worker started fresh if [`WORKER_ENV`] says so, and never
/// returns then (see [`crate::worker_mode`]).
pub(crate) fn enter() {
    let Some(spec) = std::env::var_os(WORKER_ENV) else {
        return;
    };
    if CLAIMED.swap(true, Ordering::AcqRel) {
        return;
    }
    IN_WORKER_MODE.store(true, Ordering::Release);
    let code = match Spec::parse(&spec) {
        Some(mut spec) => match std::env::var_os(SANDBOX_ENV).map(|s| s.to_str().and_then(Sandbox::parse)) {
            // Never a worker that runs unsandboxed when a sandbox was asked for.
            Some(None) => {
                eprintln!("pool-runtime: {SANDBOX_ENV} is set but malformed");
                2
            }
            sandbox => {
                spec.sandbox = sandbox.flatten();
                serve(spec)
            }
        },
        None => {
            eprintln!("pool-runtime: {WORKER_ENV} is set but malformed: {spec:?}");
            2
        }
    };
    sys::exit_now(code)
}

/// Claims this process for another worker mode (a Redis host): `false`
/// if it was claimed already.
#[cfg(feature = "redis")]
pub(crate) fn claim() -> bool {
    if CLAIMED.swap(true, Ordering::AcqRel) {
        return false;
    }
    IN_WORKER_MODE.store(true, Ordering::Release);
    true
}

/// Enters [`worker_mode`](crate::worker_mode) before `main` runs: for test binaries (the
/// `cargo test` harness owns their `main`), or a program that would rather
/// not touch its `main`. Write it once, at the top level of the binary's
/// crate (one integration test file, say).
///
/// ```
/// pool_runtime::worker_mode_before_main!();
/// ```
#[macro_export]
macro_rules! worker_mode_before_main {
    () => {
        const _: () = {
            // Run by the loader before `main`, as C constructors are.
            #[used]
            #[link_section = ".init_array"]
            static WORKER_MODE: extern "C" fn() = {
                extern "C" fn worker_mode() {
                    $crate::worker_mode()
                }
                worker_mode
            };
        };
    };
}

/// The worker's main in a process started fresh, in worker mode: its init
/// and arguments come in the driver's first frame. Returns its exit code.
fn serve(spec: Spec) -> i32 {
    crate::unwind::install_panic_hook();
    sys::ignore_sigint();
    registry::prepare();
    let zygote = Pid::from_raw(spec.zygote);
    sys::die_with_parent(zygote);
    let Some(chan) = sys::take_inherited_fd(spec.chan) else {
        eprintln!("pool-runtime: worker {}: no channel", std::process::id());
        return worker::code::PROTOCOL;
    };
    let cells = sys::take_inherited_fd(spec.cells)
        .and_then(|fd| StepCells::map_inherited(fd, spec.cell_count as usize).ok());
    let Some(cells) = cells.filter(|c| (spec.slot as usize) < c.len()) else {
        worker::tell_init_failed(chan, "the step cells of a worker started fresh are missing");
        return worker::code::PROTOCOL;
    };
    let max_frame = usize::try_from(spec.max_frame).unwrap_or(usize::MAX);
    let start = worker::Start {
        info: WorkerInfo {
            index: spec.slot as usize,
            generation: spec.generation,
        },
        chan,
        rings: None,
        cells: &cells,
        zygote,
        max_frame,
        recycle: &spec.recycle,
        sandbox: spec.sandbox.as_ref(),
    };
    worker::live(start, |info, stream| {
        // In worker mode: the driver stops waiting for `main` to get here.
        let mut started = Vec::new();
        message::write::started(&mut started);
        if std::io::Write::write_all(stream, &started).is_err() {
            return Err("the driver is gone".into());
        }
        let mut hello = Vec::new();
        match frame::read_blocking(stream, &mut hello, max_frame) {
            Ok(true) => {}
            _ => return Err("the driver sent no greeting".into()),
        }
        match Message::parse(&hello) {
            Ok(Message::Hello { body }) => worker::state_from_hello(body, info),
            _ => Err("the driver's first frame is not a greeting".into()),
        }
    })
}

/// At `build`: a process started as a worker that did not call
/// [`worker_mode`](crate::worker_mode) must not build pools of its own (each of its workers
/// would do the same: a fork bomb). It tells its driver why, and `build`
/// fails.
pub(crate) fn check_not_a_forgotten_worker() -> Result<(), String> {
    let Some(spec) = std::env::var_os(WORKER_ENV) else {
        return Ok(());
    };
    if IN_WORKER_MODE.load(Ordering::Acquire) {
        return Ok(());
    }
    let why = format!(
        "the worker program did not enter worker mode: call `pool_runtime::worker_mode()` \
         first in `main` (in a test binary: `pool_runtime::worker_mode_before_main!()`); \
         this process ({}) was started as a worker and builds no pool",
        std::process::id()
    );
    if let Some(spec) = Spec::parse(&spec).filter(|_| !CLAIMED.swap(true, Ordering::AcqRel)) {
        if let Some(chan) = sys::take_inherited_fd(spec.chan) {
            worker::tell_init_failed(chan, &why);
        }
    }
    Err(why)
}

/// The `WORKER_ENV` entry for a worker, and the rest of the environment.
pub(crate) fn environment(spec: &Spec) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| k != WORKER_ENV && k != SANDBOX_ENV)
        .collect();
    env.push((WORKER_ENV.into(), spec.to_env().into()));
    if let Some(sandbox) = &spec.sandbox {
        env.push((SANDBOX_ENV.into(), sandbox.to_env().into()));
    }
    env
}

/// The greeting for the driver's workers: its code, `init` and `args`.
pub(crate) fn hello(init: &str, args: &[u8]) -> Vec<u8> {
    Hello {
        version: env!("CARGO_PKG_VERSION").into(),
        code: registry::fingerprint(),
        init: init.into(),
        args,
    }
    .encode()
}

/// The glue of an init in a worker started fresh: decode the arguments,
/// run the init (through `__private01::InitProbe`).
pub(crate) fn init_fresh<A: DeserializeOwned, S: 'static, M, I: Init<A, S, M>>(
    init: I,
    args: &[u8],
    info: WorkerInfo,
) -> Result<Box<dyn Any>, String> {
    let (args, _) = crate::codec::decode::<A>(args)
        .map_err(|e| format!("could not decode the init arguments: {e}"))?;
    match crate::unwind::catch(|| init.init(&args, info)) {
        Ok(Ok(state)) => Ok(Box::new(state)),
        Ok(Err(message)) => Err(message),
        Err(panic) => Err(format!("init panicked: {panic}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_round_trips_through_the_environment() {
        let spec = Spec {
            slot: 3,
            generation: 7,
            zygote: 4242,
            chan: 9,
            cells: 10,
            cell_count: 4,
            max_frame: 1 << 30,
            recycle: Recycle {
                max_tasks: Some(100),
                max_rss: None,
                exit_hook: Some(2),
            },
            sandbox: None,
        };
        let text = spec.to_env();
        assert_eq!(Spec::parse(OsStr::new(&text)), Some(spec));
        for bad in ["", "2:1", "1:a:b", &format!("{text}:9")] {
            assert_eq!(Spec::parse(OsStr::new(bad)), None, "{bad}");
        }
    }
}
