//! Machine code for lazy compilation: the per-function entry stub and the routine a stub
//! reaches while its function is not compiled yet.
//!
//! # The protocol
//!
//! Every defined function of a lazily compiled module has a fixed **entry stub** in
//! executable memory, and everything that calls the function points at the stub: direct calls
//! (an absolute-address relocation), funcrefs in the vmctx and in tables, exports. The stub
//! jumps through a **slot**, one machine word of ordinary (writable, not executable) memory:
//!
//! ```text
//!   caller ──call──▶ stub i: scratch := &slot[i] ; jmp [scratch]
//!                                                      │
//!                    slot[i] = resolver entry ─────────┴──▶ lazy_entry_thunk (below):
//!                                                            saves the argument registers,
//!                                                            target = resolve(&slot[i], vmctx),
//!                                                            restores them, jmp target
//!                    slot[i] = compiled code  ─────────────▶ function i (once compiled)
//! ```
//!
//! The scratch register is one no Wasm signature passes anything in (`r11` on x86-64; `x16`,
//! with `x17` for the loaded target, on AArch64: the intra-procedure-call registers). The
//! resolver compiles the function (or waits for it), stores its address into the slot with
//! one atomic store, and returns it; later calls go through the stub straight to the code.
//! Nothing executable is ever rewritten, so W^X holds throughout.
//!
//! The thunk is entered as a function would be, by `call` or by a tail call's jump: the
//! return address (x86-64 `[rsp]`, AArch64 `x30`) and any stack arguments above it belong to
//! the function being called, and the thunk leaves them exactly as it found them. It saves
//! every register the C convention lets the resolver clobber (so any argument, a struct-return
//! pointer included, survives), and keeps the stack aligned for the call.

/// Bytes of one entry stub ([`write_entry_stub`]); stubs are laid out at this stride.
#[cfg(target_arch = "x86_64")]
pub const ENTRY_STUB_SIZE: usize = 16;
/// Bytes of one entry stub ([`write_entry_stub`]); stubs are laid out at this stride.
#[cfg(target_arch = "aarch64")]
pub const ENTRY_STUB_SIZE: usize = 32;

/// Writes the entry stub that jumps through the slot at address `slot` into `out` (exactly
/// [`ENTRY_STUB_SIZE`] bytes).
///
/// x86-64: `movabs r11, slot; jmp qword ptr [r11]`, padded with `int3`.
/// AArch64: `ldr x16, =slot; ldr x17, [x16]; br x17`, the literal 8-byte aligned at offset 16.
///
/// # Panics
/// If `out` is not [`ENTRY_STUB_SIZE`] bytes long.
pub fn write_entry_stub(out: &mut [u8], slot: usize) {
    assert_eq!(out.len(), ENTRY_STUB_SIZE);
    #[cfg(target_arch = "x86_64")]
    {
        out.fill(0xcc);
        out[0..2].copy_from_slice(&[0x49, 0xbb]);
        out[2..10].copy_from_slice(&(slot as u64).to_le_bytes());
        out[10..13].copy_from_slice(&[0x41, 0xff, 0x23]);
    }
    #[cfg(target_arch = "aarch64")]
    {
        let words: [u32; 4] = [
            // ldr x16, #16 (LDR literal, imm19 = 16 / 4)
            0x5800_0000 | (4 << 5) | 16,
            // ldr x17, [x16]
            0xf940_0000 | (16 << 5) | 17,
            // br x17
            0xd61f_0000 | (17 << 5),
            // udf #0: never reached
            0,
        ];
        for (i, w) in words.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        out[16..24].copy_from_slice(&(slot as u64).to_le_bytes());
        out[24..32].fill(0);
    }
}

/// An instruction that always raises `SIGILL` (x86-64 `ud2`, AArch64 `udf #0`), padded to 4
/// bytes: where the resolver sends a call whose function could not be compiled, after
/// recording why.
#[cfg(target_arch = "x86_64")]
pub const TRAP_INSTRUCTION: [u8; 4] = [0x0f, 0x0b, 0xcc, 0xcc];
/// An instruction that always raises `SIGILL` (x86-64 `ud2`, AArch64 `udf #0`), padded to 4
/// bytes: where the resolver sends a call whose function could not be compiled, after
/// recording why.
#[cfg(target_arch = "aarch64")]
pub const TRAP_INSTRUCTION: [u8; 4] = [0, 0, 0, 0];

/// Defines `unsafe extern "C" fn $thunk()`, the routine the slots of not-yet-compiled
/// functions point at (see the module docs): it calls `$resolve(slot, vmctx)` (an
/// `unsafe extern "C" fn(usize, *mut u8) -> usize`, where `slot` is the slot's address and
/// `vmctx` the callee's vmctx, the first Wasm argument) with every argument register saved,
/// and jumps to the address it returns. `$resolve` must not unwind.
///
/// The Rust signature is only a name for its address: nothing may call the thunk but an
/// entry stub.
#[macro_export]
macro_rules! lazy_entry_thunk {
    ($(#[$attr:meta])* $thunk:ident => $resolve:path) => {
        $(#[$attr])*
        #[unsafe(naked)]
        unsafe extern "C" fn $thunk() {
            ::core::arch::naked_asm!($crate::__lazy_entry_asm!(), resolve = sym $resolve)
        }
    };
}

/// The body of [`lazy_entry_thunk!`] on x86-64. On entry `r11` holds the slot's address and
/// `[rsp]` the caller's return address.
#[cfg(target_arch = "x86_64")]
#[doc(hidden)]
#[macro_export]
macro_rules! __lazy_entry_asm {
    () => {
        concat!(
            ".cfi_startproc\n",
            "push rbp\n",
            ".cfi_def_cfa_offset 16\n",
            ".cfi_offset rbp, -16\n",
            "mov rbp, rsp\n",
            ".cfi_def_cfa_register rbp\n",
            "push rax\n",
            "push rcx\n",
            "push rdx\n",
            "push rsi\n",
            "push rdi\n",
            "push r8\n",
            "push r9\n",
            "push r10\n",
            "push r11\n",
            // As in the preserve-all thunk: 9 pushes after rbp leave rsp 8 below a 16-byte
            // boundary; 256 bytes of vector registers and 8 of padding realign it.
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
            // resolve(slot = r11, vmctx = rdi)
            "mov rsi, rdi\n",
            "mov rdi, r11\n",
            "call {resolve}\n",
            // The target replaces the saved r11 (at rsp + 264), which is restored last.
            "mov [rsp + 264], rax\n",
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
            ".cfi_def_cfa rsp, 8\n",
            // rsp is back at the caller's return address: enter the function as if called.
            "jmp r11\n",
            ".cfi_endproc\n",
        )
    };
}

/// The body of [`lazy_entry_thunk!`] on AArch64. On entry `x16` holds the slot's address and
/// `x30` the caller's return address.
#[cfg(target_arch = "aarch64")]
#[doc(hidden)]
#[macro_export]
macro_rules! __lazy_entry_asm {
    () => {
        concat!(
            ".cfi_startproc\n",
            "stp x29, x30, [sp, #-16]!\n",
            ".cfi_def_cfa_offset 16\n",
            ".cfi_offset x29, -16\n",
            ".cfi_offset x30, -8\n",
            "mov x29, sp\n",
            ".cfi_def_cfa x29, 16\n",
            // x0..x18 in 160 bytes (19 registers, one slot of padding), as in preserve-all.
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
            // resolve(slot = x16, vmctx = x0)
            "mov x1, x0\n",
            "mov x0, x16\n",
            "bl {resolve}\n",
            // The target replaces the saved x17 (at sp + 512 + 136), restored below.
            "str x0, [sp, #648]\n",
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
            ".cfi_def_cfa sp, 0\n",
            // sp, x29 and x30 are the caller's again: enter the function as if called.
            "br x17\n",
            ".cfi_endproc\n",
        )
    };
}
