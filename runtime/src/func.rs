//! `Func`: any function of a store, Wasm or host. How host functions are made (`Func::new`,
//! `Func::wrap`), and the dynamically typed call.

use std::future::Future;
use std::marker::PhantomData;

use crate::call::{call_raw, check_values};
// The VM layer names the `Caller` by this path.
pub(crate) use crate::caller::Caller;
use crate::error::{Error, Result};
use crate::promising_values::DynamicValues;
use crate::store::{AsContext, AsContextMut, FuncData, StoreContext, StoreId};
use crate::typed::{IntoFunc, TypedFunc, WasmParams, WasmResults};
use crate::types::FuncType;
use crate::values::Val;
use crate::vm::ValRaw;
use crate::vm::host::HostFuncContext;

pub(crate) use crate::vm::host::HostCallback;

/// A function of a store: exported by an instance or defined by the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Func {
    pub(crate) store: StoreId,
    pub(crate) index: usize,
}

impl Func {
    pub(crate) fn from_index(store: StoreId, index: usize) -> Func {
        Func { store, index }
    }

    /// A host function of type `ty` that works on dynamically typed values.
    ///
    /// If no code memory is left for the type's trampoline (the process's mapping limit), the
    /// function is still made, and whatever first hands it to Wasm (instantiation, a table or
    /// global, a call's arguments) retries and reports the error.
    pub fn new<T: 'static>(
        mut store: impl AsContextMut<Data = T>,
        ty: FuncType,
        f: impl Fn(Caller<'_, T>, &[Val], &mut [Val]) -> Result<()> + Send + Sync + 'static,
    ) -> Func {
        let callback = dynamic_callback(ty.clone(), f);
        Func::from_callback(store.as_context_mut(), &ty, callback)
    }

    /// A suspending import of type `ty` on dynamically typed values (see
    /// [`crate::Linker::func_new_async`]): `f` gets the [`Caller`] and the arguments and
    /// returns a `'static` future of the results.
    ///
    /// If no code memory is left for the type's trampoline (the process's mapping limit), the
    /// function is still made, and whatever first hands it to Wasm (instantiation, a table or
    /// global, a call's arguments) retries and reports the error.
    pub fn new_async<T, F, Fut>(mut store: impl AsContextMut<Data = T>, ty: FuncType, f: F) -> Func
    where
        T: 'static,
        F: Fn(Caller<'_, T>, &[Val]) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Val>>> + Send + 'static,
    {
        let callback = crate::promising::dynamic_async_callback(ty.clone(), f);
        Func::from_callback(store.as_context_mut(), &ty, callback)
    }

    /// A host function from a Rust closure whose parameter and result types give the Wasm
    /// type, e.g. `|caller: Caller<'_, T>, x: i32| -> i32` or `|a: f64, b: f64| a + b`.
    ///
    /// If no code memory is left for the type's trampoline (the process's mapping limit), the
    /// function is still made, and whatever first hands it to Wasm (instantiation, a table or
    /// global, a call's arguments) retries and reports the error.
    pub fn wrap<T: 'static, Params, Results>(
        mut store: impl AsContextMut<Data = T>,
        f: impl IntoFunc<T, Params, Results>,
    ) -> Func {
        let (ty, callback) = f.into_func();
        Func::from_callback(store.as_context_mut(), &ty, callback)
    }

    /// A host function of type `ty` calling `callback`, for the constructors whose signature
    /// (wasmtime's) has no error to return: if the type's trampoline cannot be compiled or
    /// mapped now (no code memory left), the function is made without it, and handing it to
    /// Wasm later (an import, a table or global, an argument or result) compiles it then or
    /// reports that error.
    pub(crate) fn from_callback<T: 'static>(
        store: &mut StoreContext<T>,
        ty: &FuncType,
        callback: HostCallback<T>,
    ) -> Func {
        let type_id = store.opaque.engine.type_id(ty);
        let trampolines = store.opaque.engine.trampolines(type_id).ok();
        Func::register_host(store, type_id, callback, trampolines.as_ref())
    }

    /// A host function of the engine's function type `type_id` calling `callback`.
    ///
    /// # Errors
    /// If the type's trampoline cannot be compiled or its code memory mapped (say, at the
    /// process's mapping limit): what the linker reports from `instantiate`.
    pub(crate) fn try_from_type_id<T: 'static>(
        store: &mut StoreContext<T>,
        type_id: u32,
        callback: HostCallback<T>,
    ) -> Result<Func> {
        let trampolines = store.opaque.engine.trampolines(type_id)?;
        Ok(Func::register_host(
            store,
            type_id,
            callback,
            Some(&trampolines),
        ))
    }

    fn register_host<T: 'static>(
        store: &mut StoreContext<T>,
        type_id: u32,
        callback: HostCallback<T>,
        trampolines: Option<&crate::engine::Trampolines>,
    ) -> Func {
        let ctx = HostFuncContext::new(store, type_id, callback, trampolines);
        let opaque = &mut store.opaque;
        let func_ref = ctx.func_ref();
        opaque.funcs.push(FuncData {
            func_ref,
            type_id,
            host: Some(ctx),
            array_to_wasm: 0,
            slots: 0,
            needs_trampoline: trampolines.is_none(),
        });
        let index = opaque.funcs.len() - 1;
        opaque.func_by_ref.insert(func_ref.to_raw(), index);
        Func::from_index(opaque.id, index)
    }

    /// The function's type.
    pub fn ty(&self, store: impl AsContext) -> FuncType {
        let store = &store.as_context().opaque;
        store.check(self.store);
        store.func_type(self.index)
    }

    /// Calls the function with `params`, writing its results into `results`.
    ///
    /// # Errors
    /// [`Error::TypeMismatch`] if the values do not match the function's type; the trap (with
    /// its Wasm backtrace) if Wasm traps; a host function's error as it returned it.
    ///
    /// # Panics
    /// If a host function called along the way panics, the panic resumes here.
    pub fn call(
        &self,
        mut store: impl AsContextMut,
        params: &[Val],
        results: &mut [Val],
    ) -> Result<()> {
        let store = store.as_context_mut();
        store.opaque.check(self.store);
        let ty = store.opaque.func_type(self.index);
        check_values("parameters", params, ty.params(), &store.opaque)?;
        if results.len() != ty.results().len() {
            return Err(Error::TypeMismatch(format!(
                "expected {} results, got a buffer for {}",
                ty.results().len(),
                results.len()
            )));
        }
        let mut slots = vec![ValRaw::default(); ty.params().len().max(ty.results().len())];
        for (slot, param) in slots.iter_mut().zip(params) {
            *slot = param.to_raw(&mut store.opaque)?;
        }
        call_raw(store, self.index, &mut slots)?;
        for ((result, slot), &ty) in results.iter_mut().zip(&slots).zip(ty.results()) {
            *result = Val::from_raw(*slot, ty, &mut store.opaque);
        }
        Ok(())
    }

    /// Calls the function as a *promising* call: on a stack of its own, so that suspending
    /// imports (see [`crate::Linker::func_wrap_async`]) reached from it can suspend it. The
    /// future finishes when the call returns.
    ///
    /// `store` is `&mut Store<T>` or a [`crate::SharedStore<T>`] (see the crate docs).
    ///
    /// # Errors
    /// As [`Func::call`].
    ///
    /// # Panics
    /// If a host function (synchronous or async) panics, the panic resumes in the poller.
    pub async fn call_async<S: crate::AsyncStore>(
        &self,
        store: S,
        params: &[Val],
        results: &mut [Val],
    ) -> Result<()> {
        let values = DynamicValues {
            func: *self,
            params,
            results,
        };
        crate::promising::PromisingCall::new(store, *self, values).await
    }

    /// A statically typed view of this function.
    ///
    /// # Errors
    /// [`Error::TypeMismatch`] if `Params`/`Results` do not match the function's type.
    pub fn typed<Params: WasmParams, Results: WasmResults>(
        &self,
        store: impl AsContext,
    ) -> Result<TypedFunc<Params, Results>> {
        let opaque = &store.as_context().opaque;
        opaque.check(self.store);
        let matches = opaque
            .engine
            .with_func_type(opaque.funcs[self.index].type_id, |ty| {
                Params::valtypes_are(ty.params()) && Results::valtypes_are(ty.results())
            });
        if !matches {
            let ty = opaque.func_type(self.index);
            return Err(Error::TypeMismatch(format!(
                "function is {ty}, not {}",
                FuncType::new(Params::valtypes(), Results::valtypes())
            )));
        }
        Ok(TypedFunc {
            func: *self,
            _marker: PhantomData,
        })
    }
}

/// Wraps a `Val`-based closure as a [`HostCallback`].
pub(crate) fn dynamic_callback<T: 'static>(
    ty: FuncType,
    f: impl Fn(Caller<'_, T>, &[Val], &mut [Val]) -> Result<()> + Send + Sync + 'static,
) -> HostCallback<T> {
    HostCallback::new(move |caller: Caller<'_, T>, slots: &mut [ValRaw]| {
        let params: Vec<Val> = ty
            .params()
            .iter()
            .zip(slots.iter())
            .map(|(&t, &raw)| Val::from_raw(raw, t, &mut caller.store.opaque))
            .collect();
        let mut results: Vec<Val> = ty.results().iter().map(|&t| Val::default_for(t)).collect();
        f(
            Caller::new(&mut *caller.store, caller.instance),
            &params,
            &mut results,
        )?;
        check_values("results", &results, ty.results(), &caller.store.opaque)?;
        for (slot, result) in slots.iter_mut().zip(results) {
            *slot = result.to_raw(&mut caller.store.opaque)?;
        }
        Ok(())
    })
}
