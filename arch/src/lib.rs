//! `weft-arch`: the few places where weft must speak machine code or to the kernel's memory
//! manager directly.
//!
//! Three parts: trap recovery (a landing pad that signal handlers redirect to), the stack
//! switcher that native continuations run on, and the stacks themselves. Everything here is
//! assembly, `mmap`, or a thin documented wrapper around them. The rest of weft stays free of
//! `unsafe` (apart from the runtime's VM layer) by going through this crate.
//!
//! # Trap recovery without `longjmp`
//!
//! Wasm code compiled by Cranelift reports traps by faulting: an out-of-bounds access hits a
//! guard page (`SIGSEGV`), an explicit trap executes `ud2`/`udf` (`SIGILL`). The runtime's
//! signal handler must then abandon every frame between the faulting instruction and the Rust
//! code that entered Wasm, and make that entry return a "trapped" status.
//!
//! The usual tool is `setjmp`/`longjmp` (or `sigsetjmp`), called *from* the handler. We avoid it:
//!
//! - `longjmp` out of a signal handler leaves the handler without `sigreturn`, so the kernel never
//!   restores the signal mask (unless we pay for `sigsetjmp`'s extra `sigprocmask` on every
//!   entry), and the alternate signal stack is still marked "in use" on some kernels;
//! - `setjmp` is a `returns_twice` function, which Rust cannot declare soundly.
//!
//! Instead the handler *returns normally*, after rewriting the interrupted context so that the
//! kernel's `sigreturn` resumes the thread at a **landing pad**: an address inside
//! [`call_with_landing_pad`], the one routine through which the runtime enters Wasm. The kernel
//! then restores the mask and leaves the altstack as usual, and the landing pad finishes the
//! job in ordinary user mode.
//!
//! ```text
//!   Rust caller ──call──▶ call_with_landing_pad ──call──▶ callee (Wasm …) ──▶ faulting insn
//!        ▲                 │ saves callee-saved regs,                          │ SIGSEGV
//!        │                 │ record.sp/fp = entry frame                         ▼
//!        │                 │                               signal handler: redirect_to_landing_pad
//!        │                 │                               (pc = landing pad, sp = record.sp,
//!        │                 ▼                                arg0 = record), returns
//!        └──── returns 1 ◀ landing pad: restore callee-saved regs ◀── sigreturn ──┘
//! ```
//!
//! The entry routine pushes a normal frame (frame pointer + return address), spills *all*
//! callee-saved registers of the platform ABI, records its stack pointer and frame pointer in an
//! [`EntryRecord`], and calls the callee. If the callee returns, the routine restores the
//! registers and returns 0. The landing pad does the same restore from the stack slots (the
//! callee's frames are simply dropped) and returns 1. Because every callee-saved register is
//! reloaded from the entry frame, the Rust caller cannot tell the two paths apart except by the
//! return value; no register state from the abandoned frames leaks out.
//!
//! The [`EntryRecord`] also marks the boundary for backtraces: frame-pointer walks starting in
//! Wasm code stop when they reach `record.fp`, and the entry frame links to the Rust caller with
//! regular frame pointers and DWARF CFI, so debuggers see across it.
//!
//! What is *not* restored: the floating-point control state (x86-64 `MXCSR`/x87 control word,
//! AArch64 `FPCR`). The ABIs make these callee-saved, but Cranelift-generated code never changes
//! them, so a trap cannot leave them modified.
//!
//! # Continuations: the stack switcher
//!
//! A continuation is a routine running on its own [`Stack`]. Three operations move control:
//!
//! - [`init_stack`]`(top, entry, arg) -> sp` prepares a fresh stack so that the first switch to
//!   `sp` enters a small root routine (`stack_start`) that calls `entry(arg, value, top)`;
//! - [`switch_and_link`]`(value, sp, top)` (resume) switches into the routine, first writing
//!   the resumer's stack pointer into the routine's **parent link** (a word at `top - 16`);
//! - [`switch_yield`]`(value, top)` (suspend) switches back to whoever resumed it last, found
//!   through the parent link; and when `entry` returns, `stack_start` does the same one last
//!   time, reporting "finished".
//!
//! ```text
//!   resumer's stack                          routine's stack (top at the right)
//!   ───────────────                          ───────────────────────────────────────
//!   switch_and_link(v, sp, top) ──────────▶  entry(arg, v, top)  (first time, via stack_start)
//!     saves {fp, pc, rbx|x19} at its sp      or: switch_yield returns v
//!     parent link := its sp                       …
//!   (v', Some(sp')) ◀─────────────────────── switch_yield(v', top): saves its context at sp'
//!   (r, None)       ◀─────────────────────── entry returned r
//! ```
//!
//! Because the resumer is looked up at every suspension instead of being fixed at creation,
//! a routine may be resumed from a different stack, or a different thread, each time: the
//! runtime's futures can move between executor threads.
//!
//! ## What a switch saves, and why so little
//!
//! The switch is inline assembly inside an `#[inline(always)]` function, not a called routine.
//! It saves explicitly only what inline assembly cannot declare clobbered — the frame pointer
//! and LLVM's reserved base register (x86-64 `rbp`, `rbx`; AArch64 `x29`, `x19`) — plus the
//! resume address: **24 bytes per switch on x86-64, 32 on AArch64** (three words, padded to 16).
//! Every other register is declared clobbered, so the compiler spills exactly the values that
//! are live across the switch in the switching function. The alternative, a naked routine that
//! saves all callee-saved registers every time (wasmtime's fiber: 56 bytes on x86-64, 160 on
//! AArch64), was measured against it (`arch/benches/switch.rs`, x86-64, round trip = switch
//! there and back):
//!
//! | variant                                              | x86-64  | AArch64 (qemu) |
//! |------------------------------------------------------|---------|----------------|
//! | `switch/roundtrip`: inline switch (chosen)           | 2.9 ns  | 24 ns          |
//! | `switch/roundtrip_in_calls`: inline switch inside non-inlined functions | 17.7 ns | 130 ns |
//! | `switch/roundtrip_saving_all`: naked, saves all callee-saved | 18.7 ns | 91 ns |
//!
//! The register saves are not the main cost. Replacing the naked routine's final `ret` by
//! `pop rcx; jmp rcx` brings it from 18.7 to 7.9 ns: after a stack switch, a `ret` returns to a
//! different call site than the one the CPU's return-stack predictor pushed, and mispredicts.
//! The inline switch has no call and no `ret` (it jumps to the resume address), so when it is
//! inlined into the resuming loop both switches are predicted. That, together with the smaller
//! saved context, is why it is the default. Code shaped like `roundtrip_in_calls` (a suspension
//! deep inside host frames, a resume from a future's `poll`) pays the mispredicted returns
//! whatever the switch saves; the runtime should keep its resume path inlined into `poll`.
//!
//! ## Backtraces across the switch
//!
//! The resumer's saved context starts with {frame pointer, resume pc}: a frame record. While
//! the routine runs, `stack_start` keeps its frame pointer at the parent link, and the parent
//! link points at that record, so a frame-pointer walk (weft's trap backtraces, perf) goes from
//! the routine's frames into the resumer's. `stack_start`'s CFI says the same to DWARF
//! unwinders (`std::backtrace`, gdb): the caller's CFA is computed by dereferencing the parent
//! link. It is marked as a signal frame, because gdb refuses stacks that are not monotonic
//! except across signal frames; gdb therefore shows it as `<signal handler called>`.
//!
//! ## Thread-local storage
//!
//! A routine may be suspended on one thread and resumed on another. LLVM may compute a
//! thread-local variable's address once per function and reuse it, also across an inline asm
//! block; a function that switches must therefore not hold thread-local references across the
//! switch when the routine may change threads (access them from a separate non-inlined
//! function instead).
//!
//! # Stacks
//!
//! [`stack`] carves stacks from a few large reservations (slabs), each stack with a guard page
//! below it, and lets the kernel commit pages on first touch; [`StackPool`] reuses stacks and
//! gives back the pages below a small resident watermark when a stack is released. Guards are
//! installed with `madvise(MADV_GUARD_INSTALL)` where the kernel enforces it, so a million
//! stacks cost a few thousand mappings, not two million (`vm.max_map_count` is 65,530); elsewhere
//! (old kernels, qemu-user) they fall back to `mprotect`. See that module for why, and why the
//! pool is the only interface.
//!
//! # Instruction-cache coherence
//!
//! [`flush_icache`] makes freshly written code visible to instruction fetch on the calling core:
//! a no-op on x86-64 (coherent caches), a D-cache clean + I-cache invalidate by line on AArch64.
//! Other cores that run the code must still execute a context-synchronizing event (an `isb`, a
//! syscall, or the `membarrier(SYNC_CORE)` the runtime issues when publishing code).
//!
//! # Layout
//!
//! One file per ISA (`x86_64.rs`, `aarch64.rs`, selected with `cfg`), each exporting the same
//! items (`call_with_landing_pad`, `serve_with_landing_pad`, `context_registers`,
//! `redirect_to_landing_pad`, `flush_icache`, `init_stack`, `stack_pointer`, `switch_and_link`,
//! `switch_yield`, `throw`, `STACK_ALIGNMENT`), each with its stack layout drawn once;
//! `stack.rs` holds the stacks; this file holds the shared types and re-exports the host ISA.

#![warn(missing_docs)]

#[cfg(target_arch = "x86_64")]
#[path = "x86_64.rs"]
mod isa;

#[cfg(target_arch = "aarch64")]
#[path = "aarch64.rs"]
mod isa;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("weft-arch supports x86_64 and aarch64 only; add a file per ISA to port it");

pub mod lazy;
pub mod stack;

pub use isa::{
    STACK_ALIGNMENT, call_with_landing_pad, context_registers, flush_icache, init_stack,
    redirect_to_landing_pad, serve_with_landing_pad, stack_pointer, switch_and_link, switch_yield,
    throw,
};

/// Where [`throw`] resumes: a Wasm exception handler, as the handler search found it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResumeTarget {
    /// The handler's first instruction.
    pub pc: usize,
    /// The stack pointer the handler's frame runs with.
    pub sp: usize,
    /// That frame's frame pointer.
    pub fp: usize,
    /// The value the handler receives in the first exception payload register (`rax`, `x0`).
    pub payload: usize,
}

/// The handler search [`throw`] calls: given the thrower's vmctx, the exception, the return
/// address into the throwing frame and that frame's frame pointer, it fills `target` and
/// returns 1, or returns 0 when nothing catches the exception.
pub type FindHandler = unsafe extern "C" fn(
    vmctx: *mut u8,
    exn: usize,
    return_address: usize,
    fp: usize,
    target: *mut ResumeTarget,
) -> u8;
pub use stack::{GuardKind, SpareStack, Stack, StackConfig, StackPool, guard_kind};

/// Defines `unsafe extern "C" fn $thunk(vmctx: *mut u8)`, a thunk that compiled code calls
/// with Cranelift's `preserve_all` convention (the argument in the first C argument register,
/// every register preserved, nothing returned): it saves every register the C convention lets
/// a callee clobber, calls `$target(vmctx)` (an `unsafe extern "C" fn(*mut u8)`), and restores
/// them. The thunk has a frame record, so frame-pointer walks pass through it.
///
/// The Rust signature is only a name for its address: Rust code must never call the thunk
/// (its real convention is not `extern "C"`'s).
///
/// x86-64 saves `rax`, `rcx`, `rdx`, `rsi`, `rdi`, `r8`–`r11` and `xmm0`–`xmm15` (every vector
/// register is caller-saved in System V); AArch64 saves `x0`–`x18` and all of `q0`–`q31` (AAPCS64
/// keeps only the low halves of `v8`–`v15`).
#[macro_export]
macro_rules! preserve_all_thunk {
    ($(#[$attr:meta])* $thunk:ident => $target:path) => {
        $(#[$attr])*
        #[unsafe(naked)]
        unsafe extern "C" fn $thunk(_vmctx: *mut u8) {
            ::core::arch::naked_asm!($crate::__preserve_all_asm!(), target = sym $target)
        }
    };
}

/// The body of [`preserve_all_thunk!`] on x86-64.
#[cfg(target_arch = "x86_64")]
#[doc(hidden)]
#[macro_export]
macro_rules! __preserve_all_asm {
    () => {
        concat!(
            "push rbp\n",
            "mov rbp, rsp\n",
            "push rax\n",
            "push rcx\n",
            "push rdx\n",
            "push rsi\n",
            "push rdi\n",
            "push r8\n",
            "push r9\n",
            "push r10\n",
            "push r11\n",
            // 9 pushes after rbp leave rsp 8 below a 16-byte boundary: 256 bytes of vector
            // registers and 8 of padding realign it for the call.
            "sub rsp, 264\n",
            "movdqu [rsp + 0], xmm0\n",
            "movdqu [rsp + 16], xmm1\n",
            "movdqu [rsp + 32], xmm2\n",
            "movdqu [rsp + 48], xmm3\n",
            "movdqu [rsp + 64], xmm4\n",
            "movdqu [rsp + 80], xmm5\n",
            "movdqu [rsp + 96], xmm6\n",
            "movdqu [rsp + 112], xmm7\n",
            "movdqu [rsp + 128], xmm8\n",
            "movdqu [rsp + 144], xmm9\n",
            "movdqu [rsp + 160], xmm10\n",
            "movdqu [rsp + 176], xmm11\n",
            "movdqu [rsp + 192], xmm12\n",
            "movdqu [rsp + 208], xmm13\n",
            "movdqu [rsp + 224], xmm14\n",
            "movdqu [rsp + 240], xmm15\n",
            "call {target}\n",
            "movdqu xmm0, [rsp + 0]\n",
            "movdqu xmm1, [rsp + 16]\n",
            "movdqu xmm2, [rsp + 32]\n",
            "movdqu xmm3, [rsp + 48]\n",
            "movdqu xmm4, [rsp + 64]\n",
            "movdqu xmm5, [rsp + 80]\n",
            "movdqu xmm6, [rsp + 96]\n",
            "movdqu xmm7, [rsp + 112]\n",
            "movdqu xmm8, [rsp + 128]\n",
            "movdqu xmm9, [rsp + 144]\n",
            "movdqu xmm10, [rsp + 160]\n",
            "movdqu xmm11, [rsp + 176]\n",
            "movdqu xmm12, [rsp + 192]\n",
            "movdqu xmm13, [rsp + 208]\n",
            "movdqu xmm14, [rsp + 224]\n",
            "movdqu xmm15, [rsp + 240]\n",
            "add rsp, 264\n",
            "pop r11\n",
            "pop r10\n",
            "pop r9\n",
            "pop r8\n",
            "pop rdi\n",
            "pop rsi\n",
            "pop rdx\n",
            "pop rcx\n",
            "pop rax\n",
            "pop rbp\n",
            "ret\n",
        )
    };
}

/// The body of [`preserve_all_thunk!`] on AArch64.
#[cfg(target_arch = "aarch64")]
#[doc(hidden)]
#[macro_export]
macro_rules! __preserve_all_asm {
    () => {
        concat!(
            "stp x29, x30, [sp, #-16]!\n",
            "mov x29, sp\n",
            // x0..x18 in 160 bytes (19 registers, one slot of padding).
            "stp x0, x1, [sp, #-160]!\n",
            "stp x2, x3, [sp, #16]\n",
            "stp x4, x5, [sp, #32]\n",
            "stp x6, x7, [sp, #48]\n",
            "stp x8, x9, [sp, #64]\n",
            "stp x10, x11, [sp, #80]\n",
            "stp x12, x13, [sp, #96]\n",
            "stp x14, x15, [sp, #112]\n",
            "stp x16, x17, [sp, #128]\n",
            "str x18, [sp, #144]\n",
            "sub sp, sp, #512\n",
            "stp q0, q1, [sp, #0]\n",
            "stp q2, q3, [sp, #32]\n",
            "stp q4, q5, [sp, #64]\n",
            "stp q6, q7, [sp, #96]\n",
            "stp q8, q9, [sp, #128]\n",
            "stp q10, q11, [sp, #160]\n",
            "stp q12, q13, [sp, #192]\n",
            "stp q14, q15, [sp, #224]\n",
            "stp q16, q17, [sp, #256]\n",
            "stp q18, q19, [sp, #288]\n",
            "stp q20, q21, [sp, #320]\n",
            "stp q22, q23, [sp, #352]\n",
            "stp q24, q25, [sp, #384]\n",
            "stp q26, q27, [sp, #416]\n",
            "stp q28, q29, [sp, #448]\n",
            "stp q30, q31, [sp, #480]\n",
            "bl {target}\n",
            "ldp q0, q1, [sp, #0]\n",
            "ldp q2, q3, [sp, #32]\n",
            "ldp q4, q5, [sp, #64]\n",
            "ldp q6, q7, [sp, #96]\n",
            "ldp q8, q9, [sp, #128]\n",
            "ldp q10, q11, [sp, #160]\n",
            "ldp q12, q13, [sp, #192]\n",
            "ldp q14, q15, [sp, #224]\n",
            "ldp q16, q17, [sp, #256]\n",
            "ldp q18, q19, [sp, #288]\n",
            "ldp q20, q21, [sp, #320]\n",
            "ldp q22, q23, [sp, #352]\n",
            "ldp q24, q25, [sp, #384]\n",
            "ldp q26, q27, [sp, #416]\n",
            "ldp q28, q29, [sp, #448]\n",
            "ldp q30, q31, [sp, #480]\n",
            "add sp, sp, #512\n",
            "ldr x18, [sp, #144]\n",
            "ldp x16, x17, [sp, #128]\n",
            "ldp x14, x15, [sp, #112]\n",
            "ldp x12, x13, [sp, #96]\n",
            "ldp x10, x11, [sp, #80]\n",
            "ldp x8, x9, [sp, #64]\n",
            "ldp x6, x7, [sp, #48]\n",
            "ldp x4, x5, [sp, #32]\n",
            "ldp x2, x3, [sp, #16]\n",
            "ldp x0, x1, [sp], #160\n",
            "ldp x29, x30, [sp], #16\n",
            "ret\n",
        )
    };
}

/// The function a stack prepared by [`init_stack`] runs: `entry(arg, value, stack_top)`, where
/// `arg` was given to `init_stack`, `value` to the first [`switch_and_link`], and `stack_top` is
/// what [`switch_yield`] needs. Its return value reaches the resumer as `(value, None)`.
///
/// It must not unwind: a panic escaping it aborts (it is `extern "C"`), so catch panics inside
/// and pass them out through the result.
pub type StackEntry = unsafe extern "C" fn(arg: usize, value: usize, stack_top: usize) -> usize;

/// State the landing pad needs to abandon everything called from [`call_with_landing_pad`] (or
/// [`serve_with_landing_pad`]).
///
/// Written by `call_with_landing_pad` before it calls the callee; read by
/// [`redirect_to_landing_pad`] (in a signal handler) and by backtrace walkers. The layout is
/// part of the assembly's contract: `sp` at offset 0, `fp` at offset 8.
#[repr(C)]
#[derive(Debug, Default)]
pub struct EntryRecord {
    /// Stack pointer inside the entry frame, after callee-saved registers were saved.
    pub sp: usize,
    /// Frame pointer of the entry frame: a backtrace walking Wasm frames stops when it reaches it.
    pub fp: usize,
}

const _: () = assert!(core::mem::offset_of!(EntryRecord, sp) == 0);
const _: () = assert!(core::mem::offset_of!(EntryRecord, fp) == 8);

impl EntryRecord {
    /// An empty record; [`call_with_landing_pad`] fills it in.
    pub const fn new() -> Self {
        EntryRecord { sp: 0, fp: 0 }
    }
}

/// The call [`serve_with_landing_pad`] makes each time it runs, read afresh before each call,
/// and how it switches out after it. The layout is part of the assembly's contract (checked
/// below).
#[repr(C)]
#[derive(Debug, Default)]
pub struct ResidentCall {
    /// The function called, with the C ABI: `callee(a0, a1, a2)`, returning nothing.
    pub callee: usize,
    /// Its arguments.
    pub a0: usize,
    /// See `a0`.
    pub a1: usize,
    /// See `a0`.
    pub a2: usize,
    /// The top of the stack the routine runs on, as for [`switch_yield`].
    pub stack_top: usize,
    /// The value the routine hands its resumer each time it switches out (what the resumer's
    /// [`switch_and_link`] returns).
    pub yield_value: usize,
}

const _: () = assert!(core::mem::offset_of!(ResidentCall, callee) == 0);
const _: () = assert!(core::mem::offset_of!(ResidentCall, a0) == 8);
const _: () = assert!(core::mem::offset_of!(ResidentCall, a1) == 16);
const _: () = assert!(core::mem::offset_of!(ResidentCall, a2) == 24);
const _: () = assert!(core::mem::offset_of!(ResidentCall, stack_top) == 32);
const _: () = assert!(core::mem::offset_of!(ResidentCall, yield_value) == 40);

/// Registers of an interrupted context, as seen by a signal handler.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ContextRegisters {
    /// Program counter: the faulting instruction for a synchronous fault.
    pub pc: usize,
    /// Frame pointer (`rbp` / `x29`).
    pub fp: usize,
    /// Stack pointer (`rsp` / `sp`).
    pub sp: usize,
}

/// Frame-walking fact: for a frame pointer `fp`, the caller's frame pointer is stored at `fp + 0`
/// and the return address at `fp + FP_TO_RETURN_ADDRESS` (true on both ISAs with frame pointers).
pub const FP_TO_RETURN_ADDRESS: usize = 8;

/// Address of the landing pad inside [`call_with_landing_pad`].
fn landing_pad_address() -> usize {
    unsafe extern "C" {
        // Defined by the `call_with_landing_pad` assembly of each ISA file. Not callable: it
        // expects the entry frame's stack, reached only through `redirect_to_landing_pad`.
        fn weft_arch_landing_pad();
    }
    weft_arch_landing_pad as *const () as usize
}
