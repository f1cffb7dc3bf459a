//! What the VM layer reports about a call that did not return normally, turned into an
//! [`Error`]: a trap with its symbolized Wasm backtrace, a host function's error, or a host
//! panic resumed.

use weft_environ::TrapKind;

use crate::error::{Error, Trap, WasmBacktrace};
use crate::vm::entry::{Recorded, TrapInfo, TrapReason};

/// Turns what the VM layer reports into an [`Error`], resuming a host panic.
pub(crate) fn trap_to_error(info: TrapInfo, store: &mut crate::store::StoreOpaque) -> Error {
    if let TrapReason::Recorded(Recorded::Exception(exn)) = info.reason {
        return crate::WasmException::of(store, exn).into();
    }
    let backtrace = symbolize(&info.pcs, info.omitted);
    let code = match info.reason {
        TrapReason::Recorded(Recorded::Exception(_)) => unreachable!("handled above"),
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

pub(crate) fn trap_from_code(code: TrapKind) -> Trap {
    match code {
        TrapKind::StackOverflow => Trap::StackOverflow,
        TrapKind::IntegerOverflow => Trap::IntegerOverflow,
        TrapKind::MemoryOutOfBounds => Trap::MemoryOutOfBounds,
        TrapKind::IntegerDivisionByZero => Trap::IntegerDivisionByZero,
        TrapKind::BadConversionToInteger => Trap::BadConversionToInteger,
        TrapKind::Unreachable => Trap::Unreachable,
        TrapKind::TableOutOfBounds => Trap::TableOutOfBounds,
        TrapKind::UndefinedElement => Trap::UndefinedElement,
        TrapKind::UninitializedElement => Trap::UninitializedElement,
        TrapKind::IndirectCallTypeMismatch => Trap::IndirectCallTypeMismatch,
        TrapKind::NullReference => Trap::NullReference,
        // The VM layer reports a `Recorded` trap site with what was recorded, never as a code.
        TrapKind::Recorded => unreachable!("a recorded trap is reported as what was recorded"),
    }
}

fn symbolize(pcs: &[usize], omitted: usize) -> WasmBacktrace {
    let mut frames = Vec::with_capacity(pcs.len());
    let mut omitted_at = 0;
    for (i, &pc) in pcs.iter().enumerate() {
        if i == crate::vm::entry::KEEP_INNER {
            omitted_at = frames.len();
        }
        // Return addresses point after the call; look up the call itself.
        let pc = if i == 0 { pc } else { pc - 1 };
        if let Some(f) = crate::vm::code_memory::lookup_frame(pc) {
            frames.push(crate::error::FrameInfo {
                func_index: f.func_index,
                func_name: f.func_name,
                module_name: f.module_name,
                module_offset: f.wasm_offset,
            });
        }
    }
    WasmBacktrace {
        frames,
        omitted_frames: omitted,
        omitted_at: if omitted > 0 { omitted_at } else { 0 },
    }
}
