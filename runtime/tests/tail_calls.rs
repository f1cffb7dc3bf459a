//! Tail calls (`return_call`, `return_call_indirect`): constant stack over millions of calls,
//! tail calls to host functions, and tail calls inside promising calls that suspend.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use weft_runtime::{Caller, Engine, Linker, Module, Store, Trap};

/// Even/odd by mutual recursion, once with tail calls and once with ordinary calls. `odd` takes
/// ten extra i64 parameters so that, on every ISA, some arguments travel on the stack: the
/// callee of a tail call must pop what its caller's frame no longer holds.
const EVEN_ODD: &str = r#"
(module
  (type $sig (func (param i32) (result i32)))
  (table funcref (elem $even_indirect))
  (func $even (export "even") (param $n i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n))
      (then (i32.const 1))
      (else (return_call $odd (i32.sub (local.get $n) (i32.const 1))
        (i64.const 1) (i64.const 2) (i64.const 3) (i64.const 4) (i64.const 5)
        (i64.const 6) (i64.const 7) (i64.const 8) (i64.const 9) (i64.const 10)))))
  (func $odd (param $n i32)
    (param i64 i64 i64 i64 i64 i64 i64 i64 i64 i64) (result i32)
    (if (result i32) (i32.eqz (local.get $n))
      (then (i32.const 0))
      (else (return_call $even (i32.sub (local.get $n) (i32.const 1))))))
  (func $even_indirect (export "even_indirect") (param $n i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n))
      (then (i32.const 1))
      (else (return_call_indirect (type $sig)
        (i32.sub (local.get $n) (i32.const 1)) (i32.const 0)))))
  (func $even_plain (export "even_plain") (param $n i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n))
      (then (i32.const 1))
      (else (i32.eqz (call $even_plain (i32.sub (local.get $n) (i32.const 1)))))))
)
"#;

fn instantiate(
    wat: &str,
    linker: impl FnOnce(&mut Linker<()>),
) -> (Store<()>, weft_runtime::Instance) {
    let engine = Engine::default();
    let module = Module::new(&engine, wat).expect("module compiles");
    let mut store = Store::new(&engine, ());
    let mut l = Linker::new(&engine);
    linker(&mut l);
    let instance = l.instantiate(&mut store, &module).expect("instantiates");
    (store, instance)
}

#[test]
fn ten_million_mutual_tail_calls_run_in_constant_stack() {
    let (mut store, instance) = instantiate(EVEN_ODD, |_| {});
    let even = instance
        .get_typed_func::<i32, i32>(&mut store, "even")
        .unwrap();
    assert_eq!(even.call(&mut store, 10_000_000).unwrap(), 1);
    assert_eq!(even.call(&mut store, 10_000_001).unwrap(), 0);
}

#[test]
fn a_million_indirect_tail_calls_run_in_constant_stack() {
    let (mut store, instance) = instantiate(EVEN_ODD, |_| {});
    let even = instance
        .get_typed_func::<i32, i32>(&mut store, "even_indirect")
        .unwrap();
    assert_eq!(even.call(&mut store, 1_000_000).unwrap(), 1);
}

/// The contrast that makes the tests above meaningful: the same depth of ordinary calls does
/// exhaust the stack.
#[test]
fn ten_million_ordinary_calls_overflow_the_stack() {
    let (mut store, instance) = instantiate(EVEN_ODD, |_| {});
    let even = instance
        .get_typed_func::<i32, i32>(&mut store, "even_plain")
        .unwrap();
    let err = even.call(&mut store, 10_000_000).unwrap_err();
    assert_eq!(err.trap(), Some(Trap::StackOverflow));
}

const HOST_TAIL: &str = r#"
(module
  (import "env" "add_one" (func $add_one (param i32) (result i32)))
  (import "env" "wait" (func $wait (param i32) (result i32)))
  (func (export "to_host") (param i32) (result i32)
    (return_call $add_one (local.get 0)))
  ;; Counts down by tail calls; every 1000th step waits on a suspending import first.
  (func $countdown (export "countdown") (param $n i32) (param $acc i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n))
      (then (local.get $acc))
      (else
        (if (i32.eqz (i32.rem_u (local.get $n) (i32.const 1000)))
          (then (local.set $acc (call $wait (local.get $acc)))))
        (return_call $countdown (i32.sub (local.get $n) (i32.const 1))
          (i32.add (local.get $acc) (i32.const 1))))))
  (func (export "tail_to_suspending") (param i32) (result i32)
    (return_call $wait (local.get 0)))
)
"#;

fn host_linker(l: &mut Linker<()>) {
    l.func_wrap("env", "add_one", |x: i32| x + 1)
        .unwrap()
        .func_wrap_async("env", "wait", |_: Caller<'_, ()>, x: i32| {
            PendingOnce(Some(x), false)
        })
        .unwrap();
}

/// Pending once, then ready with its value.
struct PendingOnce(Option<i32>, bool);

impl Future for PendingOnce {
    type Output = i32;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<i32> {
        if self.1 {
            return Poll::Ready(self.0.take().expect("polled after completion"));
        }
        self.1 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Polls `future` to completion with a no-op waker, counting the pending polls.
fn run<F: Future>(future: F) -> (F::Output, usize) {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    let mut pending = 0;
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => return (output, pending),
            Poll::Pending => pending += 1,
        }
    }
}

#[test]
fn tail_call_to_a_host_function_returns_its_result() {
    let (mut store, instance) = instantiate(HOST_TAIL, host_linker);
    let f = instance
        .get_typed_func::<i32, i32>(&mut store, "to_host")
        .unwrap();
    assert_eq!(f.call(&mut store, 41).unwrap(), 42);
}

#[test]
fn tail_calls_inside_a_promising_call_survive_suspensions() {
    let (mut store, instance) = instantiate(HOST_TAIL, host_linker);
    let f = instance
        .get_typed_func::<(i32, i32), i32>(&mut store, "countdown")
        .unwrap();
    let (result, pending) = run(f.call_async(&mut store, (1_000_000, 0)));
    assert_eq!(result.unwrap(), 1_000_000);
    assert_eq!(pending, 1_000);
}

#[test]
fn tail_call_to_a_suspending_import_suspends_the_promising_call() {
    let (mut store, instance) = instantiate(HOST_TAIL, host_linker);
    let f = instance
        .get_typed_func::<i32, i32>(&mut store, "tail_to_suspending")
        .unwrap();
    let (result, pending) = run(f.call_async(&mut store, 7));
    assert_eq!(result.unwrap(), 7);
    assert_eq!(pending, 1);
}
