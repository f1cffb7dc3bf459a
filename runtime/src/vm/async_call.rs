//! The VM half of a promising call: a Wasm call running on a [`Fiber`], resumed from the call
//! future's `poll` with that poll's `Context`.
//!
//! [`AsyncCall`] owns a `Fiber<CallState>`. The payload, [`CallState`], at the top of the
//! fiber's stack (so starting a call allocates nothing on the heap), holds what the call needs
//! (funcref, trampoline, value slots), what it reports (its trap, if any), and what the
//! suspend protocol (`suspend`) reads while the call runs: the outer poll's `Context` and the
//! cancel flag. The fiber's body enters Wasm in an activation of its own, kept in the state
//! too (`entry::Activation::resident`), with the fiber's own stack limit, so Wasm traps with
//! stack exhaustion through its prologue check while host functions it calls still have the
//! fiber's headroom.
//!
//! # One started fiber per store
//!
//! The body does not return when its call is over: it parks (see `fiber`), and the store
//! keeps the parked fiber ([`SpareFiber`]) for its next promising call, which rewrites the
//! call's part of the state and resumes it. So a call does not map, prepare or tear down a
//! stack and its first frames, nor set up an activation record: it takes the store's fiber,
//! writes its funcref, trampoline and arguments, and switches in; the fiber's resume installs
//! the fiber's activation (as for any resume), and the body's entry routine, which stays in
//! the activation's one entry frame (`entry::serve_resident`), calls the trampoline and parks
//! again when Wasm returns; a trap lands in the body, which takes it out of the activation
//! (left ready for the next call), parks, and enters the routine again for the next call. Calls in flight at the same time (on a `SharedStore`, or nested) take fibers of
//! their own from the engine's pool; the first to finish while the store has none parks its
//! fiber there, the others give their stacks back. A fiber that never ran (its call failed to
//! start) is kept the same way. A store keeps at most one stack, as it kept one spare stack
//! before fibers were kept started.
//!
//! The store context names the running call (`VMStoreContext::call`): that is how a suspending
//! import finds where to suspend to. It is null in synchronous calls, which is how a suspending
//! import knows it must trap instead.
//!
//! # Shadow stacks
//!
//! A call may carry a [`ShadowSp`]: a global of its store (a C or Rust module's
//! `__stack_pointer`) and the call's own value of it. `resume` installs that value before it
//! switches in and, when the fiber switches back (suspended, returned, trapped, or unwound by
//! cancellation, which is a resume too), saves the call's value and puts back the one it found.
//! So the global is switched with the stack, in the resumer's frame, and nested resumes (a call
//! polled from a suspending import's poll) restore in order. A call without one pays a test of
//! `None` per resume.
//!
//! # Cancellation
//!
//! A suspended call cannot simply be forgotten: its frames may own Rust values (the pinned
//! future, for one, which a timer may still reference). [`AsyncCall::cancel`] resumes it with
//! the `cancelled` flag: the suspending import gives up instead of polling, reports an error,
//! compiled code traps, and the landing pads unwind the Wasm frames while host frames return
//! normally, until the fiber's body returns. Only then does the stack go back to the pool.

use std::mem::MaybeUninit;
use std::ptr::{self, NonNull};
use std::task::{Context, Waker};

use weft_arch::ResidentCall;

use super::entry::{self, Activation, Recorded, TrapInfo, TrapReason, serve_resident};
use super::fiber::{
    Fiber, FiberBody, FiberStack, HOST_HEADROOM, PARKED, Switched, park, top_bytes,
};
use super::vmstructs::{FuncRefPtr, VMGlobal, VMStoreContext, ValRaw, lend_store};
use crate::store::StoreContext;

/// Value slots a call keeps in its state; calls with more parameters or results use a heap
/// buffer.
const INLINE_SLOTS: usize = 8;

/// The full size of a stack for promising calls with `max_wasm_stack` bytes of Wasm stack.
pub fn stack_size(max_wasm_stack: usize) -> usize {
    max_wasm_stack + HOST_HEADROOM + top_bytes::<CallState>() + 4096
}

/// A promising call's state, the payload of its fiber (see the module docs). Dropped by the
/// fiber with compiler-generated glue: a field added here that owns something is dropped too.
pub struct CallState {
    /// The fiber's stack: where to switch out to, the Wasm limit, the guard.
    pub(super) stack: FiberStack,
    /// The outer poll's context, set by every `resume`: valid while the call runs, dangling
    /// (and unread) while it is switched out.
    pub(super) cx: *mut Context<'static>,
    /// Set when the call's future is dropped: suspending imports must not suspend again.
    pub(super) cancelled: bool,
    /// The call's store context: the fiber's, for its whole life (a fiber serves one store).
    pub(super) store: NonNull<VMStoreContext>,
    /// The call, as the body's entry routine reads it on every resume: the trampoline, the
    /// callee's vmctx and code, and `slot_count` value slots (the inline ones, or
    /// `heap_slots`), written by `AsyncCall::new` for each call; and the fiber's stack top and
    /// `PARKED`, written once, for the switch out after each call.
    resident: ResidentCall,
    slot_count: usize,
    heap_slots: Option<Box<[ValRaw]>>,
    /// `Ok(())` until the body writes a trap there; read once by [`AsyncCall::take_outcome`].
    /// Not an `Option` that `resume` hands back by value: a finished call's common case then
    /// moves no `TrapInfo`-sized value through the poll. Boxed, so that dropping the state
    /// tests one pointer inline instead of calling the `TrapInfo` drop glue out of line.
    result: Result<(), Box<TrapInfo>>,
    /// The first `slot_count` are initialized (zeroed by `new`), unless `heap_slots` is used.
    /// Last, so that LLVM does not fold the uninitialized rest into its neighbours' writes.
    inline_slots: [MaybeUninit<ValRaw>; INLINE_SLOTS],
    /// The call's own shadow stack pointer, if it has one (see the module docs).
    shadow: Option<ShadowSp>,
    /// The fiber's one activation, set up with the fiber, which its calls enter Wasm in (see
    /// the module docs).
    activation: Activation,
}

/// A promising call's value of its store's shadow stack pointer global (see the module docs).
struct ShadowSp {
    /// A global of the call's store: boxed by the store, which outlives the call.
    global: NonNull<VMGlobal>,
    /// The call's value of it while the call is switched out (an `i32` global).
    value: u32,
    /// What the embedder-facing half needs to give the region back (an address or a slot).
    region: u32,
}

// SAFETY: nothing in the state is tied to a thread: `cx` is set and cleared within one resume
// (whose frame stays on its thread), the store context moves with its store, the funcref and
// trampoline are the store's and the engine's, and the slots and trap are plain data.
unsafe impl Send for CallState {}

impl FiberBody for CallState {
    /// One call per run, parking in between (see the module docs): the calls run in
    /// `serve_resident`, which parks after each of them itself and returns only with a trap;
    /// the trap is written into the state and the fiber parks here. No frame holds a value
    /// that needs dropping, or a reference into the state, across a switch (the entry
    /// routine's pointer to the `resident` call is raw, and the state stays in place).
    unsafe fn run(this: NonNull<Self>) {
        let state = this.as_ptr();
        loop {
            // SAFETY: the payload is valid while we run (the fiber's contract), at the top of
            // its stack. `AsyncCall::new` writes each call's trampoline, funcref and slots from
            // the store whose context this is, with slots for the function's parameters and
            // results, before `resume` lends that store, prepares the thread and switches in.
            // The activation is this fiber's and the fiber installs it as the innermost one
            // with its limit (`new_fiber`); it runs no Wasm between calls. `resident` names
            // this fiber's stack top.
            unsafe {
                let trap =
                    serve_resident(&raw mut (*state).activation, &raw const (*state).resident);
                (*state).result = Err(trap);
            }
            // SAFETY: on this fiber, whose resumer waits; nothing is held across (see above),
            // and this function touches no thread-local (`park` is inlined here).
            unsafe { park((*state).stack.switch_top) };
        }
    }
}

/// A store's parked promising-call fiber, if it has one (see the module docs). Dropping it
/// gives the stack back to its pool.
#[derive(Default)]
pub struct SpareFiber(Option<Fiber<CallState>>);

/// How an [`AsyncCall::resume`] ended.
pub enum Resumed {
    /// A suspending import is waiting: resume again when woken.
    Suspended,
    /// The call returned (results are in [`AsyncCall::slots`]) or trapped: see
    /// [`AsyncCall::take_outcome`].
    Finished,
}

/// A promising call's fiber and where it stands. See the module docs.
pub struct AsyncCall {
    fiber: Fiber<CallState>,
}

impl AsyncCall {
    /// A call of function `index` of `store`, a Wasm function, that runs when first resumed.
    /// Write the arguments into [`Self::slots`] first.
    ///
    /// The common case is inline: the store's parked fiber, a function called before (its
    /// trampoline known) with at most `INLINE_SLOTS` values. A parked fiber's state is idle
    /// (see [`CallState::is_idle`]), so only the call's fields are written: the trampoline,
    /// the funcref's address, the slots. Anything else goes through [`Self::new_slow`].
    ///
    /// # Errors
    /// If no stack can be mapped for it, or its type's trampoline cannot be compiled.
    ///
    /// # Panics
    /// If `slots` is fewer than the function's parameters or results, or `index` is a host
    /// function (see `call::callee`).
    #[inline(always)]
    pub fn new<T: 'static>(
        store: &mut StoreContext<T>,
        index: usize,
        slots: usize,
    ) -> crate::Result<AsyncCall> {
        let opaque = &mut store.opaque;
        let data = &opaque.funcs[index];
        let (trampoline, func_ref, needed) = (data.array_to_wasm, data.func_ref, data.slots);
        if trampoline != 0
            && slots <= INLINE_SLOTS
            && data.host.is_none()
            && slots >= needed
            && let Some(mut fiber) = opaque.spare_fiber.0.take()
        {
            fiber.rearm();
            // SAFETY: the payload of a fiber that is ours and runs nothing (just rearmed).
            unsafe { write_call(fiber.payload_ptr().as_ptr(), trampoline, func_ref, slots) };
            return Ok(AsyncCall { fiber });
        }
        Self::new_slow(store, index, slots)
    }

    /// [`Self::new`] without its conditions: compiles the trampoline if need be, checks the
    /// function, and makes a fiber if the store has none parked.
    #[cold]
    #[inline(never)]
    fn new_slow<T: 'static>(
        store: &mut StoreContext<T>,
        index: usize,
        slots: usize,
    ) -> crate::Result<AsyncCall> {
        let callee = super::call::callee(store, index, slots)?;
        let opaque = &mut store.opaque;
        let func_ref = opaque.funcs[index].func_ref;
        let context = NonNull::from(&*opaque.vm);
        let fiber = match opaque.spare_fiber.0.take() {
            Some(mut fiber) => {
                fiber.rearm();
                // SAFETY: the payload of a fiber that is ours and runs nothing (just rearmed).
                unsafe {
                    write_call(
                        fiber.payload_ptr().as_ptr(),
                        callee.trampoline,
                        func_ref,
                        slots,
                    )
                };
                fiber
            }
            None => new_fiber(opaque.engine.stack_pool(), context, |state| {
                // SAFETY: `new_fiber` hands us the new fiber's payload, ours.
                unsafe { write_call(state, callee.trampoline, func_ref, slots) }
            })?,
        };
        Ok(AsyncCall { fiber })
    }

    /// The value slots: arguments before the first resume, results after it finished.
    ///
    /// # Panics
    /// While the call is suspended (its Wasm frames use them).
    #[inline]
    pub fn slots(&mut self) -> &mut [ValRaw] {
        let state = self.fiber.payload_mut();
        // SAFETY: `new` pointed `resident.a2` at `slot_count` initialized slots of the state's
        // own (inline, or `heap_slots`), which we borrow with the state.
        unsafe {
            std::slice::from_raw_parts_mut(state.resident.a2 as *mut ValRaw, state.slot_count)
        }
    }

    /// Gives the call a shadow stack of its own: the store's global number `global` (an index
    /// into the store's globals) holds `value` whenever the call runs (see the module docs).
    /// `region` is handed back by [`Self::shadow_region`].
    ///
    /// # Panics
    /// If the call has started, `store` is not the call's store, or `global` is not one of its
    /// globals.
    pub fn set_shadow_stack<T: 'static>(
        &mut self,
        store: &StoreContext<T>,
        global: usize,
        value: u32,
        region: u32,
    ) {
        assert!(
            !self.fiber.is_suspended() && !self.fiber.is_finished(),
            "a shadow stack set on a running call"
        );
        let state = self.fiber.payload_mut();
        assert!(
            state.store == NonNull::from(&*store.opaque.vm),
            "a shadow stack from another store"
        );
        // Boxed by the store, which the call cannot outlive: the address stays valid.
        let global: &VMGlobal = &store.opaque.globals[global].cell;
        state.shadow = Some(ShadowSp {
            global: NonNull::from(global),
            value,
            region,
        });
    }

    /// The region given to [`Self::set_shadow_stack`], if any (also while suspended).
    #[inline]
    pub fn shadow_region(&self) -> Option<u32> {
        let state = self.fiber.payload_ptr().as_ptr();
        // SAFETY: the payload is the fiber's and live until `finish`; while the body is
        // switched out (or not started, or finished) nothing writes it, and the body only ever
        // reads `shadow`, which `resume` alone writes.
        unsafe { (*state).shadow.as_ref().map(|s| s.region) }
    }

    /// Whether the call has frames on its stack: started and not finished.
    #[inline(always)]
    pub fn is_suspended(&self) -> bool {
        self.fiber.is_suspended()
    }

    /// Runs the call until it suspends or finishes, with `store` lent to it and `cx` as the
    /// context its suspending imports poll their futures with; `cancel` makes them give up
    /// instead.
    ///
    /// Always inlined, so that the switch ends up in the caller's `Future::poll` (see
    /// `Fiber::resume`).
    ///
    /// # Panics
    /// If the call has finished, or `store` is not the store it was created for.
    #[inline(always)]
    pub fn resume<T: 'static>(
        &mut self,
        store: &mut StoreContext<T>,
        cx: &mut Context<'_>,
        cancel: bool,
    ) -> Resumed {
        // Once per thread; afterwards a flag test. Needed here, not only at the first entry:
        // the call may come back on a thread that never ran Wasm.
        entry::prepare_thread();
        let state = self.fiber.payload_ptr().as_ptr();
        let context = lend_store(store);
        // SAFETY: the payload is the fiber's; while the body is switched out only we touch it.
        // The store context is checked to be the call's own, and `lend_store` lent us its store
        // for the whole resume (we hold `&mut StoreContext`). Everything written here is read
        // by the body only while we wait in `Fiber::resume`, and `cx` outlives that wait.
        unsafe {
            assert!(
                (*state).store == context,
                "a promising call resumed with another store"
            );
            let context = context.as_ref();
            (*state).cx = ptr::from_mut(cx).cast();
            (*state).cancelled |= cancel;
            let outer_call = context.call.get().replace(state);
            // Out of line: a call without a shadow stack pays one test each way.
            let shadowed = (*state).shadow.is_some();
            let outer_shadow = if shadowed { switch_shadow_in(state) } else { 0 };
            let switched = self.fiber.resume(context, 0);
            if shadowed {
                switch_shadow_out(state, outer_shadow);
            }
            context.call.get().write(outer_call);
            match switched {
                Switched::Suspended => Resumed::Suspended,
                Switched::Finished => Resumed::Finished,
            }
        }
    }

    /// How the call ended, once [`Self::resume`] returned [`Resumed::Finished`]: `Ok(())` if
    /// Wasm returned, else its trap (taken: a second call returns `Ok(())`).
    ///
    /// # Panics
    /// If the call has not finished.
    #[inline]
    pub fn take_outcome(&mut self) -> Result<(), Box<TrapInfo>> {
        assert!(self.fiber.is_finished(), "the call has not finished");
        // Boxed as the state holds it: the common case moves one null word.
        std::mem::replace(&mut self.fiber.payload_mut().result, Ok(()))
    }

    /// Unwinds a suspended call (see the module docs); nothing if it is not. [`Self::finish`]
    /// does this too; calling it first lets the caller borrow the store's spare stack only
    /// once no host code runs.
    ///
    /// Returns the payload of a panic raised while unwinding (an import future's `Drop`, a host
    /// frame on the way out), for the caller to re-raise once the stack is given back.
    #[inline]
    pub fn cancel<T: 'static>(
        &mut self,
        store: &mut StoreContext<T>,
    ) -> Option<Box<dyn std::any::Any + Send>> {
        if self.is_suspended() {
            self.unwind(store)
        } else {
            None
        }
    }

    #[cold]
    #[inline(never)]
    fn unwind<T: 'static>(
        &mut self,
        store: &mut StoreContext<T>,
    ) -> Option<Box<dyn std::any::Any + Send>> {
        let mut cx = Context::from_waker(Waker::noop());
        while self.is_suspended() {
            // Whatever the trap or error, the call is abandoned; not a panic (below).
            let _ = self.resume(store, &mut cx, true);
        }
        match self.take_outcome().map_err(|trap| *trap) {
            Err(TrapInfo {
                reason: TrapReason::Recorded(Recorded::Panic(panic)),
                ..
            }) => Some(panic),
            _ => None,
        }
    }

    /// Gives the stack back to the store's spare slot or its engine's pool, cancelling a
    /// suspended call first (see the module docs).
    ///
    /// # Panics
    /// Re-raises a panic that cancelling raised (an import future's `Drop` that panicked),
    /// once the call is unwound and its stack given back: a `Drop` may panic, and weft
    /// does not swallow it. Unless this thread is already panicking (a call future dropped
    /// during unwinding): a second panic would abort the process, so it is dropped then, after
    /// the panic hook has printed it.
    #[inline(always)] // into `promising::finish`: its common case is a few tests
    pub fn finish<T: 'static>(self, store: &mut StoreContext<T>) {
        let spare = &mut store.opaque.spare_fiber.0;
        if spare.is_none() && self.fiber.is_finished() && self.fiber.is_reusable() {
            let state = self.fiber.payload_ptr().as_ptr();
            // SAFETY: a parked fiber's payload is ours (its frames hold no reference into it).
            if unsafe { (*state).is_idle() } {
                // The common case: parked, with nothing of the call to give back.
                *spare = Some(self.fiber);
                return;
            }
        }
        self.finish_slow(store)
    }

    /// [`Self::finish`] of a call that is suspended, returned with a trap or heap slots, or
    /// that the store cannot keep.
    #[cold]
    #[inline(never)]
    fn finish_slow<T: 'static>(mut self, store: &mut StoreContext<T>) {
        let panic = self.cancel(store);
        let spare = &mut store.opaque.spare_fiber.0;
        if spare.is_none() && self.fiber.is_reusable() {
            self.fiber.payload_mut().make_idle();
            *spare = Some(self.fiber);
        } else {
            self.fiber.finish();
        }
        if let Some(panic) = panic {
            resume_cancel_panic(panic);
        }
    }
}

impl CallState {
    /// Whether the state holds nothing of a call that the next one would have to drop or
    /// reset: how a parked fiber is kept, and a new one made, so that `AsyncCall::new` writes
    /// only the call's own fields. (`cx` is null whenever no resume runs, and `store` is the
    /// fiber's for its whole life.)
    #[inline(always)]
    fn is_idle(&self) -> bool {
        !self.cancelled && self.heap_slots.is_none() && self.result.is_ok() && self.shadow.is_none()
    }

    /// Makes the state idle (see [`Self::is_idle`]).
    fn make_idle(&mut self) {
        self.cancelled = false;
        self.heap_slots = None;
        self.result = Ok(());
        self.shadow = None;
    }
}

/// Writes a call's own fields into an idle state (see [`CallState::is_idle`]), heap slots if
/// it needs more than `INLINE_SLOTS`, and zeroes its slots.
///
/// # Safety
/// `state` is an idle fiber payload that only the caller touches (nothing runs on the fiber),
/// or, for a new fiber, a payload whose other fields are written too.
#[inline(always)]
unsafe fn write_call(state: *mut CallState, trampoline: usize, func_ref: FuncRefPtr, slots: usize) {
    // SAFETY: per the contract. Field by field rather than a struct write, which would build
    // the ~300-byte state in this frame and copy it.
    unsafe {
        let func_ref = func_ref.read();
        let resident = &raw mut (*state).resident;
        (&raw mut (*resident).callee).write(trampoline);
        (&raw mut (*resident).a0).write(func_ref.vmctx as usize);
        (&raw mut (*resident).a1).write(func_ref.wasm_call as usize);
        (&raw mut (*state).slot_count).write(slots);
        let inline = (&raw mut (*state).inline_slots).cast::<ValRaw>();
        if slots > INLINE_SLOTS {
            let mut heap = vec![ValRaw::default(); slots].into_boxed_slice();
            (&raw mut (*resident).a2).write(heap.as_mut_ptr() as usize);
            (&raw mut (*state).heap_slots).write(Some(heap));
        } else {
            (&raw mut (*resident).a2).write(inline as usize);
            for i in 0..slots {
                inline.add(i).write(ValRaw::default());
            }
        }
    }
}

/// A fiber on a new stack from `pool` for the store whose context is `context`, its state
/// idle (see [`CallState::is_idle`]) but for the call's fields, which `write_call` writes (see
/// `AsyncCall::new`). Out of line: the first call of a store, or one of several in flight.
#[inline(never)]
fn new_fiber(
    pool: &weft_arch::StackPool,
    context: NonNull<VMStoreContext>,
    write_call: impl FnOnce(*mut CallState),
) -> crate::Result<Fiber<CallState>> {
    let stack = pool.allocate().map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::QuotaExceeded => " (Config::max_async_stacks)",
            _ => "",
        };
        crate::Error::ResourceLimit(format!("no stack for a promising call: {e}{hint}"))
    })?;
    let mut limit = 0;
    let init = |state: *mut CallState, stack: FiberStack| {
        limit = stack.wasm_limit;
        // SAFETY: `state` is the new fiber's payload, ours; `write_call` writes the call's
        // fields, this the rest.
        unsafe {
            (&raw mut (*state).cx).write(ptr::null_mut());
            (&raw mut (*state).cancelled).write(false);
            (&raw mut (*state).store).write(context);
            (&raw mut (*state).heap_slots).write(None);
            (&raw mut (*state).result).write(Ok(()));
            (&raw mut (*state).shadow).write(None);
            (&raw mut (*state).resident.stack_top).write(stack.switch_top);
            (&raw mut (*state).resident.yield_value).write(PARKED);
            write_call(state);
            (&raw mut (*state).activation).write(Activation::resident(
                context.as_ptr(),
                stack.wasm_limit,
                stack.guard.clone(),
            ));
            (&raw mut (*state).stack).write(stack);
        }
    };
    // SAFETY: `init` writes every field of the payload.
    let mut fiber = unsafe { Fiber::new(stack, init) };
    // SAFETY: the activation is the payload's, on the fiber's stack, of the call's store (a
    // fiber serves one store), and the fiber has not started.
    unsafe {
        let activation = &raw mut (*fiber.payload_ptr().as_ptr()).activation;
        fiber.set_activation(activation, limit);
    }
    Ok(fiber)
}

/// Puts the call's shadow stack pointer in its global; returns the value it replaces.
///
/// # Safety
/// `state` is a call's state, with a shadow stack, that only the caller (its resumer, holding
/// the call's store) touches.
#[inline(never)]
unsafe fn switch_shadow_in(state: *mut CallState) -> u32 {
    // SAFETY: per the contract; the global is the call's store's (`set_shadow_stack` checked),
    // boxed while the store lives, and the store is lent to our caller.
    unsafe {
        let shadow = (*state).shadow.as_ref().expect("a shadow stack");
        let global = shadow.global.as_ref();
        let outer = global.get() as u32;
        global.set(u128::from(shadow.value));
        outer
    }
}

/// Saves the call's shadow stack pointer and puts `outer` back in its global.
///
/// # Safety
/// As for [`switch_shadow_in`], after the fiber switched back out.
#[inline(never)]
unsafe fn switch_shadow_out(state: *mut CallState, outer: u32) {
    // SAFETY: as in `switch_shadow_in`.
    unsafe {
        let shadow = (*state).shadow.as_mut().expect("a shadow stack");
        let global = shadow.global.as_ref();
        shadow.value = global.get() as u32;
        global.set(u128::from(outer));
    }
}

/// See [`AsyncCall::finish`].
#[cold]
#[inline(never)]
fn resume_cancel_panic(panic: Box<dyn std::any::Any + Send>) {
    if !std::thread::panicking() {
        std::panic::resume_unwind(panic);
    }
}
