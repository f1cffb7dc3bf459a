//! `suspension`: every import is a suspending import, pending a seeded random number of polls
//! each time it is called; the outcomes (results, trap kinds), the exported memories and
//! globals, and the host state afterwards must equal those of the synchronous run, in which the
//! same imports are plain host functions.
//!
//! The first input bytes choose how the promising calls are driven:
//! - on `&mut Store`, polled to the end on this thread;
//! - on a `SharedStore`;
//! - on `&mut Store`, polled a few times here and finished on another thread;
//! - with one call cancelled (its future dropped after a few polls); then the store must still
//!   work: the whole sequence on a fresh instance in the same store equals the synchronous run.
//!
//! Modules are wasm-smith's (weft's features, terminating, NaNs canonicalized, every item exported),
//! importing only from a fixed set of host functions: typed ones of 0 to 16 parameters and an
//! untyped one (`func_new` / `func_new_async`).

use std::sync::OnceLock;

use arbitrary::Unstructured;
use weft::{
    Caller, ExternType, FuncType, Instance, Linker, Module, SharedStore, Store, Val, ValType,
};

use super::{engine, error_kind};
use crate::executor::{PendingFor, Poller};
use crate::rng::Rng;
use crate::smith;

/// What the host functions see: a call counter (so results depend on call order) and the
/// generator of pending counts.
struct HostState {
    calls: u64,
    pending: Rng,
}

const IMPORTS: &str = r#"(module
  (import "host" "s_v" (func))
  (import "host" "s_i" (func (param i32) (result i32)))
  (import "host" "s_l" (func (param i64) (result i64)))
  (import "host" "s_ii" (func (param i32 i32) (result i32)))
  (import "host" "s_d" (func (param f64) (result f64)))
  (import "host" "s_wide" (func (param i32 i64 f32 f64 i32 i64 f32 f64 i32 i64 f32 f64 i32 i64 f32 f64) (result i64)))
  (import "host" "s_dyn" (func (param i32 i64 f32 f64) (result i64 f64))))"#;

/// `s_wide`'s 16 parameters (the most a typed host function takes) folded into one word.
fn wide(
    a: (i32, i64, f32, f64),
    b: (i32, i64, f32, f64),
    c: (i32, i64, f32, f64),
    d: (i32, i64, f32, f64),
) -> u64 {
    [a, b, c, d].iter().fold(0u64, |acc, &(w, x, y, z)| {
        let v = (w as u32 as u64)
            ^ (x as u64).rotate_left(7)
            ^ (u64::from(y.to_bits()) << 13)
            ^ z.to_bits().rotate_left(29);
        acc.rotate_left(5) ^ v
    })
}

/// Defines `s_wide` with `$define` (`func_wrap` or `func_wrap_async`): its 16 parameters
/// folded by [`wide`] into `$w`, then `$body` with the caller as `$c`.
macro_rules! wide_import {
    ($linker:ident . $define:ident, |$c:ident, $w:ident| $body:expr) => {
        $linker.$define(
            "host",
            "s_wide",
            |mut $c: Caller<'_, HostState>,
             a0: i32,
             a1: i64,
             a2: f32,
             a3: f64,
             b0: i32,
             b1: i64,
             b2: f32,
             b3: f64,
             c0: i32,
             c1: i64,
             c2: f32,
             c3: f64,
             d0: i32,
             d1: i64,
             d2: f32,
             d3: f64| {
                let $w = wide(
                    (a0, a1, a2, a3),
                    (b0, b1, b2, b3),
                    (c0, c1, c2, c3),
                    (d0, d1, d2, d3),
                );
                $body
            },
        )?
    };
}

/// The type of `s_dyn`, defined through the untyped `func_new`/`func_new_async`.
fn dyn_type() -> FuncType {
    FuncType::new(
        [ValType::I32, ValType::I64, ValType::F32, ValType::F64],
        [ValType::I64, ValType::F64],
    )
}

/// `s_dyn`'s results from its arguments (already type-checked by weft).
fn dyn_results(state: &mut HostState, args: &[Val]) -> Vec<Val> {
    let folded = args.iter().fold(0u64, |acc, v| {
        acc.rotate_left(11) ^ bits(v).unwrap_or(0) as u64
    });
    let m = mix(state, folded);
    vec![Val::I64(m as i64), Val::F64((m as u32 as f64).to_bits())]
}

fn available_imports() -> Vec<u8> {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES
        .get_or_init(|| wat::parse_str(IMPORTS).expect("the import list is valid WAT"))
        .clone()
}

/// The host functions' one behaviour: count the call and mix it into the arguments.
fn mix(state: &mut HostState, args: u64) -> u64 {
    state.calls += 1;
    (args ^ state.calls.wrapping_mul(0x9e37_79b9_7f4a_7c15)).rotate_left(17)
}

fn sync_linker() -> Linker<HostState> {
    let mut linker = Linker::new(engine());
    let ok = (|| -> weft::Result<()> {
        linker.func_wrap("host", "s_v", |mut c: Caller<'_, HostState>| {
            mix(c.data_mut(), 0);
        })?;
        linker.func_wrap("host", "s_i", |mut c: Caller<'_, HostState>, x: i32| {
            mix(c.data_mut(), x as u64) as i32
        })?;
        linker.func_wrap("host", "s_l", |mut c: Caller<'_, HostState>, x: i64| {
            mix(c.data_mut(), x as u64) as i64
        })?;
        linker.func_wrap(
            "host",
            "s_ii",
            |mut c: Caller<'_, HostState>, x: i32, y: i32| {
                mix(c.data_mut(), (x as u64) << 32 | y as u32 as u64) as i32
            },
        )?;
        linker.func_wrap("host", "s_d", |mut c: Caller<'_, HostState>, x: f64| {
            mix(c.data_mut(), x.to_bits()) as u32 as f64
        })?;
        wide_import!(linker.func_wrap, |c, w| mix(c.data_mut(), w) as i64);
        linker.func_new("host", "s_dyn", dyn_type(), |mut c, args, results| {
            results.copy_from_slice(&dyn_results(c.data_mut(), args));
            Ok(())
        })?;
        Ok(())
    })();
    ok.expect("defining distinct host functions");
    linker
}

/// The same functions as suspending imports, each pending 0–3 polls.
fn async_linker() -> Linker<HostState> {
    fn pending<V>(state: &mut HostState, value: V) -> PendingFor<V> {
        PendingFor {
            polls: state.pending.below(4) as u32,
            value: Some(value),
        }
    }
    let mut linker = Linker::new(engine());
    let ok = (|| -> weft::Result<()> {
        linker.func_wrap_async("host", "s_v", |mut c: Caller<'_, HostState>| {
            let s = c.data_mut();
            mix(s, 0);
            pending(s, ())
        })?;
        linker.func_wrap_async("host", "s_i", |mut c: Caller<'_, HostState>, x: i32| {
            let s = c.data_mut();
            let v = mix(s, x as u64) as i32;
            pending(s, v)
        })?;
        linker.func_wrap_async("host", "s_l", |mut c: Caller<'_, HostState>, x: i64| {
            let s = c.data_mut();
            let v = mix(s, x as u64) as i64;
            pending(s, v)
        })?;
        linker.func_wrap_async(
            "host",
            "s_ii",
            |mut c: Caller<'_, HostState>, x: i32, y: i32| {
                let s = c.data_mut();
                let v = mix(s, (x as u64) << 32 | y as u32 as u64) as i32;
                pending(s, v)
            },
        )?;
        linker.func_wrap_async("host", "s_d", |mut c: Caller<'_, HostState>, x: f64| {
            let s = c.data_mut();
            let v = mix(s, x.to_bits()) as u32 as f64;
            pending(s, v)
        })?;
        wide_import!(linker.func_wrap_async, |c, w| {
            let s = c.data_mut();
            let v = mix(s, w) as i64;
            pending(s, v)
        });
        linker.func_new_async("host", "s_dyn", dyn_type(), |mut c, args| {
            let s = c.data_mut();
            let results = dyn_results(s, args);
            let wait = pending(s, ());
            async move {
                wait.await;
                Ok(results)
            }
        })?;
        Ok(())
    })();
    ok.expect("defining distinct host functions");
    linker
}

/// One call's outcome, comparable: result bits (null-ness for references) or an error kind.
type Outcome = Result<Vec<Option<u128>>, String>;

fn bits(v: &Val) -> Option<u128> {
    match *v {
        Val::I32(x) => Some(x as u32 as u128),
        Val::I64(x) => Some(x as u64 as u128),
        Val::F32(x) => Some(x as u128),
        Val::F64(x) => Some(x as u128),
        Val::V128(x) => Some(x),
        Val::FuncRef(f) => f.map(|_| 1),
        Val::ExternRef(r) => r.map(|_| 1),
        Val::ExnRef(r) => r.map(|_| 1),
    }
}

/// The exported memories' bytes, the exported globals' bits, and the host's call count.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    memories: Vec<(String, Vec<u8>)>,
    globals: Vec<(String, Option<u128>)>,
    calls: u64,
}

fn snapshot(store: &mut Store<HostState>, instance: Instance) -> Snapshot {
    let mut memories = Vec::new();
    let mut globals = Vec::new();
    for (name, export) in instance.exports(&mut *store) {
        if let Some(memory) = export.into_memory() {
            memories.push((name.clone(), memory.data(&*store).to_vec()));
        }
        if let Some(global) = export.into_global() {
            globals.push((name, bits(&global.get(&mut *store))));
        }
    }
    Snapshot {
        memories,
        globals,
        calls: store.data().calls,
    }
}

/// One planned call: the export and its arguments.
struct Call {
    name: String,
    params: Vec<Val>,
    results: Vec<ValType>,
}

fn plan(module: &Module, u: &mut Unstructured<'_>) -> Vec<Call> {
    let mut calls = Vec::new();
    for (name, ty) in module.exports() {
        let ExternType::Func(ty) = ty else { continue };
        let params = ty
            .params()
            .iter()
            .map(|&t| match t {
                ValType::I32 => Val::I32(u.arbitrary().unwrap_or(0)),
                ValType::I64 => Val::I64(u.arbitrary().unwrap_or(0)),
                ValType::F32 => Val::F32(u.arbitrary::<u16>().unwrap_or(0) as u32),
                ValType::F64 => Val::F64(u.arbitrary::<u32>().unwrap_or(0) as u64),
                ValType::V128 => Val::V128(u.arbitrary().unwrap_or(0)),
                other => Val::default_for(other),
            })
            .collect();
        calls.push(Call {
            name: name.to_string(),
            params,
            results: ty.results().to_vec(),
        });
    }
    calls
}

fn outcome(result: weft::Result<()>, results: &[Val]) -> Outcome {
    result
        .map(|()| results.iter().map(bits).collect())
        .map_err(|e| error_kind(&e))
}

fn fresh_store(seed: u64) -> Store<HostState> {
    Store::new(
        engine(),
        HostState {
            calls: 0,
            pending: Rng::new(seed),
        },
    )
}

/// The synchronous run: instantiation (its error kind, if it fails), each call's outcome, and
/// the state afterwards.
fn run_sync(module: &Module, calls: &[Call]) -> (Vec<Outcome>, Option<Snapshot>) {
    let mut store = fresh_store(0);
    let instance = match sync_linker().instantiate(&mut store, module) {
        Ok(instance) => instance,
        Err(e) => return (vec![Err(format!("instantiate:{}", error_kind(&e)))], None),
    };
    let mut outcomes = Vec::new();
    for call in calls {
        let func = instance
            .get_func(&mut store, &call.name)
            .expect("planned from the exports");
        let mut results: Vec<Val> = call.results.iter().map(|&t| Val::default_for(t)).collect();
        let result = func.call(&mut store, &call.params, &mut results);
        outcomes.push(outcome(result, &results));
    }
    let state = snapshot(&mut store, instance);
    (outcomes, Some(state))
}

/// How the promising calls are driven.
#[derive(Clone, Copy, Debug)]
enum Drive {
    Local,
    Shared,
    Migrate { polls_here: u32 },
    Cancel { call: usize, polls: u32 },
}

const POLL_LIMIT: u64 = 1_000_000;

fn run_async(
    module: &Module,
    calls: &[Call],
    drive: Drive,
    seed: u64,
) -> Result<(Vec<Outcome>, Option<Snapshot>), String> {
    let poller = Poller::default();
    let linker = async_linker();
    match drive {
        Drive::Shared => {
            let shared = SharedStore::new(fresh_store(seed));
            let instance = {
                let fut = std::pin::pin!(linker.instantiate_async(&shared, module));
                match poller.block_on(fut, POLL_LIMIT)? {
                    Ok(instance) => instance,
                    Err(e) => {
                        return Ok((vec![Err(format!("instantiate:{}", error_kind(&e)))], None));
                    }
                }
            };
            let mut outcomes = Vec::new();
            for call in calls {
                let func = instance
                    .get_func(&mut *shared.lock_blocking(), &call.name)
                    .expect("planned from the exports");
                let mut results: Vec<Val> =
                    call.results.iter().map(|&t| Val::default_for(t)).collect();
                let result = {
                    let fut =
                        std::pin::pin!(func.call_async(shared.clone(), &call.params, &mut results));
                    poller.block_on(fut, POLL_LIMIT)?
                };
                outcomes.push(outcome(result, &results));
            }
            let state = snapshot(&mut shared.lock_blocking(), instance);
            Ok((outcomes, Some(state)))
        }
        Drive::Local | Drive::Migrate { .. } | Drive::Cancel { .. } => {
            let mut store = fresh_store(seed);
            let instance = {
                let fut = std::pin::pin!(linker.instantiate_async(&mut store, module));
                match poller.block_on(fut, POLL_LIMIT)? {
                    Ok(instance) => instance,
                    Err(e) => {
                        return Ok((vec![Err(format!("instantiate:{}", error_kind(&e)))], None));
                    }
                }
            };
            if let Drive::Cancel { call, polls } = drive {
                if let Some(call) = calls.get(call) {
                    let func = instance.get_func(&mut store, &call.name).expect("planned");
                    let mut results: Vec<Val> =
                        call.results.iter().map(|&t| Val::default_for(t)).collect();
                    let mut fut = Box::pin(func.call_async(&mut store, &call.params, &mut results));
                    for _ in 0..polls {
                        match poller.poll_once(fut.as_mut()) {
                            Ok(std::task::Poll::Pending) => {}
                            Ok(std::task::Poll::Ready(_)) => break,
                            Err(_) => return Err("a cancelled-to-be call stalled".into()),
                        }
                    }
                    drop(fut);
                }
                // The store must still work: a fresh instance gives the synchronous run's
                // outcomes (the host state is reset so that the call counts line up).
                *store.data_mut() = HostState {
                    calls: 0,
                    pending: Rng::new(seed),
                };
                let instance = {
                    let fut = std::pin::pin!(linker.instantiate_async(&mut store, module));
                    match poller.block_on(fut, POLL_LIMIT)? {
                        Ok(instance) => instance,
                        Err(e) => {
                            return Ok((
                                vec![Err(format!("instantiate:{}", error_kind(&e)))],
                                None,
                            ));
                        }
                    }
                };
                return drive_local(&poller, &mut store, instance, calls, None);
            }
            let migrate = match drive {
                Drive::Migrate { polls_here } => Some(polls_here),
                _ => None,
            };
            drive_local(&poller, &mut store, instance, calls, migrate)
        }
    }
}

fn drive_local(
    poller: &Poller,
    store: &mut Store<HostState>,
    instance: Instance,
    calls: &[Call],
    migrate: Option<u32>,
) -> Result<(Vec<Outcome>, Option<Snapshot>), String> {
    let mut outcomes = Vec::new();
    for call in calls {
        let func = instance
            .get_func(&mut *store, &call.name)
            .expect("planned from the exports");
        let mut results: Vec<Val> = call.results.iter().map(|&t| Val::default_for(t)).collect();
        let result = {
            let mut fut = Box::pin(func.call_async(&mut *store, &call.params, &mut results));
            let mut done = None;
            if let Some(polls_here) = migrate {
                for _ in 0..polls_here {
                    match poller.poll_once(fut.as_mut()) {
                        Ok(std::task::Poll::Ready(r)) => {
                            done = Some(r);
                            break;
                        }
                        Ok(std::task::Poll::Pending) => {}
                        Err(_) => return Err("a promising call stalled".into()),
                    }
                }
            }
            match done {
                Some(r) => r,
                None if migrate.is_some() => std::thread::scope(|s| {
                    let handle =
                        s.spawn(move || Poller::default().block_on(fut.as_mut(), POLL_LIMIT));
                    match handle.join() {
                        Ok(r) => r,
                        Err(panic) => std::panic::resume_unwind(panic),
                    }
                })?,
                None => poller.block_on(fut.as_mut(), POLL_LIMIT)?,
            }
        };
        outcomes.push(outcome(result, &results));
    }
    let state = snapshot(store, instance);
    Ok((outcomes, Some(state)))
}

pub fn run(input: &[u8]) -> Result<String, String> {
    let mut u = Unstructured::new(input);
    let seed: u64 = u.arbitrary().unwrap_or(0);
    let drive = match u.int_in_range(0..=3u8).unwrap_or(0) {
        0 => Drive::Local,
        1 => Drive::Shared,
        2 => Drive::Migrate {
            polls_here: u.int_in_range(0..=6).unwrap_or(1),
        },
        _ => Drive::Cancel {
            call: u.int_in_range(0..=8).unwrap_or(0),
            polls: u.int_in_range(0..=6).unwrap_or(1),
        },
    };
    let fuel = u.int_in_range(1..=300u32).unwrap_or(50);
    let config = wasm_smith::Config {
        available_imports: Some(available_imports()),
        min_imports: 1,
        max_imports: 5,
        export_everything: true,
        canonicalize_nans: true,
        // Exceptions thrown and caught on a fiber across suspensions, and 64-bit memories,
        // must behave as in the synchronous run too.
        exceptions_enabled: true,
        memory64_enabled: true,
        max_memory64_bytes: 16 * 65536,
        ..smith::weft()
    };
    let Ok(bytes) = smith::terminating(config, &mut u, fuel) else {
        return Ok("smith-failed".into());
    };
    super::remember_module(&bytes);
    let module = Module::from_binary(engine(), &bytes)
        .map_err(|e| format!("weft rejected a valid module: {e}"))?;
    let calls = plan(&module, &mut u);
    let expected = run_sync(&module, &calls);
    let actual = run_async(&module, &calls, drive, seed)?;
    let overflow = |o: &[Outcome]| {
        o.iter()
            .any(|r| matches!(r, Err(k) if k.contains("StackOverflow")))
    };
    if overflow(&expected.0) || overflow(&actual.0) {
        return Ok(format!("{drive:?}:stack"));
    }
    if expected.0 != actual.0 {
        let i = expected
            .0
            .iter()
            .zip(&actual.0)
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        return Err(format!(
            "{drive:?}: outcome {i} ({}) differs: synchronous {:?}, promising {:?}",
            calls
                .get(i)
                .map(|c| c.name.as_str())
                .unwrap_or("instantiate"),
            expected.0.get(i),
            actual.0.get(i)
        ));
    }
    if expected.1 != actual.1 {
        let describe = |s: &Option<Snapshot>| match s {
            Some(s) => format!(
                "calls {}, globals {:?}, memory sizes {:?}",
                s.calls,
                s.globals,
                s.memories
                    .iter()
                    .map(|(n, m)| (n, m.len()))
                    .collect::<Vec<_>>()
            ),
            None => "none".into(),
        };
        return Err(format!(
            "{drive:?}: state after the calls differs: synchronous {}, promising {}",
            describe(&expected.1),
            describe(&actual.1)
        ));
    }
    let mut kinds: Vec<String> = actual
        .0
        .iter()
        .map(|o| match o {
            Ok(_) => "ok".into(),
            Err(k) => k.clone(),
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    let kind = match drive {
        Drive::Local => "local",
        Drive::Shared => "shared",
        Drive::Migrate { .. } => "migrate",
        Drive::Cancel { .. } => "cancel",
    };
    Ok(format!("{kind}:{}", kinds.join(",")))
}
