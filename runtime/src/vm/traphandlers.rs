//! Entering Wasm, and getting out again when it traps.
//!
//! Every call from the host into Wasm goes through [`enter_wasm`], which pushes an
//! [`Activation`] and calls the code through `weft_arch::call_with_landing_pad`. Compiled code
//! reports every trap by faulting (a guard-page access, or a `ud2`/`udf` Cranelift emitted for a
//! trap condition). The signal handler finds the thread's innermost activation, checks that the
//! faulting PC is a trap site of published Wasm code, records the trap code and a frame-pointer
//! backtrace in the activation (no allocation: a fixed buffer), and rewrites the signal context
//! so the thread resumes at the entry routine's landing pad. `enter_wasm` then returns the trap.
//! No frame is unwound with `longjmp`, and no Rust frame is ever skipped: Wasm only calls Rust
//! through builtins and host functions, and those return a status that compiled code turns into
//! a trap instruction of its own (`TrapKind::Recorded`) after they have returned.
//!
//! A fault that is not at a trap site but in the guard page of the continuation stack the
//! innermost activation runs on (each activation carries that range, inherited from the one
//! below it, empty on a thread's own stack) is host code overflowing a promising call's stack:
//! the handler writes a message naming the cause and aborts, since carrying on would corrupt
//! memory and the previous handler would blame the thread's own stack.
//!
//! Per-activation state — stack limit, landing pad, the chain of activations — lives in the
//! activation record and the store context, not in thread-locals tied to the OS stack. The one
//! thread-local, [`CURRENT`], only tells a signal handler which activation is running on this
//! thread; whoever switches stacks swaps it with the rest.

use std::any::Any;
use std::cell::Cell;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::ptr;
use std::sync::Once;

use weft_arch::{EntryRecord, FP_TO_RETURN_ADDRESS};
use weft_environ::TrapKind;

use super::code_memory;
use super::vmstructs::VMStoreContext;

/// How many frames a trap's backtrace keeps.
pub const MAX_BACKTRACE: usize = 128;

/// Something a builtin or host function reported before returning failure to compiled code.
pub enum Recorded {
    /// A trap raised by a builtin (out-of-bounds bulk memory or table access, ...).
    Trap(TrapKind),
    /// An error returned by a host function.
    Error(crate::Error),
    /// A panic in a host function, re-raised once control is back in the embedder's frame.
    Panic(Box<dyn Any + Send>),
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
}

/// One entry into Wasm. Lives on the entering Rust frame's stack for the call's duration.
#[repr(C)]
pub struct Activation {
    /// Written by the entry routine; read by the signal handler. Must stay first.
    entry: EntryRecord,
    prev: *mut Activation,
    store: *const VMStoreContext,
    /// The stack limit Wasm in this activation runs with.
    stack_limit: usize,
    /// The guard page(s) of the continuation stack this activation runs on (empty on a
    /// thread's own stack): a fault there that is not a Wasm trap is host code overflowing.
    guard: Range<usize>,
    saved_stack_limit: usize,
    saved_store_activation: *mut Activation,
    /// Set by the signal handler.
    fault: Option<TrapKind>,
    backtrace_len: usize,
    /// Set by builtins and host functions.
    recorded: Option<Recorded>,
    /// The first `backtrace_len` entries are written by the signal handler; left uninitialized
    /// otherwise, so an entry into Wasm does not clear a kilobyte it almost never reads. Last,
    /// so that LLVM does not merge it into the zeroing of its neighbours.
    backtrace: [MaybeUninit<usize>; MAX_BACKTRACE],
}

thread_local! {
    /// The innermost activation running on this thread, for the signal handler.
    static CURRENT: Cell<*mut Activation> = const { Cell::new(ptr::null_mut()) };
    /// Whether this thread is ready to run Wasm (see [`prepare_thread`]).
    static THREAD_READY: Cell<bool> = const { Cell::new(false) };
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
    init_traps();
    ensure_altstack();
    THREAD_READY.with(|ready| ready.set(true));
}

/// Calls `trampoline(a0, a1, a2)` as Wasm code of the store whose context is `store`.
///
/// # Safety
/// `store` must point to a live store context whose store is exclusively borrowed by the
/// caller for the whole call; `trampoline` must be a published array-to-Wasm trampoline and
/// `a0..a2` valid arguments for it (a vmctx of that store, code of the right type, a value
/// buffer large enough for the parameters and results).
pub unsafe fn enter_wasm(
    store: *const VMStoreContext,
    max_wasm_stack: usize,
    trampoline: *const u8,
    a0: usize,
    a1: usize,
    a2: usize,
) -> Result<(), TrapInfo> {
    // SAFETY: the caller's guarantees are ours.
    unsafe {
        enter_wasm_with_limit(
            store,
            StackLimit::Inherit(max_wasm_stack),
            trampoline,
            a0,
            a1,
            a2,
        )
    }
}

/// Where the stack limit of a new activation comes from.
#[derive(Clone)]
pub enum StackLimit {
    /// The enclosing activation's limit if there is one on this thread, else `sp - bytes`.
    Inherit(usize),
    /// The first activation on a continuation stack: `limit` is the stack's bottom plus
    /// headroom for host code, `guard` the stack's guard page(s) (the enclosing activation, if
    /// any, is on another stack). The caller has run [`prepare_thread`] on this thread.
    Continuation { limit: usize, guard: Range<usize> },
}

/// [`enter_wasm`] with a chosen stack limit.
///
/// # Safety
/// As for [`enter_wasm`]; with [`StackLimit::Explicit`], the limit must lie on the current
/// stack, with room below it for host functions and the signal handler's needs.
pub unsafe fn enter_wasm_with_limit(
    store: *const VMStoreContext,
    limit: StackLimit,
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
        // SAFETY: as above.
        saved_store_activation: unsafe { *store_ref.activation.get() },
        fault: None,
        backtrace_len: 0,
        recorded: None,
        backtrace: [MaybeUninit::uninit(); MAX_BACKTRACE],
    };
    let activation_ptr: *mut Activation = &mut activation;
    // Published before its limit and guard are filled in: nothing can fault in between.
    // Through `replace_current`, never `CURRENT.with` directly: this frame may be suspended
    // on a continuation and resumed on another thread, and a thread-local address computed
    // before the call below must not be reused after it.
    let prev = replace_current(activation_ptr);
    let (stack_limit, guard) = match limit {
        StackLimit::Continuation { limit, guard } => (limit, guard),
        StackLimit::Inherit(max_wasm_stack) if prev.is_null() => {
            prepare_thread();
            (approximate_sp().saturating_sub(max_wasm_stack), 0..0)
        }
        // SAFETY: `prev` is a live activation further up this thread's stack.
        StackLimit::Inherit(_) => unsafe { ((*prev).stack_limit, (*prev).guard.clone()) },
    };
    // SAFETY: the activation is ours; the signal handler reads it only while Wasm runs.
    unsafe {
        (*activation_ptr).prev = prev;
        (*activation_ptr).stack_limit = stack_limit;
        (*activation_ptr).guard = guard;
    }
    // SAFETY: as above; Wasm reads these fields only while this activation runs.
    unsafe {
        *store_ref.stack_limit.get() = stack_limit;
        *store_ref.activation.get() = activation_ptr;
    }
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
    replace_current(prev);
    // SAFETY: the entry routine has returned, so nothing else refers to the activation; the
    // signal handler wrote to it through this same pointer.
    let activation = unsafe { &mut *activation_ptr };
    // SAFETY: exclusive access to the store, as above.
    unsafe {
        *store_ref.stack_limit.get() = activation.saved_stack_limit;
        *store_ref.activation.get() = activation.saved_store_activation;
    }
    if trapped == 0 {
        return Ok(());
    }
    // SAFETY: the signal handler initialized the first `backtrace_len` entries.
    let pcs = unsafe {
        std::slice::from_raw_parts(
            activation.backtrace.as_ptr().cast::<usize>(),
            activation.backtrace_len,
        )
    }
    .to_vec();
    let reason = match (activation.fault, activation.recorded.take()) {
        (Some(code), _) if code != TrapKind::Recorded => TrapReason::Code(code),
        (_, Some(recorded)) => TrapReason::Recorded(recorded),
        (Some(code), None) => TrapReason::Code(code),
        (None, None) => unreachable!("the landing pad is reached only through a recorded fault"),
    };
    Err(TrapInfo { reason, pcs })
}

/// Records why a builtin or host function is about to return failure to compiled code.
///
/// # Safety
/// `store` must be the live store context of the store whose Wasm called the builtin; an
/// activation of it must be running (always the case when called from compiled code).
pub unsafe fn record(store: *const VMStoreContext, what: Recorded) {
    // SAFETY: the caller guarantees the context is live; the activation it names is on this
    // thread's stack below us, and nothing else touches `recorded` until the trap lands.
    unsafe {
        let activation = *(*store).activation.get();
        debug_assert!(!activation.is_null());
        (*activation).recorded = Some(what);
    }
}

/// Replaces this thread's innermost activation (what the signal handler consults) with
/// `activation`, returning the previous one.
///
/// Never inlined: the address of the thread-local must be computed afresh on each call, as a
/// continuation may move between threads between two calls.
#[inline(never)]
pub fn replace_current(activation: *mut Activation) -> *mut Activation {
    CURRENT.with(|c| c.replace(activation))
}

/// [`replace_current`] inlined, for the resumer's side of a switch: `Continuation::resume`
/// runs in a frame that stays on its thread across the switch (the continuation always comes
/// back to the thread that resumed it), so a thread-local address it computed stays valid.
/// Code that may run on a continuation must use [`replace_current`].
#[inline(always)]
pub fn replace_current_in_resumer(activation: *mut Activation) -> *mut Activation {
    CURRENT.with(|c| c.replace(activation))
}

/// The innermost activation running on this thread, or null (see [`replace_current`] for why
/// it is not inlined).
#[inline(never)]
pub fn current() -> *mut Activation {
    CURRENT.with(Cell::get)
}

/// The store context of the innermost activation running on this thread, if any.
pub fn current_store() -> Option<*const VMStoreContext> {
    let activation = current();
    // SAFETY: a non-null `CURRENT` is a live activation of this thread (unlinked before its
    // frame is popped).
    (!activation.is_null()).then(|| unsafe { (*activation).store })
}

fn approximate_sp() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

// ---------------------------------------------------------------------------------------------
// Signal handling

const SIGNALS: [libc::c_int; 4] = [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE];

/// The handlers that were installed before ours, indexed like `SIGNALS`.
static mut PREVIOUS: [std::mem::MaybeUninit<libc::sigaction>; 4] =
    [std::mem::MaybeUninit::uninit(); 4];

static INIT: Once = Once::new();

/// Installs weft's fault handlers, once per process. Faults that are not Wasm traps are passed
/// on to whatever handler was installed before.
fn init_traps() {
    INIT.call_once(|| {
        for (i, &signal) in SIGNALS.iter().enumerate() {
            // SAFETY: `sigaction` with a fully initialized struct; `PREVIOUS` is written only
            // here, inside `call_once`, before any handler of ours can run.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = handle_signal as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
                libc::sigemptyset(&mut action.sa_mask);
                let previous = (&raw mut PREVIOUS[i]).cast::<libc::sigaction>();
                if libc::sigaction(signal, &action, previous) != 0 {
                    panic!(
                        "installing the handler for signal {signal} failed: {}",
                        std::io::Error::last_os_error()
                    );
                }
            }
        }
    });
}

unsafe extern "C" fn handle_signal(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    ucontext: *mut libc::c_void,
) {
    let activation = CURRENT.with(Cell::get);
    if !activation.is_null() {
        // SAFETY: the kernel passes a valid ucontext for SA_SIGINFO handlers.
        let regs = unsafe { weft_arch::context_registers(ucontext) };
        if let Some(site) = code_memory::lookup_trap(regs.pc) {
            // SAFETY: `activation` is the live innermost activation of this thread (it is
            // unlinked before its frame is popped), and the interrupted code is Wasm running
            // inside it, so its entry record and stack are intact.
            unsafe {
                let activation = &mut *activation;
                activation.fault = Some(site.kind);
                record_backtrace(activation, regs);
                weft_arch::redirect_to_landing_pad(ucontext, &activation.entry);
            }
            return;
        }
        // Not a Wasm trap. A fault in the guard page of the continuation stack we run on is
        // host code (a host function, a future's poll) overflowing it: Wasm's own prologue
        // check traps well before. Carrying on would be undefined behaviour, and forwarding it
        // would blame the thread's own stack (or nobody), so name the cause and abort.
        if signal == libc::SIGSEGV || signal == libc::SIGBUS {
            // SAFETY: as above; SIGSEGV and SIGBUS carry the faulting address.
            let (guard, address) = unsafe { (&(*activation).guard, (*info).si_addr() as usize) };
            if guard.contains(&address) {
                host_overflowed_continuation_stack(guard.start);
            }
        }
    }
    // SAFETY: forwarding with the kernel's own arguments.
    unsafe { forward(signal, info, ucontext) }
}

/// Reports a guard-page hit on a continuation stack and aborts. Async-signal-safe: formats
/// into a buffer on the (alternate) signal stack, then `write(2)` and `abort(3)`.
fn host_overflowed_continuation_stack(guard: usize) -> ! {
    const BEFORE: &[u8] =
        b"weft: host code overflowed the stack of a promising call (guard page at 0x";
    const AFTER: &[u8] = b"); increase Config::async_stack_size\n";
    let mut message = [0u8; BEFORE.len() + 16 + AFTER.len()];
    message[..BEFORE.len()].copy_from_slice(BEFORE);
    let mut len = BEFORE.len();
    let digits = (usize::BITS - guard.leading_zeros()).div_ceil(4).max(1) as usize;
    for i in (0..digits).rev() {
        message[len] = b"0123456789abcdef"[(guard >> (i * 4)) & 0xf];
        len += 1;
    }
    message[len..len + AFTER.len()].copy_from_slice(AFTER);
    len += AFTER.len();
    // SAFETY: `write` and `abort` are async-signal-safe; the buffer is ours and `len` long.
    unsafe {
        libc::write(2, message.as_ptr().cast(), len);
        libc::abort();
    }
}

/// Walks the frame-pointer chain from the faulting frame up to the activation's entry frame.
///
/// # Safety
/// `regs` must be the interrupted Wasm context of `activation`.
unsafe fn record_backtrace(activation: &mut Activation, regs: weft_arch::ContextRegisters) {
    activation.backtrace[0] = MaybeUninit::new(regs.pc);
    let mut len = 1;
    let mut fp = regs.fp;
    let end = activation.entry.fp;
    while len < MAX_BACKTRACE && fp >= regs.sp && fp < end && fp.is_multiple_of(8) {
        // SAFETY: `fp` lies between the faulting SP and the entry frame, i.e. within the live
        // stack of this activation, and Cranelift keeps the frame-pointer chain intact.
        let (return_address, caller_fp) = unsafe {
            (
                *((fp + FP_TO_RETURN_ADDRESS) as *const usize),
                *(fp as *const usize),
            )
        };
        activation.backtrace[len] = MaybeUninit::new(return_address);
        len += 1;
        if caller_fp <= fp {
            break;
        }
        fp = caller_fp;
    }
    activation.backtrace_len = len;
}

/// Passes a fault that is not a Wasm trap to the handler installed before weft's.
///
/// # Safety
/// Called from `handle_signal` with its arguments.
unsafe fn forward(signal: libc::c_int, info: *mut libc::siginfo_t, ucontext: *mut libc::c_void) {
    let i = SIGNALS
        .iter()
        .position(|&s| s == signal)
        .expect("one of ours");
    // SAFETY: `PREVIOUS` was initialized before our handler was installed and is not written
    // again.
    let previous = unsafe { &*(&raw const PREVIOUS[i]).cast::<libc::sigaction>() };
    if previous.sa_flags & libc::SA_SIGINFO != 0 {
        let handler: unsafe extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            // SAFETY: SA_SIGINFO means `sa_sigaction` holds a three-argument handler.
            unsafe { std::mem::transmute(previous.sa_sigaction) };
        // SAFETY: calling the previous handler as the kernel would have.
        unsafe { handler(signal, info, ucontext) };
    } else if previous.sa_sigaction == libc::SIG_DFL || previous.sa_sigaction == libc::SIG_IGN {
        // Restore the default action and return: the faulting instruction runs again and the
        // process dies of the signal as it would have without weft.
        // SAFETY: resetting a signal disposition to its default.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(signal, &action, ptr::null_mut());
        }
    } else {
        let handler: unsafe extern "C" fn(libc::c_int) =
            // SAFETY: without SA_SIGINFO, `sa_sigaction` holds a one-argument handler.
            unsafe { std::mem::transmute(previous.sa_sigaction) };
        // SAFETY: calling the previous handler as the kernel would have.
        unsafe { handler(signal) };
    }
}

/// Size of the alternate signal stack weft installs on threads that run Wasm.
const ALTSTACK_SIZE: usize = 64 * 1024;

struct AltStack {
    mapping: *mut libc::c_void,
    len: usize,
}

impl Drop for AltStack {
    fn drop(&mut self) {
        if self.mapping.is_null() {
            return;
        }
        // SAFETY: disable the altstack before unmapping it; this thread is exiting and runs
        // no more Wasm.
        unsafe {
            let disable = libc::stack_t {
                ss_sp: ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            libc::sigaltstack(&disable, ptr::null_mut());
            libc::munmap(self.mapping, self.len);
        }
    }
}

thread_local! {
    static ALTSTACK: std::cell::RefCell<Option<AltStack>> = const { std::cell::RefCell::new(None) };
}

/// Makes sure this thread has an alternate signal stack big enough for the handler, so a fault
/// on an exhausted stack can still be handled.
fn ensure_altstack() {
    ALTSTACK.with(|slot| {
        if slot.borrow().is_some() {
            return;
        }
        // SAFETY: querying the current altstack.
        let mut old: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        unsafe { libc::sigaltstack(ptr::null(), &mut old) };
        if old.ss_flags & libc::SS_DISABLE == 0 && old.ss_size >= ALTSTACK_SIZE {
            *slot.borrow_mut() = Some(AltStack {
                mapping: ptr::null_mut(),
                len: 0,
            });
            return;
        }
        let page = region::page::size();
        let len = ALTSTACK_SIZE + page;
        // SAFETY: fresh anonymous mapping; the lowest page becomes a guard.
        let mapping = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(
            mapping != libc::MAP_FAILED,
            "mapping a signal stack failed: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: the guard page and the stack are inside the mapping we just made.
        unsafe {
            libc::mprotect(mapping, page, libc::PROT_NONE);
            let stack = libc::stack_t {
                ss_sp: mapping.cast::<u8>().add(page).cast(),
                ss_flags: 0,
                ss_size: ALTSTACK_SIZE,
            };
            assert_eq!(libc::sigaltstack(&stack, ptr::null_mut()), 0);
        }
        *slot.borrow_mut() = Some(AltStack { mapping, len });
    });
}
