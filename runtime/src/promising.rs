//! Promising calls (`call_async`) and suspending imports (`func_wrap_async`): the safe half of
//! weft's continuations. The machinery is in `vm::continuation`; the design is in the crate
//! docs.

use std::future::{Future, poll_fn};
use std::marker::PhantomData;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::error::{Error, Result, Trap};
use crate::func::{Caller, Func, HostCallback, WasmParams, WasmRet, call_raw, trap_to_error};
use crate::store::{AsContextMut, Store, StoreContext};
use crate::types::FuncType;
use crate::vm::ValRaw;
use crate::vm::continuation::{Continuation, Resumed, SuspendPoint, with_polling_store};
use crate::vm::shared_store::{SharedStore, SharedStoreGuard};

mod sealed {
    pub trait Sealed {}
}

/// What a promising call can run on: `&mut Store<T>` (the call has the store to itself while
/// it is in flight) or a [`SharedStore<T>`] (any number of calls in flight, interleaved at their
/// suspension points; the store is locked only while one of them runs).
pub trait AsyncStore: sealed::Sealed + Unpin {
    /// The store's data type.
    type Data: 'static;
    #[doc(hidden)]
    fn poll_store(&mut self, cx: &mut Context<'_>) -> Poll<StoreLock<'_, Self::Data>>;
    #[doc(hidden)]
    fn lock_store(&mut self) -> StoreLock<'_, Self::Data>;
}

/// The store, lent to one poll of a promising call.
#[doc(hidden)]
pub enum StoreLock<'a, T: 'static> {
    Exclusive(&'a mut StoreContext<T>),
    Shared(SharedStoreGuard<'a, T>),
}

impl<T: 'static> StoreLock<'_, T> {
    fn context(&mut self) -> &mut StoreContext<T> {
        match self {
            StoreLock::Exclusive(store) => store,
            StoreLock::Shared(guard) => guard.as_context_mut(),
        }
    }
}

impl<T: 'static> sealed::Sealed for &mut Store<T> {}
impl<T: 'static> AsyncStore for &mut Store<T> {
    type Data = T;
    fn poll_store(&mut self, _: &mut Context<'_>) -> Poll<StoreLock<'_, T>> {
        Poll::Ready(StoreLock::Exclusive(self.as_context_mut()))
    }
    fn lock_store(&mut self) -> StoreLock<'_, T> {
        StoreLock::Exclusive(self.as_context_mut())
    }
}

impl<T: 'static> sealed::Sealed for SharedStore<T> {}
impl<T: 'static> AsyncStore for SharedStore<T> {
    type Data = T;
    fn poll_store(&mut self, cx: &mut Context<'_>) -> Poll<StoreLock<'_, T>> {
        self.poll_lock(cx).map(StoreLock::Shared)
    }
    fn lock_store(&mut self) -> StoreLock<'_, T> {
        StoreLock::Shared(self.lock_blocking())
    }
}

impl<T: 'static> sealed::Sealed for &SharedStore<T> {}
impl<T: 'static> AsyncStore for &SharedStore<T> {
    type Data = T;
    fn poll_store(&mut self, cx: &mut Context<'_>) -> Poll<StoreLock<'_, T>> {
        self.poll_lock(cx).map(StoreLock::Shared)
    }
    fn lock_store(&mut self) -> StoreLock<'_, T> {
        StoreLock::Shared(self.lock_blocking())
    }
}

impl<T: 'static> crate::store::AsContext for SharedStoreGuard<'_, T> {
    type Data = T;
    fn as_context(&self) -> &StoreContext<T> {
        (**self).as_context()
    }
}

impl<T: 'static> AsContextMut for SharedStoreGuard<'_, T> {
    fn as_context_mut(&mut self) -> &mut StoreContext<T> {
        (**self).as_context_mut()
    }
}

/// Runs `f` with the store once it is available (immediately for `&mut Store<T>`).
pub(crate) async fn with_store<S: AsyncStore, R>(
    store: &mut S,
    f: impl FnOnce(&mut StoreContext<S::Data>) -> R,
) -> R {
    let mut f = Some(f);
    poll_fn(|cx| match store.poll_store(cx) {
        Poll::Ready(mut lock) => {
            Poll::Ready((f.take().expect("polled after completion"))(lock.context()))
        }
        Poll::Pending => Poll::Pending,
    })
    .await
}

/// One promising call: its store, and its continuation once started. Dropping it while the call
/// is suspended cancels the call (see `vm::continuation`), which needs the store: for a
/// `SharedStore` the drop waits until no other call runs on it.
pub(crate) struct PromisingCall<S: AsyncStore> {
    store: S,
    func: Func,
    continuation: Option<Continuation>,
}

impl<S: AsyncStore> PromisingCall<S> {
    pub(crate) fn new(store: S, func: Func) -> Self {
        PromisingCall {
            store,
            func,
            continuation: None,
        }
    }

    /// Polls the call. On the first poll, `params` writes the arguments into the value slots
    /// (`slots` of them: the larger of the parameter and result counts); when the call returns,
    /// `results` reads them.
    pub(crate) fn poll_call<R>(
        &mut self,
        cx: &mut Context<'_>,
        slots: usize,
        params: &mut Option<impl FnOnce(&mut StoreContext<S::Data>, &mut [ValRaw]) -> Result<()>>,
        results: impl FnOnce(&mut StoreContext<S::Data>, &[ValRaw]) -> R,
    ) -> Poll<Result<R>> {
        let Poll::Ready(mut lock) = self.store.poll_store(cx) else {
            return Poll::Pending;
        };
        let store = lock.context();
        let store_ptr = std::ptr::from_mut(store).cast::<u8>();
        store.opaque.vm.set_store(store_ptr);
        let continuation = match &mut self.continuation {
            Some(continuation) => continuation,
            None => {
                let params = params.take().expect("polled after completion");
                store.opaque.check(self.func.store);
                let data = &store.opaque.funcs[self.func.index];
                if data.host.is_some() {
                    // A host function called directly: nothing to run on a stack of its own.
                    let mut buffer = vec![ValRaw::default(); slots.max(1)];
                    params(store, &mut buffer)?;
                    call_raw(store, self.func.index, &mut buffer)?;
                    return Poll::Ready(Ok(results(store, &buffer)));
                }
                let (func_ref, type_id) = (data.func_ref, data.type_id);
                let engine = store.opaque.engine.clone();
                let trampoline = engine.trampolines(type_id)?.array_to_wasm as *const u8;
                let mut continuation = Continuation::new(
                    engine.stack_pool(),
                    &*store.opaque.vm,
                    trampoline,
                    func_ref,
                    slots,
                )
                .map_err(|e| Error::ResourceLimit(format!("no stack for a promising call: {e}")))?;
                params(store, continuation.slots())?;
                self.continuation.insert(continuation)
            }
        };
        match continuation.resume(cx, false) {
            Resumed::Suspended => Poll::Pending,
            Resumed::Finished(outcome) => {
                let mut continuation = self.continuation.take().expect("running");
                let output = outcome.map(|()| results(store, continuation.slots()));
                continuation.finish(store.opaque.engine.stack_pool());
                drop(lock);
                Poll::Ready(output.map_err(trap_to_error))
            }
        }
    }
}

impl<S: AsyncStore> Drop for PromisingCall<S> {
    fn drop(&mut self) {
        if let Some(continuation) = self.continuation.take() {
            let mut lock = self.store.lock_store();
            let store = lock.context();
            let store_ptr = std::ptr::from_mut(store).cast::<u8>();
            store.opaque.vm.set_store(store_ptr);
            let pool = store.opaque.engine.clone();
            continuation.finish(pool.stack_pool());
        }
    }
}

/// Calls `func` as a promising call with parameters written by `params` into `slots` value
/// slots, reading its results with `results`.
pub(crate) fn call_async<S, R>(
    store: S,
    func: Func,
    slots: usize,
    params: impl FnOnce(&mut StoreContext<S::Data>, &mut [ValRaw]) -> Result<()>,
    results: impl FnOnce(&mut StoreContext<S::Data>, &[ValRaw]) -> R,
) -> impl Future<Output = Result<R>>
where
    S: AsyncStore,
{
    let mut call = PromisingCall::new(store, func);
    let mut params = Some(params);
    let mut results = Some(results);
    poll_fn(move |cx| {
        call.poll_call(cx, slots, &mut params, |store, slots| {
            (results.take().expect("polled after completion"))(store, slots)
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Suspending imports

impl<T: 'static> Caller<'_, T> {
    /// A handle through which a suspending import's future can use the store while weft polls
    /// it (see [`StoreAccess`]).
    pub fn store_access(&self) -> StoreAccess<T> {
        StoreAccess {
            store_id: self.store_id(),
            instance: self.instance_index(),
            _marker: PhantomData,
        }
    }
}

/// Lets the future of a suspending import use the store, during its polls only.
///
/// The future itself must not borrow the store: while it is pending, other promising calls on
/// the same store may run. But each time weft polls it, the store is lent to that poll, and
/// [`StoreAccess::with`] gives it out as a [`Caller`]. Cheap to clone, `Send`, `'static`.
pub struct StoreAccess<T: 'static> {
    store_id: u64,
    instance: Option<usize>,
    _marker: PhantomData<fn() -> T>,
}

impl<T: 'static> Clone for StoreAccess<T> {
    fn clone(&self) -> Self {
        StoreAccess { ..*self }
    }
}

impl<T: 'static> StoreAccess<T> {
    /// Runs `f` with the store, as the import's caller saw it.
    ///
    /// Wasm that `f` calls runs synchronously: a suspending import reached from there traps
    /// with [`Trap::SuspendOutsidePromisingCall`] (suspending would switch out of the middle of
    /// the future's poll).
    ///
    /// # Errors
    /// If called anywhere but inside a poll of the import's future by weft (say, from another
    /// task), or from inside another `with`.
    pub fn with<R>(&self, f: impl FnOnce(Caller<'_, T>) -> R) -> Result<R> {
        with_polling_store::<T, R>(self.store_id, |store| {
            f(Caller::new(store, self.instance))
        })
        .ok_or_else(|| {
            Error::msg("the store is available to a suspending import's future only while weft polls it")
        })
    }
}

/// A Rust closure that can become a suspending import: it takes a [`Caller`] and the Wasm
/// arguments and returns a `'static` future of the results (or of a `Result` of them).
pub trait IntoAsyncFunc<T, Params, Results>: Send + Sync + 'static {
    #[doc(hidden)]
    fn into_async_func(self) -> (FuncType, HostCallback<T>);
}

/// The error a suspending import returns when its promising call is being dropped. It only
/// serves to make compiled code trap and unwind; nobody awaits it.
fn cancelled() -> Error {
    Error::msg("the promising call was cancelled")
}

macro_rules! into_async_func {
    ($($arg:ident $i:tt),*) => {
        impl<T, HostFn, Fut, $($arg,)* R> IntoAsyncFunc<T, ($($arg,)*), R> for HostFn
        where
            T: 'static,
            HostFn: Fn(Caller<'_, T>, $($arg),*) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = R> + Send + 'static,
            $($arg: crate::func::WasmTy,)*
            R: WasmRet,
        {
            fn into_async_func(self) -> (FuncType, HostCallback<T>) {
                let ty = FuncType::new(
                    <($($arg,)*) as WasmParams>::valtypes(),
                    <R::Results as WasmParams>::valtypes(),
                );
                let callback: HostCallback<T> = Arc::new(move |caller: Caller<'_, T>, slots: &mut [ValRaw]| {
                    let Some(suspend) = caller.suspend_point() else {
                        return Err(Error::trap_without_backtrace(Trap::SuspendOutsidePromisingCall));
                    };
                    #[allow(unused_variables)]
                    let args = <($($arg,)*) as WasmParams>::load(slots);
                    // Pinned on the continuation's stack: no allocation per call.
                    let future = pin!(self(caller, $(args.$i),*));
                    let output = suspend.block_on(future).map_err(|_| cancelled())?;
                    output.into_result()?.store(slots);
                    Ok(())
                });
                (ty, callback)
            }
        }
    };
}

into_async_func!();
into_async_func!(A 0);
into_async_func!(A 0, B 1);
into_async_func!(A 0, B 1, C 2);
into_async_func!(A 0, B 1, C 2, D 3);
into_async_func!(A 0, B 1, C 2, D 3, E 4);
into_async_func!(A 0, B 1, C 2, D 3, E 4, F 5);

impl<T: 'static> Caller<'_, T> {
    pub(crate) fn suspend_point(&self) -> Option<SuspendPoint> {
        SuspendPoint::current(&self.as_store_context().opaque.vm, self.store_id())
    }
}
