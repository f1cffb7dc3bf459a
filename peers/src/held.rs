//! Suspended calls held at once, in a child process per engine and count (the most-held case
//! runs each engine into its limit, and a process at its mapping limit is not one to keep
//! measuring in).
//!
//! Each engine holds calls its natural way: weft many promising calls on one `SharedStore`
//! (one instance); wasmtime one `Store` and instance per call, as its `call_async` borrows the
//! store for the whole call. Every call suspends in an async import until a flag is set, then
//! returns `2 * i + 1`, which is checked for every call.

use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use crate::cases::HELD_WAT;

/// Ready once the flag is set; polled by hand, so it needs no waker.
struct Released(Arc<AtomicBool>);

impl Future for Released {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix(field)?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

type Held<E> = Pin<Box<dyn Future<Output = Result<i32, E>>>>;

/// Holds up to `count` calls made by `start(i)`, then releases and checks them. Prints one
/// line: `held N rss_kib K` and, if a call could not be made, `error: ...`.
fn hold<E: std::fmt::Display>(
    count: usize,
    released: &AtomicBool,
    mut start: impl FnMut(usize) -> Result<Held<E>, String>,
) {
    let mut cx = Context::from_waker(Waker::noop());
    // Warm up: code, trampolines, the first stacks.
    drop(start(0));
    let rss = status_kib("VmRSS:");
    let mut held = Vec::with_capacity(count);
    let mut error = None;
    for i in 0..count {
        let mut call = match start(i) {
            Ok(call) => call,
            Err(e) => {
                error = Some(e);
                break;
            }
        };
        match call.as_mut().poll(&mut cx) {
            Poll::Pending => held.push(call),
            Poll::Ready(Ok(_)) => panic!("call {i} did not suspend"),
            Poll::Ready(Err(e)) => {
                error = Some(format!("{e:#}"));
                break;
            }
        }
        if i % 1000 == 999 {
            println!("progress {}", i + 1);
            let _ = std::io::stdout().flush();
        }
    }
    let rss_delta = status_kib("VmRSS:").saturating_sub(rss);
    released.store(true, Ordering::Release);
    for (i, call) in held.iter_mut().enumerate() {
        match call.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(r)) => assert_eq!(r, 2 * i as i32 + 1, "call {i}"),
            Poll::Ready(Err(e)) => panic!("call {i} failed after its release: {e}"),
            Poll::Pending => panic!("call {i} is still suspended"),
        }
    }
    println!("held {} rss_kib {rss_delta}", held.len());
    if let Some(e) = error {
        println!("error: {}", e.replace('\n', " / "));
    }
}

pub fn weft(count: usize) {
    use weft::{Caller, Config, Engine, Linker, Module, SharedStore, Store};
    let mut config = Config::new();
    config.max_async_stacks(config.get_max_async_stacks().max(count + 64));
    let engine = Engine::new(&config).expect("engine");
    let module = Module::new(&engine, HELD_WAT).expect("module");
    let released = Arc::new(AtomicBool::new(false));
    let flag = released.clone();
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap_async("env", "wait", move |_: Caller<'_, ()>, x: i32| {
            let released = Released(flag.clone());
            async move {
                released.await;
                x
            }
        })
        .expect("import");
    let store = SharedStore::new(Store::new(&engine, ()));
    let run = {
        let mut guard = store.try_lock().expect("nothing else holds the store");
        let instance = linker.instantiate(&mut *guard, &module).expect("instance");
        instance
            .get_typed_func::<i32, i32>(&mut *guard, "run")
            .expect("export")
    };
    hold(count, &released, |i| {
        Ok(Box::pin(run.call_async(store.clone(), i as i32)) as Held<weft::Error>)
    });
}

pub fn wasmtime(count: usize) {
    use wasmtime::{Caller, Config, Engine, Linker, Module, Store};
    let engine = Engine::new(&Config::new()).expect("engine");
    let module =
        Module::new(&engine, wat::parse_str(HELD_WAT).expect("valid WAT")).expect("module");
    let released = Arc::new(AtomicBool::new(false));
    let flag = released.clone();
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap_async("env", "wait", move |_: Caller<'_, ()>, (x,): (i32,)| {
            let released = Released(flag.clone());
            Box::new(async move {
                released.await;
                x
            })
        })
        .expect("import");
    hold(count, &released, |i| {
        let mut store = Store::new(&engine, ());
        let instance = crate::cases::spin(linker.instantiate_async(&mut store, &module))
            .map_err(|e| format!("{e:#}"))?;
        let run = instance
            .get_typed_func::<i32, i32>(&mut store, "run")
            .map_err(|e| format!("{e:#}"))?;
        Ok(Box::pin(async move {
            let mut store = store;
            run.call_async(&mut store, i as i32).await
        }) as Held<wasmtime::Error>)
    });
}
