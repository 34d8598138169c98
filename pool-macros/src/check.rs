//! The signature rules of each attribute.
//!
//! Every rule pushes its error into the [`Ctxt`] and checking goes on, so one
//! compile shows every mistake. Each error is spanned on the tokens at fault
//! and says what to write instead. Whether a type implements serde's traits
//! cannot be seen here: that is left to the assertions the runtime's macro
//! writes on the same tokens.

use proc_macro2::{Delimiter, Group, TokenStream};
use quote::{quote, ToTokens, TokenStreamExt};
use syn::visit::{self, Visit};
use syn::{
    GenericParam, Lifetime, Type, TypeBareFn, TypeImplTrait, TypeReference, TypeTraitObject,
};

use crate::ctxt::Ctxt;
use crate::parse::{peel, Input, Kind, WorkerFn};
use crate::pretty::tokens;

/// The runtime implements tasks of 0 to 6 arguments after the state.
pub const MAX_TASK_ARGS: usize = 6;

pub fn check(cx: &Ctxt, func: &WorkerFn) {
    check_signature(cx, func);
    match func.kind {
        Kind::Task => check_task(cx, func),
        Kind::Init => check_init(cx, func),
        Kind::Exit => check_exit(cx, func),
    }
}

/// Rules shared by the three attributes, in source order.
fn check_signature(cx: &Ctxt, func: &WorkerFn) {
    let attr = func.kind.attr();
    let sig = &func.original.sig;
    if let Some(token) = &sig.asyncness {
        cx.error_spanned_by(
            token,
            format!("{attr} functions cannot be `async`; remove `async`"),
        );
    }
    if let Some(token) = &sig.unsafety {
        cx.error_spanned_by(
            token,
            format!("{attr} functions cannot be `unsafe`; remove `unsafe` and put an `unsafe` block in the body"),
        );
    }
    if let Some(abi) = &sig.abi {
        cx.error_spanned_by(
            abi,
            format!(
                "{attr} functions cannot have an `extern` ABI; remove `{}`",
                tokens(abi)
            ),
        );
    }
    check_generics(cx, func);
    if let Some(receiver) = func.receiver {
        let instead = match func.kind {
            Kind::Task => "that takes the state as its first parameter, e.g. `state: &mut State`",
            Kind::Init => {
                "that takes the pool's arguments as its first parameter, e.g. `args: &Config`"
            }
            Kind::Exit => "that takes the state by value, e.g. `state: State`",
        };
        cx.error_spanned_by(
            receiver,
            format!("{attr} functions cannot take `self`; write a free function {instead}"),
        );
    }
    if let Some(variadic) = &sig.variadic {
        cx.error_spanned_by(
            variadic,
            format!("{attr} functions cannot be variadic; remove `...`"),
        );
    }
}

fn check_generics(cx: &Ctxt, func: &WorkerFn) {
    let attr = func.kind.attr();
    let generics = &func.original.sig.generics;
    if !generics.params.is_empty() {
        let written = tokens(generics);
        let lifetimes_only = generics
            .params
            .iter()
            .all(|p| matches!(p, GenericParam::Lifetime(_)));
        let msg = match (lifetimes_only, func.kind) {
            (true, Kind::Init) => format!(
                "{attr} functions cannot have lifetime parameters: the state lives as long as its \
                 worker and cannot borrow from the arguments; remove `{written}` and make the state \
                 own its data (`String`, `Vec<T>`, `Arc<T>`)"
            ),
            (true, _) => format!(
                "{attr} functions cannot have lifetime parameters; remove `{written}` and write `'_` \
                 where the state type needs a lifetime"
            ),
            (false, _) => format!(
                "{attr} functions cannot be generic: a worker finds the function by name and needs \
                 one concrete signature; remove `{written}` and use concrete types"
            ),
        };
        cx.error_spanned_by(generics, msg);
    } else if let Some(where_clause) = &generics.where_clause {
        cx.error_spanned_by(
            where_clause,
            format!(
                "{attr} functions cannot have a `where` clause; remove it and use concrete types"
            ),
        );
    }
}

fn check_task(cx: &Ctxt, func: &WorkerFn) {
    let attr = func.kind.attr();
    let (state, args) = func.split_state();
    let state_ty = state.and_then(Input::state_type);
    if let Some(ty) = state_ty {
        if let Some(Found::ImplTrait(i)) = find(ty, Allow::Named) {
            cx.error_spanned_by(
                i,
                format!(
                    "the state of a {attr} must be a concrete type, the one the pool's \
                     `#[worker_init]` returns; replace `{}` with it",
                    tokens(i)
                ),
            );
        }
    }
    let by_value = format!("{attr} arguments are sent to the worker by value");
    for arg in args {
        match (arg.state_type(), state_ty) {
            (Some(_), Some(first)) => cx.error_spanned_by(
                arg.ty,
                format!(
                    "a {attr} takes at most one state parameter; keep everything the worker needs in \
                     the first one, `{}`, or take `{}` by value as an argument",
                    tokens(first),
                    tokens(&*arg.reference.expect("a state is a reference").elem),
                ),
            ),
            (Some(elem), None) => cx.error_spanned_by(
                arg.ty,
                format!(
                    "{by_value}; take an owned type such as `{elem}` instead of `{ty}`, or if \
                     `{elem}` is the worker's state, make it the first parameter",
                    elem = tokens(elem),
                    ty = tokens(arg.ty),
                ),
            ),
            (None, _) => check_owned(cx, arg.ty, &by_value, "take"),
        }
    }
    if args.len() > MAX_TASK_ARGS {
        let extra = args[MAX_TASK_ARGS..].iter().map(|a| a.original);
        cx.error_spanned_by(
            quote!(#(#extra),*),
            format!(
                "a {attr} takes at most {MAX_TASK_ARGS} arguments after the state, found {}; group \
                 them in a struct or a tuple, e.g. `(a, b): (u64, u64)`",
                args.len()
            ),
        );
    }
    if let Some(output) = func.output {
        let lead = format!("{attr} results are sent back to the driver by value");
        check_owned(cx, output, &lead, "return");
    }
}

fn check_init(cx: &Ctxt, func: &WorkerFn) {
    let attr = func.kind.attr();
    let sig = &func.original.sig;
    let in_place = format!(
        "{attr} reads the pool's arguments in place, copy-on-write from the driver's memory"
    );
    match func.inputs.first() {
        None if func.receiver.is_none() => cx.syn_error(syn::Error::new(
            sig.paren_token.span.join(),
            format!("{attr} takes the pool's arguments by reference as its first parameter, e.g. `args: &Config`"),
        )),
        None => {}
        Some(first) if Input::is_worker_info(first.ty) => cx.error_spanned_by(
            first.original,
            format!(
                "{attr} takes the pool's arguments by reference first, then the `WorkerInfo`, e.g. \
                 `args: &Config, {}`",
                tokens(first.original)
            ),
        ),
        Some(first) => match first.reference {
            Some(r) if r.mutability.is_some() => cx.error_spanned_by(
                r,
                format!(
                    "{in_place} and cannot change them; take `&{elem}` instead of `&mut {elem}`",
                    elem = tokens(&*r.elem)
                ),
            ),
            Some(r) => {
                if let Some(Found::ImplTrait(i)) = find(&r.elem, Allow::Named) {
                    cx.error_spanned_by(
                        i,
                        format!(
                            "{attr} needs the concrete type of the pool's arguments; replace `{}` with it",
                            tokens(i)
                        ),
                    );
                }
            }
            None => cx.error_spanned_by(
                first.ty,
                format!(
                    "{in_place}; take them by reference: `{}: &{}`",
                    tokens(&*first.original.pat),
                    tokens(first.ty)
                ),
            ),
        },
    }
    if let Some(second) = func.inputs.get(1) {
        if !Input::is_worker_info(second.ty) {
            let msg = match second.reference {
                Some(r) if Input::is_worker_info(&r.elem) => format!(
                    "{attr} takes the `WorkerInfo` by value; write `{}: {}`",
                    tokens(&*second.original.pat),
                    tokens(&*r.elem)
                ),
                _ => format!(
                    "the second parameter of a {attr} can only be a `WorkerInfo`, e.g. `info: \
                     WorkerInfo`; put everything else the init needs in the pool's arguments, the \
                     first parameter"
                ),
            };
            cx.error_spanned_by(second.ty, msg);
        }
    }
    if func.inputs.len() > 2 {
        let extra = func.inputs[2..].iter().map(|a| a.original);
        cx.error_spanned_by(
            quote!(#(#extra),*),
            format!(
                "a {attr} takes at most two parameters, the pool's arguments and a `WorkerInfo`; put \
                 the rest in the arguments type"
            ),
        );
    }
    match func.output {
        None => cx.error_spanned_by(
            fn_through_params(sig),
            format!("{attr} must return the worker's state (or `Result<State, E>`); add `-> State`"),
        ),
        Some(output) => match find(output, Allow::Kept) {
            Some(Found::ImplTrait(i)) => cx.error_spanned_by(
                i,
                format!(
                    "{attr} must name the state type, the `S` of `Pool<S>`; replace `{}` with that type",
                    tokens(i)
                ),
            ),
            Some(found) => cx.error_spanned_by(
                &found,
                format!(
                    "the state a {attr} returns lives as long as its worker and cannot borrow; return \
                     a type that owns its data (`String`, `Vec<T>`, `Arc<T>`) instead of {}",
                    found.describe()
                ),
            ),
            None => {}
        },
    }
}

fn check_exit(cx: &Ctxt, func: &WorkerFn) {
    let attr = func.kind.attr();
    let sig = &func.original.sig;
    match func.inputs.first() {
        None if func.receiver.is_none() => cx.syn_error(syn::Error::new(
            sig.paren_token.span.join(),
            format!("{attr} consumes the worker's state; take it by value as the only parameter, e.g. `state: State`"),
        )),
        None => {}
        Some(first) => match first.reference {
            Some(r) => cx.error_spanned_by(
                r,
                format!(
                    "{attr} consumes the state; take it by value: `{}: {}`",
                    tokens(&*first.original.pat),
                    tokens(&*r.elem)
                ),
            ),
            None => {
                if let Some(Found::ImplTrait(i)) = find(first.ty, Allow::Named) {
                    cx.error_spanned_by(
                        i,
                        format!(
                            "the state of a {attr} must be a concrete type, the `S` of `Pool<S>`; \
                             replace `{}` with it",
                            tokens(i)
                        ),
                    );
                }
            }
        },
    }
    if func.inputs.len() > 1 {
        let extra = func.inputs[1..].iter().map(|a| a.original);
        cx.error_spanned_by(
            quote!(#(#extra),*),
            format!("a {attr} takes only the state; remove the other parameters"),
        );
    }
    if let Some(output) = func.output {
        let lead = format!("{attr} results are sent back to the driver by value");
        check_owned(cx, output, &lead, "return");
    }
}

/// A type that crosses between processes must own its data and be concrete.
fn check_owned(cx: &Ctxt, ty: &Type, lead: &str, verb: &str) {
    match find(ty, Allow::Sent) {
        None => {}
        Some(Found::ImplTrait(i)) => cx.error_spanned_by(
            i,
            format!("{lead}; replace `{}` with a concrete type", tokens(i)),
        ),
        Some(found) => cx.error_spanned_by(
            &found,
            format!(
                "{lead}; {verb} an owned type such as {} instead of {}",
                found.owned(),
                found.describe()
            ),
        ),
    }
}

/// The tokens from `fn` through the closing parenthesis of the parameters,
/// where a missing `-> Type` belongs.
fn fn_through_params(sig: &syn::Signature) -> TokenStream {
    let mut tokens = sig.fn_token.to_token_stream();
    let mut params = Group::new(Delimiter::Parenthesis, TokenStream::new());
    params.set_span(sig.paren_token.span.join());
    tokens.append(params);
    tokens
}

/// Something in a type that cannot cross to another process or be named.
enum Found<'a> {
    Reference(&'a TypeReference),
    Lifetime(&'a Lifetime),
    ImplTrait(&'a TypeImplTrait),
}

impl Found<'_> {
    /// `` `&str` ``, or `` one borrowing for `'_` ``.
    fn describe(&self) -> String {
        match self {
            Found::Reference(r) => format!("`{}`", tokens(*r)),
            Found::Lifetime(l) => format!("one borrowing for `{}`", tokens(*l)),
            Found::ImplTrait(i) => format!("`{}`", tokens(*i)),
        }
    }

    /// An owned type that takes the place of this borrow.
    fn owned(&self) -> String {
        let generic = "`String` or `Vec<u8>`".to_string();
        let Found::Reference(r) = self else {
            return generic;
        };
        match peel(&r.elem) {
            Type::Slice(s) => format!("`Vec<{}>`", tokens(&*s.elem)),
            Type::Path(p) if p.qself.is_none() => {
                let last = p.path.segments.last().expect("a path has a segment");
                let known = [
                    ("str", "String"),
                    ("Path", "PathBuf"),
                    ("OsStr", "OsString"),
                    ("CStr", "CString"),
                ];
                match known
                    .iter()
                    .find(|(b, _)| last.ident == b && last.arguments.is_none())
                {
                    Some((_, owned)) => format!("`{owned}`"),
                    None => format!("`{}`", tokens(p)),
                }
            }
            Type::Tuple(_) | Type::Array(_) => format!("`{}`", tokens(&*r.elem)),
            _ => generic,
        }
    }
}

impl ToTokens for Found<'_> {
    fn to_tokens(&self, out: &mut TokenStream) {
        match self {
            Found::Reference(r) => r.to_tokens(out),
            Found::Lifetime(l) => l.to_tokens(out),
            Found::ImplTrait(i) => i.to_tokens(out),
        }
    }
}

/// Which borrows [`find`] lets pass.
#[derive(Clone, Copy, PartialEq)]
enum Allow {
    /// A type sent between processes may have `'static` lifetimes
    /// (`Cow<'static, str>`), but no reference: not even `&'static str`
    /// can be deserialized into.
    Sent,
    /// The state an init returns may also be a `&'static T`.
    Kept,
    /// A state type written in a parameter may also write `'_`: the runtime
    /// requires `'static`, which the compiler then infers.
    Named,
}

/// The first (outermost, leftmost) borrow or `impl Trait` in `ty`. Function
/// pointers and trait objects are not looked into: a `&str` in `dyn Fn(&str)`
/// is no borrow of data, and such types fail the serde assertions anyway.
fn find(ty: &Type, allow: Allow) -> Option<Found<'_>> {
    struct Finder<'a> {
        allow: Allow,
        found: Option<Found<'a>>,
    }
    impl<'a> Visit<'a> for Finder<'a> {
        fn visit_type(&mut self, ty: &'a Type) {
            if self.found.is_none() {
                visit::visit_type(self, ty);
            }
        }
        fn visit_type_reference(&mut self, r: &'a TypeReference) {
            let is_static = r.lifetime.as_ref().is_some_and(|l| l.ident == "static");
            match self.allow {
                Allow::Sent => self.found = Some(Found::Reference(r)),
                Allow::Kept if !is_static => self.found = Some(Found::Reference(r)),
                _ => self.visit_type(&r.elem),
            }
        }
        fn visit_lifetime(&mut self, l: &'a Lifetime) {
            let allowed = l.ident == "static" || (self.allow == Allow::Named && l.ident == "_");
            if self.found.is_none() && !allowed {
                self.found = Some(Found::Lifetime(l));
            }
        }
        fn visit_type_impl_trait(&mut self, i: &'a TypeImplTrait) {
            if self.found.is_none() {
                self.found = Some(Found::ImplTrait(i));
            }
        }
        fn visit_type_bare_fn(&mut self, _: &'a TypeBareFn) {}
        fn visit_type_trait_object(&mut self, _: &'a TypeTraitObject) {}
    }
    let mut finder = Finder { allow, found: None };
    finder.visit_type(ty);
    finder.found
}

#[cfg(test)]
#[path = "check_test.rs"]
mod tests;
