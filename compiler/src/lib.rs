//! weft's compiler: WebAssembly in, machine code and its metadata out.
//!
//! (The full essay is written with the compile driver.)

#![forbid(unsafe_code)]

pub mod compile;
pub mod environ;
pub mod func_environ;
pub mod module_info;
pub mod translate;
pub mod vmoffsets;

pub use compile::{
    CompiledFunction, Compiler, CompilerOptions, MemoryMode, RelocTarget, Relocation,
};
pub use cranelift_codegen::binemit::Reloc;
pub use cranelift_codegen::ir::{LibCall, TrapCode};
pub use environ::FuncEnvironment;
pub use module_info::{ModuleInfo, parse_module};
pub use wasmparser::{self, FuncType, RefType, ValType};

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
