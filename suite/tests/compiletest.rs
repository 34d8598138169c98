//! The attributes' UI tests: every rejected signature is a compile error under
//! the user's own tokens (tests/ui/*.rs with the expected .stderr beside), and
//! every accepted shape compiles (tests/ui/pass/*.rs).
//!
//! Regenerate the .stderr files with `TRYBUILD=overwrite cargo test --test
//! compiletest` and read the diff: each error must sit under the tokens at
//! fault and say what to write. They match the one toolchain of our machines.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
