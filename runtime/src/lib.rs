//! weft's runtime and embedding API.
//!
//! The `weft` crate re-exports everything public here. The API mirrors wasmtime's on purpose:
//! an [`Engine`] (compiler + configuration + engine-wide function types) compiles [`Module`]s;
//! a [`Store<T>`] owns instances, memories, tables, globals, functions and the host's `T`; a
//! [`Linker<T>`] resolves imports by name; [`Func`]/[`TypedFunc`] call; host functions get a
//! [`Caller`].
//!
//! # Data structures
//!
//! - A store's items live in vectors inside a boxed [`StoreContext`]; handles (`Func`,
//!   `Memory`, ...) are indices tagged with the store's id. Everything compiled code points at
//!   (each instance's vmctx, memory and table definitions, global cells, host function
//!   contexts) is boxed, so the raw pointers between them never dangle while the store lives,
//!   and nothing is freed before the store.
//! - The vmctx of an instance holds pointers to its memories', tables' and globals'
//!   definitions and an inline funcref per function; an imported function's entry is a copy of
//!   the exporter's funcref, so calls never go through a second indirection.
//! - Function types are canonicalized engine-wide, a whole recursion group at a time (a
//!   reference inside the group is keyed by its position, one outside by the engine id of its
//!   target), so equal types of different modules get one id. A funcref carries the engine's
//!   type id, and `call_indirect` compares it with the id the caller's vmctx holds for the
//!   expected type (written at instantiation), so compiled code does not depend on the engine
//!   that made it. `call_ref` compares nothing: validation proved the reference's type. The
//!   API names a type by that id ([`FuncTypeId`], in `HeapType::ConcreteFunc` of a typed
//!   reference), and value checks look up a function's id in its store.
//! - A linear memory lies in address space as [`Config::memory_reservation`] and
//!   [`Config::memory_guard_size`] say ([`MemoryBounds`], part of the code's fingerprint): a
//!   reservation of 4 GiB or more fixes the base and lets the guard stand in for bounds checks
//!   (the default, 8 GiB per memory); a smaller one makes compiled code check every access and
//!   the memory a single read-write mapping that moves when it outgrows it. Memories, tables
//!   and vmctx storage come from the engine's allocator (`pooling`): on demand, or from slots
//!   reserved when the engine is made ([`InstanceAllocationStrategy::Pooling`], `vm::pool`),
//!   zeroed when given back, so that instantiating needs no `mmap`.
//! - Machine code is placed by the VM layer's code memory (`vm::code_memory`) and registered
//!   in a process-wide map the signal handler reads (PC → trap code, PC → function and Wasm
//!   offset).
//! - With [`Config::lazy_compilation`] a module's functions are compiled on first call
//!   (`vm::lazy`): each has a fixed entry stub that jumps through a slot, which a resolver
//!   fills once worker threads have compiled the function; each function's code is published
//!   as its own registered code memory, so traps, backtraces and exceptions work unchanged.
//!
//! # Traps
//!
//! Calls into Wasm go through one entry routine in `weft-arch` that records a landing pad. A
//! trap is a fault in compiled code; the SIGSEGV/SIGBUS/SIGILL/SIGFPE handler (on an
//! alternate signal stack) checks that the PC is a trap site of Wasm code, records the trap
//! code and a frame-pointer backtrace in the current activation, and rewrites the signal
//! context so the thread resumes at the landing pad, which returns to the Rust caller. No
//! `longjmp`, and no Rust frame is skipped: builtins and host functions return a status and
//! compiled code traps after they have returned. A fault in the guard page of the promising
//! call's stack the thread runs on (the innermost activation carries its range) is host code
//! overflowing that stack: the handler says so on stderr with `write(2)` and aborts. Other
//! faults that are not Wasm traps go to the handler installed before weft's.
//!
//! # Exceptions
//!
//! Wasm exceptions (3.0's exception handling) are thrown by an assembly stub in `weft-arch`
//! that asks the VM layer for the handler (`vm/exception.rs`: a frame-pointer walk of the
//! running activation, each return address looked up in the code memories' handler tables)
//! and resumes there; code that throws nothing pays nothing. The walk ends at the
//! activation's entry, so an exception never crosses a host frame as an exception: one that
//! leaves Wasm is [`Error::Exception`] to the host, and a host function that returns such an
//! error throws it into its Wasm caller (see [`WasmException`]). Exception objects belong to
//! the store, which frees one as soon as nothing can refer to it any more (caught by
//! `catch`/`catch_all`, or become a [`WasmException`]); those whose exnref escaped to Wasm
//! (`catch_ref`) or the host ([`ExnRef`]) live as long as the store
//! ([`Store::exception_count`]).
//!
//! # Continuations: promising calls and suspending imports
//!
//! The JSPI model with Rust futures. [`Linker::func_wrap_async`] defines a *suspending import*
//! (an async host function); [`Func::call_async`]/[`TypedFunc::call_async`] make a *promising
//! call*, whose future runs the Wasm on a stack of its own, taken from the engine's pool
//! (`weft_arch::StackPool`; its whole size is [`Config::async_stack_size`], default 2 MiB, of
//! which the lowest 64 KiB are headroom for host code below the Wasm limit; at most
//! [`Config::max_async_stacks`] exist, carved from 1 GiB reservations so that a million
//! suspended calls do not cost a mapping each). When the import's future is
//! pending, the call's fiber switches out and the call's `poll` returns `Pending`; the next
//! poll switches back in and polls the import's future again, with the new `Context`. When it
//! is ready the import returns to Wasm like a synchronous one. The machine code is the same in
//! synchronous and promising calls: only the stack it runs on and its stack limit differ.
//!
//! Three layers, each in its own file of the VM layer: a *fiber* (`vm::fiber`) is a stack that
//! code switches into and out of, with its per-activation state and a payload it owns; the VM
//! half of a *promising call* (`vm::async_call`) is a fiber whose body enters Wasm and whose
//! payload holds the call's values, the outer poll's `Context` and the cancel flag; the
//! *suspend protocol* (`vm::suspend`) is how a suspending import switches out of that call and
//! polls its future. Typed continuations (the stack-switching proposal) will be fibers of
//! their own, resumed from inside a promising call's fiber.
//!
//! Per-activation state (the thread-local "running activation" the signal handler reads, and
//! the store context's stack limit) travels with the fiber: every switch in installs the
//! fiber's and every switch out restores the resumer's. So a call may suspend on one thread
//! and resume on another, and its futures are `Send` when `T` is. The swaps happen in the
//! resumer's frame; the suspending side switches from frames that never reuse a thread-local
//! address across the switch (`vm::fiber`, `vm::suspend`).
//!
//! A suspending import reached from a synchronous `call` (no promising call to switch out of)
//! traps with [`Trap::SuspendOutsidePromisingCall`]; weft never blocks on a future. Inside a
//! promising call, synchronous host functions may call back into Wasm with `call`, and a
//! suspending import further down suspends the whole chain, host frames included.
//!
//! ## Several calls in flight on one store
//!
//! JSPI lets several promising calls into one instance be suspended at once, sharing its memory
//! and globals. A `&mut Store<T>` call future borrows the store for its whole life, so only
//! one can exist. [`SharedStore<T>`] is the other [`AsyncStore`]: an `Arc` plus a lock that a
//! call takes for one poll — while its fiber runs — and releases whenever it switches
//! out, handing it to the oldest waiting call (FIFO, one wake per release; each call keeps its
//! place in line in a lock waiter, given up when the call is dropped). Calls then interleave
//! at their suspension points, each on its own stack, and the futures are `'static`, for
//! `tokio::spawn`. Uncontended, the lock is one short mutex section to take the store and one
//! to give it back per poll.
//!
//! This is why a suspending import's future must not borrow the store: while it is pending,
//! other calls may run on it. It gets the [`Caller`] synchronously, to read what it needs, and
//! [`StoreAccess`] (from [`Caller::store_access`]) lends it the store again *during its polls*,
//! when the store is provably its call's — which is how the lazy-loading import instantiates a
//! module after an async compile.
//!
//! An import's future may also await another promising call on the same `SharedStore` (JSPI:
//! an async import calling back into a promising export of the same instance). That call
//! finds the lock held by the outer call's poll — which waits for it — and the store lent to
//! the import's poll on this thread, so it runs on the lent store, on its own stack, while the
//! outer call's Wasm stays suspended inside its import (as `StoreAccess::with` does). The
//! import's future is also dropped with the store lent, so a nested call cancelled with its
//! outer call unwinds too.
//!
//! Limits of this design: a synchronous host function that sits in the middle of a suspended
//! chain (host → Wasm → sync import → Wasm → suspending import) holds its `Caller`, a
//! `&mut StoreContext<T>`, across the suspension, while other calls on a `SharedStore` may use
//! the store; it must not rely on the store being unchanged across the nested `call`. (The
//! same is true of Wasm frames: other calls may change memory and globals in between, as in
//! JSPI.) Dropping a `SharedStore` call future while another poll holds the lock spins until
//! that poll ends, since `Drop` cannot await.
//!
//! Modules built from C, C++ or Rust keep address-taken locals on a *shadow stack* in linear
//! memory, whose top is a mutable global (`__stack_pointer`). Interleaved calls share it, so a
//! suspended call's locals are overwritten by calls that start while it waits, and calls all
//! suspended at once exhaust it (JSPI has the same flaw). [`Instance::set_shadow_stack`] gives
//! each promising call on the store its own region (from the guest's allocator or a host arena)
//! and switches the global with the call's fiber, at every resume and suspension; see
//! `shadow_stack.rs`. Stores without it pay one test of `None` per resume.
//!
//! ## Cancellation, traps and panics
//!
//! Dropping a suspended call's future switches back in with a "cancelled" flag: the suspending
//! import returns an error instead of polling, compiled code traps, the landing pads unwind the
//! Wasm frames and host frames return normally, the import's future is dropped on its own
//! stack, and then the stack goes back to the pool. A trap after a resume reaches the awaiting
//! caller with its Wasm backtrace; a panic in an async host function is caught at the import
//! and re-raised in the poller. A panic while a dropped call unwinds (an import future's
//! `Drop`) is re-raised in the dropping thread once the stack is back in the pool, unless that
//! thread is already panicking (a second panic would abort): then it is only printed.
//!
//! ## Costs
//!
//! No allocation per call or per suspension: the call's state lives at the top of its fiber's
//! stack, and the import's future is pinned on that stack. A store keeps the fiber of its last
//! finished call started, parked between calls with its first frames, its activation record
//! and its entry frame in place (`vm::async_call`; the entry routine stays entered and parks
//! after each call), so the next call writes its funcref and arguments and switches in; calls
//! in flight at the same time take stacks from the engine's `StackPool`, which keeps a
//! few warm per thread (the pool's policy), so they too skip the pool's lock and its `madvise`.
//! The price of those caches is one stack's touched pages per store and up to four stacks' per
//! thread kept resident.
//!
//! The switch into a call's fiber is inlined into the call future's `poll` (and so into the
//! executor's loop), with no frame of weft's to return from between a switch out and the next
//! switch in: a `ret` whose `call` happened on the other stack mispredicts, and those, not the
//! saved registers, were most of a suspension's cost. On the fiber's side the switch is inlined
//! into the suspending import's shim, so a resumed fiber returns through two frames (the shim
//! and the trampoline) before it is back in Wasm. A switch also swaps the per-activation state
//! (one thread-local, the store's stack limit); once-per-thread work (signal handlers, the
//! alternate signal stack) is behind a thread-local flag, and a suspending import's poll marks
//! the store as lent in one word of the store context rather than in a thread-local.
//!
//! ## Interruption: epochs and fuel
//!
//! Wasm that computes without calling out holds its thread: a synchronous call cannot be
//! stopped, and a promising call keeps its executor from everything else. Two opt-in checks,
//! compiled in only when [`Config::epoch_interruption`] or [`Config::consume_fuel`] asks (code
//! without them has none), give control back:
//! - **Epochs**: [`Engine::increment_epoch`] is one atomic add, from any thread or timer; at
//!   every function entry and loop header compiled code loads the epoch (atomically, so no
//!   optimization keeps an old value in a register) and compares it with the store's deadline
//!   ([`Store::set_epoch_deadline`]).
//! - **Fuel**: each stretch of straight-line operators subtracts its cost from the store's fuel
//!   just before the control-flow operator or call that ends it, so fuel is exact to the
//!   operator and a callee sees the caller's count.
//!
//! Either check calls a builtin when it fires (a cold block, off the hot path), which traps
//! ([`Trap::Interrupt`], [`Trap::OutOfFuel`], with the backtrace) in a synchronous call. In a
//! promising call the store can ask it to *yield* instead: the builtin suspends the call
//! exactly like a suspending import does, on a future that is pending once after waking its
//! own task, so the executor runs every other ready task before it polls the call again (a
//! yield to the back of the queue); then the deadline moves on or the next slice of fuel is
//! handed out. A call dropped while it yields unwinds like any cancelled call.
//!
//! # Files
//!
//! The API half (safe, `#![deny(unsafe_code)]` outside `vm/`):
//! - `engine.rs`: `Engine` and `Config`; `module.rs`: `Module` (validate, compile, publish);
//!   `store.rs`: `Store<T>`, `StoreContext<T>` and the store's item vectors;
//!   `instance.rs`: `Instance` and instantiation; `linker.rs`: `Linker<T>`.
//! - `func.rs`: `Func` and host-function construction; `caller.rs`: `Caller`; `typed.rs`:
//!   the Rust ↔ Wasm type traits and `TypedFunc`; `call.rs`: the synchronous call path;
//!   `trap.rs`: what the VM layer reports, turned into an [`Error`].
//! - `promising.rs`: promising calls and suspending imports (the API half);
//!   `promising_values.rs`: a promising call's arguments and results; `shared_store.rs`: the
//!   fair lock behind [`SharedStore`]; `shadow_stack.rs`: a C or Rust module's shadow stack
//!   per promising call ([`ShadowStack`]), so calls interleaved on one instance keep their
//!   locals apart.
//! - `exception.rs`: tags, exception references, and the rule for exceptions at host frames
//!   (the VM half, the handler search, is `vm/exception.rs`).
//! - `externals.rs` (memories, tables, globals), `types.rs`, `values.rs`, `error.rs`.
//! - `serialize.rs`: the `.cwasm` format of `Module::serialize`/`deserialize` (header,
//!   checks, trust model); `cache.rs`: the on-disk code cache behind `Config::cache` (layout,
//!   atomic writes, eviction).
//!
//! The VM layer, `vm/` (all of the crate's `unsafe`; its module docs list its files): the
//! structures compiled code reads, entering Wasm and the signal handler, fibers and the
//! suspend protocol, instances' vmctx and builtins, memories, tables and code memory.
//!
//! # Errors
//!
//! One error type, [`Error`], an enum of weft's own failures (invalid module, trap with its
//! Wasm backtrace, unknown import, type mismatch, ...) plus [`Error::Host`] for errors from
//! outside weft. It composes the way `wasmtime::Error` does, because that is what a wasmtime
//! user writes without thinking: every `std::error::Error + Send + Sync + 'static` converts
//! into it with `?` (an `io::Error`, a `wat` parse error, the embedder's own type), in
//! `fn main() -> weft::Result<()>` and in host functions alike, and comes back out whole
//! ([`Error::downcast_ref`]); it converts into `Box<dyn std::error::Error>` and, with the
//! default `anyhow` feature, into `anyhow::Error`. We did not make `weft::Error` an alias of
//! `anyhow::Error`: staying an enum keeps weft's own failures matchable without downcasting
//! (the spec runner and the CLI match on them). The cost is wasmtime's and anyhow's too: the
//! type does not implement `std::error::Error` itself, or the blanket conversion would
//! conflict with `From<T> for T`.

#![deny(unsafe_code)]
#![deny(missing_docs)]

mod cache;
mod call;
mod caller;
mod engine;
mod error;
mod exception;
mod externals;
mod func;
mod instance;
mod linker;
mod module;
mod pooling;
mod promising;
mod promising_values;
mod serialize;
mod shadow_stack;
mod shared_store;
mod store;
mod trap;
mod typed;
mod types;
mod values;
#[allow(unsafe_code)]
mod vm;

pub use cache::CacheConfig;
pub use caller::Caller;
pub use engine::{Config, Engine};
pub use error::{Error, FrameInfo, Result, Trap, WasmBacktrace};
pub use exception::{ExnRef, Tag, TagType, WasmException};
pub use externals::{Extern, Global, Memory, Table};
pub use func::Func;
pub use instance::Instance;
pub use linker::{InstancePre, Linker};
pub use module::{CompileProgress, Module};
pub use pooling::{InstanceAllocationStrategy, PoolingAllocationConfig};
pub use promising::{AsyncStore, IntoAsyncFunc, StoreAccess};
pub use serialize::{DeserializeError, is_serialized_module};
pub use shadow_stack::{ShadowStack, ShadowStackRegion, StackPointerGlobal};
pub use shared_store::{SharedStore, SharedStoreGuard};
pub use store::{AsContext, AsContextMut, Store, StoreContext};
pub use typed::{IntoFunc, TypedFunc, WasmParams, WasmResults, WasmRet, WasmTy};
pub use types::{
    ExternType, FuncType, FuncTypeId, GlobalType, HeapType, MemoryType, Mutability, RefType,
    TableType, ValType,
};
pub use values::{ExternRef, Val};
pub use weft_compiler::{MemoryBounds, MemoryMode};
