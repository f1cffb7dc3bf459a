//! Static typing: the traits that map Rust types to Wasm's (`WasmTy`, `WasmParams`,
//! `WasmResults`, `WasmRet`), host closures as functions (`IntoFunc`), and `TypedFunc`.

use std::marker::PhantomData;

use crate::call::call_raw;
use crate::caller::Caller;
use crate::error::Result;
use crate::func::{Func, HostCallback};
use crate::promising_values::TypedValues;
use crate::store::AsContextMut;
use crate::types::{FuncType, ValType};
use crate::vm::ValRaw;

/// Invokes `$mac` once per arity the typed API supports, 0 to 16 (as wasmtime), with each type
/// parameter's name and tuple index: `$mac!()`, `$mac!(A 0)`, `$mac!(A 0, B 1)`, ...
macro_rules! for_each_arity {
    ($mac:ident) => {
        $mac!();
        $mac!(A 0);
        $mac!(A 0, B 1);
        $mac!(A 0, B 1, C 2);
        $mac!(A 0, B 1, C 2, D 3);
        $mac!(A 0, B 1, C 2, D 3, E 4);
        $mac!(A 0, B 1, C 2, D 3, E 4, F 5);
        $mac!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
        $mac!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
        $mac!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
        $mac!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);
        $mac!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10);
        $mac!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11);
        $mac!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12);
        $mac!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13);
        $mac!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13, O 14);
        $mac!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13, O 14, P 15);
    };
}
pub(crate) use for_each_arity;

/// A Rust type that is one Wasm value.
pub trait WasmTy: Copy + Send + Sync + Unpin + 'static {
    /// The Wasm type of this Rust type.
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
    /// The Wasm types, in order.
    fn valtypes() -> Vec<ValType>;
    /// Whether `types` are exactly [`Self::valtypes`], without allocating them.
    #[doc(hidden)]
    fn valtypes_are(types: &[ValType]) -> bool;
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
    fn valtypes_are(types: &[ValType]) -> bool {
        *types == [A::valtype()]
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
            fn valtypes_are(types: &[ValType]) -> bool {
                *types == [$($name::valtype()),*]
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

for_each_arity!(wasm_params_tuple);

/// What a host closure may return: results, or results in a `Result`.
pub trait WasmRet: Send + 'static {
    /// The results the closure produces.
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
                let callback = HostCallback::new_typed::<($($arg,)*), _>(move |caller: Caller<'_, T>, slots: &mut [ValRaw]| {
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
                let callback = HostCallback::new_typed::<($($arg,)*), _>(move |_: Caller<'_, T>, slots: &mut [ValRaw]| {
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

for_each_arity!(into_func);

/// A function with a statically known type; calls skip dynamic type checks.
pub struct TypedFunc<Params, Results> {
    pub(crate) func: Func,
    pub(crate) _marker: PhantomData<fn(Params) -> Results>,
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
    /// The untyped function this is a view of.
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
