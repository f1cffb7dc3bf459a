//! The Cranelift trap code each [`TrapKind`] is emitted with, and the way back.
//!
//! Cranelift reserves codes for the traps it raises itself (stack overflow, division, float
//! conversion, heap accesses); the kinds only weft raises use user codes. The runtime never sees
//! these codes: [`trap_kind`] turns every trap site into a [`TrapKind`] when a function is
//! compiled.

use cranelift_codegen::ir::TrapCode;
use weft_environ::TrapKind;

/// The code compiled code traps with for `kind`.
pub const fn trap_code(kind: TrapKind) -> TrapCode {
    match kind {
        TrapKind::StackOverflow => TrapCode::STACK_OVERFLOW,
        TrapKind::MemoryOutOfBounds => TrapCode::HEAP_OUT_OF_BOUNDS,
        TrapKind::IntegerOverflow => TrapCode::INTEGER_OVERFLOW,
        TrapKind::IntegerDivisionByZero => TrapCode::INTEGER_DIVISION_BY_ZERO,
        TrapKind::BadConversionToInteger => TrapCode::BAD_CONVERSION_TO_INTEGER,
        TrapKind::Unreachable => TrapCode::unwrap_user(1),
        TrapKind::TableOutOfBounds => TrapCode::unwrap_user(2),
        TrapKind::UndefinedElement => TrapCode::unwrap_user(3),
        TrapKind::UninitializedElement => TrapCode::unwrap_user(4),
        TrapKind::IndirectCallTypeMismatch => TrapCode::unwrap_user(5),
        TrapKind::Recorded => TrapCode::unwrap_user(6),
        TrapKind::NullReference => TrapCode::unwrap_user(7),
    }
}

/// The kind `code` was emitted for; `None` for a code weft never emits.
pub fn trap_kind(code: TrapCode) -> Option<TrapKind> {
    TrapKind::ALL
        .iter()
        .copied()
        .find(|&kind| trap_code(kind) == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_trap_kind_has_its_own_code_and_converts_back() {
        for &kind in TrapKind::ALL {
            assert_eq!(trap_kind(trap_code(kind)), Some(kind));
        }
    }

    #[test]
    fn a_code_weft_never_emits_has_no_kind() {
        assert_eq!(trap_kind(TrapCode::unwrap_user(200)), None);
    }
}
