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
//! # Exits
//!
//! `proc_exit(n)` ends the call with the error [`I32Exit`]`(n)` (see [`exit_code`]), which is
//! not a trap. Output streams hold no data at that point: every write to stdout or a writer
//! is flushed before `fd_write` returns.

#![forbid(unsafe_code)]

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
