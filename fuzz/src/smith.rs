//! wasm-smith configurations: what weft supports (WebAssembly 2.0 and the parts of 3.0 it has),
//! and deterministic, terminating variants of it for the execution targets.

use arbitrary::Unstructured;
use wasm_smith::{Config, Module};

/// What weft validates by default — WebAssembly 2.0 with tail calls, extended constant
/// expressions, relaxed SIMD and multi-memory — with sizes kept small so that cases stay fast:
/// memories of at most 16 pages, tables of at most 1,000 elements.
pub fn weft() -> Config {
    Config {
        bulk_memory_enabled: true,
        reference_types_enabled: true,
        simd_enabled: true,
        multi_value_enabled: true,
        saturating_float_to_int_enabled: true,
        sign_extension_ops_enabled: true,
        relaxed_simd_enabled: true,
        exceptions_enabled: false,
        gc_enabled: false,
        compact_imports_enabled: false,
        memory64_enabled: false,
        tail_call_enabled: true,
        threads_enabled: false,
        wide_arithmetic_enabled: false,
        extended_const_enabled: true,
        custom_page_sizes_enabled: false,
        max_memories: 2,
        max_memory32_bytes: 16 * 65536,
        memory_max_size_required: true,
        max_tables: 4,
        max_table_elements: 1_000,
        table_max_size_required: true,
        max_funcs: 30,
        max_instructions: 200,
        ..Config::default()
    }
}

/// Every feature wasm-smith knows (for the compile target: weft must reject what it does not
/// support with a typed error).
pub fn everything() -> Config {
    Config {
        custom_page_sizes_enabled: true,
        max_memories: 3,
        max_memory32_bytes: 16 * 65536,
        max_memory64_bytes: 16 * 65536,
        memory_max_size_required: true,
        max_table_elements: 1_000,
        table_max_size_required: true,
        max_funcs: 30,
        max_instructions: 200,
        // Off in wasm-smith's defaults; weft implements it, so its code paths get fuzzed.
        exceptions_enabled: true,
        ..Config::default()
    }
}

/// A module from `config` that terminates: loops and calls burn a fuel global and execute
/// `unreachable` when it is spent. Returns the module's bytes.
pub fn terminating(
    config: Config,
    u: &mut Unstructured<'_>,
    fuel: u32,
) -> arbitrary::Result<Vec<u8>> {
    let mut module = Module::new(config, u)?;
    module
        .ensure_termination(fuel)
        .map_err(|_| arbitrary::Error::IncorrectFormat)?;
    Ok(module.to_bytes())
}

/// The features weft's validator accepts by default, for cross-checking its verdicts (taken
/// from the compiler itself, so a feature weft gains is never reported as a violation).
pub fn weft_features() -> wasmparser::WasmFeatures {
    weft_compiler::CompilerOptions::default().wasm_features()
}

/// [`weft_features`] without GC. weft validates with GC's rules (3.0's recursion groups and
/// constant expressions need them in wasmparser) but refuses GC's types and instructions with
/// `Error::Unsupported`: a module valid under `weft_features` but not under these uses GC.
pub fn weft_features_without_gc() -> wasmparser::WasmFeatures {
    let mut features = weft_features();
    features.remove(wasmparser::WasmFeatures::GC);
    features
}
