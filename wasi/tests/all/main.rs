//! The WASI crate's integration tests, in one binary: each test binary links the engine and
//! instantiates its generic API afresh, so one binary instead of five saves most of their build
//! (and CI's, twice: natively and for AArch64).

mod common;
mod filesystem;
mod preview1;
mod programs;
mod suspend;
mod testsuite;
