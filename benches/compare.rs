//! The comparisons of `examples/bench_report.rs` under criterion, for its statistics and HTML
//! reports (`target/criterion/report/index.html`):
//!
//! - `badfib/{local,js,promise,asyncify}/n`: one fib(n) call with its additions in Wasm,
//!   through a synchronous import, through a suspending import pending once per addition
//!   (weft's stack switching), and the last rewritten by Asyncify (unwind + rewind per addition).
//! - `leaf_fib20/{weft,asyncify}/{ready,suspend}`: one fib(20) call whose 10,946 leaves call an
//!   import that returns at once or suspends once: Asyncify's tax with nothing suspending, and
//!   the cost of suspending.
//! - `suspend_at_depth/{weft,asyncify}/d`: one call recursing d deep that suspends once at the
//!   bottom.
//!
//! Each case checks its result on every iteration (cheap next to what it times); compiling and
//! instantiating happen before timing.

mod support;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use support::{ASYNCIFY_WASM, Asyncify, FIB_WASM, Weft, fib};
use weft::Module;

fn setup() -> (Weft, Asyncify) {
    let engine = support::engine();
    let weft = Weft::new(&engine, &Module::new(&engine, FIB_WASM).unwrap()).unwrap();
    let asyncify = Asyncify::new(&engine, &Module::new(&engine, ASYNCIFY_WASM).unwrap()).unwrap();
    (weft, asyncify)
}

/// Runs one case and checks what it returned.
fn check(expected: i32, got: weft::Result<i32>) {
    assert_eq!(got.expect("benchmark case failed"), expected);
}

fn badfib(c: &mut Criterion) {
    let (mut weft, mut asyncify) = setup();
    let mut group = c.benchmark_group("badfib");
    for n in [5, 10, 15, 20] {
        let expected = fib(n);
        group.bench_with_input(BenchmarkId::new("local", n), &n, |b, &n| {
            b.iter(|| check(expected, weft.local_fib(black_box(n))))
        });
        group.bench_with_input(BenchmarkId::new("js", n), &n, |b, &n| {
            b.iter(|| check(expected, weft.js_fib(black_box(n))))
        });
        group.bench_with_input(BenchmarkId::new("promise", n), &n, |b, &n| {
            b.iter(|| check(expected, weft.promise_fib(black_box(n))))
        });
        group.bench_with_input(BenchmarkId::new("asyncify", n), &n, |b, &n| {
            b.iter(|| check(expected, asyncify.promise_fib(black_box(n))))
        });
    }
    group.finish();
}

fn leaf_fib(c: &mut Criterion) {
    let (mut weft, mut asyncify) = setup();
    let expected = fib(20);
    let mut group = c.benchmark_group("leaf_fib20");
    for (name, suspend) in [("ready", false), ("suspend", true)] {
        group.bench_function(BenchmarkId::new("weft", name), |b| {
            b.iter(|| check(expected, weft.leaf_fib(black_box(20), suspend)))
        });
        group.bench_function(BenchmarkId::new("asyncify", name), |b| {
            b.iter(|| check(expected, asyncify.leaf_fib(black_box(20), suspend)))
        });
    }
    group.finish();
}

fn suspend_at_depth(c: &mut Criterion) {
    let (mut weft, mut asyncify) = setup();
    let mut group = c.benchmark_group("suspend_at_depth");
    for d in [1, 10, 100, 1000, 10000] {
        group.bench_with_input(BenchmarkId::new("weft", d), &d, |b, &d| {
            b.iter(|| check(d, weft.deep(black_box(d), true)))
        });
        group.bench_with_input(BenchmarkId::new("asyncify", d), &d, |b, &d| {
            b.iter(|| check(d, asyncify.deep(black_box(d), true)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Short runs: these cases are long enough that 20 samples give stable medians.
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = badfib, leaf_fib, suspend_at_depth
}
criterion_main!(benches);
