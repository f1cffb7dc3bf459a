//! Host functions as compiled code sees them: a context whose first two fields are the shims
//! the Wasm-to-host trampolines call (see `vmoffsets::host_func`).
//!
//! The shims are compiled once per closure type ([`HostCallback::new`] pairs the closure with
//! `array_call::<T, C>`), so a Wasm-to-host call reaches the closure's code directly: no call
//! through a `dyn Fn`, and the closure's argument loads and result stores inline into the shim.
//! Only a failure leaves that straight line (to `fail`, out of line).
//!
//! Two conventions:
//! - the **array call** (every host function): the trampoline spills the arguments into a
//!   stack buffer of value slots, the shim reads them and writes the results back, and returns
//!   a status byte;
//! - the **native call** (typed closures, [`HostCallback::new_typed`], of types with at most
//!   one numeric result and numeric parameters): the trampoline calls the shim with the
//!   arguments where the C ABI puts them, which for the first few are the registers Wasm
//!   passed them in, and the shim returns `(value, status)` in two registers
//!   ([`NativeReturn`]). The shim still runs the same closure on value slots, but they are its
//!   own locals, which the optimizer keeps in registers once the closure is inlined. The
//!   failure paths (error, trap, panic, thrown exception) are the array call's.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use super::entry::{Recorded, record};
use super::instance::instance_of_vmctx;
use super::vmstructs::{FuncRefPtr, VMFuncRef, VMStoreContext, ValRaw};
use crate::engine::Trampolines;
use crate::func::Caller;
use crate::store::StoreContext;
use crate::typed::{WasmTy, for_each_arity};

/// The array-call shim of a host function: `(context, caller_vmctx, values, len) -> status`.
type ArrayCall<T> =
    unsafe extern "C" fn(*mut HostFuncContext<T>, *mut u8, *mut ValRaw, usize) -> u8;

/// What a native-call shim returns, in the two integer return registers of the C ABI
/// (`rax:rdx`, `x0:x1`): see `vmoffsets::host_func::NATIVE_CALL`.
#[repr(C)]
pub struct NativeReturn {
    /// The result's bits, zero-extended (status 1), or the caller's vmctx (status `THREW`).
    value: u64,
    /// 1, 0 (a trap was recorded) or `THREW`.
    status: u64,
}

/// A native-call shim's address: its signature depends on the parameter types. (An address,
/// not a pointer, so that callbacks stay `Send` and `Sync`.)
type NativeCall = usize;

/// The closures a host function runs: read the parameters from the value slots, write the
/// results back.
pub trait HostFn<T: 'static>:
    Fn(Caller<'_, T>, &mut [ValRaw]) -> crate::Result<()> + Send + Sync + 'static
{
}
impl<T: 'static, C> HostFn<T> for C where
    C: Fn(Caller<'_, T>, &mut [ValRaw]) -> crate::Result<()> + Send + Sync + 'static
{
}

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
    /// `native_call::<T, C, P>` for the closure's parameter types `P`, if made by
    /// [`HostCallback::new_typed`].
    native_call: Option<NativeCall>,
}

impl<T: 'static> Clone for HostCallback<T> {
    fn clone(&self) -> Self {
        HostCallback {
            func: self.func.clone(),
            array_call: self.array_call,
            native_call: self.native_call,
        }
    }
}

impl<T: 'static> HostCallback<T> {
    /// The host function `f`.
    pub fn new<C: HostFn<T>>(f: C) -> Self {
        HostCallback {
            func: Arc::new(f),
            array_call: array_call::<T, C>,
            native_call: None,
        }
    }

    /// The host function `f`, whose parameters are of the Rust types `P` (a tuple) in order
    /// and whose results fit the slots `f` is given: it gets a native-call shim as well, which
    /// Wasm uses if the function's type has the native convention.
    pub fn new_typed<P: NativeParams, C: HostFn<T>>(f: C) -> Self {
        HostCallback {
            func: Arc::new(f),
            array_call: array_call::<T, C>,
            native_call: Some(P::native_call::<T, C>()),
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
    /// Must be first: read by the array-call trampoline. The callback's own shim.
    array_call: ArrayCall<T>,
    /// Must be second: read by the native-call trampoline; 0 if the callback has none.
    native_call: NativeCall,
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
    /// engine type `type_id`, callable from Wasm through `trampolines`, the engine's
    /// trampolines for that type. With `None` (they could not be compiled) the funcref has no
    /// code yet: the store must not hand it to Wasm before [`HostFunc::install_trampoline`]
    /// gave it some.
    pub fn new(
        store: &StoreContext<T>,
        type_id: u32,
        callback: HostCallback<T>,
        trampolines: Option<&Trampolines>,
    ) -> Box<Self> {
        let mut ctx = Box::new(HostFuncContext {
            array_call: callback.array_call,
            native_call: callback.native_call.unwrap_or(0),
            store: std::ptr::from_ref(&*store.opaque.vm),
            func_ref: VMFuncRef {
                wasm_call: std::ptr::null(),
                vmctx: std::ptr::null_mut(),
                type_id,
            },
            callback,
        });
        ctx.func_ref.vmctx = (&raw mut *ctx).cast();
        if let Some(trampolines) = trampolines {
            ctx.install_trampoline(trampolines);
        }
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
    /// trampoline, from its type's `trampolines`: the native-call one if both the type and
    /// the callback have that convention, else the array-call one. A funcref that has code
    /// keeps it.
    fn install_trampoline(&mut self, trampolines: &Trampolines);
}

impl<T: 'static> HostFunc for HostFuncContext<T> {
    fn install_trampoline(&mut self, trampolines: &Trampolines) {
        // Written through the owner's `&mut` (so nothing reads it meanwhile), and only while
        // it is null: the store hands a funcref to Wasm only once it has code, so no Wasm
        // holds this one yet (the exception `FuncRefPtr`'s invariant allows).
        if self.func_ref.wasm_call.is_null() {
            let code = if self.native_call != 0 && trampolines.wasm_to_native != 0 {
                trampolines.wasm_to_native
            } else {
                trampolines.wasm_to_array
            };
            self.func_ref.wasm_call = code as *const u8;
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
unsafe extern "C" fn array_call<T: 'static, C: HostFn<T>>(
    ctx: *mut HostFuncContext<T>,
    caller_vmctx: *mut u8,
    values: *mut ValRaw,
    len: usize,
) -> u8 {
    // SAFETY: the caller's contract; the slots are the trampoline's stack buffer of `len`
    // entries.
    unsafe {
        run::<T, C>(
            ctx,
            caller_vmctx,
            std::slice::from_raw_parts_mut(values, len),
        )
    }
}

/// The body of both shims: runs the host callback (of closure type `C`) on `values` and
/// reports an error or panic as a recorded trap (status 0) or a throw (`THREW`).
///
/// # Safety
/// As [`array_call`]'s: `ctx` is a live context of a store whose Wasm is running below us,
/// made from a callback whose closure is a `C`, and `caller_vmctx` a live instance of it.
#[inline(always)]
unsafe fn run<T: 'static, C: HostFn<T>>(
    ctx: *mut HostFuncContext<T>,
    caller_vmctx: *mut u8,
    values: &mut [ValRaw],
) -> u8 {
    // SAFETY: the trampoline passes the context it was created with, which the store keeps
    // alive; the caller's vmctx is a live instance of the same store.
    let (ctx, caller_instance) = unsafe { (&*ctx, instance_of_vmctx(caller_vmctx).store_index) };
    // SAFETY: Wasm of the store is running below us, entered through `lend_store` (every
    // entry is), whose caller does not use its borrow until Wasm returns; this is the only live
    // access meanwhile. The store is a `StoreContext<T>`: `new` took the context from one.
    let store: &mut StoreContext<T> = unsafe { (*ctx.store).lent_store::<T>() };
    // Not cloned: the context is boxed and owned by the store, which outlives the call (the
    // callback cannot remove it, stores never free host functions).
    // SAFETY: this shim was paired with the callback by `HostCallback::new` or `new_typed`, which made the
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

/// The parameter lists that have a native-call shim: tuples of [`WasmTy`] (the typed API's
/// arities, 0 to 16).
pub trait NativeParams {
    /// The native-call shim for closures of type `C` taking these parameters.
    fn native_call<T: 'static, C: HostFn<T>>() -> NativeCall;
}

/// Implements [`NativeParams`] for one arity: a shim taking each parameter in its own Rust
/// type, so that the C ABI puts it where the native-call trampoline's Cranelift signature
/// (the same types) does.
macro_rules! native_params {
    ($($name:ident $i:tt),*) => {
        impl<$($name: WasmTy),*> NativeParams for ($($name,)*) {
            fn native_call<Data: 'static, Closure: HostFn<Data>>() -> NativeCall {
                /// Called by the native-call trampoline: runs the host callback (of closure
                /// type `Closure`) on value slots of its own made from the arguments, and returns
                /// the first slot's low 64 bits with status 1, or reports a failure as
                /// [`array_call`] does.
                ///
                /// # Safety
                /// As [`array_call`]'s, with the parameters of the function's type in place
                /// of the value slots: the callback's closure reads parameters of these types
                /// from its slots and writes at most one result no wider than 64 bits.
                #[allow(non_snake_case, unused_mut)]
                unsafe extern "C" fn shim<Data: 'static, Closure: HostFn<Data>, $($name: WasmTy),*>(
                    ctx: *mut HostFuncContext<Data>,
                    caller_vmctx: *mut u8,
                    $($name: $name),*
                ) -> NativeReturn {
                    // One slot more than the parameters, so a function without any has one
                    // for its result.
                    let mut slots = [$($name.to_raw(),)* ValRaw::default()];
                    // SAFETY: the caller's contract, as `array_call`'s; the slots are ours.
                    let status = unsafe { run::<Data, Closure>(ctx, caller_vmctx, &mut slots) };
                    if status == 1 {
                        NativeReturn { value: slots[0].get_u64(), status: 1 }
                    } else {
                        // What a throw needs after the call, so that the trampoline keeps
                        // nothing across it.
                        NativeReturn { value: caller_vmctx as u64, status: u64::from(status) }
                    }
                }
                shim::<Data, Closure, $($name),*> as *const () as NativeCall
            }
        }
    };
}

for_each_arity!(native_params);

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
