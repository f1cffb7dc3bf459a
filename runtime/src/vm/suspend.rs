//! The suspend protocol of a suspending import: how an import called by Wasm in a promising
//! call switches out of the call's fiber while its future is pending, and how that future
//! reaches the store during its polls.
//!
//! A suspending import calls [`SuspendPoint::block_on`] with its future, which stays in that
//! frame on the fiber's stack (pinned there, no allocation). That polls the future with the
//! `Context` of the outer `poll` (stored in the call's state by `AsyncCall::resume`); on
//! `Pending` it switches out, and the outer `poll` returns `Pending`. When polled again,
//! `resume` switches back in and the loop polls the future again. On `Ready` the value goes
//! back to Wasm like a synchronous import's. A call being cancelled makes `block_on` return
//! [`Cancelled`] instead of polling (see `async_call`).
//!
//! # The store's `call` word
//!
//! One word of the store context (`VMStoreContext::call`) says what runs Wasm of the store on
//! this thread: the promising call whose Wasm it is (set by `AsyncCall::resume` for the
//! duration of a resume, the outer value put back afterwards), null (a synchronous call, or
//! nothing), or [`POLLING`]: a suspending import is polling its future, the store is lent to
//! that poll ([`with_polling_store`]), and Wasm called from there cannot suspend (it would
//! switch out of the middle of a `Future::poll`). `block_on` writes `POLLING` before each poll
//! and the call back when it returns: both values are known, so nothing is saved, and the word
//! is left at `POLLING` across the switch out, where `resume` puts back its own value anyway.
//! Between two polls of a suspended import, other promising calls may use the store.
//!
//! # Thread-locals
//!
//! A suspended fiber may be resumed on another thread. The frames on its stack must not reuse a
//! thread-local address computed before a switch after it; Rust code does not know which of its
//! frames those are, so the rule is kept by structure: each poll of the future (the code that
//! touches an executor's thread-locals) and its drop run in never-inlined frames of their own
//! that return before the switch, and the frame that switches (the import's shim, with
//! `block_on` and the switch inlined into it) runs only weft's code after the first poll, which
//! touches no thread-local. The import's closure, which made the future, runs before it, and
//! is done: what it computed is not used after a switch.

use std::future::Future;
use std::mem::{ManuallyDrop, needs_drop};
use std::pin::Pin;
use std::ptr::{self, NonNull};
use std::task::Poll;

use super::async_call::CallState;
use super::entry;
use super::fiber::switch_out_in_place;
use super::vmstructs::VMStoreContext;

/// The store context's `call` word while a suspending import of the store polls its future
/// (see the module docs). Never a `CallState`'s address (those are aligned).
pub(super) const POLLING: *mut CallState = ptr::without_provenance_mut(1);

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
}

impl SuspendPoint {
    /// The running promising call of `store`, or `None` if its Wasm runs in a synchronous call
    /// (or inside a suspending import's poll, where suspending again would switch out of the
    /// middle of a `Future::poll`).
    #[inline(always)]
    pub fn current(store: &VMStoreContext) -> Option<SuspendPoint> {
        // SAFETY: the store is borrowed, so no Wasm of it runs on another thread; only
        // `AsyncCall::resume`, this module and `with_polling_store` write the cell.
        let state = unsafe { *store.call.get() };
        if state.addr() <= POLLING.addr() {
            return None;
        }
        // SAFETY: not null (above).
        let state = unsafe { NonNull::new_unchecked(state) };
        Some(SuspendPoint { state })
    }

    /// Polls `future` until it is ready, switching out of the promising call whenever it is
    /// pending (see the module docs).
    ///
    /// While the future is polled, and while it is dropped, [`with_polling_store`] gives access
    /// to the store, and suspending is disabled for Wasm called from there.
    ///
    /// Always inlined, into the import's shim: one frame less on the fiber's stack, and one
    /// return less after each resume (each mispredicted when the executor ran in between; see
    /// `weft_arch`'s docs on `ret` after a switch).
    ///
    /// # Errors
    /// [`Cancelled`] if the promising call was dropped; the future is then not polled again.
    ///
    /// # Panics
    /// If not called on the call's fiber while the call runs Wasm of its store (say, a point
    /// kept after its import returned).
    #[inline(always)]
    pub fn block_on<F: Future>(&self, future: F) -> Result<F::Output, Cancelled> {
        let state = self.state.as_ptr();
        // SAFETY: `state` was the store's running call when `current` read it, so its fiber's
        // stack (which holds it) was mapped then; a fiber's stack goes back to its pool only
        // once its call has ended, which it cannot have while the point's import runs. The
        // fields read are written only before the fiber first runs.
        let (low, top) = unsafe { ((*state).stack.guard.end, (*state).stack.switch_top) };
        if weft_arch::stack_pointer().wrapping_sub(low) >= top - low {
            off_its_stack();
        }
        // SAFETY: we run on the call's fiber (checked above), so its payload at the top of this
        // stack is live, and its store context is live while the call runs.
        let store = unsafe { (*state).store.as_ref() };
        // SAFETY: as above.
        if unsafe { *store.call.get() } != state {
            not_running();
        }
        // Stays in this frame until dropped by `polled`'s `Drop` (which also puts the call back
        // as the store's running one, a panic included).
        let mut polled = Polled {
            future: ManuallyDrop::new(future),
            store,
            state,
        };
        loop {
            // SAFETY: we run on this call's fiber, so its state is live and `resume` (which
            // set `cancelled`) waits for us.
            if unsafe { (*state).cancelled } {
                return Err(Cancelled);
            }
            // SAFETY: the store's running call is ours (checked above, and `resume` set it
            // again before switching back in): we may lend the store to the poll.
            unsafe { store.call.get().write(POLLING) };
            // SAFETY: the future is never moved out of `polled`, which stays in this frame and
            // drops it in place.
            let future = unsafe { Pin::new_unchecked(&mut *polled.future) };
            // SAFETY: we run on the call's fiber; `resume` set `cx` to its own context, which
            // outlives this poll, and waits for us; the word is `POLLING` (just written).
            if let Poll::Ready(output) = unsafe { poll(state, future) } {
                return Ok(output);
            }
            // SAFETY: we run on this call's fiber and its resumer waits. This frame reuses no
            // thread-local address across the switch (see the module docs).
            unsafe { switch_out_in_place((*state).stack.switch_top) };
        }
    }
}

/// A suspending import's future in `block_on`'s frame, and the call to give the store back to
/// when it is dropped.
struct Polled<'a, F> {
    future: ManuallyDrop<F>,
    store: &'a VMStoreContext,
    state: *mut CallState,
}

impl<F> Drop for Polled<'_, F> {
    /// Drops the future with the store lent to the drop, as to its polls (its `Drop` may need
    /// the store: a nested promising call of the same store, cancelled with it, say), and puts
    /// the call back as the store's running one. A future without drop glue (a plain async
    /// block of `Copy` state, say) has nothing to run: no frame, no store.
    #[inline(always)]
    fn drop(&mut self) {
        if needs_drop::<F>() {
            // SAFETY: the future is dropped once, here; `block_on` is on its call's fiber.
            unsafe { drop_future(self.store, &mut self.future) };
        }
        // SAFETY: the store's running call was ours when `block_on` began; we run on it.
        unsafe { self.store.call.get().write(self.state) };
    }
}

/// One poll of a suspending import's future, in a frame of its own: the poll (and whatever
/// gets inlined into it, an executor's thread-locals included) must compute thread-local
/// addresses afresh after every switch, since the fiber may have moved threads.
///
/// # Safety
/// `state` is the running call's state, on whose fiber we run, with `cx` set by its resume;
/// the store's `call` word is [`POLLING`].
#[inline(never)]
unsafe fn poll<F: Future>(state: *mut CallState, future: Pin<&mut F>) -> Poll<F::Output> {
    // SAFETY: the caller's contract.
    future.poll(unsafe { &mut *(*state).cx })
}

/// Drops a suspending import's future with the store lent to the drop (see `Polled`), in a
/// frame of its own for the same reason as [`poll`].
///
/// # Safety
/// The future is dropped once, on its call's fiber, whose store context is `store`.
#[inline(never)]
unsafe fn drop_future<F>(store: &VMStoreContext, future: &mut ManuallyDrop<F>) {
    // SAFETY: the caller's contract; the caller puts the call back afterwards.
    unsafe {
        store.call.get().write(POLLING);
        ManuallyDrop::drop(future);
    }
}

#[cold]
#[inline(never)]
fn off_its_stack() -> ! {
    panic!("a suspend point used off its promising call's stack")
}

#[cold]
#[inline(never)]
fn not_running() -> ! {
    panic!("a suspend point used while its call is not the store's running one")
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
    // from inside it); only the thread running that activation touches its `call` word.
    let context = unsafe { &*entry::current_store()? };
    // SAFETY: as above.
    let polling = unsafe { *context.call.get() } == POLLING;
    if context.store_id != store_id || !context.is_store_of::<T>() || !polling {
        return None;
    }
    // Taken for the duration (the word is null meanwhile): a nested `with_polling_store` inside
    // `f` sees nothing (two live `&mut` to the store), Wasm that `f` calls runs as a
    // synchronous call, and a promising call `f` polls sets the word for its resumes and puts
    // null back.
    struct Restore<'a>(&'a VMStoreContext);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            // SAFETY: as above.
            unsafe { self.0.call.get().write(POLLING) };
        }
    }
    // SAFETY: as above.
    unsafe { context.call.get().write(ptr::null_mut()) };
    let _restore = Restore(context);
    // SAFETY: the store was lent by the entry of the Wasm below us, to the poll running below
    // us; its other users (the Wasm frames and the import's shim) are suspended in that poll
    // and do not touch it until `f` returns. Its type was checked above.
    let store = unsafe { context.lent_store::<T>() };
    Some(f(store))
}
