//! Epoch interruption and fuel (issue 14): a synchronous call that never returns can be
//! stopped from another thread, a promising call that computes for long gives its executor
//! back, and fuel bounds how much Wasm a store runs, to the operator.

use std::time::{Duration, Instant};

use weft::{Caller, Config, Engine, Error, Linker, Module, Store, Trap};

/// `spin` loops for ever; `count(n)` loops `n` times at 6 fuel per iteration (`local.get`,
/// `i32.const`, `i32.sub`, `local.set`, `local.get`, `br_if`); `answer` returns 42;
/// `nap(ms)` calls the host's `sleep`.
const WAT: &str = r#"(module
  (import "host" "sleep" (func $sleep (param i32)))
  (func $spin (export "spin") (loop $l (br $l)))
  (func (export "count") (param $n i32)
    (loop $l
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $l (local.get $n))))
  (func (export "answer") (result i32) (i32.const 42))
  (func (export "nap") (param i32) (call $sleep (local.get 0))))"#;

fn engine(epochs: bool, fuel: bool) -> Engine {
    let mut config = Config::new();
    config.epoch_interruption(epochs).consume_fuel(fuel);
    Engine::new(&config).unwrap()
}

fn instantiate(engine: &Engine) -> (Store<()>, weft::Instance) {
    let module = Module::new(engine, WAT).unwrap();
    let mut linker = Linker::<()>::new(engine);
    linker
        .func_wrap_async("host", "sleep", |_: Caller<'_, ()>, ms: i32| {
            tokio::time::sleep(Duration::from_millis(ms as u64))
        })
        .unwrap();
    let mut store = Store::new(engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    (store, instance)
}

/// After an interruption or a cancelled call: a plain call of the instance still works.
fn assert_store_works(store: &mut Store<()>, instance: weft::Instance) {
    let answer = instance
        .get_typed_func::<(), i32>(&mut *store, "answer")
        .unwrap();
    assert_eq!(answer.call(store, ()).unwrap(), 42);
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

#[test]
fn sync_infinite_loop_is_interrupted_from_another_thread_with_a_backtrace() {
    let engine = engine(true, false);
    let (mut store, instance) = instantiate(&engine);
    let spin = instance
        .get_typed_func::<(), ()>(&mut store, "spin")
        .unwrap();
    store.set_epoch_deadline(1);
    let ticker = engine.clone();
    let thread = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        ticker.increment_epoch();
    });
    let error = spin.call(&mut store, ()).unwrap_err();
    thread.join().unwrap();
    assert_eq!(error.trap(), Some(Trap::Interrupt), "{error}");
    let frames = &error.backtrace().unwrap().frames;
    assert_eq!(frames[0].func_name.as_deref(), Some("spin"), "{error}");
    // The store still works, and a deadline in the future lets calls finish.
    store.set_epoch_deadline(1_000);
    assert_store_works(&mut store, instance);
}

#[test]
fn without_a_deadline_epoch_checks_never_interrupt() {
    let engine = engine(true, false);
    let (mut store, instance) = instantiate(&engine);
    engine.increment_epoch();
    let count = instance
        .get_typed_func::<i32, ()>(&mut store, "count")
        .unwrap();
    count.call(&mut store, 100_000).unwrap();
}

/// Runs `spin` as a promising call beside `nap(10)` on another store, on one current-thread
/// executor; returns how long the nap took. The spinning call is dropped at the end.
fn nap_beside_a_spinning_call(
    engine: &Engine,
    store: &mut Store<()>,
    spin: weft::Instance,
) -> Duration {
    let spin = spin.get_typed_func::<(), ()>(&mut *store, "spin").unwrap();
    let (mut other, instance) = instantiate(engine);
    if engine.config().get_consume_fuel() {
        other.set_fuel(1_000).unwrap();
    }
    let nap = instance
        .get_typed_func::<i32, ()>(&mut other, "nap")
        .unwrap();
    current_thread().block_on(async {
        let start = Instant::now();
        tokio::select! {
            result = spin.call_async(&mut *store, ()) => panic!("spin returned: {result:?}"),
            result = nap.call_async(&mut other, 10) => result.unwrap(),
        }
        start.elapsed()
    })
}

#[test]
fn promising_call_in_an_infinite_loop_yields_at_the_epoch_deadline() {
    let engine = engine(true, false);
    let (mut store, instance) = instantiate(&engine);
    store.set_epoch_deadline(1);
    store.epoch_deadline_async_yield_and_update(1);
    let ticker = engine.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = std::thread::spawn(move || {
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(1));
            ticker.increment_epoch();
        }
    });
    let took = nap_beside_a_spinning_call(&engine, &mut store, instance);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    thread.join().unwrap();
    println!("a 10 ms nap beside a spinning call took {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // Dropping the spinning call cancelled it: the store works (once its deadline is ahead of
    // the epoch again).
    store.set_epoch_deadline(1_000);
    assert_store_works(&mut store, instance);
}

#[test]
fn fuel_is_counted_exactly_and_running_out_traps() {
    let engine = engine(false, true);
    let (mut store, instance) = instantiate(&engine);
    let count = instance
        .get_typed_func::<i32, ()>(&mut store, "count")
        .unwrap();
    store.set_fuel(1_000).unwrap();
    count.call(&mut store, 10).unwrap();
    assert_eq!(store.get_fuel().unwrap(), 1_000 - 60);
    // 59 units: the tenth iteration does not fit.
    store.set_fuel(59).unwrap();
    let error = count.call(&mut store, 10).unwrap_err();
    assert_eq!(error.trap(), Some(Trap::OutOfFuel), "{error}");
    assert_eq!(store.get_fuel().unwrap(), 0);
    store.set_fuel(60).unwrap();
    count.call(&mut store, 10).unwrap();
    assert_eq!(store.get_fuel().unwrap(), 0);
}

#[test]
fn promising_call_in_an_infinite_loop_yields_every_fuel_interval() {
    let engine = engine(false, true);
    let (mut store, instance) = instantiate(&engine);
    store.set_fuel(u64::MAX).unwrap();
    store.fuel_async_yield_interval(Some(10_000)).unwrap();
    let took = nap_beside_a_spinning_call(&engine, &mut store, instance);
    println!("a 10 ms nap beside a spinning call took {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let left = store.get_fuel().unwrap();
    assert!(left < u64::MAX, "the spinning call consumed no fuel");
    assert_store_works(&mut store, instance);
}

#[test]
fn fuel_settings_without_fuel_enabled_are_config_errors() {
    let engine = engine(false, false);
    let mut store = Store::new(&engine, ());
    assert!(matches!(store.set_fuel(1), Err(Error::InvalidConfig(_))));
    assert!(matches!(store.get_fuel(), Err(Error::InvalidConfig(_))));
    let engine = self::engine(false, true);
    let mut store = Store::new(&engine, ());
    assert!(matches!(
        store.fuel_async_yield_interval(Some(0)),
        Err(Error::InvalidConfig(_))
    ));
}

/// A loop with many integer, float and vector values live across its checks, so that the
/// checks' builtin calls (which must preserve every register) run between uses of them.
const MIXER: &str = r#"(module
  (func (export "mix") (param $n i32) (result i64)
    (local $a i64) (local $b i64) (local $c i64) (local $d i64)
    (local $e i64) (local $f i64) (local $g i64) (local $h i64)
    (local $x f64) (local $y f64) (local $z f64)
    (local $v v128) (local $w v128)
    (local.set $a (i64.const 1)) (local.set $b (i64.const 2)) (local.set $c (i64.const 3))
    (local.set $d (i64.const 4)) (local.set $e (i64.const 5)) (local.set $f (i64.const 6))
    (local.set $g (i64.const 7)) (local.set $h (i64.const 8))
    (local.set $x (f64.const 0.5)) (local.set $y (f64.const 1.25)) (local.set $z (f64.const 2))
    (local.set $v (v128.const i64x2 11 12)) (local.set $w (v128.const i64x2 13 14))
    (loop $l
      (local.set $a (i64.add (local.get $a) (local.get $h)))
      (local.set $b (i64.xor (local.get $b) (i64.rotl (local.get $a) (i64.const 7))))
      (local.set $c (i64.mul (local.get $c) (i64.or (local.get $b) (i64.const 1))))
      (local.set $d (i64.sub (local.get $d) (local.get $c)))
      (local.set $e (i64.add (local.get $e) (i64.shr_u (local.get $d) (i64.const 3))))
      (local.set $f (i64.xor (local.get $f) (local.get $e)))
      (local.set $g (i64.add (local.get $g) (i64.rotr (local.get $f) (i64.const 13))))
      (local.set $h (i64.xor (local.get $h) (local.get $g)))
      (local.set $x (f64.add (f64.mul (local.get $x) (f64.const 1.0001)) (local.get $y)))
      (local.set $y (f64.sub (local.get $y) (f64.div (local.get $z) (f64.const 3))))
      (local.set $z (f64.add (local.get $z) (f64.const 0.125)))
      (local.set $v (i64x2.add (local.get $v) (local.get $w)))
      (local.set $w (v128.xor (local.get $w) (i64x2.shl (local.get $v) (i32.const 1))))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $l (local.get $n)))
    (local.set $a (i64.xor (local.get $a) (local.get $b)))
    (local.set $a (i64.xor (local.get $a) (local.get $c)))
    (local.set $a (i64.xor (local.get $a) (local.get $d)))
    (local.set $a (i64.xor (local.get $a) (local.get $e)))
    (local.set $a (i64.xor (local.get $a) (local.get $f)))
    (local.set $a (i64.xor (local.get $a) (local.get $g)))
    (local.set $a (i64.xor (local.get $a) (local.get $h)))
    (local.set $a (i64.add (local.get $a) (i64.reinterpret_f64 (local.get $x))))
    (local.set $a (i64.add (local.get $a) (i64.reinterpret_f64 (local.get $y))))
    (local.set $a (i64.add (local.get $a) (i64.reinterpret_f64 (local.get $z))))
    (local.set $a (i64.add (local.get $a) (i64x2.extract_lane 0 (local.get $v))))
    (i64.add (local.get $a) (i64x2.extract_lane 1 (local.get $w)))))"#;

fn mix(engine: &Engine, prepare: impl FnOnce(&mut Store<()>), promising: bool) -> i64 {
    let module = Module::new(engine, MIXER).unwrap();
    let mut store = Store::new(engine, ());
    prepare(&mut store);
    let instance = Linker::new(engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let mix = instance
        .get_typed_func::<i32, i64>(&mut store, "mix")
        .unwrap();
    if promising {
        current_thread()
            .block_on(mix.call_async(&mut store, 1_000))
            .unwrap()
    } else {
        mix.call(&mut store, 1_000).unwrap()
    }
}

#[test]
fn checks_keep_every_register_of_the_code_around_them() {
    let expected = mix(&engine(false, false), |_| {}, false);
    // Fuel checked in every few operators, synchronously (refuelled from the reserve) and in
    // a promising call (yielding each time).
    let fuel = engine(false, true);
    let refuel = |store: &mut Store<()>| {
        store.set_fuel(u64::MAX).unwrap();
        store.fuel_async_yield_interval(Some(7)).unwrap();
    };
    assert_eq!(mix(&fuel, refuel, false), expected);
    assert_eq!(mix(&fuel, refuel, true), expected);
    // The epoch deadline reached at every check: a promising call yields at each.
    let epochs = engine(true, false);
    let always = |store: &mut Store<()>| {
        store.set_epoch_deadline(0);
        store.epoch_deadline_async_yield_and_update(0);
    };
    assert_eq!(mix(&epochs, always, true), expected);
}
