//! Prints the resident memory each suspended promising call costs, with 10,000 of them held at
//! once (each suspended in a shallow Wasm call waiting on an import that never completes).
//!
//! ```console
//! $ cargo run --release --example suspended_rss
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};

use weft::{Caller, Engine, Linker, Module, Store};

const HELD: usize = 10_000;

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY-free page size: statm counts in pages of the system page size.
    pages * page_size()
}

fn page_size() -> usize {
    std::fs::read_to_string("/proc/self/smaps")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("KernelPageSize:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok())
        })
        .map_or(4096, |kib| kib * 1024)
}

fn main() -> weft::Result<()> {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (import "env" "wait" (func $wait (param i32) (result i32)))
             (func (export "shallow") (param i32) (result i32)
               (i32.add (call $wait (local.get 0)) (i32.const 1))))"#,
    )?;
    let mut linker = Linker::new(&engine);
    linker.func_wrap_async("env", "wait", |_: Caller<'_, ()>, x: i32| async move {
        std::future::pending::<()>().await;
        x
    })?;
    let store = weft::SharedStore::new(Store::new(&engine, ()));
    let shallow = {
        let mut guard = store.try_lock().unwrap();
        let instance = linker.instantiate(&mut *guard, &module)?;
        instance.get_typed_func::<i32, i32>(&mut *guard, "shallow")?
    };
    // Warm up: the code, the signal stack, the first stacks.
    let mut cx = Context::from_waker(Waker::noop());
    let mut warm = Box::pin(shallow.call_async(store.clone(), 0));
    assert!(warm.as_mut().poll(&mut cx).is_pending());
    drop(warm);

    let before = resident_bytes();
    let mut held: Vec<Pin<Box<dyn Future<Output = weft::Result<i32>>>>> = Vec::with_capacity(HELD);
    for i in 0..HELD {
        let mut call = Box::pin(shallow.call_async(store.clone(), i as i32));
        assert!(call.as_mut().poll(&mut cx).is_pending());
        held.push(call);
    }
    let after = resident_bytes();
    let per_call = (after - before) as f64 / HELD as f64;
    println!(
        "{HELD} suspended calls: RSS {:.1} MiB -> {:.1} MiB, {:.2} KiB per suspended call",
        before as f64 / (1 << 20) as f64,
        after as f64 / (1 << 20) as f64,
        per_call / 1024.0
    );
    drop(held);
    Ok(())
}
