//! # weft
//!
//! A WebAssembly engine: a Cranelift JIT for x86-64 and AArch64 whose calls can suspend deep
//! inside their native stack when a host import has to wait, and resume later (promising
//! calls and suspending imports; the design is in `weft-runtime`'s crate docs).
//!
//! This crate is what embedders use. The API follows wasmtime's on purpose: an [`Engine`]
//! compiles [`Module`]s; a [`Store`] owns instances and the host's data; a [`Linker`] resolves
//! imports; [`Func`] and [`TypedFunc`] call exports; host functions receive a [`Caller`].
//!
//! ```
//! use weft::{Engine, Linker, Module, Store};
//!
//! let engine = Engine::default();
//! let module = Module::new(&engine, r#"
//!     (module (func (export "add") (param i32 i32) (result i32)
//!         local.get 0 local.get 1 i32.add))
//! "#)?;
//! let mut store = Store::new(&engine, ());
//! let instance = Linker::new(&engine).instantiate(&mut store, &module)?;
//! let add = instance.get_typed_func::<(i32, i32), i32>(&mut store, "add")?;
//! assert_eq!(add.call(&mut store, (2, 3))?, 5);
//! # Ok::<(), weft::Error>(())
//! ```
//!
//! Errors compose as in wasmtime: `?` takes any `std::error::Error + Send + Sync` into
//! [`Error`] (an `io::Error`, a `wat` error, your own), in `main` and in host functions, and
//! [`Error::downcast_ref`] gets it back; weft's own failures stay matchable variants (see
//! `weft-runtime`'s crate docs for why).
//!
//! ```
//! # #[derive(Debug)]
//! # struct OutOfCoffee;
//! # impl std::fmt::Display for OutOfCoffee {
//! #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
//! #         f.write_str("out of coffee")
//! #     }
//! # }
//! # impl std::error::Error for OutOfCoffee {}
//! use weft::{Engine, Linker, Module, Store};
//!
//! fn brew(cups: i32) -> Result<i32, OutOfCoffee> {
//!     if cups < 3 { Ok(cups * 10) } else { Err(OutOfCoffee) }
//! }
//!
//! fn main() -> weft::Result<()> {
//!     let engine = Engine::default();
//!     let wasm = wat::parse_str(r#"
//!         (module (import "env" "brew" (func $brew (param i32) (result i32)))
//!                 (func (export "run") (param i32) (result i32) (call $brew (local.get 0))))
//!     "#)?;
//!     let module = Module::new(&engine, wasm)?;
//!     let mut linker = Linker::new(&engine);
//!     linker.func_wrap("env", "brew", |cups: i32| -> weft::Result<i32> { Ok(brew(cups)?) })?;
//!     let mut store = Store::new(&engine, ());
//!     let run = linker
//!         .instantiate(&mut store, &module)?
//!         .get_typed_func::<i32, i32>(&mut store, "run")?;
//!     assert_eq!(run.call(&mut store, 2)?, 20);
//!     assert!(run.call(&mut store, 3).unwrap_err().is::<OutOfCoffee>());
//!     Ok(())
//! }
//! ```
//!
//! This crate is the engine only. The crates below it: `weft-compiler` (validation and Wasm →
//! Cranelift IR → machine code), `weft-runtime` (stores, instances, memories, tables, traps;
//! the API types are defined there and re-exported here), `weft-arch` (the per-ISA assembly).
//! Beside it: `weft-wast` (the spec-script runner) and `weft-cli` (the `weft` command).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use weft_runtime::*;
