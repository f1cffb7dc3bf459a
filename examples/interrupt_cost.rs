//! What epoch checks and fuel counting cost (issue 14): three compute kernels compiled plain,
//! with `Config::epoch_interruption`, and with `Config::consume_fuel`, timed in one process
//! (best of several runs each), with the ratio to plain.
//!
//! `cargo run --release --example interrupt_cost`
//!
//! With arguments `KERNEL MODE N` (`plain`, `epoch` or `fuel`) it runs one kernel once, for
//! instruction counts that load on the machine does not disturb: the difference between the
//! counts of two sizes under `valgrind --tool=callgrind` is the kernel's own.

use std::time::{Duration, Instant};

use weft::{Config, Engine, Linker, Module, Store};

const KERNELS: &str = r#"(module
  (memory 16)
  ;; Recursive Fibonacci: calls, so function-entry checks.
  (func $fib (export "fib") (param $n i32) (result i32)
    (if (result i32) (i32.lt_u (local.get $n) (i32.const 2))
      (then (local.get $n))
      (else (i32.add (call $fib (i32.sub (local.get $n) (i32.const 1)))
                     (call $fib (i32.sub (local.get $n) (i32.const 2)))))))
  ;; Sieve of Eratosthenes over n bytes of memory: nested loops with loads and stores.
  (func (export "sieve") (param $n i32) (result i32)
    (local $i i32) (local $j i32) (local $count i32)
    (memory.fill (i32.const 0) (i32.const 1) (local.get $n))
    (local.set $i (i32.const 2))
    (block $done (loop $outer
      (br_if $done (i32.gt_u (i32.mul (local.get $i) (local.get $i)) (local.get $n)))
      (if (i32.load8_u (local.get $i)) (then
        (local.set $j (i32.mul (local.get $i) (local.get $i)))
        (block $inner_done (loop $inner
          (br_if $inner_done (i32.ge_u (local.get $j) (local.get $n)))
          (i32.store8 (local.get $j) (i32.const 0))
          (local.set $j (i32.add (local.get $j) (local.get $i)))
          (br $inner)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $outer)))
    (local.set $i (i32.const 2))
    (block $end (loop $count_loop
      (br_if $end (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $count (i32.add (local.get $count) (i32.load8_u (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $count_loop)))
    (local.get $count))
  ;; xorshift64 for n rounds: a tight loop of arithmetic.
  (func (export "xorshift") (param $n i32) (result i64)
    (local $x i64)
    (local.set $x (i64.const 88172645463325252))
    (loop $l
      (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 13))))
      (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 7))))
      (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 17))))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $l (local.get $n)))
    (local.get $x)))"#;

#[derive(Clone, Copy)]
enum Mode {
    Plain,
    Epoch,
    Fuel,
}

fn time(mode: Mode, kernel: &str, arg: i32) -> (Duration, i64) {
    time_runs(mode, kernel, arg, 7)
}

fn time_runs(mode: Mode, kernel: &str, arg: i32, runs: usize) -> (Duration, i64) {
    let mut config = Config::new();
    // One compile thread: the same work in every run, so instruction counts subtract cleanly.
    config.compile_threads(1);
    match mode {
        Mode::Plain => &mut config,
        Mode::Epoch => config.epoch_interruption(true),
        Mode::Fuel => config.consume_fuel(true),
    };
    let engine = Engine::new(&config).unwrap();
    let module = Module::new(&engine, KERNELS).unwrap();
    let mut store = Store::new(&engine, ());
    if matches!(mode, Mode::Fuel) {
        store.set_fuel(u64::MAX).unwrap();
    }
    let instance = Linker::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let func = instance.get_func(&mut store, kernel).unwrap();
    let mut best = Duration::MAX;
    let mut result = 0;
    for _ in 0..runs {
        let mut out = [weft::Val::I64(0)];
        let start = Instant::now();
        func.call(&mut store, &[weft::Val::I32(arg)], &mut out)
            .unwrap();
        best = best.min(start.elapsed());
        result = match out[0] {
            weft::Val::I32(v) => i64::from(v),
            weft::Val::I64(v) => v,
            _ => 0,
        };
    }
    (best, result)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [kernel, mode, n] = args.as_slice() {
        let mode = match mode.as_str() {
            "plain" => Mode::Plain,
            "epoch" => Mode::Epoch,
            "fuel" => Mode::Fuel,
            other => panic!("unknown mode {other}"),
        };
        let (took, result) = time_runs(mode, kernel, n.parse().expect("N"), 1);
        println!("{kernel} = {result} in {took:?}");
        return;
    }
    println!(
        "{:<10} {:>10} {:>10} {:>8} {:>10} {:>8}",
        "kernel", "plain", "epoch", "ratio", "fuel", "ratio"
    );
    for (kernel, arg) in [("fib", 30), ("sieve", 1_000_000), ("xorshift", 100_000_000)] {
        let (plain, a) = time(Mode::Plain, kernel, arg);
        let (epoch, b) = time(Mode::Epoch, kernel, arg);
        let (fuel, c) = time(Mode::Fuel, kernel, arg);
        assert!(a == b && b == c, "{kernel}: results differ: {a} {b} {c}");
        println!(
            "{kernel:<10} {:>8.1}ms {:>8.1}ms {:>8.3} {:>8.1}ms {:>8.3}",
            plain.as_secs_f64() * 1e3,
            epoch.as_secs_f64() * 1e3,
            epoch.as_secs_f64() / plain.as_secs_f64(),
            fuel.as_secs_f64() * 1e3,
            fuel.as_secs_f64() / plain.as_secs_f64(),
        );
    }
}
