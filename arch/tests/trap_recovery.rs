//! Trap recovery through `call_with_landing_pad` + `redirect_to_landing_pad`, driven by real
//! signals: a `SIGSEGV` on a `PROT_NONE` page and a `SIGILL` on a trap instruction, handled on a
//! `sigaltstack` the way the runtime does it.

mod common;

use std::cell::Cell;
use std::hint::black_box;
use std::ptr;

use common::*;
use weft_arch::{EntryRecord, FP_TO_RETURN_ADDRESS, flush_icache};

// ---------------------------------------------------------------------------------------------
// Callees.

extern "C" fn store_arguments(out: usize, a1: usize, a2: usize) {
    // SAFETY: the tests pass a pointer to a `[usize; 3]` as `out`.
    unsafe { *(out as *mut [usize; 3]) = [out, a1, a2] };
}

extern "C" fn write_to(addr: usize, _: usize, _: usize) {
    // SAFETY: intentionally faults: `addr` is a PROT_NONE page, and the volatile write is not
    // optimized away. The signal handler never lets this function continue.
    unsafe { ptr::write_volatile(addr as *mut u8, 1) };
}

#[inline(never)]
extern "C" fn recurse_then_write_to(addr: usize, depth: usize, _: usize) {
    let mut frame = [depth; 8];
    black_box(&mut frame);
    if depth == 0 {
        write_to(addr, 0, 0);
    } else {
        recurse_then_write_to(addr, depth - 1, 0);
    }
    // Keeps the recursion from becoming a tail call, so the frames really nest.
    black_box(&frame);
}

#[cfg(target_arch = "x86_64")]
mod isa_callees {
    use core::arch::naked_asm;

    /// Sets up a frame, then writes to `[rdi]`.
    #[unsafe(naked)]
    pub extern "C" fn framed_write_to(_addr: usize, _: usize, _: usize) {
        naked_asm!("push rbp", "mov rbp, rsp", "mov byte ptr [rdi], 1", "ud2")
    }

    /// Executes the trap instruction Cranelift emits.
    #[unsafe(naked)]
    pub extern "C" fn trap_instruction(_: usize, _: usize, _: usize) {
        naked_asm!("ud2")
    }

    /// Overwrites every callee-saved register, then writes to `[rdi]`.
    #[unsafe(naked)]
    pub extern "C" fn clobber_then_write_to(_addr: usize, _: usize, _: usize) {
        naked_asm!(
            "mov rbx, -1",
            "mov rbp, -1",
            "mov r12, -1",
            "mov r13, -1",
            "mov r14, -1",
            "mov r15, -1",
            "mov byte ptr [rdi], 1",
            "ud2",
        )
    }

    pub const SAVED: usize = 6;

    /// Loads `pattern(i)` into every callee-saved register, calls
    /// `call_with_landing_pad(record, callee, addr, 0, 0)`, and stores the registers' values
    /// after the call into `out` (rbx, r12–r15, rbp); returns the status.
    #[unsafe(naked)]
    pub unsafe extern "C" fn registers_after_call(
        _record: *mut weft_arch::EntryRecord,
        _callee: usize,
        _addr: usize,
        _out: *mut [usize; SAVED],
    ) -> usize {
        naked_asm!(
            "push rbp", "push rbx", "push r12", "push r13", "push r14", "push r15",
            "push rcx",
            "mov rbx, 0x100", "mov r12, 0x112", "mov r13, 0x113", "mov r14, 0x114",
            "mov r15, 0x115", "mov rbp, 0x105",
            "xor ecx, ecx", "xor r8d, r8d",
            "call {call}",
            "mov rcx, [rsp]",
            "mov [rcx], rbx", "mov [rcx + 8], r12", "mov [rcx + 16], r13", "mov [rcx + 24], r14",
            "mov [rcx + 32], r15", "mov [rcx + 40], rbp",
            "pop rcx", "pop r15", "pop r14", "pop r13", "pop r12", "pop rbx", "pop rbp",
            "ret",
            call = sym weft_arch::call_with_landing_pad,
        )
    }

    pub const EXPECTED: [usize; SAVED] = [0x100, 0x112, 0x113, 0x114, 0x115, 0x105];

    /// `mov eax, 42; ret` with the immediate patched.
    pub fn return_constant_code(value: u8) -> Vec<u8> {
        vec![0xb8, value, 0, 0, 0, 0xc3]
    }
}

#[cfg(target_arch = "aarch64")]
mod isa_callees {
    use core::arch::naked_asm;

    /// Sets up a frame record, then writes to `[x0]`.
    #[unsafe(naked)]
    pub extern "C" fn framed_write_to(_addr: usize, _: usize, _: usize) {
        naked_asm!(
            "stp x29, x30, [sp, #-16]!",
            "mov x29, sp",
            "strb w9, [x0]",
            "udf #0"
        )
    }

    /// Executes the trap instruction Cranelift emits.
    #[unsafe(naked)]
    pub extern "C" fn trap_instruction(_: usize, _: usize, _: usize) {
        naked_asm!("udf #0xc11f")
    }

    /// Overwrites every callee-saved register, then writes to `[x0]`.
    #[unsafe(naked)]
    pub extern "C" fn clobber_then_write_to(_addr: usize, _: usize, _: usize) {
        naked_asm!(
            "mov x19, #-1",
            "mov x20, #-1",
            "mov x21, #-1",
            "mov x22, #-1",
            "mov x23, #-1",
            "mov x24, #-1",
            "mov x25, #-1",
            "mov x26, #-1",
            "mov x27, #-1",
            "mov x28, #-1",
            "mov x29, #-1",
            "fmov d8, x19",
            "fmov d9, x19",
            "fmov d10, x19",
            "fmov d11, x19",
            "fmov d12, x19",
            "fmov d13, x19",
            "fmov d14, x19",
            "fmov d15, x19",
            "strb w9, [x0]",
            "udf #0",
        )
    }

    pub const SAVED: usize = 19;

    /// Loads a pattern into every callee-saved register, calls
    /// `call_with_landing_pad(record, callee, addr, 0, 0)`, and stores the registers' values
    /// after the call into `out` (x19–x29, then d8–d15); returns the status.
    #[unsafe(naked)]
    pub unsafe extern "C" fn registers_after_call(
        _record: *mut weft_arch::EntryRecord,
        _callee: usize,
        _addr: usize,
        _out: *mut [usize; SAVED],
    ) -> usize {
        naked_asm!(
            // Save our own callee-saved registers and the out pointer (x3 → sp + 160).
            "sub sp, sp, #176",
            "stp x19, x20, [sp]", "stp x21, x22, [sp, #16]", "stp x23, x24, [sp, #32]",
            "stp x25, x26, [sp, #48]", "stp x27, x28, [sp, #64]", "stp x29, x30, [sp, #80]",
            "stp d8, d9, [sp, #96]", "stp d10, d11, [sp, #112]", "stp d12, d13, [sp, #128]",
            "stp d14, d15, [sp, #144]", "str x3, [sp, #160]",
            // The pattern: xN = 0x100 + N, dN = 0x200 + N.
            "mov x19, #0x113", "mov x20, #0x114", "mov x21, #0x115", "mov x22, #0x116",
            "mov x23, #0x117", "mov x24, #0x118", "mov x25, #0x119", "mov x26, #0x11a",
            "mov x27, #0x11b", "mov x28, #0x11c", "mov x29, #0x11d",
            "mov x9, #0x208", "fmov d8, x9", "mov x9, #0x209", "fmov d9, x9",
            "mov x9, #0x20a", "fmov d10, x9", "mov x9, #0x20b", "fmov d11, x9",
            "mov x9, #0x20c", "fmov d12, x9", "mov x9, #0x20d", "fmov d13, x9",
            "mov x9, #0x20e", "fmov d14, x9", "mov x9, #0x20f", "fmov d15, x9",
            "mov x3, #0", "mov x4, #0",
            "bl {call}",
            "ldr x9, [sp, #160]",
            "stp x19, x20, [x9]", "stp x21, x22, [x9, #16]", "stp x23, x24, [x9, #32]",
            "stp x25, x26, [x9, #48]", "stp x27, x28, [x9, #64]", "str x29, [x9, #80]",
            "str d8, [x9, #88]", "str d9, [x9, #96]", "str d10, [x9, #104]",
            "str d11, [x9, #112]", "str d12, [x9, #120]", "str d13, [x9, #128]",
            "str d14, [x9, #136]", "str d15, [x9, #144]",
            "ldp x19, x20, [sp]", "ldp x21, x22, [sp, #16]", "ldp x23, x24, [sp, #32]",
            "ldp x25, x26, [sp, #48]", "ldp x27, x28, [sp, #64]", "ldp x29, x30, [sp, #80]",
            "ldp d8, d9, [sp, #96]", "ldp d10, d11, [sp, #112]", "ldp d12, d13, [sp, #128]",
            "ldp d14, d15, [sp, #144]",
            "add sp, sp, #176",
            "ret",
            call = sym weft_arch::call_with_landing_pad,
        )
    }

    pub const EXPECTED: [usize; SAVED] = [
        0x113, 0x114, 0x115, 0x116, 0x117, 0x118, 0x119, 0x11a, 0x11b, 0x11c, 0x11d, 0x208, 0x209,
        0x20a, 0x20b, 0x20c, 0x20d, 0x20e, 0x20f,
    ];

    /// `mov w0, #value; ret`.
    pub fn return_constant_code(value: u8) -> Vec<u8> {
        let mov = 0x5280_0000u32 | (u32::from(value) << 5);
        [mov.to_le_bytes(), 0xd65f_03c0u32.to_le_bytes()].concat()
    }
}

use isa_callees::*;

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn returning_callee_yields_zero_and_receives_its_arguments() {
    let mut out = [0usize; 3];
    let out_addr = &raw mut out as usize;
    let (status, record) = call_guarded(fn_addr(store_arguments), out_addr, 11, 22);
    assert_eq!(status, 0);
    assert_eq!(out, [out_addr, 11, 22]);
    assert_eq!(
        record.sp % 16,
        0,
        "stack must be 16-byte aligned at the call"
    );
    assert!(
        record.fp > record.sp,
        "the saved registers lie between sp and fp"
    );
}

#[test]
fn fault_in_callee_returns_one_and_live_values_survive() {
    let _alt = AltStack::install();
    let guard = GuardPage::new();
    // Values the compiler keeps live across the call (many of them in callee-saved registers).
    let live: [u64; 8] = black_box([3, 5, 7, 11, 13, 17, 19, 23]);
    let mut sum = 0u64;
    for round in 0..1000u64 {
        let (status, _) = call_guarded(fn_addr(write_to), guard.addr(), 0, 0);
        assert_eq!(status, 1);
        assert_eq!(TRAP_SIGNAL.with(Cell::get), libc::SIGSEGV);
        sum += live.iter().map(|v| v * round).sum::<u64>();
    }
    assert_eq!(black_box(sum), 98 * (999 * 1000 / 2));
}

#[test]
fn fault_restores_every_callee_saved_register() {
    let _alt = AltStack::install();
    let guard = GuardPage::new();
    for _ in 0..100 {
        let mut record = EntryRecord::new();
        let mut after = [0usize; SAVED];
        ACTIVE_RECORD.with(|r| r.set(&raw const record));
        // SAFETY: `record` and `after` outlive the call; the callee holds no Rust values.
        let status = unsafe {
            registers_after_call(
                &raw mut record,
                fn_addr(clobber_then_write_to),
                guard.addr(),
                &raw mut after,
            )
        };
        ACTIVE_RECORD.with(|r| r.set(ptr::null()));
        assert_eq!(status, 1);
        assert_eq!(after, EXPECTED);
    }
}

#[test]
fn normal_return_restores_every_callee_saved_register() {
    let mut record = EntryRecord::new();
    let mut after = [0usize; SAVED];
    let mut scratch = [0usize; 3];
    // SAFETY: `record` and `after` outlive the call; `store_arguments` gets a writable
    // (dummy) three-word buffer as its first argument.
    let status = unsafe {
        registers_after_call(
            &raw mut record,
            fn_addr(store_arguments),
            &raw mut scratch as usize,
            &raw mut after,
        )
    };
    assert_eq!(status, 0);
    assert_eq!(after, EXPECTED);
}

#[test]
fn fault_nested_several_frames_deep_returns_one() {
    let _alt = AltStack::install();
    let guard = GuardPage::new();
    for depth in [1, 5, 50, 500] {
        let (status, record) = call_guarded(fn_addr(recurse_then_write_to), guard.addr(), depth, 0);
        assert_eq!(status, 1);
        let trap = TRAP_CONTEXT.with(Cell::get);
        assert!(
            trap.sp < record.sp,
            "the trap happened below the entry frame"
        );
    }
}

#[test]
fn illegal_instruction_trap_returns_one() {
    let _alt = AltStack::install();
    for _ in 0..100 {
        let (status, _) = call_guarded(fn_addr(trap_instruction), 0, 0, 0);
        assert_eq!(status, 1);
        assert_eq!(TRAP_SIGNAL.with(Cell::get), libc::SIGILL);
        assert_eq!(TRAP_CONTEXT.with(Cell::get).pc, fn_addr(trap_instruction));
    }
}

#[test]
fn handler_sees_frame_chain_ending_at_entry_record() {
    let _alt = AltStack::install();
    let guard = GuardPage::new();
    let (status, record) = call_guarded(fn_addr(framed_write_to), guard.addr(), 0, 0);
    assert_eq!(status, 1);
    let trap = TRAP_CONTEXT.with(Cell::get);
    let callee = fn_addr(framed_write_to);
    assert!(
        (callee..callee + 16).contains(&trap.pc),
        "pc {:#x} is in the callee",
        trap.pc
    );
    // The callee's frame links straight to the entry frame, where a walk stops.
    assert_eq!(TRAP_CALLER_FP.with(Cell::get), record.fp);
}

#[test]
fn entry_frame_links_to_the_rust_caller() {
    thread_local! {
        static RETURN_ADDRESS: Cell<usize> = const { Cell::new(0) };
        static BACKTRACE: Cell<String> = const { Cell::new(String::new()) };
    }
    extern "C" fn capture_entry_frame(_: usize, _: usize, _: usize) {
        let record = ACTIVE_RECORD.with(Cell::get);
        // SAFETY: `record` points to the live record of the call we are inside, and
        // `fp + FP_TO_RETURN_ADDRESS` is the return-address slot of its live entry frame.
        let return_address = unsafe { *(((*record).fp + FP_TO_RETURN_ADDRESS) as *const usize) };
        RETURN_ADDRESS.with(|r| r.set(return_address));
        // A DWARF unwind from here must cross the entry frame using its CFI.
        let backtrace = std::backtrace::Backtrace::force_capture().to_string();
        BACKTRACE.with(|b| b.set(backtrace));
    }
    let (status, _) = call_guarded(fn_addr(capture_entry_frame), 0, 0, 0);
    assert_eq!(status, 0);
    // Frame-pointer linkage: the entry frame's return address points into `call_guarded`.
    let return_address = RETURN_ADDRESS.with(Cell::get);
    let caller = call_guarded as *const () as usize;
    assert!(
        (caller..caller + 4096).contains(&return_address),
        "{return_address:#x} in {caller:#x}"
    );
    // CFI: the unwinder sees this test beyond the entry routine.
    let backtrace = BACKTRACE.with(Cell::take);
    let callee = backtrace.find("capture_entry_frame").expect(&backtrace);
    let entry = backtrace[callee..]
        .find("call_with_landing_pad")
        .expect(&backtrace)
        + callee;
    let caller = backtrace[entry..].find("call_guarded").expect(&backtrace) + entry;
    let test = backtrace[caller..].find("entry_frame_links_to_the_rust_caller");
    assert!(test.is_some(), "{backtrace}");
}

#[test]
fn traps_on_many_threads_are_independent() {
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                let _alt = AltStack::install();
                let guard = GuardPage::new();
                for i in 0..500 {
                    let mut out = [0usize; 3];
                    let (status, _) = if i % 2 == 0 {
                        call_guarded(fn_addr(write_to), guard.addr(), 0, 0)
                    } else {
                        call_guarded(fn_addr(store_arguments), &raw mut out as usize, i, 0)
                    };
                    assert_eq!(status, usize::from(i % 2 == 0));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn flush_icache_makes_rewritten_code_executable() {
    let size = page_size();
    // SAFETY: anonymous private mapping; checked below.
    let code = unsafe {
        libc::mmap(
            ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(code, libc::MAP_FAILED);
    for value in [42u8, 43, 44] {
        let bytes = return_constant_code(value);
        // SAFETY: `code` is a page we own; we toggle it between RW and RX around each write and
        // call it only when it holds a complete function and is executable.
        unsafe {
            assert_eq!(
                libc::mprotect(code, size, libc::PROT_READ | libc::PROT_WRITE),
                0
            );
            ptr::copy_nonoverlapping(bytes.as_ptr(), code.cast::<u8>(), bytes.len());
            flush_icache(code.cast::<u8>(), bytes.len());
            assert_eq!(
                libc::mprotect(code, size, libc::PROT_READ | libc::PROT_EXEC),
                0
            );
            let function: extern "C" fn() -> u32 = std::mem::transmute(code);
            assert_eq!(function(), u32::from(value));
        }
    }
    // SAFETY: we own the mapping; a zero-length and an unaligned flush are harmless.
    unsafe {
        flush_icache(code.cast::<u8>(), 0);
        flush_icache(code.cast::<u8>().add(3), 61);
        libc::munmap(code, size);
    }
}
