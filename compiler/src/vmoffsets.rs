//! The layout of everything compiled code reads from the runtime: the instance's `VMContext`,
//! the store context, memory and table definitions, function references, global cells.
//!
//! This module is the only place these offsets are written down. The compiler emits loads at
//! these offsets and the runtime's VM layer builds its structures from the same numbers (and
//! asserts at compile time that its `#[repr(C)]` structs agree).
//!
//! ```text
//! VMContext (one per instance, 16-byte aligned, allocated by the runtime)
//! +0   *mut VMStoreContext        shared by every instance in the store
//! +8   *const Builtins            table of libcall addresses (see `BuiltinFunction`)
//! +16  *mut Instance              the runtime's instance, for libcalls
//! +24  *mut VMMemoryDefinition    x num_memories   (imported or defined alike)
//!      *mut VMTableDefinition     x num_tables
//!      *mut VMGlobal              x num_globals
//!      VMFuncRef                  x num_funcs      (imports copy the exporter's funcref)
//! ```

use crate::ModuleInfo;

/// Size of a pointer on every ISA weft targets.
pub const PTR: u32 = 8;

/// `VMStoreContext`: per-store state that compiled code reads. The runtime swaps the fields
/// when an activation starts, ends or switches stacks.
pub mod store_context {
    /// Lowest address the stack pointer may reach in Wasm code (the prologue check).
    pub const STACK_LIMIT: i32 = 0;
    pub const SIZE: u32 = 8;
}

/// `VMMemoryDefinition { base: *mut u8, current_length: usize }`.
pub mod memory {
    pub const BASE: i32 = 0;
    pub const CURRENT_LENGTH: i32 = 8;
    pub const SIZE: u32 = 16;
}

/// `VMTableDefinition { base: *mut usize, current_elements: usize }`. Elements are
/// pointer-sized: a `*const VMFuncRef` for funcref tables, an externref handle for externref
/// tables; 0 is null in both.
pub mod table {
    pub const BASE: i32 = 0;
    pub const CURRENT_ELEMENTS: i32 = 8;
    pub const SIZE: u32 = 16;
    pub const ELEMENT_SIZE: u32 = 8;
}

/// `VMFuncRef { wasm_call: *const u8, vmctx: *mut VMContext, type_id: u32 }`: everything needed
/// to call a function with the Wasm calling convention. A funcref value is a pointer to one.
pub mod func_ref {
    pub const WASM_CALL: i32 = 0;
    pub const VMCTX: i32 = 8;
    pub const TYPE_ID: i32 = 16;
    pub const SIZE: u32 = 24;
}

/// A host function's context, the vmctx its Wasm-to-host trampoline receives. Only the first
/// field is read by compiled code; the runtime keeps the rest of its state after it.
pub mod host_func {
    /// `unsafe extern "C" fn(host_ctx, caller_vmctx, values: *mut ValRaw, len: usize) -> u8`,
    /// returning 0 when it recorded a trap.
    pub const ARRAY_CALL: i32 = 0;
}

/// `VMGlobal`: a 16-byte cell; every value type is stored little-endian from offset 0.
pub mod global {
    pub const SIZE: u32 = 16;
}

/// Offsets within one module's `VMContext`.
#[derive(Clone, Debug)]
pub struct VMOffsets {
    pub num_memories: u32,
    pub num_tables: u32,
    pub num_globals: u32,
    pub num_funcs: u32,
}

impl VMOffsets {
    pub const STORE_CONTEXT: u32 = 0;
    pub const BUILTINS: u32 = 8;
    pub const INSTANCE: u32 = 16;
    const ARRAYS: u32 = 24;

    pub fn new(module: &ModuleInfo) -> Self {
        VMOffsets {
            num_memories: module.memories.len() as u32,
            num_tables: module.tables.len() as u32,
            num_globals: module.globals.len() as u32,
            num_funcs: module.funcs.len() as u32,
        }
    }

    /// Offset of the pointer to memory `index`'s `VMMemoryDefinition`.
    pub fn memory(&self, index: u32) -> u32 {
        debug_assert!(index < self.num_memories);
        Self::ARRAYS + index * PTR
    }

    /// Offset of the pointer to table `index`'s `VMTableDefinition`.
    pub fn table(&self, index: u32) -> u32 {
        debug_assert!(index < self.num_tables);
        Self::ARRAYS + self.num_memories * PTR + index * PTR
    }

    /// Offset of the pointer to global `index`'s `VMGlobal`.
    pub fn global(&self, index: u32) -> u32 {
        debug_assert!(index < self.num_globals);
        Self::ARRAYS + (self.num_memories + self.num_tables + index) * PTR
    }

    /// Offset of function `index`'s inline `VMFuncRef`.
    pub fn func_ref(&self, index: u32) -> u32 {
        debug_assert!(index < self.num_funcs);
        Self::ARRAYS
            + (self.num_memories + self.num_tables + self.num_globals) * PTR
            + index * func_ref::SIZE
    }

    /// Total size of the `VMContext`.
    pub fn size(&self) -> u32 {
        Self::ARRAYS
            + (self.num_memories + self.num_tables + self.num_globals) * PTR
            + self.num_funcs * func_ref::SIZE
    }
}

/// The runtime functions compiled code calls, through the table at `VMOffsets::BUILTINS`.
///
/// All take the caller's vmctx first and use the platform C calling convention. Those that can
/// trap return a `u8` that is 0 on a trap: the runtime has recorded the trap in the activation,
/// and compiled code then executes `trap(RECORDED)`. The type comments use Wasm-ish names:
/// `u32`/`u64` are `i32`/`i64` in IR; `ref` is pointer-sized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum BuiltinFunction {
    /// `(vmctx, memory: u32, delta_pages: u64) -> u64` old size in pages, or `u64::MAX`.
    MemoryGrow = 0,
    /// `(vmctx, memory: u32, dst: u64, byte: u32, len: u64) -> u8`
    MemoryFill,
    /// `(vmctx, dst_memory: u32, src_memory: u32, dst: u64, src: u64, len: u64) -> u8`
    MemoryCopy,
    /// `(vmctx, memory: u32, data: u32, dst: u64, src: u32, len: u32) -> u8`
    MemoryInit,
    /// `(vmctx, data: u32)`
    DataDrop,
    /// `(vmctx, table: u32, delta: u32, init: ref) -> u32` old size, or `u32::MAX`.
    TableGrow,
    /// `(vmctx, table: u32, dst: u32, value: ref, len: u32) -> u8`
    TableFill,
    /// `(vmctx, dst_table: u32, src_table: u32, dst: u32, src: u32, len: u32) -> u8`
    TableCopy,
    /// `(vmctx, table: u32, elem: u32, dst: u32, src: u32, len: u32) -> u8`
    TableInit,
    /// `(vmctx, elem: u32)`
    ElemDrop,
}

impl BuiltinFunction {
    pub const COUNT: usize = 10;

    /// Offset of this builtin's address within the builtins table.
    pub fn offset(self) -> i32 {
        self as i32 * PTR as i32
    }
}

/// Trap codes compiled code uses beyond Cranelift's reserved ones (stack overflow, integer
/// overflow, heap out of bounds, division by zero, bad conversion).
pub mod trap_codes {
    use cranelift_codegen::ir::TrapCode;

    pub const UNREACHABLE: TrapCode = TrapCode::unwrap_user(1);
    pub const TABLE_OUT_OF_BOUNDS: TrapCode = TrapCode::unwrap_user(2);
    /// `call_indirect` with an index past the table's end.
    pub const UNDEFINED_ELEMENT: TrapCode = TrapCode::unwrap_user(3);
    /// `call_indirect` (or `call_ref`) of a null entry.
    pub const UNINITIALIZED_ELEMENT: TrapCode = TrapCode::unwrap_user(4);
    pub const INDIRECT_CALL_TYPE_MISMATCH: TrapCode = TrapCode::unwrap_user(5);
    /// A builtin or a host function recorded the reason in the activation before returning.
    pub const RECORDED: TrapCode = TrapCode::unwrap_user(6);
}
