//! The cases `benches/compare.rs` (criterion) and `examples/bench_report.rs` (tables and plots)
//! share: JSPI's badfib three ways on weft, and the same recursive programs rewritten by
//! Binaryen's Asyncify, driven from Rust the way Asyncify's JS glue drives them.
//!
//! Both modules come from `benches/asyncify/fib.wat` (built by `benches/asyncify/build.sh`,
//! committed). Every suspension here is the same: the host's future is pending once, then
//! ready, and it is polled by hand with a no-op waker, so no executor's cost is in any figure.
//!
//! Only weft's public API is used. Setup (compiling, instantiating, looking up exports) happens
//! in the constructors; the methods are what the benchmarks time.

#![allow(dead_code)] // each user takes what it needs

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use weft::{Caller, Config, Engine, Linker, Memory, Module, Result, Store, TypedFunc};

/// `fib.wat` after `wasm-opt -O2`: what weft runs with its own suspending imports.
pub const FIB_WASM: &[u8] = include_bytes!("../asyncify/fib.wasm");
/// `fib.wat` after `wasm-opt --asyncify -O2`.
pub const ASYNCIFY_WASM: &[u8] = include_bytes!("../asyncify/fib.asyncify.wasm");

/// Where the Asyncify data buffer starts in linear memory: its 8-byte header (current and end
/// address), then the saved frames up to the end of the module's 33 pages: 2 MiB of room, the
/// size of weft's stack for a promising call.
pub const ASYNCIFY_DATA: i32 = 64 * 1024;
const ASYNCIFY_DATA_END: i32 = 33 * 64 * 1024;

/// Room for Wasm frames in synchronous calls (those Asyncify runs in): 1920 KiB, about what a
/// promising call's default 2 MiB stack leaves Wasm (weft keeps ~68 KiB of it for host
/// functions and bookkeeping, and refuses a larger `max_wasm_stack`).
pub const WASM_STACK: usize = (2 << 20) - (128 << 10);

/// The engine every case uses.
pub fn engine() -> Engine {
    let mut config = Config::new();
    config.max_wasm_stack(WASM_STACK);
    Engine::new(&config).expect("benchmark engine config")
}

/// fib(n), computed here to check every benchmarked result against.
pub fn fib(n: i32) -> i32 {
    let (mut a, mut b) = (0i32, 1i32);
    for _ in 0..n {
        (a, b) = (b, a.wrapping_add(b));
    }
    a
}

/// Additions in fib(n)'s naive recursion: the number of `add` / `promise_add` calls, so the
/// number of suspensions of `promise_fib(n)`.
pub fn additions(n: i32) -> u64 {
    if n < 2 { 0 } else { fib(n + 1) as u64 - 1 }
}

/// Leaves of fib(n)'s naive recursion: the number of `leaf` calls of `leaf_fib(n)`.
pub fn leaves(n: i32) -> u64 {
    additions(n) + 1
}

/// A host operation's future: pending once (waking itself), then ready with its value.
pub struct PendingOnce {
    value: i32,
    polled: bool,
}

impl PendingOnce {
    /// Pending once before it is ready.
    pub fn new(value: i32) -> Self {
        PendingOnce {
            value,
            polled: false,
        }
    }

    /// Ready at the first poll (no suspension).
    pub fn ready(value: i32) -> Self {
        PendingOnce {
            value,
            polled: true,
        }
    }
}

impl Future for PendingOnce {
    type Output = i32;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<i32> {
        if self.polled {
            return Poll::Ready(self.value);
        }
        self.polled = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Polls `future` to completion with a no-op waker (every future here wakes itself).
pub fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

/// What weft's `leaf` import does this run.
pub struct WeftData {
    /// The leaf's future is pending once (true) or ready at once (false).
    pub leaf_suspends: bool,
}

/// `fib.wasm` on weft: `add` is a synchronous host function, `promise_add` a suspending import
/// pending once per call, `leaf` a suspending import pending once or ready at once.
pub struct Weft {
    store: Store<WeftData>,
    local_fib: TypedFunc<i32, i32>,
    js_fib: TypedFunc<i32, i32>,
    promise_fib: TypedFunc<i32, i32>,
    leaf_fib: TypedFunc<i32, i32>,
    deep: TypedFunc<i32, i32>,
}

impl Weft {
    /// Instantiates `module` (compiled from [`FIB_WASM`]) in a new store.
    pub fn new(engine: &Engine, module: &Module) -> Result<Self> {
        let mut linker = Linker::new(engine);
        linker
            .func_wrap("env", "add", |a: i32, b: i32| a.wrapping_add(b))?
            .func_wrap_async(
                "env",
                "promise_add",
                |_: Caller<'_, WeftData>, a: i32, b: i32| PendingOnce::new(a.wrapping_add(b)),
            )?
            .func_wrap_async("env", "leaf", |caller: Caller<'_, WeftData>, n: i32| {
                if caller.data().leaf_suspends {
                    PendingOnce::new(n)
                } else {
                    PendingOnce::ready(n)
                }
            })?;
        let mut store = Store::new(
            engine,
            WeftData {
                leaf_suspends: true,
            },
        );
        let instance = linker.instantiate(&mut store, module)?;
        let mut get = |name: &str| instance.get_typed_func::<i32, i32>(&mut store, name);
        Ok(Weft {
            local_fib: get("local_fib")?,
            js_fib: get("js_fib")?,
            promise_fib: get("promise_fib")?,
            leaf_fib: get("leaf_fib")?,
            deep: get("deep")?,
            store,
        })
    }

    /// `localFib`: fib(n) with its additions in Wasm, a synchronous call.
    pub fn local_fib(&mut self, n: i32) -> Result<i32> {
        self.local_fib.call(&mut self.store, n)
    }

    /// `jsFib`: fib(n) whose additions call a synchronous host function, a synchronous call.
    pub fn js_fib(&mut self, n: i32) -> Result<i32> {
        self.js_fib.call(&mut self.store, n)
    }

    /// `promiseFib`: fib(n) whose additions each suspend once, one promising call.
    pub fn promise_fib(&mut self, n: i32) -> Result<i32> {
        run(self.promise_fib.call_async(&mut self.store, n))
    }

    /// fib(n) with a `leaf` import at each leaf, one promising call; each leaf suspends once
    /// if `suspend`, else its future is ready at once.
    pub fn leaf_fib(&mut self, n: i32, suspend: bool) -> Result<i32> {
        self.store.data_mut().leaf_suspends = suspend;
        run(self.leaf_fib.call_async(&mut self.store, n))
    }

    /// Recursion `n` deep, one `leaf` call at the bottom (suspending once if `suspend`), one
    /// promising call. Returns n.
    pub fn deep(&mut self, n: i32, suspend: bool) -> Result<i32> {
        self.store.data_mut().leaf_suspends = suspend;
        run(self.deep.call_async(&mut self.store, n))
    }
}

/// Where an Asyncify run is, as its JS glue tracks it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Normal,
    Unwinding,
    Rewinding,
}

/// The host side of the Asyncify run: the glue's state, and the exports its imports call.
pub struct AsyncifyData {
    phase: Phase,
    /// The pending operation's result, once an import has started an unwind.
    pending: i32,
    /// The value the import returns when the rewind reaches it again.
    resumed: i32,
    /// The `leaf` import unwinds (true) or returns at once (false); `promise_add` always does.
    pub leaf_suspends: bool,
    /// Unwinds started: suspensions, counted to check each run suspended as often as claimed.
    pub unwinds: u64,
    exports: Option<AsyncifyExports>,
}

#[derive(Clone, Copy)]
struct AsyncifyExports {
    memory: Memory,
    start_unwind: TypedFunc<i32, ()>,
    stop_unwind: TypedFunc<(), ()>,
    start_rewind: TypedFunc<i32, ()>,
    stop_rewind: TypedFunc<(), ()>,
}

/// A suspending import under Asyncify, as the JS glue's `handleSleep` does it: in a normal run
/// start the operation, write a fresh data-buffer header, `asyncify_start_unwind` and return
/// (the value is ignored); when the rewind reaches the call again, `asyncify_stop_rewind` and
/// return the operation's result.
fn asyncify_import(
    caller: &mut Caller<'_, AsyncifyData>,
    result: i32,
    suspend: bool,
) -> Result<i32> {
    let exports = caller
        .data()
        .exports
        .expect("exports are set after instantiation");
    match caller.data().phase {
        Phase::Rewinding => {
            exports.stop_rewind.call(&mut *caller, ())?;
            let data = caller.data_mut();
            data.phase = Phase::Normal;
            Ok(data.resumed)
        }
        Phase::Normal if !suspend => Ok(result),
        Phase::Normal => {
            let mut header = [0u8; 8];
            header[..4].copy_from_slice(&(ASYNCIFY_DATA + 8).to_le_bytes());
            header[4..].copy_from_slice(&ASYNCIFY_DATA_END.to_le_bytes());
            exports
                .memory
                .write(&mut *caller, ASYNCIFY_DATA as usize, &header)?;
            exports.start_unwind.call(&mut *caller, ASYNCIFY_DATA)?;
            let data = caller.data_mut();
            data.phase = Phase::Unwinding;
            data.pending = result;
            data.unwinds += 1;
            Ok(0)
        }
        Phase::Unwinding => Err(weft::Error::msg(
            "an Asyncify import was called while unwinding",
        )),
    }
}

/// `fib.asyncify.wasm` on weft, driven by synchronous calls as Asyncify's JS glue drives it.
pub struct Asyncify {
    store: Store<AsyncifyData>,
    exports: AsyncifyExports,
    local_fib: TypedFunc<i32, i32>,
    js_fib: TypedFunc<i32, i32>,
    promise_fib: TypedFunc<i32, i32>,
    leaf_fib: TypedFunc<i32, i32>,
    deep: TypedFunc<i32, i32>,
}

impl Asyncify {
    /// Instantiates `module` (compiled from [`ASYNCIFY_WASM`]) in a new store.
    pub fn new(engine: &Engine, module: &Module) -> Result<Self> {
        let mut linker = Linker::new(engine);
        linker
            .func_wrap("env", "add", |a: i32, b: i32| a.wrapping_add(b))?
            .func_wrap(
                "env",
                "promise_add",
                |mut caller: Caller<'_, AsyncifyData>, a: i32, b: i32| {
                    asyncify_import(&mut caller, a.wrapping_add(b), true)
                },
            )?
            .func_wrap(
                "env",
                "leaf",
                |mut caller: Caller<'_, AsyncifyData>, n: i32| {
                    let suspend = caller.data().leaf_suspends;
                    asyncify_import(&mut caller, n, suspend)
                },
            )?;
        let mut store = Store::new(
            engine,
            AsyncifyData {
                phase: Phase::Normal,
                pending: 0,
                resumed: 0,
                leaf_suspends: true,
                unwinds: 0,
                exports: None,
            },
        );
        let instance = linker.instantiate(&mut store, module)?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| weft::Error::msg("no memory export"))?;
        let exports = AsyncifyExports {
            memory,
            start_unwind: instance.get_typed_func(&mut store, "asyncify_start_unwind")?,
            stop_unwind: instance.get_typed_func(&mut store, "asyncify_stop_unwind")?,
            start_rewind: instance.get_typed_func(&mut store, "asyncify_start_rewind")?,
            stop_rewind: instance.get_typed_func(&mut store, "asyncify_stop_rewind")?,
        };
        store.data_mut().exports = Some(exports);
        let mut get = |name: &str| instance.get_typed_func::<i32, i32>(&mut store, name);
        Ok(Asyncify {
            local_fib: get("local_fib")?,
            js_fib: get("js_fib")?,
            promise_fib: get("promise_fib")?,
            leaf_fib: get("leaf_fib")?,
            deep: get("deep")?,
            exports,
            store,
        })
    }

    /// Unwinds started so far (one per suspension).
    pub fn unwinds(&self) -> u64 {
        self.store.data().unwinds
    }

    /// Calls `f(n)` as the JS glue does: whenever the call returns because an import started
    /// an unwind, stop the unwind, wait for the operation (its future, pending once, polled
    /// to completion), start the rewind and call `f(n)` again.
    fn drive(&mut self, f: TypedFunc<i32, i32>, n: i32) -> Result<i32> {
        loop {
            let result = f.call(&mut self.store, n)?;
            if self.store.data().phase != Phase::Unwinding {
                return Ok(result);
            }
            self.exports.stop_unwind.call(&mut self.store, ())?;
            let value = run(PendingOnce::new(self.store.data().pending));
            let data = self.store.data_mut();
            data.resumed = value;
            data.phase = Phase::Rewinding;
            self.exports
                .start_rewind
                .call(&mut self.store, ASYNCIFY_DATA)?;
        }
    }

    /// `local_fib` of the Asyncify module (Asyncify leaves it alone: it cannot reach an
    /// import that unwinds).
    pub fn local_fib(&mut self, n: i32) -> Result<i32> {
        self.local_fib.call(&mut self.store, n)
    }

    /// `js_fib` of the Asyncify module (also left alone).
    pub fn js_fib(&mut self, n: i32) -> Result<i32> {
        self.js_fib.call(&mut self.store, n)
    }

    /// badfib under Asyncify: every addition unwinds the whole stack and rewinds it.
    pub fn promise_fib(&mut self, n: i32) -> Result<i32> {
        let f = self.promise_fib;
        self.drive(f, n)
    }

    /// fib(n) with a `leaf` import at each leaf, unwinding at each leaf if `suspend`.
    pub fn leaf_fib(&mut self, n: i32, suspend: bool) -> Result<i32> {
        self.store.data_mut().leaf_suspends = suspend;
        let f = self.leaf_fib;
        self.drive(f, n)
    }

    /// Recursion `n` deep, one `leaf` call at the bottom (unwinding once if `suspend`).
    pub fn deep(&mut self, n: i32, suspend: bool) -> Result<i32> {
        self.store.data_mut().leaf_suspends = suspend;
        let f = self.deep;
        self.drive(f, n)
    }
}

/// The body size in bytes of the function `export` names in `wasm`, and the module's size.
pub fn code_size(wasm: &[u8], export: &str) -> (usize, usize) {
    use wasmparser::{ExternalKind, Parser, Payload};
    let mut imported = 0u32;
    let mut index = None;
    let mut bodies = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.expect("the committed modules are valid") {
            Payload::ImportSection(imports) => {
                for import in imports.into_imports() {
                    if matches!(import.expect("valid").ty, wasmparser::TypeRef::Func(_)) {
                        imported += 1;
                    }
                }
            }
            Payload::ExportSection(exports) => {
                for e in exports {
                    let e = e.expect("valid");
                    if e.name == export && e.kind == ExternalKind::Func {
                        index = Some(e.index);
                    }
                }
            }
            Payload::CodeSectionEntry(body) => {
                let range = body.range();
                bodies.push((range.end - range.start) as usize)
            }
            _ => {}
        }
    }
    let index = index.expect("the export exists") - imported;
    (bodies[index as usize], wasm.len())
}

/// Calls `case` repeatedly and returns the median time per call over `samples` batches, each
/// batch running for at least `batch` (calibrated first). Every result is checked against
/// `expected` before it counts: a broken run panics instead of reporting a time.
pub fn time_per_call(
    expected: i32,
    batch: Duration,
    samples: usize,
    mut case: impl FnMut() -> Result<i32>,
) -> Duration {
    let check = |case: &mut dyn FnMut() -> Result<i32>| {
        let got = case().expect("benchmark case failed");
        assert_eq!(got, expected, "benchmark case returned a wrong result");
    };
    // Warm up and calibrate: how many calls fill one batch.
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < batch / 4 || calls == 0 {
        check(&mut case);
        calls += 1;
    }
    let per_batch = (calls * 4).max(1);
    let mut times: Vec<Duration> = (0..samples.max(1))
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_batch {
                check(&mut case);
            }
            start.elapsed() / per_batch as u32
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

/// The process's resident set size in bytes (`VmRSS` of `/proc/self/status`).
pub fn resident_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}
