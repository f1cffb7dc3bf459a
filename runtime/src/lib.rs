//! weft's runtime and embedding API.
//!
//! (The full essay is written once the pieces settle; see the module docs meanwhile.)

#![deny(unsafe_code)]

mod engine;
mod error;
mod externals;
mod func;
mod instance;
mod linker;
mod module;
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
pub use store::{AsContext, AsContextMut, Store, StoreContext};
pub use types::{ExternType, FuncType, GlobalType, MemoryType, Mutability, TableType, ValType};
pub use values::{ExternRef, Val};
pub use weft_compiler::MemoryMode;
