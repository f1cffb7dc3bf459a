//! Host functions at the edges of the API: sixteen parameters (the most the typed API takes),
//! synchronous and suspending, and untyped suspending imports (`func_new_async`,
//! `Func::new_async`).

use crate::common::PendingOnce;
use std::future::Future;

use weft::{
    Caller, Engine, Error, Extern, Func, FuncType, Instance, Linker, Module, Store, Trap, Val,
    ValType,
};

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

// ---------------------------------------------------------------------------------------------
// Untyped suspending imports

/// Imports `env.add` (i32, i32) -> i32 and exports `run`, which calls it.
const ADD: &str = r#"
(module
  (import "env" "add" (func $add (param i32 i32) (result i32)))
  (func (export "run") (param i32 i32) (result i32)
    local.get 0 local.get 1 call $add))
"#;

fn add_type() -> FuncType {
    FuncType::new([ValType::I32, ValType::I32], [ValType::I32])
}

#[test]
fn func_new_async_suspends_and_uses_the_store_during_its_polls() {
    let engine = Engine::default();
    let module = Module::new(&engine, ADD).unwrap();
    let mut linker = Linker::new(&engine);
    linker
        .func_new_async("env", "add", add_type(), |caller: Caller<'_, u32>, args| {
            let (a, b) = (args[0].i32().unwrap(), args[1].i32().unwrap());
            let access = caller.store_access();
            async move {
                PendingOnce(false).await;
                // After a suspension, the store is reachable again only through the access.
                let calls = access.with(|mut caller| {
                    *caller.data_mut() += 1;
                    *caller.data()
                })?;
                Ok(vec![Val::I32(a + b + calls as i32 * 100)])
            }
        })
        .unwrap();
    let mut store = Store::new(&engine, 0u32);
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let run = instance
        .get_typed_func::<(i32, i32), i32>(&mut store, "run")
        .unwrap();
    assert_eq!(block_on(run.call_async(&mut store, (2, 3))).unwrap(), 105);
    assert_eq!(block_on(run.call_async(&mut store, (2, 3))).unwrap(), 205);
    assert_eq!(*store.data(), 2);
}

#[test]
fn func_new_async_with_wrong_result_count_or_type_is_a_type_mismatch() {
    let engine = Engine::default();
    let module = Module::new(&engine, ADD).unwrap();
    for (what, results) in [
        ("too few", vec![]),
        ("too many", vec![Val::I32(1), Val::I32(2)]),
        ("wrong type", vec![Val::I64(1)]),
    ] {
        let mut linker = Linker::new(&engine);
        linker
            .func_new_async("env", "add", add_type(), move |_: Caller<'_, ()>, _| {
                let results = results.clone();
                async move {
                    PendingOnce(false).await;
                    Ok(results)
                }
            })
            .unwrap();
        let mut store = Store::new(&engine, ());
        let instance = linker.instantiate(&mut store, &module).unwrap();
        let run = instance
            .get_typed_func::<(i32, i32), i32>(&mut store, "run")
            .unwrap();
        let error = block_on(run.call_async(&mut store, (2, 3))).unwrap_err();
        assert!(matches!(error, Error::TypeMismatch(_)), "{what}: {error}");
        // The store stays usable.
        assert!(matches!(
            block_on(run.call_async(&mut store, (2, 3))),
            Err(Error::TypeMismatch(_))
        ));
    }
}

#[test]
fn func_new_async_error_reaches_the_caller() {
    let engine = Engine::default();
    let module = Module::new(&engine, ADD).unwrap();
    let mut linker = Linker::new(&engine);
    linker
        .func_new_async("env", "add", add_type(), |_: Caller<'_, ()>, _| async {
            PendingOnce(false).await;
            Err(Error::msg("no sum today"))
        })
        .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let run = instance.get_func(&mut store, "run").unwrap();
    let mut results = [Val::I32(0)];
    let error = block_on(run.call_async(&mut store, &[Val::I32(1), Val::I32(2)], &mut results))
        .unwrap_err();
    assert_eq!(error.to_string(), "no sum today");
}

#[test]
fn func_new_async_reached_from_a_sync_call_traps_without_calling_it() {
    let engine = Engine::default();
    let module = Module::new(&engine, ADD).unwrap();
    let mut linker = Linker::new(&engine);
    linker
        .func_new_async(
            "env",
            "add",
            add_type(),
            |_: Caller<'_, ()>, _: &[Val]| -> std::future::Ready<weft::Result<Vec<Val>>> {
                panic!("a suspending import reached from a sync call must not be called")
            },
        )
        .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let run = instance
        .get_typed_func::<(i32, i32), i32>(&mut store, "run")
        .unwrap();
    let error = run.call(&mut store, (1, 2)).unwrap_err();
    assert_eq!(error.trap(), Some(Trap::SuspendOutsidePromisingCall));
}

#[test]
fn func_new_async_as_an_instance_import() {
    let engine = Engine::default();
    let module = Module::new(&engine, ADD).unwrap();
    let mut store = Store::new(&engine, ());
    let add = Func::new_async(&mut store, add_type(), |_: Caller<'_, ()>, args| {
        let (a, b) = (args[0].i32().unwrap(), args[1].i32().unwrap());
        async move {
            PendingOnce(false).await;
            Ok(vec![Val::I32(a * b)])
        }
    });
    assert_eq!(add.ty(&store), add_type());
    let instance = Instance::new(&mut store, &module, &[Extern::Func(add)]).unwrap();
    let run = instance
        .get_typed_func::<(i32, i32), i32>(&mut store, "run")
        .unwrap();
    assert_eq!(block_on(run.call_async(&mut store, (6, 7))).unwrap(), 42);
}

/// The Wasm-to-host shim is compiled per closure, with failures recorded out of line: calls
/// that succeed, fail with an error, panic and succeed again, in one store, each report what
/// that call did (the error or panic of one call does not leak into the next).
#[test]
fn host_function_successes_errors_and_panics_alternate_in_one_store() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (import "env" "check" (func $check (param i32) (result i32)))
             (func (export "run") (param i32) (result i32)
               (i32.add (call $check (local.get 0)) (i32.const 1))))"#,
    )
    .unwrap();
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap("env", "check", |x: i32| -> weft::Result<i32> {
            match x {
                -1 => Err(Error::msg("negative")),
                -2 => panic!("host panic on -2"),
                x => Ok(x * 2),
            }
        })
        .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let run = instance
        .get_typed_func::<i32, i32>(&mut store, "run")
        .unwrap();
    for round in 0..3 {
        assert_eq!(run.call(&mut store, 20 + round).unwrap(), 41 + 2 * round);
        let error = run.call(&mut store, -1).unwrap_err();
        assert!(error.to_string().contains("negative"), "{error}");
        let panic =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run.call(&mut store, -2)))
                .unwrap_err();
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"host panic on -2"));
    }
    assert_eq!(run.call(&mut store, 5).unwrap(), 11);
}

/// Typed host functions of types with at most one number result are called with their values
/// in registers (the native convention); the others through the value buffer. Each result
/// type comes back bit for bit (a NaN's payload, the sign of an `i32` and the high half of an
/// `i64` included), and a function with two results or a `v128` still works.
#[test]
fn typed_host_functions_return_every_number_type_bit_for_bit() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (import "env" "i32" (func $i32 (param i32) (result i32)))
             (import "env" "i64" (func $i64 (param i64) (result i64)))
             (import "env" "f32" (func $f32 (param f32) (result f32)))
             (import "env" "f64" (func $f64 (param f64) (result f64)))
             (import "env" "pair" (func $pair (param i32 f64) (result i64 f32)))
             (import "env" "v128" (func $v128 (param v128) (result v128)))
             (import "env" "none" (func $none (param i64)))
             (global $seen (mut i64) (i64.const 0))
             (func (export "i32") (param i32) (result i32) (call $i32 (local.get 0)))
             (func (export "i64") (param i64) (result i64) (call $i64 (local.get 0)))
             (func (export "f32") (param i32) (result i32)
               (i32.reinterpret_f32 (call $f32 (f32.reinterpret_i32 (local.get 0)))))
             (func (export "f64") (param i64) (result i64)
               (i64.reinterpret_f64 (call $f64 (f64.reinterpret_i64 (local.get 0)))))
             (func (export "pair") (param i32 f64) (result i64 f32)
               (call $pair (local.get 0) (local.get 1)))
             (func (export "v128") (param i64) (result i64)
               (i64x2.extract_lane 0 (call $v128 (i64x2.splat (local.get 0)))))
             (func (export "none") (param i64) (call $none (local.get 0))))"#,
    )
    .unwrap();
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap("env", "i32", |x: i32| x.wrapping_neg())
        .unwrap()
        .func_wrap("env", "i64", |x: i64| !x)
        .unwrap()
        .func_wrap("env", "f32", |x: f32| f32::from_bits(x.to_bits() ^ 1))
        .unwrap()
        .func_wrap("env", "f64", |x: f64| f64::from_bits(x.to_bits() ^ 1))
        .unwrap()
        .func_wrap("env", "pair", |a: i32, b: f64| {
            (i64::from(a) << 32, b as f32)
        })
        .unwrap()
        .func_wrap("env", "v128", |v: u128| v.rotate_left(64) ^ 1)
        .unwrap()
        .func_wrap("env", "none", |mut caller: Caller<'_, i64>, x: i64| {
            *caller.data_mut() = x;
        })
        .unwrap();
    let mut store = Store::new(&engine, 0i64);
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let i32_ = instance
        .get_typed_func::<i32, i32>(&mut store, "i32")
        .unwrap();
    assert_eq!(i32_.call(&mut store, 5).unwrap(), -5);
    assert_eq!(i32_.call(&mut store, i32::MIN).unwrap(), i32::MIN);
    let i64_ = instance
        .get_typed_func::<i64, i64>(&mut store, "i64")
        .unwrap();
    assert_eq!(
        i64_.call(&mut store, 0x1234_5678_9abc_def0).unwrap(),
        !0x1234_5678_9abc_def0
    );
    let f32_ = instance
        .get_typed_func::<u32, u32>(&mut store, "f32")
        .unwrap();
    // A signalling NaN with a payload, and a negative number.
    assert_eq!(f32_.call(&mut store, 0x7fa0_0002).unwrap(), 0x7fa0_0003);
    assert_eq!(f32_.call(&mut store, 0xbf80_0000).unwrap(), 0xbf80_0001);
    let f64_ = instance
        .get_typed_func::<u64, u64>(&mut store, "f64")
        .unwrap();
    assert_eq!(
        f64_.call(&mut store, 0x7ff4_0000_0000_0002).unwrap(),
        0x7ff4_0000_0000_0003
    );
    let pair = instance
        .get_typed_func::<(i32, f64), (i64, f32)>(&mut store, "pair")
        .unwrap();
    assert_eq!(
        pair.call(&mut store, (-3, 2.5)).unwrap(),
        (-3i64 << 32, 2.5f32)
    );
    let v128 = instance
        .get_typed_func::<i64, i64>(&mut store, "v128")
        .unwrap();
    assert_eq!(v128.call(&mut store, 42).unwrap(), 42 ^ 1);
    let none = instance
        .get_typed_func::<i64, ()>(&mut store, "none")
        .unwrap();
    none.call(&mut store, -77).unwrap();
    assert_eq!(*store.data(), -77);
}
