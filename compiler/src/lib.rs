//! weft's compiler: WebAssembly in, machine code and its metadata out.
//!
//! # Pipeline
//!
//! 1. **Validate** the whole binary with wasmparser before anything else, against WebAssembly
//!    2.0 plus the 3.0 features weft implements (`Compiler::features`: tail calls, extended
//!    constant expressions, relaxed SIMD, typed function references, multi-memory, exception
//!    handling, memory64).
//!    GC is on for validation alone, because 3.0's rules for recursion groups and constant
//!    expressions come with it there; GC's own types and instructions are refused by the
//!    parser and the translator. Everything downstream assumes valid input and says so: the translator does not re-check
//!    types or stack heights (nor whether a non-nullable local is set before it is read).
//! 2. **Parse** the module-level structure into a [`ModuleInfo`] ([`parse`]: types, index
//!    spaces, imports, exports, segments as constant expressions, function body ranges, the name
//!    section). It is shared read-only by the translator, the environment and the runtime.
//! 3. **Translate** each function body to Cranelift IR ([`translate`]). The translator owns
//!    control flow, locals and the numeric instructions; whatever touches runtime state —
//!    memories, tables, globals, calls, `ref.func`, bulk operations — goes through the
//!    [`FuncEnvironment`] trait ([`environ`]). weft's implementation ([`func_environ`]) is the
//!    only code here that knows the vmctx layout and the builtins, which are written down once
//!    in the `weft-environ` crate (`vmoffsets`, `builtins`) and read from there by the runtime
//!    too.
//! 4. **Compile** every function with Cranelift (`opt_level=speed`, frame pointers preserved so
//!    backtraces can walk them), in parallel on scoped threads pulling from a shared counter
//!    ([`compile`]). Each result is a `weft_environ::CompiledFunction`: plain bytes plus
//!    relocations (calls between the module's functions), trap sites and source offsets, all in
//!    weft's own types (trap codes become `TrapKind`s here, [`traps`]); the runtime places the
//!    code itself and never sees a Cranelift type.
//!
//! # Conventions compiled code follows
//!
//! - Every Wasm function takes `(callee_vmctx, caller_vmctx, params...)` with Cranelift's
//!   `tail` calling convention and returns its results (any number). Under that convention
//!   `return_call*` become Cranelift tail calls that reuse the caller's frame (the callee pops
//!   its stack arguments), so tail-call chains run in constant stack.
//! - Its prologue compares the stack pointer with the limit in the store context
//!   (`vmctx → store context → stack limit`), so running out of stack is a trap, not a fault on
//!   an unknown page. The limit belongs to the running activation, which is what lets a call
//!   move to another stack.
//! - Every trap is a trapping instruction with a code: Cranelift's own (division, conversion,
//!   stack overflow, heap out of bounds on guard pages) or a user code for one of weft's
//!   [`TrapKind`]s ([`traps::trap_code`]). A builtin or host function that fails records why and
//!   returns 0; the code then traps with `TrapKind::Recorded`. So no Rust frame is ever unwound
//!   by a trap.
//! - Nothing engine-specific is compiled in: `call_indirect` reads the expected engine type id
//!   from the vmctx, so the code depends only on the module and the target.
//! - Exceptions cost nothing until one is thrown. Inside a `try_table`, every call that
//!   returns is a Cranelift `try_call` whose exception table names the function's vmctx (the
//!   instance its tag indices are relative to) and the open catch clauses, innermost first;
//!   the compiler hands the runtime each such call site's return offset, frame offset, where
//!   the vmctx was spilled and the handlers (`weft_environ::CallSiteHandlers`). `throw`
//!   allocates the exception (`exn_new`), stores the payload, and calls the runtime's throw
//!   stub (also as a `try_call` inside a `try_table`, so the function's own handlers count);
//!   the stub walks the frames and resumes at the handler, or returns when nothing in the
//!   activation catches it, and the code traps with `TrapKind::Recorded`.
//! - Host code is reached through per-signature trampolines: array-to-Wasm (the host calls
//!   Wasm with a buffer of 16-byte value slots), Wasm-to-array (Wasm calls a host function
//!   the same way) and, for types with at most one number result and number parameters,
//!   Wasm-to-native (Wasm calls a host function's register-argument shim with the C calling
//!   convention and tests the status it returns beside the result; see
//!   `weft_environ::vmoffsets::host_func::NATIVE_CALL`).

#![forbid(unsafe_code)]

pub mod compile;
pub mod environ;
pub mod func_environ;
pub mod parse;
pub mod translate;
pub mod traps;

pub use compile::{
    CodeFingerprint, CompileScratch, Compiler, CompilerOptions, Features, MAX_MEMORY32_BYTES,
    MemoryBounds, MemoryMode, Tier, native_call_supported,
};
pub use environ::{CallKind, ExceptionHandler, FuncEnvironment};
pub use parse::parse_module;
pub use wasmparser::{self, FuncType, RefType, ValType};
pub use weft_environ::{CompiledFunction, ModuleInfo, TrapKind};

/// Why a module could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The binary is malformed or fails validation.
    #[error("{message} (at offset {offset:#x})")]
    Invalid { message: String, offset: usize },
    /// The module uses something weft does not implement.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Cranelift rejected the generated code; a bug in weft.
    #[error("code generation failed: {0}")]
    Codegen(String),
}

impl From<wasmparser::BinaryReaderError> for CompileError {
    fn from(e: wasmparser::BinaryReaderError) -> Self {
        CompileError::Invalid {
            message: e.message().to_string(),
            offset: e.offset() as usize,
        }
    }
}
