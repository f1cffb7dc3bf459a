//! The official WASI preview1 test suite (`tests/wasi-testsuite/`, 72 tests), run in-process
//! on both bindings. Each test gets a fresh copy of its root directory, an empty stdin, and
//! its stdout/stderr captured; the harness (`programs/harness/testsuite.rs`) judges the exit
//! status and output as the suite's own runner does.

#[path = "../../../programs/harness/testsuite.rs"]
#[allow(dead_code)]
mod harness;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use weft::{Config, Engine, Linker, Module, Store};
use weft_wasi::{
    DirPerms, FilePerms, MemoryOutputPipe, WasiCtx, add_to_linker_async, add_to_linker_sync,
    exit_code,
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Binding {
    Sync,
    Async,
}

/// The engine both bindings' runs share, and each test program compiled once for both: the
/// suite runs twice, and compiling its 72 programs was most of its time (~100 s under qemu).
fn compiled(path: &Path) -> Result<(Engine, Module), String> {
    type Modules = Mutex<HashMap<PathBuf, Arc<OnceLock<Result<Module, String>>>>>;
    static SHARED: OnceLock<(Engine, Modules)> = OnceLock::new();
    let (engine, modules) = SHARED.get_or_init(|| {
        (
            Engine::new(&Config::new()).expect("engine"),
            Modules::default(),
        )
    });
    let slot = modules
        .lock()
        .unwrap()
        .entry(path.to_path_buf())
        .or_default()
        .clone();
    // The other binding's test may be compiling this program now: it waits for that result.
    let module = slot.get_or_init(|| {
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        Module::new(engine, bytes).map_err(|e| e.to_string())
    });
    Ok((engine.clone(), module.clone()?))
}

fn run(invocation: &harness::Invocation<'_>, binding: Binding) -> Result<harness::Outcome, String> {
    let test = invocation.test;
    let (engine, module) = compiled(&test.wasm)?;
    let engine = &engine;
    let (stdout, stderr) = (MemoryOutputPipe::new(), MemoryOutputPipe::new());
    let mut builder = WasiCtx::builder();
    builder
        .arg(test.wasm.display().to_string())
        .args(test.args.clone())
        .stdout(stdout.clone())
        .stderr(stderr.clone());
    for (name, value) in &test.env {
        builder.env(name, value);
    }
    if let Some(root) = &invocation.root {
        builder.preopened_dir(root, "/", DirPerms::ALL, FilePerms::ALL);
    }
    let ctx = builder.build().map_err(|e| e.to_string())?;
    let mut store = Store::new(engine, ctx);
    let mut linker = Linker::new(engine);
    let result = match binding {
        Binding::Sync => {
            add_to_linker_sync(&mut linker, |ctx: &mut WasiCtx| ctx).map_err(|e| e.to_string())?;
            linker
                .instantiate(&mut store, &module)
                .and_then(|instance| {
                    let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                    start.call(&mut store, ())
                })
        }
        Binding::Async => {
            add_to_linker_async(&mut linker, |ctx: &mut WasiCtx| ctx).map_err(|e| e.to_string())?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let instance = linker.instantiate_async(&mut store, &module).await?;
                let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                start.call_async(&mut store, ()).await
            })
        }
    };
    let exit_code = match result {
        Ok(()) => 0,
        Err(error) => exit_code(&error).ok_or_else(|| {
            format!(
                "{}: {error}\n--- stderr\n{}",
                test.name,
                String::from_utf8_lossy(&stderr.contents())
            )
        })?,
    };
    Ok(harness::Outcome {
        exit_code,
        stdout: stdout.contents(),
        stderr: stderr.contents(),
    })
}

fn run_all(binding: Binding, label: &str) {
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/wasi-testsuite");
    let tests = harness::discover(&suite).expect("the suite is readable");
    assert_eq!(tests.len(), 72);
    let scratch = std::env::temp_dir().join(format!(
        "weft-wasi-testsuite-{label}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("scratch");
    let summary = harness::run_suite(&tests, &scratch, &[], |invocation| run(invocation, binding))
        .expect("copying the roots");
    let _ = std::fs::remove_dir_all(&scratch);
    println!("{label} binding: {summary}");
    assert!(summary.is_clean(), "{summary}");
}

#[test]
fn official_suite_passes_on_the_sync_binding() {
    run_all(Binding::Sync, "sync");
}

#[test]
fn official_suite_passes_on_the_async_binding() {
    run_all(Binding::Async, "async");
}
