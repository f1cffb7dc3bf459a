//! x86-64, System V ABI (Linux).
//!
//! CAUTION: the assembly below is the contract between the runtime's signal handler and the
//! Rust code that enters Wasm. Offsets in the comments are load-bearing; change the stack
//! layout drawing first, then the code, then the CFI.
//!
//! Callee-saved registers in this ABI: `rbx`, `rbp`, `r12`–`r15` (no vector registers).

use core::arch::naked_asm;

use crate::{ContextRegisters, EntryRecord, landing_pad_address};

/// Calls `callee(a0, a1, a2)` (System V C ABI, returns nothing) after recording in `*record`
/// where to resume if a signal handler redirects to the landing pad.
///
/// Returns 0 if `callee` returned, 1 if [`redirect_to_landing_pad`] was used.
///
/// Registers on entry: `rdi` = `record`, `rsi` = `callee`, `rdx` = `a0`, `rcx` = `a1`,
/// `r8` = `a2`. The callee receives `a0`, `a1`, `a2` in `rdi`, `rsi`, `rdx`.
///
/// # Safety
///
/// - `record` must be valid for writes and must stay valid (and unmoved) until this call returns;
///   the landing pad reads it.
/// - `callee` must be the address of a function with the C ABI taking three pointer-sized
///   arguments and returning nothing, and it must be safe to call with `a0`, `a1`, `a2`.
/// - Frames between this routine and the point of redirection are abandoned without running
///   destructors or unwinding: they must own nothing that needs dropping (Wasm frames and
///   `extern "C"` trampolines that hold no Rust values).
#[unsafe(naked)]
pub unsafe extern "C" fn call_with_landing_pad(
    record: *mut EntryRecord,
    callee: usize,
    a0: usize,
    a1: usize,
    a2: usize,
) -> usize {
    // The entry frame, addresses relative to rbp (grows down):
    //
    //   rbp + 8    return address into the Rust caller
    //   rbp + 0    caller's rbp                       <- rbp          (record.fp)
    //   rbp - 8    rbx
    //   rbp - 16   r12
    //   rbp - 24   r13
    //   rbp - 32   r14
    //   rbp - 40   r15
    //   rbp - 48   padding (16-byte alignment)        <- rsp at call  (record.sp)
    //
    // CFA = rbp + 16 throughout the body, so each register's CFI offset is its rbp offset - 16.
    naked_asm!(
        ".cfi_startproc",
        // Frame: link to the caller so frame-pointer walks and debuggers see it.
        "push rbp",
        ".cfi_def_cfa_offset 16",
        ".cfi_offset rbp, -16",
        "mov rbp, rsp",
        ".cfi_def_cfa_register rbp",
        // Spill every callee-saved register; the landing pad reloads them from here.
        "push rbx",
        ".cfi_offset rbx, -24",
        "push r12",
        ".cfi_offset r12, -32",
        "push r13",
        ".cfi_offset r13, -40",
        "push r14",
        ".cfi_offset r14, -48",
        "push r15",
        ".cfi_offset r15, -56",
        // On entry rsp was 8 mod 16; six pushes later it is again: pad to 16.
        "sub rsp, 8",
        // Tell the landing pad where this frame is: record.sp = rsp, record.fp = rbp.
        "mov [rdi], rsp",
        "mov [rdi + 8], rbp",
        // Shift the arguments down into callee position and call.
        "mov rax, rsi",
        "mov rdi, rdx",
        "mov rsi, rcx",
        "mov rdx, r8",
        "call rax",
        // Normal return: status 0.
        "xor eax, eax",
        // Shared epilogue (the landing pad jumps here with eax = 1). rsp is recomputed from rbp
        // so the epilogue does not depend on how we got here.
        "2:",
        ".cfi_remember_state",
        "lea rsp, [rbp - 40]",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbx",
        "pop rbp",
        ".cfi_def_cfa rsp, 8",
        "ret",
        ".cfi_restore_state",
        // The landing pad. Reached only by sigreturn into a context rewritten by
        // `redirect_to_landing_pad`: rdi = record, rsp = record.sp, rbp = record.fp. The CFI
        // state here is the body's (restored above), which is exactly true once rbp is set.
        ".globl weft_arch_landing_pad",
        ".hidden weft_arch_landing_pad",
        "weft_arch_landing_pad:",
        "mov rsp, [rdi]",
        "mov rbp, [rdi + 8]",
        "mov eax, 1",
        "jmp 2b",
        ".cfi_endproc",
    )
}

/// Registers of the interrupted context `ucontext` (the third argument of an `SA_SIGINFO`
/// signal handler).
///
/// # Safety
///
/// `ucontext` must point to a valid `ucontext_t`, as passed to a signal handler by the kernel.
pub unsafe fn context_registers(ucontext: *const libc::c_void) -> ContextRegisters {
    // SAFETY: the caller guarantees `ucontext` points to the kernel's `ucontext_t`.
    let gregs = unsafe { &(*ucontext.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
    ContextRegisters {
        pc: gregs[libc::REG_RIP as usize] as usize,
        fp: gregs[libc::REG_RBP as usize] as usize,
        sp: gregs[libc::REG_RSP as usize] as usize,
    }
}

/// In a signal handler: rewrites the interrupted `ucontext` so that, when the handler returns,
/// the thread resumes at the landing pad of `record`, making [`call_with_landing_pad`] return 1
/// with all callee-saved registers restored.
///
/// Sets `rip` = landing pad, `rsp` = `record.sp`, `rbp` = `record.fp`, `rdi` = `record`.
///
/// # Safety
///
/// - `ucontext` must point to the valid, writable `ucontext_t` of the signal being handled.
/// - `record` must be the record of a `call_with_landing_pad` that is still active *on the
///   interrupted thread's current stack*, with no other `call_with_landing_pad` between it and
///   the interrupted instruction that should survive.
/// - The abandoned frames must satisfy the last safety condition of `call_with_landing_pad`.
pub unsafe fn redirect_to_landing_pad(ucontext: *mut libc::c_void, record: *const EntryRecord) {
    // SAFETY: the caller guarantees `ucontext` is the handler's writable `ucontext_t` and that
    // `record` is a live, filled-in record.
    unsafe {
        let gregs = &mut (*ucontext.cast::<libc::ucontext_t>()).uc_mcontext.gregs;
        gregs[libc::REG_RIP as usize] = landing_pad_address() as i64;
        gregs[libc::REG_RSP as usize] = (*record).sp as i64;
        gregs[libc::REG_RBP as usize] = (*record).fp as i64;
        gregs[libc::REG_RDI as usize] = record as i64;
    }
}

/// Makes freshly written code visible to instruction fetch. A no-op on x86-64: instruction and
/// data caches are coherent, and code is published through `mprotect`, a serializing syscall.
///
/// # Safety
///
/// None beyond the AArch64 version's (`start..start + len` must be mapped); kept `unsafe` so
/// callers are written the same way on every ISA.
pub unsafe fn flush_icache(start: *const u8, len: usize) {
    let _ = (start, len);
}
