//! The attribute's arguments and a borrowed, typed view of the function.

use proc_macro2::TokenStream;
use syn::{
    FnArg, GenericArgument, ItemFn, PatType, PathArguments, Receiver, ReturnType, Type,
    TypeReference,
};

use crate::ctxt::Ctxt;
use crate::pretty;

/// Which attribute is being expanded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Task,
    Init,
    Exit,
}

/// Attribute names, as written by users and quoted in messages.
pub const WORKER_TASK: &str = "worker_task";
pub const WORKER_INIT: &str = "worker_init";
pub const WORKER_EXIT: &str = "worker_exit";

impl Kind {
    /// `worker_task`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Task => WORKER_TASK,
            Kind::Init => WORKER_INIT,
            Kind::Exit => WORKER_EXIT,
        }
    }

    /// `` `#[worker_task]` ``, for messages.
    pub fn attr(self) -> String {
        format!("`#[{}]`", self.name())
    }

    /// One accepted signature, for messages.
    pub fn example(self) -> &'static str {
        match self {
            Kind::Task => "fn classify(state: &mut State, row: Row) -> Label { ... }",
            Kind::Init => "fn load(args: &Config) -> State { ... }",
            Kind::Exit => "fn report(state: State) -> Summary { ... }",
        }
    }
}

/// Checks the attribute's arguments: none are accepted.
pub fn parse_args(cx: &Ctxt, kind: Kind, args: &TokenStream) {
    if !args.is_empty() {
        cx.error_spanned_by(
            args,
            format!(
                "{} accepts no arguments, found `{}`; write `#[{}]` alone",
                kind.attr(),
                pretty::tokens(args),
                kind.name(),
            ),
        );
    }
}

/// The function under one of the attributes, with the pieces the checks and
/// the expansion need. Every node keeps a reference to the user's tokens so
/// errors point at them.
pub struct WorkerFn<'a> {
    pub kind: Kind,
    pub original: &'a ItemFn,
    pub receiver: Option<&'a Receiver>,
    pub inputs: Vec<Input<'a>>,
    /// `None` when the function has no `-> Type`.
    pub output: Option<&'a Type>,
}

/// One typed parameter (`pat: Type`).
pub struct Input<'a> {
    pub original: &'a PatType,
    pub ty: &'a Type,
    /// Set when the type is `&T` or `&mut T`.
    pub reference: Option<&'a TypeReference>,
}

impl<'a> WorkerFn<'a> {
    pub fn from_syn(kind: Kind, original: &'a ItemFn) -> Self {
        let mut receiver = None;
        let mut inputs = Vec::new();
        for arg in &original.sig.inputs {
            match arg {
                FnArg::Receiver(r) => receiver = Some(r),
                FnArg::Typed(pat_type) => {
                    let ty = &*pat_type.ty;
                    let reference = match peel(ty) {
                        Type::Reference(r) => Some(r),
                        _ => None,
                    };
                    inputs.push(Input {
                        original: pat_type,
                        ty,
                        reference,
                    });
                }
            }
        }
        let output = match &original.sig.output {
            ReturnType::Default => None,
            ReturnType::Type(_, ty) => Some(&**ty),
        };
        WorkerFn {
            kind,
            original,
            receiver,
            inputs,
            output,
        }
    }

    /// A task's state parameter, if its first parameter is one, and the
    /// arguments after it.
    pub fn split_state(&self) -> (Option<&Input<'a>>, &[Input<'a>]) {
        match self.inputs.first() {
            Some(first) if first.state_type().is_some() => (Some(first), &self.inputs[1..]),
            _ => (None, &self.inputs[..]),
        }
    }
}

impl Input<'_> {
    /// `S` when this parameter is `&mut S` or `&S` with `S` something a
    /// worker can keep: not `str`, a slice, `dyn Trait`, `Path`, `OsStr`,
    /// `CStr` or another reference, which are borrowed arguments.
    pub fn state_type(&self) -> Option<&Type> {
        let elem = &*self.reference?.elem;
        let is_state = match peel(elem) {
            Type::Slice(_)
            | Type::TraitObject(_)
            | Type::Reference(_)
            | Type::Ptr(_)
            | Type::Never(_)
            | Type::BareFn(_) => false,
            Type::Path(p) if p.qself.is_none() => match p.path.segments.last() {
                Some(last) => {
                    !(last.arguments.is_none()
                        && ["str", "Path", "OsStr", "CStr"]
                            .iter()
                            .any(|s| last.ident == s))
                }
                None => true,
            },
            _ => true,
        };
        is_state.then_some(elem)
    }

    /// Whether the type's last path segment is `WorkerInfo`, with no generics.
    pub fn is_worker_info(ty: &Type) -> bool {
        match peel(ty) {
            Type::Path(p) if p.qself.is_none() => p
                .path
                .segments
                .last()
                .is_some_and(|last| last.ident == "WorkerInfo" && last.arguments.is_none()),
            _ => false,
        }
    }
}

/// Strips the invisible groups `macro_rules!` wraps around `$t:ty` and the
/// parentheses of `(T)`.
pub fn peel(mut ty: &Type) -> &Type {
    loop {
        match ty {
            Type::Group(g) => ty = &g.elem,
            Type::Paren(p) => ty = &p.elem,
            _ => return ty,
        }
    }
}

/// The state an init builds: `S` for a return type `Result<S, E>` (any path
/// ending in `Result` with two type arguments), else the whole type.
pub fn init_state(output: &Type) -> &Type {
    if let Type::Path(p) = peel(output) {
        if let Some(last) = p.path.segments.last() {
            if let (true, PathArguments::AngleBracketed(args)) =
                (last.ident == "Result", &last.arguments)
            {
                let mut types = args.args.iter().filter_map(|a| match a {
                    GenericArgument::Type(t) => Some(t),
                    _ => None,
                });
                if let (Some(ok), Some(_), None, 2) =
                    (types.next(), types.next(), types.next(), args.args.len())
                {
                    return ok;
                }
            }
        }
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    #[test]
    fn state_is_a_leading_reference_to_a_sized_type() {
        let f: ItemFn = parse_quote!(
            fn f(c: &mut Classifier, row: Row) {}
        );
        let func = WorkerFn::from_syn(Kind::Task, &f);
        let (state, args) = func.split_state();
        let state_ty = state.unwrap().state_type().unwrap();
        assert_eq!(pretty::tokens(state_ty), "Classifier");
        assert_eq!(args.len(), 1);
    }

    #[test]
    fn borrowed_data_is_not_a_state() {
        for f in [
            parse_quote!(
                fn f(s: &str) {}
            ),
            parse_quote!(
                fn f(s: &[u8]) {}
            ),
            parse_quote!(
                fn f(s: &std::path::Path) {}
            ),
            parse_quote!(
                fn f(s: &OsStr) {}
            ),
            parse_quote!(
                fn f(s: &dyn Display) {}
            ),
            parse_quote!(
                fn f(s: u64) {}
            ),
        ] {
            let f: ItemFn = f;
            let func = WorkerFn::from_syn(Kind::Task, &f);
            let (state, args) = func.split_state();
            assert!(state.is_none(), "{}", pretty::tokens(&f.sig));
            assert_eq!(args.len(), 1);
        }
    }

    #[test]
    fn init_state_unwraps_result() {
        let ty: Type = parse_quote!(Result<Classifier, std::io::Error>);
        assert_eq!(pretty::tokens(init_state(&ty)), "Classifier");
        let ty: Type = parse_quote!(std::io::Result<Classifier>);
        assert_eq!(
            pretty::tokens(init_state(&ty)),
            "std::io::Result<Classifier>"
        );
        let ty: Type = parse_quote!(Classifier);
        assert_eq!(pretty::tokens(init_state(&ty)), "Classifier");
    }

    #[test]
    fn worker_info_by_last_segment() {
        assert!(Input::is_worker_info(&parse_quote!(WorkerInfo)));
        assert!(Input::is_worker_info(&parse_quote!(
            pool_runtime::WorkerInfo
        )));
        assert!(!Input::is_worker_info(&parse_quote!(&WorkerInfo)));
        assert!(!Input::is_worker_info(&parse_quote!(usize)));
    }
}
