//! x86-64, System V ABI (Linux).
//!
//! CAUTION: the assembly below is the contract between the runtime's signal handler and the
//! Rust code that enters Wasm. Offsets in the comments are load-bearing; change the stack
//! layout drawing first, then the code, then the CFI.
//!
//! Callee-saved registers in this ABI: `rbx`, `rbp`, `r12`–`r15` (no vector registers).
//!
//! # The stack switcher
//!
//! A suspended context is three words on its own stack, at its saved stack pointer:
//!
//! ```text
//!   sp + 16   rbx
//!   sp + 8    resume pc      ┐ a frame record: frame-pointer walkers can follow
//!   sp + 0    rbp            ┘ a pointer to `sp` into the suspended context
//! ```
//!
//! `rbx` and `rbp` are saved explicitly because Rust's inline assembly cannot declare them
//! clobbered (LLVM reserves `rbx` and uses `rbp` as the frame pointer). Every other register is
//! declared clobbered — `r12`–`r15` by name, the rest through `clobber_abi("sysv64")` — so the
//! compiler spills exactly the registers that are live across the switch, in the frame of the
//! function that switches. That is 24 bytes saved per switch by the switcher itself; see the
//! crate docs for why this beats saving all callee-saved registers (56 bytes) in a naked routine.
//!
//! The top of a stack prepared by [`init_stack`] (`top` = the stack's highest address):
//!
//! ```text
//!   top - 8    entry function               read once by stack_start
//!   top - 16   parent link                  the resumer's sp, rewritten by every switch_and_link
//!   top - 24   arg                          read once by stack_start
//!   top - 32   padding                      <- sp while stack_start runs (16-aligned)
//!   top - 40   rbx = 0                      ┐
//!   top - 48   resume pc = stack_start      │ the initial context, popped by the first switch
//!   top - 56   rbp = top - 16               ┘ <- initial sp
//! ```
//!
//! `stack_start` keeps `rbp = top - 16` while the entry function runs, so the entry function's
//! frame record links to the parent link, which points at the resumer's saved {rbp, pc}: a
//! frame-pointer walk goes from the continuation's frames straight into the resumer's. Its CFI
//! says the same thing to DWARF unwinders.

use core::arch::{asm, naked_asm};

use crate::{ContextRegisters, EntryRecord, ResidentCall, StackEntry, landing_pad_address};

/// Required alignment of a stack top, and of the stack pointer at every call.
pub const STACK_ALIGNMENT: usize = 16;

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

/// [`call_with_landing_pad`] for a routine on a stack of its own that serves one call after
/// another from a single entry frame: calls `call.callee(call.a0, call.a1, call.a2)`, then
/// switches out to its resumer as [`switch_yield`]`(call.yield_value, call.stack_top)` would,
/// and each time it is resumed, calls again with `call`'s fields read afresh. So the
/// callee-saved registers are saved and `record` written once, not once per call.
///
/// Returns only through the landing pad: 1.
///
/// The entry frame is [`call_with_landing_pad`]'s, word for word, so that routine's landing pad
/// and epilogue serve this one too (the landing pad is reached with `rbp` = `record.fp`, and
/// the epilogue returns to whoever called the routine whose frame that is). `rbx` holds
/// `call` throughout: callee-saved for the callee, and saved by the switch itself.
///
/// Registers on entry: `rdi` = `record`, `rsi` = `call`.
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
        "push rbp",
        ".cfi_def_cfa_offset 16",
        ".cfi_offset rbp, -16",
        "mov rbp, rsp",
        ".cfi_def_cfa_register rbp",
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
        "sub rsp, 8",
        "mov [rdi], rsp",
        "mov [rdi + 8], rbp",
        "mov rbx, rsi",
        // One call: `callee` at 0, `a0`..`a2` at 8..24 (see `ResidentCall`).
        "3:",
        "mov rax, [rbx]",
        "mov rdi, [rbx + 8]",
        "mov rsi, [rbx + 16]",
        "mov rdx, [rbx + 24]",
        "call rax",
        // Switch out as switch_yield(yield_value at 40, stack_top at 32): push rbx, the resume
        // pc and rbp, hand our sp to the resumer in rsi, restore the resumer from the parent
        // link. The pushes do not move the CFA, which is rbp-based.
        "mov rdi, [rbx + 40]",
        "mov rdx, [rbx + 32]",
        "push rbx",
        "lea rax, [rip + 4f]",
        "push rax",
        "push rbp",
        "mov rsi, rsp",
        "mov rsp, [rdx - 16]",
        "pop rbp",
        "pop rax",
        "pop rbx",
        "jmp rax",
        // Resumed here by switch_and_link, with rbx, rbp and rsp ours again: the next call.
        "4:",
        "nop",
        "jmp 3b",
        ".cfi_endproc",
    )
}

/// Throws a Wasm exception from compiled code: calls `find(vmctx, exn, return_address, fp,
/// &mut target)` with the return address into the throwing frame and that frame's frame
/// pointer, and if it returns non-zero, resumes at `target` (the handler's pc, with its sp and
/// fp, and `target.payload` in `rax`, the first exception payload register of Cranelift's
/// `tail` and System V conventions) instead of returning. Otherwise returns 0.
///
/// The stub's own frame (a frame record and a 32-byte `ResumeTarget`, rsp 16-aligned at the
/// call):
///
/// ```text
///   rbp + 8    return address into the thrower
///   rbp + 0    thrower's rbp                       <- rbp
///   rbp - 32   ResumeTarget { pc, sp, fp, payload } <- rsp
/// ```
///
/// Registers on entry: `rdi` = `vmctx`, `rsi` = `exn`, `rdx` = `find`.
///
/// # Safety
///
/// Called only by compiled Wasm code (or its Wasm-to-host trampolines), with a `find` whose
/// targets are handlers of live Cranelift frames above this stub on the same stack, expecting
/// every register but rsp and rbp clobbered (as `try_call`'s exceptional edges do). The frames
/// skipped must own nothing that needs dropping: Wasm frames and trampolines.
#[unsafe(naked)]
pub unsafe extern "C" fn throw(vmctx: *mut u8, exn: usize, find: usize) -> u8 {
    naked_asm!(
        ".cfi_startproc",
        "push rbp",
        ".cfi_def_cfa_offset 16",
        ".cfi_offset rbp, -16",
        "mov rbp, rsp",
        ".cfi_def_cfa_register rbp",
        "sub rsp, 32",
        // find(vmctx, exn, return address, thrower's fp, &target); rdi and rsi stay.
        "mov rax, rdx",
        "mov rdx, [rbp + 8]",
        "mov rcx, [rbp]",
        "mov r8, rsp",
        "call rax",
        "test al, al",
        "jz 2f",
        // Resume at the handler: payload in rax, then fp, and sp last (the target lives on
        // the stack being dropped).
        "mov rcx, [rsp]",
        "mov rax, [rsp + 24]",
        "mov rbp, [rsp + 16]",
        "mov rsp, [rsp + 8]",
        "jmp rcx",
        // Nothing catches it: return 0 (al) to the thrower, which traps.
        "2:",
        "mov rsp, rbp",
        "pop rbp",
        ".cfi_def_cfa rsp, 8",
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

/// The stack pointer where this is inlined: one instruction, for code that checks which stack
/// it runs on (a suspend point asserting it is on its fiber, say) on every use.
#[inline(always)]
pub fn stack_pointer() -> usize {
    let sp: usize;
    // SAFETY: reads a register; touches no memory and no flags.
    unsafe { asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}

/// Prepares the fresh stack below `stack_top` so that the first [`switch_and_link`] to the
/// returned stack pointer runs `entry(arg, value, stack_top)` on it, where `value` is the value
/// passed to that first switch. When `entry` returns `result`, control goes back to the resumer
/// of the moment, whose `switch_and_link` returns `(result, None)`.
///
/// Writes 56 bytes below `stack_top` (see the layout in the module docs).
///
/// # Safety
///
/// `stack_top` must be [`STACK_ALIGNMENT`]-aligned, and the memory below it must be a writable
/// stack that nothing else uses until the routine finishes or the stack is abandoned.
pub unsafe fn init_stack(stack_top: usize, entry: StackEntry, arg: usize) -> usize {
    debug_assert_eq!(stack_top % STACK_ALIGNMENT, 0);
    let top = stack_top as *mut usize;
    // SAFETY: the caller guarantees the 56 bytes below `stack_top` are ours to write.
    unsafe {
        top.sub(1).write(entry as usize);
        top.sub(2).write(0); // parent link: written by every switch_and_link
        top.sub(3).write(arg);
        top.sub(4).write(0); // padding
        top.sub(5).write(0); // rbx
        top.sub(6).write(stack_start as *const () as usize); // resume pc
        top.sub(7).write(stack_top - 16); // rbp: the parent link, as a frame record
    }
    stack_top - 56
}

/// Switches from the current stack to the suspended (or fresh) context at `sp` on the stack
/// whose top is `stack_top`, passing `value`. Records the current stack pointer in that stack's
/// parent link so the routine can switch back.
///
/// Returns when the routine switches back: `(value, Some(sp))` if it suspended with
/// [`switch_yield`] (resume it later by passing `sp`), `(value, None)` if its entry function
/// returned `value`.
///
/// Registers: `rdi` = `value` in and out, `rsi` = `sp` in and the routine's sp (or 0) out,
/// `rdx` = `stack_top`.
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
    // rbx and rbp, which are saved and restored here.
    unsafe {
        asm!(
            // Suspend ourselves: push rbx, the resume pc and rbp (a frame record at the top).
            "push rbx",
            "lea rax, [rip + 2f]",
            "push rax",
            "push rbp",
            // Publish our sp in the target stack's parent link.
            "mov [rdx - 16], rsp",
            // Take the target's stack and restore its context.
            "mov rsp, rsi",
            "pop rbp",
            "pop rax",
            "pop rbx",
            "jmp rax",
            // We are resumed here by switch_yield or stack_start with rdi = value and
            // rsi = the routine's sp (0 if it finished). The nop keeps this address inside the
            // asm block: unwinders look up the CFI of a return address after a signal frame
            // (stack_start's) at the address itself, not at the address - 1.
            "2:",
            "nop",
            inlateout("rdi") value => value_back,
            inlateout("rsi") sp => sp_back,
            in("rdx") stack_top,
            lateout("r12") _,
            lateout("r13") _,
            lateout("r14") _,
            lateout("r15") _,
            clobber_abi("sysv64"),
        );
    }
    (value_back, (sp_back != 0).then_some(sp_back))
}

/// Called by a routine running on the stack whose top is `stack_top`: suspends it and switches
/// back to its resumer, whose [`switch_and_link`] returns `(value, Some(sp))`. Returns the value
/// of the `switch_and_link` that resumes this routine.
///
/// Registers: `rdi` = `value` in and out, `rdx` = `stack_top`; `rsi` carries our sp to the
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
            // Suspend ourselves: push rbx, the resume pc and rbp.
            "push rbx",
            "lea rax, [rip + 2f]",
            "push rax",
            "push rbp",
            // Hand our sp to the resumer, take its stack from the parent link, restore it.
            "mov rsi, rsp",
            "mov rsp, [rdx - 16]",
            "pop rbp",
            "pop rax",
            "pop rbx",
            "jmp rax",
            // Resumed here by switch_and_link with rdi = value (see the nop there).
            "2:",
            "nop",
            inlateout("rdi") value => value_back,
            in("rdx") stack_top,
            lateout("rsi") _,
            lateout("r12") _,
            lateout("r13") _,
            lateout("r14") _,
            lateout("r15") _,
            clobber_abi("sysv64"),
        );
    }
    value_back
}

/// The root frame of every stack: entered by the first `switch_and_link`, calls the entry
/// function, and switches back to the resumer for the last time when it returns.
///
/// Not callable: it expects the stack prepared by [`init_stack`] and the registers set by
/// `switch_and_link` (rdi = value, rbp = `top - 16`, rsp = `top - 32`).
#[unsafe(naked)]
unsafe extern "C" fn stack_start() {
    naked_asm!(
        ".cfi_startproc",
        // Marked as a signal frame: the resumer's stack may lie at a higher or lower address
        // than this one, and gdb accepts a non-monotonic stack only across signal frames.
        ".cfi_signal_frame",
        // The caller of this frame is the resumer, as it was when it switched to us. Its CFA is
        // its sp before the switch pushed three words: CFA = [rbp] + 24, rbp pointing at the
        // parent link. The bytes: DW_CFA_def_cfa_expression, length 5, DW_OP_breg6 (rbp) 0,
        // DW_OP_deref, DW_OP_plus_uconst 24.
        ".cfi_escape 0x0f, 5, 0x76, 0x00, 0x06, 0x23, 0x18",
        // The resumer's saved registers, relative to that CFA.
        ".cfi_offset rbx, -8",
        ".cfi_offset rip, -16",
        ".cfi_offset rbp, -24",
        // entry(arg, value, stack_top); rsp = top - 32 is 16-aligned.
        "mov rsi, rdi",
        "mov rdi, [rbp - 8]",
        "lea rdx, [rbp + 16]",
        "call [rbp + 8]",
        // The entry function returned: switch to the resumer with rdi = result, rsi = 0
        // ("finished"), restoring its context like switch_yield does. Nothing saves ours.
        "mov rdi, rax",
        "xor esi, esi",
        "mov rsp, [rbp]",
        "pop rbp",
        "pop rax",
        "pop rbx",
        "jmp rax",
        ".cfi_endproc",
    )
}
