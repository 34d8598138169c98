//! Everything the macros' output names, and nothing users should call.
//!
//! An attribute's output names one item here, the `macro_rules!` of its
//! kind (`task_entry!`, `exit_entry!`, `init_entry!`), and passes it
//! the user's own tokens (the fn's name, the types of its signature); those
//! macros, written beside the runtime (`entry.rs`), name the rest. So the
//! glue changes with the runtime, and pool-macros does not.

pub use linkme;
pub use serde::de::DeserializeOwned;
pub use serde::Serialize;

pub use crate::batch::stages::{
    stage_call, stage_call_stateless, stage_decode, stage_encode, Split, SplitNone, SplitProbe,
    SplitResult, StageGlue, Value,
};
pub use crate::batch::{run_batch, run_exit, run_stateless, Batch};
pub use crate::registry::{ExitEntry, InitEntry, TaskEntry, EXITS, INITS, TASKS};
pub use crate::task::marker::{ByMut, ByRef, Stateless};
pub use crate::task::Call;
pub use crate::{
    __pool_exit_entry as exit_entry, __pool_init_entry as init_entry,
    __pool_task_entry as task_entry,
};

use crate::channel::item;
use crate::codec::CodecError;
use std::any::TypeId;

/// The `TypeId` of a fn item, from the item itself.
pub fn type_id_of_val<T: 'static>(_: &T) -> TypeId {
    TypeId::of::<T>()
}

/// A `#[worker_task]` argument: it crosses to the worker with serde.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a `#[worker_task]` argument: it must implement `Serialize` and `DeserializeOwned`",
    label = "this argument is sent to a worker process",
    note = "derive them with `#[derive(serde::Serialize, serde::Deserialize)]`, or take an owned type (`String`, `Vec<T>`) instead of a borrowed one"
)]
pub trait TaskArgument: Serialize + DeserializeOwned {}
#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned> TaskArgument for T {}

/// A `#[worker_task]` or `#[worker_exit]` result: it crosses back with serde.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned from a worker: it must implement `Serialize` and `DeserializeOwned`",
    label = "this value is sent back from a worker process",
    note = "derive them with `#[derive(serde::Serialize, serde::Deserialize)]`"
)]
pub trait TaskOutput: Serialize + DeserializeOwned {}
#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned> TaskOutput for T {}

/// A pool's state: it lives in one worker for the worker's whole life.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a worker's state: it must be `'static` and sized",
    note = "own the data (`String`, `Arc<T>`) instead of borrowing it"
)]
pub trait WorkerState: 'static {}
#[diagnostic::do_not_recommend]
impl<T: 'static> WorkerState for T {}

/// Spanned on an argument type by the macros: fails to compile unless `T` is a [`TaskArgument`].
pub const fn assert_argument<T: TaskArgument>() {}
/// Spanned on a result type by the macros: fails to compile unless `T` is a [`TaskOutput`].
pub const fn assert_output<T: TaskOutput>() {}
/// Spanned on a state type by the macros.
pub const fn assert_state<T: WorkerState>() {}

/// Input decoders, one per number of arguments, each bounding every
/// argument type on its own: the macros name each user type as one type
/// argument (`input2::<Row, u64>`), so a type that is not serde is reported
/// under that type, and only once with the assertion on the same span. A
/// bound on the whole tuple would be reported again, under the macro.
macro_rules! input_decoders {
    ($($name:ident: $($arg:ident)+ => $input:ty;)*) => {$(
        #[doc = concat!(
            "Decodes the input of a task of arguments `", stringify!($($arg)+),
            "` (`input1::<()>` for a task of none), from all of its bytes."
        )]
        #[inline]
        pub fn $name<$($arg: TaskArgument,)+>(bytes: &[u8]) -> Result<$input, CodecError> {
            item::decode(bytes)
        }
    )*};
}

input_decoders! {
    input1: A1 => A1;
    input2: A1 A2 => (A1, A2);
    input3: A1 A2 A3 => (A1, A2, A3);
    input4: A1 A2 A3 A4 => (A1, A2, A3, A4);
    input5: A1 A2 A3 A4 A5 => (A1, A2, A3, A4, A5);
    input6: A1 A2 A3 A4 A5 A6 => (A1, A2, A3, A4, A5, A6);
}

/// Autoref specialization (the macros name the concrete input type): with
/// `use {InputHasDebug as _, InputNoDebug as _}`,
/// `(&&DebugInput::<T>::new()).debug_input(bytes)` formats the input with
/// `Debug` when `T` has it, and is `None` when it does not.
pub struct DebugInput<T>(std::marker::PhantomData<fn() -> T>);

impl<T> DebugInput<T> {
    /// The probe for `T`.
    pub const fn new() -> Self {
        DebugInput(std::marker::PhantomData)
    }
}

impl<T> Default for DebugInput<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for DebugInput<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DebugInput")
    }
}

/// Chosen when the input type implements `Debug`.
pub trait InputHasDebug {
    /// Decodes one input and formats it.
    fn debug_input(&self, bytes: &[u8]) -> Option<String>;
}

impl<T: std::fmt::Debug + DeserializeOwned> InputHasDebug for &DebugInput<T> {
    fn debug_input(&self, bytes: &[u8]) -> Option<String> {
        let (value, _) = crate::codec::decode::<T>(bytes).ok()?;
        Some(format!("{value:?}"))
    }
}

/// The fallback: the input type has no `Debug`.
pub trait InputNoDebug {
    /// `None`: nothing to show but the input's index.
    fn debug_input(&self, _bytes: &[u8]) -> Option<String> {
        None
    }
}

impl<T> InputNoDebug for DebugInput<T> {}

/// Autoref specialization on an init `F` with arguments `A` and state `S`
/// (the macros name both): with `use {FreshInit as _, ForkOnlyInit as _}`,
/// `(&&InitProbe::<A, S, _>::new(init)).fresh(bytes, info)` decodes the
/// arguments and runs the init in a worker started fresh when `A` can be
/// decoded and `F` is an init of `S` from `&A`, and says why not otherwise
/// (such an init serves forked workers only, or is wrong, which the
/// macros' own checks and `build` report: this adds no error of its own).
pub struct InitProbe<A, S, F>(F, std::marker::PhantomData<fn() -> (A, S)>);

impl<A, S, F> InitProbe<A, S, F> {
    /// The probe for `init`.
    pub const fn new(init: F) -> Self {
        InitProbe(init, std::marker::PhantomData)
    }
}

impl<A, S, F> std::fmt::Debug for InitProbe<A, S, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InitProbe")
    }
}

/// Chosen when the init can run in a worker started fresh.
pub trait FreshInit<M> {
    /// Decodes the arguments and runs the init on them.
    fn fresh(&self, bytes: &[u8], info: crate::WorkerInfo) -> Result<Box<dyn std::any::Any>, String>;
}

impl<A, S, M, F> FreshInit<M> for &InitProbe<A, S, F>
where
    A: DeserializeOwned,
    S: 'static,
    F: crate::task::Init<A, S, M> + Copy,
{
    fn fresh(&self, bytes: &[u8], info: crate::WorkerInfo) -> Result<Box<dyn std::any::Any>, String> {
        crate::fresh::init_fresh::<A, S, M, F>(self.0, bytes, info)
    }
}

/// The fallback: this init cannot run in a worker started fresh.
pub trait ForkOnlyInit {
    /// Says that this init serves forked workers only.
    fn fresh(&self, _bytes: &[u8], _info: crate::WorkerInfo) -> Result<Box<dyn std::any::Any>, String> {
        Err("this init's arguments cannot be decoded in a worker: it serves forked workers only".into())
    }
}

impl<A, S, F> ForkOnlyInit for InitProbe<A, S, F> {}
