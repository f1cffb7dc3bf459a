//! Functions: `Func` (any function, Wasm or host), `Caller` (what a host function sees of the
//! store), `TypedFunc` (a statically typed view), and the traits that map Rust types to Wasm's.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::error::{Error, Result, Trap, WasmBacktrace};
use crate::externals::Extern;
use crate::store::{AsContext, AsContextMut, FuncData, StoreContext, StoreId, StoreOpaque};
use crate::types::{FuncType, ValType};
use crate::values::Val;
use crate::vm::ValRaw;
use crate::vm::host::HostFuncContext;
use crate::vm::traphandlers::{Recorded, TrapInfo, TrapReason};

/// A host function in its uniform shape: it reads its parameters from the slots and writes its
/// results back into them.
pub type HostCallback<T> =
    Arc<dyn Fn(Caller<'_, T>, &mut [ValRaw]) -> Result<()> + Send + Sync + 'static>;

/// A function of a store: exported by an instance or defined by the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Func {
    pub(crate) store: StoreId,
    pub(crate) index: usize,
}

/// What a host function gets when Wasm calls it: the store, and the calling instance.
pub struct Caller<'a, T: 'static> {
    store: &'a mut StoreContext<T>,
    instance: Option<usize>,
}

impl<'a, T: 'static> Caller<'a, T> {
    pub(crate) fn new(store: &'a mut StoreContext<T>, instance: Option<usize>) -> Self {
        Caller { store, instance }
    }

    pub fn data(&self) -> &T {
        self.store.data()
    }

    pub fn data_mut(&mut self) -> &mut T {
        self.store.data_mut()
    }

    pub fn engine(&self) -> &crate::Engine {
        self.store.engine()
    }

    pub(crate) fn store_id(&self) -> u64 {
        self.store.opaque.id.as_u64()
    }

    pub(crate) fn instance_index(&self) -> Option<usize> {
        self.instance
    }

    pub(crate) fn as_store_context(&self) -> &StoreContext<T> {
        self.store
    }

    /// An export of the calling instance (typically its memory), or `None` if there is no
    /// such export or the caller is the host.
    pub fn get_export(&mut self, name: &str) -> Option<Extern> {
        let instance = self.instance?;
        crate::instance::Instance::from_index(self.store.opaque.id, instance)
            .get_export(&mut *self.store, name)
    }
}

impl<T: 'static> AsContext for Caller<'_, T> {
    type Data = T;
    fn as_context(&self) -> &StoreContext<T> {
        self.store
    }
}

impl<T: 'static> AsContextMut for Caller<'_, T> {
    fn as_context_mut(&mut self) -> &mut StoreContext<T> {
        self.store
    }
}

impl Func {
    pub(crate) fn from_index(store: StoreId, index: usize) -> Func {
        Func { store, index }
    }

    /// A host function of type `ty` that works on dynamically typed values.
    pub fn new<T: 'static>(
        mut store: impl AsContextMut<Data = T>,
        ty: FuncType,
        f: impl Fn(Caller<'_, T>, &[Val], &mut [Val]) -> Result<()> + Send + Sync + 'static,
    ) -> Func {
        let callback = dynamic_callback(ty.clone(), f);
        Func::from_callback(store.as_context_mut(), &ty, callback)
    }

    /// A host function from a Rust closure whose parameter and result types give the Wasm
    /// type, e.g. `|caller: Caller<'_, T>, x: i32| -> i32` or `|a: f64, b: f64| a + b`.
    pub fn wrap<T: 'static, Params, Results>(
        mut store: impl AsContextMut<Data = T>,
        f: impl IntoFunc<T, Params, Results>,
    ) -> Func {
        let (ty, callback) = f.into_func();
        Func::from_callback(store.as_context_mut(), &ty, callback)
    }

    pub(crate) fn from_callback<T: 'static>(
        store: &mut StoreContext<T>,
        ty: &FuncType,
        callback: HostCallback<T>,
    ) -> Func {
        let opaque = &mut store.opaque;
        let type_id = opaque.engine.type_id(ty);
        let trampoline = opaque
            .engine
            .trampolines(type_id)
            .expect("compiling a host function trampoline")
            .wasm_to_array as *const u8;
        let ctx = HostFuncContext::new(&*opaque.vm, trampoline, type_id, callback);
        let func_ref = ctx.func_ref() as usize;
        opaque.host_funcs.push(ctx);
        opaque.funcs.push(FuncData {
            func_ref,
            type_id,
            host: Some(opaque.host_funcs.len() - 1),
            array_to_wasm: 0,
        });
        let index = opaque.funcs.len() - 1;
        opaque.func_by_ref.insert(func_ref, index);
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
            *slot = param.to_raw(&store.opaque);
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
        let ty = self.ty(store);
        if ty.params() != Params::valtypes().as_slice()
            || ty.results() != Results::valtypes().as_slice()
        {
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

fn check_values(what: &str, values: &[Val], types: &[ValType], store: &StoreOpaque) -> Result<()> {
    if values.len() != types.len() {
        return Err(Error::TypeMismatch(format!(
            "expected {} {what}, got {}",
            types.len(),
            values.len()
        )));
    }
    for (i, (value, &ty)) in values.iter().zip(types).enumerate() {
        if value.ty() != ty {
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
pub(crate) fn call_raw<T: 'static>(
    store: &mut StoreContext<T>,
    index: usize,
    slots: &mut [ValRaw],
) -> Result<()> {
    let data = &store.opaque.funcs[index];
    if let Some(host) = data.host {
        let callback = store.opaque.host_funcs[host]
            .downcast_ref::<HostFuncContext<T>>()
            .expect("host functions of a Store<T> take a Caller<T>")
            .callback()
            .clone();
        return callback(Caller::new(store, None), slots);
    }
    let func_ref = data.func_ref;
    let trampoline = store.opaque.array_to_wasm(index)? as *const u8;
    let max_wasm_stack = store.opaque.engine.config().max_wasm_stack;
    let store_ptr = (store as *mut StoreContext<T>).cast::<u8>();
    let context: *const crate::vm::VMStoreContext = &*store.opaque.vm;
    crate::vm::call::call_func_ref(
        context,
        store_ptr,
        max_wasm_stack,
        trampoline,
        func_ref,
        slots,
    )
    .map_err(trap_to_error)
}

/// Turns what the VM layer reports into an [`Error`], resuming a host panic.
pub(crate) fn trap_to_error(info: TrapInfo) -> Error {
    let backtrace = symbolize(&info.pcs);
    let code = match info.reason {
        TrapReason::Code(code) | TrapReason::Recorded(Recorded::Trap(code)) => code,
        TrapReason::Recorded(Recorded::Error(error)) => return error,
        TrapReason::Recorded(Recorded::Panic(panic)) => std::panic::resume_unwind(panic),
        TrapReason::Recorded(Recorded::Api(trap)) => return Error::Trap { trap, backtrace },
    };
    Error::Trap {
        trap: trap_from_code(code),
        backtrace,
    }
}

pub(crate) fn trap_from_code(code: weft_compiler::TrapCode) -> Trap {
    use weft_compiler::TrapCode as C;
    use weft_compiler::vmoffsets::trap_codes as W;
    match code {
        C::STACK_OVERFLOW => Trap::StackOverflow,
        C::INTEGER_OVERFLOW => Trap::IntegerOverflow,
        C::HEAP_OUT_OF_BOUNDS => Trap::MemoryOutOfBounds,
        C::INTEGER_DIVISION_BY_ZERO => Trap::IntegerDivisionByZero,
        C::BAD_CONVERSION_TO_INTEGER => Trap::BadConversionToInteger,
        W::UNREACHABLE => Trap::Unreachable,
        W::TABLE_OUT_OF_BOUNDS => Trap::TableOutOfBounds,
        W::UNDEFINED_ELEMENT => Trap::UndefinedElement,
        W::UNINITIALIZED_ELEMENT => Trap::UninitializedElement,
        W::INDIRECT_CALL_TYPE_MISMATCH => Trap::IndirectCallTypeMismatch,
        other => unreachable!("compiled code never traps with {other:?}"),
    }
}

fn symbolize(pcs: &[usize]) -> WasmBacktrace {
    let frames = pcs
        .iter()
        .enumerate()
        .filter_map(|(i, &pc)| {
            // Return addresses point after the call; look up the call itself.
            let pc = if i == 0 { pc } else { pc - 1 };
            crate::vm::code_memory::lookup_frame(pc)
        })
        .map(|f| crate::error::FrameInfo {
            func_index: f.func_index,
            func_name: f.func_name,
            module_name: f.module_name,
            module_offset: f.wasm_offset,
        })
        .collect();
    WasmBacktrace { frames }
}

/// Wraps a `Val`-based closure as a [`HostCallback`].
pub(crate) fn dynamic_callback<T: 'static>(
    ty: FuncType,
    f: impl Fn(Caller<'_, T>, &[Val], &mut [Val]) -> Result<()> + Send + Sync + 'static,
) -> HostCallback<T> {
    Arc::new(move |caller: Caller<'_, T>, slots: &mut [ValRaw]| {
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
            *slot = result.to_raw(&caller.store.opaque);
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Static typing

/// A Rust type that is one Wasm value.
pub trait WasmTy: Copy + Send + Sync + Unpin + 'static {
    fn valtype() -> ValType;
    #[doc(hidden)]
    fn to_raw(self) -> ValRaw;
    #[doc(hidden)]
    fn from_raw(raw: ValRaw) -> Self;
}

macro_rules! wasm_ty {
    ($($ty:ty => $valtype:ident, |$v:ident| $to:expr, |$r:ident| $from:expr;)*) => {$(
        impl WasmTy for $ty {
            fn valtype() -> ValType { ValType::$valtype }
            fn to_raw(self) -> ValRaw { let $v = self; $to }
            fn from_raw($r: ValRaw) -> Self { $from }
        }
    )*};
}

wasm_ty! {
    i32 => I32, |v| ValRaw::from_u32(v as u32), |r| r.get_u32() as i32;
    u32 => I32, |v| ValRaw::from_u32(v), |r| r.get_u32();
    i64 => I64, |v| ValRaw::from_u64(v as u64), |r| r.get_u64() as i64;
    u64 => I64, |v| ValRaw::from_u64(v), |r| r.get_u64();
    f32 => F32, |v| ValRaw::from_u32(v.to_bits()), |r| f32::from_bits(r.get_u32());
    f64 => F64, |v| ValRaw::from_u64(v.to_bits()), |r| f64::from_bits(r.get_u64());
    // A `v128`: lane 0 is the least significant end (Wasm's little-endian lane order).
    u128 => V128, |v| ValRaw::from_u128(v), |r| r.get_u128();
}

/// Parameters of a typed call: `()`, one [`WasmTy`], or a tuple of them.
pub trait WasmParams: Send + Unpin + 'static {
    /// How many values: what a call needs in value slots, known without allocating.
    const COUNT: usize;
    fn valtypes() -> Vec<ValType>;
    #[doc(hidden)]
    fn store(self, slots: &mut [ValRaw]);
    #[doc(hidden)]
    fn load(slots: &[ValRaw]) -> Self;
}

/// Results of a typed call: `()`, one [`WasmTy`], or a tuple of them.
pub trait WasmResults: WasmParams {}
impl<P: WasmParams> WasmResults for P {}

impl<A: WasmTy> WasmParams for A {
    const COUNT: usize = 1;
    fn valtypes() -> Vec<ValType> {
        vec![A::valtype()]
    }
    fn store(self, slots: &mut [ValRaw]) {
        slots[0] = self.to_raw();
    }
    fn load(slots: &[ValRaw]) -> Self {
        A::from_raw(slots[0])
    }
}

macro_rules! wasm_params_tuple {
    ($($name:ident $i:tt),*) => {
        impl<$($name: WasmTy),*> WasmParams for ($($name,)*) {
            const COUNT: usize = <[&str]>::len(&[$(stringify!($name)),*]);
            fn valtypes() -> Vec<ValType> {
                vec![$($name::valtype()),*]
            }
            #[allow(unused_variables)]
            fn store(self, slots: &mut [ValRaw]) {
                $(slots[$i] = self.$i.to_raw();)*
            }
            #[allow(unused_variables, clippy::unused_unit)]
            fn load(slots: &[ValRaw]) -> Self {
                ($($name::from_raw(slots[$i]),)*)
            }
        }
    };
}

wasm_params_tuple!();
wasm_params_tuple!(A 0);
wasm_params_tuple!(A 0, B 1);
wasm_params_tuple!(A 0, B 1, C 2);
wasm_params_tuple!(A 0, B 1, C 2, D 3);
wasm_params_tuple!(A 0, B 1, C 2, D 3, E 4);
wasm_params_tuple!(A 0, B 1, C 2, D 3, E 4, F 5);
wasm_params_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
wasm_params_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

/// What a host closure may return: results, or results in a `Result`.
pub trait WasmRet: Send + 'static {
    type Results: WasmResults;
    #[doc(hidden)]
    fn into_result(self) -> Result<Self::Results>;
}

impl<R: WasmResults> WasmRet for R {
    type Results = R;
    fn into_result(self) -> Result<R> {
        Ok(self)
    }
}

impl<R: WasmResults> WasmRet for Result<R> {
    type Results = R;
    fn into_result(self) -> Result<R> {
        self
    }
}

/// A Rust closure that can become a host function. `Params` is a marker: the argument list,
/// with or without a leading `Caller`.
pub trait IntoFunc<T, Params, Results>: Send + Sync + 'static {
    #[doc(hidden)]
    fn into_func(self) -> (FuncType, HostCallback<T>);
}

macro_rules! into_func {
    ($($arg:ident $i:tt),*) => {
        impl<T: 'static, Func, $($arg: WasmTy,)* R: WasmRet> IntoFunc<T, (Caller<'static, T>, $($arg,)*), R> for Func
        where
            Func: Fn(Caller<'_, T>, $($arg),*) -> R + Send + Sync + 'static,
        {
            fn into_func(self) -> (FuncType, HostCallback<T>) {
                let ty = FuncType::new(<($($arg,)*) as WasmParams>::valtypes(), R::Results::valtypes());
                let callback: HostCallback<T> = Arc::new(move |caller: Caller<'_, T>, slots: &mut [ValRaw]| {
                    #[allow(unused_variables)]
                    let args = <($($arg,)*) as WasmParams>::load(slots);
                    let results = self(caller, $(args.$i),*).into_result()?;
                    results.store(slots);
                    Ok(())
                });
                (ty, callback)
            }
        }

        impl<T: 'static, Func, $($arg: WasmTy,)* R: WasmRet> IntoFunc<T, ($($arg,)*), R> for Func
        where
            Func: Fn($($arg),*) -> R + Send + Sync + 'static,
        {
            fn into_func(self) -> (FuncType, HostCallback<T>) {
                let ty = FuncType::new(<($($arg,)*) as WasmParams>::valtypes(), R::Results::valtypes());
                let callback: HostCallback<T> = Arc::new(move |_: Caller<'_, T>, slots: &mut [ValRaw]| {
                    #[allow(unused_variables)]
                    let args = <($($arg,)*) as WasmParams>::load(slots);
                    let results = self($(args.$i),*).into_result()?;
                    results.store(slots);
                    Ok(())
                });
                (ty, callback)
            }
        }
    };
}

into_func!();
into_func!(A 0);
into_func!(A 0, B 1);
into_func!(A 0, B 1, C 2);
into_func!(A 0, B 1, C 2, D 3);
into_func!(A 0, B 1, C 2, D 3, E 4);
into_func!(A 0, B 1, C 2, D 3, E 4, F 5);
into_func!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);

/// A function with a statically known type; calls skip dynamic type checks.
pub struct TypedFunc<Params, Results> {
    func: Func,
    _marker: PhantomData<fn(Params) -> Results>,
}

impl<Params, Results> Clone for TypedFunc<Params, Results> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<Params, Results> Copy for TypedFunc<Params, Results> {}

/// Value slots kept on the stack for calls with up to this many parameters or results.
const INLINE_SLOTS: usize = 8;

impl<Params: WasmParams, Results: WasmResults> TypedFunc<Params, Results> {
    pub fn func(&self) -> Func {
        self.func
    }

    /// Calls the function.
    ///
    /// # Errors
    /// The trap (with its Wasm backtrace) if Wasm traps; a host function's error.
    pub fn call(&self, mut store: impl AsContextMut, params: Params) -> Result<Results> {
        let store = store.as_context_mut();
        store.opaque.check(self.func.store);
        let mut inline = [ValRaw::default(); INLINE_SLOTS];
        let mut heap;
        let len = Params::COUNT.max(Results::COUNT);
        let slots: &mut [ValRaw] = if len <= INLINE_SLOTS {
            &mut inline[..len.max(1)]
        } else {
            heap = vec![ValRaw::default(); len];
            &mut heap
        };
        params.store(slots);
        call_raw(store, self.func.index, slots)?;
        Ok(Results::load(slots))
    }

    /// Calls the function as a promising call (see [`Func::call_async`]).
    ///
    /// # Errors
    /// The trap (with its Wasm backtrace) if Wasm traps; a host function's error.
    ///
    /// # Panics
    /// If a host function panics, the panic resumes in the poller.
    pub fn call_async<S: crate::AsyncStore>(
        &self,
        store: S,
        params: Params,
    ) -> impl std::future::Future<Output = Result<Results>> + use<S, Params, Results> {
        let values = TypedValues {
            params: Some(params),
            _marker: PhantomData::<fn() -> Results>,
        };
        crate::promising::PromisingCall::new(store, self.func, values)
    }
}

/// A typed promising call's values: the arguments until the call starts.
struct TypedValues<Params, Results> {
    params: Option<Params>,
    _marker: PhantomData<fn() -> Results>,
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
struct DynamicValues<'a> {
    func: Func,
    params: &'a [Val],
    results: &'a mut [Val],
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
            *slot = param.to_raw(&store.opaque);
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
