//! What the VM layer reports about a call that did not return normally, turned into an
//! [`Error`]: a trap with its symbolized Wasm backtrace, a host function's error, or a host
//! panic resumed.

use crate::error::{Error, Trap, WasmBacktrace};
use crate::vm::traphandlers::{Recorded, TrapInfo, TrapReason};

/// Turns what the VM layer reports into an [`Error`], resuming a host panic.
pub(crate) fn trap_to_error(info: TrapInfo) -> Error {
    let backtrace = symbolize(&info.pcs);
    let code = match info.reason {
        TrapReason::Code(code) | TrapReason::Recorded(Recorded::Trap(code)) => code,
        TrapReason::Recorded(Recorded::Error(error)) => return error,
        TrapReason::Recorded(Recorded::Panic(panic)) => std::panic::resume_unwind(panic),
        TrapReason::Recorded(Recorded::Api(trap)) => return Error::Trap { trap, backtrace },
    };
    Error::Trap {
        trap: trap_from_code(code),
        backtrace,
    }
}

pub(crate) fn trap_from_code(code: weft_compiler::TrapCode) -> Trap {
    use weft_compiler::TrapCode as C;
    use weft_compiler::vmoffsets::trap_codes as W;
    match code {
        C::STACK_OVERFLOW => Trap::StackOverflow,
        C::INTEGER_OVERFLOW => Trap::IntegerOverflow,
        C::HEAP_OUT_OF_BOUNDS => Trap::MemoryOutOfBounds,
        C::INTEGER_DIVISION_BY_ZERO => Trap::IntegerDivisionByZero,
        C::BAD_CONVERSION_TO_INTEGER => Trap::BadConversionToInteger,
        W::UNREACHABLE => Trap::Unreachable,
        W::TABLE_OUT_OF_BOUNDS => Trap::TableOutOfBounds,
        W::UNDEFINED_ELEMENT => Trap::UndefinedElement,
        W::UNINITIALIZED_ELEMENT => Trap::UninitializedElement,
        W::INDIRECT_CALL_TYPE_MISMATCH => Trap::IndirectCallTypeMismatch,
        other => unreachable!("compiled code never traps with {other:?}"),
    }
}

fn symbolize(pcs: &[usize]) -> WasmBacktrace {
    let frames = pcs
        .iter()
        .enumerate()
        .filter_map(|(i, &pc)| {
            // Return addresses point after the call; look up the call itself.
            let pc = if i == 0 { pc } else { pc - 1 };
            crate::vm::code_memory::lookup_frame(pc)
        })
        .map(|f| crate::error::FrameInfo {
            func_index: f.func_index,
            func_name: f.func_name,
            module_name: f.module_name,
            module_offset: f.wasm_offset,
        })
        .collect();
    WasmBacktrace { frames }
}
