//! The engine's integration tests, one binary (so `cargo test` links Cranelift once for them).
//! Each module is one area of the embedding API. Tests that need a process of their own (how a
//! process dies, memory measurements) re-run this binary filtered to themselves, in a child
//! (`common::rerun_test_in_child`).

mod api;
mod async_calls;
mod async_rss;
mod common;
mod config;
mod errors;
mod exceptions;
mod host_funcs;
mod interrupt;
mod lazy;
mod memory64;
mod nested_calls;
mod pooling;
mod serialize;
mod shadow_stack;
mod simd;
mod stacks;
mod typed_refs;
