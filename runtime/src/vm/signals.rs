//! The fault handler: turns a fault at a trap site of Wasm code into a return from the
//! innermost activation's entry (see `entry`), names a host overflow of a fiber stack, and
//! passes every other fault on to the handler installed before weft's.

use std::mem::MaybeUninit;
use std::ptr;
use std::sync::Once;

use super::code_memory;
use super::entry::{self, Activation, Frames, MAX_BACKTRACE};

const SIGNALS: [libc::c_int; 4] = [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE];

/// The handlers that were installed before ours, indexed like `SIGNALS`.
static mut PREVIOUS: [std::mem::MaybeUninit<libc::sigaction>; 4] =
    [std::mem::MaybeUninit::uninit(); 4];

static INIT: Once = Once::new();

/// Installs weft's fault handlers, once per process. Faults that are not Wasm traps are passed
/// on to whatever handler was installed before.
pub(super) fn init_traps() {
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
    let activation = entry::current();
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
        // Not a Wasm trap. A fault in the guard page of the fiber stack we run on is
        // host code (a host function, a future's poll) overflowing it: Wasm's own prologue
        // check traps well before. Carrying on would be undefined behaviour, and forwarding it
        // would blame the thread's own stack (or nobody), so name the cause and abort.
        if signal == libc::SIGSEGV || signal == libc::SIGBUS {
            // SAFETY: as above; SIGSEGV and SIGBUS carry the faulting address.
            let (guard, address) = unsafe { (&(*activation).guard, (*info).si_addr() as usize) };
            if guard.contains(&address) {
                host_overflowed_fiber_stack(guard.start);
            }
        }
    }
    // SAFETY: forwarding with the kernel's own arguments.
    unsafe { forward(signal, info, ucontext) }
}

/// Reports a guard-page hit on a fiber stack and aborts. Async-signal-safe: formats
/// into a buffer on the (alternate) signal stack, then `write(2)` and `abort(3)`.
fn host_overflowed_fiber_stack(guard: usize) -> ! {
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
/// Keeps the innermost [`KEEP_INNER`](entry::KEEP_INNER) frames and the outermost ones that fill
/// the rest of the buffer (a ring while walking, put in order at the end), and counts the frames
/// in between that did not fit: deep recursion shows both where it trapped and how it started.
///
/// # Safety
/// `regs` must be the interrupted Wasm context of `activation`.
unsafe fn record_backtrace(activation: &mut Activation, regs: weft_arch::ContextRegisters) {
    use entry::KEEP_INNER;
    const KEEP_OUTER: usize = MAX_BACKTRACE - KEEP_INNER;
    // SAFETY: the stack between the faulting SP and the entry frame is the live stack of this
    // activation, whose interrupted frame is `regs`' (the caller's contract).
    let frames = unsafe { Frames::new(regs.pc, regs.fp, regs.sp, activation.entry.fp) };
    let mut total = 0;
    for (pc, _) in frames {
        // Below `MAX_BACKTRACE` this is `total` itself; beyond, the ring of outer frames.
        let slot = if total < KEEP_INNER {
            total
        } else {
            KEEP_INNER + (total - KEEP_INNER) % KEEP_OUTER
        };
        activation.backtrace[slot] = MaybeUninit::new(pc);
        total += 1;
    }
    if total > MAX_BACKTRACE {
        // The oldest of the kept outer frames is where the next one would have gone.
        activation.backtrace[KEEP_INNER..].rotate_left((total - KEEP_INNER) % KEEP_OUTER);
        activation.backtrace_len = MAX_BACKTRACE;
        activation.backtrace_omitted = total - MAX_BACKTRACE;
    } else {
        activation.backtrace_len = total;
        activation.backtrace_omitted = 0;
    }
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
