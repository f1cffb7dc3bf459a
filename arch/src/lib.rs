//! `weft-arch`: the few places where weft must speak machine code directly.
//!
//! Everything here is either assembly or a thin, documented wrapper around it. The rest of weft
//! stays free of `unsafe` (apart from the runtime's VM layer) by going through this crate.
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
//! functions; this file holds the shared types and re-exports the host ISA's functions.

#![warn(
    missing_docs,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

#[cfg(target_arch = "x86_64")]
#[path = "x86_64.rs"]
mod isa;

#[cfg(target_arch = "aarch64")]
#[path = "aarch64.rs"]
mod isa;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("weft-arch supports x86_64 and aarch64 only; add a file per ISA to port it");

pub mod stack;

pub use isa::{
    STACK_ALIGNMENT, STACK_TOP_RESERVED, SWITCH_SAVED_BYTES, call_with_landing_pad,
    context_registers, flush_icache, init_stack, redirect_to_landing_pad, switch_and_link,
    switch_yield,
};
pub use stack::{Stack, StackConfig, StackPool};

/// The function a stack prepared by [`init_stack`] runs: `entry(arg, value, stack_top)`, where
/// `arg` was given to `init_stack`, `value` to the first [`switch_and_link`], and `stack_top` is
/// what [`switch_yield`] needs. Its return value reaches the resumer as `(value, None)`.
///
/// It must not unwind: a panic escaping it aborts (it is `extern "C"`), so catch panics inside
/// and pass them out through the result.
pub type StackEntry = unsafe extern "C" fn(arg: usize, value: usize, stack_top: usize) -> usize;

/// State the landing pad needs to abandon everything called from [`call_with_landing_pad`].
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
