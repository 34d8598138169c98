//! The integration and UI tests, the benches and the database example of
//! `pool-runtime`; nothing to use here.
