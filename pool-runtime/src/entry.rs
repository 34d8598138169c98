//! The `macro_rules!` the attributes expand to: one call per function, with
//! the user's own tokens, that writes the checks and the registry entry.
//!
//! They live here, beside what they name, so that a change of the glue is a
//! change of this crate alone: pool-macros only parses and checks the
//! signature, then passes on the function's name and the types written in
//! it (`pool_runtime::__private01::task_entry! { … }`). The types keep the
//! user's spans, so every bound below is reported under the user's tokens.
//!
//! Each type is bounded where it is named, by one trait (`TaskArgument`,
//! `TaskOutput`, `WorkerState`): the assertions first, then the glue, whose
//! bounds on the same types are the same traits on the same spans, which
//! rustc reports once. No bound is on the function or on a tuple the macro
//! writes, where it would be reported again, under the attribute.
//!
//! Defined outside `linux_only!` (a `#[macro_export]` macro defined by a
//! macro cannot be re-exported by path), they name `$crate::__private01`,
//! which exists on Linux only.

/// The expansion of `#[worker_task]`: the type assertions and the task's
/// registry entry, inside the attribute's `const _: () = { … };`.
///
/// ```text
/// task_entry! {
///     name: "classify",
///     fn: classify,
///     state: &mut Classifier,   // or `&Classifier`, or no `state` for a stateless task
///     args: [Row, u64],
///     output: Label,            // `()` for a fn without a return type
/// }
/// ```
#[doc(hidden)]
#[macro_export]
macro_rules! __pool_task_entry {
    (
        name: $name:literal,
        fn: $f:ident,
        state: &mut $S:ty,
        args: [$($A:ty),* $(,)?],
        output: $R:ty $(,)?
    ) => {
        $crate::__pool_task_entry!(
            @entry $name, $f, ByMut, [$S], run_batch, stage_call, [$($A),*], $R
        );
    };
    (
        name: $name:literal,
        fn: $f:ident,
        state: & $S:ty,
        args: [$($A:ty),* $(,)?],
        output: $R:ty $(,)?
    ) => {
        $crate::__pool_task_entry!(
            @entry $name, $f, ByRef, [$S], run_batch, stage_call, [$($A),*], $R
        );
    };
    (
        name: $name:literal,
        fn: $f:ident,
        args: [$($A:ty),* $(,)?],
        output: $R:ty $(,)?
    ) => {
        $crate::__pool_task_entry!(
            @entry $name, $f, Stateless, [], run_stateless, stage_call_stateless, [$($A),*], $R
        );
    };
    // `$shape` is the `Call` marker (named: with no serde bound to rule
    // shapes out, `Call` alone cannot tell `fn(&mut S, A)` from a stateless
    // `fn(X, A)`); `$run` and `$call` take the state type first when there
    // is one.
    (
        @entry $name:literal, $f:ident, $shape:ident, [$($S:ty)?], $run:ident, $call:ident,
        [$($A:ty),*], $R:ty
    ) => {
        #[$crate::__private01::linkme::distributed_slice($crate::__private01::TASKS)]
        #[linkme(crate = $crate::__private01::linkme)]
        static __POOL_TASK: $crate::__private01::TaskEntry = {
            $($crate::__private01::assert_state::<$S>();)?
            $($crate::__private01::assert_argument::<$A>();)*
            $crate::__private01::assert_output::<$R>();
            $crate::__private01::TaskEntry {
                name: ::core::concat!(::core::module_path!(), "::", $name),
                type_id: || $crate::__private01::type_id_of_val(&$f),
                signature: $crate::__pool_task_entry!(@signature $shape [$($S,)? $($A),*] -> $R),
                run: |__pool_state, __pool_batch| {
                    $crate::__private01::$run::<
                        $($S,)? _, $R, $crate::__private01::$shape<($($A,)*)>, _, _
                    >(
                        $f,
                        $crate::__pool_task_entry!(@decode $($A),*),
                        __pool_state,
                        __pool_batch,
                    )
                },
                stage: $crate::__private01::StageGlue {
                    decode: |__pool_bytes| {
                        $crate::__private01::stage_decode(
                            $crate::__pool_task_entry!(@decode $($A),*),
                            __pool_bytes,
                        )
                    },
                    call: |__pool_state, __pool_value| {
                        $crate::__private01::$call::<
                            $($S,)? _, $R, $crate::__private01::$shape<($($A,)*)>, _
                        >(
                            $f,
                            __pool_state,
                            __pool_value,
                        )
                    },
                    encode: |__pool_value, __pool_out, __pool_long| {
                        $crate::__private01::stage_encode::<$R>(__pool_value, __pool_out, __pool_long)
                    },
                    // Autoref on the concrete output type: the glue that opens
                    // a `Result<T, E: Display>`, or the one that says it is not one.
                    split: |__pool_value| {
                        use $crate::__private01::{SplitNone as _, SplitResult as _};
                        (&&$crate::__private01::SplitProbe::<$R>::NEW).split_glue()(__pool_value)
                    },
                },
                // Autoref on the concrete input type: `Debug` if it has it.
                debug_input: |__pool_bytes| {
                    #[allow(unused_imports)]
                    use $crate::__private01::{InputHasDebug as _, InputNoDebug as _};
                    (&&$crate::__private01::DebugInput::<
                        $crate::__pool_task_entry!(@input $($A),*)
                    >::new())
                    .debug_input(__pool_bytes)
                },
            }
        };
    };
    // The input's decoder, one type argument per argument type. A closure
    // that calls it, not the fn item itself: passed as a value, the fn's
    // bounds would be checked through the glue's `Fn` bound, under the
    // attribute; called, they are checked under each type.
    (@decode) => { |__pool_bytes: &[u8]| $crate::__private01::input1::<()>(__pool_bytes) };
    (@decode $A1:ty) => {
        |__pool_bytes: &[u8]| $crate::__private01::input1::<$A1>(__pool_bytes)
    };
    (@decode $A1:ty, $A2:ty) => {
        |__pool_bytes: &[u8]| $crate::__private01::input2::<$A1, $A2>(__pool_bytes)
    };
    (@decode $A1:ty, $A2:ty, $A3:ty) => {
        |__pool_bytes: &[u8]| $crate::__private01::input3::<$A1, $A2, $A3>(__pool_bytes)
    };
    (@decode $A1:ty, $A2:ty, $A3:ty, $A4:ty) => {
        |__pool_bytes: &[u8]| $crate::__private01::input4::<$A1, $A2, $A3, $A4>(__pool_bytes)
    };
    (@decode $A1:ty, $A2:ty, $A3:ty, $A4:ty, $A5:ty) => {
        |__pool_bytes: &[u8]| {
            $crate::__private01::input5::<$A1, $A2, $A3, $A4, $A5>(__pool_bytes)
        }
    };
    (@decode $A1:ty, $A2:ty, $A3:ty, $A4:ty, $A5:ty, $A6:ty) => {
        |__pool_bytes: &[u8]| {
            $crate::__private01::input6::<$A1, $A2, $A3, $A4, $A5, $A6>(__pool_bytes)
        }
    };
    // What the fingerprint of a worker started fresh compares: the types
    // as written, and the crate that defines the function, with its version.
    // `$shape` says how the state is taken (`ByMut`, `ByRef`, `Stateless`).
    (@signature $shape:ident [$($T:ty),* $(,)?] -> $R:ty) => {
        ::core::concat!(
            ::core::env!("CARGO_PKG_NAME"), " ", ::core::env!("CARGO_PKG_VERSION"),
            ": ", ::core::stringify!($shape), " fn(", ::core::stringify!($($T),*), ") -> ",
            ::core::stringify!($R)
        )
    };
    // The input type: `()`, the one argument, or a tuple of them.
    (@input) => { () };
    (@input $A:ty) => { $A };
    (@input $($A:ty),+) => { ($($A,)+) };
}

/// The expansion of `#[worker_exit]`: the type assertions and the exit
/// hook's registry entry.
///
/// ```text
/// exit_entry! { name: "report", fn: report, state: Classifier, output: u64 }
/// ```
#[doc(hidden)]
#[macro_export]
macro_rules! __pool_exit_entry {
    (name: $name:literal, fn: $f:ident, state: $S:ty, output: $R:ty $(,)?) => {
        #[$crate::__private01::linkme::distributed_slice($crate::__private01::EXITS)]
        #[linkme(crate = $crate::__private01::linkme)]
        static __POOL_EXIT: $crate::__private01::ExitEntry = {
            $crate::__private01::assert_state::<$S>();
            $crate::__private01::assert_output::<$R>();
            $crate::__private01::ExitEntry {
                name: ::core::concat!(::core::module_path!(), "::", $name),
                type_id: || $crate::__private01::type_id_of_val(&$f),
        signature: $crate::__pool_task_entry!(@signature Exit [$S] -> $R),
                run: |__pool_state, __pool_out| {
                    $crate::__private01::run_exit::<$S, $R, _>($f, __pool_state, __pool_out)
                },
            }
        };
    };
}

/// The expansion of `#[worker_init]`: the assertion on the state it builds,
/// and the init's registry entry, by which a worker started fresh finds it
/// (a forked worker gets the init by value from `build`).
///
/// ```text
/// init_entry! { name: "load", fn: load, state: Classifier, args: Config }
/// ```
///
/// The entry's glue goes through `InitProbe`'s autoref: it decodes `args`
/// and runs the init when both can be done, and otherwise says why at run
/// time, so it adds no compile error of its own (a wrong init is the
/// assertion's error, or `build`'s; arguments that cannot cross are
/// `spawn().build`'s `SpawnArgs` error).
#[doc(hidden)]
#[macro_export]
macro_rules! __pool_init_entry {
    (name: $name:literal, fn: $f:ident, state: $S:ty, args: $A:ty $(,)?) => {
        #[$crate::__private01::linkme::distributed_slice($crate::__private01::INITS)]
        #[linkme(crate = $crate::__private01::linkme)]
        static __POOL_INIT: $crate::__private01::InitEntry = {
            $crate::__private01::assert_state::<$S>();
            $crate::__private01::InitEntry {
                name: ::core::concat!(::core::module_path!(), "::", $name),
                type_id: || $crate::__private01::type_id_of_val(&$f),
        signature: $crate::__pool_task_entry!(@signature Init [$A] -> $S),
                fresh: |__pool_args, __pool_info| {
                    #[allow(unused_imports)]
                    use $crate::__private01::{ForkOnlyInit as _, FreshInit as _};
                    (&&$crate::__private01::InitProbe::<$A, $S, _>::new($f))
                        .fresh(__pool_args, __pool_info)
                },
            }
        };
    };
}
