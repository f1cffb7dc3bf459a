//! Entering Wasm, and getting out again when it traps: activations, and what a trap reports.
//!
//! The signal handler that ends a trapping activation is in `signals`, the alternate signal
//! stack it runs on in `altstack`; [`prepare_thread`] sets both up.
//!
//! Every call from the host into Wasm goes through [`enter_wasm`], which pushes an
//! [`Activation`] and calls the code through `weft_arch::call_with_landing_pad` (a promising
//! call's fiber enters once, through [`serve_resident`], and serves its calls from that entry
//! frame; its traps land the same way). Compiled code
//! reports every trap by faulting (a guard-page access, or a `ud2`/`udf` Cranelift emitted for a
//! trap condition). The signal handler finds the thread's innermost activation, checks that the
//! faulting PC is a trap site of published Wasm code, records the trap code and a frame-pointer
//! backtrace in the activation (no allocation: a fixed buffer), and rewrites the signal context
//! so the thread resumes at the entry routine's landing pad. `enter_wasm` then returns the trap.
//! No frame is unwound with `longjmp`, and no Rust frame is ever skipped: Wasm only calls Rust
//! through builtins and host functions, and those return a status that compiled code turns into
//! a trap instruction of its own (`TrapKind::Recorded`) after they have returned.
//!
//! A fault that is not at a trap site but in the guard page of the fiber stack the
//! innermost activation runs on (each activation carries that range, inherited from the one
//! below it, empty on a thread's own stack) is host code overflowing a promising call's stack:
//! the handler writes a message naming the cause and aborts, since carrying on would corrupt
//! memory and the previous handler would blame the thread's own stack.
//!
//! Per-activation state — stack limit, landing pad, the chain of activations — lives in the
//! activation record and the store context, not in thread-locals tied to the OS stack. The one
//! thread-local, [`CURRENT`], tells which activation is running on this thread: the signal
//! handler reads it, and so do builtins and host functions that report to the activation
//! running their Wasm caller (which is the innermost one while they run: [`record`], the
//! exception unwinder), so the store context needs no copy of it that every entry and every
//! stack switch would have to keep up to date. Whoever switches stacks swaps it with the
//! store's stack limit.

use std::any::Any;
use std::cell::Cell;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::ptr;

use weft_arch::EntryRecord;
use weft_environ::TrapKind;

use super::vmstructs::VMStoreContext;
use super::{altstack, signals};

/// How many frames a trap's backtrace keeps.
pub const MAX_BACKTRACE: usize = 128;

/// Of [`MAX_BACKTRACE`], how many are the innermost frames; the rest are the outermost ones,
/// and a deeper backtrace omits those in between (see [`TrapInfo::omitted`]).
pub const KEEP_INNER: usize = MAX_BACKTRACE / 2;

/// Something a builtin or host function reported before returning failure to compiled code.
pub enum Recorded {
    /// A trap raised by a builtin (out-of-bounds bulk memory or table access, ...).
    Trap(TrapKind),
    /// An error returned by a host function.
    Error(crate::Error),
    /// A panic in a host function, re-raised once control is back in the embedder's frame.
    Panic(Box<dyn Any + Send>),
    /// A Wasm exception (its exnref) that no Wasm frame of the activation caught.
    Exception(usize),
    /// A trap the runtime raises on Wasm's behalf (a suspending import outside a promising
    /// call); reported with the Wasm backtrace like a trap of compiled code.
    Api(crate::Trap),
}

/// Why Wasm stopped.
pub enum TrapReason {
    /// Compiled code hit a trap site with this code.
    Code(TrapKind),
    Recorded(Recorded),
}

/// A trap as [`enter_wasm`] reports it.
pub struct TrapInfo {
    pub reason: TrapReason,
    /// Program counters, innermost first: the trapping instruction, then return addresses.
    pub pcs: Vec<usize>,
    /// Frames left out of `pcs` between its first [`KEEP_INNER`] entries and the rest (the
    /// outermost frames), because the stack was deeper than [`MAX_BACKTRACE`].
    pub omitted: usize,
}

/// One entry into Wasm. Lives on the entering Rust frame's stack for the call's duration.
#[repr(C)]
pub struct Activation {
    /// Written by the entry routine; read by the signal handler. Must stay first.
    pub(super) entry: EntryRecord,
    prev: *mut Activation,
    store: *const VMStoreContext,
    /// The stack limit Wasm in this activation runs with.
    stack_limit: usize,
    /// The guard page(s) of the fiber stack this activation runs on (empty on a
    /// thread's own stack): a fault there that is not a Wasm trap is host code overflowing.
    pub(super) guard: Range<usize>,
    saved_stack_limit: usize,
    /// Set by the signal handler.
    pub(super) fault: Option<TrapKind>,
    pub(super) backtrace_len: usize,
    /// Frames the signal handler walked but left out (see [`TrapInfo::omitted`]).
    pub(super) backtrace_omitted: usize,
    /// Set by builtins and host functions.
    recorded: Option<Recorded>,
    /// The first `backtrace_len` entries are written by the signal handler; left uninitialized
    /// otherwise, so an entry into Wasm does not clear a kilobyte it almost never reads. Last,
    /// so that LLVM does not merge it into the zeroing of its neighbours.
    pub(super) backtrace: [MaybeUninit<usize>; MAX_BACKTRACE],
}

thread_local! {
    /// The innermost activation running on this thread, for the signal handler.
    static CURRENT: Cell<*mut Activation> = const { Cell::new(ptr::null_mut()) };
    /// Whether this thread is ready to run Wasm (see [`prepare_thread`]).
    static THREAD_READY: Cell<bool> = const { Cell::new(false) };
    /// The lowest address synchronous Wasm may use on this thread's own stack (its bottom, its
    /// guard and [`SYNC_HOST_HEADROOM`] above them), and the stack's top; `(0, 0)` if unknown.
    /// Set by [`prepare_thread`].
    static THREAD_STACK: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// Stack kept free for host code below the Wasm limit of a synchronous call on a thread's own
/// stack (the limit is clamped to this much above the stack's bottom).
pub const SYNC_HOST_HEADROOM: usize = 64 * 1024;

/// The bounds of this thread's own stack as the OS knows them: the lowest address usable by
/// Wasm (bottom + guard + [`SYNC_HOST_HEADROOM`]) and the top; `(0, 0)` if unknown.
fn thread_stack_bounds() -> (usize, usize) {
    // SAFETY: a zeroed attribute object is what `pthread_getattr_np` initializes; it is
    // destroyed after use, and the out-pointers are locals.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return (0, 0);
        }
        let mut addr: *mut libc::c_void = ptr::null_mut();
        let mut size: libc::size_t = 0;
        let mut guard: libc::size_t = 0;
        let ok = libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0
            && libc::pthread_attr_getguardsize(&attr, &mut guard) == 0;
        libc::pthread_attr_destroy(&mut attr);
        let bottom = addr as usize;
        match (ok, bottom.checked_add(size)) {
            (true, Some(top)) if size > 0 => (
                bottom
                    .saturating_add(guard)
                    .saturating_add(SYNC_HOST_HEADROOM),
                top,
            ),
            _ => (0, 0),
        }
    }
}

/// The stack limit of a synchronous call entered at `sp` with `max_wasm_stack` bytes: at most
/// `max_wasm_stack` below `sp`, and never below what this thread's own stack can give Wasm and
/// still leave its host headroom, so exhausting it is a stack-overflow trap and not a fault in
/// the guard page (which would kill the process). A call on a stack that is not the thread's
/// own (the embedder's coroutine, say) is not clamped: its bounds are unknown.
fn sync_stack_limit(sp: usize, max_wasm_stack: usize) -> usize {
    let limit = sp.saturating_sub(max_wasm_stack);
    let (low, top) = THREAD_STACK.with(Cell::get);
    if low < sp && sp <= top {
        limit.max(low)
    } else {
        limit
    }
}

/// Makes sure weft's signal handlers are installed and this thread has an alternate signal
/// stack. The work happens once per process and once per thread; every later call costs one
/// test of a thread-local flag, so entries and resumes can afford to call it.
#[inline(always)]
pub fn prepare_thread() {
    if !THREAD_READY.with(Cell::get) {
        prepare_thread_slow();
    }
}

#[cold]
#[inline(never)]
fn prepare_thread_slow() {
    signals::init_traps();
    THREAD_STACK.with(|bounds| bounds.set(thread_stack_bounds()));
    // Without an alternate stack (no memory to map one) the thread is not marked ready, so the
    // next entry tries again.
    if altstack::ensure_altstack() {
        THREAD_READY.with(|ready| ready.set(true));
    }
}

/// Calls `trampoline(a0, a1, a2)` as Wasm code of the store whose context is `store`.
///
/// # Safety
/// `store` must point to a live store context whose store is exclusively borrowed by the
/// caller for the whole call; `trampoline` must be a published array-to-Wasm trampoline and
/// `a0..a2` valid arguments for it (a vmctx of that store, code of the right type, a value
/// buffer large enough for the parameters and results).
#[inline(never)]
pub unsafe fn enter_wasm(
    store: *const VMStoreContext,
    max_wasm_stack: usize,
    trampoline: *const u8,
    a0: usize,
    a1: usize,
    a2: usize,
) -> Result<(), TrapInfo> {
    // SAFETY: the caller's guarantees are ours.
    unsafe { enter(store, max_wasm_stack, trampoline, a0, a1, a2) }
}

/// The body of [`enter_wasm`]: the stack limit is the enclosing activation's if there is one
/// on this thread, else `max_wasm_stack` below here. (A promising call's fiber enters through
/// [`serve_resident`] instead.)
///
/// # Safety
/// As for [`enter_wasm`].
#[inline(always)]
unsafe fn enter(
    store: *const VMStoreContext,
    max_wasm_stack: usize,
    trampoline: *const u8,
    a0: usize,
    a1: usize,
    a2: usize,
) -> Result<(), TrapInfo> {
    // SAFETY: the caller guarantees `store` is live and exclusively ours during the call.
    let store_ref = unsafe { &*store };
    let mut activation = Activation {
        entry: EntryRecord::new(),
        prev: ptr::null_mut(),
        store,
        stack_limit: 0,
        guard: 0..0,
        // SAFETY: exclusive access to the store (see above); no Wasm runs yet.
        saved_stack_limit: unsafe { *store_ref.stack_limit.get() },
        fault: None,
        backtrace_len: 0,
        backtrace_omitted: 0,
        recorded: None,
        backtrace: [MaybeUninit::uninit(); MAX_BACKTRACE],
    };
    let activation_ptr: *mut Activation = &mut activation;
    // Published before its limit and guard are filled in: nothing can fault in between.
    // Through `replace_current`, never `CURRENT.with` directly: this frame may be suspended
    // on a fiber and resumed on another thread, and a thread-local address computed
    // before the call below must not be reused after it.
    // SAFETY: the activation lives in this frame until it is unlinked below.
    let prev = unsafe { replace_current(activation_ptr) };
    let (stack_limit, guard) = if prev.is_null() {
        prepare_thread();
        (sync_stack_limit(approximate_sp(), max_wasm_stack), 0..0)
    } else {
        // SAFETY: `prev` is a live activation further up this thread's stack.
        unsafe { ((*prev).stack_limit, (*prev).guard.clone()) }
    };
    // SAFETY: the activation is ours; the signal handler reads it only while Wasm runs.
    unsafe {
        (*activation_ptr).prev = prev;
        (*activation_ptr).stack_limit = stack_limit;
        (*activation_ptr).guard = guard;
    }
    // SAFETY: as above; Wasm reads the limit only while this activation runs.
    unsafe { *store_ref.stack_limit.get() = stack_limit };
    // SAFETY: the caller vouches for the trampoline and its arguments; `entry` lives in this
    // frame for the whole call, and the landing pad returns here with our registers restored.
    let trapped = unsafe {
        weft_arch::call_with_landing_pad(
            &raw mut (*activation_ptr).entry,
            trampoline as usize,
            a0,
            a1,
            a2,
        )
    };
    // SAFETY: `prev` was the innermost activation when we were entered, and is live again.
    unsafe { replace_current(prev) };
    // SAFETY: the entry routine has returned, so nothing else refers to the activation; the
    // signal handler wrote to it through this same pointer.
    let activation = unsafe { &mut *activation_ptr };
    // SAFETY: exclusive access to the store, as above.
    unsafe { *store_ref.stack_limit.get() = activation.saved_stack_limit };
    if trapped == 0 {
        return Ok(());
    }
    Err(take_trap(activation))
}

/// The trap an activation's entry routine returned through its landing pad, taken out of the
/// activation (which is left as a new one would be, ready for another entry).
#[cold]
#[inline(never)]
fn take_trap(activation: &mut Activation) -> TrapInfo {
    // SAFETY: the signal handler initialized the first `backtrace_len` entries.
    let pcs = unsafe {
        std::slice::from_raw_parts(
            activation.backtrace.as_ptr().cast::<usize>(),
            activation.backtrace_len,
        )
    }
    .to_vec();
    let reason = match (activation.fault.take(), activation.recorded.take()) {
        (Some(code), _) if code != TrapKind::Recorded => TrapReason::Code(code),
        (_, Some(recorded)) => TrapReason::Recorded(recorded),
        (Some(code), None) => TrapReason::Code(code),
        (None, None) => unreachable!("the landing pad is reached only through a recorded fault"),
    };
    let omitted = std::mem::take(&mut activation.backtrace_omitted);
    activation.backtrace_len = 0;
    TrapInfo {
        reason,
        pcs,
        omitted,
    }
}

impl Activation {
    /// An activation that stays in place on a fiber stack for many entries into Wasm
    /// ([`serve_resident`]): its store, the fiber's stack limit (its bottom plus headroom for
    /// host code) and guard page(s). The fiber installs it as its innermost activation
    /// (`Fiber::set_activation`), so an entry pays neither the record's setup nor the
    /// thread-local swaps of [`enter_wasm`].
    pub fn resident(store: *const VMStoreContext, limit: usize, guard: Range<usize>) -> Self {
        Activation {
            entry: EntryRecord::new(),
            prev: ptr::null_mut(),
            store,
            stack_limit: limit,
            guard,
            // Not used: the fiber installs and restores the store's limit around each switch.
            saved_stack_limit: usize::MAX,
            fault: None,
            backtrace_len: 0,
            backtrace_omitted: 0,
            recorded: None,
            backtrace: [MaybeUninit::uninit(); MAX_BACKTRACE],
        }
    }
}

/// Serves the calls `call` describes as Wasm code in `activation`, a [`Activation::resident`]
/// of the fiber this runs on, through `weft_arch::serve_with_landing_pad`: each call runs in
/// the one entry frame set up here, and the fiber switches out after it (parks) and calls again
/// when resumed, so a call pays neither the record's setup nor the thread-local swaps of
/// [`enter_wasm`], nor the entry routine's saving of every callee-saved register. Returns when
/// a call traps, with its trap.
///
/// # Safety
/// As for [`enter_wasm`], for every call, with the activation's store: `call` names a published
/// array-to-Wasm trampoline and valid arguments for it whenever the fiber is resumed, and
/// stays in place, as does `activation`; this runs on the fiber whose top `call.stack_top` is,
/// whose resumer installed `activation` as this thread's innermost activation, with the
/// store's stack limit its own, and not running Wasm already.
#[inline(always)]
pub unsafe fn serve_resident(
    activation: *mut Activation,
    call: *const weft_arch::ResidentCall,
) -> Box<TrapInfo> {
    // SAFETY: the caller vouches for the calls, the activation and the fiber; the record
    // stays in place for the routine's life, and the landing pad returns here with our
    // registers restored.
    unsafe { weft_arch::serve_with_landing_pad(&raw mut (*activation).entry, call) };
    // SAFETY: the routine returned (only a trap does that); the signal handler wrote through
    // this pointer.
    Box::new(take_trap(unsafe { &mut *activation }))
}

/// Records why a builtin or host function is about to return failure to compiled code.
///
/// # Safety
/// `store` must be the live store context of the store whose Wasm called the builtin or host
/// function, directly: the activation running that Wasm is then this thread's innermost one
/// (activations the host function entered meanwhile have returned).
pub unsafe fn record(store: *const VMStoreContext, what: Recorded) {
    let activation = current();
    // SAFETY: per the contract, the innermost activation is the one running the Wasm that
    // called us, live on this thread's stack below us; nothing else touches `recorded` until
    // the trap lands.
    unsafe {
        debug_assert!(!activation.is_null() && ptr::eq((*activation).store, store));
        (*activation).recorded = Some(what);
    }
}

/// Replaces this thread's innermost activation (what the signal handler consults) with
/// `activation`, returning the previous one.
///
/// Never inlined: the address of the thread-local must be computed afresh on each call, as a
/// fiber may move between threads between two calls.
///
/// # Safety
/// `activation` is null or a live activation running on this thread, that stays live until it
/// is replaced again (the signal handler dereferences it).
#[inline(never)]
unsafe fn replace_current(activation: *mut Activation) -> *mut Activation {
    CURRENT.with(|c| c.replace(activation))
}

/// [`replace_current`] inlined, for the resumer's side of a switch: `Fiber::resume` runs in a
/// frame that stays on its thread across the switch (the fiber always comes back to the thread
/// that resumed it), so a thread-local address it computed stays valid. Code that may run on a
/// fiber must use [`replace_current`].
///
/// # Safety
/// As for [`replace_current`].
#[inline(always)]
pub(super) unsafe fn replace_current_in_resumer(activation: *mut Activation) -> *mut Activation {
    CURRENT.with(|c| c.replace(activation))
}

/// The innermost activation running on this thread, or null (see [`replace_current`] for why
/// it is not inlined).
#[inline(never)]
pub(super) fn current() -> *mut Activation {
    CURRENT.with(Cell::get)
}

/// The store context of the innermost activation running on this thread, if any: live while
/// that activation runs.
pub(super) fn current_store() -> Option<*const VMStoreContext> {
    let activation = current();
    // SAFETY: a non-null `CURRENT` is a live activation of this thread (unlinked before its
    // frame is popped).
    (!activation.is_null()).then(|| unsafe { (*activation).store })
}

/// Whether Wasm of the store with id `store_id` is running on this thread: an activation of
/// that store anywhere in this thread's chain of running activations. The store is then in
/// use by a caller further down this very stack (a synchronous host function, or a poll that
/// did not lend it), which cannot give it up before the code asking returns.
pub fn store_runs_on_this_thread(store_id: u64) -> bool {
    let mut activation = current();
    while !activation.is_null() {
        // SAFETY: a non-null link is a live activation of this thread (each is unlinked
        // before its frame is popped), and its store context is live while it runs.
        let (store, prev) = unsafe { ((*(*activation).store).store_id, (*activation).prev) };
        if store == store_id {
            return true;
        }
        activation = prev;
    }
    false
}

fn approximate_sp() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

/// The frames of an activation's Wasm code, innermost first, found by the frame-pointer chain:
/// `(pc, fp)` pairs, `pc` an address in the frame whose frame pointer is `fp`. Used by the
/// signal handler (backtraces) and the exception unwinder (handler search). Allocates nothing,
/// so it is async-signal-safe.
///
/// The walk starts at a given pc and fp. It reads a frame's record only while its fp lies
/// between `low` and the activation's entry frame `end`, 8-aligned, and it stops after a record
/// whose caller's fp does not lie above it. The last pair is the return into the entry routine.
pub(super) struct Frames {
    next: Option<(usize, usize)>,
    low: usize,
    end: usize,
}

impl Frames {
    /// # Safety
    /// `fp` is the frame pointer of a frame of the running activation whose entry frame's fp is
    /// `end`, with `pc` in that frame, and every address between `low` and `end` is this
    /// activation's live stack (as the frames of the chain are, Cranelift and weft's
    /// trampolines keeping frame records). The frames stay live while the walk goes on.
    pub(super) unsafe fn new(pc: usize, fp: usize, low: usize, end: usize) -> Frames {
        Frames {
            next: Some((pc, fp)),
            low,
            end,
        }
    }
}

impl Iterator for Frames {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        let (pc, fp) = self.next.take()?;
        if fp >= self.low && fp < self.end && fp.is_multiple_of(8) {
            // SAFETY: `fp` lies in the activation's live stack (checked against `low` and
            // `end`, as `new`'s contract allows) and is a frame record of its chain.
            let (return_address, caller_fp) = unsafe {
                (
                    *((fp + weft_arch::FP_TO_RETURN_ADDRESS) as *const usize),
                    *(fp as *const usize),
                )
            };
            if caller_fp > fp {
                self.next = Some((return_address, caller_fp));
            } else {
                // A broken chain: report the return address and stop there.
                self.next = Some((return_address, self.end));
            }
        }
        Some((pc, fp))
    }
}
