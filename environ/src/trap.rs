//! Why compiled code traps, in weft's own terms.
//!
//! The compiler turns the code of every trap site into a [`TrapKind`] when it compiles the
//! function (a Cranelift trap code weft did not ask for is a compile error), so code memory, the
//! signal handler and the runtime's trap reporting never see a Cranelift type.

/// The reason attached to a trapping instruction of compiled code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrapKind {
    /// The prologue's stack-limit check failed.
    StackOverflow,
    /// A load or store outside its memory (an explicit check, or a guard-page fault), or a bulk
    /// memory operation out of bounds.
    MemoryOutOfBounds,
    /// Signed division overflow (`INT_MIN / -1`).
    IntegerOverflow,
    IntegerDivisionByZero,
    /// A trapping float-to-int conversion of NaN or an out-of-range value.
    BadConversionToInteger,
    /// `unreachable`.
    Unreachable,
    /// `table.get`/`table.set` or a bulk table operation out of bounds.
    TableOutOfBounds,
    /// `call_indirect` with an index past the table's end.
    UndefinedElement,
    /// `call_indirect` of a null entry.
    UninitializedElement,
    IndirectCallTypeMismatch,
    /// `call_ref`, `return_call_ref` or `ref.as_non_null` of a null reference.
    NullReference,
    /// A builtin or a host function recorded the reason in the activation before returning
    /// failure; the recorded reason is the trap.
    Recorded,
}

impl TrapKind {
    /// Every kind.
    pub const ALL: &'static [TrapKind] = &[
        TrapKind::StackOverflow,
        TrapKind::MemoryOutOfBounds,
        TrapKind::IntegerOverflow,
        TrapKind::IntegerDivisionByZero,
        TrapKind::BadConversionToInteger,
        TrapKind::Unreachable,
        TrapKind::TableOutOfBounds,
        TrapKind::UndefinedElement,
        TrapKind::UninitializedElement,
        TrapKind::IndirectCallTypeMismatch,
        TrapKind::NullReference,
        TrapKind::Recorded,
    ];
}
