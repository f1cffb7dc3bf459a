//! AArch64, AAPCS64 (Linux).
//!
//! CAUTION: the assembly below is the contract between the runtime's signal handler and the
//! Rust code that enters Wasm. Offsets in the comments are load-bearing; change the stack
//! layout drawing first, then the code, then the CFI.
//!
//! Callee-saved registers in this ABI: `x19`–`x28`, the frame pointer `x29`, the link register
//! `x30` (as the return address), and the low 64 bits of `v8`–`v15` (`d8`–`d15`).
//!
//! # The stack switcher
//!
//! A suspended context is four words on its own stack, at its saved stack pointer:
//!
//! ```text
//!   sp + 24   padding (sp stays 16-aligned)
//!   sp + 16   x19
//!   sp + 8    resume pc      ┐ a frame record: frame-pointer walkers can follow
//!   sp + 0    x29            ┘ a pointer to `sp` into the suspended context
//! ```
//!
//! `x19` and `x29` are saved explicitly because Rust's inline assembly cannot declare them
//! clobbered (LLVM reserves `x19` as a base pointer and `x29` is the frame pointer). Every other
//! register is declared clobbered — `x20`–`x28` by name, the rest (including `x30` and all of
//! `v0`–`v31`) through `clobber_abi("C")` — so the compiler spills exactly the registers that
//! are live across the switch, in the frame of the function that switches. That is 32 bytes
//! saved per switch by the switcher itself (24 of data + 8 of alignment padding); see the crate
//! docs for why this beats saving all callee-saved registers (160 bytes) in a naked routine.
//!
//! The top of a stack prepared by [`init_stack`] (`top` = the stack's highest address):
//!
//! ```text
//!   top - 8    entry function               read once by stack_start
//!   top - 16   parent link                  the resumer's sp, rewritten by every switch_and_link
//!   top - 24   arg                          read once by stack_start
//!   top - 32   padding                      <- sp while stack_start runs (16-aligned)
//!   top - 40   padding                      ┐
//!   top - 48   x19 = 0                      │ the initial context, popped by the first switch
//!   top - 56   resume pc = stack_start      │
//!   top - 64   x29 = top - 16               ┘ <- initial sp
//! ```
//!
//! `stack_start` keeps `x29 = top - 16` while the entry function runs, so the entry function's
//! frame record links to the parent link, which points at the resumer's saved {x29, pc}: a
//! frame-pointer walk goes from the continuation's frames straight into the resumer's. Its CFI
//! says the same thing to DWARF unwinders.

use core::arch::{asm, naked_asm};

use crate::{ContextRegisters, EntryRecord, ResidentCall, StackEntry, landing_pad_address};

/// Required alignment of a stack top, and of the stack pointer at all times (AAPCS64).
pub const STACK_ALIGNMENT: usize = 16;

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

/// [`call_with_landing_pad`] for a routine on a stack of its own that serves one call after
/// another from a single entry frame: calls `call.callee(call.a0, call.a1, call.a2)`, then
/// switches out to its resumer as [`switch_yield`]`(call.yield_value, call.stack_top)` would,
/// and each time it is resumed, calls again with `call`'s fields read afresh. So the
/// callee-saved registers are saved and `record` written once, not once per call.
///
/// Returns only through the landing pad: 1.
///
/// The entry frame is [`call_with_landing_pad`]'s, word for word, so that routine's landing pad
/// and epilogue serve this one too (the landing pad is reached with `x29` = `record.fp`, and
/// the epilogue returns to whoever called the routine whose frame that is). `x19` holds
/// `call` throughout: callee-saved for the callee, and saved by the switch itself.
///
/// Registers on entry: `x0` = `record`, `x1` = `call`.
///
/// # Safety
///
/// As for [`call_with_landing_pad`], for each call; moreover it must run on the stack whose
/// top is `call.stack_top`, whose resumer waits in [`switch_and_link`], and `call` must stay
/// valid and in place while the routine lives (it is read after each resume). A resumer finds
/// the routine switched out after each call, and may abandon it there (the frame owns
/// nothing), or resume it for the next call.
#[unsafe(naked)]
pub unsafe extern "C" fn serve_with_landing_pad(
    record: *mut EntryRecord,
    call: *const ResidentCall,
) -> usize {
    // The entry frame: as `call_with_landing_pad`'s (see there).
    naked_asm!(
        ".cfi_startproc",
        "stp x29, x30, [sp, #-16]!",
        ".cfi_def_cfa_offset 16",
        ".cfi_offset x30, -8",
        ".cfi_offset x29, -16",
        "mov x29, sp",
        ".cfi_def_cfa x29, 16",
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
        "mov x9, sp",
        "stp x9, x29, [x0]",
        "mov x19, x1",
        // One call: `callee` at 0, `a0`..`a2` at 8..24 (see `ResidentCall`).
        "3:",
        "ldp x9, x0, [x19]",
        "ldp x1, x2, [x19, #16]",
        "blr x9",
        // Switch out as switch_yield(yield_value at 40, stack_top at 32): save x29, the resume
        // pc and x19 below sp, hand our sp to the resumer in x1, restore the resumer from the
        // parent link. The CFA is x29-based, so moving sp does not change it.
        "ldp x2, x0, [x19, #32]",
        "adr x9, 4f",
        "sub sp, sp, #32",
        "stp x29, x9, [sp]",
        "str x19, [sp, #16]",
        "mov x1, sp",
        "ldr x9, [x2, #-16]",
        "ldp x29, x10, [x9]",
        "ldr x19, [x9, #16]",
        "add sp, x9, #32",
        "br x10",
        // Resumed here by switch_and_link, with x19, x29 and sp ours again: the next call.
        "4:",
        "nop",
        "b 3b",
        ".cfi_endproc",
    )
}

/// Throws a Wasm exception from compiled code: calls `find(vmctx, exn, return_address, fp,
/// &mut target)` with the return address into the throwing frame and that frame's frame
/// pointer, and if it returns non-zero, resumes at `target` (the handler's pc, with its sp and
/// fp, and `target.payload` in `x0`, the first exception payload register of Cranelift's
/// `tail` and AAPCS64 conventions) instead of returning. Otherwise returns 0.
///
/// The stub's own frame (48 bytes, sp 16-aligned):
///
/// ```text
///   sp + 16    ResumeTarget { pc, sp, fp, payload } (32 bytes)
///   sp + 8     x30: return address into the thrower
///   sp + 0     x29: thrower's frame pointer        <- sp = x29
/// ```
///
/// Registers on entry: `x0` = `vmctx`, `x1` = `exn`, `x2` = `find`.
///
/// # Safety
///
/// As on x86-64: called only by compiled Wasm code (or its Wasm-to-host trampolines), with a
/// `find` whose targets are handlers of live Cranelift frames above this stub on the same
/// stack, expecting every register but sp and x29 clobbered; the skipped frames own nothing
/// that needs dropping.
#[unsafe(naked)]
pub unsafe extern "C" fn throw(vmctx: *mut u8, exn: usize, find: usize) -> u8 {
    naked_asm!(
        ".cfi_startproc",
        "stp x29, x30, [sp, #-48]!",
        ".cfi_def_cfa_offset 48",
        ".cfi_offset x29, -48",
        ".cfi_offset x30, -40",
        "mov x29, sp",
        // find(vmctx, exn, return address, thrower's fp, &target); x0 and x1 stay.
        "mov x9, x2",
        "mov x2, x30",
        "ldr x3, [sp]",
        "add x4, sp, #16",
        "blr x9",
        "tst w0, #0xff",
        "b.eq 2f",
        // Resume at the handler: payload in x0, fp, then sp (the target lives on the stack
        // being dropped, so it is read first).
        "ldr x9, [sp, #16]",
        "ldr x10, [sp, #24]",
        "ldr x29, [sp, #32]",
        "ldr x0, [sp, #40]",
        "mov sp, x10",
        "br x9",
        // Nothing catches it: return 0 (w0) to the thrower, which traps.
        "2:",
        "ldp x29, x30, [sp], #48",
        ".cfi_def_cfa_offset 0",
        "ret",
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

/// The stack pointer where this is inlined: one instruction, for code that checks which stack
/// it runs on (a suspend point asserting it is on its fiber, say) on every use.
#[inline(always)]
pub fn stack_pointer() -> usize {
    let sp: usize;
    // SAFETY: reads a register; touches no memory and no flags.
    unsafe { asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}

/// Prepares the fresh stack below `stack_top` so that the first [`switch_and_link`] to the
/// returned stack pointer runs `entry(arg, value, stack_top)` on it, where `value` is the value
/// passed to that first switch. When `entry` returns `result`, control goes back to the resumer
/// of the moment, whose `switch_and_link` returns `(result, None)`.
///
/// Writes 64 bytes below `stack_top` (see the layout in the module docs).
///
/// # Safety
///
/// `stack_top` must be [`STACK_ALIGNMENT`]-aligned, and the memory below it must be a writable
/// stack that nothing else uses until the routine finishes or the stack is abandoned.
pub unsafe fn init_stack(stack_top: usize, entry: StackEntry, arg: usize) -> usize {
    debug_assert_eq!(stack_top % STACK_ALIGNMENT, 0);
    let top = stack_top as *mut usize;
    // SAFETY: the caller guarantees the 64 bytes below `stack_top` are ours to write.
    unsafe {
        top.sub(1).write(entry as usize);
        top.sub(2).write(0); // parent link: written by every switch_and_link
        top.sub(3).write(arg);
        top.sub(4).write(0); // padding
        top.sub(5).write(0); // padding
        top.sub(6).write(0); // x19
        top.sub(7).write(stack_start as *const () as usize); // resume pc
        top.sub(8).write(stack_top - 16); // x29: the parent link, as a frame record
    }
    stack_top - 64
}

/// Switches from the current stack to the suspended (or fresh) context at `sp` on the stack
/// whose top is `stack_top`, passing `value`. Records the current stack pointer in that stack's
/// parent link so the routine can switch back.
///
/// Returns when the routine switches back: `(value, Some(sp))` if it suspended with
/// [`switch_yield`] (resume it later by passing `sp`), `(value, None)` if its entry function
/// returned `value`.
///
/// Registers: `x0` = `value` in and out, `x1` = `sp` in and the routine's sp (or 0) out,
/// `x2` = `stack_top`.
///
/// # Safety
///
/// - `sp` must come from [`init_stack`] on this `stack_top`, or from the last `Some(sp)`
///   returned for this stack, and must not have been resumed since.
/// - The stack must stay mapped, and its routine must not be resumed by anyone else, until it
///   switches back here.
/// - Code on the other side sees the values of this thread's registers only; thread-local
///   addresses computed before the switch must not be reused after it if the routine may be
///   resumed on another thread (see the crate docs).
#[inline(always)]
pub unsafe fn switch_and_link(value: usize, sp: usize, stack_top: usize) -> (usize, Option<usize>) {
    let (value_back, sp_back): (usize, usize);
    // SAFETY: per the caller's guarantees, `sp` holds a context in the format this module's
    // switches restore; everything the other side may change is declared clobbered, apart from
    // x19 and x29, which are saved and restored here.
    unsafe {
        asm!(
            // Suspend ourselves: x29 and the resume pc (a frame record at the top), then x19.
            "adr x9, 2f",
            "sub sp, sp, #32",
            "stp x29, x9, [sp]",
            "str x19, [sp, #16]",
            // Publish our sp in the target stack's parent link.
            "mov x9, sp",
            "str x9, [x2, #-16]",
            // Restore the target's context and take its stack.
            "ldp x29, x9, [x1]",
            "ldr x19, [x1, #16]",
            "add sp, x1, #32",
            "br x9",
            // We are resumed here by switch_yield or stack_start with x0 = value and
            // x1 = the routine's sp (0 if it finished). The nop keeps this address inside the
            // asm block: unwinders look up the CFI of a return address after a signal frame
            // (stack_start's) at the address itself, not at the address - 4.
            "2:",
            "nop",
            inlateout("x0") value => value_back,
            inlateout("x1") sp => sp_back,
            in("x2") stack_top,
            lateout("x20") _,
            lateout("x21") _,
            lateout("x22") _,
            lateout("x23") _,
            lateout("x24") _,
            lateout("x25") _,
            lateout("x26") _,
            lateout("x27") _,
            lateout("x28") _,
            clobber_abi("C"),
        );
    }
    (value_back, (sp_back != 0).then_some(sp_back))
}

/// Called by a routine running on the stack whose top is `stack_top`: suspends it and switches
/// back to its resumer, whose [`switch_and_link`] returns `(value, Some(sp))`. Returns the value
/// of the `switch_and_link` that resumes this routine.
///
/// Registers: `x0` = `value` in and out, `x2` = `stack_top`; `x1` carries our sp to the
/// resumer.
///
/// # Safety
///
/// Must be called on the stack whose top is `stack_top`, by its routine (the entry function
/// given to [`init_stack`] or code it called), while a `switch_and_link` into that stack is
/// waiting for it. The same thread-local caution as for `switch_and_link` applies.
#[inline(always)]
pub unsafe fn switch_yield(value: usize, stack_top: usize) -> usize {
    let value_back: usize;
    // SAFETY: per the caller's guarantees, the parent link holds the sp of a context suspended
    // by switch_and_link; clobbers as in switch_and_link.
    unsafe {
        asm!(
            // Suspend ourselves: x29, the resume pc, x19.
            "adr x9, 2f",
            "sub sp, sp, #32",
            "stp x29, x9, [sp]",
            "str x19, [sp, #16]",
            // Hand our sp to the resumer, take its stack from the parent link, restore it.
            "mov x1, sp",
            "ldr x9, [x2, #-16]",
            "ldp x29, x10, [x9]",
            "ldr x19, [x9, #16]",
            "add sp, x9, #32",
            "br x10",
            // Resumed here by switch_and_link with x0 = value (see the nop there).
            "2:",
            "nop",
            inlateout("x0") value => value_back,
            in("x2") stack_top,
            lateout("x1") _,
            lateout("x20") _,
            lateout("x21") _,
            lateout("x22") _,
            lateout("x23") _,
            lateout("x24") _,
            lateout("x25") _,
            lateout("x26") _,
            lateout("x27") _,
            lateout("x28") _,
            clobber_abi("C"),
        );
    }
    value_back
}

/// The root frame of every stack: entered by the first `switch_and_link`, calls the entry
/// function, and switches back to the resumer for the last time when it returns.
///
/// Not callable: it expects the stack prepared by [`init_stack`] and the registers set by
/// `switch_and_link` (x0 = value, x29 = `top - 16`, sp = `top - 32`).
#[unsafe(naked)]
unsafe extern "C" fn stack_start() {
    naked_asm!(
        ".cfi_startproc",
        // Marked as a signal frame: the resumer's stack may lie at a higher or lower address
        // than this one, and gdb accepts a non-monotonic stack only across signal frames.
        ".cfi_signal_frame",
        // The caller of this frame is the resumer, as it was when it switched to us. Its CFA is
        // its sp before the switch pushed four words: CFA = [x29] + 32, x29 pointing at the
        // parent link. The bytes: DW_CFA_def_cfa_expression, length 5, DW_OP_breg29 0,
        // DW_OP_deref, DW_OP_plus_uconst 32.
        ".cfi_escape 0x0f, 5, 0x8d, 0x00, 0x06, 0x23, 0x20",
        // The resumer's saved registers, relative to that CFA (x30 is the return column).
        ".cfi_offset x19, -16",
        ".cfi_offset x30, -24",
        ".cfi_offset x29, -32",
        // entry(arg, value, stack_top); sp = top - 32 is 16-aligned.
        "mov x1, x0",
        "ldr x0, [x29, #-8]",
        "add x2, x29, #16",
        "ldr x9, [x29, #8]",
        "blr x9",
        // The entry function returned: switch to the resumer with x0 = result, x1 = 0
        // ("finished"), restoring its context like switch_yield does. Nothing saves ours.
        "mov x1, #0",
        "ldr x9, [x29]",
        "ldp x29, x10, [x9]",
        "ldr x19, [x9, #16]",
        "add sp, x9, #32",
        "br x10",
        ".cfi_endproc",
    )
}
