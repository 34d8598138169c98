//! Output for invalid input: the user's item untouched, then the errors.
//!
//! Keeping the item means call sites and unit tests still compile, so the
//! user sees the signature errors rather than a cascade of "cannot find
//! function" errors.

use proc_macro2::TokenStream;
use quote::quote;

pub fn expand(item: TokenStream, errors: syn::Error) -> TokenStream {
    let errors = errors.into_compile_error();
    quote! {
        #item
        #errors
    }
}
