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
    // The same through the untyped call. Nothing referred to the object, so the store freed
    // it and the error owns tag and payload.
    let func = instance.get_func(&mut store, "uncaught").unwrap();
    let error = func.call(&mut store, &[Val::I32(5)], &mut []).unwrap_err();
    let e = expect_exception(error);
    assert_eq!(e.tag(), tag);
    assert_eq!(e.payload(), &[Val::I32(6), Val::I64(7)]);
    assert_eq!(e.exnref(), None);
    assert_eq!(store.exception_count(), 0);
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
    // Freed when it left the inner Wasm; the rethrow's new object when the outer caught it.
    assert_eq!(store.exception_count(), 0);
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
    assert_eq!(expect_exception(error).exnref(), Some(exn));
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

/// Throwing in loops, to pin down which exception objects the store frees (see
/// `Store::exception_count`).
const LOOPS_WAT: &str = r#"
(module
  (import "host" "e" (tag $e (param i32 i64)))
  (import "host" "throw" (func $host_throw (param i32)))
  (global $kept (mut exnref) (ref.null exn))
  (func $thrower (export "thrower") (param i32)
    (throw $e (local.get 0) (i64.const 7)))
  ;; For n down to 1: a throw one frame down caught by `catch`, and a throw in place caught
  ;; by `catch_all`. The sum of the payloads.
  (func (export "throw_loop") (param $n i32) (result i32) (local $sum i32)
    (loop $l
      (block $h (result i32 i64)
        (try_table (catch $e $h) (call $thrower (local.get $n)))
        (unreachable))
      (drop) (local.get $sum) (i32.add) (local.set $sum)
      (block $h
        (try_table (catch_all $h) (throw $e (local.get $n) (i64.const 1)))
        (unreachable))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
    (local.get $sum))
  ;; The same with a host function throwing.
  (func (export "host_throw_loop") (param $n i32) (result i32) (local $sum i32)
    (loop $l
      (block $h (result i32 i64)
        (try_table (catch $e $h) (call $host_throw (local.get $n)))
        (unreachable))
      (drop) (local.get $sum) (i32.add) (local.set $sum)
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
    (local.get $sum))
  ;; Keeps the exnref of a caught exception in a global.
  (func (export "keep") (param i32)
    (block $h (result i32 i64 exnref)
      (try_table (catch_ref $e $h) (call $thrower (local.get 0)))
      (unreachable))
    (global.set $kept) (drop) (drop))
  ;; Throws the kept exception again and catches it with `catch`: its payload.
  (func (export "rethrow_kept") (result i32)
    (block $h (result i32 i64)
      (try_table (catch $e $h) (throw_ref (global.get $kept)))
      (unreachable))
    (drop))
)
"#;

fn setup_loops() -> (Store<()>, Instance) {
    let engine = Engine::default();
    let mut store = Store::new(&engine, ());
    let tag_type = TagType::new(FuncType::new([ValType::I32, ValType::I64], []));
    let tag = Tag::new(&mut store, &tag_type).unwrap();
    let mut linker = Linker::new(&engine);
    linker.define(&mut store, "host", "e", tag).unwrap();
    linker
        .func_wrap(
            "host",
            "throw",
            move |mut caller: Caller<'_, ()>, x: i32| -> weft::Result<()> {
                let payload = [Val::I32(x), Val::I64(5)];
                Err(WasmException::new(&mut caller, &tag, &payload)?.into())
            },
        )
        .unwrap();
    let module = Module::new(&engine, LOOPS_WAT).unwrap();
    let instance = linker.instantiate(&mut store, &module).unwrap();
    (store, instance)
}

/// 1 + 2 + … + n, as Wasm's i32 arithmetic computes it.
fn wasm_sum_to(n: u32) -> i32 {
    (1..=n).fold(0i32, |sum, i| sum.wrapping_add(i as i32))
}

#[test]
fn a_million_throws_caught_in_wasm_leave_no_exception_objects() {
    let (mut store, instance) = setup_loops();
    let throw_loop = instance
        .get_typed_func::<i32, i32>(&mut store, "throw_loop")
        .unwrap();
    // Two throws per round: 1,000,000 in all (100,000 on AArch64, which CI runs under qemu,
    // ten times slower). Without freeing, each would stay in the store.
    let rounds = if cfg!(target_arch = "aarch64") {
        50_000
    } else {
        500_000
    };
    assert_eq!(
        throw_loop.call(&mut store, rounds as i32).unwrap(),
        wasm_sum_to(rounds)
    );
    assert_eq!(store.exception_count(), 0);
}

#[test]
fn exceptions_thrown_by_a_host_function_or_reaching_the_host_are_freed() {
    let (mut store, instance) = setup_loops();
    let host_throw_loop = instance
        .get_typed_func::<i32, i32>(&mut store, "host_throw_loop")
        .unwrap();
    assert_eq!(
        host_throw_loop.call(&mut store, 5_000).unwrap(),
        wasm_sum_to(5_000)
    );
    assert_eq!(store.exception_count(), 0);
    let thrower = instance
        .get_typed_func::<i32, ()>(&mut store, "thrower")
        .unwrap();
    for i in 0..5_000 {
        let e = expect_exception(thrower.call(&mut store, i).unwrap_err());
        assert_eq!(e.payload(), &[Val::I32(i), Val::I64(7)]);
        assert_eq!(e.exnref(), None);
    }
    assert_eq!(store.exception_count(), 0);
}

#[test]
fn an_exnref_kept_by_wasm_stays_valid_through_later_throws_and_catches() {
    let (mut store, instance) = setup_loops();
    let keep = instance
        .get_typed_func::<i32, ()>(&mut store, "keep")
        .unwrap();
    let rethrow_kept = instance
        .get_typed_func::<(), i32>(&mut store, "rethrow_kept")
        .unwrap();
    let throw_loop = instance
        .get_typed_func::<i32, i32>(&mut store, "throw_loop")
        .unwrap();
    keep.call(&mut store, 41).unwrap();
    assert_eq!(store.exception_count(), 1);
    // A `catch` of the kept exception must not free it: the global still refers to it.
    for _ in 0..3 {
        assert_eq!(rethrow_kept.call(&mut store, ()).unwrap(), 41);
    }
    // Freed objects of other throws do not disturb it.
    assert_eq!(
        throw_loop.call(&mut store, 1_000).unwrap(),
        wasm_sum_to(1_000)
    );
    assert_eq!(rethrow_kept.call(&mut store, ()).unwrap(), 41);
    assert_eq!(store.exception_count(), 1);
    // An overwritten exnref's object stays until the store is dropped (no collector).
    keep.call(&mut store, 42).unwrap();
    assert_eq!(rethrow_kept.call(&mut store, ()).unwrap(), 42);
    assert_eq!(store.exception_count(), 2);
}

#[test]
fn a_host_exnref_handle_stays_valid_through_later_throws_and_catches() {
    let (mut store, instance) = setup_loops();
    let tag_type = TagType::new(FuncType::new([ValType::I32, ValType::I64], []));
    let tag = Tag::new(&mut store, &tag_type).unwrap();
    let made = weft::ExnRef::new(&mut store, &tag, &[Val::I32(3), Val::I64(4)]).unwrap();
    let throw_loop = instance
        .get_typed_func::<i32, i32>(&mut store, "throw_loop")
        .unwrap();
    assert_eq!(
        throw_loop.call(&mut store, 1_000).unwrap(),
        wasm_sum_to(1_000)
    );
    assert_eq!(made.payload(&mut store), vec![Val::I32(3), Val::I64(4)]);
    let e = WasmException::from_exnref(&mut store, made);
    assert_eq!(e.exnref(), Some(made));
    assert_eq!(store.exception_count(), 1);
}

/// `nullexnref`, the exception-handling proposal's bottom type below `exnref` (found refused
/// as unsupported by the `compile` fuzz target): modules using it compile, its only value is
/// null, it is a subtype of `exnref` but not the same type, and a `call_indirect` that expects
/// one of the two traps on a function of the other.
#[test]
fn nullexnref_is_the_bottom_of_exnref() {
    use weft::{HeapType, RefType};
    let wat = r#"
      (module
        (type $to_null (func (result nullexnref)))
        (type $to_exn (func (result exnref)))
        (table funcref (elem $null $exn))
        (global $g (mut nullexnref) (ref.null noexn))
        (func $null (export "null") (type $to_null) (global.get $g))
        (func $exn (type $to_exn) (ref.null exn))
        (func (export "widen") (result exnref) (call $null))
        (func (export "is_null") (param nullexnref) (result i32) (ref.is_null (local.get 0)))
        (func (export "wrong_type") (result i32)
          (ref.is_null (call_indirect (type $to_null) (i32.const 1)))))
    "#;
    let engine = Engine::default();
    let module = Module::new(&engine, wat).unwrap();
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[]).unwrap();
    let null = instance.get_func(&mut store, "null").unwrap();
    let nullexnref = ValType::Ref(RefType::new(true, HeapType::NoExn));
    assert_eq!(null.ty(&store).results(), &[nullexnref]);
    assert_eq!(nullexnref.to_string(), "nullexnref");
    assert!(nullexnref.matches(&ValType::EXNREF) && !ValType::EXNREF.matches(&nullexnref));
    let mut results = [Val::I32(1)];
    null.call(&mut store, &[], &mut results).unwrap();
    assert!(matches!(results[0], Val::ExnRef(None)));
    let widen = instance.get_func(&mut store, "widen").unwrap();
    widen.call(&mut store, &[], &mut results).unwrap();
    assert!(matches!(results[0], Val::ExnRef(None)));
    let is_null = instance.get_func(&mut store, "is_null").unwrap();
    let mut flag = [Val::I32(0)];
    is_null
        .call(&mut store, &[Val::ExnRef(None)], &mut flag)
        .unwrap();
    assert!(matches!(flag[0], Val::I32(1)));
    let wrong = instance
        .get_typed_func::<(), i32>(&mut store, "wrong_type")
        .unwrap();
    match wrong.call(&mut store, ()) {
        Err(Error::Trap { trap, .. }) => assert_eq!(trap, Trap::IndirectCallTypeMismatch),
        other => panic!("expected a signature-mismatch trap, got {other:?}"),
    }
}
