//! Host functions as compiled code sees them: a context whose first field is the array-call
//! shim the Wasm-to-host trampoline calls (see `vmoffsets::host_func`).

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::entry::{Recorded, record};
use super::instance::instance_of_vmctx;
use super::vmstructs::{FuncRefPtr, VMFuncRef, VMStoreContext, ValRaw};
use crate::func::{Caller, HostCallback};
use crate::store::StoreContext;

/// A host function of a `Store<T>`. Boxed and owned by the store, so its address (the vmctx
/// compiled code passes back to it) is stable.
#[repr(C)]
pub struct HostFuncContext<T: 'static> {
    /// Must be first: read by the Wasm-to-host trampoline.
    array_call: unsafe extern "C" fn(*mut HostFuncContext<T>, *mut u8, *mut ValRaw, usize) -> u8,
    store: *const VMStoreContext,
    func_ref: VMFuncRef,
    callback: HostCallback<T>,
}

// SAFETY: the raw pointers refer to the owning store, which moves between threads as a whole;
// the callback is `Send + Sync`.
unsafe impl<T> Send for HostFuncContext<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for HostFuncContext<T> {}

impl<T: 'static> HostFuncContext<T> {
    /// A host function of `store` (which keeps the returned box until it is dropped) of
    /// engine type `type_id`, callable from Wasm through `wasm_to_array`, the engine's
    /// Wasm-to-host trampoline for that type. With `None` (the trampoline could not be
    /// compiled) the funcref has no code yet: the store must not hand it to Wasm before
    /// [`HostFunc::install_trampoline`] gave it one.
    pub fn new(
        store: &StoreContext<T>,
        type_id: u32,
        callback: HostCallback<T>,
        wasm_to_array: Option<usize>,
    ) -> Box<Self> {
        let mut ctx = Box::new(HostFuncContext {
            array_call: array_call::<T>,
            store: std::ptr::from_ref(&*store.opaque.vm),
            func_ref: VMFuncRef {
                wasm_call: wasm_to_array.map_or(std::ptr::null(), |t| t as *const u8),
                vmctx: std::ptr::null_mut(),
                type_id,
            },
            callback,
        });
        ctx.func_ref.vmctx = (&raw mut *ctx).cast();
        ctx
    }

    /// The funcref Wasm calls this function through; stable while the box lives.
    pub fn func_ref(&self) -> FuncRefPtr {
        // SAFETY: written by `new` and never again; the store keeps the box until it is dropped.
        unsafe { FuncRefPtr::new(std::ptr::NonNull::from(&self.func_ref)) }
    }

    pub fn callback(&self) -> &HostCallback<T> {
        &self.callback
    }
}

/// A host function context with its store's `T` erased, as the store keeps them.
pub trait HostFunc: Any + Send {
    /// Gives a funcref made without code (see [`HostFuncContext::new`]) its Wasm-to-host
    /// trampoline; a funcref that has code keeps it.
    fn install_trampoline(&mut self, wasm_to_array: usize);
}

impl<T: 'static> HostFunc for HostFuncContext<T> {
    fn install_trampoline(&mut self, wasm_to_array: usize) {
        // Written through the owner's `&mut` (so nothing reads it meanwhile), and only while
        // it is null: the store hands a funcref to Wasm only once it has code, so no Wasm
        // holds this one yet (the exception `FuncRefPtr`'s invariant allows).
        if self.func_ref.wasm_call.is_null() {
            self.func_ref.wasm_call = wasm_to_array as *const u8;
        }
    }
}

/// Called by the Wasm-to-host trampoline: runs the host callback on the value slots and
/// reports an error or panic as a recorded trap (status 0).
unsafe extern "C" fn array_call<T: 'static>(
    ctx: *mut HostFuncContext<T>,
    caller_vmctx: *mut u8,
    values: *mut ValRaw,
    len: usize,
) -> u8 {
    // SAFETY: the trampoline passes the context it was created with, which the store keeps
    // alive; the caller's vmctx is a live instance of the same store.
    let (ctx, caller_instance) = unsafe { (&*ctx, instance_of_vmctx(caller_vmctx).store_index) };
    // SAFETY: Wasm of the store is running below us, entered through `lend_store` (every
    // entry is), whose caller does not use its borrow until Wasm returns; this is the only live
    // access meanwhile. The store is a `StoreContext<T>`: `new` took the context from one. The slots are the trampoline's stack buffer of `len` entries.
    let (store, values) = unsafe {
        let store: &mut StoreContext<T> = (*ctx.store).lent_store::<T>();
        (store, std::slice::from_raw_parts_mut(values, len))
    };
    // Not cloned: the context is boxed and owned by the store, which outlives the call (the
    // callback cannot remove it, stores never free host functions).
    let callback = &ctx.callback;
    let result = catch_unwind(AssertUnwindSafe(|| {
        callback(Caller::new(store, Some(caller_instance)), values)
    }));
    let recorded = match result {
        Ok(Ok(())) => return 1,
        // A trap the host raises on Wasm's behalf gets Wasm's backtrace, like a trap of
        // compiled code (a suspending import outside a promising call, for one).
        Ok(Err(crate::Error::Trap { trap, backtrace })) if backtrace.frames.is_empty() => {
            Recorded::Api(trap)
        }
        Ok(Err(error)) => Recorded::Error(error),
        Err(panic) => Recorded::Panic(panic),
    };
    // SAFETY: the store context is live (see above) and an activation of it is running.
    unsafe { record(ctx.store, recorded) };
    0
}
