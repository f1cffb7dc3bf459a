//! The async binding's calls suspend the promising call rather than block the thread, and a
//! guest that never finishes can be dropped cleanly.

use std::time::{Duration, Instant};

use crate::common::*;
use weft::{Error, Trap};
use weft_wasi::{MemoryInputPipe, MemoryOutputPipe, WasiCtx};

const SLEEP_FOREVER: &str = r#"
  (func (export "sleep_forever")
    (loop $again
      (drop (call $poll_oneoff (i32.const 0) (i32.const 1000) (i32.const 1) (i32.const 2000)))
      (br $again)))
"#;

fn clock_subscription(g: &mut Guest, nanos: u64) {
    let mut sub = [0u8; 48];
    sub[16..20].copy_from_slice(&1u32.to_le_bytes());
    sub[24..32].copy_from_slice(&nanos.to_le_bytes());
    g.write(0, &sub);
}

#[test]
fn dropping_a_guest_that_never_exits_cancels_it_cleanly() {
    let mut g = Guest::with_extra(
        WasiCtx::builder().build().unwrap(),
        Binding::Async,
        SLEEP_FOREVER,
    );
    clock_subscription(&mut g, 5_000_000);
    let func = g.func("sleep_forever");
    let rt = runtime();
    let outcome = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_millis(100),
            func.call_async(&mut g.store, &[], &mut []),
        )
        .await
    });
    assert!(
        outcome.is_err(),
        "the guest never returns; the timeout drops its call"
    );
    // The store and the WASI context are intact: the guest runs again.
    assert_eq!(
        rt.block_on(g.call_async("sched_yield", &[])).unwrap(),
        SUCCESS
    );
    assert_eq!(
        rt.block_on(g.call_async("fd_fdstat_get", &[i(1), i(100)]))
            .unwrap(),
        SUCCESS
    );
}

#[test]
fn a_sleeping_guest_leaves_the_thread_to_other_tasks() {
    let mut g = Guest::new(WasiCtx::builder().build().unwrap(), Binding::Async);
    clock_subscription(&mut g, 300_000_000);
    let rt = runtime();
    let args = [i(0), i(1000), i(1), i(2000)];
    let (errno, ticks) = rt.block_on(async {
        let ticker = async {
            let mut ticks = 0;
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(250) {
                tokio::time::sleep(Duration::from_millis(10)).await;
                ticks += 1;
            }
            ticks
        };
        tokio::join!(g.call_async("poll_oneoff", &args), ticker)
    });
    assert_eq!(errno.unwrap(), SUCCESS);
    // The ticker ran while the guest slept (had the sleep blocked the thread, it would have
    // run only after it, and a single tick would then have covered all 250 ms).
    assert!(ticks >= 10, "{ticks} ticks");
}

#[test]
fn stdio_readers_and_writers_run_on_the_blocking_pool_of_a_current_thread_runtime() {
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let out = Shared::default();
    let ctx = WasiCtx::builder()
        .stdin_reader(std::io::Cursor::new(b"from a reader".to_vec()))
        .stdout_writer(out.clone())
        .stderr(MemoryOutputPipe::new())
        .build()
        .unwrap();
    let mut g = Guest::new(ctx, Binding::Async);
    g.iovec(100, 1000, 64);
    let rt = runtime();
    let read = [i(0), i(100), i(1), i(200)];
    assert_eq!(
        rt.block_on(g.call_async("fd_read", &read)).unwrap(),
        SUCCESS
    );
    assert_eq!(g.read(1000, g.u32(200) as usize), b"from a reader");
    g.iovec(100, 1000, 4);
    let write = [i(1), i(100), i(1), i(200)];
    assert_eq!(
        rt.block_on(g.call_async("fd_write", &write)).unwrap(),
        SUCCESS
    );
    assert_eq!(*out.0.lock().unwrap(), b"from");
}

#[test]
fn async_binding_reached_from_a_synchronous_call_traps_instead_of_blocking() {
    let ctx = WasiCtx::builder()
        .stdin(MemoryInputPipe::new("x"))
        .build()
        .unwrap();
    let mut g = Guest::new(ctx, Binding::Async);
    let error: Error = g.try_call("sched_yield", &[]).unwrap_err();
    assert_eq!(error.trap(), Some(Trap::SuspendOutsidePromisingCall));
}
