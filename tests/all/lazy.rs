//! Lazy compilation (`Config::lazy_compilation`): functions compiled on first call behave as
//! eagerly compiled ones do, whichever way they are reached.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use weft::{Caller, Config, Engine, Error, Instance, Linker, Module, Store, Trap, Val};

/// An engine compiling lazily; with `background` off only what is called gets compiled, so
/// the tests below know which functions went through the lazy path.
fn lazy_engine(background: bool) -> Engine {
    let mut config = Config::new();
    config
        .lazy_compilation(true)
        .lazy_background_compilation(background);
    Engine::new(&config).unwrap()
}

fn instantiate(engine: &Engine, wat: &str) -> (Module, Store<()>, Instance) {
    let module = Module::new(engine, wat).unwrap();
    let mut store = Store::new(engine, ());
    let instance = Linker::new(engine)
        .instantiate(&mut store, &module)
        .unwrap();
    (module, store, instance)
}

const PROGRAM: &str = r#"
(module $lazy
  (type $i2i (func (param i32) (result i32)))
  (table 3 funcref)
  (elem (i32.const 0) $double $fib $never)
  (func $even (export "even") (param i32) (result i32)
    (if (result i32) (i32.eqz (local.get 0)) (then (i32.const 1))
      (else (call $odd (i32.sub (local.get 0) (i32.const 1))))))
  (func $odd (param i32) (result i32)
    (if (result i32) (i32.eqz (local.get 0)) (then (i32.const 0))
      (else (call $even (i32.sub (local.get 0) (i32.const 1))))))
  (func $fib (export "fib") (param i32) (result i32)
    (if (result i32) (i32.lt_u (local.get 0) (i32.const 2)) (then (local.get 0))
      (else (i32.add (call $fib (i32.sub (local.get 0) (i32.const 1)))
                     (call $fib (i32.sub (local.get 0) (i32.const 2)))))))
  (func $double (param i32) (result i32) (i32.mul (local.get 0) (i32.const 2)))
  (func $never (param i32) (result i32) (unreachable))
  (func (export "indirect") (param i32 i32) (result i32)
    (call_indirect (type $i2i) (local.get 1) (local.get 0)))
  (func (export "via_ref") (param i32) (result i32)
    (call_ref $i2i (local.get 0) (ref.func $double)))
  (elem declare func $double)
  (func $divide (param i32) (result i32) (i32.div_u (i32.const 100) (local.get 0)))
  (func $middle (param i32) (result i32) (call $divide (local.get 0)))
  (func (export "divide") (param i32) (result i32) (call $middle (local.get 0)))
)
"#;

#[test]
fn recursion_through_functions_not_compiled_yet_computes_the_same_results() {
    let engine = lazy_engine(false);
    let (module, mut store, instance) = instantiate(&engine, PROGRAM);
    assert_eq!(
        module.compiled_functions(),
        0,
        "nothing is compiled up front"
    );
    let even = instance
        .get_typed_func::<i32, i32>(&mut store, "even")
        .unwrap();
    // even -> odd -> even ...: each is compiled by the first call that reaches its stub, in
    // the middle of the recursion.
    assert_eq!(even.call(&mut store, 11).unwrap(), 0);
    assert_eq!(even.call(&mut store, 100).unwrap(), 1);
    assert_eq!(module.compiled_functions(), 2);
    let fib = instance
        .get_typed_func::<i32, i32>(&mut store, "fib")
        .unwrap();
    assert_eq!(fib.call(&mut store, 20).unwrap(), 6765);
    assert_eq!(module.compiled_functions(), 3);
}

#[test]
fn call_indirect_and_call_ref_reach_lazily_compiled_functions() {
    let engine = lazy_engine(false);
    let (module, mut store, instance) = instantiate(&engine, PROGRAM);
    let indirect = instance
        .get_typed_func::<(i32, i32), i32>(&mut store, "indirect")
        .unwrap();
    assert_eq!(indirect.call(&mut store, (0, 21)).unwrap(), 42);
    assert_eq!(indirect.call(&mut store, (1, 10)).unwrap(), 55);
    // indirect, double, fib
    assert_eq!(module.compiled_functions(), 3);
    let error = indirect.call(&mut store, (2, 0)).unwrap_err();
    assert_eq!(error.trap(), Some(Trap::Unreachable));
    let via_ref = instance
        .get_typed_func::<i32, i32>(&mut store, "via_ref")
        .unwrap();
    assert_eq!(via_ref.call(&mut store, 4).unwrap(), 8);
    // A funcref taken from the table by the host calls the same stub.
    let table = instance.get_table(&mut store, "t").map(|_| ());
    assert!(table.is_none(), "the table is not exported");
}

#[test]
fn trap_in_lazily_compiled_function_has_the_named_backtrace() {
    let engine = lazy_engine(false);
    let (_, mut store, instance) = instantiate(&engine, PROGRAM);
    let divide = instance
        .get_typed_func::<i32, i32>(&mut store, "divide")
        .unwrap();
    assert_eq!(divide.call(&mut store, 7).unwrap(), 14);
    let error = divide.call(&mut store, 0).unwrap_err();
    assert_eq!(error.trap(), Some(Trap::IntegerDivisionByZero));
    let frames = &error.backtrace().unwrap().frames;
    let names: Vec<_> = frames.iter().map(|f| f.func_name.as_deref()).collect();
    assert_eq!(names, [Some("divide"), Some("middle"), None]);
    assert!(frames.iter().all(|f| f.module_offset.is_some()));
}

const EXCEPTIONS: &str = r#"
(module
  (tag $e (param i32))
  (func $thrower (param i32) (throw $e (i32.add (local.get 0) (i32.const 1))))
  (func $middle (param i32) (call $thrower (local.get 0)))
  (func (export "catch") (param i32) (result i32)
    (block $h (result i32)
      (try_table (catch $e $h) (call $middle (local.get 0)))
      (i32.const -1)))
)
"#;

#[test]
fn exception_thrown_by_a_lazily_compiled_function_is_caught_by_another() {
    let engine = lazy_engine(false);
    let (module, mut store, instance) = instantiate(&engine, EXCEPTIONS);
    let catch = instance
        .get_typed_func::<i32, i32>(&mut store, "catch")
        .unwrap();
    assert_eq!(catch.call(&mut store, 41).unwrap(), 42);
    assert_eq!(catch.call(&mut store, 1).unwrap(), 2);
    assert_eq!(module.compiled_functions(), 3);
}

/// Every Wasm value type, more of them than there are argument registers (so some travel on
/// the stack), and several results: the lazy entry must hand all of them over intact, for a
/// call and for a tail call.
const MANY_ARGS: &str = r#"
(module
  (func $mix (param i32 i64 f32 f64 v128 i32 i64 f32 f64 v128 i32 i64 f32 f64 v128 i32 i64 f32 f64)
             (result i64 f64 i32)
    (i64.add (i64.extend_i32_u (local.get 0))
      (i64.add (local.get 1)
        (i64.add (i64.extend_i32_u (local.get 5))
          (i64.add (local.get 6)
            (i64.add (i64.extend_i32_u (local.get 10))
              (i64.add (local.get 11)
                (i64.add (i64.extend_i32_u (local.get 15)) (local.get 16))))))))
    (f64.add (f64.promote_f32 (local.get 2))
      (f64.add (local.get 3)
        (f64.add (f64.promote_f32 (local.get 7))
          (f64.add (local.get 8)
            (f64.add (f64.promote_f32 (local.get 12))
              (f64.add (local.get 13)
                (f64.add (f64.promote_f32 (local.get 17)) (local.get 18))))))))
    (i32.add (i32x4.extract_lane 3 (local.get 4))
      (i32.add (i32x4.extract_lane 2 (local.get 9)) (i32x4.extract_lane 1 (local.get 14)))))
  (func $args (param i32) (result i64 f64 i32)
    (call $mix
      (local.get 0) (i64.const 2) (f32.const 3) (f64.const 4) (v128.const i32x4 0 0 0 5)
      (i32.const 6) (i64.const 7) (f32.const 8) (f64.const 9) (v128.const i32x4 0 0 10 0)
      (i32.const 11) (i64.const 12) (f32.const 13) (f64.const 14) (v128.const i32x4 0 15 0 0)
      (i32.const 16) (i64.const 17) (f32.const 18) (f64.const 19)))
  (func (export "call") (param i32) (result i64 f64 i32) (call $args (local.get 0)))
  (func (export "tail") (param i32) (result i64 f64 i32)
    (return_call $mix
      (local.get 0) (i64.const 2) (f32.const 3) (f64.const 4) (v128.const i32x4 0 0 0 5)
      (i32.const 6) (i64.const 7) (f32.const 8) (f64.const 9) (v128.const i32x4 0 0 10 0)
      (i32.const 11) (i64.const 12) (f32.const 13) (f64.const 14) (v128.const i32x4 0 15 0 0)
      (i32.const 16) (i64.const 17) (f32.const 18) (f64.const 19)))
)
"#;

#[test]
fn lazy_entry_keeps_every_argument_and_result_for_calls_and_tail_calls() {
    for export in ["tail", "call"] {
        let engine = lazy_engine(false);
        let (_, mut store, instance) = instantiate(&engine, MANY_ARGS);
        let f = instance
            .get_typed_func::<i32, (i64, f64, i32)>(&mut store, export)
            .unwrap();
        let ints = 1 + 2 + 6 + 7 + 11 + 12 + 16 + 17;
        let floats = 3.0 + 4.0 + 8.0 + 9.0 + 13.0 + 14.0 + 18.0 + 19.0;
        assert_eq!(
            f.call(&mut store, 1).unwrap(),
            (ints, floats, 30),
            "{export}"
        );
        assert_eq!(f.call(&mut store, 2).unwrap(), (ints + 1, floats, 30));
    }
}

/// Pending on its first poll, ready on the second.
struct PendingOnce(bool);

impl Future for PendingOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

const SUSPENDING: &str = r#"
(module
  (import "env" "wait" (func $wait (param i32) (result i32)))
  (func $after (param i32) (result i32)
    (i32.div_s (i32.const 1000) (local.get 0)))
  (func $before (param i32) (result i32)
    (call $after (call $wait (local.get 0))))
  (func (export "run") (param i32) (result i32)
    (call $before (local.get 0)))
)
"#;

#[test]
fn function_compiled_inside_a_promising_call_that_suspends_then_traps() {
    let engine = lazy_engine(false);
    let module = Module::new(&engine, SUSPENDING).unwrap();
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap_async("env", "wait", |_: Caller<'_, ()>, x: i32| async move {
            PendingOnce(false).await;
            x
        })
        .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let run = instance
        .get_typed_func::<i32, i32>(&mut store, "run")
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // run and before are compiled on the fiber's way in; after, once it resumed.
    assert_eq!(
        runtime.block_on(run.call_async(&mut store, 10)).unwrap(),
        100
    );
    assert_eq!(module.compiled_functions(), 3);
    // Now from scratch, the trap inside the function compiled after the suspension.
    let (mut store, instance) = {
        let module = Module::new(&engine, SUSPENDING).unwrap();
        let mut store = Store::new(&engine, ());
        let instance = linker.instantiate(&mut store, &module).unwrap();
        (store, instance)
    };
    let run = instance
        .get_typed_func::<i32, i32>(&mut store, "run")
        .unwrap();
    let error = runtime.block_on(run.call_async(&mut store, 0)).unwrap_err();
    assert_eq!(error.trap(), Some(Trap::IntegerDivisionByZero));
    let frames = &error.backtrace().unwrap().frames;
    let indices: Vec<_> = frames.iter().map(|f| f.func_index).collect();
    // after (1) called by before (2) called by run (3); the import is function 0.
    assert_eq!(indices, [1, 2, 3]);
    // The store goes on working.
    assert_eq!(
        runtime.block_on(run.call_async(&mut store, 4)).unwrap(),
        250
    );
}

#[test]
fn serializing_a_lazy_module_compiles_the_rest_and_loads_like_an_eager_one() {
    let engine = lazy_engine(false);
    let (module, mut store, instance) = instantiate(&engine, PROGRAM);
    let fib = instance
        .get_typed_func::<i32, i32>(&mut store, "fib")
        .unwrap();
    assert_eq!(fib.call(&mut store, 10).unwrap(), 55);
    let bytes = module.serialize().unwrap();
    let total = module.compiled_functions();
    assert_eq!(total, 10, "serializing compiled every function");
    let eager = Engine::default();
    let loaded = Module::deserialize(&eager, &bytes).unwrap();
    let mut store = Store::new(&eager, ());
    let instance = Linker::new(&eager)
        .instantiate(&mut store, &loaded)
        .unwrap();
    let indirect = instance
        .get_typed_func::<(i32, i32), i32>(&mut store, "indirect")
        .unwrap();
    assert_eq!(indirect.call(&mut store, (1, 20)).unwrap(), 6765);
    let divide = instance
        .get_typed_func::<i32, i32>(&mut store, "divide")
        .unwrap();
    let error = divide.call(&mut store, 0).unwrap_err();
    let names: Vec<_> = error.backtrace().unwrap().frames[..2]
        .iter()
        .map(|f| f.func_name.clone())
        .collect();
    assert_eq!(names, [Some("divide".into()), Some("middle".into())]);
}

#[test]
fn background_compilation_compiles_every_function_without_calls() {
    let engine = lazy_engine(true);
    let (module, mut store, instance) = instantiate(&engine, PROGRAM);
    let started = Instant::now();
    while module.compiled_functions() < 10 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "background compilation stalled at {}",
            module.compiled_functions()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let fib = instance
        .get_typed_func::<i32, i32>(&mut store, "fib")
        .unwrap();
    assert_eq!(fib.call(&mut store, 15).unwrap(), 610);
}

#[test]
fn host_calls_funcrefs_of_lazily_compiled_functions() {
    let engine = lazy_engine(false);
    let (_, mut store, instance) = instantiate(&engine, PROGRAM);
    let fib = instance.get_func(&mut store, "fib").unwrap();
    let mut results = [Val::I32(0)];
    fib.call(&mut store, &[Val::I32(12)], &mut results).unwrap();
    assert_eq!(results[0].i32(), Some(144));
    let error: Error = instance
        .get_typed_func::<i32, i32>(&mut store, "divide")
        .unwrap()
        .call(&mut store, 0)
        .unwrap_err();
    assert_eq!(error.trap(), Some(Trap::IntegerDivisionByZero));
}
