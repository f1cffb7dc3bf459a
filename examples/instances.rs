//! Holds 100,000 promising calls suspended at once, each in a store and instance of its own
//! with a 1-page memory taken from the pooling allocator, then resumes them all; and times
//! what a host serving one request per instance pays to start one: a new store, an
//! instantiation and a promising call run to its first suspension, pooled and on demand.
//!
//! Each call stores its argument in its memory, calls an async import that waits for a flag
//! the example sets once every call is suspended, then returns what it stored plus a byte of
//! its data segment, which is checked. Prints the count, the resident memory (`VmRSS`), page
//! tables (`VmPTE`) and memory mappings (`/proc/self/maps` lines) each suspended call adds,
//! and the wall time.
//!
//! ```console
//! $ cargo run --release --example instances [COUNT [STACK_KIB]]
//! ```
//!
//! `STACK_KIB` sets `Config::async_stack_size` (default 2048, with `max_wasm_stack` half of it).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use weft::{Caller, Config, Engine, InstancePre, Linker, MemoryMode, Module, SharedStore, Store};

#[path = "common/held.rs"]
mod held;
#[path = "common/request.rs"]
mod request;
use held::{Before, Released};
use request::{REQUEST_WAT, pooled_config};

type Call = Pin<Box<dyn Future<Output = weft::Result<i32>>>>;

/// An engine, the module and a linker with its `wait` import, released by the flag; with
/// `pre`, instantiation goes through the module's imports resolved once.
struct Setup {
    engine: Engine,
    module: Module,
    linker: Linker<()>,
    pre: Option<InstancePre<()>>,
    released: Arc<AtomicBool>,
}

impl Setup {
    fn new(config: &Config) -> weft::Result<Setup> {
        let engine = Engine::new(config)?;
        let module = Module::new(&engine, REQUEST_WAT)?;
        let released = Arc::new(AtomicBool::new(false));
        let mut linker = Linker::new(&engine);
        let flag = released.clone();
        linker.func_wrap_async("env", "wait", move |_: Caller<'_, ()>, x: i32| {
            let released = Released(flag.clone());
            async move {
                released.await;
                x
            }
        })?;
        Ok(Setup {
            engine,
            module,
            linker,
            pre: None,
            released,
        })
    }

    /// A new store, an instance and a call of `run(i)` polled to its suspension.
    fn start(&self, i: usize, cx: &mut Context<'_>) -> weft::Result<Call> {
        let store = SharedStore::new(Store::new(&self.engine, ()));
        let run = {
            let mut guard = store.try_lock().expect("nothing else holds the store");
            let instance = match &self.pre {
                Some(pre) => pre.instantiate(&mut *guard)?,
                None => self.linker.instantiate(&mut *guard, &self.module)?,
            };
            instance.get_typed_func::<i32, i32>(&mut *guard, "run")?
        };
        let mut call: Call = Box::pin(run.call_async(store, i as i32));
        if let Poll::Ready(result) = call.as_mut().poll(cx) {
            panic!("call {i} did not suspend: {:?}", result.map(|_| ()));
        }
        Ok(call)
    }
}

fn finish(calls: &mut [Call], cx: &mut Context<'_>) {
    for (i, call) in calls.iter_mut().enumerate() {
        match call.as_mut().poll(cx) {
            Poll::Ready(Ok(result)) => assert_eq!(result, i as i32 + 42, "call {i}"),
            Poll::Ready(Err(error)) => panic!("call {i}: {error}"),
            Poll::Pending => panic!("call {i} is still suspended"),
        }
    }
}

/// The pooled layout, with `STACK_KIB` stacks if given.
fn pooled(count: usize, stack_kib: Option<usize>, keep_resident: usize) -> Config {
    let mut config = pooled_config(count, keep_resident);
    if let Some(kib) = stack_kib {
        config.async_stack_size(kib << 10).max_wasm_stack(kib << 9);
    }
    config
}

/// Medians over `rounds` rounds of `batch` calls each of the three phases of a call's life,
/// per call: the start (new store, instantiate, run to the suspension: the issue's figure),
/// the resume to the call's end, and the drop (the store, its instance and the slot reset);
/// and of their sum (the whole lifecycle).
struct Phases {
    start: Duration,
    resume: Duration,
    drop: Duration,
    whole: Duration,
}

fn time_phases(setup: &Setup, rounds: usize, batch: usize) -> weft::Result<Phases> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut times: [Vec<Duration>; 4] = std::array::from_fn(|_| Vec::with_capacity(rounds));
    let mut held = Vec::with_capacity(batch);
    for round in 0..rounds + 1 {
        setup.released.store(false, Ordering::Release);
        let start = Instant::now();
        for i in 0..batch {
            held.push(setup.start(i, &mut cx)?);
        }
        let started = Instant::now();
        setup.released.store(true, Ordering::Release);
        finish(&mut held, &mut cx);
        let resumed = Instant::now();
        held.clear();
        let dropped = Instant::now();
        // The first round warms up code, trampolines, stacks and slots.
        if round > 0 {
            let per_call = |d: Duration| d / batch as u32;
            times[0].push(per_call(started - start));
            times[1].push(per_call(resumed - started));
            times[2].push(per_call(dropped - resumed));
            times[3].push(per_call(dropped - start));
        }
    }
    let [start, resume, drop, whole] = times.map(|mut t| {
        t.sort();
        t[t.len() / 2]
    });
    Ok(Phases {
        start,
        resume,
        drop,
        whole,
    })
}

fn main() -> weft::Result<()> {
    let count: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse().expect("COUNT is a number"),
        None => 100_000,
    };
    let stack_kib: Option<usize> = std::env::args()
        .nth(2)
        .map(|arg| arg.parse().expect("STACK_KIB is a number"));

    // 1. Every call suspended at once, each on its own store and pooled instance.
    let config = pooled(count + 1, stack_kib, 0);
    let setup = Setup::new(&config)?;
    let mut cx = Context::from_waker(Waker::noop());
    drop(setup.start(0, &mut cx)?);
    let before = Before::now();
    let mut held = Vec::with_capacity(count);
    for i in 0..count {
        held.push(setup.start(i, &mut cx)?);
    }
    let held_cost = before.held(count);
    setup.released.store(true, Ordering::Release);
    let resume = Instant::now();
    finish(&mut held, &mut cx);
    let resumed = resume.elapsed();
    drop(held);
    let total = before.elapsed();
    drop(setup);

    held_cost.print(
        &format!(
            "{count} promising calls suspended at once, each on its own store and pooled \
             instance with a 1-page memory ({} KiB stacks)",
            config.get_async_stack_size() >> 10
        ),
        "start all",
        resumed,
        total,
    );

    // 2. What one start costs: pooled, and on demand in both memory modes; with a thousand
    // calls in flight (each start takes fresh slots and stacks), and one at a time (each
    // start reuses what the previous call gave back).
    println!(
        "new store + instantiate + run to first suspension (start), resume to the end, drop \
         (store, instance, slot reset), and the whole lifecycle; medians in µs per call:"
    );
    println!(
        "  {:<36} {:>29} | {:>29}",
        "", "1,000 in flight", "one at a time"
    );
    println!(
        "  {:<36} {:>6} {:>6} {:>6} {:>8} | {:>6} {:>6} {:>6} {:>8}",
        "", "start", "resume", "drop", "whole", "start", "resume", "drop", "whole"
    );
    let configs = [
        ("pooled, 64 KiB slots:", pooled(1000, stack_kib, 0)),
        (
            "pooled, slots kept resident:",
            pooled(1000, stack_kib, 1 << 16),
        ),
        (
            "pooled, kept resident, InstancePre:",
            pooled(1000, stack_kib, 1 << 16),
        ),
        ("on demand, explicit bounds:", {
            let mut config = Config::new();
            config.memory_mode(MemoryMode::ExplicitBounds);
            config
        }),
        ("on demand, guard pages (8 GiB):", {
            let mut config = Config::new();
            config.memory_mode(MemoryMode::GuardPages);
            config
        }),
    ];
    for (name, mut config) in configs {
        if let Some(kib) = stack_kib {
            config.async_stack_size(kib << 10).max_wasm_stack(kib << 9);
        }
        let mut setup = Setup::new(&config)?;
        if name.contains("InstancePre") {
            setup.pre = Some(setup.linker.instantiate_pre(&setup.module)?);
        }
        let in_flight = time_phases(&setup, 21, 1000)?;
        let one_at_a_time = time_phases(&setup, 20_001, 1)?;
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "  {name:<36} {:>6.2} {:>6.2} {:>6.2} {:>8.2} | {:>6.2} {:>6.2} {:>6.2} {:>8.2}",
            us(in_flight.start),
            us(in_flight.resume),
            us(in_flight.drop),
            us(in_flight.whole),
            us(one_at_a_time.start),
            us(one_at_a_time.resume),
            us(one_at_a_time.drop),
            us(one_at_a_time.whole),
        );
    }
    Ok(())
}
