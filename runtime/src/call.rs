//! The synchronous call path: checking dynamically typed values, and calling a function of a
//! store with its arguments in value slots.

use crate::caller::Caller;
use crate::error::{Error, Result};
use crate::store::{StoreContext, StoreOpaque};
use crate::trap::trap_to_error;
use crate::types::ValType;
use crate::values::Val;
use crate::vm::ValRaw;
use crate::vm::host::HostFuncContext;

pub(crate) fn check_values(
    what: &str,
    values: &[Val],
    types: &[ValType],
    store: &StoreOpaque,
) -> Result<()> {
    if values.len() != types.len() {
        return Err(Error::TypeMismatch(format!(
            "expected {} {what}, got {}",
            types.len(),
            values.len()
        )));
    }
    for (i, (value, &ty)) in values.iter().zip(types).enumerate() {
        if !value.matches_ty_in(store, &ty) {
            return Err(Error::TypeMismatch(format!(
                "{what} {i}: expected {ty}, got {}",
                value.ty()
            )));
        }
        match value {
            Val::FuncRef(Some(f)) => store.check(f.store),
            Val::ExternRef(Some(_)) => {}
            _ => {}
        }
    }
    Ok(())
}

/// Calls function `index` of `store` with the values in `slots`.
#[inline]
pub(crate) fn call_raw<T: 'static>(
    store: &mut StoreContext<T>,
    index: usize,
    slots: &mut [ValRaw],
) -> Result<()> {
    if store.opaque.funcs[index].host.is_some() {
        return call_host(store, index, slots);
    }
    let callee = crate::vm::call::callee(store, index, slots.len())?;
    crate::vm::call::call(store, callee, slots)
        .map_err(|info| trap_to_error(info, &mut store.opaque))
}

/// [`call_raw`] of a host function: out of line, so that a call of Wasm carries none of it.
#[inline(never)]
fn call_host<T: 'static>(
    store: &mut StoreContext<T>,
    index: usize,
    slots: &mut [ValRaw],
) -> Result<()> {
    let host: &dyn std::any::Any = &**store.opaque.funcs[index]
        .host
        .as_ref()
        .expect("call_host is called for host functions");
    let callback = host
        .downcast_ref::<HostFuncContext<T>>()
        .expect("host functions of a Store<T> take a Caller<T>")
        .callback()
        .clone();
    callback.call(Caller::new(store, None), slots)
}
