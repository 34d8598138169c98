//! Code generation: the unchanged function, type assertions spanned on the
//! user's tokens, and for tasks and exit hooks a registry entry.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Item, ItemFn, Type};

use crate::check;
use crate::ctxt::Ctxt;
use crate::fallback;
use crate::parse::{self, Input, Kind, WorkerFn};

/// Parses, checks and expands one attribute. Never fails: errors come out as
/// `compile_error!` next to the untouched item.
pub fn expand(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    let cx = Ctxt::new();
    parse::parse_args(&cx, kind, &args);
    let Ok(original) = syn::parse2::<ItemFn>(item.clone()) else {
        cx.syn_error(not_a_function(kind, &item));
        let errors = cx.check().expect_err("an error was just pushed");
        return fallback::expand(item, errors);
    };
    let func = WorkerFn::from_syn(kind, &original);
    check::check(&cx, &func);
    match cx.check() {
        Ok(()) => expand_valid(&func, item),
        Err(errors) => fallback::expand(item, errors),
    }
}

/// The attribute is on something other than a function with a body.
fn not_a_function(kind: Kind, item: &TokenStream) -> syn::Error {
    let msg = format!(
        "{} goes on a free function with a body, e.g. `{}`",
        kind.attr(),
        kind.example()
    );
    // Underline the item's keyword and name rather than all of it.
    let at = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Struct(i)) => pair(&i.struct_token, &i.ident),
        Ok(Item::Enum(i)) => pair(&i.enum_token, &i.ident),
        Ok(Item::Union(i)) => pair(&i.union_token, &i.ident),
        Ok(Item::Const(i)) => pair(&i.const_token, &i.ident),
        Ok(Item::Static(i)) => pair(&i.static_token, &i.ident),
        Ok(Item::Mod(i)) => pair(&i.mod_token, &i.ident),
        Ok(Item::Trait(i)) => pair(&i.trait_token, &i.ident),
        Ok(Item::Type(i)) => pair(&i.type_token, &i.ident),
        Ok(Item::Impl(i)) => pair(&i.impl_token, &i.self_ty),
        _ => item.clone(),
    };
    syn::Error::new_spanned(at, msg)
}

fn pair(a: &impl ToTokens, b: &impl ToTokens) -> TokenStream {
    let mut tokens = a.to_token_stream();
    b.to_tokens(&mut tokens);
    tokens
}

fn expand_valid(func: &WorkerFn, item: TokenStream) -> TokenStream {
    let body = match func.kind {
        Kind::Task => task(func),
        Kind::Init => init(func),
        Kind::Exit => exit(func),
    };
    // `#[worker_task] #[cfg(..)] fn f`: the glue must vanish with the fn.
    let cfgs = func
        .original
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("cfg"));
    // The signature shape is the API's, not a choice the user made: an init
    // reads `&A` even when `A` is `String` or `u64`, an exit hook consumes
    // the state. Silence the clippy lints that would blame the user for it.
    let allow = match func.kind {
        Kind::Init | Kind::Task => {
            quote!(#[allow(clippy::ptr_arg, clippy::trivially_copy_pass_by_ref)])
        }
        Kind::Exit => quote!(#[allow(clippy::needless_pass_by_value)]),
    };
    quote! {
        #allow
        #item
        #[doc(hidden)]
        #(#cfgs)*
        #[allow(deprecated)]
        const _: () = {
            #body
        };
    }
}

/// `::pool_runtime::__private01`, where everything the output names lives.
/// Its name changes with every version of the pair whose output differs
/// (pool-runtime pins this crate exactly), so that a mismatch is one
/// unresolved path, not a wrong call.
fn private() -> TokenStream {
    quote!(::pool_runtime::__private01)
}

/// A span with the hygiene of the call site and the location of `tokens`,
/// so that rustc reports a failed bound under the user's tokens.
fn span_of<T: Spanned>(tokens: &T) -> Span {
    Span::call_site().located_at(tokens.span())
}

/// `::pool_runtime::__private01::assert_xxx::<Ty>();`, spanned on `ty`.
fn assertion(function: &str, ty: &Type) -> TokenStream {
    let private = private();
    let function = syn::Ident::new(function, span_of(ty));
    quote_spanned!(span_of(ty)=> #private::#function::<#ty>();)
}

/// `assert_output` on the return type, `()` when there is none.
fn output_assertion(func: &WorkerFn) -> TokenStream {
    match func.output {
        Some(ty) => assertion("assert_output", ty),
        None => {
            let private = private();
            quote!(#private::assert_output::<()>();)
        }
    }
}

/// `concat!(module_path!(), "::", "classify")`: the stable name.
fn stable_name(func: &WorkerFn) -> TokenStream {
    let name = func.original.sig.ident.unraw().to_string();
    quote!(::core::concat!(::core::module_path!(), "::", #name))
}

fn task(func: &WorkerFn) -> TokenStream {
    let private = private();
    let ident = &func.original.sig.ident;
    let (state, args) = func.split_state();
    let state_ty = state.and_then(Input::state_type);
    let assert_state = state_ty.map(|ty| assertion("assert_state", ty));
    let assert_args = args.iter().map(|arg| assertion("assert_argument", arg.ty));
    let assert_output = output_assertion(func);
    let name = stable_name(func);
    // Spanned on the fn's name: if the fn is not a task after all (an
    // argument that is not serde), the error lands on the signature.
    let span = span_of(ident);
    let run = match state_ty {
        Some(ty) => {
            quote_spanned!(span=> #private::run_batch::<#ty, _, _>(#ident, __pool_state, __pool_batch))
        }
        None => {
            quote_spanned!(span=> #private::run_stateless::<_, _>(#ident, __pool_state, __pool_batch))
        }
    };
    let stage = stage_glue(func, state_ty);
    let debug_input = debug_input(args);
    quote! {
        #assert_state
        #(#assert_args)*
        #assert_output
        #[#private::linkme::distributed_slice(#private::TASKS)]
        #[linkme(crate = #private::linkme)]
        static __POOL_TASK: #private::TaskEntry = #private::TaskEntry {
            name: #name,
            type_id: || #private::type_id_of_val(&#ident),
            run: |__pool_state, __pool_batch| #run,
            stage: #stage,
            debug_input: #debug_input,
        };
    }
}

/// The task's type-erased entry points as a pipeline stage. `split` picks,
/// by autoref on the concrete output type, the glue that opens a
/// `Result<T, E: Display>`, or the one that says the output is not one.
fn stage_glue(func: &WorkerFn, state_ty: Option<&Type>) -> TokenStream {
    let private = private();
    let ident = &func.original.sig.ident;
    let span = span_of(ident);
    let state = match state_ty {
        Some(ty) => quote!(#ty),
        None => quote!(()),
    };
    let call = match state_ty {
        Some(ty) => {
            quote_spanned!(span=> #private::stage_call::<#ty, _, _>(#ident, __pool_state, __pool_value))
        }
        None => {
            quote_spanned!(span=> #private::stage_call_stateless::<_, _>(#ident, __pool_state, __pool_value))
        }
    };
    let output = match func.output {
        Some(ty) => quote!(#ty),
        None => quote!(()),
    };
    quote! {
        #private::StageGlue {
            decode: |__pool_bytes| #private::stage_decode::<#state, _, _>(#ident, __pool_bytes),
            call: |__pool_state, __pool_value| #call,
            encode: |__pool_value, __pool_out, __pool_long| #private::stage_encode::<#state, _, _>(#ident, __pool_value, __pool_out, __pool_long),
            split: |__pool_value| {
                use #private::{SplitNone as _, SplitResult as _};
                (&&#private::SplitProbe::<#output>::NEW).split_glue()(__pool_value)
            },
        }
    }
}

/// The `debug_input` glue: formats one encoded input (the argument, a tuple
/// of them, or `()`) with `Debug` if its type has it, else `None`; autoref
/// specialization on the concrete type (`__private01::DebugInput`).
fn debug_input(args: &[Input<'_>]) -> TokenStream {
    let private = private();
    let tys = args.iter().map(|arg| arg.ty);
    let input = match args {
        [one] => one.ty.to_token_stream(),
        _ => quote!((#(#tys,)*)),
    };
    quote! {
        |__pool_bytes| {
            #[allow(unused_imports)]
            use #private::{InputHasDebug as _, InputNoDebug as _};
            (&&#private::DebugInput::<#input>::new()).debug_input(__pool_bytes)
        }
    }
}

fn exit(func: &WorkerFn) -> TokenStream {
    let private = private();
    let ident = &func.original.sig.ident;
    let state_ty = func.inputs[0].ty;
    let assert_state = assertion("assert_state", state_ty);
    let assert_output = output_assertion(func);
    let name = stable_name(func);
    let span = span_of(ident);
    let run =
        quote_spanned!(span=> #private::run_exit::<#state_ty, _>(#ident, __pool_state, __pool_out));
    quote! {
        #assert_state
        #assert_output
        #[#private::linkme::distributed_slice(#private::EXITS)]
        #[linkme(crate = #private::linkme)]
        static __POOL_EXIT: #private::ExitEntry = #private::ExitEntry {
            name: #name,
            type_id: || #private::type_id_of_val(&#ident),
            run: |__pool_state, __pool_out| #run,
        };
    }
}

fn init(func: &WorkerFn) -> TokenStream {
    let private = private();
    let ident = &func.original.sig.ident;
    let output = func.output.expect("checked: an init returns its state");
    let state = parse::init_state(output);
    let assert_state = assertion("assert_state", state);
    // `&A`, checked: the arguments a worker started fresh decodes.
    let args = match func.inputs[0].ty {
        Type::Reference(r) => &*r.elem,
        other => other,
    };
    let name = stable_name(func);
    let span = span_of(ident);
    let fresh = quote_spanned!(span=> (&&#private::InitProbe::<#args, #state, _>::new(#ident)).fresh(__pool_args, __pool_info));
    quote! {
        #assert_state
        #[#private::linkme::distributed_slice(#private::INITS)]
        #[linkme(crate = #private::linkme)]
        static __POOL_INIT: #private::InitEntry = #private::InitEntry {
            name: #name,
            type_id: || #private::type_id_of_val(&#ident),
            fresh: |__pool_args, __pool_info| {
                use #private::{FreshInit as _, ForkOnlyInit as _};
                #fresh
            },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(kind: Kind, item: &str) -> String {
        let item: TokenStream = item.parse().unwrap();
        expand(kind, TokenStream::new(), item).to_string()
    }

    /// Token text without spaces, so expectations read like source.
    fn squash(s: &str) -> String {
        s.chars().filter(|c| !c.is_whitespace()).collect()
    }

    #[test]
    fn stateful_task_asserts_each_type_and_registers() {
        let out = squash(&expand_str(
            Kind::Task,
            "/// Docs stay.\nfn classify(c: &mut Classifier, row: Row) -> Label { c.run(row) }",
        ));
        for expected in [
            "#[doc=\"Docs stay.\"]fnclassify(c:&mutClassifier,row:Row)->Label{c.run(row)}",
            "::pool_runtime::__private01::assert_state::<Classifier>();",
            "::pool_runtime::__private01::assert_argument::<Row>();",
            "::pool_runtime::__private01::assert_output::<Label>();",
            "#[::pool_runtime::__private01::linkme::distributed_slice(::pool_runtime::__private01::TASKS)]",
            "name:::core::concat!(::core::module_path!(),\"::\",\"classify\")",
            "type_id:||::pool_runtime::__private01::type_id_of_val(&classify)",
            "::pool_runtime::__private01::run_batch::<Classifier,_,_>(classify,__pool_state,__pool_batch)",
            "stage:::pool_runtime::__private01::StageGlue{",
            "::pool_runtime::__private01::stage_call::<Classifier,_,_>(classify,__pool_state,__pool_value)",
            "(&&::pool_runtime::__private01::SplitProbe::<Label>::NEW).split_glue()(__pool_value)",
        ] {
            assert!(out.contains(&squash(expected)), "missing {expected}\nin {out}");
        }
    }

    #[test]
    fn stateless_task_runs_without_state() {
        let out = squash(&expand_str(
            Kind::Task,
            "fn square(x: u64) -> u64 { x * x }",
        ));
        assert!(!out.contains("assert_state"), "{out}");
        assert!(out.contains("assert_argument::<u64>();"), "{out}");
        assert!(
            out.contains("run_stateless::<_,_>(square,__pool_state,__pool_batch)"),
            "{out}"
        );
        assert!(out.contains("stage_call_stateless::<_,_>(square,"), "{out}");
        assert!(out.contains("stage_decode::<(),_,_>(square,"), "{out}");
    }

    #[test]
    fn task_without_return_type_asserts_unit() {
        let out = squash(&expand_str(Kind::Task, "fn log(s: &Sink, line: String) {}"));
        assert!(out.contains("assert_state::<Sink>();"), "{out}");
        assert!(out.contains("assert_output::<()>();"), "{out}");
    }

    #[test]
    fn raw_identifier_registers_without_prefix() {
        let out = squash(&expand_str(Kind::Task, "fn r#match(x: u64) -> u64 { x }"));
        assert!(out.contains("\"::\",\"match\")"), "{out}");
        assert!(out.contains("type_id_of_val(&r#match)"), "{out}");
    }

    #[test]
    fn cfg_on_the_fn_also_guards_the_glue() {
        let out = squash(&expand_str(
            Kind::Task,
            "#[cfg(feature = \"x\")] fn f(x: u64) {}",
        ));
        assert!(
            out.contains("#[doc(hidden)]#[cfg(feature=\"x\")]#[allow(deprecated)]const_"),
            "{out}"
        );
    }

    #[test]
    fn init_asserts_the_state_inside_result() {
        let out = squash(&expand_str(
            Kind::Init,
            "fn load(a: &Config) -> Result<Classifier, String> { todo!() }",
        ));
        assert!(out.contains("assert_state::<Classifier>();"), "{out}");
        assert!(
            out.contains("distributed_slice(::pool_runtime::__private01::INITS)"),
            "{out}"
        );
        assert!(
            out.contains("(&&::pool_runtime::__private01::InitProbe::<Config,Classifier,_>::new(load)).fresh(__pool_args,__pool_info)"),
            "{out}"
        );
    }

    #[test]
    fn exit_registers_and_asserts() {
        let out = squash(&expand_str(
            Kind::Exit,
            "fn report(c: Classifier) -> u64 { c.hits }",
        ));
        for expected in [
            "assert_state::<Classifier>();",
            "assert_output::<u64>();",
            "distributed_slice(::pool_runtime::__private01::EXITS)",
            "run_exit::<Classifier,_>(report,__pool_state,__pool_out)",
        ] {
            assert!(out.contains(expected), "missing {expected}\nin {out}");
        }
    }

    #[test]
    fn invalid_fn_is_emitted_untouched_with_every_error() {
        let item = "async fn f<T>(x: &str) -> u64 { 1 }";
        let out = expand_str(Kind::Task, item);
        let squashed = squash(&out);
        assert!(squashed.starts_with(&squash(item)), "{out}");
        assert!(!squashed.contains("distributed_slice"), "{out}");
        assert_eq!(out.matches("compile_error").count(), 3, "{out}");
    }

    #[test]
    fn arguments_are_an_error_even_on_a_valid_fn() {
        let item: TokenStream = "fn f(x: u64) {}".parse().unwrap();
        let out = expand(Kind::Task, quote!(name = "x"), item).to_string();
        assert!(out.contains("accepts no arguments"), "{out}");
        assert!(!out.contains("distributed_slice"), "{out}");
    }

    #[test]
    fn not_a_function_is_kept_with_an_error() {
        let out = expand_str(Kind::Exit, "struct Report { hits: u64 }");
        assert!(squash(&out).starts_with("structReport{hits:u64}"), "{out}");
        assert!(out.contains("goes on a free function with a body"), "{out}");
    }
}
