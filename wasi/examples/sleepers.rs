//! Many programs, one thread: N instances of `programs/wasm/sleeper.wasm` (a C program that
//! sleeps with `nanosleep`, i.e. one `poll_oneoff`, then reads a file from a preopened
//! directory) run on one tokio current-thread runtime, each a promising call suspended in its
//! sleep. Prints the wall time and the process's peak RSS.
//!
//! ```sh
//! cargo run --release -p weft-wasi --example sleepers -- 10000 1000
//! ```

use std::path::Path;
use std::time::Instant;

use weft::{Config, Engine, Linker, Module, Store};
use weft_wasi::{DirPerms, FilePerms, MemoryOutputPipe, WasiCtx, add_to_linker_async, exit_code};

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(10_000), |a| a.parse())?;
    let sleep_ms: u64 = args.next().map_or(Ok(1000), |a| a.parse())?;
    let programs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../programs");
    let engine = Engine::new(&Config::new())?;
    let module = Module::new(&engine, std::fs::read(programs.join("wasm/sleeper.wasm"))?)?;
    let mut linker = Linker::new(&engine);
    add_to_linker_async(&mut linker, |ctx: &mut WasiCtx| ctx)?;
    let linker = std::sync::Arc::new(linker);
    let data = programs.join("sleeper");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let start = Instant::now();
    let outputs = runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            let (engine, module, linker, data) =
                (engine.clone(), module.clone(), linker.clone(), data.clone());
            tasks.spawn(async move {
                let stdout = MemoryOutputPipe::new();
                let ctx = WasiCtx::builder()
                    .args(["sleeper.wasm", &sleep_ms.to_string(), "/data/greeting.txt"])
                    .preopened_dir(&data, "/data", DirPerms::READ_ONLY, FilePerms::READ_ONLY)
                    .stdout(stdout.clone())
                    .build()
                    .map_err(|e| e.to_string())?;
                let mut store = Store::new(&engine, ctx);
                let instance = linker
                    .instantiate_async(&mut store, &module)
                    .await
                    .map_err(|e| e.to_string())?;
                let start = instance
                    .get_typed_func::<(), ()>(&mut store, "_start")
                    .map_err(|e| e.to_string())?;
                match start.call_async(&mut store, ()).await {
                    Ok(()) => {}
                    Err(e) if exit_code(&e) == Some(0) => {}
                    Err(e) => return Err(e.to_string()),
                }
                Ok::<_, String>(stdout.contents())
            });
        }
        tasks.join_all().await
    });
    let wall = start.elapsed();
    let ok = outputs
        .iter()
        .filter(|o| o.as_ref().is_ok_and(|out| out.starts_with(b"slept")))
        .count();
    if let Some(Err(e)) = outputs.iter().find(|o| o.is_err()) {
        eprintln!("first failure: {e}");
    }
    println!(
        "{n} sleepers of {sleep_ms} ms on one thread: {ok} ok, wall {wall:.2?}, peak RSS {} MiB",
        peak_rss_kib().map_or("?".to_owned(), |k| (k / 1024).to_string())
    );
    if ok == n {
        Ok(())
    } else {
        Err("some sleepers failed".into())
    }
}
