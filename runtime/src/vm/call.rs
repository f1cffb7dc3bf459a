//! The one way the API calls Wasm.

use super::traphandlers::{TrapInfo, enter_wasm};
use super::vmstructs::{VMFuncRef, VMStoreContext, ValRaw};

/// Calls the function behind `func_ref` through `trampoline`, its type's array-to-Wasm
/// trampoline, with `values` holding the arguments and receiving the results.
///
/// The API upholds what this relies on: `func_ref` is a funcref of the store whose context is
/// `store_context` (checked through the handle's store id), `trampoline` was compiled for that
/// funcref's type, `values` has a slot for every parameter and result, and `store` is the
/// exclusively borrowed store, not used by the caller until this returns.
pub fn call_func_ref(
    store_context: *const VMStoreContext,
    store: *mut u8,
    max_wasm_stack: usize,
    trampoline: *const u8,
    func_ref: usize,
    values: &mut [ValRaw],
) -> Result<(), TrapInfo> {
    // SAFETY: the store context is boxed in the store the caller borrows exclusively.
    unsafe { (*store_context).set_store(store) };
    // SAFETY: see the function's contract; the funcref lives as long as the store.
    let func_ref = unsafe { *(func_ref as *const VMFuncRef) };
    // SAFETY: as above: the trampoline matches the function's type and the buffer is large
    // enough; the store context and store are live and exclusively ours.
    unsafe {
        enter_wasm(
            store_context,
            max_wasm_stack,
            trampoline,
            func_ref.vmctx as usize,
            func_ref.wasm_call as usize,
            values.as_mut_ptr() as usize,
        )
    }
}
