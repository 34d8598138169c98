//! The shapes of functions a pool can run: [`Task`], [`Init`] and [`Exit`].
//!
//! These traits are implemented for plain functions (and closures) of the
//! right shape; the `#[worker_*]` attributes check the shape on the user's own
//! tokens and register the function by name. The marker type parameter `M`
//! only exists so that one function type matches exactly one implementation;
//! callers never name it.

use std::fmt::Display;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Where a worker is: its index in the pool and how many times that slot has
/// been started. Passed to an init that asks for it by value.
///
/// ```
/// use pool_runtime::{worker_init, WorkerInfo};
///
/// #[worker_init]
/// fn load(prefix: &String, me: WorkerInfo) -> String {
///     format!("{prefix}-{}", me.index())
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerInfo {
    pub(crate) index: usize,
    pub(crate) generation: u32,
}

impl WorkerInfo {
    /// The worker's slot, from `0` to `workers - 1`. A replacement worker
    /// keeps the slot of the worker it replaces.
    pub fn index(&self) -> usize {
        self.index
    }

    /// How many workers this slot had before this one: `0` for the first,
    /// `1` after one respawn, and so on.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Builds an info by hand, for calling an init in a unit test.
    pub fn new(index: usize, generation: u32) -> Self {
        WorkerInfo { index, generation }
    }
}

/// Markers that tell the implementations of [`Task`] apart. Never named by callers.
pub mod marker {
    use super::PhantomData;

    /// The task takes `&mut S`, then the arguments `A`.
    #[derive(Debug)]
    pub struct ByMut<A>(PhantomData<A>);
    /// The task takes `&S`, then the arguments `A`.
    #[derive(Debug)]
    pub struct ByRef<A>(PhantomData<A>);
    /// The task takes no state, only the arguments `A`.
    #[derive(Debug)]
    pub struct Stateless<A>(PhantomData<A>);
    /// An init that returns the state itself.
    #[derive(Debug)]
    pub struct Infallible<W>(PhantomData<W>);
    /// An init that returns `Result<S, E>`.
    #[derive(Debug)]
    pub struct Fallible<W>(PhantomData<W>);
    /// The init takes the arguments only.
    #[derive(Debug)]
    pub struct ArgsOnly;
    /// The init takes the arguments and a [`WorkerInfo`](super::WorkerInfo).
    #[derive(Debug)]
    pub struct WithInfo;
}
use marker::*;

/// A function a `Pool<S>` can run on its workers: `#[worker_task]` functions
/// taking `&mut S`, `&S` or no state, then zero or more serde arguments.
///
/// Several arguments travel as one tuple: `fn add(s: &mut S, a: u64, b: u64)`
/// has `Input = (u64, u64)`. One argument travels as itself, none as `()`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot run on a `Pool<{S}>`",
    label = "not a task for a pool whose state is `{S}`",
    note = "a task is a `#[worker_task]` fn whose first parameter is `&mut {S}`, `&{S}` or not a state at all, followed by arguments that implement `DeserializeOwned`, returning a type that implements `Serialize`"
)]
pub trait Task<S, M>: Copy + Send + Sync + 'static {
    /// What crosses to the worker: the argument, or a tuple of them.
    type Input: Serialize + DeserializeOwned;
    /// What comes back.
    type Output: Serialize + DeserializeOwned;

    /// Calls the function with the worker's state.
    fn call(&self, state: &mut S, input: Self::Input) -> Self::Output;
}

/// [`Task`] without its serde bounds: a function of one of a task's shapes,
/// called with its arguments as one value. The glue the attributes write
/// calls a task through it, and bounds each argument and result type on its
/// own (spanned on the user's type), so that a type that is not serde is one
/// error under that type instead of one more under the function.
pub trait Call<S, M> {
    /// The argument, a tuple of them, or `()`.
    type Input;
    /// What the function returns.
    type Output;

    /// Calls the function with the worker's state.
    fn call(&self, state: &mut S, input: Self::Input) -> Self::Output;
}

macro_rules! impl_task {
    ($($arg:ident)*) => {
        impl_task!(@call $($arg)*);
        impl<S, F, R, $($arg,)*> Task<S, ByMut<($($arg,)*)>> for F
        where
            F: Fn(&mut S, $($arg,)*) -> R + Copy + Send + Sync + 'static,
            R: Serialize + DeserializeOwned,
            $($arg: Serialize + DeserializeOwned,)*
        {
            type Input = impl_task!(@input $($arg)*);
            type Output = R;
            #[allow(non_snake_case)]
            fn call(&self, state: &mut S, input: Self::Input) -> R {
                let impl_task!(@pat $($arg)*) = input;
                self(state, $($arg,)*)
            }
        }

        impl<S, F, R, $($arg,)*> Task<S, ByRef<($($arg,)*)>> for F
        where
            F: Fn(&S, $($arg,)*) -> R + Copy + Send + Sync + 'static,
            R: Serialize + DeserializeOwned,
            $($arg: Serialize + DeserializeOwned,)*
        {
            type Input = impl_task!(@input $($arg)*);
            type Output = R;
            #[allow(non_snake_case)]
            fn call(&self, state: &mut S, input: Self::Input) -> R {
                let impl_task!(@pat $($arg)*) = input;
                self(state, $($arg,)*)
            }
        }

        impl<S, F, R, $($arg,)*> Task<S, Stateless<($($arg,)*)>> for F
        where
            F: Fn($($arg,)*) -> R + Copy + Send + Sync + 'static,
            R: Serialize + DeserializeOwned,
            $($arg: Serialize + DeserializeOwned,)*
        {
            type Input = impl_task!(@input $($arg)*);
            type Output = R;
            #[allow(non_snake_case)]
            fn call(&self, _state: &mut S, input: Self::Input) -> R {
                let impl_task!(@pat $($arg)*) = input;
                self($($arg,)*)
            }
        }
    };
    // The same three shapes as `Call`, with no bound on the types.
    (@call $($arg:ident)*) => {
        impl<S, F, R, $($arg,)*> Call<S, ByMut<($($arg,)*)>> for F
        where
            F: Fn(&mut S, $($arg,)*) -> R,
        {
            type Input = impl_task!(@input $($arg)*);
            type Output = R;
            #[allow(non_snake_case)]
            fn call(&self, state: &mut S, input: Self::Input) -> R {
                let impl_task!(@pat $($arg)*) = input;
                self(state, $($arg,)*)
            }
        }

        impl<S, F, R, $($arg,)*> Call<S, ByRef<($($arg,)*)>> for F
        where
            F: Fn(&S, $($arg,)*) -> R,
        {
            type Input = impl_task!(@input $($arg)*);
            type Output = R;
            #[allow(non_snake_case)]
            fn call(&self, state: &mut S, input: Self::Input) -> R {
                let impl_task!(@pat $($arg)*) = input;
                self(state, $($arg,)*)
            }
        }

        impl<S, F, R, $($arg,)*> Call<S, Stateless<($($arg,)*)>> for F
        where
            F: Fn($($arg,)*) -> R,
        {
            type Input = impl_task!(@input $($arg)*);
            type Output = R;
            #[allow(non_snake_case)]
            fn call(&self, _state: &mut S, input: Self::Input) -> R {
                let impl_task!(@pat $($arg)*) = input;
                self($($arg,)*)
            }
        }
    };
    (@input) => { () };
    (@input $one:ident) => { $one };
    (@input $($arg:ident)+) => { ($($arg,)+) };
    (@pat) => { () };
    (@pat $one:ident) => { $one };
    (@pat $($arg:ident)+) => { ($($arg,)+) };
}

impl_task!();
impl_task!(A1);
impl_task!(A1 A2);
impl_task!(A1 A2 A3);
impl_task!(A1 A2 A3 A4);
impl_task!(A1 A2 A3 A4 A5);
impl_task!(A1 A2 A3 A4 A5 A6);

/// A function that builds a worker's state `S` from the pool's arguments `A`:
/// `fn(&A) -> S`, `fn(&A) -> Result<S, E>`, or either with a second
/// [`WorkerInfo`] parameter. `E` only needs [`Display`]: it becomes the
/// message of the error `build` returns.
///
/// It runs once per worker process, after the fork, with `A` read
/// copy-on-write from the driver's memory: `A` is never serialized.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot build the state of a pool from `&{A}`",
    label = "not an init taking `&{A}`",
    note = "an init is a `#[worker_init]` fn taking `&{A}` (and optionally a `WorkerInfo`) and returning the state, or `Result<State, E>` where `E: Display`"
)]
pub trait Init<A, S, M> {
    /// Builds the state, or says why it could not.
    fn init(&self, args: &A, info: WorkerInfo) -> Result<S, String>;
}

impl<A, S, F: Fn(&A) -> S> Init<A, S, Infallible<ArgsOnly>> for F {
    fn init(&self, args: &A, _: WorkerInfo) -> Result<S, String> {
        Ok(self(args))
    }
}

impl<A, S, F: Fn(&A, WorkerInfo) -> S> Init<A, S, Infallible<WithInfo>> for F {
    fn init(&self, args: &A, info: WorkerInfo) -> Result<S, String> {
        Ok(self(args, info))
    }
}

impl<A, S, E: Display, F: Fn(&A) -> Result<S, E>> Init<A, S, Fallible<ArgsOnly>> for F {
    fn init(&self, args: &A, _: WorkerInfo) -> Result<S, String> {
        self(args).map_err(|e| e.to_string())
    }
}

impl<A, S, E: Display, F: Fn(&A, WorkerInfo) -> Result<S, E>> Init<A, S, Fallible<WithInfo>> for F {
    fn init(&self, args: &A, info: WorkerInfo) -> Result<S, String> {
        self(args, info).map_err(|e| e.to_string())
    }
}

/// A function that consumes a worker's state when the worker ends and
/// returns what [`Pool::join_with`](crate::Pool::join_with) collects:
/// `#[worker_exit] fn report(state: S) -> R`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot end a worker of a `Pool<{S}>`",
    label = "not an exit hook for a pool whose state is `{S}`",
    note = "an exit hook is a `#[worker_exit]` fn taking the state `{S}` by value and returning a type that implements `Serialize`"
)]
pub trait Exit<S>: Copy + Send + Sync + 'static {
    /// What the hook returns to the driver.
    type Output: Serialize + DeserializeOwned;

    /// Consumes the state.
    fn call(&self, state: S) -> Self::Output;
}

#[diagnostic::do_not_recommend]
impl<S, R, F> Exit<S> for F
where
    F: Fn(S) -> R + Copy + Send + Sync + 'static,
    R: Serialize + DeserializeOwned,
{
    type Output = R;
    fn call(&self, state: S) -> R {
        self(state)
    }
}
