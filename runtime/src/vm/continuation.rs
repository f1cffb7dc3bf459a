//! Continuations: Wasm calls that run on their own stack and can be switched out in the middle.
//!
//! A [`Continuation`] is a pooled `weft_arch::Stack` whose first switch runs
//! [`continuation_start`], which enters Wasm with [`enter_wasm_with_limit`]: the limit is the
//! stack's usable bottom plus [`HOST_HEADROOM`], so Wasm traps with stack exhaustion through its
//! prologue check while host functions it calls still have room below the limit.
//!
//! The continuation's bookkeeping, [`ContinuationState`], lives at the top of its own stack, so
//! starting a promising call allocates nothing on the heap. Above it only the switcher's words:
//!
//! ```text
//!   stack top ──▶ ┌───────────────────────────┐
//!                 │ ContinuationState         │  arguments, value slots, saved per-activation
//!                 │                           │  state, result; written by `Continuation::new`
//!   switch top ─▶ ├───────────────────────────┤
//!                 │ switcher words, frames …  │  init_stack / continuation_start / Wasm
//!                 ⋮                           ⋮
//!   limit ──────▶ ├───────────────────────────┤  Wasm stack limit (prologue check)
//!                 │ HOST_HEADROOM             │  host functions called from Wasm
//!                 ├───────────────────────────┤
//!                 │ guard page                │
//!                 └───────────────────────────┘
//! ```
//!
//! # Switching and per-activation state
//!
//! Three things describe "the Wasm running on this thread": the thread-local innermost
//! activation the signal handler reads (`traphandlers::replace_current`), and the store
//! context's `stack_limit` and `activation`. A continuation carries its own copies of all three.
//! [`Continuation::resume`] installs them, switches in, and when the continuation switches back
//! (suspended or finished), saves them and reinstalls the resumer's. All of this happens in the
//! resumer's frame, which never changes threads during a switch; the continuation side only
//! calls `switch_yield`, from a never-inlined function that touches no thread-local, so nothing
//! computed on one thread is reused on another after a suspended call resumes elsewhere.
//!
//! The store context also names the running continuation (`VMStoreContext::continuation`):
//! that is how a suspending import finds where to suspend to ([`SuspendPoint`]). It is null in
//! synchronous calls, which is how a suspending import knows it must trap instead.
//!
//! # Suspending
//!
//! A suspending import calls [`SuspendPoint::block_on`] with its future pinned on the
//! continuation's stack. That polls the future with the `Context` of the outer `poll` (stored in
//! the state by `resume`); on `Pending` it switches out, and the outer `poll` returns `Pending`.
//! When polled again, `resume` switches back in and the loop polls the future again. On `Ready`
//! the value goes back to Wasm like a synchronous import's.
//!
//! # Cancellation
//!
//! A suspended continuation cannot simply be forgotten: its frames may own Rust values (the
//! pinned future, for one, which a timer may still reference). Dropping one resumes it with the
//! `cancelled` flag: `block_on` returns [`Cancelled`] instead of polling, the import reports
//! an error, compiled code traps, and the landing pads unwind the Wasm frames while host frames
//! return normally, until `continuation_start` returns. Only then does the stack go back to the
//! pool.

use std::cell::RefCell;
use std::future::Future;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::ptr::{self, NonNull};
use std::task::{Context, Poll, Waker};

use weft_arch::{Stack, StackPool};

use super::traphandlers::{
    self, Activation, StackLimit, TrapInfo, enter_wasm_with_limit, replace_current_in_resumer,
};
use super::vmstructs::{VMFuncRef, VMStoreContext, ValRaw};

/// Stack kept below the Wasm stack limit of a continuation for host functions called from Wasm
/// (and the code they call: a future's poll, a compile, an allocation).
pub const HOST_HEADROOM: usize = 64 * 1024;

/// Value slots a continuation keeps in its state; calls with more parameters or results use a
/// heap buffer.
const INLINE_SLOTS: usize = 8;

/// Values passed into a continuation by `switch_and_link`.
const RESUME: usize = 0;
const RESUME_CANCELLED: usize = 1;

/// Everything a continuation needs, at the top of its own stack (see the module docs).
#[repr(C)]
pub struct ContinuationState {
    /// The top given to `init_stack`, which `switch_yield` needs.
    switch_top: usize,
    /// The outer poll's context; valid while the continuation runs (set by every `resume`).
    cx: *mut Context<'static>,
    /// Set when the call's future is dropped: suspending imports must not suspend again.
    cancelled: bool,
    /// Per-activation state while switched out (see the module docs).
    saved_current: *mut Activation,
    saved_stack_limit: usize,
    saved_activation: *mut Activation,
    /// The call: store context, Wasm stack limit, trampoline and its arguments.
    store: *const VMStoreContext,
    stack_limit: usize,
    /// The stack's guard page(s), for the signal handler (see `traphandlers`).
    guard: std::ops::Range<usize>,
    trampoline: usize,
    func_ref: VMFuncRef,
    slot_count: usize,
    heap_slots: Option<Box<[ValRaw]>>,
    /// `Ok(())` until `continuation_start` writes a trap there; read once by
    /// [`Continuation::take_outcome`]. Not an `Option` that `resume` hands back by value: a
    /// finished call's common case then moves no `TrapInfo`-sized value through the poll.
    result: Result<(), TrapInfo>,
    /// The first `slot_count` are initialized (zeroed by `new`), unless `heap_slots` is used.
    /// Last, so that LLVM does not fold the uninitialized rest into its neighbours' writes.
    inline_slots: [MaybeUninit<ValRaw>; INLINE_SLOTS],
}

// `drop_state` drops only these two fields; everything else in the state must own nothing.
const _: () = assert!(
    !std::mem::needs_drop::<VMFuncRef>()
        && !std::mem::needs_drop::<std::ops::Range<usize>>()
        && !std::mem::needs_drop::<*mut Context<'static>>()
);

/// How a [`Continuation::resume`] ended.
pub enum Resumed {
    /// A suspending import is waiting: resume again when woken.
    Suspended,
    /// The call returned (results are in [`Continuation::slots`]) or trapped: see
    /// [`Continuation::take_outcome`].
    Finished,
}

/// A promising call's stack and where it stands. See the module docs.
pub struct Continuation {
    /// `None` only after `Drop` took it.
    stack: Option<Stack>,
    state: NonNull<ContinuationState>,
    /// Saved stack pointer of the suspended (or not yet started) context; 0 once finished.
    sp: usize,
    started: bool,
}

// SAFETY: the continuation owns its stack and state; nothing in them is tied to a thread (the
// per-activation state is reinstalled on whichever thread resumes it). Running it is `resume`'s
// business, which needs `&mut self`.
unsafe impl Send for Continuation {}
// SAFETY: `&Continuation` exposes nothing.
unsafe impl Sync for Continuation {}

thread_local! {
    /// A few stacks kept per thread without giving back their pages, so back-to-back promising
    /// calls neither lock the engine's pool nor pay for `madvise` every time.
    static WARM_STACKS: RefCell<Vec<Stack>> = const { RefCell::new(Vec::new()) };
}

/// Stacks a thread keeps warm (see `WARM_STACKS`).
const WARM_STACKS_PER_THREAD: usize = 4;

/// The full size of a stack for promising calls with `max_wasm_stack` bytes of Wasm stack.
pub fn stack_size(max_wasm_stack: usize) -> usize {
    max_wasm_stack + HOST_HEADROOM + state_bytes() + 4096
}

fn state_bytes() -> usize {
    size_of::<ContinuationState>().next_multiple_of(weft_arch::STACK_ALIGNMENT)
}

/// One warm stack kept by a store for its next promising call: back-to-back calls on one
/// store then touch no thread-local at all (the thread's warm stacks cost a `RefCell` and a
/// `Vec` behind a thread-local with a destructor, about a tenth of a trivial call). The
/// store's spare is its own, so its size always fits its engine's pool; it is unmapped with
/// the store.
#[derive(Default)]
pub struct SpareStack(Option<Stack>);

/// A stack of `size` usable bytes: the store's spare, else a warm one of this thread, else
/// from `pool`.
fn allocate_stack(pool: &StackPool, spare: &mut SpareStack) -> std::io::Result<Stack> {
    if let Some(stack) = spare.0.take() {
        return Ok(stack);
    }
    let size = pool.config().size;
    let warm = WARM_STACKS.with(|warm| {
        let mut warm = warm.borrow_mut();
        let i = warm.iter().rposition(|s| s.usable().len() >= size)?;
        Some(warm.swap_remove(i))
    });
    match warm {
        Some(stack) => Ok(stack),
        None => pool.allocate(),
    }
}

/// Gives `stack` back: to the store's spare slot, or this thread's warm stacks if there is
/// room, else to `pool`.
fn release_stack(pool: &StackPool, spare: &mut SpareStack, stack: Stack) {
    if spare.0.is_none() {
        spare.0 = Some(stack);
        return;
    }
    let stack = WARM_STACKS.with(|warm| {
        let mut warm = warm.borrow_mut();
        if warm.len() < WARM_STACKS_PER_THREAD {
            warm.push(stack);
            None
        } else {
            Some(stack)
        }
    });
    if let Some(stack) = stack {
        pool.release(stack);
    }
}

impl Continuation {
    /// A continuation that, when first resumed, calls the function behind `func_ref` through
    /// `trampoline` as Wasm of the store whose context is `store`, with a Wasm stack limit
    /// `HOST_HEADROOM` above the stack's bottom. Write the arguments into [`Self::slots`] first.
    ///
    /// The API upholds what this relies on (as for `call::call_func_ref`): `func_ref` is a
    /// funcref of that store, `trampoline` its type's array-to-Wasm trampoline, `slots` is large
    /// enough for its parameters and results, and the store stays alive and is exclusively
    /// lent to the continuation during every `resume`.
    ///
    /// # Errors
    /// The OS error if a new stack cannot be mapped.
    #[inline] // into `promising::start`, itself out of line: one frame instead of two
    pub fn new(
        pool: &StackPool,
        spare: &mut SpareStack,
        store: *const VMStoreContext,
        trampoline: *const u8,
        func_ref: usize,
        slots: usize,
    ) -> std::io::Result<Continuation> {
        let stack = allocate_stack(pool, spare)?;
        let top = stack.top();
        let state_at = top - state_bytes();
        let switch_top = state_at;
        let state = state_at as *mut ContinuationState;
        // SAFETY: the state's bytes are at the top of a stack we own, aligned for it, and
        // nothing runs on the stack; the funcref lives as long as the store.
        unsafe {
            // Field by field rather than `state.write(ContinuationState { .. })`, which builds
            // the ~300-byte struct in this frame and then copies it: a third of this function's
            // instructions, for every promising call.
            (&raw mut (*state).switch_top).write(switch_top);
            (&raw mut (*state).cx).write(ptr::null_mut());
            (&raw mut (*state).cancelled).write(false);
            (&raw mut (*state).saved_current).write(ptr::null_mut());
            (&raw mut (*state).saved_stack_limit).write(usize::MAX);
            (&raw mut (*state).saved_activation).write(ptr::null_mut());
            (&raw mut (*state).store).write(store);
            (&raw mut (*state).stack_limit).write(stack.usable().start + HOST_HEADROOM);
            (&raw mut (*state).guard).write(stack.guard());
            (&raw mut (*state).trampoline).write(trampoline as usize);
            (&raw mut (*state).func_ref).write(*(func_ref as *const VMFuncRef));
            (&raw mut (*state).slot_count).write(slots.min(INLINE_SLOTS));
            (&raw mut (*state).heap_slots).write(
                (slots > INLINE_SLOTS).then(|| vec![ValRaw::default(); slots].into_boxed_slice()),
            );
            (&raw mut (*state).result).write(Ok(()));
            let inline = (&raw mut (*state).inline_slots).cast::<ValRaw>();
            for i in 0..slots.min(INLINE_SLOTS) {
                inline.add(i).write(ValRaw::default());
            }
        }
        // SAFETY: `switch_top` is 16-aligned (the state's size is rounded up to it) and the
        // stack below it is ours and unused.
        let sp = unsafe { weft_arch::init_stack(switch_top, continuation_start, state as usize) };
        Ok(Continuation {
            stack: Some(stack),
            // SAFETY: derived from a non-null stack address.
            state: unsafe { NonNull::new_unchecked(state) },
            sp,
            started: false,
        })
    }

    /// The value slots: arguments before the first resume, results after it finished.
    pub fn slots(&mut self) -> &mut [ValRaw] {
        // SAFETY: the state is initialized, and Wasm touches the slots only while `resume`
        // runs, which needs `&mut self` too.
        let state = unsafe { &mut *self.state.as_ptr() };
        match &mut state.heap_slots {
            Some(slots) => slots,
            // SAFETY: `new` initialized the first `slot_count` inline slots.
            None => unsafe {
                std::slice::from_raw_parts_mut(
                    state.inline_slots.as_mut_ptr().cast::<ValRaw>(),
                    state.slot_count,
                )
            },
        }
    }

    /// Whether the continuation has frames on its stack: started and not finished.
    pub fn is_suspended(&self) -> bool {
        self.started && self.sp != 0
    }

    /// Runs the continuation until it suspends or finishes, with `cx` as the context its
    /// suspending imports poll their futures with; `cancel` makes them give up instead.
    ///
    /// The caller must hold the continuation's store exclusively for the duration (the API
    /// does: the store is locked for the whole poll) and must not resume a finished
    /// continuation (asserted).
    ///
    /// Always inlined, so that it ends up in the caller's `Future::poll`: the resumer then
    /// returns from no frame between the switch out and the next switch in, which keeps the
    /// continuation's own returns predicted (see `weft_arch`'s docs on `ret` after a switch).
    #[inline(always)]
    pub fn resume(&mut self, cx: &mut Context<'_>, cancel: bool) -> Resumed {
        assert!(self.sp != 0, "resuming a finished continuation");
        // Once per thread; afterwards a flag test. Needed here, not only at the first entry:
        // the continuation may come back on a thread that never ran Wasm.
        traphandlers::prepare_thread();
        let state = self.state.as_ptr();
        // SAFETY: the state is ours (see `slots`) and its store context is live and lent to us
        // (the caller's contract). Everything written here is read by the continuation only
        // while we wait in `switch_and_link`, and `cx` outlives that wait. This frame stays on
        // its thread across the switch, so the thread-local swaps may be inlined.
        unsafe {
            (*state).cx = ptr::from_mut(cx).cast();
            (*state).cancelled |= cancel;
            let store = &*(*state).store;
            // Install the continuation's per-activation state, keeping the resumer's.
            let outer_current = replace_current_in_resumer((*state).saved_current);
            let outer_limit = store.stack_limit.get().replace((*state).saved_stack_limit);
            let outer_activation = store.activation.get().replace((*state).saved_activation);
            let outer_continuation = store.continuation.get().replace(state);
            let value = if (*state).cancelled {
                RESUME_CANCELLED
            } else {
                RESUME
            };
            self.started = true;
            let (_, sp) = weft_arch::switch_and_link(value, self.sp, (*state).switch_top);
            // Back on the resumer's side (same thread): save theirs, reinstall ours.
            (*state).saved_current = replace_current_in_resumer(outer_current);
            (*state).saved_stack_limit = store.stack_limit.get().replace(outer_limit);
            (*state).saved_activation = store.activation.get().replace(outer_activation);
            store.continuation.get().write(outer_continuation);
            (*state).cx = ptr::null_mut();
            match sp {
                Some(sp) => {
                    self.sp = sp;
                    Resumed::Suspended
                }
                None => {
                    self.sp = 0;
                    Resumed::Finished
                }
            }
        }
    }

    /// How the call ended, once [`Self::resume`] returned [`Resumed::Finished`]: `Ok(())` if
    /// Wasm returned, else its trap (taken: a second call returns `Ok(())`).
    pub fn take_outcome(&mut self) -> Result<(), TrapInfo> {
        assert!(
            self.started && self.sp == 0,
            "the continuation has not finished"
        );
        // SAFETY: the state is ours (see `slots`) and nothing runs on its stack any more.
        let result = unsafe { &mut (*self.state.as_ptr()).result };
        if result.is_ok() {
            // The common case, without moving (and dropping) a `TrapInfo`-sized value.
            return Ok(());
        }
        std::mem::replace(result, Ok(()))
    }

    /// Unwinds a suspended continuation (see the module docs); nothing if it is not. The
    /// caller must hold its store as for `resume`. [`Self::finish`] does this too; calling it
    /// first lets the caller borrow the store's spare stack only once no host code runs.
    pub fn cancel(&mut self) {
        if !self.is_suspended() {
            return;
        }
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        while self.is_suspended() {
            // Whatever the trap or error, the call is abandoned; host panics included.
            let _ = self.resume(&mut cx, true);
        }
    }

    /// Returns the stack to `spare`, this thread's warm stacks or `pool`. A suspended continuation is
    /// cancelled first (see the module docs); the caller must hold its store as for `resume`.
    #[inline] // into `promising::finish`, as `new`
    pub fn finish(mut self, pool: &StackPool, spare: &mut SpareStack) {
        self.cancel();
        self.drop_state();
        if let Some(stack) = self.stack.take() {
            release_stack(pool, spare, stack);
        }
    }

    fn drop_state(&mut self) {
        if self.stack.is_some() {
            // SAFETY: the state was initialized by `new` and is dropped once: `stack` is taken
            // right after by every caller.
            unsafe {
                let state = self.state.as_ptr();
                // Field by field, each only if it owns something: a returned call's state
                // owns nothing, and this runs for every call.
                if (*state).heap_slots.is_some() {
                    ptr::drop_in_place(&raw mut (*state).heap_slots);
                }
                if (*state).result.is_err() {
                    ptr::drop_in_place(&raw mut (*state).result);
                }
            }
        }
    }
}

impl Drop for Continuation {
    fn drop(&mut self) {
        if self.stack.is_none() {
            return;
        }
        if self.is_suspended() {
            // Not cancelled through `finish` (the API always does that; this is a last
            // resort): its frames may still be referenced (pinned futures registered with a
            // timer, say), so neither the state nor the stack may be reused. Leak both.
            std::mem::forget(self.stack.take());
            return;
        }
        self.drop_state();
        drop(self.stack.take()); // unmapped: no pool at hand
    }
}

/// The first frame of every continuation (see `weft_arch::StackEntry`).
///
/// # Safety
/// `arg` is the `ContinuationState` `Continuation::new` wrote, and `resume` prepared the thread
/// and installed the per-activation state before switching here.
unsafe extern "C" fn continuation_start(arg: usize, _value: usize, _stack_top: usize) -> usize {
    let state = arg as *mut ContinuationState;
    // SAFETY: see above and `Continuation::new`: the trampoline, funcref and slots make a valid
    // call, and the limit is on this stack with `HOST_HEADROOM` below it.
    unsafe {
        let slots = match &mut (*state).heap_slots {
            Some(slots) => slots.as_mut_ptr(),
            None => (*state).inline_slots.as_mut_ptr().cast::<ValRaw>(),
        };
        let result = enter_wasm_with_limit(
            (*state).store,
            StackLimit::Continuation {
                limit: (*state).stack_limit,
                guard: (*state).guard.clone(),
            },
            (*state).trampoline as *const u8,
            (*state).func_ref.vmctx as usize,
            (*state).func_ref.wasm_call as usize,
            slots as usize,
        );
        if let Err(trap) = result {
            (*state).result = Err(trap);
        }
    }
    0
}

/// Switches out of the running continuation; returns the value it was resumed with.
///
/// Never inlined, and touches no thread-local: it may return on another thread.
///
/// # Safety
/// Must run on the continuation whose state this is, while `resume` waits for it.
#[inline(never)]
unsafe fn switch_out(state: *mut ContinuationState) -> usize {
    // SAFETY: per the contract, we are on this stack and its resumer waits in switch_and_link.
    unsafe { weft_arch::switch_yield(0, (*state).switch_top) }
}

/// The promising call was dropped while suspended: the import must return without waiting.
#[derive(Debug)]
pub struct Cancelled;

/// Where a suspending import suspends to: the continuation running its caller.
///
/// Obtained from the store context while Wasm of that store calls the import; not `Send`, and
/// only meaningful on the continuation that is running.
pub struct SuspendPoint {
    state: NonNull<ContinuationState>,
    store: NonNull<VMStoreContext>,
}

impl SuspendPoint {
    /// The running continuation of `store`, or `None` if its Wasm runs
    /// in a synchronous call (or inside a suspending import's poll, where suspending again would
    /// switch out of the middle of a `Future::poll`).
    pub fn current(store: &VMStoreContext) -> Option<SuspendPoint> {
        // SAFETY: the store is borrowed; only `resume` and this module write the cell.
        let state = NonNull::new(unsafe { *store.continuation.get() })?;
        Some(SuspendPoint {
            state,
            store: NonNull::from(store),
        })
    }

    /// Polls `future` until it is ready, switching out of the continuation whenever it is
    /// pending (see the module docs).
    ///
    /// While the future is polled, [`with_polling_store`] gives access to the store, and
    /// suspending is disabled for Wasm called from there.
    ///
    /// # Errors
    /// [`Cancelled`] if the promising call was dropped; the future is then not polled again.
    pub fn block_on<F: Future + ?Sized>(
        &self,
        mut future: Pin<&mut F>,
    ) -> Result<F::Output, Cancelled> {
        let state = self.state.as_ptr();
        loop {
            // SAFETY: we run on this continuation, so its state is live and `resume` (which set
            // `cancelled`) waits for us.
            if unsafe { (*state).cancelled } {
                return Err(Cancelled);
            }
            if let Poll::Ready(output) = self.poll(future.as_mut()) {
                return Ok(output);
            }
            // SAFETY: we run on this continuation and its resumer waits.
            unsafe { switch_out(state) };
        }
    }

    /// One poll of a suspending import's future, in a frame of its own: the poll (and whatever
    /// gets inlined into it, an executor's thread-locals included) must compute thread-local
    /// addresses afresh after every switch, since the continuation may have moved threads.
    #[inline(never)]
    fn poll<F: Future + ?Sized>(&self, future: Pin<&mut F>) -> Poll<F::Output> {
        let state = self.state.as_ptr();
        // SAFETY: as in `current`, the store context outlives the call.
        let store = unsafe { self.store.as_ref() };
        // SAFETY: `resume` set `cx` to its own context and waits for us in `switch_and_link`;
        // the store is lent to this continuation.
        let cx = unsafe { &mut *(*state).cx };
        let _scope = PollScope::enter(store);
        future.poll(cx)
    }
}

/// Marks a suspending import's poll: lends the store to it (for [`with_polling_store`]) and
/// disables suspension for Wasm called meanwhile; undoes both when dropped (a panic included).
/// Two fields of the store context, no thread-local: this runs twice per suspension.
struct PollScope<'a> {
    store: &'a VMStoreContext,
    saved_continuation: *mut ContinuationState,
    saved_polling: bool,
}

impl<'a> PollScope<'a> {
    fn enter(store: &'a VMStoreContext) -> Self {
        // SAFETY: the store is lent to the running continuation, i.e. to us.
        unsafe {
            PollScope {
                store,
                saved_continuation: store.continuation.get().replace(ptr::null_mut()),
                saved_polling: store.polling.get().replace(true),
            }
        }
    }
}

impl Drop for PollScope<'_> {
    fn drop(&mut self) {
        // SAFETY: as in `enter`.
        unsafe {
            self.store.continuation.get().write(self.saved_continuation);
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
/// `T` must be the data type of that store: store ids are unique, and the API only hands out
/// ids together with the store's type.
pub fn with_polling_store<T: 'static, R>(
    store_id: u64,
    f: impl FnOnce(&mut crate::store::StoreContext<T>) -> R,
) -> Option<R> {
    // SAFETY: the innermost activation's store context is live while it runs (we are called
    // from inside it); only the thread running that activation touches its `polling` cell.
    let context = unsafe { &*traphandlers::current_store()? };
    // SAFETY: as above.
    if context.store_id != store_id || !unsafe { *context.polling.get() } {
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
    // SAFETY: the context's `store` is the `StoreContext<T>` of the store with this id (the API
    // sets it before entering Wasm), lent to the poll running below us; its other users (the
    // Wasm frames and the import's shim) are suspended in that poll and do not touch it until
    // `f` returns.
    let store = unsafe { &mut *(*context.store.get()).cast::<crate::store::StoreContext<T>>() };
    Some(f(store))
}
