//! Host functions at the edges of the API: sixteen parameters (the most the typed API takes),
//! synchronous and suspending.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use weft::{Caller, Engine, Extern, Func, FuncType, Instance, Linker, Module, Store, ValType};

/// Pending once (waking itself at once), then ready.
struct PendingOnce(bool);

impl Future for PendingOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

/// Imports `env.f16` with sixteen parameters of all four number types, in a rotating order,
/// and exports `run`, which passes it 1.0, 2.0, ..., 16.0.
const SIXTEEN: &str = r#"
(module
  (import "env" "f16" (func $f16
    (param i32 i64 f32 f64 i32 i64 f32 f64 i32 i64 f32 f64 i32 i64 f32 f64) (result f64)))
  (func (export "run") (result f64)
    i32.const 1 i64.const 2 f32.const 3 f64.const 4
    i32.const 5 i64.const 6 f32.const 7 f64.const 8
    i32.const 9 i64.const 10 f32.const 11 f64.const 12
    i32.const 13 i64.const 14 f32.const 15 f64.const 16
    call $f16)
  (func (export "sum16")
    (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
    (local $i i32) (local $sum i32)
    ;; Σ (k + 1) * param k: a swapped pair of arguments changes the sum.
    local.get 0 i32.const 1 i32.mul
    local.get 1 i32.const 2 i32.mul i32.add
    local.get 2 i32.const 3 i32.mul i32.add
    local.get 3 i32.const 4 i32.mul i32.add
    local.get 4 i32.const 5 i32.mul i32.add
    local.get 5 i32.const 6 i32.mul i32.add
    local.get 6 i32.const 7 i32.mul i32.add
    local.get 7 i32.const 8 i32.mul i32.add
    local.get 8 i32.const 9 i32.mul i32.add
    local.get 9 i32.const 10 i32.mul i32.add
    local.get 10 i32.const 11 i32.mul i32.add
    local.get 11 i32.const 12 i32.mul i32.add
    local.get 12 i32.const 13 i32.mul i32.add
    local.get 13 i32.const 14 i32.mul i32.add
    local.get 14 i32.const 15 i32.mul i32.add
    local.get 15 i32.const 16 i32.mul i32.add))
"#;

/// Σ k * k for k = 1..=16: what `run` returns when the host function weighs each argument by
/// its position.
const WEIGHTED_SIXTEEN: f64 = 1496.0;

#[allow(clippy::too_many_arguments)]
fn weighted(
    a: i32,
    b: i64,
    c: f32,
    d: f64,
    e: i32,
    f: i64,
    g: f32,
    h: f64,
    i: i32,
    j: i64,
    k: f32,
    l: f64,
    m: i32,
    n: i64,
    o: f32,
    p: f64,
) -> f64 {
    let values = [
        a as f64, b as f64, c as f64, d, e as f64, f as f64, g as f64, h, i as f64, j as f64,
        k as f64, l, m as f64, n as f64, o as f64, p,
    ];
    values
        .iter()
        .enumerate()
        .map(|(position, v)| (position + 1) as f64 * v)
        .sum()
}

#[test]
fn sync_host_function_with_sixteen_parameters_gets_them_in_order() {
    let engine = Engine::default();
    let module = Module::new(&engine, SIXTEEN).unwrap();
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap(
            "env",
            "f16",
            |caller: Caller<'_, u32>,
             a: i32,
             b: i64,
             c: f32,
             d: f64,
             e: i32,
             f: i64,
             g: f32,
             h: f64,
             i: i32,
             j: i64,
             k: f32,
             l: f64,
             m: i32,
             n: i64,
             o: f32,
             p: f64| {
                assert_eq!(*caller.data(), 7);
                weighted(a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p)
            },
        )
        .unwrap();
    let mut store = Store::new(&engine, 7u32);
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let run = instance
        .get_typed_func::<(), f64>(&mut store, "run")
        .unwrap();
    assert_eq!(run.call(&mut store, ()).unwrap(), WEIGHTED_SIXTEEN);
}

#[test]
fn func_wrap_without_caller_takes_sixteen_parameters() {
    let engine = Engine::default();
    let mut store = Store::new(&engine, ());
    let func = Func::wrap(
        &mut store,
        |a: i32,
         b: i64,
         c: f32,
         d: f64,
         e: i32,
         f: i64,
         g: f32,
         h: f64,
         i: i32,
         j: i64,
         k: f32,
         l: f64,
         m: i32,
         n: i64,
         o: f32,
         p: f64| weighted(a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p),
    );
    assert_eq!(func.ty(&store).params().len(), 16);
    let module = Module::new(&engine, SIXTEEN).unwrap();
    let instance = Instance::new(&mut store, &module, &[Extern::Func(func)]).unwrap();
    let run = instance
        .get_typed_func::<(), f64>(&mut store, "run")
        .unwrap();
    assert_eq!(run.call(&mut store, ()).unwrap(), WEIGHTED_SIXTEEN);
}

#[test]
fn suspending_host_function_with_sixteen_parameters_gets_them_in_order() {
    let engine = Engine::default();
    let module = Module::new(&engine, SIXTEEN).unwrap();
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap_async(
            "env",
            "f16",
            |_: Caller<'_, ()>,
             a: i32,
             b: i64,
             c: f32,
             d: f64,
             e: i32,
             f: i64,
             g: f32,
             h: f64,
             i: i32,
             j: i64,
             k: f32,
             l: f64,
             m: i32,
             n: i64,
             o: f32,
             p: f64| async move {
                PendingOnce(false).await;
                weighted(a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p)
            },
        )
        .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let run = instance
        .get_typed_func::<(), f64>(&mut store, "run")
        .unwrap();
    assert_eq!(
        block_on(run.call_async(&mut store, ())).unwrap(),
        WEIGHTED_SIXTEEN
    );
}

#[test]
fn typed_func_with_sixteen_parameters_passes_them_in_order() {
    let engine = Engine::default();
    let module = Module::new(&engine, SIXTEEN).unwrap();
    let mut store = Store::new(&engine, ());
    let mut linker = Linker::new(&engine);
    linker
        .func_new(
            "env",
            "f16",
            FuncType::new(
                [ValType::I32, ValType::I64, ValType::F32, ValType::F64].repeat(4),
                [ValType::F64],
            ),
            |_, _, _| Ok(()),
        )
        .unwrap();
    let instance = linker.instantiate(&mut store, &module).unwrap();
    type Sixteen = (
        i32,
        i32,
        i32,
        i32,
        i32,
        i32,
        i32,
        i32,
        i32,
        i32,
        i32,
        i32,
        i32,
        i32,
        i32,
        i32,
    );
    let sum16 = instance
        .get_typed_func::<Sixteen, i32>(&mut store, "sum16")
        .unwrap();
    let args = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);
    assert_eq!(sum16.call(&mut store, args).unwrap(), 1496);
    assert_eq!(block_on(sum16.call_async(&mut store, args)).unwrap(), 1496);
}
