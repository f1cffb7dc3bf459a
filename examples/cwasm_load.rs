//! How long loading a serialized module (`Module::deserialize`, what `weft run app.cwasm` and a
//! code-cache hit do) takes, beside compiling the same module.
//!
//! ```console
//! $ cargo run --release --example cwasm_load                 # a generated 2,000-function module
//! $ cargo run --release --example cwasm_load -- app.wasm     # any module
//! ```
//!
//! Prints the module's size, its `.cwasm` size, the compile time, and the median and minimum
//! of 20 loads (each load also maps the code and makes it executable; the modules are dropped
//! between loads, so every load maps afresh).

use std::time::{Duration, Instant};

use weft::{Engine, Module};

/// A module of `n` functions, each a little arithmetic, a memory access and a call to the
/// next: every function has relocations, trap sites and source locations to carry.
fn generated_module(n: usize) -> String {
    let mut wat = String::from("(module (memory 1)\n");
    for i in 0..n {
        let call = if i + 1 < n {
            format!("(call $f{} (i32.add (local.get 0) (i32.const 1)))", i + 1)
        } else {
            "(local.get 0)".to_string()
        };
        wat.push_str(&format!(
            "(func $f{i} (export \"f{i}\") (param i32) (result i32)
               (if (result i32) (i32.gt_u (local.get 0) (i32.const 1000000))
                 (then (i32.load (i32.and (local.get 0) (i32.const 0xfffc))))
                 (else (i32.mul {call} (i32.const {i})))))\n"
        ));
    }
    wat.push(')');
    wat
}

fn main() -> weft::Result<()> {
    let (name, wasm) = match std::env::args().nth(1) {
        Some(path) => (path.clone(), std::fs::read(&path)?),
        None => (
            "generated module (2,000 functions)".to_string(),
            wat::parse_str(generated_module(2000))?,
        ),
    };
    let engine = Engine::default();
    let start = Instant::now();
    let module = Module::from_binary(&engine, &wasm)?;
    let compile = start.elapsed();
    let bytes = module.serialize()?;
    drop(module);
    let mut loads: Vec<Duration> = (0..20)
        .map(|_| {
            let start = Instant::now();
            let module = Module::deserialize(&engine, &bytes).expect("loads");
            let elapsed = start.elapsed();
            drop(module);
            elapsed
        })
        .collect();
    loads.sort();
    println!(
        "{name}: {} KiB of Wasm, {} KiB as .cwasm",
        wasm.len() / 1024,
        bytes.len() / 1024
    );
    println!("compile: {:.1} ms", compile.as_secs_f64() * 1e3);
    println!(
        "load (deserialize): median {:.2} ms, min {:.2} ms over {} loads",
        loads[loads.len() / 2].as_secs_f64() * 1e3,
        loads[0].as_secs_f64() * 1e3,
        loads.len()
    );
    Ok(())
}
