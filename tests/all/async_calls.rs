//! Promising calls and suspending imports: the JSPI seed programs, suspension across host
//! frames, many suspended calls at once, cancellation, traps and panics after a resume.

use crate::common;
use crate::common::PendingOnce;

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use weft::{
    Caller, Config, Engine, Extern, Linker, Module, SharedStore, Store, Trap, TypedFunc, Val,
};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn pending_once() -> PendingOnce {
    PendingOnce(false)
}

/// The function names of a trap's backtrace, innermost first ("" for a frame without one).
fn frame_names(error: &weft::Error) -> Vec<String> {
    error
        .backtrace()
        .expect("a trap with a backtrace")
        .frames
        .iter()
        .map(|f| f.func_name.clone().unwrap_or_default())
        .collect()
}

/// Polls `future` once with a no-op waker.
fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// The seed programs

struct SleepLog {
    events: Vec<&'static str>,
    started: Option<Instant>,
}

#[test]
fn sleep_calls_imports_in_order_and_returns_elapsed_time() {
    let engine = Engine::default();
    let module = Module::new(&engine, fixture("sleep.wat")).unwrap();
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap("env", "js_before", |mut caller: Caller<'_, SleepLog>| {
            caller.data_mut().events.push("before");
            caller.data_mut().started = Some(Instant::now());
        })
        .unwrap()
        .func_wrap_async(
            "env",
            "js_timeout",
            |mut caller: Caller<'_, SleepLog>, ms: i32| {
                caller.data_mut().events.push("timeout");
                tokio::time::sleep(Duration::from_millis(ms as u64))
            },
        )
        .unwrap()
        .func_wrap("env", "js_after", |mut caller: Caller<'_, SleepLog>| {
            caller.data_mut().events.push("after");
            caller.data().started.unwrap().elapsed().as_millis() as i32
        })
        .unwrap();
    let mut store = Store::new(
        &engine,
        SleepLog {
            events: Vec::new(),
            started: None,
        },
    );
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let sleep = instance
        .get_typed_func::<i32, i32>(&mut store, "sleep")
        .unwrap();
    let elapsed = current_thread()
        .block_on(sleep.call_async(&mut store, 30))
        .unwrap();
    assert!((30..1000).contains(&elapsed), "slept {elapsed} ms");
    assert_eq!(store.data().events, ["before", "timeout", "after"]);
}

fn badfib_instance(engine: &Engine, store: &mut Store<()>) -> weft::Instance {
    let module = Module::new(engine, fixture("badfib.wat")).unwrap();
    let mut linker = Linker::new(engine);
    linker
        .func_wrap_async(
            "env",
            "promiseAdd",
            |_: Caller<'_, ()>, a: i32, b: i32| async move {
                pending_once().await;
                a + b
            },
        )
        .unwrap();
    linker.instantiate(store, &module).unwrap()
}

#[test]
fn badfib_with_suspending_add_equals_fib_up_to_20() {
    let engine = Engine::default();
    let mut store = Store::new(&engine, ());
    let instance = badfib_instance(&engine, &mut store);
    let badfib = instance
        .get_typed_func::<i32, i32>(&mut store, "badfib")
        .unwrap();
    let fib = instance
        .get_typed_func::<i32, i32>(&mut store, "fib")
        .unwrap();
    let runtime = current_thread();
    for n in 0..=20 {
        let expected = fib.call(&mut store, n).unwrap();
        let got = runtime.block_on(badfib.call_async(&mut store, n)).unwrap();
        assert_eq!(got, expected, "fib({n})");
    }
}

struct Lazy {
    /// The table index of the plugin's export, once loaded.
    loaded: Option<i32>,
    loads: usize,
}

#[test]
fn lazy_loading_import_loads_on_first_call_only() {
    let engine = Engine::default();
    let module = Module::new(&engine, fixture("lazy_main.wat")).unwrap();
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap_async("env", "load", |caller: Caller<'_, Lazy>| {
            let loaded = caller.data().loaded;
            let engine = caller.engine().clone();
            let access = caller.store_access();
            async move {
                if let Some(index) = loaded {
                    return Ok(index);
                }
                // Compile on the blocking pool; the Wasm that asked waits, suspended.
                let plugin = tokio::task::spawn_blocking(move || {
                    Module::new(&engine, fixture("lazy_plugin.wat"))
                })
                .await
                .unwrap()?;
                access.with(|mut caller| {
                    let engine = caller.engine().clone();
                    let instance = Linker::new(&engine).instantiate(&mut caller, &plugin)?;
                    let double = instance.get_func(&mut caller, "double").unwrap();
                    let table = caller.get_export("table").unwrap().into_table().unwrap();
                    table.set(&mut caller, 1, Val::FuncRef(Some(double)))?;
                    caller.data_mut().loaded = Some(1);
                    caller.data_mut().loads += 1;
                    Ok(1)
                })?
            }
        })
        .unwrap();
    let mut store = Store::new(
        &engine,
        Lazy {
            loaded: None,
            loads: 0,
        },
    );
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let run = instance
        .get_typed_func::<i32, i32>(&mut store, "run")
        .unwrap();
    let runtime = current_thread();
    for x in [1, 2, 21] {
        assert_eq!(
            runtime.block_on(run.call_async(&mut store, x)).unwrap(),
            2 * x
        );
    }
    assert_eq!(store.data().loads, 1, "loaded by the first call only");
}

// ---------------------------------------------------------------------------------------------
// Suspension shapes

#[derive(Default)]
struct Paths {
    /// Calls waiting in `wait` right now, and the most there ever were.
    in_flight: usize,
    max_in_flight: usize,
}

/// `suspend_paths.wat` with `wait(x)` = x after one suspension.
fn paths_instance(engine: &Engine, store: &mut Store<Paths>) -> weft::Instance {
    let module = Module::new(engine, fixture("suspend_paths.wat")).unwrap();
    let mut linker = Linker::new(engine);
    linker
        .func_wrap_async("env", "wait", |mut caller: Caller<'_, Paths>, x: i32| {
            let data = caller.data_mut();
            data.in_flight += 1;
            data.max_in_flight = data.max_in_flight.max(data.in_flight);
            let access = caller.store_access();
            async move {
                pending_once().await;
                access.with(|mut caller| caller.data_mut().in_flight -= 1)?;
                Ok(x)
            }
        })
        .unwrap()
        .func_wrap(
            "env",
            "host_then_wasm",
            |mut caller: Caller<'_, Paths>, x: i32| -> weft::Result<i32> {
                let inner = caller.get_export("inner").unwrap().into_func().unwrap();
                let inner: TypedFunc<i32, i32> = inner.typed(&caller)?;
                inner.call(&mut caller, x)
            },
        )
        .unwrap();
    linker.instantiate(store, &module).unwrap()
}

fn paths() -> (Store<Paths>, weft::Instance) {
    let engine = Engine::default();
    let mut store = Store::new(&engine, Paths::default());
    let instance = paths_instance(&engine, &mut store);
    (store, instance)
}

#[test]
fn pending_import_suspends_the_call_and_resume_finishes_it() {
    let (mut store, instance) = paths();
    let wait_once = instance
        .get_typed_func::<i32, i32>(&mut store, "wait_once")
        .unwrap();
    let mut call = pin!(wait_once.call_async(&mut store, 41));
    assert!(poll_once(call.as_mut()).is_pending());
    assert_eq!(
        poll_once(call.as_mut()).map(Result::unwrap),
        Poll::Ready(42)
    );
}

#[test]
fn sync_call_reaching_suspending_import_traps() {
    let (mut store, instance) = paths();
    let wait_once = instance
        .get_typed_func::<i32, i32>(&mut store, "wait_once")
        .unwrap();
    let error = wait_once.call(&mut store, 1).unwrap_err();
    assert_eq!(error.trap(), Some(Trap::SuspendOutsidePromisingCall));
    assert_eq!(
        error.to_string(),
        "wasm trap: suspending import called outside a promising call"
    );
    assert!(!error.backtrace().unwrap().frames.is_empty());
    assert_eq!(
        store.data().in_flight,
        0,
        "the import's closure did not run"
    );
    // The store is fine afterwards.
    let mut call = pin!(wait_once.call_async(&mut store, 1));
    assert!(poll_once(call.as_mut()).is_pending());
    assert!(matches!(poll_once(call.as_mut()), Poll::Ready(Ok(2))));
}

#[test]
fn suspension_crosses_sync_host_frames() {
    let (mut store, instance) = paths();
    let through_host = instance
        .get_typed_func::<i32, i32>(&mut store, "through_host")
        .unwrap();
    let mut call = pin!(through_host.call_async(&mut store, 5));
    assert!(
        poll_once(call.as_mut()).is_pending(),
        "suspended under a host frame"
    );
    assert_eq!(
        poll_once(call.as_mut()).map(Result::unwrap),
        Poll::Ready(60)
    );
}

#[test]
fn interleaved_promising_calls_share_one_instance() {
    let (store, instance) = paths();
    let store = SharedStore::new(store);
    let (bump, counter) = {
        let mut guard = store.try_lock().unwrap();
        (
            instance
                .get_typed_func::<i32, i32>(&mut *guard, "bump_and_wait")
                .unwrap(),
            instance
                .get_typed_func::<(), i32>(&mut *guard, "counter")
                .unwrap(),
        )
    };
    let mut a = pin!(bump.call_async(&store, 0));
    let mut b = pin!(bump.call_async(&store, 0));
    assert!(poll_once(a.as_mut()).is_pending());
    assert!(
        poll_once(b.as_mut()).is_pending(),
        "b runs while a is suspended"
    );
    assert_eq!(store.try_lock().unwrap().data().in_flight, 2);
    assert_eq!(poll_once(b.as_mut()).map(Result::unwrap), Poll::Ready(1));
    assert_eq!(poll_once(a.as_mut()).map(Result::unwrap), Poll::Ready(0));
    let mut guard = store.try_lock().unwrap();
    assert_eq!(counter.call(&mut *guard, ()).unwrap(), 2);
    assert_eq!(guard.data().max_in_flight, 2);
}

/// A waker that records whether it was woken.
#[derive(Default)]
struct WakeFlag(AtomicBool);

impl std::task::Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl WakeFlag {
    fn take(&self) -> bool {
        self.0.swap(false, Ordering::SeqCst)
    }
}

fn poll_with<F: Future + ?Sized>(future: Pin<&mut F>, flag: &Arc<WakeFlag>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(&Waker::from(flag.clone())))
}

#[test]
fn thousand_promising_calls_contending_for_one_shared_store_all_complete() {
    const CALLS: i32 = 1_000;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    let (mut store, instance) = paths();
    let wait_once = instance
        .get_typed_func::<i32, i32>(&mut store, "wait_once")
        .unwrap();
    let store = SharedStore::new(store);
    // A lost wake-up would hang: fail instead.
    let all = async {
        let tasks: Vec<_> = (0..CALLS)
            .map(|i| tokio::spawn(wait_once.call_async(store.clone(), i)))
            .collect();
        for (i, task) in (0..).zip(tasks) {
            assert_eq!(task.await.unwrap().unwrap(), i + 1);
        }
    };
    runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), all).await })
        .expect("every call completes");
    let guard = store
        .try_lock()
        .expect("no call holds the store once all finished");
    assert_eq!(guard.data().in_flight, 0);
}

#[test]
fn shared_store_release_wakes_only_the_oldest_waiter_and_a_dropped_one_passes_it_on() {
    let (mut store, instance) = paths();
    let counter = instance
        .get_typed_func::<(), i32>(&mut store, "counter")
        .unwrap();
    let store = SharedStore::new(store);
    let held = store.try_lock().unwrap();
    let flags: Vec<Arc<WakeFlag>> = (0..4).map(|_| Arc::default()).collect();
    let mut calls: Vec<_> = (0..4)
        .map(|_| Some(Box::pin(counter.call_async(&store, ()))))
        .collect();
    for (call, flag) in calls.iter_mut().zip(&flags) {
        assert!(poll_with(call.as_mut().unwrap().as_mut(), flag).is_pending());
    }
    // Dropped while queued: gives up its place.
    calls[1] = None;
    drop(held);
    let woken: Vec<bool> = flags.iter().map(|f| f.take()).collect();
    assert_eq!(
        woken,
        [true, false, false, false],
        "one wake, to the oldest"
    );
    // Dropped after the lock was handed to it, before it ran: passes the lock on.
    calls[0] = None;
    let woken: Vec<bool> = flags.iter().map(|f| f.take()).collect();
    assert_eq!(
        woken,
        [false, false, true, false],
        "the dropped ticket is skipped"
    );
    assert!(poll_with(calls[2].as_mut().unwrap().as_mut(), &flags[2]).is_ready());
    assert!(
        flags[3].take(),
        "its release hands the lock to the last one"
    );
    assert!(poll_with(calls[3].as_mut().unwrap().as_mut(), &flags[3]).is_ready());
    assert!(store.try_lock().is_some(), "nothing stranded");
}

#[test]
fn synchronous_user_may_take_a_lock_handed_to_a_call_that_has_not_run() {
    let (mut store, instance) = paths();
    let counter = instance
        .get_typed_func::<(), i32>(&mut store, "counter")
        .unwrap();
    let store = SharedStore::new(store);
    let held = store.try_lock().unwrap();
    let flag = Arc::new(WakeFlag::default());
    let mut call = Box::pin(counter.call_async(&store, ()));
    assert!(poll_with(call.as_mut(), &flag).is_pending());
    drop(held);
    assert!(flag.take());
    // Granted to `call` but not claimed: a synchronous user (as a dropped call's `Drop` is)
    // must not wait for it, or a current-thread runtime would deadlock.
    let again = store
        .try_lock()
        .expect("a grant not yet claimed can be taken");
    assert!(
        poll_with(call.as_mut(), &flag).is_pending(),
        "still in line"
    );
    drop(again);
    assert!(flag.take(), "granted again");
    assert!(poll_with(call.as_mut(), &flag).is_ready());
}

#[test]
fn trap_inside_resumed_continuation_reaches_caller() {
    let (mut store, instance) = paths();
    let f = instance
        .get_typed_func::<i32, i32>(&mut store, "trap_after_wait")
        .unwrap();
    let mut call = pin!(f.call_async(&mut store, 0));
    assert!(poll_once(call.as_mut()).is_pending());
    let Poll::Ready(Err(error)) = poll_once(call.as_mut()) else {
        panic!("expected a trap");
    };
    assert_eq!(error.trap(), Some(Trap::Unreachable));
    assert_eq!(frame_names(&error), ["fail", "trap_after_wait"]);
}

#[test]
fn panic_in_async_host_function_resumes_in_poller() {
    let engine = Engine::default();
    let module = Module::new(&engine, fixture("suspend_paths.wat")).unwrap();
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap_async("env", "wait", |_: Caller<'_, ()>, x: i32| async move {
            pending_once().await;
            if x == 7 {
                panic!("the host gave up at {x}");
            }
            x
        })
        .unwrap()
        .func_wrap("env", "host_then_wasm", |x: i32| x)
        .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let wait_once = instance
        .get_typed_func::<i32, i32>(&mut store, "wait_once")
        .unwrap();
    {
        let mut call = pin!(wait_once.call_async(&mut store, 7));
        assert!(poll_once(call.as_mut()).is_pending());
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = poll_once(call.as_mut());
        }))
        .unwrap_err();
        assert_eq!(
            panic.downcast_ref::<String>().map(String::as_str),
            Some("the host gave up at 7")
        );
    }
    // The store survives the panic.
    let runtime = current_thread();
    assert_eq!(
        runtime
            .block_on(wait_once.call_async(&mut store, 1))
            .unwrap(),
        2
    );
}

/// Sets its flag when dropped.
struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn dropping_suspended_call_unwinds_it_and_store_stays_usable() {
    let engine = Engine::default();
    let module = Module::new(&engine, fixture("suspend_paths.wat")).unwrap();
    let dropped = Arc::new(AtomicBool::new(false));
    let mut linker = Linker::new(&engine);
    let flag = dropped.clone();
    linker
        .func_wrap_async("env", "wait", move |_: Caller<'_, ()>, x: i32| {
            let guard = DropFlag(flag.clone());
            async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                x
            }
        })
        .unwrap()
        .func_wrap(
            "env",
            "host_then_wasm",
            |mut caller: Caller<'_, ()>, x: i32| -> weft::Result<i32> {
                let inner = caller.get_export("inner").unwrap().into_func().unwrap();
                inner.typed::<i32, i32>(&caller)?.call(&mut caller, x)
            },
        )
        .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let through_host = instance
        .get_typed_func::<i32, i32>(&mut store, "through_host")
        .unwrap();
    let counter = instance
        .get_typed_func::<(), i32>(&mut store, "counter")
        .unwrap();
    {
        let mut call = pin!(through_host.call_async(&mut store, 5));
        assert!(poll_once(call.as_mut()).is_pending());
        assert!(!dropped.load(Ordering::SeqCst));
    }
    assert!(
        dropped.load(Ordering::SeqCst),
        "the pending future was dropped"
    );
    assert_eq!(counter.call(&mut store, ()).unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------
// Stacks

/// Depth of `deep` that needs more than 480 KiB of stack (its frames are 16 bytes: locals stay
/// in registers), checked by a synchronous call that overflows there (it would otherwise trap
/// at the suspending import at the bottom), and less than the 2 MiB of a promising call.
const DEEP: i32 = 40_000;

#[test]
fn recursion_needing_500_kib_succeeds_in_promising_call() {
    let mut config = Config::new();
    config.max_wasm_stack(480 << 10);
    let engine = Engine::new(&config).unwrap();
    let mut store = Store::new(&engine, Paths::default());
    let instance = paths_instance(&engine, &mut store);
    let deep = instance
        .get_typed_func::<i32, i32>(&mut store, "deep")
        .unwrap();
    let sync = deep.call(&mut store, DEEP).unwrap_err();
    assert_eq!(
        sync.trap(),
        Some(Trap::StackOverflow),
        "DEEP needs > 480 KiB"
    );
    let runtime = current_thread();
    assert_eq!(
        runtime.block_on(deep.call_async(&mut store, DEEP)).unwrap(),
        DEEP
    );
}

#[test]
fn stack_exhaustion_in_promising_call_is_a_trap() {
    let (mut store, instance) = paths();
    let forever = instance
        .get_typed_func::<i32, i32>(&mut store, "forever")
        .unwrap();
    let runtime = current_thread();
    let error = runtime
        .block_on(forever.call_async(&mut store, 0))
        .unwrap_err();
    assert_eq!(error.trap(), Some(Trap::StackOverflow));
    // And the store still works, on a fresh stack.
    let wait_once = instance
        .get_typed_func::<i32, i32>(&mut store, "wait_once")
        .unwrap();
    assert_eq!(
        runtime
            .block_on(wait_once.call_async(&mut store, 1))
            .unwrap(),
        2
    );
}

/// Recurses with a kilobyte on every frame, forever: overflows any stack.
#[inline(never)]
fn overflow_the_stack(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth as u8; 1024]);
    if std::hint::black_box(depth) == u64::MAX {
        return 0;
    }
    overflow_the_stack(depth + 1) + u64::from(std::hint::black_box(frame)[7])
}

/// The child half of `host_overflowing_a_promising_calls_stack_aborts_with_the_cause`: a host
/// function called from Wasm in a promising call overflows the call's stack.
fn overflow_a_promising_calls_stack_from_host_code() -> ! {
    let mut config = Config::new();
    config.max_wasm_stack(64 << 10).async_stack_size(256 << 10);
    let engine = Engine::new(&config).unwrap();
    let module = Module::new(
        &engine,
        r#"(module
             (import "env" "deep" (func $deep (param i32) (result i32)))
             (func (export "run") (param i32) (result i32) (call $deep (local.get 0))))"#,
    )
    .unwrap();
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap("env", "deep", |x: i32| overflow_the_stack(x as u64) as i32)
        .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let run = instance
        .get_typed_func::<i32, i32>(&mut store, "run")
        .unwrap();
    let _ = poll_once(pin!(run.call_async(&mut store, 0)));
    unreachable!("the host function returned from an infinite recursion");
}

/// Host code (not Wasm, whose prologue check traps first) that runs a promising call's stack
/// into its guard page must not corrupt memory or die without a word: weft names the cause and
/// aborts. The overflow runs in a child process, this test binary run again with a filter.
#[test]
fn host_overflowing_a_promising_calls_stack_aborts_with_the_cause() {
    const CHILD: &str = "WEFT_TEST_HOST_OVERFLOW_CHILD";
    if std::env::var_os(CHILD).is_some() {
        overflow_a_promising_calls_stack_from_host_code();
    }
    let output = common::rerun_test_in_child(
        "async_calls::host_overflowing_a_promising_calls_stack_aborts_with_the_cause",
        CHILD,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the child survived:\n{stderr}");
    assert!(
        stderr
            .contains("weft: host code overflowed the stack of a promising call (guard page at 0x")
            && stderr.contains("); increase Config::async_stack_size\n"),
        "no message naming the cause:\n{stderr}"
    );
    // SIGABRT: abort(3), not a crash on the overflow itself (qemu dies of it the same way).
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(output.status.signal(), Some(6), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// Many calls

const MANY: usize = 10_000;

/// `wait(x)` that holds every call until `gate` has a permit for it, counting who waits.
fn gated_instance(
    engine: &Engine,
    store: &mut Store<()>,
    gate: Arc<tokio::sync::Semaphore>,
    waiting: Arc<AtomicUsize>,
    moved: Arc<AtomicUsize>,
) -> weft::Instance {
    let module = Module::new(engine, fixture("suspend_paths.wat")).unwrap();
    let mut linker = Linker::new(engine);
    linker
        .func_wrap_async("env", "wait", move |_: Caller<'_, ()>, x: i32| {
            let gate = gate.clone();
            let waiting = waiting.clone();
            let moved = moved.clone();
            let thread = std::thread::current().id();
            async move {
                waiting.fetch_add(1, Ordering::SeqCst);
                gate.acquire().await.unwrap().forget();
                if std::thread::current().id() != thread {
                    moved.fetch_add(1, Ordering::SeqCst);
                }
                x * 3
            }
        })
        .unwrap()
        .func_wrap("env", "host_then_wasm", |x: i32| x)
        .unwrap();
    linker.instantiate(store, &module).unwrap()
}

async fn many_suspended_calls(runtime_threads: usize) -> usize {
    let engine = Engine::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let waiting = Arc::new(AtomicUsize::new(0));
    let moved = Arc::new(AtomicUsize::new(0));
    let mut store = Store::new(&engine, ());
    let instance = gated_instance(
        &engine,
        &mut store,
        gate.clone(),
        waiting.clone(),
        moved.clone(),
    );
    let wait_once = instance
        .get_typed_func::<i32, i32>(&mut store, "wait_once")
        .unwrap();
    let store = SharedStore::new(store);
    let tasks: Vec<_> = (0..MANY as i32)
        .map(|i| tokio::spawn(wait_once.call_async(store.clone(), i)))
        .collect();
    while waiting.load(Ordering::SeqCst) < MANY {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Every call is suspended at once now.
    let _ = runtime_threads;
    gate.add_permits(MANY);
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap().unwrap(), 3 * i as i32 + 1);
    }
    moved.load(Ordering::SeqCst)
}

#[test]
fn ten_thousand_suspended_calls_on_one_thread() {
    current_thread().block_on(many_suspended_calls(1));
}

#[test]
fn ten_thousand_suspended_calls_resume_on_other_threads() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    let moved = runtime.block_on(many_suspended_calls(4));
    assert!(
        moved > 0,
        "no call resumed on another thread than it suspended on"
    );
}

#[test]
fn instantiate_async_runs_a_suspending_start_function() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (import "env" "wait" (func $wait (param i32) (result i32)))
             (global (export "g") (mut i32) (i32.const 0))
             (func $start (global.set 0 (call $wait (i32.const 9))))
             (start $start))"#,
    )
    .unwrap();
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap_async("env", "wait", |_: Caller<'_, ()>, x: i32| async move {
            pending_once().await;
            x
        })
        .unwrap();
    let mut store = Store::new(&engine, ());
    assert_eq!(
        linker.instantiate(&mut store, &module).unwrap_err().trap(),
        Some(Trap::SuspendOutsidePromisingCall)
    );
    let instance = current_thread()
        .block_on(linker.instantiate_async(&mut store, &module))
        .unwrap();
    let Some(Extern::Global(g)) = instance.get_export(&mut store, "g") else {
        panic!("no global");
    };
    assert_eq!(g.get(&mut store), Val::I32(9));
}

/// Issue 12: a panic in an import future's `Drop` while its call was cancelled was printed and
/// swallowed. It is re-raised from the dropping thread once the call is unwound and its stack
/// given back; the store stays usable.
#[test]
fn panic_in_an_import_futures_drop_during_cancellation_is_re_raised_after_unwinding() {
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("dropping the import's future");
        }
    }
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (import "host" "forever" (func $forever (result i32)))
             (func (export "run") (result i32) (call $forever))
             (func (export "two") (result i32) (i32.const 2)))"#,
    )
    .unwrap();
    let mut linker = Linker::<()>::new(&engine);
    linker
        .func_wrap_async("host", "forever", |_: Caller<'_, ()>| {
            let guard = PanicOnDrop;
            async move {
                std::future::pending::<()>().await;
                drop(guard);
                0i32
            }
        })
        .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let run = instance
        .get_typed_func::<(), i32>(&mut store, "run")
        .unwrap();
    let two = instance
        .get_typed_func::<(), i32>(&mut store, "two")
        .unwrap();
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut call = Box::pin(run.call_async(&mut store, ()));
        assert!(poll_once(call.as_mut()).is_pending());
        drop(call);
    }));
    let payload = dropped.expect_err("the panic reaches the thread that dropped the call");
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"dropping the import's future")
    );
    assert_eq!(two.call(&mut store, ()).unwrap(), 2);
    // The call's stack went back: a new promising call runs.
    let again = current_thread().block_on(two.call_async(&mut store, ()));
    assert_eq!(again.unwrap(), 2);
}

// ---------------------------------------------------------------------------------------------
// The store's kept fiber: promising calls run on one fiber per store, parked between calls

const KEPT_FIBER_WAT: &str = r#"
(module
  (import "env" "wait" (func $wait (param i32) (result i32)))
  (import "env" "fail" (func $fail (param i32) (result i32)))
  (func (export "answer") (result i32) (i32.const 42))
  (func (export "trap") (result i32) (unreachable))
  (func $deep (export "deep") (param i32) (result i32)
    (i32.add (call $deep (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
  (func (export "wait") (param i32) (result i32) (call $wait (local.get 0)))
  (func (export "fail") (param i32) (result i32) (call $fail (local.get 0))))
"#;

/// A store whose imports suspend once (`wait`), and fail with an error (`fail` 0) or panic
/// (`fail` 1) after suspending once.
fn kept_fiber_instance(engine: &Engine) -> (Store<()>, weft::Instance) {
    let module = Module::new(engine, KEPT_FIBER_WAT).unwrap();
    let mut linker = Linker::new(engine);
    linker
        .func_wrap_async("env", "wait", |_: Caller<'_, ()>, x: i32| async move {
            pending_once().await;
            x
        })
        .unwrap()
        .func_wrap_async("env", "fail", |_: Caller<'_, ()>, how: i32| async move {
            pending_once().await;
            match how {
                0 => Err::<i32, _>(weft::Error::msg("the host failed")),
                _ => panic!("the host panicked"),
            }
        })
        .unwrap();
    let mut store = Store::new(engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    (store, instance)
}

/// Polls `future` to completion with a no-op waker (its imports wake themselves).
fn spin<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = poll_once(future.as_mut()) {
            return output;
        }
    }
}

/// Runs `answer` as a promising call: 42 if the store's fiber is in working order.
fn answer_async(store: &mut Store<()>, instance: &weft::Instance) -> i32 {
    let answer = instance
        .get_typed_func::<(), i32>(&mut *store, "answer")
        .unwrap();
    spin(answer.call_async(store, ())).unwrap()
}

#[test]
fn kept_fiber_serves_calls_after_traps_errors_panics_and_cancellations() {
    let engine = Engine::default();
    let (mut store, instance) = kept_fiber_instance(&engine);
    let trap = instance
        .get_typed_func::<(), i32>(&mut store, "trap")
        .unwrap();
    let deep = instance
        .get_typed_func::<i32, i32>(&mut store, "deep")
        .unwrap();
    let wait = instance
        .get_typed_func::<i32, i32>(&mut store, "wait")
        .unwrap();
    let fail = instance
        .get_typed_func::<i32, i32>(&mut store, "fail")
        .unwrap();
    for round in 0..2 {
        assert_eq!(answer_async(&mut store, &instance), 42, "round {round}");
        // A trap of compiled code, twice: the second reports its own trap.
        for _ in 0..2 {
            let error = spin(trap.call_async(&mut store, ())).unwrap_err();
            assert_eq!(error.trap(), Some(Trap::Unreachable));
        }
        assert_eq!(answer_async(&mut store, &instance), 42);
        // A host error recorded in the fiber's activation, then a trap of code: the second
        // call does not see the first one's error.
        let error = spin(fail.call_async(&mut store, 0)).unwrap_err();
        assert!(error.to_string().contains("the host failed"), "{error}");
        let error = spin(trap.call_async(&mut store, ())).unwrap_err();
        assert_eq!(error.trap(), Some(Trap::Unreachable), "{error}");
        // Stack exhaustion on the fiber.
        let error = spin(deep.call_async(&mut store, 0)).unwrap_err();
        assert_eq!(error.trap(), Some(Trap::StackOverflow));
        assert_eq!(answer_async(&mut store, &instance), 42);
        // A host panic, re-raised in the poller.
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = spin(fail.call_async(&mut store, 1));
        }))
        .unwrap_err();
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"the host panicked"));
        assert_eq!(answer_async(&mut store, &instance), 42);
        // A call dropped while suspended: cancelled, and its fiber serves the next call.
        {
            let mut call = pin!(wait.call_async(&mut store, 5));
            assert!(poll_once(call.as_mut()).is_pending());
        }
        assert_eq!(answer_async(&mut store, &instance), 42);
        assert_eq!(spin(wait.call_async(&mut store, 6)).unwrap(), 6);
        // A synchronous call in between uses no fiber and leaves the kept one alone.
        let answer = instance
            .get_typed_func::<(), i32>(&mut store, "answer")
            .unwrap();
        assert_eq!(answer.call(&mut store, ()).unwrap(), 42);
    }
}

#[test]
fn kept_fiber_traps_report_their_own_backtrace_between_many_returned_calls() {
    // The kept fiber enters Wasm once and serves later calls from the same entry frame; a trap
    // leaves it, and the next call enters again. Each trap's backtrace must still end at the
    // entry frame, and every call between them return its own value.
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (func $inner (unreachable))
             (func $outer (export "outer") (param i32) (result i32)
               (if (i32.eqz (i32.rem_u (local.get 0) (i32.const 5))) (then (call $inner)))
               (local.get 0)))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = Linker::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let outer = instance
        .get_typed_func::<i32, i32>(&mut store, "outer")
        .unwrap();
    for i in 0..40 {
        let result = spin(outer.call_async(&mut store, i));
        if i % 5 == 0 {
            let error = result.unwrap_err();
            assert_eq!(error.trap(), Some(Trap::Unreachable), "call {i}");
            assert_eq!(frame_names(&error), ["inner", "outer"], "call {i}");
        } else {
            assert_eq!(result.unwrap(), i, "call {i}");
        }
    }
}

#[test]
fn nested_promising_call_polled_from_a_host_function_gets_a_fiber_of_its_own() {
    // The outer call holds the store's fiber while its import runs an inner promising call of
    // another store to completion; both fibers are then kept or given back.
    let engine = Engine::default();
    let module = Module::new(&engine, KEPT_FIBER_WAT).unwrap();
    let (inner_store, inner) = kept_fiber_instance(&engine);
    let inner_store = std::sync::Mutex::new((inner_store, inner));
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap_async("env", "wait", move |_: Caller<'_, ()>, x: i32| {
            let mut guard = inner_store.lock().unwrap();
            let (store, instance) = &mut *guard;
            let inner = answer_async(store, instance);
            async move {
                pending_once().await;
                x + inner
            }
        })
        .unwrap()
        .func_wrap("env", "fail", |x: i32| x)
        .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let wait = instance
        .get_typed_func::<i32, i32>(&mut store, "wait")
        .unwrap();
    for i in 0..3 {
        assert_eq!(spin(wait.call_async(&mut store, i)).unwrap(), 42 + i);
    }
}

#[test]
fn store_dropped_with_its_fiber_parked_gives_the_stack_back() {
    // One stack for the whole engine: a store that leaked its parked fiber's stack would leave
    // none for the next store.
    let mut config = Config::new();
    config.max_async_stacks(1);
    let engine = Engine::new(&config).unwrap();
    for _ in 0..4 {
        let (mut store, instance) = kept_fiber_instance(&engine);
        assert_eq!(answer_async(&mut store, &instance), 42);
        assert_eq!(answer_async(&mut store, &instance), 42);
    }
    // The same after a cancellation, a trap, and with the store moved to another thread in
    // between (its parked fiber with it).
    for _ in 0..2 {
        let (mut store, instance) = kept_fiber_instance(&engine);
        let wait = instance
            .get_typed_func::<i32, i32>(&mut store, "wait")
            .unwrap();
        {
            let mut call = pin!(wait.call_async(&mut store, 1));
            assert!(poll_once(call.as_mut()).is_pending());
        }
        let trap = instance
            .get_typed_func::<(), i32>(&mut store, "trap")
            .unwrap();
        assert!(spin(trap.call_async(&mut store, ())).is_err());
        let (mut store, instance) = std::thread::spawn(move || {
            assert_eq!(answer_async(&mut store, &instance), 42);
            (store, instance)
        })
        .join()
        .unwrap();
        assert_eq!(answer_async(&mut store, &instance), 42);
    }
}
