//! Calls and suspensions through the public API, each measured alone:
//!
//! - `suspend/roundtrip`: one iteration of a Wasm loop calling a suspending import whose future
//!   is pending once: switch out, outer `poll` returns `Pending`, re-poll, switch in, ready.
//! - `suspend/ready`: the same import with a future that is ready at once (no switch).
//! - `call_async/trivial`: a promising call of an empty export, polled to completion.
//! - `call/host_to_wasm`: a typed synchronous call of an empty export.
//! - `call/wasm_to_host`: one iteration of a Wasm loop calling a synchronous host import.
//! - `badfib/20`: fib(20) whose 10,945 additions each suspend once.
//! - `per_add/sync_import`: fib(20) whose additions call a synchronous host import, per
//!   addition (the whole call's time over its 10,945 additions).
//! - `per_add/recursion`: fib(20) with its additions in Wasm, per addition (two Wasm calls).
//! - `tokio/roundtrip`: `suspend/roundtrip` under tokio's `current_thread` runtime, and
//!   `tokio/rust_yield`: a plain Rust future that yields once, awaited the same number of times
//!   under the same runtime. The difference is weft's share of a round trip; the rest is the
//!   executor's wake and re-poll.
//!
//! Futures are polled by hand with a no-op waker (except in `tokio/*`), so no executor's cost
//! is in the other figures.
//! Loops run inside one promising call (`iter_custom`), so per-iteration figures exclude the
//! call's setup.

use std::future::Future;
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use weft::{Caller, Engine, Instance, Linker, Module, Store};

const LOOPS: &str = r#"
(module
  (import "env" "wait" (func $wait (param i32) (result i32)))
  (import "env" "ready" (func $ready (param i32) (result i32)))
  (import "env" "host" (func $host (param i32) (result i32)))
  (func (export "empty"))
  (func $loop_wait (export "loop_wait") (param $n i32)
    (loop $l
      (drop (call $wait (local.get $n)))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1))))))
  (func (export "loop_ready") (param $n i32)
    (loop $l
      (drop (call $ready (local.get $n)))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1))))))
  (func (export "loop_host") (param $n i32)
    (loop $l
      (drop (call $host (local.get $n)))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))))
"#;

/// Pending once, then ready with its value.
struct PendingOnce(Option<i32>, bool);

impl Future for PendingOnce {
    type Output = i32;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<i32> {
        if self.1 {
            return Poll::Ready(self.0.take().unwrap());
        }
        self.1 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Polls `future` to completion with a no-op waker (every future here wakes itself).
fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

fn setup(wat: &str) -> (Store<()>, Instance) {
    let engine = Engine::default();
    let module = Module::new(&engine, wat).unwrap();
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap_async("env", "wait", |_: Caller<'_, ()>, x: i32| {
            PendingOnce(Some(x), false)
        })
        .unwrap()
        .func_wrap_async("env", "ready", |_: Caller<'_, ()>, x: i32| {
            std::future::ready(x)
        })
        .unwrap()
        .func_wrap("env", "host", |x: i32| x)
        .unwrap()
        .func_wrap_async("env", "promiseAdd", |_: Caller<'_, ()>, a: i32, b: i32| {
            PendingOnce(Some(a + b), false)
        })
        .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    (store, instance)
}

/// Times `iters` iterations of the Wasm loop `name` in one promising call.
fn time_loop(store: &mut Store<()>, instance: Instance, name: &str, iters: u64) -> Duration {
    let f = instance
        .get_typed_func::<i32, ()>(&mut *store, name)
        .unwrap();
    let iters = i32::try_from(iters.max(1)).unwrap();
    let start = Instant::now();
    run(f.call_async(&mut *store, iters)).unwrap();
    start.elapsed()
}

fn suspend(c: &mut Criterion) {
    let (mut store, instance) = setup(LOOPS);
    let mut group = c.benchmark_group("suspend");
    group.bench_function("roundtrip", |b| {
        b.iter_custom(|iters| time_loop(&mut store, instance, "loop_wait", iters))
    });
    group.bench_function("ready", |b| {
        b.iter_custom(|iters| time_loop(&mut store, instance, "loop_ready", iters))
    });
    group.finish();
}

fn calls(c: &mut Criterion) {
    let (mut store, instance) = setup(LOOPS);
    let empty = instance
        .get_typed_func::<(), ()>(&mut store, "empty")
        .unwrap();
    c.bench_function("call_async/trivial", |b| {
        b.iter(|| run(empty.call_async(&mut store, ())).unwrap())
    });
    let mut group = c.benchmark_group("call");
    group.bench_function("host_to_wasm", |b| {
        b.iter(|| empty.call(&mut store, ()).unwrap())
    });
    group.bench_function("wasm_to_host", |b| {
        b.iter_custom(|iters| {
            let f = instance
                .get_typed_func::<i32, ()>(&mut store, "loop_host")
                .unwrap();
            let iters = i32::try_from(iters.max(1)).unwrap();
            let start = Instant::now();
            f.call(&mut store, iters).unwrap();
            start.elapsed()
        })
    });
    group.finish();
}

fn badfib(c: &mut Criterion) {
    let wat = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/badfib.wat"
    ))
    .unwrap();
    let wat = wat.replace(
        "(module $badfib",
        "(module $badfib (import \"env\" \"wait\" (func (param i32) (result i32))) (import \"env\" \"ready\" (func (param i32) (result i32))) (import \"env\" \"host\" (func (param i32) (result i32)))",
    );
    let (mut store, instance) = setup(&wat);
    let badfib = instance
        .get_typed_func::<i32, i32>(&mut store, "badfib")
        .unwrap();
    c.bench_function("badfib/20", |b| {
        b.iter(|| black_box(run(badfib.call_async(&mut store, black_box(20))).unwrap()))
    });
}

/// Times `iters` additions of `f(20)` (a fib of 10,945 additions): as many whole calls as
/// cover them, scaled to `iters`, so criterion reports the time per addition.
fn per_add(f: &mut dyn FnMut() -> i32, iters: u64) -> Duration {
    const ADDS: u64 = 10_945;
    let calls = iters.div_ceil(ADDS).max(1);
    let start = Instant::now();
    for _ in 0..calls {
        assert_eq!(f(), 6765);
    }
    start
        .elapsed()
        .mul_f64(iters as f64 / (calls * ADDS) as f64)
}

fn recursion(c: &mut Criterion) {
    let engine = Engine::default();
    let module = Module::new(&engine, include_bytes!("asyncify/fib.wasm").as_slice()).unwrap();
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap("env", "add", |a: i32, b: i32| a.wrapping_add(b))
        .unwrap()
        .func_wrap_async("env", "promise_add", |_: Caller<'_, ()>, a: i32, b: i32| {
            PendingOnce(Some(a.wrapping_add(b)), false)
        })
        .unwrap()
        .func_wrap_async("env", "leaf", |_: Caller<'_, ()>, n: i32| {
            std::future::ready(n)
        })
        .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let js_fib = instance
        .get_typed_func::<i32, i32>(&mut store, "js_fib")
        .unwrap();
    let local_fib = instance
        .get_typed_func::<i32, i32>(&mut store, "local_fib")
        .unwrap();
    let mut group = c.benchmark_group("per_add");
    group.bench_function("sync_import", |b| {
        b.iter_custom(|iters| {
            per_add(
                &mut || js_fib.call(&mut store, black_box(20)).unwrap(),
                iters,
            )
        })
    });
    group.bench_function("recursion", |b| {
        b.iter_custom(|iters| {
            per_add(
                &mut || local_fib.call(&mut store, black_box(20)).unwrap(),
                iters,
            )
        })
    });
    group.finish();
}

fn tokio_current_thread(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (mut store, instance) = setup(LOOPS);
    let loop_wait = instance
        .get_typed_func::<i32, ()>(&mut store, "loop_wait")
        .unwrap();
    let mut group = c.benchmark_group("tokio");
    group.bench_function("roundtrip", |b| {
        b.iter_custom(|iters| {
            let iters = i32::try_from(iters.max(1)).unwrap();
            let start = Instant::now();
            runtime
                .block_on(loop_wait.call_async(&mut store, iters))
                .unwrap();
            start.elapsed()
        })
    });
    group.bench_function("rust_yield", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            runtime.block_on(async {
                for i in 0..iters {
                    black_box(PendingOnce(Some(i as i32), false).await);
                }
            });
            start.elapsed()
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    suspend,
    calls,
    badfib,
    recursion,
    tokio_current_thread
);
criterion_main!(benches);
