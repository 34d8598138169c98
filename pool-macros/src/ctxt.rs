//! An accumulator of errors that cannot be forgotten.

use std::cell::RefCell;
use std::fmt::Display;
use std::thread;

use quote::ToTokens;

/// Collects every error found while parsing and checking one function, so one
/// compile shows every mistake.
///
/// [`Ctxt::check`] must be called before the context is dropped; forgetting
/// it is a bug in this crate and panics.
pub struct Ctxt {
    /// `None` once [`Ctxt::check`] has run.
    errors: RefCell<Option<Vec<syn::Error>>>,
}

impl Ctxt {
    pub const fn new() -> Self {
        Self {
            errors: RefCell::new(Some(Vec::new())),
        }
    }

    /// Adds an error spanning the tokens of `obj`, from its first token to
    /// its last.
    pub fn error_spanned_by<T: ToTokens, M: Display>(&self, obj: T, msg: M) {
        self.syn_error(syn::Error::new_spanned(obj.into_token_stream(), msg));
    }

    /// Adds an error built elsewhere.
    pub fn syn_error(&self, err: syn::Error) {
        self.errors
            .borrow_mut()
            .as_mut()
            .expect("Ctxt::check already called")
            .push(err);
    }

    /// Consumes the context: all the errors, combined into one, or `Ok`.
    pub fn check(self) -> syn::Result<()> {
        let mut errors = self
            .errors
            .borrow_mut()
            .take()
            .expect("Ctxt::check already called")
            .into_iter();
        let Some(mut combined) = errors.next() else {
            return Ok(());
        };
        for rest in errors {
            combined.combine(rest);
        }
        Err(combined)
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        assert!(
            thread::panicking() || self.errors.borrow().is_none(),
            "forgot to check for errors"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::Ctxt;

    #[test]
    fn combines_every_error_in_order() {
        let cx = Ctxt::new();
        cx.error_spanned_by(quote::quote!(a), "first");
        cx.error_spanned_by(quote::quote!(b), "second");
        let messages: Vec<String> = cx
            .check()
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(messages, ["first", "second"]);
    }

    #[test]
    fn no_error_is_ok() {
        assert!(Ctxt::new().check().is_ok());
    }

    #[test]
    #[should_panic(expected = "forgot to check for errors")]
    fn unchecked_context_panics() {
        let _cx = Ctxt::new();
    }
}
