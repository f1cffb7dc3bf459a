//! Wasm exceptions through the API: caught inside Wasm across frames, uncaught to the host
//! with tag and payload, thrown by host functions, across host frames in the middle of a chain
//! (the rule: an exception leaving Wasm is an `Error::Exception`, and a host function returning
//! one throws it into its Wasm caller), across a suspension of a promising call, and out of a
//! deep recursion.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use weft::{
    Caller, Engine, Error, ExternType, FuncType, Instance, Linker, Module, Store, Tag, TagType,
    Trap, TypedFunc, Val, ValType, WasmException,
};

use crate::common::PendingOnce;

const WAT: &str = r#"
(module
  (import "host" "e" (tag $e (param i32 i64)))
  (import "host" "throw" (func $host_throw (param i32)))
  (import "host" "call_back" (func $call_back (param i32) (result i32)))
  (import "host" "wait" (func $wait))
  (import "host" "wait_then_throw" (func $wait_then_throw (param i32)))
  (tag $other (export "other"))
  (func $thrower (export "thrower") (param i32)
    (throw $e (local.get 0) (i64.const 7)))
  (func $middle (param i32)
    (call $thrower (i32.add (local.get 0) (i32.const 1))))
  (func (export "catch_across_frames") (param i32) (result i32)
    (block $h (result i32 i64)
      (try_table (catch $e $h) (call $middle (local.get 0)))
      (return (i32.const -1)))
    (drop))
  (func (export "uncaught") (param i32)
    (call $middle (local.get 0)))
  (func (export "catch_host_throw") (param i32) (result i32)
    (block $h (result i32 i64)
      (try_table (catch $e $h) (call $host_throw (local.get 0)))
      (return (i32.const -1)))
    (drop))
  (func (export "catch_through_host") (param i32) (result i32)
    (block $h (result i32 i64)
      (try_table (catch $e $h) (drop (call $call_back (local.get 0))))
      (return (i32.const -1)))
    (drop))
  (func (export "other_is_not_caught_by_e") (result i32)
    (block $h (result i32 i64)
      (try_table (catch $e $h) (throw $other))
      (return (i32.const -1)))
    (drop))
  (func (export "rethrow_caught_ref") (param i32)
    (block $h (result exnref)
      (try_table (catch_all_ref $h) (call $middle (local.get 0)))
      (return))
    (throw_ref))
  (func (export "throw_after_resume") (param i32) (result i32)
    (block $h (result i32 i64)
      (try_table (catch $e $h) (call $wait) (call $middle (local.get 0)))
      (return (i32.const -1)))
    (drop))
  (func (export "uncaught_after_resume") (param i32)
    (call $wait)
    (call $middle (local.get 0)))
  (func (export "catch_async_host_throw") (param i32) (result i32)
    (block $h (result i32 i64)
      (try_table (catch $e $h) (call $wait_then_throw (local.get 0)))
      (return (i32.const -1)))
    (drop))
  (func (export "catch_ref_out") (param i32) (result exnref) (local $x exnref)
    (block $h (result i32 i64 exnref)
      (try_table (catch_ref $e $h) (call $middle (local.get 0)))
      (return (ref.null exn)))
    (local.set $x) (drop) (drop) (local.get $x))
  (func (export "throw_given") (param exnref)
    (throw_ref (local.get 0)))
  (func $deep (param i32)
    (if (i32.eqz (local.get 0))
      (then (throw $e (i32.const 99) (i64.const 1))))
    (call $deep (i32.sub (local.get 0) (i32.const 1))))
  (func (export "deep") (param i32) (result i32)
    (block $h (result i32 i64)
      (try_table (catch $e $h) (call $deep (local.get 0)))
      (return (i32.const -1)))
    (drop))
)
"#;

#[derive(Default)]
struct Host {
    tag: Option<Tag>,
    thrower: Option<TypedFunc<i32, ()>>,
    /// What the last `call_back` got from its nested call, before passing it on.
    nested_error: Option<String>,
}

fn setup() -> (Store<Host>, Instance, Tag) {
    let engine = Engine::default();
    let mut store = Store::new(&engine, Host::default());
    let tag_type = TagType::new(FuncType::new([ValType::I32, ValType::I64], []));
    let tag = Tag::new(&mut store, &tag_type).unwrap();
    store.data_mut().tag = Some(tag);
    let mut linker = Linker::new(&engine);
    linker.define(&mut store, "host", "e", tag).unwrap();
    linker
        .func_wrap(
            "host",
            "throw",
            |mut caller: Caller<'_, Host>, x: i32| -> weft::Result<()> {
                let tag = caller.data().tag.unwrap();
                let payload = [Val::I32(x * 10), Val::I64(5)];
                Err(WasmException::new(&mut caller, &tag, &payload)?.into())
            },
        )
        .unwrap();
    linker
        .func_wrap(
            "host",
            "call_back",
            |mut caller: Caller<'_, Host>, x: i32| -> weft::Result<i32> {
                let thrower = caller.data().thrower.unwrap();
                let result = thrower.call(&mut caller, x);
                if let Err(e) = &result {
                    caller.data_mut().nested_error = Some(e.to_string());
                }
                result?;
                Ok(0)
            },
        )
        .unwrap();
    linker
        .func_wrap_async("host", "wait", |_: Caller<'_, Host>| PendingOnce(false))
        .unwrap();
    linker
        .func_wrap_async(
            "host",
            "wait_then_throw",
            |mut caller: Caller<'_, Host>, x: i32| {
                // Made now: the future may not borrow the store.
                let tag = caller.data().tag.unwrap();
                let exception =
                    WasmException::new(&mut caller, &tag, &[Val::I32(x + 100), Val::I64(0)]);
                async move {
                    PendingOnce(false).await;
                    Err::<(), Error>(exception?.into())
                }
            },
        )
        .unwrap();
    let module = Module::new(&engine, WAT).unwrap();
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let thrower = instance.get_typed_func(&mut store, "thrower").unwrap();
    store.data_mut().thrower = Some(thrower);
    (store, instance, tag)
}

fn call_i32(store: &mut Store<Host>, instance: &Instance, name: &str, arg: i32) -> i32 {
    instance
        .get_typed_func::<i32, i32>(&mut *store, name)
        .unwrap()
        .call(store, arg)
        .unwrap()
}

fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

fn expect_exception(error: Error) -> WasmException {
    match error {
        Error::Exception(e) => *e,
        other => panic!("expected an exception, got {other}"),
    }
}

#[test]
fn exception_is_caught_by_a_try_table_several_frames_up() {
    let (mut store, instance, _) = setup();
    // thrower(x + 1) throws (x + 1, 7); the catch hands the payload to the block.
    assert_eq!(
        call_i32(&mut store, &instance, "catch_across_frames", 41),
        42
    );
}

#[test]
fn uncaught_exception_reaches_the_host_with_tag_and_payload() {
    let (mut store, instance, tag) = setup();
    let uncaught = instance
        .get_typed_func::<i32, ()>(&mut store, "uncaught")
        .unwrap();
    let e = expect_exception(uncaught.call(&mut store, 1).unwrap_err());
    assert_eq!(e.tag(), tag);
    assert_eq!(e.payload(), &[Val::I32(2), Val::I64(7)]);
    // The same through the untyped call, and the exnref names the same exception.
    let func = instance.get_func(&mut store, "uncaught").unwrap();
    let error = func.call(&mut store, &[Val::I32(5)], &mut []).unwrap_err();
    let e = expect_exception(error);
    assert_eq!(e.exnref().tag(&store), tag);
    assert_eq!(
        e.exnref().payload(&mut store),
        vec![Val::I32(6), Val::I64(7)]
    );
    // The store is usable afterwards.
    assert_eq!(call_i32(&mut store, &instance, "catch_across_frames", 1), 2);
}

#[test]
fn host_function_throws_into_its_wasm_caller() {
    let (mut store, instance, _) = setup();
    assert_eq!(call_i32(&mut store, &instance, "catch_host_throw", 4), 40);
}

#[test]
fn exception_crossing_a_host_frame_is_an_error_there_and_rethrown_by_returning_it() {
    let (mut store, instance, _) = setup();
    // host → catch_through_host → call_back (host) → thrower (Wasm): the inner call returns
    // the exception as an error, and call_back's `?` throws it on into the outer Wasm.
    assert_eq!(call_i32(&mut store, &instance, "catch_through_host", 8), 8);
    let seen = store.data().nested_error.clone().unwrap();
    assert!(seen.contains("uncaught Wasm exception"), "{seen}");
}

#[test]
fn a_catch_of_one_tag_lets_another_tag_pass() {
    let (mut store, instance, _) = setup();
    let f = instance
        .get_typed_func::<(), i32>(&mut store, "other_is_not_caught_by_e")
        .unwrap();
    let e = expect_exception(f.call(&mut store, ()).unwrap_err());
    let other = instance.get_tag(&mut store, "other").unwrap();
    assert_eq!(e.tag(), other);
    assert!(e.payload().is_empty());
    assert!(other.ty(&store).params().is_empty());
    assert!(matches!(
        weft::Extern::Tag(other).ty(&store),
        ExternType::Tag(_)
    ));
}

#[test]
fn catch_all_ref_and_throw_ref_rethrow_the_same_exception() {
    let (mut store, instance, tag) = setup();
    let f = instance
        .get_typed_func::<i32, ()>(&mut store, "rethrow_caught_ref")
        .unwrap();
    let e = expect_exception(f.call(&mut store, 10).unwrap_err());
    assert_eq!(e.tag(), tag);
    assert_eq!(e.payload(), &[Val::I32(11), Val::I64(7)]);
}

#[test]
fn exnref_values_cross_the_api_and_throw_again_as_the_same_exception() {
    let (mut store, instance, tag) = setup();
    let catch_ref_out = instance.get_func(&mut store, "catch_ref_out").unwrap();
    let mut out = [Val::I32(0)];
    catch_ref_out
        .call(&mut store, &[Val::I32(30)], &mut out)
        .unwrap();
    let Val::ExnRef(Some(exn)) = out[0] else {
        panic!("expected an exnref, got {:?}", out[0]);
    };
    assert_eq!(exn.tag(&store), tag);
    assert_eq!(exn.payload(&mut store), vec![Val::I32(31), Val::I64(7)]);
    let throw_given = instance.get_func(&mut store, "throw_given").unwrap();
    let error = throw_given.call(&mut store, &out, &mut []).unwrap_err();
    assert_eq!(expect_exception(error).exnref(), exn);
    let error = throw_given
        .call(&mut store, &[Val::ExnRef(None)], &mut [])
        .unwrap_err();
    assert_eq!(error.trap(), Some(Trap::NullReference), "{error}");
    // A host-made exception thrown by Wasm's throw_ref.
    let made = weft::ExnRef::new(&mut store, &tag, &[Val::I32(-1), Val::I64(-2)]).unwrap();
    let error = throw_given
        .call(&mut store, &[Val::ExnRef(Some(made))], &mut [])
        .unwrap_err();
    let e = expect_exception(error);
    assert_eq!(e.payload(), &[Val::I32(-1), Val::I64(-2)]);
    // A payload of the wrong types is refused.
    assert!(weft::ExnRef::new(&mut store, &tag, &[Val::I32(1)]).is_err());
}

#[test]
fn exception_after_a_resume_is_caught_below_the_suspension_point() {
    let (mut store, instance, _) = setup();
    let f = instance
        .get_typed_func::<i32, i32>(&mut store, "throw_after_resume")
        .unwrap();
    assert_eq!(block_on(f.call_async(&mut store, 20)).unwrap(), 21);
}

#[test]
fn exception_through_a_promising_calls_stack_reaches_the_awaiting_host() {
    let (mut store, instance, tag) = setup();
    let f = instance
        .get_typed_func::<i32, ()>(&mut store, "uncaught_after_resume")
        .unwrap();
    let e = expect_exception(block_on(f.call_async(&mut store, 2)).unwrap_err());
    assert_eq!(e.tag(), tag);
    assert_eq!(e.payload(), &[Val::I32(3), Val::I64(7)]);
    // The fiber's stack went back to the pool in a state the next call can use.
    let again = instance
        .get_typed_func::<i32, i32>(&mut store, "throw_after_resume")
        .unwrap();
    assert_eq!(block_on(again.call_async(&mut store, 0)).unwrap(), 1);
}

#[test]
fn suspending_import_throws_into_its_caller_after_resuming() {
    let (mut store, instance, _) = setup();
    let f = instance
        .get_typed_func::<i32, i32>(&mut store, "catch_async_host_throw")
        .unwrap();
    assert_eq!(block_on(f.call_async(&mut store, 5)).unwrap(), 105);
}

#[test]
fn throw_from_a_deep_recursion_is_caught_at_its_base() {
    let (mut store, instance, _) = setup();
    assert_eq!(call_i32(&mut store, &instance, "deep", 5_000), 99);
}
