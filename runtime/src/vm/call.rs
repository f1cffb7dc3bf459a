//! The synchronous call path, host to Wasm: a call of a store's Wasm function on the caller's
//! own stack. (Promising calls run on a fiber instead: see `async_call`.)

use super::entry::{TrapInfo, enter_wasm};
use super::vmstructs::{FuncRefPtr, ValRaw, lend_store};
use crate::store::StoreContext;

/// The funcref of function `index` of `store`, checked to be callable by the VM layer with
/// `slots` value slots: a Wasm function (host functions are called directly, not through a
/// trampoline) whose parameters and results fit. Compiles its type's array-to-Wasm trampoline
/// if no call needed it yet.
///
/// # Errors
/// If the trampoline cannot be compiled.
///
/// # Panics
/// If `index` is a host function or `slots` is too few: the API never asks for either.
pub(super) fn wasm_callee<T: 'static>(
    store: &mut StoreContext<T>,
    index: usize,
    slots: usize,
) -> crate::Result<(FuncRefPtr, usize)> {
    let trampoline = store.opaque.array_to_wasm(index)?;
    let data = &store.opaque.funcs[index];
    assert!(data.host.is_none(), "host functions are not entered as Wasm");
    assert!(
        slots >= data.slots,
        "{slots} value slots for a function that needs {}",
        data.slots
    );
    Ok((data.func_ref, trampoline))
}

/// Calls Wasm function `index` of `store` with `values` holding the arguments and receiving the
/// results, on this thread's stack. `Ok(Err(trap))` if Wasm trapped.
///
/// # Errors
/// If the function's trampoline cannot be compiled.
///
/// # Panics
/// As [`wasm_callee`].
#[inline]
pub fn call<T: 'static>(
    store: &mut StoreContext<T>,
    index: usize,
    values: &mut [ValRaw],
) -> crate::Result<Result<(), TrapInfo>> {
    let (func_ref, trampoline) = wasm_callee(store, index, values.len())?;
    let max_wasm_stack = store.opaque.engine.config().max_wasm_stack;
    let func_ref = func_ref.read();
    let context = lend_store(store);
    // SAFETY: `lend_store` lent the store we borrow exclusively (we do not use the borrow
    // until this returns); `wasm_callee` checked that the funcref is a Wasm function of this
    // store, the trampoline its type's, and the buffer large enough.
    Ok(unsafe {
        enter_wasm(
            context.as_ptr(),
            max_wasm_stack,
            trampoline as *const u8,
            func_ref.vmctx as usize,
            func_ref.wasm_call as usize,
            values.as_mut_ptr() as usize,
        )
    })
}
