//! Stacks for promising calls: the limit on how many exist, the OS refusing the memory for one,
//! and that many suspended calls cost no memory mapping each (`vm.max_map_count` is 65,530).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use weft::{Caller, Config, Engine, Error, Linker, Module, SharedStore, Store, TypedFunc};

use crate::common;

type Call = Pin<Box<dyn Future<Output = weft::Result<i32>>>>;

/// A shared store whose `wait_then_double(x)` suspends until `gate` has a permit for it, then
/// returns `2 * x`.
fn gated(
    engine: &Engine,
    gate: &Arc<tokio::sync::Semaphore>,
) -> (SharedStore<()>, TypedFunc<i32, i32>) {
    let module = Module::new(
        engine,
        r#"(module
             (import "env" "wait" (func $wait (param i32) (result i32)))
             (func (export "wait_then_double") (param i32) (result i32)
               (i32.mul (call $wait (local.get 0)) (i32.const 2))))"#,
    )
    .unwrap();
    let mut linker = Linker::new(engine);
    let gate = gate.clone();
    linker
        .func_wrap_async("env", "wait", move |_: Caller<'_, ()>, x: i32| {
            let gate = gate.clone();
            async move {
                gate.acquire().await.unwrap().forget();
                x
            }
        })
        .unwrap();
    let mut store = Store::new(engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let func = instance
        .get_typed_func::<i32, i32>(&mut store, "wait_then_double")
        .unwrap();
    (SharedStore::new(store), func)
}

fn poll(call: &mut Call) -> Poll<weft::Result<i32>> {
    call.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

/// Starts `count` calls, `wait_then_double(first..)`, each polled to its suspension.
fn suspend_calls(
    store: &SharedStore<()>,
    func: &TypedFunc<i32, i32>,
    first: usize,
    count: usize,
) -> Vec<Call> {
    (first..first + count)
        .map(|i| {
            let mut call: Call = Box::pin(func.call_async(store.clone(), i as i32));
            assert!(poll(&mut call).is_pending(), "call {i} did not suspend");
            call
        })
        .collect()
}

/// Polls every call to its end, checking its result.
fn finish_calls(calls: Vec<Call>, first: usize) {
    for (i, mut call) in calls.into_iter().enumerate() {
        match poll(&mut call) {
            Poll::Ready(Ok(result)) => assert_eq!(result, 2 * (first + i) as i32),
            Poll::Ready(Err(error)) => panic!("call {}: {error}", first + i),
            Poll::Pending => panic!("call {} is still suspended", first + i),
        }
    }
}

#[test]
fn max_async_stacks_of_zero_is_refused() {
    let mut config = Config::new();
    assert_eq!(config.get_max_async_stacks(), 1 << 20);
    config.max_async_stacks(0);
    let error = Engine::new(&config).err().expect("0 stacks is refused");
    assert!(matches!(error, Error::InvalidConfig(_)), "{error}");
    assert!(error.to_string().contains("max_async_stacks"), "{error}");
}

#[test]
fn exhausting_max_async_stacks_is_a_resource_limit_and_the_store_stays_usable() {
    let mut config = Config::new();
    config.max_async_stacks(4);
    let engine = Engine::new(&config).unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (store, func) = gated(&engine, &gate);
    let held = suspend_calls(&store, &func, 0, 4);
    let mut fifth: Call = Box::pin(func.call_async(store.clone(), 4));
    match poll(&mut fifth) {
        Poll::Ready(Err(Error::ResourceLimit(message))) => {
            assert!(message.contains("Config::max_async_stacks"), "{message}")
        }
        other => panic!(
            "a fifth call with four stacks: {:?}",
            other.map(|r| r.map_err(|e| e.to_string()))
        ),
    }
    // The calls in flight are unharmed, and once they finished their stacks serve new calls.
    gate.add_permits(4);
    finish_calls(held, 0);
    let again = suspend_calls(&store, &func, 10, 4);
    gate.add_permits(4);
    finish_calls(again, 10);
}

/// The OS refusing a stack (here the address space runs out: 1 TiB stacks, about 127 of them
/// fit in a 47-bit address space) fails the call that needed it with a resource limit; the
/// calls in flight and the store carry on. In a child process: it exhausts the address space.
#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "under qemu-user, mapping 127 TiB one TiB at a time takes over a minute"
)]
fn os_refusing_a_stack_is_a_resource_limit_and_the_store_stays_usable() {
    const CHILD: &str = "WEFT_TEST_STACK_ENOMEM_CHILD";
    if std::env::var_os(CHILD).is_none() {
        let output = common::rerun_test_in_child(
            "stacks::os_refusing_a_stack_is_a_resource_limit_and_the_store_stays_usable",
            CHILD,
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("1 passed"), "{stdout}\n{stderr}");
        return;
    }
    let mut config = Config::new();
    config.async_stack_size(1 << 40);
    let engine = Engine::new(&config).unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (store, func) = gated(&engine, &gate);
    let mut held = Vec::new();
    let message = loop {
        assert!(held.len() < 1000, "1000 TiB of stacks were mapped");
        let mut call: Call = Box::pin(func.call_async(store.clone(), held.len() as i32));
        match poll(&mut call) {
            Poll::Pending => held.push(call),
            Poll::Ready(Err(Error::ResourceLimit(message))) => break message,
            Poll::Ready(other) => panic!("{:?}", other.map_err(|e| e.to_string())),
        }
    };
    assert!(held.len() > 10, "only {} stacks of 1 TiB", held.len());
    assert!(message.contains("os error 12"), "{message}");
    // Cancelling one call gives its stack back, and the next call gets it.
    let count = held.len();
    drop(held.pop());
    held.extend(suspend_calls(&store, &func, count - 1, 1));
    gate.add_permits(count);
    finish_calls(held, 0);
}

/// Many suspended calls on one store cost (almost) no memory mapping each: with guards
/// installed by `madvise`, a slab of about 500 stacks is one mapping. Where the kernel (or
/// qemu-user) cannot install guards, the pool falls back to two mappings per stack, and this
/// test pins that cost instead. In a child process, so that no other test maps meanwhile.
#[test]
fn many_suspended_calls_keep_memory_mappings_flat() {
    const CHILD: &str = "WEFT_TEST_MAPPINGS_CHILD";
    if std::env::var_os(CHILD).is_none() {
        let output = common::rerun_test_in_child(
            "stacks::many_suspended_calls_keep_memory_mappings_flat",
            CHILD,
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("1 passed"), "{stdout}\n{stderr}");
        return;
    }
    // Past a third of vm.max_map_count at two mappings a call, were they still that.
    let count = if cfg!(target_arch = "aarch64") {
        2_000
    } else {
        20_000
    };
    let engine = Engine::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (store, func) = gated(&engine, &gate);
    // Warm up: code, trampolines, the signal stack, the first slab.
    let warm = suspend_calls(&store, &func, 0, 1);
    gate.add_permits(1);
    finish_calls(warm, 0);
    let before = common::mappings();
    let held = suspend_calls(&store, &func, 0, count);
    let per_call = (common::mappings() - before) as f64 / count as f64;
    println!("{count} suspended calls: {per_call:.4} mappings per call");
    match weft_arch::guard_kind() {
        weft_arch::GuardKind::Installed => {
            assert!(per_call < 0.01, "{per_call} mappings per suspended call")
        }
        weft_arch::GuardKind::Protected => {
            assert!(per_call <= 2.01, "{per_call} mappings per suspended call")
        }
    }
    gate.add_permits(count);
    finish_calls(held, 0);
}
