//! The `#[repr(C)]` structures compiled code reads, laid out as `weft_environ::vmoffsets`
//! says; the assertions at the bottom keep the two in agreement.

use std::cell::UnsafeCell;

use weft_environ::vmoffsets;

/// Per-store state compiled code reads (see `vmoffsets::store_context`), followed by what only
/// the runtime reads.
#[repr(C)]
pub struct VMStoreContext {
    /// Lowest stack address Wasm may use; checked in every Wasm prologue.
    pub stack_limit: UnsafeCell<usize>,
    /// The innermost active Wasm activation of this store, or null.
    pub activation: UnsafeCell<*mut super::traphandlers::Activation>,
    /// The `StoreInner<T>` that owns this context (type-erased).
    pub store: UnsafeCell<*mut u8>,
    /// The continuation running Wasm of this store right now, or null outside promising calls
    /// (and while a suspending import polls its future): where a suspending import suspends to.
    pub continuation: UnsafeCell<*mut super::continuation::ContinuationState>,
    /// Set while a suspending import of this store polls its future: the store is then lent to
    /// that poll (see `continuation::with_polling_store`).
    pub polling: UnsafeCell<bool>,
    /// The owning store's id.
    pub store_id: u64,
}

// SAFETY: the raw pointers are only dereferenced by the thread that currently owns the store
// (through `&mut Store`), and the store moves between threads as a whole.
unsafe impl Send for VMStoreContext {}
// SAFETY: as above; shared references never touch the cells.
unsafe impl Sync for VMStoreContext {}

/// A linear memory's base and length (see `vmoffsets::memory`).
#[repr(C)]
#[derive(Debug)]
pub struct VMMemoryDefinition {
    pub base: *mut u8,
    pub current_length: usize,
}

/// A table's elements and their count (see `vmoffsets::table`).
#[repr(C)]
#[derive(Debug)]
pub struct VMTableDefinition {
    pub base: *mut usize,
    pub current_elements: usize,
}

/// What a funcref points to (see `vmoffsets::func_ref`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct VMFuncRef {
    pub wasm_call: *const u8,
    pub vmctx: *mut u8,
    pub type_id: u32,
}

/// A global's storage cell.
#[repr(C, align(16))]
#[derive(Debug, Default)]
pub struct VMGlobal(pub UnsafeCell<[u8; 16]>);

/// A value as trampolines pass it: one 16-byte slot, little-endian from byte 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(16))]
pub struct ValRaw(pub [u8; 16]);

impl ValRaw {
    pub fn from_u32(v: u32) -> Self {
        Self::from_u128(u128::from(v))
    }
    pub fn from_u64(v: u64) -> Self {
        Self::from_u128(u128::from(v))
    }
    pub fn from_u128(v: u128) -> Self {
        ValRaw(v.to_le_bytes())
    }
    pub fn get_u32(&self) -> u32 {
        self.get_u128() as u32
    }
    pub fn get_u64(&self) -> u64 {
        self.get_u128() as u64
    }
    pub fn get_u128(&self) -> u128 {
        u128::from_le_bytes(self.0)
    }
}

const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(
        offset_of!(VMStoreContext, stack_limit) == vmoffsets::store_context::STACK_LIMIT as usize
    );
    assert!(offset_of!(VMMemoryDefinition, base) == vmoffsets::memory::BASE as usize);
    assert!(
        offset_of!(VMMemoryDefinition, current_length)
            == vmoffsets::memory::CURRENT_LENGTH as usize
    );
    assert!(size_of::<VMMemoryDefinition>() == vmoffsets::memory::SIZE as usize);
    assert!(offset_of!(VMTableDefinition, base) == vmoffsets::table::BASE as usize);
    assert!(
        offset_of!(VMTableDefinition, current_elements)
            == vmoffsets::table::CURRENT_ELEMENTS as usize
    );
    assert!(offset_of!(VMFuncRef, wasm_call) == vmoffsets::func_ref::WASM_CALL as usize);
    assert!(offset_of!(VMFuncRef, vmctx) == vmoffsets::func_ref::VMCTX as usize);
    assert!(offset_of!(VMFuncRef, type_id) == vmoffsets::func_ref::TYPE_ID as usize);
    assert!(size_of::<VMFuncRef>() == vmoffsets::func_ref::SIZE as usize);
    assert!(size_of::<VMGlobal>() == vmoffsets::global::SIZE as usize);
    assert!(size_of::<usize>() == vmoffsets::PTR as usize);
};
