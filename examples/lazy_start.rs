//! How soon a large program's first instruction runs with lazy compilation
//! (`Config::lazy_compilation`), beside eager compilation, without the code cache.
//!
//! ```console
//! $ cargo run --release --example lazy_start                       # programs/wasm/sqlite-driver.wasm
//! $ cargo run --release --example lazy_start -- programs/wasm/quickjs.wasm
//! ```
//!
//! Every import is defined as a host function that notes the time and stops the program (an
//! error), and `_start` is called: the time from the start of `Module::from_binary` to the
//! program's first import call bounds the time to its first instruction from above (it also
//! holds the C library's start-up code up to its first WASI call, each function of it
//! compiled on first call in lazy mode). Five runs each, alternating; median and minimum.
//! Then `Module::validate` alone, its function bodies on one thread and on every core.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weft::{Config, Engine, Error, ExternType, Linker, Module, Store};

/// Compiles (lazily or not) and runs `wasm` up to its first import call: the time to
/// `Module::from_binary`'s return, to the instance being ready (just before `_start` is
/// called, and compiled first in lazy mode), and to that call.
fn run_to_first_import(wasm: &[u8], lazy: bool) -> weft::Result<(Duration, Duration, Duration)> {
    let mut config = Config::new();
    config.lazy_compilation(lazy);
    let engine = Engine::new(&config)?;
    let start = Instant::now();
    let module = Module::from_binary(&engine, wasm)?;
    let ready = start.elapsed();
    let first_import: Arc<Mutex<Option<Duration>>> = Arc::default();
    let mut linker = Linker::new(&engine);
    for (from, name, ty) in module.imports() {
        let ExternType::Func(ty) = ty else {
            return Err(Error::Message(format!(
                "import {from}::{name} is not a function"
            )));
        };
        let first_import = first_import.clone();
        linker.func_new(from, name, ty, move |_, _, _| {
            first_import
                .lock()
                .unwrap()
                .get_or_insert_with(|| start.elapsed());
            Err(Error::Message("stopped at the first import".into()))
        })?;
    }
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module)?;
    let run = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
    let instantiated = start.elapsed();
    let _ = run.call(&mut store, ());
    let first = first_import
        .lock()
        .unwrap()
        .ok_or_else(|| Error::Message("the program called no import".into()))?;
    Ok((ready, instantiated, first))
}

fn main() -> weft::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "programs/wasm/sqlite-driver.wasm".into());
    let wasm = std::fs::read(&path)?;
    println!("{path}: {} KiB of Wasm", wasm.len() / 1024);
    let mut eager = Vec::new();
    let mut lazy = Vec::new();
    for _ in 0..5 {
        eager.push(run_to_first_import(&wasm, false)?);
        lazy.push(run_to_first_import(&wasm, true)?);
    }
    for (name, runs) in [("eager", eager), ("lazy", lazy)] {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let sorted = |pick: fn(&(Duration, Duration, Duration)) -> Duration| {
            let mut times: Vec<_> = runs.iter().map(pick).collect();
            times.sort();
            (ms(times[2]), ms(times[0]))
        };
        let (ready, instantiated, first) = (sorted(|r| r.0), sorted(|r| r.1), sorted(|r| r.2));
        println!(
            "{name:5}  module ready: median {:7.1} ms (min {:7.1})   instantiated: median \
             {:7.1} ms (min {:7.1})   first import call: median {:7.1} ms (min {:7.1})",
            ready.0, ready.1, instantiated.0, instantiated.1, first.0, first.1,
        );
    }
    // Validation alone (part of "module ready" in both modes): the function bodies on one
    // thread, then on every core.
    let mut line = String::from("validation alone:");
    for threads in [1, 0] {
        let mut config = Config::new();
        config.compile_threads(threads);
        let engine = Engine::new(&config)?;
        let mut times: Vec<Duration> = (0..5)
            .map(|_| {
                let start = Instant::now();
                Module::validate(&engine, &wasm).map(|()| start.elapsed())
            })
            .collect::<weft::Result<_>>()?;
        times.sort();
        let label = if threads == 1 {
            "one thread"
        } else {
            "every core"
        };
        line += &format!(
            "   {label}: median {:5.1} ms (min {:5.1})",
            times[2].as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3
        );
    }
    println!("{line}");
    Ok(())
}
