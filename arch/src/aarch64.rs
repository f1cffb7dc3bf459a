//! AArch64, AAPCS64 (Linux).
//!
//! CAUTION: the assembly below is the contract between the runtime's signal handler and the
//! Rust code that enters Wasm. Offsets in the comments are load-bearing; change the stack
//! layout drawing first, then the code, then the CFI.
//!
//! Callee-saved registers in this ABI: `x19`–`x28`, the frame pointer `x29`, the link register
//! `x30` (as the return address), and the low 64 bits of `v8`–`v15` (`d8`–`d15`).

use core::arch::{asm, naked_asm};

use crate::{ContextRegisters, EntryRecord, landing_pad_address};

/// Calls `callee(a0, a1, a2)` (AAPCS64 C ABI, returns nothing) after recording in `*record`
/// where to resume if a signal handler redirects to the landing pad.
///
/// Returns 0 if `callee` returned, 1 if [`redirect_to_landing_pad`] was used.
///
/// Registers on entry: `x0` = `record`, `x1` = `callee`, `x2` = `a0`, `x3` = `a1`,
/// `x4` = `a2`. The callee receives `a0`, `a1`, `a2` in `x0`, `x1`, `x2`.
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
    // The entry frame, addresses relative to x29 (grows down):
    //
    //   x29 + 8     x30: return address into the Rust caller
    //   x29 + 0     caller's x29                    <- x29               (record.fp)
    //   x29 - 16    x19, x20        (sp + 128)
    //   x29 - 32    x21, x22        (sp + 112)
    //   x29 - 48    x23, x24        (sp + 96)
    //   x29 - 64    x25, x26        (sp + 80)
    //   x29 - 80    x27, x28        (sp + 64)
    //   x29 - 96    d8,  d9         (sp + 48)
    //   x29 - 112   d10, d11        (sp + 32)
    //   x29 - 128   d12, d13        (sp + 16)
    //   x29 - 144   d14, d15        (sp + 0)    <- sp at the call (record.sp), 16-aligned
    //
    // CFA = x29 + 16 throughout the body, so each register's CFI offset is its x29 offset - 16
    // (the second register of a pair sits 8 bytes above the first).
    naked_asm!(
        ".cfi_startproc",
        // Frame record: link to the caller so frame-pointer walks and debuggers see it.
        "stp x29, x30, [sp, #-16]!",
        ".cfi_def_cfa_offset 16",
        ".cfi_offset x30, -8",
        ".cfi_offset x29, -16",
        "mov x29, sp",
        ".cfi_def_cfa x29, 16",
        // Spill every callee-saved register; the landing pad reloads them from here.
        "sub sp, sp, #144",
        "stp x19, x20, [sp, #128]",
        ".cfi_offset x19, -32",
        ".cfi_offset x20, -24",
        "stp x21, x22, [sp, #112]",
        ".cfi_offset x21, -48",
        ".cfi_offset x22, -40",
        "stp x23, x24, [sp, #96]",
        ".cfi_offset x23, -64",
        ".cfi_offset x24, -56",
        "stp x25, x26, [sp, #80]",
        ".cfi_offset x25, -80",
        ".cfi_offset x26, -72",
        "stp x27, x28, [sp, #64]",
        ".cfi_offset x27, -96",
        ".cfi_offset x28, -88",
        "stp d8, d9, [sp, #48]",
        ".cfi_offset d8, -112",
        ".cfi_offset d9, -104",
        "stp d10, d11, [sp, #32]",
        ".cfi_offset d10, -128",
        ".cfi_offset d11, -120",
        "stp d12, d13, [sp, #16]",
        ".cfi_offset d12, -144",
        ".cfi_offset d13, -136",
        "stp d14, d15, [sp]",
        ".cfi_offset d14, -160",
        ".cfi_offset d15, -152",
        // Tell the landing pad where this frame is: record.sp = sp, record.fp = x29.
        "mov x9, sp",
        "stp x9, x29, [x0]",
        // Shift the arguments down into callee position and call.
        "mov x9, x1",
        "mov x0, x2",
        "mov x1, x3",
        "mov x2, x4",
        "blr x9",
        // Normal return: status 0.
        "mov x0, #0",
        // Shared epilogue (the landing pad branches here with x0 = 1). sp is recomputed from
        // x29 so the epilogue does not depend on how we got here.
        "2:",
        ".cfi_remember_state",
        "sub sp, x29, #144",
        "ldp d14, d15, [sp]",
        "ldp d12, d13, [sp, #16]",
        "ldp d10, d11, [sp, #32]",
        "ldp d8, d9, [sp, #48]",
        "ldp x27, x28, [sp, #64]",
        "ldp x25, x26, [sp, #80]",
        "ldp x23, x24, [sp, #96]",
        "ldp x21, x22, [sp, #112]",
        "ldp x19, x20, [sp, #128]",
        "add sp, sp, #144",
        "ldp x29, x30, [sp], #16",
        ".cfi_def_cfa sp, 0",
        ".cfi_restore x29",
        ".cfi_restore x30",
        "ret",
        ".cfi_restore_state",
        // The landing pad. Reached only by sigreturn into a context rewritten by
        // `redirect_to_landing_pad`: x0 = record, sp = record.sp, x29 = record.fp. The CFI
        // state here is the body's (restored above), which is exactly true once x29 is set.
        ".globl weft_arch_landing_pad",
        ".hidden weft_arch_landing_pad",
        "weft_arch_landing_pad:",
        "ldp x9, x29, [x0]",
        "mov sp, x9",
        "mov x0, #1",
        "b 2b",
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
    let mcontext = unsafe { &(*ucontext.cast::<libc::ucontext_t>()).uc_mcontext };
    ContextRegisters {
        pc: mcontext.pc as usize,
        fp: mcontext.regs[29] as usize,
        sp: mcontext.sp as usize,
    }
}

/// In a signal handler: rewrites the interrupted `ucontext` so that, when the handler returns,
/// the thread resumes at the landing pad of `record`, making [`call_with_landing_pad`] return 1
/// with all callee-saved registers restored.
///
/// Sets `pc` = landing pad, `sp` = `record.sp`, `x29` = `record.fp`, `x0` = `record`.
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
        let mcontext = &mut (*ucontext.cast::<libc::ucontext_t>()).uc_mcontext;
        mcontext.pc = landing_pad_address() as u64;
        mcontext.sp = (*record).sp as u64;
        mcontext.regs[29] = (*record).fp as u64;
        mcontext.regs[0] = record as u64;
    }
}

/// Makes freshly written code in `start..start + len` visible to instruction fetch on this core.
///
/// Cleans the data cache to the point of unification and invalidates the instruction cache, by
/// line, using the line sizes in `CTR_EL0` (skipping either step when `CTR_EL0.IDC`/`DIC` say
/// the hardware already does it), then `dsb ish` + `isb`. This is what compiler-rt's
/// `__clear_cache` does, inlined so it needs no libgcc.
///
/// # Safety
///
/// `start..start + len` must be mapped in this process (cache maintenance by address on an
/// unmapped page faults).
pub unsafe fn flush_icache(start: *const u8, len: usize) {
    if len == 0 {
        return;
    }
    let ctr: u64;
    // SAFETY: Linux lets EL0 read CTR_EL0 (or traps and emulates it); no side effects.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
    // Line sizes are log2 of the number of 4-byte words: DminLine in bits 19:16, IminLine 3:0.
    let dcache_line = 4usize << ((ctr >> 16) & 0xf);
    let icache_line = 4usize << (ctr & 0xf);
    let idc = ctr & (1 << 28) != 0;
    let dic = ctr & (1 << 29) != 0;
    let start = start as usize;
    let end = start + len;

    if !idc {
        let mut line = start & !(dcache_line - 1);
        while line < end {
            // SAFETY: `line` is inside (or on the line of) a mapped range, per the caller.
            unsafe { asm!("dc cvau, {}", in(reg) line, options(nostack, preserves_flags)) };
            line += dcache_line;
        }
    }
    // SAFETY: barriers have no memory-safety preconditions.
    unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
    if !dic {
        let mut line = start & !(icache_line - 1);
        while line < end {
            // SAFETY: as for `dc cvau` above.
            unsafe { asm!("ic ivau, {}", in(reg) line, options(nostack, preserves_flags)) };
            line += icache_line;
        }
        // SAFETY: barriers have no memory-safety preconditions.
        unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
    }
    // SAFETY: barriers have no memory-safety preconditions.
    unsafe { asm!("isb", options(nostack, preserves_flags)) };
}
