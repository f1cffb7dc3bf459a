//! A suspending import whose future awaits another promising call on the same `SharedStore`
//! (JSPI: an async import calling back into a promising export of the same instance). This
//! used to hang forever: the outer call held the store's lock while its import was polled, and
//! the lock was handed to the inner call, which only the outer call could drive.

use crate::common::PendingOnce;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use weft::{Caller, Engine, Linker, Module, SharedStore, Store, TypedFunc};

/// Counts the import futures dropped, to check cancellation reached the inner call's too.
#[derive(Default)]
struct Data {
    dropped: Arc<AtomicUsize>,
}

struct CountDrop(Arc<AtomicUsize>);
impl Drop for CountDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

type Leaf = (SharedStore<Data>, TypedFunc<i32, i32>);

/// `outer(x)` calls the suspending import `host.nested(x)`, whose future awaits the promising
/// call `leaf(x)` on the same store; `leaf` itself suspends once in `host.wait` and returns
/// `x + 1` after adding to a global both calls can see.
fn setup() -> (SharedStore<Data>, TypedFunc<i32, i32>, TypedFunc<(), i32>) {
    let engine = Engine::default();
    let wat = r#"
        (module
          (import "host" "nested" (func $nested (param i32) (result i32)))
          (import "host" "wait" (func $wait (param i32) (result i32)))
          (global $g (mut i32) (i32.const 0))
          (func (export "leaf") (param $x i32) (result i32)
            (global.set $g (i32.add (global.get $g) (i32.const 100)))
            (call $wait (local.get $x)))
          (func (export "outer") (param $x i32) (result i32)
            (global.set $g (i32.add (global.get $g) (i32.const 1)))
            (i32.add (call $nested (local.get $x)) (global.get $g)))
          (func (export "g") (result i32) (global.get $g)))
    "#;
    let module = Module::new(&engine, wat).unwrap();
    let slot: Arc<OnceLock<Leaf>> = Arc::new(OnceLock::new());
    let mut linker = Linker::<Data>::new(&engine);
    let leaf_slot = slot.clone();
    linker
        .func_wrap_async("host", "nested", move |_: Caller<'_, Data>, x: i32| {
            let (store, leaf) = leaf_slot.get().unwrap().clone();
            async move { leaf.call_async(store, x).await }
        })
        .unwrap();
    linker
        .func_wrap_async("host", "wait", |caller: Caller<'_, Data>, x: i32| {
            let guard = CountDrop(caller.data().dropped.clone());
            async move {
                let _guard = guard;
                PendingOnce(false).await;
                x + 1
            }
        })
        .unwrap();
    let mut store = Store::new(&engine, Data::default());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let leaf = instance.get_typed_func(&mut store, "leaf").unwrap();
    let outer = instance.get_typed_func(&mut store, "outer").unwrap();
    let g = instance.get_typed_func(&mut store, "g").unwrap();
    let store = SharedStore::new(store);
    assert!(slot.set((store.clone(), leaf)).is_ok());
    (store, outer, g)
}

#[test]
fn async_import_awaiting_a_promising_call_on_the_same_shared_store_completes() {
    let (store, outer, g) = setup();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let result = runtime
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(20), outer.call_async(store.clone(), 41)).await
        })
        .expect("the nested call completes instead of hanging")
        .unwrap();
    // leaf(41) = 42, and the global after both calls is 101.
    assert_eq!(result, 42 + 101);
    let mut guard = store
        .try_lock()
        .expect("no call holds the store afterwards");
    assert_eq!(g.call(&mut *guard, ()).unwrap(), 101);
}

#[test]
fn nested_promising_call_also_completes_when_the_outer_one_is_spawned_on_threads() {
    let (store, outer, _) = setup();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let all = async {
        let tasks: Vec<_> = (0..50)
            .map(|i| tokio::spawn(outer.call_async(store.clone(), i)))
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap().unwrap());
        }
        results
    };
    let results = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), all).await })
        .expect("every nested call completes");
    // Each result is x + 1 + the global at its read, which the calls interleave on: only
    // check what does not depend on the interleaving.
    for (i, r) in (0..).zip(&results) {
        assert!(*r > i + 1, "call {i} returned {r}");
    }
    assert!(store.try_lock().is_some());
}

#[test]
fn cancelling_an_outer_call_suspended_in_a_nested_call_unwinds_both() {
    let (store, outer, g) = setup();
    let dropped = store.try_lock().unwrap().data().dropped.clone();
    {
        let mut call = pin!(outer.call_async(store.clone(), 1));
        let pending = call.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        assert!(pending.is_pending(), "suspended in the inner call's import");
        assert_eq!(dropped.load(Ordering::SeqCst), 0);
        // Dropped here, while both calls are suspended: must neither hang nor leak.
    }
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the inner call's import future was dropped"
    );
    let mut guard = store.try_lock().expect("the store is free again");
    assert_eq!(g.call(&mut *guard, ()).unwrap(), 101);
}

/// A default engine and `wat` compiled on it.
fn compile(wat: &str) -> (Engine, Module) {
    let engine = Engine::default();
    let module = Module::new(&engine, wat).unwrap();
    (engine, module)
}

/// A shared store with an instance of `module`, and its `leaf` and `outer` exports.
fn shared_leaf_and_outer<P: weft::WasmParams>(
    engine: &Engine,
    linker: &Linker<()>,
    module: &Module,
) -> (SharedStore<()>, TypedFunc<i32, i32>, TypedFunc<P, i32>) {
    let mut store = Store::new(engine, ());
    let instance = linker.instantiate(&mut store, module).unwrap();
    let leaf = instance.get_typed_func(&mut store, "leaf").unwrap();
    let outer = instance.get_typed_func(&mut store, "outer").unwrap();
    (SharedStore::new(store), leaf, outer)
}

/// Issue 12: a *synchronous* host function that polls a promising call on its own store by
/// hand used to wait forever: the store is held by the call running the host function, further
/// down the same stack. Now the inner call fails at once with `Error::StoreInUse`, and both the
/// outer call and the store carry on.
#[test]
fn sync_host_function_polling_a_call_on_its_own_store_fails_instead_of_hanging() {
    let (engine, module) = compile(
        r#"(module
             (import "host" "poll_by_hand" (func $poll (param i32) (result i32)))
             (func (export "leaf") (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
             (func (export "outer") (param i32) (result i32) (call $poll (local.get 0))))"#,
    );
    type PlainLeaf = (SharedStore<()>, TypedFunc<i32, i32>);
    let slot: Arc<OnceLock<PlainLeaf>> = Arc::new(OnceLock::new());
    let seen = Arc::new(std::sync::Mutex::new(None::<String>));
    let mut linker = Linker::<()>::new(&engine);
    let (leaf_slot, seen_in_host) = (slot.clone(), seen.clone());
    linker
        .func_wrap("host", "poll_by_hand", move |x: i32| -> i32 {
            let (store, leaf) = leaf_slot.get().unwrap().clone();
            let mut call = pin!(leaf.call_async(store, x));
            let mut cx = Context::from_waker(Waker::noop());
            // A few polls at most: the old behaviour was Pending for ever.
            for _ in 0..100 {
                if let Poll::Ready(result) = call.as_mut().poll(&mut cx) {
                    *seen_in_host.lock().unwrap() = Some(match result {
                        Ok(v) => format!("ok {v}"),
                        Err(e) => format!("{e:?}"),
                    });
                    return -1;
                }
            }
            -2
        })
        .unwrap();
    let (store, leaf, outer) = shared_leaf_and_outer(&engine, &linker, &module);
    assert!(slot.set((store.clone(), leaf)).is_ok());
    let mut cx = Context::from_waker(Waker::noop());
    let mut call = pin!(outer.call_async(store.clone(), 41));
    let Poll::Ready(result) = call.as_mut().poll(&mut cx) else {
        panic!("the outer call has nothing to wait for");
    };
    assert_eq!(result.unwrap(), -1, "the inner call never finished");
    assert_eq!(seen.lock().unwrap().as_deref(), Some("StoreInUse"));
    // The store is free and works: the inner call itself, polled on its own.
    let mut again = pin!(leaf.call_async(store, 1));
    assert!(matches!(again.as_mut().poll(&mut cx), Poll::Ready(Ok(2))));
}

type PendingCall = Pin<Box<dyn Future<Output = weft::Result<i32>> + Send>>;

/// The same with a call that had already started (it is suspended in an import): polled by
/// hand inside a synchronous host function of its store, it fails with `StoreInUse` too, and
/// dropping it there cancels it once the host function's caller releases the store (the import
/// future is dropped then), instead of spinning for a store that cannot be released.
#[test]
fn started_call_dropped_inside_a_sync_host_function_of_its_store_is_cancelled_afterwards() {
    let (engine, module) = compile(
        r#"(module
             (import "host" "wait" (func $wait (param i32) (result i32)))
             (import "host" "poll_by_hand" (func $poll (result i32)))
             (func (export "leaf") (param i32) (result i32) (call $wait (local.get 0)))
             (func (export "outer") (result i32) (call $poll)))"#,
    );
    let slot: Arc<std::sync::Mutex<Option<PendingCall>>> = Arc::default();
    let dropped = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(std::sync::Mutex::new(None::<String>));
    let mut linker = Linker::<()>::new(&engine);
    let dropped_in_import = dropped.clone();
    linker
        .func_wrap_async("host", "wait", move |_: Caller<'_, ()>, x: i32| {
            let guard = CountDrop(dropped_in_import.clone());
            async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                x
            }
        })
        .unwrap();
    let (slot_in_host, seen_in_host) = (slot.clone(), seen.clone());
    linker
        .func_wrap("host", "poll_by_hand", move || -> i32 {
            let mut call = slot_in_host.lock().unwrap().take().unwrap();
            let mut cx = Context::from_waker(Waker::noop());
            let outcome = match call.as_mut().poll(&mut cx) {
                Poll::Ready(Ok(v)) => format!("ok {v}"),
                Poll::Ready(Err(e)) => format!("{e:?}"),
                Poll::Pending => "pending".to_string(),
            };
            *seen_in_host.lock().unwrap() = Some(outcome);
            drop(call);
            7
        })
        .unwrap();
    let (store, leaf, outer) = shared_leaf_and_outer(&engine, &linker, &module);
    let mut cx = Context::from_waker(Waker::noop());
    // Start the leaf: it suspends in `wait`.
    let mut started: PendingCall = Box::pin(leaf.call_async(store.clone(), 5));
    assert!(started.as_mut().poll(&mut cx).is_pending());
    *slot.lock().unwrap() = Some(started);
    let mut call = pin!(outer.call_async(store.clone(), ()));
    let Poll::Ready(result) = call.as_mut().poll(&mut cx) else {
        panic!("the outer call has nothing to wait for");
    };
    assert_eq!(result.unwrap(), 7);
    assert_eq!(seen.lock().unwrap().as_deref(), Some("StoreInUse"));
    // Cancelled when the outer call's poll released the store: its import future is gone.
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    // And the store works.
    let mut again = pin!(outer.call_async(store.clone(), ()));
    *slot.lock().unwrap() = Some(Box::pin(leaf.call_async(store, 6)));
    assert!(matches!(again.as_mut().poll(&mut cx), Poll::Ready(Ok(7))));
    assert_eq!(seen.lock().unwrap().as_deref(), Some("StoreInUse"));
}
