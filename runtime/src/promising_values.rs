//! How a promising call's arguments get into its value slots and its results out of them,
//! for typed ([`crate::TypedFunc::call_async`]) and dynamically typed
//! ([`crate::Func::call_async`]) calls.

use std::marker::PhantomData;

use crate::call::check_values;
use crate::error::{Error, Result};
use crate::func::Func;
use crate::store::StoreContext;
use crate::typed::{WasmParams, WasmResults};
use crate::values::Val;
use crate::vm::ValRaw;

/// A typed promising call's values: the arguments until the call starts.
pub(crate) struct TypedValues<Params, Results> {
    pub(crate) params: Option<Params>,
    pub(crate) _marker: PhantomData<fn() -> Results>,
}

impl<T: 'static, Params: WasmParams, Results: WasmResults> crate::promising::CallValues<T>
    for TypedValues<Params, Results>
{
    type Output = Results;
    fn slots(&self) -> usize {
        Params::COUNT.max(Results::COUNT)
    }
    fn write_params(&mut self, _: &mut StoreContext<T>, slots: &mut [ValRaw]) -> Result<()> {
        self.params
            .take()
            .expect("a call's arguments are written once")
            .store(slots);
        Ok(())
    }
    fn read_results(&mut self, _: &mut StoreContext<T>, slots: &[ValRaw]) -> Results {
        Results::load(slots)
    }
}

/// A dynamically typed promising call's values: checked against the function's type before
/// it starts, results written straight into the caller's buffer.
pub(crate) struct DynamicValues<'a> {
    pub(crate) func: Func,
    pub(crate) params: &'a [Val],
    pub(crate) results: &'a mut [Val],
}

impl<T: 'static> crate::promising::CallValues<T> for DynamicValues<'_> {
    type Output = ();
    fn slots(&self) -> usize {
        self.params.len().max(self.results.len())
    }
    fn write_params(&mut self, store: &mut StoreContext<T>, slots: &mut [ValRaw]) -> Result<()> {
        let ty = store.opaque.func_type(self.func.index);
        check_values("parameters", self.params, ty.params(), &store.opaque)?;
        if self.results.len() != ty.results().len() {
            return Err(Error::TypeMismatch(format!(
                "expected {} results, got a buffer for {}",
                ty.results().len(),
                self.results.len()
            )));
        }
        for (slot, param) in slots.iter_mut().zip(self.params) {
            *slot = param.to_raw(&mut store.opaque)?;
        }
        Ok(())
    }
    fn read_results(&mut self, store: &mut StoreContext<T>, slots: &[ValRaw]) {
        let ty = store.opaque.func_type(self.func.index);
        for ((result, slot), &ty) in self.results.iter_mut().zip(slots).zip(ty.results()) {
            *result = Val::from_raw(*slot, ty, &mut store.opaque);
        }
    }
}
