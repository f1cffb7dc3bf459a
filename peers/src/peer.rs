//! One engine's side of every case. Setup (compiling, instantiating, looking up exports)
//! happens in `new`; each method times `iters` operations and checks every result, so a broken
//! run cannot report a fast time.

use std::time::Duration;

/// The cases, one method each; `iters` is how many operations to time.
pub trait Peer {
    /// Typed synchronous calls of the empty export `empty`.
    fn typed_call(&mut self, iters: u64) -> Duration;
    /// Iterations of a Wasm loop calling a synchronous host import `(i32) -> i32`.
    fn wasm_to_host(&mut self, iters: u64) -> Duration;
    /// Calls of `sync_fib(20)`: 10,945 additions, each through a synchronous host import.
    fn sync_fib(&mut self, iters: u64) -> Duration;
    /// Calls of `fib(20)`: the same recursion with `i32.add` inline.
    fn pure_fib(&mut self, iters: u64) -> Duration;
    /// Calls of the i64 recursion `fib64(30)`.
    fn fib64(&mut self, iters: u64) -> Duration;
    /// Calls of `sieve(1_000_000)`.
    fn sieve(&mut self, iters: u64) -> Duration;
    /// Calls of `xorshift(10_000_000)`.
    fn xorshift(&mut self, iters: u64) -> Duration;
    /// Suspend + resume round trips: iterations of a Wasm loop calling a suspending import
    /// pending once, in one promising call polled by the spin executor.
    fn suspend_spin(&mut self, iters: u64) -> Duration;
    /// The same round trips with the promising call driven by tokio `current_thread`.
    fn suspend_tokio(&mut self, runtime: &tokio::runtime::Runtime, iters: u64) -> Duration;
    /// Promising calls of the empty export, each polled to completion by the spin executor.
    fn call_async(&mut self, iters: u64) -> Duration;
    /// Promising calls of `promise_fib(20)`: 10,945 suspensions each.
    fn promise_fib(&mut self, iters: u64) -> Duration;
    /// Compilations of `wasm` (caches off).
    fn compile(&mut self, wasm: &[u8], iters: u64) -> Duration;
}

pub const FIB_N: i32 = 20;
pub const FIB64_N: i64 = 30;
pub const SIEVE_N: i32 = 1_000_000;
pub const XORSHIFT_N: i32 = 10_000_000;

/// The batch size of the Wasm loops, which count down an `i32`.
pub fn loop_count(iters: u64) -> i32 {
    i32::try_from(iters.max(1)).expect("at most i32::MAX iterations")
}

/// The struct holding one engine's stores and exports, and its [`Peer`] impl: one body for
/// both engines, as weft's API has wasmtime's shape (`$krate` is `weft` or `wasmtime`). Only
/// `new`, which registers the suspending imports, is written per engine.
macro_rules! peer {
    ($name:ident, $krate:ident) => {
        pub struct $name {
            engine: $krate::Engine,
            sync: $krate::Store<()>,
            empty: $krate::TypedFunc<(), ()>,
            loop_host: $krate::TypedFunc<i32, ()>,
            sync_fib: $krate::TypedFunc<i32, i32>,
            fib: $krate::TypedFunc<i32, i32>,
            fib64: $krate::TypedFunc<i64, i64>,
            sieve: $krate::TypedFunc<i32, i32>,
            xorshift: $krate::TypedFunc<i32, i64>,
            promising: $krate::Store<()>,
            async_empty: $krate::TypedFunc<(), ()>,
            loop_wait: $krate::TypedFunc<i32, ()>,
            promise_fib: $krate::TypedFunc<i32, i32>,
        }

        impl $name {
            /// Looks up every export the cases call.
            fn assemble(
                engine: $krate::Engine,
                mut sync: $krate::Store<()>,
                instance: $krate::Instance,
                mut promising: $krate::Store<()>,
                async_instance: $krate::Instance,
            ) -> $krate::Result<$name> {
                Ok($name {
                    empty: instance.get_typed_func(&mut sync, "empty")?,
                    loop_host: instance.get_typed_func(&mut sync, "loop_host")?,
                    sync_fib: instance.get_typed_func(&mut sync, "sync_fib")?,
                    fib: instance.get_typed_func(&mut sync, "fib")?,
                    fib64: instance.get_typed_func(&mut sync, "fib64")?,
                    sieve: instance.get_typed_func(&mut sync, "sieve")?,
                    xorshift: instance.get_typed_func(&mut sync, "xorshift")?,
                    async_empty: async_instance.get_typed_func(&mut promising, "empty")?,
                    loop_wait: async_instance.get_typed_func(&mut promising, "loop_wait")?,
                    promise_fib: async_instance.get_typed_func(&mut promising, "promise_fib")?,
                    engine,
                    sync,
                    promising,
                })
            }
        }

        impl crate::peer::Peer for $name {
            fn typed_call(&mut self, iters: u64) -> std::time::Duration {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    self.empty.call(&mut self.sync, ()).expect("empty");
                }
                start.elapsed()
            }

            fn wasm_to_host(&mut self, iters: u64) -> std::time::Duration {
                let start = std::time::Instant::now();
                self.loop_host
                    .call(&mut self.sync, crate::peer::loop_count(iters))
                    .expect("loop_host");
                start.elapsed()
            }

            fn sync_fib(&mut self, iters: u64) -> std::time::Duration {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    let r = self
                        .sync_fib
                        .call(&mut self.sync, std::hint::black_box(crate::peer::FIB_N));
                    assert_eq!(
                        r.expect("sync_fib") as u64,
                        crate::cases::fib(crate::peer::FIB_N as u64)
                    );
                }
                start.elapsed()
            }

            fn pure_fib(&mut self, iters: u64) -> std::time::Duration {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    let r = self
                        .fib
                        .call(&mut self.sync, std::hint::black_box(crate::peer::FIB_N));
                    assert_eq!(
                        r.expect("fib") as u64,
                        crate::cases::fib(crate::peer::FIB_N as u64)
                    );
                }
                start.elapsed()
            }

            fn fib64(&mut self, iters: u64) -> std::time::Duration {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    let r = self
                        .fib64
                        .call(&mut self.sync, std::hint::black_box(crate::peer::FIB64_N));
                    assert_eq!(
                        r.expect("fib64") as u64,
                        crate::cases::fib(crate::peer::FIB64_N as u64)
                    );
                }
                start.elapsed()
            }

            fn sieve(&mut self, iters: u64) -> std::time::Duration {
                let expected = crate::cases::primes_below(crate::peer::SIEVE_N as usize);
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    let r = self
                        .sieve
                        .call(&mut self.sync, std::hint::black_box(crate::peer::SIEVE_N));
                    assert_eq!(r.expect("sieve"), expected);
                }
                start.elapsed()
            }

            fn xorshift(&mut self, iters: u64) -> std::time::Duration {
                let expected = crate::cases::xorshift(crate::peer::XORSHIFT_N as u32);
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    let r = self.xorshift.call(
                        &mut self.sync,
                        std::hint::black_box(crate::peer::XORSHIFT_N),
                    );
                    assert_eq!(r.expect("xorshift"), expected);
                }
                start.elapsed()
            }

            fn suspend_spin(&mut self, iters: u64) -> std::time::Duration {
                let start = std::time::Instant::now();
                crate::cases::spin(
                    self.loop_wait
                        .call_async(&mut self.promising, crate::peer::loop_count(iters)),
                )
                .expect("loop_wait");
                start.elapsed()
            }

            fn suspend_tokio(
                &mut self,
                runtime: &tokio::runtime::Runtime,
                iters: u64,
            ) -> std::time::Duration {
                let start = std::time::Instant::now();
                runtime
                    .block_on(
                        self.loop_wait
                            .call_async(&mut self.promising, crate::peer::loop_count(iters)),
                    )
                    .expect("loop_wait");
                start.elapsed()
            }

            fn call_async(&mut self, iters: u64) -> std::time::Duration {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    crate::cases::spin(self.async_empty.call_async(&mut self.promising, ()))
                        .expect("empty");
                }
                start.elapsed()
            }

            fn promise_fib(&mut self, iters: u64) -> std::time::Duration {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    let r = crate::cases::spin(self.promise_fib.call_async(
                        &mut self.promising,
                        std::hint::black_box(crate::peer::FIB_N),
                    ));
                    assert_eq!(
                        r.expect("promise_fib") as u64,
                        crate::cases::fib(crate::peer::FIB_N as u64)
                    );
                }
                start.elapsed()
            }

            fn compile(&mut self, wasm: &[u8], iters: u64) -> std::time::Duration {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(
                        $krate::Module::new(&self.engine, wasm).expect("the module compiles"),
                    );
                }
                start.elapsed()
            }
        }
    };
}
pub(crate) use peer;
