//! Host functions as compiled code sees them: a context whose first field is the array-call
//! shim the Wasm-to-host trampoline calls (see `vmoffsets::host_func`).
//!
//! The shim is compiled once per closure type ([`HostCallback::new`] pairs the closure with
//! `array_call::<T, C>`), so a Wasm-to-host call reaches the closure's code directly: no call
//! through a `dyn Fn`, and the closure's argument loads and result stores inline into the shim.
//! Only a failure leaves that straight line (to `fail`, out of line).

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use super::entry::{Recorded, record};
use super::instance::instance_of_vmctx;
use super::vmstructs::{FuncRefPtr, VMFuncRef, VMStoreContext, ValRaw};
use crate::func::Caller;
use crate::store::StoreContext;

/// The array-call shim of a host function: `(context, caller_vmctx, values, len) -> status`.
type ArrayCall<T> =
    unsafe extern "C" fn(*mut HostFuncContext<T>, *mut u8, *mut ValRaw, usize) -> u8;

/// A host function's closure, type-erased: reads its parameters from the value slots and writes
/// its results back into them.
type DynHostFn<T> = dyn Fn(Caller<'_, T>, &mut [ValRaw]) -> crate::Result<()> + Send + Sync;

/// A host function in its uniform shape: it reads its parameters from the value slots and
/// writes its results back into them; paired with the array-call shim made for its closure.
pub struct HostCallback<T: 'static> {
    /// Made from an `Arc<C>` of the closure type `C` that `array_call` was instantiated with
    /// (only [`HostCallback::new`] makes one).
    func: Arc<DynHostFn<T>>,
    array_call: ArrayCall<T>,
}

impl<T: 'static> Clone for HostCallback<T> {
    fn clone(&self) -> Self {
        HostCallback {
            func: self.func.clone(),
            array_call: self.array_call,
        }
    }
}

impl<T: 'static> HostCallback<T> {
    /// The host function `f`.
    pub fn new<C>(f: C) -> Self
    where
        C: Fn(Caller<'_, T>, &mut [ValRaw]) -> crate::Result<()> + Send + Sync + 'static,
    {
        HostCallback {
            func: Arc::new(f),
            array_call: array_call::<T, C>,
        }
    }

    /// Calls the function from the host (not through the shim).
    pub fn call(&self, caller: Caller<'_, T>, slots: &mut [ValRaw]) -> crate::Result<()> {
        (self.func)(caller, slots)
    }
}

/// A host function of a `Store<T>`. Boxed and owned by the store, so its address (the vmctx
/// compiled code passes back to it) is stable.
#[repr(C)]
pub struct HostFuncContext<T: 'static> {
    /// Must be first: read by the Wasm-to-host trampoline. The callback's own shim.
    array_call: ArrayCall<T>,
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
            array_call: callback.array_call,
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

/// Called by the Wasm-to-host trampoline: runs the host callback (of closure type `C`) on the
/// value slots and reports an error or panic as a recorded trap (status 0).
///
/// # Safety
/// `ctx` is a live context of a store whose Wasm is running below us (entered through
/// `lend_store`), made by [`HostFuncContext::new`] from a callback whose closure is a `C`;
/// `caller_vmctx` is a live instance of that store, and `values` points to `len` value slots.
unsafe extern "C" fn array_call<T: 'static, C>(
    ctx: *mut HostFuncContext<T>,
    caller_vmctx: *mut u8,
    values: *mut ValRaw,
    len: usize,
) -> u8
where
    C: Fn(Caller<'_, T>, &mut [ValRaw]) -> crate::Result<()> + Send + Sync + 'static,
{
    // SAFETY: the trampoline passes the context it was created with, which the store keeps
    // alive; the caller's vmctx is a live instance of the same store.
    let (ctx, caller_instance) = unsafe { (&*ctx, instance_of_vmctx(caller_vmctx).store_index) };
    // SAFETY: Wasm of the store is running below us, entered through `lend_store` (every
    // entry is), whose caller does not use its borrow until Wasm returns; this is the only live
    // access meanwhile. The store is a `StoreContext<T>`: `new` took the context from one. The
    // slots are the trampoline's stack buffer of `len` entries.
    let (store, values) = unsafe {
        let store: &mut StoreContext<T> = (*ctx.store).lent_store::<T>();
        (store, std::slice::from_raw_parts_mut(values, len))
    };
    // Not cloned: the context is boxed and owned by the store, which outlives the call (the
    // callback cannot remove it, stores never free host functions).
    // SAFETY: this shim was paired with the callback by `HostCallback::new`, which made the
    // `Arc<dyn Fn>` from an `Arc<C>`: its data pointer points to that `C`.
    let callback: &C = unsafe { &*Arc::as_ptr(&ctx.callback.func).cast::<C>() };
    match catch_unwind(AssertUnwindSafe(|| {
        callback(Caller::new(store, Some(caller_instance)), values)
    })) {
        Ok(Ok(())) => 1,
        // SAFETY: as above (the store context is live, an activation of it is running).
        Ok(Err(error)) => unsafe { fail(ctx.store, Ok(error)) },
        // SAFETY: as above.
        Err(panic) => unsafe { fail(ctx.store, Err(panic)) },
    }
}

/// Records why a host function failed (status 0), or, for a Wasm exception of this store,
/// leaves its exnref in the store context for the trampoline to throw into the Wasm caller
/// (status `THREW`; see `crate::exception` for the rule). Kept out of line, so the shim's
/// success path carries none of it: it needs nothing the shim would otherwise keep across the
/// callback (the store context is reached through the host context, which it keeps anyway).
///
/// # Safety
/// `store` is a live store context with an activation running.
#[cold]
#[inline(never)]
unsafe fn fail(
    store: *const VMStoreContext,
    failure: Result<crate::Error, Box<dyn Any + Send>>,
) -> u8 {
    if let Ok(crate::Error::Exception(e)) = &failure {
        // SAFETY: the caller's contract: the store context is live.
        let store_id = unsafe { (*store).store_id };
        // SAFETY: the caller's contract: the store context is live, and its host function
        // has returned, so nothing else is using the store's exception heap.
        let heap = unsafe { &mut *(*store).exceptions.get() };
        if let Some(exn) = e.raw_in(store_id, heap) {
            // SAFETY: the caller's contract: the store context is live and its Wasm running.
            unsafe { (*store).write_thrown(exn as u64) };
            return weft_environ::vmoffsets::host_func::THREW;
        }
    }
    let recorded = match failure {
        // A trap the host raises on Wasm's behalf gets Wasm's backtrace, like a trap of
        // compiled code (a suspending import outside a promising call, for one).
        Ok(crate::Error::Trap { trap, backtrace }) if backtrace.frames.is_empty() => {
            Recorded::Api(trap)
        }
        Ok(error) => Recorded::Error(error),
        Err(panic) => Recorded::Panic(panic),
    };
    // SAFETY: the caller's contract.
    unsafe { record(store, recorded) };
    0
}
