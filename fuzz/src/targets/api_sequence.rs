//! `api`: random sequences of instantiate / call / call_async / poll / drop / memory.grow on
//! one `SharedStore`, checked against a model of each instance (its counter global, its memory
//! size and the words stored in it).
//!
//! The module has a counter `g`, a memory of 1–8 pages, and `add_after_wait`, which first
//! calls a suspending import pending for as many polls as its second argument says and only
//! then adds to the counter. So a promising call's effect happens when its last poll runs,
//! and a call dropped while pending has no effect; the model applies effects in that order.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::Poll;

use arbitrary::Unstructured;
use weft::{Caller, Instance, Linker, Module, SharedStore, Store, Trap};

use super::{engine, error_kind};
use crate::executor::{PendingFor, Poller};

const WAT: &str = r#"(module
  (import "host" "wait" (func $wait (param i32) (result i32)))
  (global $g (export "g") (mut i64) (i64.const 0))
  (memory (export "mem") 1 8)
  (func (export "add") (param i64) (result i64)
    global.get $g local.get 0 i64.add global.set $g global.get $g)
  (func (export "add_after_wait") (param i64 i32) (result i64)
    local.get 1 call $wait drop
    global.get $g local.get 0 i64.add global.set $g global.get $g)
  (func (export "grow") (param i32) (result i32) local.get 0 memory.grow)
  (func (export "size") (result i32) memory.size)
  (func (export "store") (param i32 i32) local.get 0 local.get 1 i32.store)
  (func (export "load") (param i32) (result i32) local.get 0 i32.load)
  (func (export "trap") unreachable))"#;

const MAX_PAGES: u32 = 8;

fn module() -> &'static Module {
    static MODULE: OnceLock<Module> = OnceLock::new();
    MODULE.get_or_init(|| Module::new(engine(), WAT).expect("the API-sequence module is valid"))
}

fn linker() -> Linker<()> {
    let mut linker = Linker::new(engine());
    linker
        .func_wrap_async("host", "wait", |_: Caller<'_, ()>, polls: i32| PendingFor {
            polls: (polls as u32) % 8,
            value: Some(polls),
        })
        .expect("one definition");
    linker
}

/// What an instance should hold.
#[derive(Default, Clone)]
struct Model {
    g: i64,
    pages: u32,
    words: HashMap<u32, i32>,
}

type CallFuture = Pin<Box<dyn Future<Output = weft::Result<i64>> + Send>>;

/// A promising call in flight: its future and what it will do.
struct InFlight {
    future: CallFuture,
    instance: usize,
    add: i64,
}

struct State {
    store: SharedStore<()>,
    instances: Vec<(Instance, Model)>,
    in_flight: Vec<InFlight>,
    poller: Poller,
    linker: Linker<()>,
}

/// A synchronous call of one of the module's exports on `i`, through the store's lock.
#[derive(Debug)]
enum SyncOp {
    Add(i64),
    Grow(u32),
    Size,
    Store(u32, i32),
    Load(u32),
    Trap,
}

impl State {
    fn call(&mut self, i: usize, op: &SyncOp) -> Result<(), String> {
        let mut guard = self.store.lock_blocking();
        let store: &mut Store<()> = &mut guard;
        let (instance, model) = &mut self.instances[i];
        let instance = *instance;
        let mut func = |name: &str| {
            instance
                .get_func(&mut *store, name)
                .ok_or(format!("no export {name}"))
        };
        let bounds = |addr: u32, pages: u32| u64::from(addr) + 4 <= u64::from(pages) * 65536;
        match *op {
            SyncOp::Add(x) => {
                let f = func("add")?
                    .typed::<i64, i64>(&*store)
                    .map_err(|e| e.to_string())?;
                let got = f.call(&mut *store, x).map_err(|e| format!("add: {e}"))?;
                model.g = model.g.wrapping_add(x);
                check("add", got, model.g)
            }
            SyncOp::Grow(d) => {
                let f = func("grow")?
                    .typed::<i32, i32>(&*store)
                    .map_err(|e| e.to_string())?;
                let got = f
                    .call(&mut *store, d as i32)
                    .map_err(|e| format!("grow: {e}"))?;
                let expected = if model.pages + d <= MAX_PAGES {
                    let old = model.pages;
                    model.pages += d;
                    old as i32
                } else {
                    -1
                };
                check("memory.grow", got, expected)
            }
            SyncOp::Size => {
                let f = func("size")?
                    .typed::<(), i32>(&*store)
                    .map_err(|e| e.to_string())?;
                let got = f.call(&mut *store, ()).map_err(|e| format!("size: {e}"))?;
                check("memory.size", got, model.pages as i32)
            }
            SyncOp::Store(addr, v) => {
                let f = func("store")?
                    .typed::<(i32, i32), ()>(&*store)
                    .map_err(|e| e.to_string())?;
                let got = f.call(&mut *store, (addr as i32, v));
                if bounds(addr, model.pages) {
                    got.map_err(|e| format!("store in bounds at {addr:#x}: {e}"))?;
                    model.words.insert(addr, v);
                    Ok(())
                } else {
                    expect_trap("store", got.err(), Trap::MemoryOutOfBounds)
                }
            }
            SyncOp::Load(addr) => {
                let f = func("load")?
                    .typed::<i32, i32>(&*store)
                    .map_err(|e| e.to_string())?;
                let got = f.call(&mut *store, addr as i32);
                if bounds(addr, model.pages) {
                    let got = got.map_err(|e| format!("load in bounds at {addr:#x}: {e}"))?;
                    check("load", got, model.words.get(&addr).copied().unwrap_or(0))
                } else {
                    expect_trap("load", got.err(), Trap::MemoryOutOfBounds)
                }
            }
            SyncOp::Trap => {
                let f = func("trap")?
                    .typed::<(), ()>(&*store)
                    .map_err(|e| e.to_string())?;
                expect_trap(
                    "unreachable",
                    f.call(&mut *store, ()).err(),
                    Trap::Unreachable,
                )
            }
        }
    }

    /// Polls call `k` once; applies and checks its effect if it finished.
    fn poll(&mut self, k: usize) -> Result<(), String> {
        let call = &mut self.in_flight[k];
        match self.poller.poll_once(call.future.as_mut()) {
            Err(_) => Err("a pending promising call registered no wake-up".into()),
            Ok(Poll::Pending) => Ok(()),
            Ok(Poll::Ready(result)) => {
                let call = self.in_flight.swap_remove(k);
                let got = result.map_err(|e| format!("add_after_wait: {e}"))?;
                let model = &mut self.instances[call.instance].1;
                model.g = model.g.wrapping_add(call.add);
                check("add_after_wait", got, model.g)
            }
        }
    }

    fn check_all(&mut self) -> Result<(), String> {
        let mut guard = self.store.lock_blocking();
        let store: &mut Store<()> = &mut guard;
        for (n, (instance, model)) in self.instances.iter().enumerate() {
            let g = instance.get_global(&mut *store, "g").ok_or("no global g")?;
            check(
                &format!("instance {n}: global g"),
                g.get(&mut *store).i64().unwrap_or(-1),
                model.g,
            )?;
            let mem = instance.get_memory(&mut *store, "mem").ok_or("no memory")?;
            check(
                &format!("instance {n}: memory pages"),
                mem.size(&*store),
                u64::from(model.pages),
            )?;
            for (&addr, &v) in &model.words {
                let mut word = [0u8; 4];
                mem.read(&*store, addr as usize, &mut word)
                    .map_err(|e| e.to_string())?;
                check(
                    &format!("instance {n}: word at {addr:#x}"),
                    i32::from_le_bytes(word),
                    v,
                )?;
            }
        }
        Ok(())
    }
}

fn check<V: PartialEq + std::fmt::Debug>(what: &str, got: V, expected: V) -> Result<(), String> {
    if got == expected {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, the model says {expected:?}"))
    }
}

fn expect_trap(what: &str, got: Option<weft::Error>, trap: Trap) -> Result<(), String> {
    match got {
        Some(e) if e.trap() == Some(trap) => Ok(()),
        Some(e) => Err(format!(
            "{what}: expected trap {trap:?}, got {}",
            error_kind(&e)
        )),
        None => Err(format!("{what}: expected trap {trap:?}, it succeeded")),
    }
}

pub fn run(input: &[u8]) -> Result<String, String> {
    let mut u = Unstructured::new(input);
    let mut state = State {
        store: SharedStore::new(Store::new(engine(), ())),
        instances: Vec::new(),
        in_flight: Vec::new(),
        poller: Poller::default(),
        linker: linker(),
    };
    let mut ops = Vec::new();
    let steps = u.int_in_range(1..=64u32).unwrap_or(1);
    for _ in 0..steps {
        if u.is_empty() {
            break;
        }
        let op = u.int_in_range(0..=9u8).unwrap_or(0);
        ops.push(op);
        if state.instances.is_empty() || op == 0 {
            if state.instances.len() >= 6 {
                continue;
            }
            let instance = {
                let mut guard = state.store.lock_blocking();
                state
                    .linker
                    .instantiate(&mut *guard, module())
                    .map_err(|e| format!("instantiate: {e}"))?
            };
            state.instances.push((
                instance,
                Model {
                    pages: 1,
                    ..Model::default()
                },
            ));
            continue;
        }
        let i = u.choose_index(state.instances.len()).unwrap_or(0);
        let pages = state.instances[i].1.pages;
        let addr = |u: &mut Unstructured<'_>| -> u32 {
            let words = (pages + 1) * 16384;
            u.int_in_range(0..=words - 1).unwrap_or(0) * 4
        };
        match op {
            1 => state.call(i, &SyncOp::Add(u.arbitrary().unwrap_or(1)))?,
            2 => state.call(i, &SyncOp::Grow(u.int_in_range(0..=4).unwrap_or(0)))?,
            3 => state.call(i, &SyncOp::Size)?,
            4 => {
                let a = addr(&mut u);
                state.call(i, &SyncOp::Store(a, u.arbitrary().unwrap_or(7)))?
            }
            5 => {
                let a = addr(&mut u);
                state.call(i, &SyncOp::Load(a))?
            }
            6 => state.call(i, &SyncOp::Trap)?,
            7 => {
                // Start a promising call (at most 8 in flight).
                if state.in_flight.len() < 8 {
                    let add: i64 = u.arbitrary().unwrap_or(1);
                    let polls: i32 = u.int_in_range(0..=7).unwrap_or(1);
                    let func = {
                        let mut guard = state.store.lock_blocking();
                        state.instances[i]
                            .0
                            .get_typed_func::<(i64, i32), i64>(&mut *guard, "add_after_wait")
                            .map_err(|e| e.to_string())?
                    };
                    let store = state.store.clone();
                    let future: CallFuture =
                        Box::pin(async move { func.call_async(store, (add, polls)).await });
                    state.in_flight.push(InFlight {
                        future,
                        instance: i,
                        add,
                    });
                }
            }
            8 if !state.in_flight.is_empty() => {
                let k = u.choose_index(state.in_flight.len()).unwrap_or(0);
                state.poll(k)?;
            }
            9 if !state.in_flight.is_empty() => {
                // Cancel: a call dropped while pending never adds.
                let k = u.choose_index(state.in_flight.len()).unwrap_or(0);
                drop(state.in_flight.swap_remove(k));
            }
            8 | 9 => {
                // Host-side memory.grow through the API.
                let d = u.int_in_range(0..=4u32).unwrap_or(1);
                let mut guard = state.store.lock_blocking();
                let store: &mut Store<()> = &mut guard;
                let (instance, model) = &mut state.instances[i];
                let mem = instance.get_memory(&mut *store, "mem").ok_or("no memory")?;
                let got = mem.grow(&mut *store, u64::from(d));
                if model.pages + d <= MAX_PAGES {
                    let old =
                        got.map_err(|e| format!("Memory::grow({d}) within the maximum: {e}"))?;
                    check("Memory::grow", old, u64::from(model.pages))?;
                    model.pages += d;
                } else if got.is_ok() {
                    return Err(format!("Memory::grow({d}) past the maximum succeeded"));
                }
            }
            _ => unreachable!("op is in 0..=9"),
        }
        state.check_all()?;
    }
    // Finish or drop the rest, in the order the input says; sometimes drop the store first.
    let drop_store_first = u.arbitrary::<bool>().unwrap_or(false);
    let finish = u.arbitrary::<bool>().unwrap_or(true);
    if finish {
        while !state.in_flight.is_empty() {
            state.poll(0)?;
        }
        state.check_all()?;
    }
    if drop_store_first {
        let State {
            store, in_flight, ..
        } = state;
        drop(store);
        drop(in_flight);
    }
    ops.sort_unstable();
    ops.dedup();
    Ok(format!("ops:{ops:?}:{finish}"))
}
