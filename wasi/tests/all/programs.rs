//! Real programs built by real toolchains (`programs/`, see its README) on the async binding,
//! checked against their golden output; and many of them on one thread.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;
use weft::{Engine, Linker, Module, Store};
use weft_wasi::{
    DirPerms, FilePerms, MemoryInputPipe, MemoryOutputPipe, WasiCtx, WasiCtxBuilder,
    add_to_linker_async, exit_code,
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Run {
    exit: i32,
    stdout: String,
    stderr: String,
}

/// Runs `module`'s `_start` as a promising call on the current runtime.
async fn run(engine: &Engine, module: &Module, builder: &mut WasiCtxBuilder) -> Run {
    let (stdout, stderr) = (MemoryOutputPipe::new(), MemoryOutputPipe::new());
    let ctx = builder
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .build()
        .unwrap();
    let mut linker = Linker::new(engine);
    add_to_linker_async(&mut linker, |ctx: &mut WasiCtx| ctx).unwrap();
    let mut store = Store::new(engine, ctx);
    let instance = linker.instantiate_async(&mut store, module).await.unwrap();
    let start = instance
        .get_typed_func::<(), ()>(&mut store, "_start")
        .unwrap();
    let exit = match start.call_async(&mut store, ()).await {
        Ok(()) => 0,
        Err(error) => exit_code(&error).unwrap_or_else(|| panic!("{error}")),
    };
    Run {
        exit,
        stdout: String::from_utf8(stdout.contents()).unwrap(),
        stderr: String::from_utf8(stderr.contents()).unwrap(),
    }
}

fn load(engine: &Engine, name: &str) -> Module {
    let path = repo().join("programs/wasm").join(name);
    Module::new(engine, std::fs::read(&path).unwrap()).unwrap()
}

#[test]
fn sqlite_driver_writes_a_database_the_host_can_read() {
    let engine = engine();
    let module = load(&engine, "sqlite-driver.wasm");
    let data = scratch("sqlite");
    let mut builder = WasiCtx::builder();
    builder
        .args(["sqlite-driver.wasm", "/data/test.db"])
        .preopened_dir(&data, "/data", DirPerms::ALL, FilePerms::ALL);
    let start = Instant::now();
    let run = runtime().block_on(run(&engine, &module, &mut builder));
    println!(
        "sqlite driver: {:?} (compiled once before)",
        start.elapsed()
    );
    assert_eq!(run.stderr, "");
    assert_eq!(run.exit, 0);
    let expected = std::fs::read_to_string(repo().join("programs/sqlite/expected.txt")).unwrap();
    assert_eq!(run.stdout, expected);
    // Only the database is left: the journal and the lock directory were removed.
    let names: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["test.db"]);
    let db = std::fs::read(data.join("test.db")).unwrap();
    assert_eq!(&db[..16], b"SQLite format 3\0");
    assert_eq!(db.len(), 450_560);
    // The host's SQLite reads the rows back, when the machine has the CLI.
    match std::process::Command::new("sqlite3")
        .arg(data.join("test.db"))
        .arg("PRAGMA integrity_check; SELECT count(*), sum(temp), max(id) FROM reading;")
        .output()
    {
        Ok(output) => assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "ok\n8576|85700|9999\n"
        ),
        Err(_) => println!("no sqlite3 CLI here: the database was checked by its header and size"),
    }
}

#[test]
fn rust_std_program_uses_fs_env_stdin_time_and_exit() {
    let engine = engine();
    let module = load(&engine, "rust-wasi.wasm");
    let sandbox = scratch("rust-wasi");
    let stdin = std::fs::read(repo().join("programs/rust-wasi/stdin.txt")).unwrap();
    let mut builder = WasiCtx::builder();
    builder
        .args(["rust-wasi.wasm", "/sandbox", "alpha", "beta gamma"])
        .env("RUST_WASI_NAME", "weft")
        .env("RUST_WASI_QUOTE", "say \"hi\"")
        .stdin(MemoryInputPipe::new(stdin))
        .preopened_dir(&sandbox, "/sandbox", DirPerms::ALL, FilePerms::ALL);
    let run = runtime().block_on(run(&engine, &module, &mut builder));
    assert_eq!(run.stderr, "");
    assert_eq!(run.exit, 17);
    let expected = std::fs::read_to_string(repo().join("programs/rust-wasi/expected.txt")).unwrap();
    assert_eq!(run.stdout, expected);
    assert_eq!(std::fs::read_dir(&sandbox).unwrap().count(), 0);
}

/// A JavaScript engine (QuickJS, `programs/quickjs/`) running a workload of its interpreter,
/// garbage collector, regular expressions, BigInt, exceptions, generators and promises; the
/// same source built natively printed `expected.txt`. Then a script whose exception nothing
/// catches: QuickJS reports it on stderr and exits with status 1.
#[test]
fn quickjs_runs_a_javascript_workload_like_its_native_build() {
    let engine = engine();
    let module = load(&engine, "quickjs.wasm");
    let dir = repo().join("programs/quickjs");
    let mut builder = WasiCtx::builder();
    builder
        .args(["quickjs.wasm", "/js/workload.js", "first", "second"])
        .preopened_dir(&dir, "/js", DirPerms::READ_ONLY, FilePerms::READ_ONLY);
    let rt = runtime();
    let workload = rt.block_on(run(&engine, &module, &mut builder));
    assert_eq!((workload.exit, workload.stderr.as_str()), (0, ""));
    let expected = std::fs::read_to_string(dir.join("expected.txt")).unwrap();
    assert_eq!(workload.stdout, expected);

    let scripts = scratch("quickjs");
    std::fs::write(
        scripts.join("throws.js"),
        "print('before');\nfunction f(n) { if (n === 0) throw new TypeError('no ' + n); f(n - 1); }\nf(3);\n",
    )
    .unwrap();
    let mut builder = WasiCtx::builder();
    builder
        .args(["quickjs.wasm", "/js/throws.js"])
        .preopened_dir(&scripts, "/js", DirPerms::READ_ONLY, FilePerms::READ_ONLY);
    let thrown = rt.block_on(run(&engine, &module, &mut builder));
    assert_eq!((thrown.exit, thrown.stdout.as_str()), (1, "before\n"));
    assert!(
        thrown.stderr.starts_with("uncaught: TypeError: no 0\n")
            && thrown.stderr.contains("at f ("),
        "{}",
        thrown.stderr
    );
}

/// Issue 8's "many programs, one thread": N sleepers on one current-thread runtime overlap.
#[test]
fn many_sleepers_on_one_thread_overlap() {
    const N: usize = 200;
    const SLEEP_MS: u64 = 500;
    // Explicit bounds checks: what this test measures is sleeping, not reserving 8 GiB of
    // address space per memory (~125 ms each under qemu-user, which would swamp the sleeps).
    let engine =
        weft::Engine::new(weft::Config::new().memory_mode(weft::MemoryMode::ExplicitBounds))
            .expect("engine");
    let module = load(&engine, "sleeper.wasm");
    let dir = repo().join("programs/sleeper");
    let expected = std::fs::read_to_string(dir.join("expected.txt"))
        .unwrap()
        .replace("200", &SLEEP_MS.to_string());
    let rt = runtime();
    let start = Instant::now();
    let outputs = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..N {
            let (engine, module, dir) = (engine.clone(), module.clone(), dir.clone());
            tasks.spawn(async move {
                let mut builder = WasiCtx::builder();
                builder
                    .args(["sleeper.wasm", &SLEEP_MS.to_string(), "/data/greeting.txt"])
                    .preopened_dir(&dir, "/data", DirPerms::READ_ONLY, FilePerms::READ_ONLY);
                run(&engine, &module, &mut builder).await
            });
        }
        tasks.join_all().await
    });
    let wall = start.elapsed();
    println!("{N} sleepers of {SLEEP_MS} ms on one thread: {wall:?}");
    for run in &outputs {
        assert_eq!(
            (run.exit, run.stdout.as_str(), run.stderr.as_str()),
            (0, expected.as_str(), "")
        );
    }
    assert_eq!(outputs.len(), N);
    // Serially this would take N × 500 ms = 100 s; overlapped it is one sleep plus set-up
    // (instantiation is ~10× slower under qemu-user, hence the margin).
    assert!(
        wall < Duration::from_millis(SLEEP_MS * N as u64 / 10),
        "{wall:?}"
    );
}
