//! Fibers: a stack that code runs on and switches out of in the middle, with the
//! per-activation state that goes with it.
//!
//! A [`Fiber<P>`] is a pooled `weft_arch::Stack`, a payload `P` at the top of that stack, and
//! the saved state of the switch. Its first [`Fiber::resume`] runs [`FiberBody::run`] on the
//! stack with a pointer to the payload; the body switches back out with [`switch_out`], and the
//! fiber is finished when `run` returns. A fiber knows nothing about futures, wakers or Wasm
//! calls: a promising call (`async_call`) is one body, and typed continuations (the
//! stack-switching proposal) will be others, resumed from inside a promising call's fiber.
//!
//! ```text
//!   stack top ──▶ ┌───────────────────────────┐
//!                 │ innermost activation,     │  the fiber's per-activation state;
//!                 │ stack limit               │
//!                 │ sp, flags, stack handle   │  the rest of the `Fiber`'s state
//!                 │ payload P                 │  written by `Fiber::new`'s initializer
//!   switch top ─▶ ├───────────────────────────┤
//!                 │ switcher words, frames …  │  init_stack / fiber_start / the body
//!                 ⋮                           ⋮
//!   Wasm limit ─▶ ├───────────────────────────┤  [`FiberStack::wasm_limit`]
//!                 │ HOST_HEADROOM             │  host functions called from Wasm
//!                 ├───────────────────────────┤
//!                 │ guard page                │  [`FiberStack::guard`]
//!                 └───────────────────────────┘
//! ```
//!
//! # Switching and per-activation state
//!
//! Two things describe "the Wasm running on this thread": the thread-local innermost
//! activation (`entry::replace_current`; the signal handler reads it, and so do builtins
//! reporting to their activation) and the store context's `stack_limit`. A fiber carries its
//! own of both. [`Fiber::resume`] installs them, switches in, and when the fiber switches back
//! (suspended or finished), saves its innermost activation and reinstalls the resumer's two.
//! The fiber's stack limit needs no saving: every activation on a fiber's stack runs with the
//! fiber's limit (the resident one has it, and an entry nested on the fiber inherits it from
//! the activation below), so it is fixed, set with the activation ([`Fiber::set_activation`]).
//! All of this happens in the resumer's frame, which never changes threads during a switch;
//! the fiber side only switches from frames that touch no thread-local across the switch
//! ([`switch_out`], never inlined, or [`switch_out_in_place`] in a frame that keeps the rule),
//! so nothing computed on one thread is reused on another after a suspended fiber resumes
//! elsewhere.
//!
//! # Parking
//!
//! A body may run many times on one stack: it ends a run by [`park`]ing instead of returning,
//! and the fiber is then finished for its owner ([`Fiber::is_finished`]) while its frames stay
//! on the stack, holding nothing that needs dropping and no reference into the payload. The
//! owner may rewrite the payload, [`Fiber::rearm`] the fiber and resume it: `park` returns on
//! the fiber's side and the body starts its next run from there, with its stack, its first
//! frames and its saved per-activation state already in place. That is how a store keeps one
//! started fiber for its promising calls (`async_call`): a call costs a switch each way, not a
//! new stack frame and its teardown. A parked fiber may also be retired like a finished one:
//! its frames are abandoned, which is sound because they own nothing.
//!
//! # Ownership
//!
//! The payload is an ordinary Rust value that the fiber owns: [`Fiber::finish`] (or dropping
//! the fiber) drops it with `drop_in_place`, so every field that owns something is dropped by
//! compiler-generated glue. A suspended fiber is the exception: its frames may still refer to
//! its stack and payload (a pinned future registered with a timer, say), so neither may be
//! reused; whoever owns it must unwind it first (the promising call cancels), or both leak.
//! A retired fiber's stack goes back to the pool it came from (the stack knows it), whether
//! through [`Fiber::finish`] or by dropping the fiber.

use std::marker::PhantomData;
use std::ops::Range;
use std::ptr::{self, NonNull};

use weft_arch::Stack;

use super::entry::{Activation, replace_current_in_resumer};
use super::vmstructs::VMStoreContext;

/// Stack kept below the Wasm stack limit of a fiber for host functions called from Wasm (and
/// the code they call: a future's poll, a compile, an allocation).
pub const HOST_HEADROOM: usize = 64 * 1024;

/// What code running on a fiber knows about its stack.
#[derive(Clone, Debug)]
pub struct FiberStack {
    /// The top given to `init_stack`, which [`switch_out`] needs.
    pub switch_top: usize,
    /// The Wasm stack limit for activations on this fiber: [`HOST_HEADROOM`] above the bottom.
    pub wasm_limit: usize,
    /// The stack's guard page(s), for the signal handler (see `entry::Activation`).
    pub guard: Range<usize>,
}

/// The code a fiber runs, with its payload as `Self`.
pub trait FiberBody: Sized {
    /// Runs on the fiber's stack from its first resume; the fiber is finished when this
    /// returns, or each time it calls [`park`] (see the module docs). Must not unwind (it is
    /// called from an `extern "C"` frame).
    ///
    /// # Safety
    /// `this` is the fiber's initialized payload, valid until `run` returns (or the fiber,
    /// parked, is retired). The resumer may read and write it through the same pointer while
    /// `run` is switched out, so `run` keeps no reference into it across [`switch_out`] or
    /// [`park`].
    unsafe fn run(this: NonNull<Self>);
}

/// How a [`Fiber::resume`] ended.
pub enum Switched {
    /// The body called [`switch_out`]: resume again later.
    Suspended,
    /// The body returned, or parked (see the module docs).
    Finished,
}

/// Where a fiber's body stands, for its owner: one byte, so that each of the `is_*` tests is
/// one compare and the owner's successive tests of one state fold into each other.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
enum Phase {
    /// Not resumed since it was made or last rearmed: the next resume starts the body, or
    /// returns from its `park`.
    Ready,
    /// Resumed, in the middle of a run: running, or switched out by [`switch_out`].
    Running,
    /// The body parked: finished for the owner, ready to be rearmed (see the module docs).
    Parked,
    /// The body returned: its frames are gone.
    Returned,
}

/// What a fiber keeps at the top of its own stack (see the module docs): all of its state, so
/// that a [`Fiber`], which the call future moves around, is one pointer.
#[repr(C)]
struct FiberTop<P> {
    /// The fiber's innermost activation while it is switched out (null: none).
    current: *mut Activation,
    /// The store's stack limit whenever the fiber runs (see the module docs).
    stack_limit: usize,
    /// Saved stack pointer of the suspended, parked or not yet started fiber (stale once the
    /// body returned).
    sp: usize,
    phase: Phase,
    /// The handle of the stack this lives on, read out when the fiber is retired.
    stack: Stack,
    payload: P,
}

/// A stack with a body to run on it: a pointer to the state at the stack's top. See the module
/// docs.
pub struct Fiber<P: FiberBody> {
    top: NonNull<FiberTop<P>>,
    _owns: PhantomData<P>,
}

// SAFETY: the fiber owns its stack and payload; nothing in them is tied to a thread (the
// per-activation state is reinstalled on whichever thread resumes it), provided the payload
// may move between threads. Running it is `resume`'s business, which needs `&mut self`.
unsafe impl<P: FiberBody + Send> Send for Fiber<P> {}
// SAFETY: `&Fiber` exposes only `is_*` flags and the payload's address, never the payload.
unsafe impl<P: FiberBody> Sync for Fiber<P> {}

/// Bytes a fiber with payload `P` keeps at the top of its stack.
pub const fn top_bytes<P>() -> usize {
    size_of::<FiberTop<P>>().next_multiple_of(weft_arch::STACK_ALIGNMENT)
}

impl<P: FiberBody> Fiber<P> {
    /// A fiber on `stack` (nothing may run on it), whose payload `init` writes.
    ///
    /// # Safety
    /// `init` must initialize the whole payload it is handed (it also gets the fiber's
    /// [`FiberStack`] to keep what the body needs of it).
    pub unsafe fn new(stack: Stack, init: impl FnOnce(*mut P, FiberStack)) -> Fiber<P> {
        const { assert!(align_of::<FiberTop<P>>() <= weft_arch::STACK_ALIGNMENT) };
        let switch_top = stack.top() - top_bytes::<P>();
        let top = switch_top as *mut FiberTop<P>;
        let fiber_stack = FiberStack {
            switch_top,
            wasm_limit: stack.usable().start + HOST_HEADROOM,
            guard: stack.guard(),
        };
        // SAFETY: `top` is aligned (below a 16-aligned top by a multiple of 16) and on a stack
        // that is ours, with nothing running on it. `switch_top` is 16-aligned, the stack below
        // it is ours and unused, and `fiber_start::<P>` gets the payload `init` initializes
        // (the caller's contract).
        unsafe {
            (&raw mut (*top).current).write(ptr::null_mut());
            (&raw mut (*top).stack_limit).write(usize::MAX);
            (&raw mut (*top).stack).write(stack);
            init(&raw mut (*top).payload, fiber_stack);
            let sp = weft_arch::init_stack(switch_top, fiber_start::<P>, top as usize);
            (&raw mut (*top).sp).write(sp);
            (&raw mut (*top).phase).write(Phase::Ready);
        }
        Fiber {
            // SAFETY: derived from a non-null stack address.
            top: unsafe { NonNull::new_unchecked(top) },
            _owns: PhantomData,
        }
    }

    /// The state at the top of the stack, live while `self` is.
    #[inline(always)]
    fn top(&self) -> *mut FiberTop<P> {
        self.top.as_ptr()
    }

    /// The payload's address, for the resumer's raw access while the body is switched out.
    #[inline(always)]
    pub fn payload_ptr(&self) -> NonNull<P> {
        // SAFETY: a field of the live top; no reference is made.
        unsafe { NonNull::new_unchecked(&raw mut (*self.top()).payload) }
    }

    /// The payload, while the body has no frames that may use it: before the first resume,
    /// parked, or finished.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut P {
        assert!(
            !self.is_suspended(),
            "the payload of a suspended fiber is its body's"
        );
        // SAFETY: initialized by `new`, dropped only when `self` is; no frame of the body
        // uses it (see above); `&mut self` excludes others.
        unsafe { &mut (*self.top()).payload }
    }

    /// Where `switch_out` must switch from: just below the top.
    #[inline(always)]
    fn switch_top(&self) -> usize {
        self.top() as usize
    }

    /// Makes `activation` the fiber's innermost activation, and `stack_limit` (the
    /// activation's) the store's, whenever the fiber runs: the state a body that stays in one
    /// activation across runs (`entry::serve_resident`) starts from. A new fiber starts with
    /// none.
    ///
    /// # Safety
    /// `activation` stays live and in place while the fiber runs (on the fiber's own stack,
    /// say), is an activation of the store the fiber runs for, with this limit, and no
    /// activation of the body is running (the fiber has not started, or is parked).
    pub unsafe fn set_activation(&mut self, activation: *mut Activation, stack_limit: usize) {
        assert!(self.is_reusable(), "an activation set on a running fiber");
        // SAFETY: the owner's fields of the live top, which the body does not touch.
        unsafe {
            (*self.top()).current = activation;
            (*self.top()).stack_limit = stack_limit;
        }
    }

    /// Whether the body has frames on the stack that are in the middle of a run: started, not
    /// parked, not returned.
    #[inline(always)]
    pub fn is_suspended(&self) -> bool {
        self.phase() == Phase::Running
    }

    /// The owner's view of the body (see [`Phase`]).
    #[inline(always)]
    fn phase(&self) -> Phase {
        // SAFETY: the owner's field of the live top; only the owner touches it.
        unsafe { (*self.top()).phase }
    }

    /// Whether the body has returned or parked.
    #[inline(always)]
    pub fn is_finished(&self) -> bool {
        self.phase() >= Phase::Parked
    }

    /// Whether the body can run (again) from where it is: never resumed, or parked.
    #[inline(always)]
    pub fn is_reusable(&self) -> bool {
        matches!(self.phase(), Phase::Ready | Phase::Parked)
    }

    /// Makes a reusable fiber ready to run its body again: the next [`Self::resume`] returns
    /// from its [`park`] (or starts it, if it never ran). Rewrite the payload first.
    ///
    /// # Panics
    /// If the fiber is not reusable.
    #[inline(always)]
    pub fn rearm(&mut self) {
        assert!(self.is_reusable(), "rearming a fiber that is not parked");
        // SAFETY: the owner's field of the live top; only the owner touches it.
        unsafe { (*self.top()).phase = Phase::Ready };
    }

    /// Runs the body until it switches out or returns, passing `value` to it (what `switch_out`
    /// returns on the fiber's side; ignored by the first resume).
    ///
    /// Always inlined, so that it ends up in the caller's `Future::poll`: the resumer then
    /// returns from no frame between the switch out and the next switch in, which keeps the
    /// fiber's own returns predicted (see `weft_arch`'s docs on `ret` after a switch).
    ///
    /// # Safety
    /// `store` is the context of the store whose Wasm runs on this fiber, lent exclusively to
    /// this resume: nothing else reads or writes it until `resume` returns. Whatever the body
    /// expects of the resumer (in the payload) is in place. This thread has run
    /// `entry::prepare_thread`.
    ///
    /// # Panics
    /// If the fiber is finished.
    #[inline(always)]
    pub unsafe fn resume(&mut self, store: &VMStoreContext, value: usize) -> Switched {
        assert!(!self.is_finished(), "resuming a finished fiber");
        let top = self.top();
        // SAFETY: the store is lent to us (the caller's contract) and the fiber's saved state
        // is its own (only `resume` touches it; the body touches only the payload). This frame
        // stays on its thread across the switch, so the thread-local swaps may be inlined.
        unsafe {
            let outer_current = replace_current_in_resumer((*top).current);
            let outer_limit = store.stack_limit.get().replace((*top).stack_limit);
            (*top).phase = Phase::Running;
            let (how, sp) = weft_arch::switch_and_link(value, (*top).sp, self.switch_top());
            // Back on the resumer's side (same thread): save the fiber's innermost activation
            // (its limit is fixed), reinstall ours.
            (*top).current = replace_current_in_resumer(outer_current);
            store.stack_limit.get().write(outer_limit);
            match sp {
                Some(sp) => {
                    (*top).sp = sp;
                    if how == PARKED {
                        (*top).phase = Phase::Parked;
                        Switched::Finished
                    } else {
                        Switched::Suspended
                    }
                }
                None => {
                    (*top).phase = Phase::Returned;
                    Switched::Finished
                }
            }
        }
    }

    /// Drops the payload and gives the stack back to its pool. A suspended fiber is leaked
    /// instead (see the module docs): unwind it first. The same as dropping it.
    pub fn finish(self) {}
}

impl<P: FiberBody> Drop for Fiber<P> {
    /// Drops the payload and gives the stack back, unless the fiber is suspended (then both
    /// leak).
    fn drop(&mut self) {
        if self.is_suspended() {
            return;
        }
        let top = self.top();
        // SAFETY: the payload was initialized by `new` and is dropped once, here; no frame of
        // the body is left, or those of a parked body, which own nothing and are abandoned
        // with the stack. The stack handle is read out before the stack is given back, and
        // nothing touches the top afterwards.
        unsafe {
            ptr::drop_in_place(&raw mut (*top).payload);
            let stack = (&raw const (*top).stack).read();
            stack.give_back();
        }
    }
}

/// The first frame of every fiber (see `weft_arch::StackEntry`).
///
/// # Safety
/// `arg` is the `FiberTop` whose payload `Fiber::new` initialized, and `resume` installed the
/// per-activation state before switching here.
unsafe extern "C" fn fiber_start<P: FiberBody>(arg: usize, _value: usize, _top: usize) -> usize {
    let top = arg as *mut FiberTop<P>;
    // SAFETY: see above; the payload lives at the top of this stack until the fiber is retired,
    // which cannot happen while its body runs.
    unsafe { P::run(NonNull::new_unchecked(&raw mut (*top).payload)) };
    0
}

/// What [`park`] hands the resumer, telling it from a suspension (0). A body that switches
/// out by other means (`entry::serve_resident`) hands it the same.
pub(super) const PARKED: usize = 1;

/// Ends the body's run without returning (see the module docs): switches out to the resumer,
/// for whom the fiber is finished. Returns when the fiber is rearmed and resumed, with the value
/// of that resume.
///
/// Always inlined, into the body's loop: the switch then jumps out and back in with no call
/// and no `ret`, so the resumer's returns stay predicted (a `ret` from here after the switch
/// would go to a call site the CPU's return-stack predictor did not push; see `weft_arch`'s
/// docs). The price: it may return on another thread, so the function it is inlined into must
/// not use a thread-local (its address could be computed once and reused across the switch).
///
/// # Safety
/// As for [`switch_out`]; moreover the body's frames own nothing that needs dropping and hold
/// no reference into the payload across the call (the fiber may be retired meanwhile), and
/// the calling function touches no thread-local (see above).
#[inline(always)]
pub unsafe fn park(switch_top: usize) -> usize {
    // SAFETY: per the contract, as in `switch_out`.
    unsafe { weft_arch::switch_yield(PARKED, switch_top) }
}

/// Switches out of the running fiber to its resumer; returns the value it is resumed with.
///
/// Never inlined, and touches no thread-local: it may return on another thread.
///
/// # Safety
/// Must run on the fiber whose [`FiberStack::switch_top`] is `switch_top`, while its resumer
/// waits in [`Fiber::resume`].
#[inline(never)]
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "the general way out for bodies; suspending imports switch in place"
    )
)]
pub unsafe fn switch_out(switch_top: usize) -> usize {
    // SAFETY: per the contract, we are on that stack and its resumer waits in switch_and_link.
    unsafe { weft_arch::switch_yield(0, switch_top) }
}

/// [`switch_out`] inlined into the calling frame: no call, no frame of its own, and no return
/// after the switch back (each such return mispredicts when the resumer ran other code in
/// between; see `weft_arch`'s docs on `ret` after a switch). The calling frame saves the
/// registers the switch clobbers, if it has not already.
///
/// # Safety
/// As for [`switch_out`]; moreover the calling frame (with whatever is inlined into it) must not
/// use after this a thread-local address it computed before: the switch may return on another
/// thread.
#[inline(always)]
pub unsafe fn switch_out_in_place(switch_top: usize) -> usize {
    // SAFETY: per the contract, as in `switch_out`.
    unsafe { weft_arch::switch_yield(0, switch_top) }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use weft_arch::{StackConfig, StackPool};

    use super::*;

    /// A payload that owns something (a counter it bumps when dropped) and suspends `rounds`
    /// times before returning, or before parking if `park` is set (then each run after a
    /// rearm suspends `rounds` times again).
    struct Counted {
        drops: Arc<AtomicUsize>,
        stack: FiberStack,
        rounds: usize,
        ran: usize,
        park: bool,
        runs: usize,
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.drops.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl FiberBody for Counted {
        unsafe fn run(this: NonNull<Self>) {
            let this = this.as_ptr();
            // SAFETY: the payload is valid while we run; no reference is held across switches,
            // and the frames own nothing when parking.
            unsafe {
                loop {
                    (*this).runs += 1;
                    while (*this).ran < (*this).rounds {
                        (*this).ran += 1;
                        switch_out((*this).stack.switch_top);
                    }
                    if !(*this).park {
                        return;
                    }
                    park((*this).stack.switch_top);
                }
            }
        }
    }

    fn fiber(pool: &StackPool, drops: &Arc<AtomicUsize>, rounds: usize) -> Fiber<Counted> {
        let drops = drops.clone();
        // SAFETY: the initializer writes the whole payload.
        unsafe {
            Fiber::new(pool.allocate().unwrap(), |payload: *mut Counted, stack| {
                payload.write(Counted {
                    drops,
                    stack,
                    rounds,
                    ran: 0,
                    park: false,
                    runs: 0,
                })
            })
        }
    }

    /// Runs `fiber` to its end, with a store context of its own.
    fn run_to_end(fiber: &mut Fiber<Counted>) -> usize {
        let store = VMStoreContext::new_for_tests();
        super::super::entry::prepare_thread();
        let mut suspensions = 0;
        // SAFETY: the store context is ours alone; the body expects nothing of the resumer.
        while let Switched::Suspended = unsafe { fiber.resume(&store, 0) } {
            suspensions += 1;
        }
        suspensions
    }

    #[test]
    fn finished_fiber_drops_its_payload_once_and_returns_its_stack() {
        let pool = StackPool::new(StackConfig::default());
        let drops = Arc::new(AtomicUsize::new(0));
        let mut f = fiber(&pool, &drops, 3);
        let top = f.switch_top();
        assert_eq!(run_to_end(&mut f), 3);
        assert!(f.is_finished() && !f.is_reusable());
        assert_eq!(f.payload_mut().ran, 3);
        f.finish();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        // The stack is back, warm on this thread: the next fiber gets the same one.
        let g = fiber(&pool, &drops, 0);
        assert_eq!(g.switch_top(), top);
        g.finish();
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn fiber_never_resumed_still_drops_its_payload() {
        let pool = StackPool::new(StackConfig::default());
        let drops = Arc::new(AtomicUsize::new(0));
        fiber(&pool, &drops, 1).finish();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        // Dropped without `finish`: the payload is dropped all the same.
        drop(fiber(&pool, &drops, 1));
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn suspended_fiber_is_leaked_not_reused() {
        let pool = StackPool::new(StackConfig::default());
        let drops = Arc::new(AtomicUsize::new(0));
        let mut f = fiber(&pool, &drops, 2);
        let top = f.switch_top();
        let store = VMStoreContext::new_for_tests();
        super::super::entry::prepare_thread();
        // SAFETY: as in `run_to_end`.
        let switched = unsafe { f.resume(&store, 0) };
        assert!(matches!(switched, Switched::Suspended));
        assert!(!f.is_reusable());
        f.finish();
        assert_eq!(
            drops.load(Ordering::SeqCst),
            0,
            "its frames may still use it"
        );
        let g = fiber(&pool, &drops, 0);
        assert_ne!(g.switch_top(), top);
        g.finish();
    }

    #[test]
    fn parked_fiber_runs_its_body_again_on_the_same_frames_after_a_rearm() {
        let pool = StackPool::new(StackConfig::default());
        let drops = Arc::new(AtomicUsize::new(0));
        let mut f = fiber(&pool, &drops, 2);
        f.payload_mut().park = true;
        let top = f.switch_top();
        for run in 1..=3 {
            assert_eq!(run_to_end(&mut f), 2);
            assert!(f.is_finished() && !f.is_suspended() && f.is_reusable());
            let payload = f.payload_mut();
            assert_eq!((payload.runs, payload.ran), (run, 2));
            payload.ran = 0;
            f.rearm();
            assert!(!f.is_finished() && !f.is_suspended());
        }
        assert_eq!(f.switch_top(), top);
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        // A parked fiber (here rearmed, not resumed) is retired like a finished one.
        f.finish();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        let g = fiber(&pool, &drops, 0);
        assert_eq!(g.switch_top(), top, "its stack went back to the pool");
        g.finish();
    }

    #[test]
    #[should_panic(expected = "resuming a finished fiber")]
    fn parked_fiber_is_not_resumed_without_a_rearm() {
        let pool = StackPool::new(StackConfig::default());
        let drops = Arc::new(AtomicUsize::new(0));
        let mut f = fiber(&pool, &drops, 0);
        f.payload_mut().park = true;
        run_to_end(&mut f);
        run_to_end(&mut f);
    }
}
