//! The suspend protocol of a suspending import: how an import called by Wasm in a promising
//! call switches out of the call's fiber while its future is pending, and how that future
//! reaches the store during its polls.
//!
//! A suspending import calls [`SuspendPoint::block_on`] with its future pinned on the fiber's
//! stack. That polls the future with the `Context` of the outer `poll` (stored in the call's
//! state by `AsyncCall::resume`); on `Pending` it switches out, and the outer `poll` returns
//! `Pending`. When polled again, `resume` switches back in and the loop polls the future again.
//! On `Ready` the value goes back to Wasm like a synchronous import's. A call being cancelled
//! makes `block_on` return [`Cancelled`] instead of polling (see `async_call`).
//!
//! While the future is polled, the store is lent to that poll ([`with_polling_store`]), and
//! suspending is disabled for Wasm called from there: the poll would be switched out of the
//! middle of a `Future::poll`.

use std::future::Future;
use std::ops::Range;
use std::pin::{Pin, pin};
use std::ptr::{self, NonNull};
use std::task::Poll;

use super::async_call::CallState;
use super::entry;
use super::fiber::switch_out;
use super::vmstructs::VMStoreContext;

/// The promising call was dropped while suspended: the import must return without waiting.
#[derive(Debug)]
pub struct Cancelled;

/// Where a suspending import suspends to: the promising call running its caller.
///
/// Obtained from the store context while Wasm of that store calls the import; not `Send`.
/// [`Self::block_on`] checks that it runs on that call's fiber, with the call still the store's
/// running one, before it touches the call's state: a point kept past its import cannot be
/// misused.
pub struct SuspendPoint {
    state: NonNull<CallState>,
    /// The usable part of the call's fiber stack.
    stack: Range<usize>,
}

impl SuspendPoint {
    /// The running promising call of `store`, or `None` if its Wasm runs in a synchronous call
    /// (or inside a suspending import's poll, where suspending again would switch out of the
    /// middle of a `Future::poll`).
    pub fn current(store: &VMStoreContext) -> Option<SuspendPoint> {
        // SAFETY: the store is borrowed, so no Wasm of it runs on another thread; only
        // `AsyncCall::resume` and this module write the cell.
        let state = NonNull::new(unsafe { *store.call.get() })?;
        // SAFETY: a non-null `call` is the state of the call running Wasm of this store right
        // now (reset when its resume returns), below us on this thread.
        let stack =
            unsafe { (*state.as_ptr()).stack.guard.end..(*state.as_ptr()).stack.switch_top };
        Some(SuspendPoint { state, stack })
    }

    /// Polls `future` until it is ready, switching out of the promising call whenever it is
    /// pending (see the module docs).
    ///
    /// While the future is polled, [`with_polling_store`] gives access to the store, and
    /// suspending is disabled for Wasm called from there.
    ///
    /// # Errors
    /// [`Cancelled`] if the promising call was dropped; the future is then not polled again.
    ///
    /// # Panics
    /// If not called on the call's fiber while the call runs Wasm of its store (say, a point
    /// kept after its import returned).
    pub fn block_on<F: Future>(&self, future: F) -> Result<F::Output, Cancelled> {
        let state = self.state.as_ptr();
        assert!(
            self.stack.contains(&approximate_sp()),
            "a suspend point used off its promising call's stack"
        );
        // SAFETY: we run on the call's fiber (checked above), so its payload at the top of
        // this stack is live, and its store context is live while the call runs.
        let running = unsafe { *(*state).store.as_ref().call.get() };
        assert!(
            ptr::eq(running, state),
            "a suspend point used while its call is not the store's running one"
        );
        // Pinned on the call's stack (no allocation), and dropped here, in a poll scope: its
        // `Drop` may need the store as much as its polls (a nested promising call of the same
        // store that is cancelled with it, say).
        let mut future = pin!(Some(future));
        let output = loop {
            // SAFETY: we run on this call's fiber, so its state is live and `resume` (which
            // set `cancelled`) waits for us.
            if unsafe { (*state).cancelled } {
                break Err(Cancelled);
            }
            let polling = future.as_mut().as_pin_mut().expect("polled until dropped");
            if let Poll::Ready(output) = self.poll(polling) {
                break Ok(output);
            }
            // SAFETY: we run on this call's fiber and its resumer waits.
            unsafe { switch_out((*state).stack.switch_top) };
        };
        // A future without drop glue (a plain async block of `Copy` state, say) has nothing to
        // run with the store: no scope, no call.
        if std::mem::needs_drop::<F>() {
            self.drop_future(future);
        }
        output
    }

    /// Drops a suspending import's future with the store lent to the drop, as to its polls.
    #[inline(never)]
    fn drop_future<F>(&self, mut future: Pin<&mut Option<F>>) {
        let state = self.state.as_ptr();
        // SAFETY: as in `poll`: we run on the call, whose store context outlives it.
        let store = unsafe { (*state).store.as_ref() };
        let _scope = PollScope::enter(store);
        future.set(None);
    }

    /// One poll of a suspending import's future, in a frame of its own: the poll (and whatever
    /// gets inlined into it, an executor's thread-locals included) must compute thread-local
    /// addresses afresh after every switch, since the fiber may have moved threads.
    #[inline(never)]
    fn poll<F: Future + ?Sized>(&self, future: Pin<&mut F>) -> Poll<F::Output> {
        let state = self.state.as_ptr();
        // SAFETY: `block_on` checked we run on the call; its store context outlives it, and
        // `resume` set `cx` to its own context and waits for us in `switch_and_link`.
        let (store, cx) = unsafe { ((*state).store.as_ref(), &mut *(*state).cx) };
        let _scope = PollScope::enter(store);
        future.poll(cx)
    }
}

fn approximate_sp() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

/// Marks a suspending import's poll: lends the store to it (for [`with_polling_store`]) and
/// disables suspension for Wasm called meanwhile; undoes both when dropped (a panic included).
/// Two fields of the store context, no thread-local: this runs twice per suspension.
struct PollScope<'a> {
    store: &'a VMStoreContext,
    saved_call: *mut CallState,
    saved_polling: bool,
}

impl<'a> PollScope<'a> {
    fn enter(store: &'a VMStoreContext) -> Self {
        // SAFETY: the store is lent to the running call, i.e. to us.
        unsafe {
            PollScope {
                store,
                saved_call: store.call.get().replace(ptr::null_mut()),
                saved_polling: store.polling.get().replace(true),
            }
        }
    }
}

impl Drop for PollScope<'_> {
    fn drop(&mut self) {
        // SAFETY: as in `enter`.
        unsafe {
            self.store.call.get().write(self.saved_call);
            self.store.polling.get().write(self.saved_polling);
        }
    }
}

/// Runs `f` with the store whose id is `store_id`, if one of its suspending imports is polling
/// its future on this thread right now (the store is then lent to that poll, and nobody else
/// uses it). `None` otherwise: between polls other promising calls may use the store.
///
/// The poll runs inside the import's activation, the innermost one on this thread, so its
/// store context tells which store is polling.
///
/// Also `None` if that store's data type is not `T` (store ids are unique, and the API hands
/// out ids only together with the store's type, so it never is).
pub fn with_polling_store<T: 'static, R>(
    store_id: u64,
    f: impl FnOnce(&mut crate::store::StoreContext<T>) -> R,
) -> Option<R> {
    // SAFETY: the innermost activation's store context is live while it runs (we are called
    // from inside it); only the thread running that activation touches its `polling` cell.
    let context = unsafe { &*entry::current_store()? };
    // SAFETY: as above.
    let polling = unsafe { *context.polling.get() };
    if context.store_id != store_id || !context.is_store_of::<T>() || !polling {
        return None;
    }
    // Taken for the duration: a nested `with_polling_store` inside `f` sees nothing (two live
    // `&mut` to the store), while Wasm that `f` calls, and its imports, get the store the usual
    // way through the call.
    struct Restore<'a>(&'a VMStoreContext);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            // SAFETY: as above.
            unsafe { self.0.polling.get().write(true) };
        }
    }
    // SAFETY: as above.
    unsafe { context.polling.get().write(false) };
    let _restore = Restore(context);
    // SAFETY: the store was lent by the entry of the Wasm below us, to the poll running below
    // us; its other users (the Wasm frames and the import's shim) are suspended in that poll
    // and do not touch it until `f` returns. Its type was checked above.
    let store = unsafe { context.lent_store::<T>() };
    Some(f(store))
}
