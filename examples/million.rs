//! Holds a million promising calls suspended at once on one `SharedStore`, then resumes them
//! all: the figure JSPI promises (a suspended call costs about a page), which a stack per call
//! with a guard made by `mprotect` cannot reach (two memory mappings each, and Linux allows
//! 65,530 per process).
//!
//! Each call enters Wasm, which calls an async import that waits for a flag the example sets
//! once every call is suspended; then each call is polled again and returns `2 * i + 1`, which
//! is checked. Prints the count, the resident memory (`VmRSS`), page tables (`VmPTE`) and
//! memory mappings (`/proc/self/maps` lines) each suspended call adds, and the wall time.
//!
//! ```console
//! $ cargo run --release --example million [COUNT [STACK_KIB]]
//! ```
//!
//! `STACK_KIB` sets `Config::async_stack_size` (default 2048, with `max_wasm_stack` half of it):
//! stacks of 2 MiB each need a page-table page of their own (4 KiB per call in `VmPTE`), while
//! smaller ones share them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use weft::{Caller, Config, Engine, Linker, Module, SharedStore, Store};

#[path = "common/held.rs"]
mod held;
use held::{Before, Released};

fn main() -> weft::Result<()> {
    let count: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse().expect("COUNT is a number"),
        None => 1_000_000,
    };
    let mut config = Config::new();
    if let Some(arg) = std::env::args().nth(2) {
        let kib: usize = arg.parse().expect("STACK_KIB is a number");
        config.async_stack_size(kib << 10).max_wasm_stack(kib << 9);
    }
    // Room for every call, plus the few stacks kept for reuse.
    config.max_async_stacks(config.get_max_async_stacks().max(count + 64));
    let engine = Engine::new(&config)?;
    let module = Module::new(
        &engine,
        r#"(module
             (import "env" "wait" (func $wait (param i32) (result i32)))
             (func (export "run") (param i32) (result i32)
               (i32.add (i32.mul (call $wait (local.get 0)) (i32.const 2)) (i32.const 1))))"#,
    )?;
    let released = Arc::new(AtomicBool::new(false));
    let mut linker = Linker::new(&engine);
    let flag = released.clone();
    linker.func_wrap_async("env", "wait", move |_: Caller<'_, ()>, x: i32| {
        let released = Released(flag.clone());
        async move {
            released.await;
            x
        }
    })?;
    let store = SharedStore::new(Store::new(&engine, ()));
    let run = {
        let mut guard = store.try_lock().expect("nothing else holds the store");
        let instance = linker.instantiate(&mut *guard, &module)?;
        instance.get_typed_func::<i32, i32>(&mut *guard, "run")?
    };
    let mut cx = Context::from_waker(Waker::noop());

    // Warm up: code, trampolines, the signal stack, the first slab of stacks.
    let mut warm = Box::pin(run.call_async(store.clone(), 0));
    assert!(warm.as_mut().poll(&mut cx).is_pending());
    drop(warm);

    let mut held: Vec<Pin<Box<dyn Future<Output = weft::Result<i32>>>>> = Vec::with_capacity(count);
    let before = Before::now();
    for i in 0..count {
        let mut call = Box::pin(run.call_async(store.clone(), i as i32));
        if let Poll::Ready(result) = call.as_mut().poll(&mut cx) {
            panic!(
                "call {i} did not suspend: {:?}",
                result.map_err(|e| e.to_string())
            );
        }
        held.push(call);
    }
    let held_cost = before.held(count);

    released.store(true, Ordering::Release);
    let resume = Instant::now();
    for (i, call) in held.iter_mut().enumerate() {
        match call.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(result)) => assert_eq!(result, 2 * i as i32 + 1, "call {i}"),
            Poll::Ready(Err(error)) => panic!("call {i}: {error}"),
            Poll::Pending => panic!("call {i} is still suspended"),
        }
    }
    let resumed = resume.elapsed();
    drop(held);
    let total = before.elapsed();

    held_cost.print(
        &format!(
            "{count} promising calls suspended at once on one SharedStore ({} KiB stacks)",
            config.get_async_stack_size() >> 10
        ),
        "suspend all",
        resumed,
        total,
    );
    Ok(())
}
