//! weft's runtime and embedding API.
//!
//! The `weft` crate re-exports everything public here. The API mirrors wasmtime's on purpose:
//! an [`Engine`] (compiler + configuration + engine-wide function types) compiles [`Module`]s;
//! a [`Store<T>`] owns instances, memories, tables, globals, functions and the host's `T`; a
//! [`Linker<T>`] resolves imports by name; [`Func`]/[`TypedFunc`] call; host functions get a
//! [`Caller`].
//!
//! # Data structures
//!
//! - A store's items live in vectors inside a boxed [`StoreContext`]; handles (`Func`,
//!   `Memory`, ...) are indices tagged with the store's id. Everything compiled code points at
//!   (each instance's vmctx, memory and table definitions, global cells, host function
//!   contexts) is boxed, so the raw pointers between them never dangle while the store lives,
//!   and nothing is freed before the store.
//! - The vmctx of an instance holds pointers to its memories', tables' and globals'
//!   definitions and an inline funcref per function; an imported function's entry is a copy of
//!   the exporter's funcref, so calls never go through a second indirection.
//! - Function types are canonicalized engine-wide: a funcref carries the engine's type id, and
//!   `call_indirect` compares it with a constant compiled into the caller.
//! - Machine code is placed by [`vm`]'s code memory and registered in a process-wide map the
//!   signal handler reads (PC → trap code, PC → function and Wasm offset).
//!
//! # Traps
//!
//! Calls into Wasm go through one entry routine in `weft-arch` that records a landing pad. A
//! trap is a fault in compiled code; the SIGSEGV/SIGBUS/SIGILL/SIGFPE handler (on an
//! alternate signal stack) checks that the PC is a trap site of Wasm code, records the trap
//! code and a frame-pointer backtrace in the current activation, and rewrites the signal
//! context so the thread resumes at the landing pad, which returns to the Rust caller. No
//! `longjmp`, and no Rust frame is skipped: builtins and host functions return a status and
//! compiled code traps after they have returned. Faults that are not Wasm traps go to the
//! handler installed before weft's.
//!
//! # Ready for continuations
//!
//! The stack limit, the landing pad and the chain of activations belong to an activation
//! record and the store context, not to the OS thread's stack: the only thread-local is the
//! pointer to the running activation, which a stack switch swaps with the rest.

#![deny(unsafe_code)]

mod engine;
mod error;
mod externals;
mod func;
mod instance;
mod linker;
mod module;
mod promising;
mod store;
mod types;
mod values;
#[allow(unsafe_code)]
mod vm;

pub use engine::{Config, Engine};
pub use error::{Error, FrameInfo, Result, Trap, WasmBacktrace};
pub use externals::{Extern, Global, Memory, Table};
pub use func::{Caller, Func, IntoFunc, TypedFunc, WasmParams, WasmResults, WasmRet, WasmTy};
pub use instance::Instance;
pub use linker::Linker;
pub use module::Module;
pub use promising::{AsyncStore, IntoAsyncFunc, StoreAccess};
pub use store::{AsContext, AsContextMut, Store, StoreContext};
pub use types::{ExternType, FuncType, GlobalType, MemoryType, Mutability, TableType, ValType};
pub use values::{ExternRef, Val};
pub use vm::shared_store::{SharedStore, SharedStoreGuard};
pub use weft_compiler::MemoryMode;
