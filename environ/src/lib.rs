//! The contract between weft's compiler and its runtime, in a crate that depends on neither
//! (and not on Cranelift): everything compiled code assumes about the runtime, and everything
//! the runtime must know about compiled code, is written down here once.
//!
//! - [`vmoffsets`]: the layout of the instance's `VMContext` and of every structure compiled
//!   code reads (store context, memory and table definitions, funcrefs, globals). The compiler
//!   emits loads at these offsets; the runtime builds its `#[repr(C)]` structures to match and
//!   asserts at compile time that they do.
//! - [`builtins`]: the runtime functions compiled code calls, declared once in
//!   [`foreach_builtin!`]. The compiler's call signatures, the slots of the builtin table and the
//!   runtime's table type ([`BuiltinTable`]) are generated from that list, so a builtin whose
//!   runtime signature disagrees with what the compiler calls does not compile.
//! - [`TrapKind`]: why a trap site traps. The compiler converts Cranelift's trap codes when it
//!   compiles a function; the runtime's code memory, signal handler and trap reporting see only
//!   this enum.
//! - [`compiled`]: a compiled function (code, relocations, trap sites, source locations) in
//!   weft's own types.
//! - [`ModuleInfo`]: the module description both sides share.
//!
//! Nothing here depends on the engine that compiles or runs a module: compiled code reads the
//! engine's type ids from the vmctx rather than holding them as immediates, which is what lets
//! code compiled by one engine run in another (a code cache).

#![forbid(unsafe_code)]

pub mod builtins;
pub mod compiled;
pub mod module_info;
pub mod trap;
pub mod vmoffsets;

pub use builtins::{BuiltinFunction, BuiltinTable, BuiltinType};
pub use compiled::{
    CallSiteHandlers, CompiledFunction, LibCall, RelocKind, RelocTarget, Relocation,
};
pub use module_info::{ConstInit, ConstOp, ModuleInfo};
pub use trap::TrapKind;
