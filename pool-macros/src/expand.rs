//! Code generation: the unchanged function, and next to it one call of the
//! runtime's `macro_rules!` for its kind (`__private01::task_entry!`,
//! `exit_entry!`, `init_entry!`) with the user's own tokens: the fn's name
//! and the types of its signature, each keeping its span. That macro writes
//! the type assertions and the registry entry, so the glue is the runtime's
//! alone and changes with it.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::ext::IdentExt;
use syn::{Item, ItemFn};

use crate::check;
use crate::ctxt::Ctxt;
use crate::fallback;
use crate::parse::{self, Kind, WorkerFn};

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

/// The fn's name as a string literal, without `r#`: the runtime's macro
/// makes it `module::path::name`, the stable name.
fn name(func: &WorkerFn) -> syn::LitStr {
    let ident = &func.original.sig.ident;
    syn::LitStr::new(&ident.unraw().to_string(), ident.span())
}

/// The return type, `()` when there is none.
fn output(func: &WorkerFn) -> TokenStream {
    match func.output {
        Some(ty) => ty.to_token_stream(),
        None => quote!(()),
    }
}

/// `task_entry! { name, fn, state, args, output }`: the user's own tokens,
/// each type with its span, for the runtime's macro to assert and register.
fn task(func: &WorkerFn) -> TokenStream {
    let private = private();
    let name = name(func);
    let ident = &func.original.sig.ident;
    let (state, args) = func.split_state();
    // `&mut S` or `&S` as written, less a lifetime on the reference.
    let state = state.map(|input| {
        let r = input.reference.expect("a state is a reference");
        let (and, mutability, elem) = (&r.and_token, &r.mutability, &r.elem);
        quote!(state: #and #mutability #elem,)
    });
    let args = args.iter().map(|arg| arg.ty);
    let output = output(func);
    quote! {
        #private::task_entry! {
            name: #name,
            fn: #ident,
            #state
            args: [#(#args),*],
            output: #output,
        }
    }
}

/// `exit_entry! { name, fn, state, output }`.
fn exit(func: &WorkerFn) -> TokenStream {
    let private = private();
    let name = name(func);
    let ident = &func.original.sig.ident;
    let state = func.inputs[0].ty;
    let output = output(func);
    quote! {
        #private::exit_entry! {
            name: #name,
            fn: #ident,
            state: #state,
            output: #output,
        }
    }
}

/// `init_entry! { name, fn, state, args }`: the `S` of `-> S` or
/// `-> Result<S, E>`, and the `A` of `&A`.
fn init(func: &WorkerFn) -> TokenStream {
    let private = private();
    let name = name(func);
    let ident = &func.original.sig.ident;
    let output = func.output.expect("checked: an init returns its state");
    let state = parse::init_state(output);
    // `&A`, checked: what a worker started fresh decodes.
    let args = match func.inputs[0].ty {
        syn::Type::Reference(r) => &*r.elem,
        other => other,
    };
    quote! {
        #private::init_entry! {
            name: #name,
            fn: #ident,
            state: #state,
            args: #args,
        }
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

    /// The one runtime macro call in `out`, squashed, from its path to its
    /// closing brace; asserts that nothing else of the runtime is named.
    fn the_call(out: &str) -> String {
        assert_eq!(out.matches("__private01").count(), 1, "{out}");
        let start = out.find("::pool_runtime::__private01::").expect(out);
        let end = start + out[start..].find('}').expect(out) + 1;
        out[start..end].to_string()
    }

    #[test]
    fn stateful_task_is_one_call_with_the_users_tokens() {
        let out = squash(&expand_str(
            Kind::Task,
            "/// Docs stay.\nfn classify(c: &mut Classifier, row: Row) -> Label { c.run(row) }",
        ));
        assert!(
            out.contains(
                "#[doc=\"Docsstay.\"]fnclassify(c:&mutClassifier,row:Row)->Label{c.run(row)}"
            ),
            "{out}"
        );
        assert_eq!(
            the_call(&out),
            "::pool_runtime::__private01::task_entry!{name:\"classify\",fn:classify,\
             state:&mutClassifier,args:[Row],output:Label,}"
        );
        assert!(
            out.contains("#[doc(hidden)]#[allow(deprecated)]const_:()={::pool_runtime"),
            "{out}"
        );
    }

    #[test]
    fn stateless_task_passes_no_state() {
        let out = squash(&expand_str(
            Kind::Task,
            "fn add(a: u64, (x, y): (u64, u64)) -> u64 { a + x + y }",
        ));
        assert_eq!(
            the_call(&out),
            "::pool_runtime::__private01::task_entry!{name:\"add\",fn:add,\
             args:[u64,(u64,u64)],output:u64,}"
        );
    }

    #[test]
    fn task_by_ref_without_return_type_returns_unit() {
        let out = squash(&expand_str(Kind::Task, "fn log(s: &Sink, line: String) {}"));
        assert_eq!(
            the_call(&out),
            "::pool_runtime::__private01::task_entry!{name:\"log\",fn:log,\
             state:&Sink,args:[String],output:(),}"
        );
    }

    #[test]
    fn a_lifetime_on_the_state_reference_is_left_out() {
        let out = squash(&expand_str(
            Kind::Task,
            "fn find(p: &'_ mut Parser<'_>) -> bool { true }",
        ));
        assert!(out.contains("state:&mutParser<'_>,args:[],"), "{out}");
    }

    #[test]
    fn raw_identifier_registers_without_prefix() {
        let out = squash(&expand_str(Kind::Task, "fn r#match(x: u64) -> u64 { x }"));
        assert!(
            the_call(&out).contains("name:\"match\",fn:r#match,"),
            "{out}"
        );
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
    fn init_registers_with_the_state_inside_result() {
        let out = squash(&expand_str(
            Kind::Init,
            "fn load(a: &Config) -> Result<Classifier, String> { todo!() }",
        ));
        assert_eq!(
            the_call(&out),
            "::pool_runtime::__private01::init_entry!{name:\"load\",fn:load,state:Classifier,args:Config,}"
        );
    }

    #[test]
    fn exit_is_one_call_with_the_users_tokens() {
        let out = squash(&expand_str(
            Kind::Exit,
            "fn report(c: Classifier) -> u64 { c.hits }",
        ));
        assert_eq!(
            the_call(&out),
            "::pool_runtime::__private01::exit_entry!{name:\"report\",fn:report,\
             state:Classifier,output:u64,}"
        );
    }

    /// The tokens passed on keep the user's spans: what the runtime's macro
    /// asserts on them is reported under the signature.
    #[test]
    fn the_tokens_passed_on_keep_their_spans() {
        fn idents(tokens: TokenStream, out: &mut Vec<proc_macro2::Ident>) {
            for tt in tokens {
                match tt {
                    proc_macro2::TokenTree::Ident(i) => out.push(i),
                    proc_macro2::TokenTree::Group(g) => idents(g.stream(), out),
                    _ => {}
                }
            }
        }
        let src = "fn classify(c: &mut Classifier, row: Row) -> Label { todo!() }";
        let mut all = Vec::new();
        idents(
            expand(Kind::Task, TokenStream::new(), src.parse().unwrap()),
            &mut all,
        );
        let call = all
            .iter()
            .position(|i| i == "task_entry")
            .expect("the call");
        let columns: Vec<(String, usize)> = all[call..]
            .iter()
            .filter(|i| {
                ["classify", "mut", "Classifier", "Row", "Label"]
                    .iter()
                    .any(|w| *i == w)
            })
            .map(|i| (i.to_string(), i.span().start().column))
            .collect();
        let at = |s: &str| src.find(s).unwrap();
        assert_eq!(
            columns,
            [
                ("classify".into(), at("classify")),
                ("mut".into(), at("mut")),
                ("Classifier".into(), at("Classifier")),
                ("Row".into(), at("Row)")),
                ("Label".into(), at("Label")),
            ]
        );
    }

    #[test]
    fn invalid_fn_is_emitted_untouched_with_every_error() {
        let item = "async fn f<T>(x: &str) -> u64 { 1 }";
        let out = expand_str(Kind::Task, item);
        let squashed = squash(&out);
        assert!(squashed.starts_with(&squash(item)), "{out}");
        assert!(!squashed.contains("__private01"), "{out}");
        assert_eq!(out.matches("compile_error").count(), 3, "{out}");
    }

    #[test]
    fn arguments_are_an_error_even_on_a_valid_fn() {
        let item: TokenStream = "fn f(x: u64) {}".parse().unwrap();
        let out = expand(Kind::Task, quote!(name = "x"), item).to_string();
        assert!(out.contains("accepts no arguments"), "{out}");
        assert!(!out.contains("__private01"), "{out}");
    }

    #[test]
    fn not_a_function_is_kept_with_an_error() {
        let out = expand_str(Kind::Exit, "struct Report { hits: u64 }");
        assert!(squash(&out).starts_with("structReport{hits:u64}"), "{out}");
        assert!(out.contains("goes on a free function with a body"), "{out}");
    }
}
