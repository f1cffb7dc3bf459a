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
//!                 │ saved per-activation state│  the fiber's, while it is switched out
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
//! Three things describe "the Wasm running on this thread": the thread-local innermost
//! activation the signal handler reads (`entry::replace_current`), and the store context's
//! `stack_limit` and `activation`. A fiber carries its own copies of all three.
//! [`Fiber::resume`] installs them, switches in, and when the fiber switches back (suspended or
//! finished), saves them and reinstalls the resumer's. All of this happens in the resumer's
//! frame, which never changes threads during a switch; the fiber side only calls
//! [`switch_out`], a never-inlined function that touches no thread-local, so nothing computed on
//! one thread is reused on another after a suspended fiber resumes elsewhere.
//!
//! # Ownership
//!
//! The payload is an ordinary Rust value that the fiber owns: [`Fiber::finish`] (or dropping
//! the fiber) drops it with `drop_in_place`, so every field that owns something is dropped by
//! compiler-generated glue. A suspended fiber is the exception: its frames may still refer to
//! its stack and payload (a pinned future registered with a timer, say), so neither may be
//! reused; whoever owns it must unwind it first (the promising call cancels), or both leak.
//! The stack goes back to the pool only through [`Fiber::finish`]; a fiber dropped without it
//! (a panic between creation and finish) leaks its stack rather than guess at a pool.

use std::io;
use std::marker::PhantomData;
use std::ops::Range;
use std::ptr::{self, NonNull};

use weft_arch::{SpareStack, Stack, StackPool};

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
    /// The stack's guard page(s), for the signal handler (see `entry::StackLimit`).
    pub guard: Range<usize>,
}

/// The code a fiber runs, with its payload as `Self`.
pub trait FiberBody: Sized {
    /// Runs on the fiber's stack from its first resume; the fiber is finished when this
    /// returns. Must not unwind (it is called from an `extern "C"` frame).
    ///
    /// # Safety
    /// `this` is the fiber's initialized payload, valid until `run` returns. The resumer may
    /// read and write it through the same pointer while `run` is switched out, so `run` keeps
    /// no reference into it across [`switch_out`].
    unsafe fn run(this: NonNull<Self>);
}

/// How a [`Fiber::resume`] ended.
pub enum Switched {
    /// The body called [`switch_out`]: resume again later.
    Suspended,
    /// The body returned.
    Finished,
}

/// The state of the three per-activation values while their owner is switched out.
#[derive(Clone, Copy)]
struct PerActivation {
    current: *mut Activation,
    stack_limit: usize,
    activation: *mut Activation,
}

/// What a fiber keeps at the top of its own stack (see the module docs): there rather than in
/// [`Fiber`], which the call future moves around, so that a `Fiber` stays a few words.
#[repr(C)]
struct FiberTop<P> {
    /// The fiber's per-activation state while it is switched out.
    saved: PerActivation,
    payload: P,
}

/// A stack with a body to run on it. See the module docs.
pub struct Fiber<P: FiberBody> {
    /// `None` once given back (or leaked).
    stack: Option<Stack>,
    top: NonNull<FiberTop<P>>,
    /// Saved stack pointer of the suspended (or not yet started) fiber; 0 once finished.
    sp: usize,
    started: bool,
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
    /// A fiber on a stack from `pool` (through `spare`), whose payload `init` writes.
    ///
    /// # Safety
    /// `init` must initialize the whole payload it is handed (it also gets the fiber's
    /// [`FiberStack`] to keep what the body needs of it).
    ///
    /// # Errors
    /// The OS error if a new stack cannot be mapped.
    #[inline(always)] // into the promising call's out-of-line start: one frame instead of two
    pub unsafe fn new(
        pool: &StackPool,
        spare: &mut SpareStack,
        init: impl FnOnce(*mut P, FiberStack),
    ) -> io::Result<Fiber<P>> {
        const { assert!(align_of::<FiberTop<P>>() <= weft_arch::STACK_ALIGNMENT) };
        let stack = pool.allocate_from(spare)?;
        let switch_top = stack.top() - top_bytes::<P>();
        let top = switch_top as *mut FiberTop<P>;
        // SAFETY: `top` is aligned (below a 16-aligned top by a multiple of 16) and on a stack
        // that is ours, with nothing running on it.
        unsafe {
            (&raw mut (*top).saved).write(PerActivation {
                current: ptr::null_mut(),
                stack_limit: usize::MAX,
                activation: ptr::null_mut(),
            })
        };
        init(
            // SAFETY: as above.
            unsafe { &raw mut (*top).payload },
            FiberStack {
                switch_top,
                wasm_limit: stack.usable().start + HOST_HEADROOM,
                guard: stack.guard(),
            },
        );
        // SAFETY: `switch_top` is 16-aligned, the stack below it is ours and unused, and
        // `fiber_start::<P>` gets the payload `init` just initialized (the caller's contract).
        let sp = unsafe { weft_arch::init_stack(switch_top, fiber_start::<P>, top as usize) };
        Ok(Fiber {
            stack: Some(stack),
            // SAFETY: derived from a non-null stack address.
            top: unsafe { NonNull::new_unchecked(top) },
            sp,
            started: false,
            _owns: PhantomData,
        })
    }

    /// The payload's address, for the resumer's raw access while the body is switched out.
    #[inline(always)]
    pub fn payload_ptr(&self) -> NonNull<P> {
        // SAFETY: a field of the live top; no reference is made.
        unsafe { NonNull::new_unchecked(&raw mut (*self.top.as_ptr()).payload) }
    }

    /// The payload, while the body has no frames: before the first resume or once finished.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut P {
        assert!(
            !self.is_suspended(),
            "the payload of a suspended fiber is its body's"
        );
        // SAFETY: initialized by `new`, not yet dropped (`stack` is only taken with it), and
        // no frame of the body exists to hold a pointer into it; `&mut self` excludes others.
        unsafe { &mut (*self.top.as_ptr()).payload }
    }

    /// Where `switch_out` must switch from: just below the top.
    #[inline(always)]
    fn switch_top(&self) -> usize {
        self.top.as_ptr() as usize
    }

    /// Whether the body has frames on the stack: started and not finished.
    #[inline(always)]
    pub fn is_suspended(&self) -> bool {
        self.started && self.sp != 0
    }

    /// Whether the body has returned.
    #[inline(always)]
    pub fn is_finished(&self) -> bool {
        self.sp == 0
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
        assert!(self.sp != 0, "resuming a finished fiber");
        let saved = self.top.as_ptr();
        // SAFETY: the store is lent to us (the caller's contract) and the fiber's saved state
        // is its own (only `resume` touches it). This frame stays on its thread across the
        // switch, so the thread-local swaps may be inlined.
        unsafe {
            let outer_current = replace_current_in_resumer((*saved).saved.current);
            let outer_limit = store.stack_limit.get().replace((*saved).saved.stack_limit);
            let outer_activation = store.activation.get().replace((*saved).saved.activation);
            self.started = true;
            let (_, sp) = weft_arch::switch_and_link(value, self.sp, self.switch_top());
            // Back on the resumer's side (same thread): save the fiber's, reinstall ours.
            (*saved).saved = PerActivation {
                current: replace_current_in_resumer(outer_current),
                stack_limit: store.stack_limit.get().replace(outer_limit),
                activation: store.activation.get().replace(outer_activation),
            };
            match sp {
                Some(sp) => {
                    self.sp = sp;
                    Switched::Suspended
                }
                None => {
                    self.sp = 0;
                    Switched::Finished
                }
            }
        }
    }

    /// Gives the stack back to `pool` (into `spare` if it is empty) and drops the payload. A
    /// suspended fiber is leaked instead (see the module docs): unwind it first.
    #[inline(always)] // into the promising call's out-of-line finish
    pub fn finish(mut self, pool: &StackPool, spare: &mut SpareStack) {
        if let Some(stack) = self.retire() {
            pool.release_into(spare, stack);
        }
    }

    /// Drops the payload and takes the stack, unless the fiber is suspended (then both leak).
    #[inline(always)]
    fn retire(&mut self) -> Option<Stack> {
        let stack = self.stack.take()?;
        if self.is_suspended() {
            return None;
        }
        // SAFETY: the payload was initialized by `new` and is dropped once (`stack` was just
        // taken, and every path here starts by taking it); no frame of the body is left.
        unsafe { ptr::drop_in_place(self.payload_ptr().as_ptr()) };
        Some(stack)
    }
}

impl<P: FiberBody> Drop for Fiber<P> {
    fn drop(&mut self) {
        // Not finished: no pool at hand, so the stack leaks (see the module docs).
        let _leaked = self.retire();
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

/// Switches out of the running fiber to its resumer; returns the value it is resumed with.
///
/// Never inlined, and touches no thread-local: it may return on another thread.
///
/// # Safety
/// Must run on the fiber whose [`FiberStack::switch_top`] is `switch_top`, while its resumer
/// waits in [`Fiber::resume`].
#[inline(never)]
pub unsafe fn switch_out(switch_top: usize) -> usize {
    // SAFETY: per the contract, we are on that stack and its resumer waits in switch_and_link.
    unsafe { weft_arch::switch_yield(0, switch_top) }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use weft_arch::StackConfig;

    use super::*;

    /// A payload that owns something (a counter it bumps when dropped) and suspends `rounds`
    /// times before returning.
    struct Counted {
        drops: Arc<AtomicUsize>,
        stack: FiberStack,
        rounds: usize,
        ran: usize,
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.drops.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl FiberBody for Counted {
        unsafe fn run(this: NonNull<Self>) {
            let this = this.as_ptr();
            // SAFETY: the payload is valid while we run; no reference is held across switches.
            unsafe {
                while (*this).ran < (*this).rounds {
                    (*this).ran += 1;
                    switch_out((*this).stack.switch_top);
                }
            }
        }
    }

    fn fiber(
        pool: &StackPool,
        spare: &mut SpareStack,
        drops: &Arc<AtomicUsize>,
        rounds: usize,
    ) -> Fiber<Counted> {
        let drops = drops.clone();
        // SAFETY: the initializer writes the whole payload.
        unsafe {
            Fiber::new(pool, spare, |payload: *mut Counted, stack| {
                payload.write(Counted {
                    drops,
                    stack,
                    rounds,
                    ran: 0,
                })
            })
        }
        .unwrap()
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
        let mut spare = SpareStack::default();
        let drops = Arc::new(AtomicUsize::new(0));
        let mut f = fiber(&pool, &mut spare, &drops, 3);
        let top = f.switch_top();
        assert_eq!(run_to_end(&mut f), 3);
        assert_eq!(f.payload_mut().ran, 3);
        f.finish(&pool, &mut spare);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        // The stack is back in the spare: the next fiber gets the same one.
        let g = fiber(&pool, &mut spare, &drops, 0);
        assert_eq!(g.switch_top(), top);
        g.finish(&pool, &mut spare);
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn fiber_never_resumed_still_drops_its_payload() {
        let pool = StackPool::new(StackConfig::default());
        let mut spare = SpareStack::default();
        let drops = Arc::new(AtomicUsize::new(0));
        fiber(&pool, &mut spare, &drops, 1).finish(&pool, &mut spare);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        // Dropped without `finish`: the payload is dropped all the same.
        drop(fiber(&pool, &mut spare, &drops, 1));
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn suspended_fiber_is_leaked_not_reused() {
        let pool = StackPool::new(StackConfig::default());
        let mut spare = SpareStack::default();
        let drops = Arc::new(AtomicUsize::new(0));
        let mut f = fiber(&pool, &mut spare, &drops, 2);
        let top = f.switch_top();
        let store = VMStoreContext::new_for_tests();
        super::super::entry::prepare_thread();
        // SAFETY: as in `run_to_end`.
        let switched = unsafe { f.resume(&store, 0) };
        assert!(matches!(switched, Switched::Suspended));
        f.finish(&pool, &mut spare);
        assert_eq!(
            drops.load(Ordering::SeqCst),
            0,
            "its frames may still use it"
        );
        let g = fiber(&pool, &mut spare, &drops, 0);
        assert_ne!(g.switch_top(), top);
        g.finish(&pool, &mut spare);
    }
}
