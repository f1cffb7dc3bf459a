//! What the compiler hands the runtime for each function: machine code with its relocations,
//! trap sites and source locations, in weft's own types (no Cranelift type crosses over).

use crate::TrapKind;

/// Machine code for one function and what the runtime needs to know about it.
#[derive(Clone, Debug, Default)]
pub struct CompiledFunction {
    pub code: Vec<u8>,
    pub alignment: u32,
    pub relocations: Vec<Relocation>,
    /// `(code offset, trap kind)` of every instruction that may trap, sorted.
    pub traps: Vec<(u32, TrapKind)>,
    /// `(code offset where a range starts, Wasm byte offset)`, sorted; for backtraces.
    pub source_locations: Vec<(u32, u32)>,
    /// The call sites inside `try_table` blocks, sorted by return address: where a thrown
    /// exception may land in this function.
    pub handlers: Vec<CallSiteHandlers>,
    /// Bytes of stack the function's frame takes below its frame pointer (spill slots,
    /// stack slots, saved registers, outgoing arguments).
    pub frame_size: u32,
}

/// The exception handlers of one call site (a Cranelift `try_call`), in match order: the
/// first whose tag matches the exception (or a catch-all) wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallSiteHandlers {
    /// Offset of the call's return address from the start of the function.
    pub return_offset: u32,
    /// The frame pointer minus this is the stack pointer a handler expects.
    pub frame_offset: u32,
    /// Where the caller's vmctx (the instance the tag indices are relative to) is stored:
    /// this many bytes above the handler's stack pointer.
    pub vmctx_sp_offset: u32,
    /// `(tag, handler offset)`: a module tag index, or `None` for a catch-all.
    pub handlers: Vec<(Option<u32>, u32)>,
}

/// A place in a function's code the runtime patches once it knows where everything lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relocation {
    /// Offset of the patched bytes from the start of the function.
    pub offset: u32,
    pub kind: RelocKind,
    pub target: RelocTarget,
    pub addend: i64,
}

/// How a relocation is patched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelocKind {
    /// The target's absolute address, 8 bytes little-endian.
    Abs8,
    /// x86-64: a 32-bit displacement from the patched bytes (calls and RIP-relative operands).
    X86PcRel4,
    /// AArch64: the 26-bit word offset of a `bl`, from the instruction.
    Arm64Call,
}

/// Where a relocation points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelocTarget {
    /// A defined function of the same module, by Wasm function index.
    Func(u32),
    /// A runtime routine for an instruction the ISA lacks.
    LibCall(LibCall),
}

/// The float routines compiled code may call where the ISA has no instruction (rounding and
/// fused multiply-add without SSE4.1/FMA on x86-64).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LibCall {
    CeilF32,
    CeilF64,
    FloorF32,
    FloorF64,
    TruncF32,
    TruncF64,
    NearestF32,
    NearestF64,
    FmaF32,
    FmaF64,
}

impl LibCall {
    /// Every routine (a serialized module names one by its position here).
    pub const ALL: &'static [LibCall] = &[
        LibCall::CeilF32,
        LibCall::CeilF64,
        LibCall::FloorF32,
        LibCall::FloorF64,
        LibCall::TruncF32,
        LibCall::TruncF64,
        LibCall::NearestF32,
        LibCall::NearestF64,
        LibCall::FmaF32,
        LibCall::FmaF64,
    ];
}

impl RelocKind {
    /// Every kind (a serialized module names one by its position here).
    pub const ALL: &'static [RelocKind] =
        &[RelocKind::Abs8, RelocKind::X86PcRel4, RelocKind::Arm64Call];
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A serialized module names these by their position in `ALL`; a variant missing there
    /// could not be written. The matches have no wildcard, so a new variant stops this test
    /// from compiling until it is listed.
    #[test]
    fn all_lists_every_libcall_and_relocation_kind_once() {
        let listed_libcall = |l: LibCall| match l {
            LibCall::CeilF32
            | LibCall::CeilF64
            | LibCall::FloorF32
            | LibCall::FloorF64
            | LibCall::TruncF32
            | LibCall::TruncF64
            | LibCall::NearestF32
            | LibCall::NearestF64
            | LibCall::FmaF32
            | LibCall::FmaF64 => LibCall::ALL.iter().filter(|&&x| x == l).count(),
        };
        assert!(LibCall::ALL.iter().all(|&l| listed_libcall(l) == 1));
        assert_eq!(LibCall::ALL.len(), 10);
        let listed_kind = |k: RelocKind| match k {
            RelocKind::Abs8 | RelocKind::X86PcRel4 | RelocKind::Arm64Call => {
                RelocKind::ALL.iter().filter(|&&x| x == k).count()
            }
        };
        assert!(RelocKind::ALL.iter().all(|&k| listed_kind(k) == 1));
        assert_eq!(RelocKind::ALL.len(), 3);
    }
}
