//! Promising calls (`call_async`) and suspending imports (`func_wrap_async`): the API half.
//! The VM half is `vm::async_call` (a Wasm call on a fiber) and `vm::suspend` (how an import
//! switches out); the design is in the crate docs.

use std::future::{Future, poll_fn};
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::call::{call_raw, check_values};
use crate::caller::Caller;
use crate::error::{Error, Result, Trap};
use crate::func::{Func, HostCallback};
use crate::shadow_stack::{finish_call, give_region};
use crate::shared_store::{LockWaiter, SharedStore, SharedStoreGuard};
use crate::store::{AsContextMut, Store, StoreContext};
use crate::trap::trap_to_error;
use crate::typed::{WasmParams, WasmRet};
use crate::types::FuncType;
use crate::values::Val;
use crate::vm::ValRaw;
use crate::vm::async_call::{AsyncCall, Resumed};
use crate::vm::entry::TrapInfo;
use crate::vm::suspend::{SuspendPoint, with_polling_store};

mod sealed {
    use super::*;

    /// What a promising call needs of its store. Public in a private module: outside this
    /// crate it can be neither named nor implemented, so [`AsyncStore`] is sealed and these
    /// methods (and the types in them) are not part of the API.
    pub trait Sealed {
        /// The store's data type (equal to [`AsyncStore::Data`]).
        type StoreData: 'static;
        /// A caller's place in line for the store: a [`LockWaiter`] for a [`SharedStore`],
        /// nothing for a `&mut Store`, so that a promising call on one neither carries nor
        /// drops one.
        type Waiter: Default + Unpin;
        /// The store for one poll. `waiter` is the caller's place in line.
        fn poll_store(
            &mut self,
            waiter: &mut Self::Waiter,
            cx: &mut Context<'_>,
        ) -> Poll<StoreLock<'_, Self::StoreData>>;
        /// Gives up `waiter`'s place in line, if it has one.
        fn leave(_waiter: &mut Self::Waiter) {}
        /// Finishes (cancels) `call` with the store, without a context to wait in (for
        /// `Drop`): once no poll holds it, or at once if it is lent to a suspending import's
        /// poll on this thread; if the store is in use further down this thread's stack, when
        /// that user releases it.
        fn finish_call_blocking(&mut self, call: AsyncCall);
        /// For a [`SharedStore`], its id: a call polled from inside a poll of one of the same
        /// store's suspending imports runs on the store lent to that poll.
        fn shared_id(&self) -> Option<u64> {
            None
        }
    }
}

/// What a promising call can run on: `&mut Store<T>` (the call has the store to itself while
/// it is in flight) or a [`SharedStore<T>`] (any number of calls in flight, interleaved at their
/// suspension points; the store is locked only while one of them runs). Sealed: weft
/// implements it for exactly these.
pub trait AsyncStore: sealed::Sealed<StoreData = <Self as AsyncStore>::Data> + Unpin {
    /// The store's data type.
    type Data: 'static;
}

/// The store, lent to one poll of a promising call.
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

impl<T: 'static> AsyncStore for &mut Store<T> {
    type Data = T;
}
impl<T: 'static> sealed::Sealed for &mut Store<T> {
    type StoreData = T;
    type Waiter = ();
    fn poll_store(&mut self, _: &mut (), _: &mut Context<'_>) -> Poll<StoreLock<'_, T>> {
        Poll::Ready(StoreLock::Exclusive(self.as_context_mut()))
    }
    fn finish_call_blocking(&mut self, call: AsyncCall) {
        finish_call(self.as_context_mut(), call)
    }
}

impl<T: 'static> AsyncStore for SharedStore<T> {
    type Data = T;
}
impl<T: 'static> sealed::Sealed for SharedStore<T> {
    type StoreData = T;
    type Waiter = LockWaiter<T>;
    fn poll_store(
        &mut self,
        waiter: &mut LockWaiter<T>,
        cx: &mut Context<'_>,
    ) -> Poll<StoreLock<'_, T>> {
        self.poll_lock(waiter, cx).map(StoreLock::Shared)
    }
    #[inline]
    fn leave(waiter: &mut LockWaiter<T>) {
        waiter.leave();
    }
    fn finish_call_blocking(&mut self, call: AsyncCall) {
        shared_finish_call_blocking(self, call)
    }
    fn shared_id(&self) -> Option<u64> {
        Some(self.id())
    }
}

impl<T: 'static> AsyncStore for &SharedStore<T> {
    type Data = T;
}
impl<T: 'static> sealed::Sealed for &SharedStore<T> {
    type StoreData = T;
    type Waiter = LockWaiter<T>;
    fn poll_store(
        &mut self,
        waiter: &mut LockWaiter<T>,
        cx: &mut Context<'_>,
    ) -> Poll<StoreLock<'_, T>> {
        self.poll_lock(waiter, cx).map(StoreLock::Shared)
    }
    #[inline]
    fn leave(waiter: &mut LockWaiter<T>) {
        waiter.leave();
    }
    fn finish_call_blocking(&mut self, call: AsyncCall) {
        shared_finish_call_blocking(self, call)
    }
    fn shared_id(&self) -> Option<u64> {
        Some(self.id())
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

/// [`sealed::Sealed::finish_call_blocking`] for a [`SharedStore`]: spins until no poll holds
/// the store, unless the store is lent to a suspending import's poll (or the drop of its
/// future) on this thread, as when a call nested in an import's future is cancelled together
/// with the outer call: that poll holds the lock and waits for us. If instead the store is in
/// use further down this very stack (a synchronous host function of it dropping the call),
/// spinning would never end: the call is finished when that user releases the store.
fn shared_finish_call_blocking<T: 'static>(store: &SharedStore<T>, call: AsyncCall) {
    let mut call = Some(call);
    loop {
        if let Some(mut guard) = store.try_lock() {
            if let Some(call) = call.take() {
                finish_call(guard.as_context_mut(), call);
            }
            return;
        }
        let lent = with_polling_store::<T, ()>(store.id(), |lent| {
            if let Some(call) = call.take() {
                finish_call(lent, call);
            }
        });
        if lent.is_some() {
            return;
        }
        if crate::vm::entry::store_runs_on_this_thread(store.id()) {
            if let Some(call) = call.take() {
                store.defer(Box::new(move |store| finish_call(store, call)));
            }
            return;
        }
        std::thread::yield_now();
    }
}

/// Runs `f` with the store once it is available (immediately for `&mut Store<T>`).
pub(crate) async fn with_store<S: AsyncStore, R>(
    store: &mut S,
    f: impl FnOnce(&mut StoreContext<S::Data>) -> R,
) -> R {
    let mut f = Some(f);
    let mut waiter = S::Waiter::default();
    poll_fn(|cx| match store.poll_store(&mut waiter, cx) {
        Poll::Ready(mut lock) => {
            Poll::Ready((f.take().expect("polled after completion"))(lock.context()))
        }
        Poll::Pending => Poll::Pending,
    })
    .await
}

/// The values of one promising call: how many value slots it needs, how its arguments are
/// written into them before it starts, and how its results are read when it returns.
pub(crate) trait CallValues<T: 'static>: Unpin {
    type Output;
    /// The larger of the parameter and result counts.
    fn slots(&self) -> usize;
    /// Writes the arguments (once, before the call starts).
    fn write_params(&mut self, store: &mut StoreContext<T>, slots: &mut [ValRaw]) -> Result<()>;
    /// Reads the results (once, after the call returned).
    fn read_results(&mut self, store: &mut StoreContext<T>, slots: &[ValRaw]) -> Self::Output;
}

/// One promising call, and its future: its store, its values, and its VM half once started.
/// Dropping it while the call is suspended cancels the call (see `vm::async_call`), which
/// needs the store: for a `SharedStore` the drop waits until no other call runs on it.
pub(crate) struct PromisingCall<S: AsyncStore, V> {
    store: S,
    func: Func,
    values: V,
    call: Option<AsyncCall>,
    done: bool,
    /// Its place in line for a `SharedStore` while a poll waits for the lock.
    waiter: <S as sealed::Sealed>::Waiter,
}

impl<S: AsyncStore, V: CallValues<S::Data>> PromisingCall<S, V> {
    pub(crate) fn new(store: S, func: Func, values: V) -> Self {
        PromisingCall {
            store,
            func,
            values,
            call: None,
            done: false,
            waiter: Default::default(),
        }
    }
}

/// The first poll's work, out of line (see `poll`): checks the function and writes the
/// arguments into a new call's slots. `None` for a host function, which
/// [`call_host_directly`] calls instead (nothing to run on a stack of its own).
#[inline(always)]
fn start<T: 'static, V: CallValues<T>>(
    store: &mut StoreContext<T>,
    func: Func,
    values: &mut V,
) -> Result<Option<AsyncCall>> {
    store.opaque.check(func.store);
    if store.opaque.funcs[func.index].host.is_some() {
        return Ok(None);
    }
    let mut call = AsyncCall::new(store, func.index, values.slots())?;
    if let Err(error) = values.write_params(store, call.slots()) {
        call.finish(store);
        return Err(error);
    }
    if store.opaque.shadow_stack.is_some()
        && let Err(error) = give_region(store, &mut call)
    {
        call.finish(store);
        return Err(error);
    }
    Ok(Some(call))
}

/// A promising call of a host function: called at once, on the poller's stack.
#[cold]
#[inline(never)]
fn call_host_directly<T: 'static, V: CallValues<T>>(
    store: &mut StoreContext<T>,
    func: Func,
    values: &mut V,
) -> Result<V::Output> {
    let mut buffer = vec![ValRaw::default(); values.slots().max(1)];
    values.write_params(store, &mut buffer)?;
    call_raw(store, func.index, &mut buffer)?;
    Ok(values.read_results(store, &buffer))
}

/// The last poll's work, out of line: reads the results and gives the fiber back. A trap is
/// handed back boxed, as the call's state holds it, for [`trap_error`] to turn into an
/// [`Error`]: the result of a call that returned is then small (for `()`, one word that is
/// null), and the poll builds its 72-byte `Result<_, Error>` in place instead of moving one.
#[inline(always)]
fn finish<T: 'static, V: CallValues<T>>(
    store: &mut StoreContext<T>,
    mut call: AsyncCall,
    values: &mut V,
) -> Result<V::Output, Box<TrapInfo>> {
    let output = call
        .take_outcome()
        .map(|()| values.read_results(store, call.slots()));
    finish_call(store, call);
    output
}

/// A finished call's trap as the error its future returns (out of line: see [`finish`]).
/// Takes the box itself so that the poll's arm, inlined into every executor's call of
/// `poll`, stays a pointer move; the unboxing and the deallocation are out of line here.
#[cold]
#[inline(never)]
#[allow(clippy::boxed_local)]
fn trap_error<T: 'static>(trap: Box<TrapInfo>, store: &mut StoreContext<T>) -> Error {
    trap_to_error(*trap, &mut store.opaque)
}

impl<S: AsyncStore, V: CallValues<S::Data>> Future for PromisingCall<S, V> {
    type Output = Result<V::Output>;

    /// Always inlined, with `AsyncCall::resume` inlined into it, so that the switch into the
    /// call's fiber sits in the executor's own call of `poll` (see `Fiber::resume`); the first
    /// and the last poll's work is out of line.
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Poll::Ready(lock) = this.store.poll_store(&mut this.waiter, cx) else {
            return this.poll_nested(cx);
        };
        let (func, call, done, values) =
            (this.func, &mut this.call, &mut this.done, &mut this.values);
        // One arm per kind of lock, rather than one `context()` of the lock: for a `&mut
        // Store` the other arm is dead, and no lock value lives in memory across the switch.
        match lock {
            StoreLock::Exclusive(store) => poll_with(store, cx, func, call, done, values),
            StoreLock::Shared(mut guard) => {
                poll_with(guard.as_context_mut(), cx, func, call, done, values)
            }
        }
    }
}

/// One poll of a promising call with the store in hand. Always inlined into `poll` (see
/// there). Only the paths of a call that returned are hot: each failure leaves through an
/// arm of its own, which moves its `Error` once, so the hot paths never copy one.
#[inline(always)]
fn poll_with<T: 'static, V: CallValues<T>>(
    store: &mut StoreContext<T>,
    cx: &mut Context<'_>,
    func: Func,
    this_call: &mut Option<AsyncCall>,
    done: &mut bool,
    values: &mut V,
) -> Poll<Result<V::Output>> {
    // Out of `this_call` while it runs, back in if it suspends: a call that returns in its
    // first poll is never written there. (Nothing in `resume` panics once the fiber runs; a
    // call lost to a panic before would be leaked with its stack, never reused.)
    let mut call = match this_call.take() {
        Some(call) => call,
        None => {
            // Not started, or finished.
            assert!(!*done, "a promising call's future polled after completion");
            match start(store, func, values) {
                Ok(Some(call)) => call,
                Ok(None) => {
                    *done = true;
                    return Poll::Ready(call_host_directly(store, func, values));
                }
                Err(error) => {
                    *done = true;
                    return Poll::Ready(Err(error));
                }
            }
        }
    };
    match call.resume(store, cx, false) {
        Resumed::Suspended => {
            *this_call = Some(call);
            Poll::Pending
        }
        Resumed::Finished => {
            *done = true;
            match finish(store, call, values) {
                Ok(output) => Poll::Ready(Ok(output)),
                Err(trap) => Poll::Ready(Err(trap_error(trap, store))),
            }
        }
    }
}

impl<S: AsyncStore, V: CallValues<S::Data>> PromisingCall<S, V> {
    /// A poll that found a `SharedStore` held: if the holder is a suspending import of that
    /// store polling its future on this thread, and this call is (part of) that future, the
    /// store is lent to that poll and the holder waits for us: run on it, on our own stack.
    /// The outer call's Wasm frames are suspended inside the import and touch the store only
    /// once its poll returns, exactly as for `StoreAccess::with`. Anything else waits its turn
    /// in the lock's queue.
    #[cold]
    #[inline(never)]
    fn poll_nested(&mut self, cx: &mut Context<'_>) -> Poll<Result<V::Output>> {
        let Some(id) = self.store.shared_id() else {
            return Poll::Pending;
        };
        let mut waiter = std::mem::take(&mut self.waiter);
        let polled = with_polling_store::<S::Data, _>(id, |store| {
            // Not waiting for the lock any more: give our ticket back, so that a release
            // does not hand the store to a call that is already running.
            S::leave(&mut waiter);
            poll_with(
                store,
                cx,
                self.func,
                &mut self.call,
                &mut self.done,
                &mut self.values,
            )
        });
        self.waiter = waiter;
        match polled {
            Some(poll) => poll,
            // The store is in use further down this thread's stack (a synchronous host function
            // of it polling this call by hand, say), so it cannot be released before this poll
            // returns: waiting would never end, so the call fails. One that had started is
            // cancelled when this future is dropped, or by the store's user as it releases the
            // store if that drop happens here too.
            None if crate::vm::entry::store_runs_on_this_thread(id) => {
                S::leave(&mut self.waiter);
                self.done = true;
                Poll::Ready(Err(Error::StoreInUse))
            }
            None => Poll::Pending,
        }
    }
}

impl<S: AsyncStore, V> Drop for PromisingCall<S, V> {
    /// Inline: a future dropped after it returned `Ready` (the common case) has no call and
    /// no place in line, and its drop is two tests.
    #[inline(always)]
    fn drop(&mut self) {
        // First: a grant of the lock to this call is passed on, not held while
        // `finish_call_blocking` below spins.
        S::leave(&mut self.waiter);
        if self.call.is_some() {
            self.drop_call();
        }
    }
}

impl<S: AsyncStore, V> PromisingCall<S, V> {
    /// Cancels a call dropped before it finished (its host frames run with the store) and
    /// gives its fiber back.
    #[cold]
    #[inline(never)]
    fn drop_call(&mut self) {
        if let Some(call) = self.call.take() {
            self.store.finish_call_blocking(call);
        }
    }
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
            $($arg: crate::typed::WasmTy,)*
            R: WasmRet,
        {
            fn into_async_func(self) -> (FuncType, HostCallback<T>) {
                let ty = FuncType::new(
                    <($($arg,)*) as WasmParams>::valtypes(),
                    <R::Results as WasmParams>::valtypes(),
                );
                // With a native-call shim, as a synchronous typed import: Wasm passes the
                // arguments in registers and gets the result back in one, and the shim runs on
                // the fiber like any host call.
                let callback = HostCallback::new_typed::<($($arg,)*), _>(move |caller: Caller<'_, T>, slots: &mut [ValRaw]| {
                    let Some(suspend) = caller.suspend_point() else {
                        return Err(Error::trap_without_backtrace(Trap::SuspendOutsidePromisingCall));
                    };
                    #[allow(unused_variables)]
                    let args = <($($arg,)*) as WasmParams>::load(slots);
                    // Pinned on the continuation's stack by `block_on`: no allocation per call.
                    let output = suspend.block_on(self(caller, $(args.$i),*)).map_err(|_| cancelled())?;
                    output.into_result()?.store(slots);
                    Ok(())
                });
                (ty, callback)
            }
        }
    };
}

crate::typed::for_each_arity!(into_async_func);

/// Wraps an untyped async closure as a [`HostCallback`]: a suspending import of type `ty` (see
/// [`crate::Linker::func_new_async`]).
pub(crate) fn dynamic_async_callback<T, F, Fut>(ty: FuncType, f: F) -> HostCallback<T>
where
    T: 'static,
    F: Fn(Caller<'_, T>, &[Val]) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<Val>>> + Send + 'static,
{
    HostCallback::new(move |caller: Caller<'_, T>, slots: &mut [ValRaw]| {
        let Some(suspend) = caller.suspend_point() else {
            return Err(Error::trap_without_backtrace(
                Trap::SuspendOutsidePromisingCall,
            ));
        };
        let access = caller.store_access();
        let params: Vec<Val> = ty
            .params()
            .iter()
            .zip(slots.iter())
            .map(|(&t, &raw)| Val::from_raw(raw, t, &mut caller.store.opaque))
            .collect();
        let results = f(caller, &params);
        // The results are checked and lowered in the poll that produced them, while the store
        // is lent to it: a reference result needs the store, and the `Caller` is gone.
        let future = async {
            let results = results.await?;
            access.with(|caller| -> Result<Vec<ValRaw>> {
                check_values("results", &results, ty.results(), &caller.store.opaque)?;
                results
                    .iter()
                    .map(|v| v.to_raw(&mut caller.store.opaque))
                    .collect::<Result<Vec<ValRaw>>>()
            })?
        };
        let raw = suspend.block_on(future).map_err(|_| cancelled())??;
        slots[..raw.len()].copy_from_slice(&raw);
        Ok(())
    })
}

impl<T: 'static> Caller<'_, T> {
    pub(crate) fn suspend_point(&self) -> Option<SuspendPoint> {
        SuspendPoint::current(&self.as_store_context().opaque.vm)
    }
}
