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
//! +8   *const BuiltinTable        the builtins' addresses (see `crate::builtins`)
//! +16  *mut Instance              the runtime's instance, for builtins
//! +24  *mut VMMemoryDefinition    x num_memories   (imported or defined alike)
//!      *mut VMTableDefinition     x num_tables
//!      *mut VMGlobal              x num_globals
//!      VMFuncRef                  x num_funcs      (imports copy the exporter's funcref)
//!      u32                        x num_types      engine type id of each module type
//! ```
//!
//! Engine type ids (the canonical id of a function type in the engine that runs the code) are
//! read from the vmctx, never compiled in as immediates: compiled code then depends only on the
//! module and the target, not on the engine that compiled it.

use crate::ModuleInfo;

/// Size of a pointer on every ISA weft targets.
pub const PTR: u32 = 8;

/// `VMStoreContext`: per-store state that compiled code reads. The runtime swaps the fields
/// when an activation starts, ends or switches stacks.
pub mod store_context {
    /// Lowest address the stack pointer may reach in Wasm code (the prologue check).
    pub const STACK_LIMIT: i32 = 0;
    /// `*const AtomicU64`: the engine's epoch counter (code compiled with epoch interruption
    /// loads it atomically at function entries and loop headers).
    pub const EPOCH_COUNTER: i32 = 8;
    /// `u64`: the epoch at which this store's Wasm is interrupted.
    pub const EPOCH_DEADLINE: i32 = 16;
    /// `i64`: fuel left; code compiled to consume fuel subtracts each block's cost and calls
    /// the `out_of_fuel` builtin when it goes below zero.
    pub const FUEL: i32 = 24;
    /// `u8`: what the last register-preserving builtin (the epoch and fuel checks') decided:
    /// 1 to go on, 0 after recording a trap.
    pub const CHECK_STATUS: i32 = 32;
    /// `u64`: the exnref a host function throws, written before it returns
    /// [`super::host_func::THREW`] and read by the Wasm-to-host trampoline's throw path.
    pub const THROWN: i32 = 40;
    pub const SIZE: u32 = 48;
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
/// two fields are read by compiled code; the runtime keeps the rest of its state after them.
pub mod host_func {
    /// `unsafe extern "C" fn(host_ctx, caller_vmctx, values: *mut ValRaw, len: usize) -> u8`,
    /// returning 0 when it recorded a trap, [`THREW`] when it throws a Wasm exception into
    /// its caller (the exnref is then in the store context's
    /// [`super::store_context::THROWN`]), else 1.
    pub const ARRAY_CALL: i32 = 0;
    /// The register-argument shim, or null for a host function that has none:
    /// `unsafe extern "C" fn(host_ctx, caller_vmctx, params...) -> NativeReturn`, each
    /// parameter in its own type (`i32`, `i64`, `f32`, `f64`, as the host's C ABI passes
    /// them), returning the pair `(value, status)` in the two integer return registers: the
    /// status as `ARRAY_CALL`'s; the value the result's bits (zero-extended; any for no
    /// result) when the status is 1, the caller's vmctx when it is [`THREW`]. Only types
    /// with at most one result and no vector or reference value have such a shim (see the
    /// compiler's `native_call_supported`).
    pub const NATIVE_CALL: i32 = 8;
    /// The status of an `ARRAY_CALL` or `NATIVE_CALL` that throws.
    pub const THREW: u8 = 2;
}

/// `VMGlobal`: a 16-byte cell; every value type is stored little-endian from offset 0.
pub mod global {
    pub const SIZE: u32 = 16;
}

/// An exception object (what an `exnref` points to; the store owns it): a 16-byte header whose
/// first `u32` is the store's index of the exception's tag, then one 16-byte slot per payload
/// value, stored like a global's cell.
pub mod exception {
    pub const TAG: i32 = 0;
    /// A byte that is nonzero once a reference to the object has escaped the throw that
    /// made it (to Wasm through `catch_ref`/`catch_all_ref`, or to the host): such an object
    /// lives until its store is dropped; the others are freed when caught.
    pub const PINNED: i32 = 8;
    pub const VALUES: i32 = 16;
    pub const VALUE_SIZE: u32 = 16;
}

/// Offsets within one module's `VMContext`.
#[derive(Clone, Debug)]
pub struct VMOffsets {
    pub num_memories: u32,
    pub num_tables: u32,
    pub num_globals: u32,
    pub num_funcs: u32,
    pub num_types: u32,
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
            num_types: module.types.len() as u32,
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

    fn type_ids(&self) -> u32 {
        Self::ARRAYS
            + (self.num_memories + self.num_tables + self.num_globals) * PTR
            + self.num_funcs * func_ref::SIZE
    }

    /// Offset of the engine type id (a `u32`) of the module's type `index`.
    pub fn type_id(&self, index: u32) -> u32 {
        debug_assert!(index < self.num_types);
        self.type_ids() + index * 4
    }

    /// Total size of the `VMContext`.
    pub fn size(&self) -> u32 {
        self.type_ids() + self.num_types * 4
    }
}
