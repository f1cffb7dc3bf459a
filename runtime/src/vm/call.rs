//! The synchronous call path, host to Wasm: a call of a store's Wasm function on the caller's
//! own stack. (Promising calls run on a fiber instead: see `async_call`.)

use std::ptr::NonNull;

use super::entry::{TrapInfo, enter_wasm};
use super::vmstructs::{VMFuncRef, VMStoreContext, ValRaw, lend_store};
use crate::store::StoreContext;

/// A Wasm function of a store, checked to be callable by the VM layer with a number of value
/// slots: made only by [`callee`], used only with the store it names (checked).
pub struct Callee {
    pub(super) func_ref: VMFuncRef,
    pub(super) trampoline: usize,
    pub(super) slots: usize,
    pub(super) store: NonNull<VMStoreContext>,
}

/// Function `index` of `store` as the VM layer calls it with `slots` value slots: a Wasm
/// function (host functions are called directly, not through a trampoline) whose parameters
/// and results fit. Compiles its type's array-to-Wasm trampoline if no call needed it yet.
///
/// # Errors
/// If the trampoline cannot be compiled.
///
/// # Panics
/// If `index` is a host function or `slots` is too few: the API never asks for either.
#[inline(always)]
pub fn callee<T: 'static>(
    store: &mut StoreContext<T>,
    index: usize,
    slots: usize,
) -> crate::Result<Callee> {
    let trampoline = store.opaque.array_to_wasm(index)?;
    let data = &store.opaque.funcs[index];
    assert!(
        data.host.is_none(),
        "host functions are not entered as Wasm"
    );
    assert!(
        slots >= data.slots,
        "{slots} value slots for a function that needs {}",
        data.slots
    );
    Ok(Callee {
        func_ref: data.func_ref.read(),
        trampoline,
        slots,
        store: NonNull::from(&*store.opaque.vm),
    })
}

/// Calls `callee` with `values` holding the arguments and receiving the results, on this
/// thread's stack; its trap if Wasm trapped.
///
/// # Panics
/// If `callee` is another store's, or `values` has fewer slots than it was checked for.
#[inline]
pub fn call<T: 'static>(
    store: &mut StoreContext<T>,
    callee: Callee,
    values: &mut [ValRaw],
) -> Result<(), TrapInfo> {
    let max_wasm_stack = store.opaque.engine.config().max_wasm_stack;
    let context = lend_store(store);
    assert!(
        context == callee.store,
        "a callee called with another store"
    );
    assert!(values.len() >= callee.slots, "too few value slots");
    // SAFETY: `lend_store` lent the store we borrow exclusively (we do not use the borrow
    // until this returns); `callee` checked that the funcref is a Wasm function of this store
    // (checked above), the trampoline its type's, and the buffer large enough.
    unsafe {
        enter_wasm(
            context.as_ptr(),
            max_wasm_stack,
            callee.trampoline as *const u8,
            callee.func_ref.vmctx as usize,
            callee.func_ref.wasm_call as usize,
            values.as_mut_ptr() as usize,
        )
    }
}
