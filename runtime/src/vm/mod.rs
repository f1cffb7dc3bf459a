//! The VM layer: everything that touches raw memory, machine code or signals. All of the
//! runtime's `unsafe` lives in this module; the API above it is safe.

pub mod call;
pub mod code_memory;
pub mod continuation;
pub mod host;
pub mod instance;
pub mod memory;
pub mod shared_store;
pub mod table;
pub mod traphandlers;
pub mod vmstructs;

pub use vmstructs::{VMFuncRef, VMGlobal, VMStoreContext, ValRaw};

impl VMGlobal {
    pub fn get(&self) -> u128 {
        // SAFETY: the cell is only written through `set` or by compiled code, never
        // concurrently with this read (the store is borrowed).
        u128::from_le_bytes(unsafe { *self.0.get() })
    }

    pub fn set(&self, value: u128) {
        // SAFETY: as in `get`.
        unsafe { *self.0.get() = value.to_le_bytes() }
    }
}

impl VMStoreContext {
    /// The context of the store whose id is `store_id`.
    pub fn new(store_id: u64) -> Box<Self> {
        Box::new(VMStoreContext {
            stack_limit: std::cell::UnsafeCell::new(usize::MAX),
            activation: std::cell::UnsafeCell::new(std::ptr::null_mut()),
            store: std::cell::UnsafeCell::new(std::ptr::null_mut()),
            continuation: std::cell::UnsafeCell::new(std::ptr::null_mut()),
            polling: std::cell::UnsafeCell::new(false),
            store_id,
        })
    }

    /// Records which store owns this context; done before every entry into Wasm.
    pub fn set_store(&self, store: *mut u8) {
        // SAFETY: called with the store exclusively borrowed, while no Wasm of it runs.
        unsafe { *self.store.get() = store }
    }
}

/// The engine type id of a funcref.
pub fn read_func_ref_type(func_ref: *const VMFuncRef) -> u32 {
    // SAFETY: every funcref the runtime hands out points into a live vmctx or host function
    // context owned by the store that handed it out, which outlives the call.
    unsafe { (*func_ref).type_id }
}

/// A copy of the funcref at address `func_ref`.
pub fn read_func_ref(func_ref: usize) -> VMFuncRef {
    // SAFETY: as in `read_func_ref_type`.
    unsafe { *(func_ref as *const VMFuncRef) }
}
