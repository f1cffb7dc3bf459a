//! The cost of a raw stack switch there and back (`switch/roundtrip`), and the two alternatives
//! the design was measured against:
//!
//! - `switch/roundtrip_in_calls`: the same switch, but each side switches from inside a function
//!   that is not inlined, as the runtime's suspend and resume paths do. The prologue of that
//!   function now saves the callee-saved registers the asm clobbers, once per switch.
//! - `switch/roundtrip_saving_all`: a naked routine that saves every callee-saved register
//!   explicitly on each switch (wasmtime-fiber style), speaking the same stack protocol.
//!
//! Setup (stack, `init_stack`, the first switch) is outside the timed loop; one iteration is one
//! switch into the routine and one switch back.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use weft_arch::{Stack, StackEntry, init_stack, switch_and_link, switch_yield};

/// Yields `value + 1` for every value, forever.
unsafe extern "C" fn echo(_: usize, mut value: usize, top: usize) -> usize {
    loop {
        // SAFETY: runs on the stack whose top is `top`, resumed by the benchmark's loop.
        value = unsafe { switch_yield(value + 1, top) };
    }
}

/// As `echo`, but switching from a function that is not inlined.
unsafe extern "C" fn echo_in_calls(_: usize, mut value: usize, top: usize) -> usize {
    #[inline(never)]
    fn suspend(value: usize, top: usize) -> usize {
        // SAFETY: as in `echo`.
        unsafe { switch_yield(value, top) }
    }
    loop {
        value = suspend(value + 1, top);
    }
}

/// As `echo`, with the switch that saves every callee-saved register.
unsafe extern "C" fn echo_saving_all(_: usize, mut value: usize, top: usize) -> usize {
    loop {
        // SAFETY: as in `echo`; the protocol is the same.
        value = unsafe { saving_all::switch_yield(value + 1, top) };
    }
}

/// A routine suspended in its loop, ready to be resumed; abandoned (never finished) at the end,
/// which is fine because nothing on its stack needs dropping.
struct Suspended {
    stack: Stack,
    sp: usize,
}

impl Suspended {
    fn start(entry: StackEntry) -> Suspended {
        let stack = Stack::new(64 << 10).unwrap();
        // SAFETY: a fresh stack we own; the routine runs until its first yield.
        let sp = unsafe {
            let sp = init_stack(stack.top(), entry, 0);
            switch_and_link(0, sp, stack.top()).1.unwrap()
        };
        Suspended { stack, sp }
    }
}

fn switch(c: &mut Criterion) {
    let mut group = c.benchmark_group("switch");

    let routine = Suspended::start(echo);
    let (top, mut sp) = (routine.stack.top(), routine.sp);
    let mut value = 0;
    group.bench_function("roundtrip", |b| {
        b.iter(|| {
            // SAFETY: `sp` is the routine's latest suspended context.
            let (back, next) = unsafe { switch_and_link(black_box(value), sp, top) };
            (value, sp) = (back, next.unwrap());
        })
    });

    #[inline(never)]
    fn resume(value: usize, sp: usize, top: usize) -> (usize, Option<usize>) {
        // SAFETY: called with the routine's latest suspended context.
        unsafe { switch_and_link(value, sp, top) }
    }
    let routine = Suspended::start(echo_in_calls);
    let (top, mut sp) = (routine.stack.top(), routine.sp);
    group.bench_function("roundtrip_in_calls", |b| {
        b.iter(|| {
            let (back, next) = resume(black_box(value), sp, top);
            (value, sp) = (back, next.unwrap());
        })
    });

    let routine = Suspended::start(echo_saving_all);
    let (top, mut sp) = (routine.stack.top(), routine.sp);
    group.bench_function("roundtrip_saving_all", |b| {
        b.iter(|| {
            // SAFETY: `sp` is the routine's latest suspended context.
            let saving_all::Switched(back, next) =
                unsafe { saving_all::switch_and_link(black_box(value), sp, top) };
            (value, sp) = (back, next);
        })
    });
    group.finish();
}

criterion_group!(benches, switch);
criterion_main!(benches);

/// The measured alternative: naked routines that save every callee-saved register on each
/// switch, then speak the protocol of `weft_arch`'s switcher (so they can resume its stacks).
#[cfg(target_arch = "x86_64")]
mod saving_all {
    use core::arch::naked_asm;

    #[repr(C)]
    pub struct Switched(pub usize, pub usize);

    /// rdi = value, rsi = sp, rdx = stack top; returns (value, sp) in (rax, rdx).
    /// Saved per switch: r12–r15, rbx, rbp, resume pc + the call's return address = 64 bytes.
    #[unsafe(naked)]
    pub unsafe extern "C" fn switch_and_link(_value: usize, _sp: usize, _top: usize) -> Switched {
        naked_asm!(
            "push r15",
            "push r14",
            "push r13",
            "push r12",
            // The protocol of weft_arch::switch_and_link.
            "push rbx",
            "lea rax, [rip + 2f]",
            "push rax",
            "push rbp",
            "mov [rdx - 16], rsp",
            "mov rsp, rsi",
            "pop rbp",
            "pop rax",
            "pop rbx",
            "jmp rax",
            "2:",
            "mov rax, rdi",
            "mov rdx, rsi",
            "pop r12",
            "pop r13",
            "pop r14",
            "pop r15",
            "ret",
        )
    }

    /// rdi = value, rsi = stack top; returns the value in rax.
    #[unsafe(naked)]
    pub unsafe extern "C" fn switch_yield(_value: usize, _top: usize) -> usize {
        naked_asm!(
            "push r15",
            "push r14",
            "push r13",
            "push r12",
            // The protocol of weft_arch::switch_yield.
            "push rbx",
            "lea rax, [rip + 2f]",
            "push rax",
            "push rbp",
            "mov rcx, rsi",
            "mov rsi, rsp",
            "mov rsp, [rcx - 16]",
            "pop rbp",
            "pop rax",
            "pop rbx",
            "jmp rax",
            "2:",
            "mov rax, rdi",
            "pop r12",
            "pop r13",
            "pop r14",
            "pop r15",
            "ret",
        )
    }
}

#[cfg(target_arch = "aarch64")]
mod saving_all {
    use core::arch::naked_asm;

    #[repr(C)]
    pub struct Switched(pub usize, pub usize);

    /// x0 = value, x1 = sp, x2 = stack top; returns (value, sp) in (x0, x1).
    /// Saved per switch: x20–x28, x30, d8–d15 (+16 padding), then x29, pc, x19 (+8 padding)
    /// = 192 bytes.
    #[unsafe(naked)]
    pub unsafe extern "C" fn switch_and_link(_value: usize, _sp: usize, _top: usize) -> Switched {
        naked_asm!(
            "sub sp, sp, #160",
            "stp x20, x21, [sp]",
            "stp x22, x23, [sp, #16]",
            "stp x24, x25, [sp, #32]",
            "stp x26, x27, [sp, #48]",
            "stp x28, x30, [sp, #64]",
            "stp d8, d9, [sp, #80]",
            "stp d10, d11, [sp, #96]",
            "stp d12, d13, [sp, #112]",
            "stp d14, d15, [sp, #128]",
            // The protocol of weft_arch::switch_and_link.
            "adr x9, 2f",
            "sub sp, sp, #32",
            "stp x29, x9, [sp]",
            "str x19, [sp, #16]",
            "mov x9, sp",
            "str x9, [x2, #-16]",
            "ldp x29, x9, [x1]",
            "ldr x19, [x1, #16]",
            "add sp, x1, #32",
            "br x9",
            "2:",
            "ldp x20, x21, [sp]",
            "ldp x22, x23, [sp, #16]",
            "ldp x24, x25, [sp, #32]",
            "ldp x26, x27, [sp, #48]",
            "ldp x28, x30, [sp, #64]",
            "ldp d8, d9, [sp, #80]",
            "ldp d10, d11, [sp, #96]",
            "ldp d12, d13, [sp, #112]",
            "ldp d14, d15, [sp, #128]",
            "add sp, sp, #160",
            "ret",
        )
    }

    /// x0 = value, x1 = stack top; returns the value in x0.
    #[unsafe(naked)]
    pub unsafe extern "C" fn switch_yield(_value: usize, _top: usize) -> usize {
        naked_asm!(
            "sub sp, sp, #160",
            "stp x20, x21, [sp]",
            "stp x22, x23, [sp, #16]",
            "stp x24, x25, [sp, #32]",
            "stp x26, x27, [sp, #48]",
            "stp x28, x30, [sp, #64]",
            "stp d8, d9, [sp, #80]",
            "stp d10, d11, [sp, #96]",
            "stp d12, d13, [sp, #112]",
            "stp d14, d15, [sp, #128]",
            // The protocol of weft_arch::switch_yield.
            "mov x2, x1",
            "adr x9, 2f",
            "sub sp, sp, #32",
            "stp x29, x9, [sp]",
            "str x19, [sp, #16]",
            "mov x1, sp",
            "ldr x9, [x2, #-16]",
            "ldp x29, x10, [x9]",
            "ldr x19, [x9, #16]",
            "add sp, x9, #32",
            "br x10",
            "2:",
            "ldp x20, x21, [sp]",
            "ldp x22, x23, [sp, #16]",
            "ldp x24, x25, [sp, #32]",
            "ldp x26, x27, [sp, #48]",
            "ldp x28, x30, [sp, #64]",
            "ldp d8, d9, [sp, #80]",
            "ldp d10, d11, [sp, #96]",
            "ldp d12, d13, [sp, #112]",
            "ldp d14, d15, [sp, #128]",
            "add sp, sp, #160",
            "ret",
        )
    }
}
