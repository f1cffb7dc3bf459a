//! WASI preview1 for weft: a host whose blocking calls suspend the Wasm call instead of
//! blocking a thread.
//!
//! # Layers
//!
//! - **The state**, [`WasiCtx`], built with [`WasiCtxBuilder`]: arguments, environment and
//!   the descriptor table (stdio, preopened directories and sockets, and what the guest
//!   opened). Table entries are `Arc`s, so a call clones its handle out and keeps it across
//!   awaits while the table stays free for other calls.
//! - **The semantics**, [`preview1`]: one `async fn` per `wasi_snapshot_preview1` function,
//!   engine-neutral. Each reads its inputs from guest memory in one synchronous step, does
//!   its I/O, and writes its results in another; every guest pointer and length is
//!   bounds-checked (overflow included), and a bad one is `EFAULT`.
//! - **The seam**, [`WasiHost`]: an engine lends the context and memory for one step at a
//!   time, and says how blocking work runs ([`Blocking`]): inline on the calling thread
//!   (the synchronous binding), or on tokio's blocking pool with `tokio::time` sleeps (the
//!   async binding). One implementation of the semantics, two bindings.
//! - **The weft binding**, [`add_to_linker_sync`] and [`add_to_linker_async`], a thin layer
//!   over weft's public `Linker` API. In async mode each function is a suspending import:
//!   while its future waits, the promising call is switched out and the executor runs other
//!   work, so thousands of guests sleeping or reading share one thread.
//!
//! # The sandbox
//!
//! Preopened directories are `cap_std::fs::Dir`s, and every path a guest names is resolved
//! beneath one by cap-std (`openat2` with `RESOLVE_BENEATH` where the kernel has it). `..`
//! past the preopen, absolute paths, and symlinks that lead out (including ones the guest
//! created) fail without touching anything outside: cap-std reports them as "permission
//! denied" with no OS code, which becomes `EPERM` (as in wasmtime). A symlink loop is
//! `ELOOP`; following a symlink in the last component when the lookup flags say not to is
//! `ELOOP` too. A guest that lacks a directory or file permission the host withheld
//! ([`DirPerms`], [`FilePerms`]) gets `ENOTCAPABLE`.
//!
//! Rights (preview1's per-descriptor capability bits) are tracked and reported by
//! `fd_fdstat_get`, and can only be narrowed (`fd_fdstat_set_rights`); like today's wasmtime,
//! the host enforces what a descriptor was opened for (reading, writing) and the preopen
//! permissions, not each right bit.
//!
//! # Readiness and blocking
//!
//! `poll_oneoff` sleeps for clock subscriptions (on tokio's timer in async mode) and reports
//! descriptor subscriptions as ready at once: a read or write on a file, a stream or a socket
//! either completes or suspends the call, so a guest never spins. The cost: a guest that polls
//! an inherited terminal stdin with a timeout is told it is readable and then waits in
//! `fd_read`. Work handed to tokio's blocking pool (a blocking stdin read, say) cannot be
//! interrupted; dropping the call abandons its result.
//!
//! # Example
//!
//! ```no_run
//! use weft::{Engine, Linker, Module, Store};
//! use weft_wasi::{DirPerms, FilePerms, WasiCtx, add_to_linker_async, exit_code};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::new(&weft::Config::new())?;
//! let module = Module::new(&engine, std::fs::read("program.wasm")?)?;
//! let mut linker = Linker::new(&engine);
//! add_to_linker_async(&mut linker, |ctx: &mut WasiCtx| ctx)?;
//! let ctx = WasiCtx::builder()
//!     .args(["program.wasm", "hello"])
//!     .inherit_stdio()
//!     .preopened_dir("data", "/data", DirPerms::ALL, FilePerms::ALL)
//!     .build()?;
//! let mut store = Store::new(&engine, ctx);
//! let instance = linker.instantiate_async(&mut store, &module).await?;
//! let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
//! let status = match start.call_async(&mut store, ()).await {
//!     Ok(()) => 0,
//!     Err(error) => exit_code(&error).ok_or(error)?,
//! };
//! # let _ = status; Ok(()) }
//! ```
//!
//! # Exits
//!
//! `proc_exit(n)` ends the call with the error [`I32Exit`]`(n)` (see [`exit_code`]), which is
//! not a trap. Output streams hold no data at that point: every write to stdout or a writer
//! is flushed before `fd_write` returns.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod abi;
mod ctx;
mod host;
mod memory;
pub mod preview1;
mod weft;

pub use abi::Errno;
pub use ctx::{
    BuildError, DirPerms, FilePerms, MemoryInputPipe, MemoryOutputPipe, WasiCtx, WasiCtxBuilder,
};
pub use host::{Abort, Blocking, HostError, I32Exit, WasiHost, block_on};
pub use memory::GuestMemory;
pub use weft::{MODULE, add_to_linker_async, add_to_linker_sync, exit_code};
