//! What both engines run: the Wasm modules, the host futures, the executors, and the reference
//! results every timed run is checked against.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

/// Every module the timed cases use; imports come from module `env`.
///
/// - `empty`: the typed call and the promising call of an empty export.
/// - `loop_host n`: n calls of the synchronous import `host`; `loop_wait n`: n calls of the
///   suspending import `wait` (pending once each).
/// - `sync_fib n` / `promise_fib n`: fib(n) whose additions go through `add` (synchronous) or
///   `promise_add` (suspending, pending once) — JSPI's badfib; `fib n`: the same recursion with
///   `i32.add` inline.
/// - kernels: `fib64 n` (i64 recursion), `sieve n` (primes below n, byte array in memory),
///   `xorshift n` (n rounds of a 64-bit xorshift).
pub const CALLS_WAT: &str = r#"(module
  (import "env" "host" (func $host (param i32) (result i32)))
  (import "env" "add" (func $add (param i32 i32) (result i32)))
  (func (export "empty"))
  (func (export "loop_host") (param $n i32)
    (loop $l
      (drop (call $host (local.get $n)))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1))))))
  (func $sync_fib (export "sync_fib") (param $n i32) (result i32)
    (if (result i32) (i32.lt_s (local.get $n) (i32.const 2))
      (then (local.get $n))
      (else (call $add (call $sync_fib (i32.sub (local.get $n) (i32.const 1)))
                       (call $sync_fib (i32.sub (local.get $n) (i32.const 2)))))))
  (func $fib (export "fib") (param $n i32) (result i32)
    (if (result i32) (i32.lt_s (local.get $n) (i32.const 2))
      (then (local.get $n))
      (else (i32.add (call $fib (i32.sub (local.get $n) (i32.const 1)))
                     (call $fib (i32.sub (local.get $n) (i32.const 2)))))))
  (func $fib64 (export "fib64") (param $n i64) (result i64)
    (if (result i64) (i64.lt_u (local.get $n) (i64.const 2))
      (then (local.get $n))
      (else (i64.add (call $fib64 (i64.sub (local.get $n) (i64.const 1)))
                     (call $fib64 (i64.sub (local.get $n) (i64.const 2)))))))
  (memory 16)
  (func (export "sieve") (param $n i32) (result i32)
    (local $i i32) (local $j i32) (local $count i32)
    (memory.fill (i32.const 0) (i32.const 1) (local.get $n))
    (local.set $i (i32.const 2))
    (block $done
      (loop $outer
        (br_if $done (i32.gt_u (i32.mul (local.get $i) (local.get $i)) (local.get $n)))
        (if (i32.load8_u (local.get $i))
          (then
            (local.set $j (i32.mul (local.get $i) (local.get $i)))
            (block $inner_done
              (loop $inner
                (br_if $inner_done (i32.ge_u (local.get $j) (local.get $n)))
                (i32.store8 (local.get $j) (i32.const 0))
                (local.set $j (i32.add (local.get $j) (local.get $i)))
                (br $inner)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $outer)))
    (local.set $i (i32.const 2))
    (block $counted
      (loop $count_loop
        (br_if $counted (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $count (i32.add (local.get $count) (i32.load8_u (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $count_loop)))
    (local.get $count))
  (func (export "xorshift") (param $n i32) (result i64)
    (local $x i64)
    (local.set $x (i64.const 88172645463325252))
    (loop $l
      (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 13))))
      (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 7))))
      (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 17))))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
    (local.get $x)))"#;

/// The module of the promising cases: its imports are suspending.
pub const ASYNC_WAT: &str = r#"(module
  (import "env" "wait" (func $wait (param i32) (result i32)))
  (import "env" "promise_add" (func $add (param i32 i32) (result i32)))
  (func (export "empty"))
  (func (export "loop_wait") (param $n i32)
    (loop $l
      (drop (call $wait (local.get $n)))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1))))))
  (func $promise_fib (export "promise_fib") (param $n i32) (result i32)
    (if (result i32) (i32.lt_s (local.get $n) (i32.const 2))
      (then (local.get $n))
      (else (call $add (call $promise_fib (i32.sub (local.get $n) (i32.const 1)))
                       (call $promise_fib (i32.sub (local.get $n) (i32.const 2))))))))"#;

/// The module each held call runs: it suspends in `wait` until released.
pub const HELD_WAT: &str = r#"(module
  (import "env" "wait" (func $wait (param i32) (result i32)))
  (func (export "run") (param i32) (result i32)
    (i32.add (i32.mul (call $wait (local.get 0)) (i32.const 2)) (i32.const 1))))"#;

/// fib(n), to check results against.
pub fn fib(n: u64) -> u64 {
    let (mut a, mut b) = (0u64, 1u64);
    for _ in 0..n {
        (a, b) = (b, a.wrapping_add(b));
    }
    a
}

/// Additions in fib(n)'s naive recursion: the calls of `add` in `sync_fib(n)`.
pub fn additions(n: u64) -> u64 {
    if n < 2 { 0 } else { fib(n + 1) - 1 }
}

/// The number of primes below `n`, to check `sieve` against.
pub fn primes_below(n: usize) -> i32 {
    let mut sieve = vec![true; n];
    let mut count = 0;
    for i in 2..n {
        if sieve[i] {
            count += 1;
            let mut j = i * i;
            while j < n {
                sieve[j] = false;
                j += i;
            }
        }
    }
    count
}

/// `xorshift n`'s result.
pub fn xorshift(n: u32) -> i64 {
    let mut x: u64 = 88172645463325252;
    for _ in 0..n.max(1) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x as i64
}

/// A host operation's future: pending once (waking itself at once), then ready.
pub struct PendingOnce {
    value: i32,
    polled: bool,
}

impl PendingOnce {
    pub fn new(value: i32) -> Self {
        PendingOnce {
            value,
            polled: false,
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

/// The spin executor: polls `future` with a no-op waker until it is ready (every future here
/// wakes itself), so no executor's cost is in a figure.
pub fn spin<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

/// A tokio `current_thread` runtime, the executor most embedders use.
pub fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current_thread runtime")
}
