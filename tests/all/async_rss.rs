//! Memory: creating, suspending and dropping promising calls keeps RSS flat. The measurement
//! runs in a child process (this test binary again, filtered to this one test), so that no
//! other test runs in the process while it measures.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use weft::{Caller, Engine, Linker, Module, Store};

fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn create_suspend_drop_cycles_keep_rss_flat() {
    if !crate::common::in_own_process(
        "async_rss::create_suspend_drop_cycles_keep_rss_flat",
        "WEFT_TEST_RSS_CHILD",
    ) {
        return;
    }
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (import "env" "wait" (func $wait (param i32) (result i32)))
             (func (export "wait_once") (param i32) (result i32)
               (i32.add (call $wait (local.get 0)) (i32.const 1))))"#,
    )
    .unwrap();
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap_async("env", "wait", |_: Caller<'_, ()>, x: i32| async move {
            std::future::pending::<()>().await;
            x
        })
        .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let wait_once = instance
        .get_typed_func::<i32, i32>(&mut store, "wait_once")
        .unwrap();
    let cycle = |store: &mut Store<()>| {
        let mut call = pin!(wait_once.call_async(&mut *store, 1));
        assert!(poll_once(call.as_mut()).is_pending());
    };
    for _ in 0..1_000 {
        cycle(&mut store);
    }
    let before = resident_bytes();
    for _ in 0..100_000 {
        cycle(&mut store);
    }
    let after = resident_bytes();
    let growth = after.saturating_sub(before);
    assert!(growth < 16 << 20, "RSS grew by {} KiB", growth >> 10);
}
