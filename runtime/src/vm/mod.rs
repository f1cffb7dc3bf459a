//! The VM layer: everything that touches raw memory, machine code or signals. All of the
//! runtime's `unsafe` lives in this module, and none of it leaks: what the API calls here is
//! safe, takes handles the VM layer made (a `&mut StoreContext<T>`, a [`FuncRefPtr`]) rather
//! than pointers, and every function whose soundness rests on its caller is an `unsafe fn`
//! with a `# Safety` section, called only from inside this module.
//!
//! - `vmstructs`: what compiled code reads (`VMStoreContext`, definitions, `VMFuncRef`), the
//!   [`FuncRefPtr`] handle, and [`lend_store`](vmstructs::lend_store), the one step that lends
//!   a store to the Wasm about to run.
//! - `entry`: entering Wasm, activations, and what a trap reports; `signals`, the fault
//!   handler that ends a trapping activation; `altstack`, the alternate signal stack it runs on.
//! - `call`: the synchronous call path, host to Wasm.
//! - `fiber`: a stack that code switches into and out of, with its per-activation state.
//! - `async_call`: the VM half of a promising call (a Wasm call on a fiber, polled by a
//!   future); `suspend`: how a suspending import switches out of it and polls its future;
//!   `interrupt`: the epoch-deadline and out-of-fuel builtins (trap, or yield through the same
//!   suspend point).
//! - `exception`: the store's exception objects and the handler search behind `throw`.
//! - `instance` (vmctx and builtins), `host` (host functions as Wasm calls them), `memory`,
//!   `table`, `code_memory` (published machine code and its trap/frame tables); `lazy`, the
//!   entry stubs, slots and compile workers of lazily compiled modules; `pool`, the
//!   pooling allocator's slots for memories, tables and vmctx.

mod altstack;
pub mod async_call;
pub mod call;
pub mod code_memory;
pub mod entry;
pub mod exception;
pub mod fiber;
pub mod host;
pub mod instance;
mod interrupt;
pub mod lazy;
pub mod memory;
pub mod pool;
mod signals;
pub mod suspend;
pub mod table;
pub mod vmstructs;

pub use vmstructs::{FuncRefPtr, VMGlobal, VMStoreContext, ValRaw};
