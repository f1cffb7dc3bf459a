//! A driver for counting instructions per call with callgrind: runs one case `reps` times so
//! that two runs (`reps` = N and 2N) differ only by N operations, and setup cancels:
//!
//! ```text
//! cargo build --release --example call_counts
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.N target/release/examples/call_counts CASE N
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.2N target/release/examples/call_counts CASE 2N
//! ```
//!
//! (Ir of the second minus Ir of the first) / N is the instructions per operation. Cases, with
//! what one operation is:
//!
//! - `local`: one `local_fib(20)` call (10,945 additions in Wasm, 21,891 Wasm calls).
//! - `js`: one `js_fib(20)` call (10,945 additions through the synchronous import `add`).
//! - `host_loop`: one iteration of a Wasm loop calling a synchronous import `(i32) -> i32`.
//! - `sync_empty`: a typed synchronous call of an empty export.
//! - `async_empty`: a promising call of an empty export, polled to completion.
//! - `roundtrip`: one iteration of a Wasm loop whose import suspends once (spin executor).
//! - `tokio_roundtrip`: the same under tokio's `current_thread` runtime (`block_on`).
//! - `async_empty_shadow`, `roundtrip_shadow`: `async_empty` and `roundtrip` with a shadow stack
//!   per call (`Instance::set_shadow_stack`, arena slots): the option's cost per call and per
//!   suspension. The module is `LOOPS` plus a memory and a stack pointer global, used by these
//!   two cases only.
//! - `tokio_yield`: a plain Rust future that is pending once, awaited under the same runtime:
//!   the executor's own share of a round trip (`tokio_roundtrip` minus this is weft's).
//! - `pooled_start`: what a host serving one request per instance pays: a new `SharedStore`,
//!   an instantiation from the pooling allocator (1-page memory kept resident, a data segment)
//!   and a promising call polled to its first suspension, then resumed and dropped.
//! - `pooled_start_pre`: the same through an `InstancePre` (imports resolved once).
//!
//! In both, the start (up to the suspension) and the rest (resume and drop) are the functions
//! `start_request` and `finish_request`: callgrind's `--collect-atstart=no
//! --toggle-collect='*start_request*'` counts one of them.
//!
//! Compiles on one thread, so the instruction counts do not depend on scheduling.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use weft::{Caller, Config, Engine, Linker, Module, SharedStore, Store};

#[path = "common/request.rs"]
mod request;
use request::{REQUEST_WAT, pooled_config};

const FIB_WASM: &[u8] = include_bytes!("../benches/asyncify/fib.wasm");

const LOOPS: &str = r#"
(module
  (import "env" "wait" (func $wait (param i32) (result i32)))
  (import "env" "host" (func $host (param i32) (result i32)))
  (func (export "empty"))
  (func (export "loop_wait") (param $n i32)
    (loop $l
      (drop (call $wait (local.get $n)))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1))))))
  (func (export "loop_host") (param $n i32)
    (loop $l
      (drop (call $host (local.get $n)))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))))
"#;

/// `LOOPS` with what a shadow stack needs: a memory and a mutable `i32` stack pointer.
fn shadow_loops() -> String {
    let body = LOOPS
        .trim_end()
        .strip_suffix(')')
        .expect("LOOPS ends its module");
    body.to_string()
        + r#"
  (memory (export "memory") 1)
  (global (export "sp") (mut i32) (i32.const 4096)))"#
}

/// Pending once (waking itself), then ready with its value.
struct PendingOnce(i32, bool);

impl Future for PendingOnce {
    type Output = i32;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<i32> {
        if self.1 {
            return Poll::Ready(self.0);
        }
        self.1 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().expect("usage: call_counts CASE REPS");
    let reps: i32 = args
        .next()
        .and_then(|s| s.parse().ok())
        .expect("usage: call_counts CASE REPS");
    let mut config = Config::new();
    config.compile_threads(1);
    let engine = Engine::new(&config).unwrap();
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap("env", "add", |a: i32, b: i32| a.wrapping_add(b))
        .unwrap()
        .func_wrap("env", "host", |x: i32| x)
        .unwrap()
        .func_wrap_async("env", "wait", |_: Caller<'_, ()>, x: i32| {
            PendingOnce(x, false)
        })
        .unwrap()
        .func_wrap_async("env", "promise_add", |_: Caller<'_, ()>, a: i32, b: i32| {
            PendingOnce(a.wrapping_add(b), false)
        })
        .unwrap()
        .func_wrap_async("env", "leaf", |_: Caller<'_, ()>, n: i32| {
            PendingOnce(n, true)
        })
        .unwrap();
    let mut store = Store::new(&engine, ());
    let fib = linker
        .instantiate(&mut store, &Module::new(&engine, FIB_WASM).unwrap())
        .unwrap();
    let loops = linker
        .instantiate(&mut store, &Module::new(&engine, LOOPS).unwrap())
        .unwrap();
    let fib_func = |store: &mut Store<()>, name| fib.get_typed_func::<i32, i32>(store, name);
    match case.as_str() {
        "local" | "js" => {
            let name = if case == "local" {
                "local_fib"
            } else {
                "js_fib"
            };
            let f = fib_func(&mut store, name).unwrap();
            for _ in 0..reps {
                assert_eq!(f.call(&mut store, 20).unwrap(), 6765);
            }
        }
        "host_loop" => {
            let f = loops
                .get_typed_func::<i32, ()>(&mut store, "loop_host")
                .unwrap();
            f.call(&mut store, reps).unwrap();
        }
        "roundtrip" => {
            let f = loops
                .get_typed_func::<i32, ()>(&mut store, "loop_wait")
                .unwrap();
            run(f.call_async(&mut store, reps)).unwrap();
        }
        "tokio_roundtrip" | "tokio_yield" => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            if case == "tokio_yield" {
                runtime.block_on(async {
                    for i in 0..reps {
                        std::hint::black_box(PendingOnce(i, false).await);
                    }
                });
            } else {
                let f = loops
                    .get_typed_func::<i32, ()>(&mut store, "loop_wait")
                    .unwrap();
                runtime.block_on(f.call_async(&mut store, reps)).unwrap();
            }
        }
        "sync_empty" | "async_empty" => {
            let f = loops.get_typed_func::<(), ()>(&mut store, "empty").unwrap();
            for _ in 0..reps {
                if case == "sync_empty" {
                    f.call(&mut store, ()).unwrap();
                } else {
                    run(f.call_async(&mut store, ())).unwrap();
                }
            }
        }
        "async_empty_shadow" | "roundtrip_shadow" => {
            let shadowed = linker
                .instantiate(&mut store, &Module::new(&engine, shadow_loops()).unwrap())
                .unwrap();
            let arena = weft::ShadowStackRegion::Arena {
                base: 8192,
                len: 8192,
                slot_size: 4096,
            };
            let option = weft::ShadowStack::new(arena)
                .with_pointer(weft::StackPointerGlobal::Export("sp".into()));
            shadowed.set_shadow_stack(&mut store, option).unwrap();
            if case == "async_empty_shadow" {
                let f = shadowed
                    .get_typed_func::<(), ()>(&mut store, "empty")
                    .unwrap();
                for _ in 0..reps {
                    run(f.call_async(&mut store, ())).unwrap();
                }
            } else {
                let f = shadowed
                    .get_typed_func::<i32, ()>(&mut store, "loop_wait")
                    .unwrap();
                run(f.call_async(&mut store, reps)).unwrap();
            }
        }
        "pooled_start" | "pooled_start_pre" => pooled_start(reps, case == "pooled_start_pre"),
        other => panic!("unknown case {other}"),
    }
}

/// The `pooled_start` cases: `reps` request-shaped lifecycles on a pooled engine, with the
/// module's imports resolved once (`pre`) or by the linker each time. Each lifecycle is two
/// functions, so that callgrind can count the issue's figure apart from the rest:
/// `--toggle-collect='*start_request*'` counts the start (new store, instantiate, run to the
/// suspension), `--toggle-collect='*finish_request*'` the resume and the drop (store,
/// instance, slot reset).
fn pooled_start(reps: i32, pre: bool) {
    let mut config = pooled_config(16, 1 << 16);
    config.compile_threads(1);
    let engine = Engine::new(&config).unwrap();
    let module = Module::new(&engine, REQUEST_WAT).unwrap();
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap_async("env", "wait", |_: Caller<'_, ()>, x: i32| {
            PendingOnce(x, false)
        })
        .unwrap();
    let pre = pre.then(|| linker.instantiate_pre(&module).unwrap());
    let mut cx = Context::from_waker(Waker::noop());
    for i in 0..reps {
        let mut call = pin!(None);
        start_request(call.as_mut(), &mut cx, i, || {
            let store = SharedStore::new(Store::new(&engine, ()));
            let run = {
                let mut guard = store.try_lock().unwrap();
                let instance = match &pre {
                    Some(pre) => pre.instantiate(&mut *guard).unwrap(),
                    None => linker.instantiate(&mut *guard, &module).unwrap(),
                };
                instance
                    .get_typed_func::<i32, i32>(&mut *guard, "run")
                    .unwrap()
            };
            run.call_async(store, i)
        });
        finish_request(call, &mut cx, i);
    }
}

/// Makes a request's call with `make` and polls it to its suspension.
#[inline(never)]
fn start_request<F: Future<Output = weft::Result<i32>>>(
    mut call: Pin<&mut Option<F>>,
    cx: &mut Context<'_>,
    i: i32,
    make: impl FnOnce() -> F,
) {
    call.set(Some(make()));
    let call = call.as_pin_mut().unwrap();
    assert!(call.poll(cx).is_pending(), "call {i} did not suspend");
}

/// Resumes a request's call to its end, checks the result and drops the call (its store).
#[inline(never)]
fn finish_request<F: Future<Output = weft::Result<i32>>>(
    mut call: Pin<&mut Option<F>>,
    cx: &mut Context<'_>,
    i: i32,
) {
    match call.as_mut().as_pin_mut().unwrap().poll(cx) {
        Poll::Ready(result) => assert_eq!(result.unwrap(), i + 42),
        Poll::Pending => panic!("call {i} suspended twice"),
    }
    call.set(None);
}
