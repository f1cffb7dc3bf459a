//! Shared by the integration tests: a process-wide trap handler that redirects to the landing
//! pad of the current thread's `call_with_landing_pad`, run on a `sigaltstack`.

#![allow(dead_code)] // each test binary uses a different part

use std::cell::Cell;
use std::ptr;
use std::sync::Once;

use weft_arch::{
    ContextRegisters, EntryRecord, call_with_landing_pad, context_registers,
    redirect_to_landing_pad,
};

// ---------------------------------------------------------------------------------------------
// Harness: a process-wide handler that redirects to the record of the current thread.

thread_local! {
    /// The record of the `call_with_landing_pad` active on this thread, if a trap is expected.
    pub static ACTIVE_RECORD: Cell<*const EntryRecord> = const { Cell::new(ptr::null()) };
    /// Registers the handler saw at the last trap.
    pub static TRAP_CONTEXT: Cell<ContextRegisters> =
        const { Cell::new(ContextRegisters { pc: 0, fp: 0, sp: 0 }) };
    /// Which signal the last trap was.
    pub static TRAP_SIGNAL: Cell<libc::c_int> = const { Cell::new(0) };
    /// The frame pointer saved in the trapping frame, if its fp pointed into the Wasm stack.
    pub static TRAP_CALLER_FP: Cell<usize> = const { Cell::new(0) };
    /// The faulting data address (`si_addr`) of the last trap.
    pub static TRAP_ADDRESS: Cell<usize> = const { Cell::new(0) };
}

unsafe extern "C" fn on_trap(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    ucontext: *mut libc::c_void,
) {
    let record = ACTIVE_RECORD.with(Cell::get);
    if record.is_null() {
        // Not a trap we expect: fall back to the default action, so re-executing the faulting
        // instruction kills the process with the real signal.
        // SAFETY: resetting a disposition to SIG_DFL is async-signal-safe.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
        return;
    }
    // SAFETY: the kernel passed `ucontext`; `record` belongs to the `call_with_landing_pad`
    // running on this thread, whose callees are plain `extern "C"` functions without drops.
    unsafe {
        let trap = context_registers(ucontext);
        TRAP_CONTEXT.with(|c| c.set(trap));
        TRAP_SIGNAL.with(|s| s.set(signal));
        TRAP_ADDRESS.with(|a| a.set((*info).si_addr() as usize));
        // A frame-pointer walker's first step, done only when fp points between the trapping
        // sp and the entry frame (the range of frames the trap abandons).
        let caller_fp = if (trap.sp..(*record).fp).contains(&trap.fp) {
            *(trap.fp as *const usize)
        } else {
            0
        };
        TRAP_CALLER_FP.with(|c| c.set(caller_fp));
        redirect_to_landing_pad(ucontext, record);
    }
}

fn install_handler() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        for signal in [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL] {
            // SAFETY: a zeroed sigaction is a valid starting point; the handler has the
            // SA_SIGINFO signature.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_trap as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut action.sa_mask);
                assert_eq!(libc::sigaction(signal, &action, ptr::null_mut()), 0);
            }
        }
    });
}

/// An alternate signal stack for the current thread, removed on drop.
pub struct AltStack {
    base: *mut libc::c_void,
    size: usize,
}

impl AltStack {
    pub fn install() -> AltStack {
        install_handler();
        let size = 64 * 1024;
        // SAFETY: anonymous private mapping; checked below.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        let stack = libc::stack_t {
            ss_sp: base,
            ss_flags: 0,
            ss_size: size,
        };
        // SAFETY: `stack` describes the mapping above, which outlives its registration.
        assert_eq!(unsafe { libc::sigaltstack(&stack, ptr::null_mut()) }, 0);
        AltStack { base, size }
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        let disable = libc::stack_t {
            ss_sp: ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: unregister before unmapping; no signal is being handled on it now.
        unsafe {
            libc::sigaltstack(&disable, ptr::null_mut());
            libc::munmap(self.base, self.size);
        }
    }
}

/// One inaccessible page: writing to it raises SIGSEGV.
pub struct GuardPage(*mut libc::c_void);

impl GuardPage {
    pub fn new() -> GuardPage {
        // SAFETY: anonymous private mapping; checked below.
        let page = unsafe {
            libc::mmap(
                ptr::null_mut(),
                page_size(),
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(page, libc::MAP_FAILED);
        GuardPage(page)
    }

    pub fn addr(&self) -> usize {
        self.0 as usize
    }
}

impl Drop for GuardPage {
    fn drop(&mut self) {
        // SAFETY: we own the mapping.
        unsafe { libc::munmap(self.0, page_size()) };
    }
}

pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// Runs `callee(a0, a1, a2)` through the landing pad with traps expected; returns the status and
/// the entry record.
#[inline(never)]
pub fn call_guarded(callee: usize, a0: usize, a1: usize, a2: usize) -> (usize, EntryRecord) {
    let mut record = EntryRecord::new();
    ACTIVE_RECORD.with(|r| r.set(&raw const record));
    TRAP_SIGNAL.with(|s| s.set(0));
    // SAFETY: `record` lives across the call; every callee in this file is an `extern "C"`
    // function of three words holding no values with destructors.
    let status = unsafe { call_with_landing_pad(&raw mut record, callee, a0, a1, a2) };
    ACTIVE_RECORD.with(|r| r.set(ptr::null()));
    (status, record)
}

pub fn fn_addr(f: extern "C" fn(usize, usize, usize)) -> usize {
    f as *const () as usize
}
