//! Examples, integration tests, UI tests and benches of `pool-runtime`; nothing to use here.
