//! The `#[repr(C)]` structures compiled code reads, laid out as `weft_environ::vmoffsets`
//! says (the assertions at the bottom keep the two in agreement), and the handle through which
//! the API names a funcref without holding a pointer.

use std::any::TypeId;
use std::cell::UnsafeCell;
use std::ptr::{self, NonNull};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use weft_environ::vmoffsets;

use super::async_call::CallState;
use crate::store::StoreContext;

/// Per-store state compiled code reads (see `vmoffsets::store_context`), followed by what only
/// the runtime reads. Boxed in its store, so its address is stable; the cells are written only
/// by the VM layer, by whoever the store is lent to.
#[repr(C)]
pub struct VMStoreContext {
    /// Lowest stack address Wasm may use; checked in every Wasm prologue.
    pub(super) stack_limit: UnsafeCell<usize>,
    /// The engine's epoch counter: `epoch_owner`'s.
    epoch_counter: *const AtomicU64,
    /// The epoch at which Wasm of this store is interrupted (`u64::MAX`: never).
    epoch_deadline: UnsafeCell<u64>,
    /// Fuel compiled code may still use before it calls `out_of_fuel`.
    fuel: UnsafeCell<i64>,
    /// The outcome of the last epoch or fuel check's builtin, which returns nothing (it
    /// preserves every register): 1 to go on, 0 after recording a trap.
    check_status: UnsafeCell<u8>,
    /// The exnref of the exception a host function throws into its Wasm caller, for the
    /// trampoline's throw path (see `host_func::THREW`).
    thrown: UnsafeCell<u64>,
    // Compiled code reads nothing below.
    /// Fuel held back from `fuel` for the yield interval (see [`Self::set_fuel`]).
    fuel_reserve: UnsafeCell<u64>,
    /// Per-store policies for interruptions: see [`Interruption`].
    pub(super) interruption: UnsafeCell<Interruption>,
    /// Keeps the counter `epoch_counter` points to alive.
    epoch_owner: Arc<AtomicU64>,
    /// The `StoreContext<T>` that owns this context, as lent by the latest entry into Wasm
    /// ([`lend_store`]); host functions and suspending imports reach the store through it.
    store: UnsafeCell<*mut ()>,
    /// `TypeId` of that `StoreContext<T>`: checked wherever the pointer is cast back.
    store_type: TypeId,
    /// What runs Wasm of this store on this thread right now, in one word (see `suspend`):
    /// the promising call whose Wasm it is (where a suspending import suspends to), null in a
    /// synchronous call or when no Wasm runs, or [`suspend::POLLING`] while a suspending import
    /// polls its future (the store is then lent to that poll, and nothing may suspend).
    ///
    /// [`suspend::POLLING`]: super::suspend::POLLING
    pub(super) call: UnsafeCell<*mut CallState>,
    /// The store's exception objects (what exnrefs point to), allocated by compiled code's
    /// `throw` and by the host.
    pub(super) exceptions: UnsafeCell<super::exception::ExceptionHeap>,
    /// The owning store's id.
    pub store_id: u64,
}

// SAFETY: the raw pointers are only dereferenced by the thread the store is lent to (through
// `&mut StoreContext`), and the store moves between threads as a whole.
unsafe impl Send for VMStoreContext {}
// SAFETY: as above; shared references outside the VM layer cannot reach the cells.
unsafe impl Sync for VMStoreContext {}

impl VMStoreContext {
    /// The context of the `StoreContext<T>` whose id is `store_id`.
    pub fn new<T: 'static>(store_id: u64, epoch: Arc<AtomicU64>) -> Box<Self> {
        Box::new(VMStoreContext {
            stack_limit: UnsafeCell::new(usize::MAX),
            epoch_counter: Arc::as_ptr(&epoch),
            epoch_owner: epoch,
            epoch_deadline: UnsafeCell::new(u64::MAX),
            fuel: UnsafeCell::new(0),
            check_status: UnsafeCell::new(1),
            thrown: UnsafeCell::new(0),
            fuel_reserve: UnsafeCell::new(0),
            interruption: UnsafeCell::new(Interruption::default()),
            store: UnsafeCell::new(ptr::null_mut()),
            store_type: TypeId::of::<StoreContext<T>>(),
            call: UnsafeCell::new(ptr::null_mut()),
            exceptions: UnsafeCell::new(Default::default()),
            store_id,
        })
    }

    #[cfg(test)]
    pub(super) fn new_for_tests() -> Box<Self> {
        Self::new::<()>(u64::MAX, Arc::default())
    }

    /// The engine's current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch_owner.load(Ordering::Relaxed)
    }

    /// The epoch deadline (see `vmoffsets::store_context::EPOCH_DEADLINE`).
    pub fn epoch_deadline(&self) -> u64 {
        // SAFETY: compiled code only reads the cell, and writes happen through `&mut self` or
        // from a builtin of this store's running Wasm, never concurrently.
        unsafe { *self.epoch_deadline.get() }
    }

    /// Sets the epoch at which Wasm of this store is interrupted.
    pub fn set_epoch_deadline(&mut self, deadline: u64) {
        *self.epoch_deadline.get_mut() = deadline;
    }

    /// What happens at the deadline or when fuel runs out.
    pub fn interruption(&mut self) -> &mut Interruption {
        self.interruption.get_mut()
    }

    /// Fuel left: the part compiled code may use before its next check plus the reserve.
    pub fn fuel(&self) -> u64 {
        // SAFETY: as in `epoch_deadline`; compiled code writes `fuel` only while this store's
        // Wasm runs, which a `&self` caller outside the VM layer is not inside of (or is, as a
        // host function, while that Wasm waits for it).
        unsafe { self.fuel_total() }.clamp(0, i128::from(u64::MAX)) as u64
    }

    /// Sets the fuel left to `fuel`, of which compiled code gets at most the store's yield
    /// interval before it checks in (the rest is the reserve).
    pub fn set_fuel(&mut self, fuel: u64) {
        // SAFETY: `&mut self`: nothing else uses the cells.
        unsafe { self.refuel(fuel) }
    }

    /// Splits `fuel` into the part compiled code may use before it checks in and the reserve.
    ///
    /// # Safety
    /// Only the thread running Wasm of this store, or holding it exclusively, may call this
    /// (no other access to the cells meanwhile).
    pub(super) unsafe fn refuel(&self, fuel: u64) {
        // SAFETY: the caller's contract.
        let interval = unsafe { (*self.interruption.get()).fuel_yield_interval };
        let active = fuel.min(interval.unwrap_or(u64::MAX)).min(i64::MAX as u64);
        // SAFETY: the caller's contract.
        unsafe {
            *self.fuel.get() = active as i64;
            *self.fuel_reserve.get() = fuel - active;
        }
    }

    /// Fuel left in all, negative if compiled code overdrew it.
    ///
    /// # Safety
    /// As for [`Self::refuel`].
    pub(super) unsafe fn fuel_total(&self) -> i128 {
        // SAFETY: the caller's contract.
        unsafe { i128::from(*self.fuel.get()) + i128::from(*self.fuel_reserve.get()) }
    }

    /// Moves the epoch deadline.
    ///
    /// # Safety
    /// As for [`Self::refuel`].
    pub(super) unsafe fn write_epoch_deadline(&self, deadline: u64) {
        // SAFETY: the caller's contract.
        unsafe { *self.epoch_deadline.get() = deadline };
    }

    /// Hands the exnref a host function throws to the trampoline that called it.
    ///
    /// # Safety
    /// As for [`Self::refuel`].
    pub(super) unsafe fn write_thrown(&self, exn: u64) {
        // SAFETY: the caller's contract.
        unsafe { *self.thrown.get() = exn };
    }

    /// Reports a check builtin's outcome to the compiled code that called it.
    ///
    /// # Safety
    /// As for [`Self::refuel`].
    pub(super) unsafe fn write_check_status(&self, go_on: bool) {
        // SAFETY: the caller's contract.
        unsafe { *self.check_status.get() = u8::from(go_on) };
    }

    /// The interruption policies, read by a builtin of this store's running Wasm.
    pub(super) fn interruption_now(&self) -> Interruption {
        // SAFETY: written only through `&mut self` (`Self::interruption`), which nobody can
        // hold while this store's Wasm runs a builtin.
        unsafe { *self.interruption.get() }
    }

    /// The store's exception objects.
    pub fn exceptions(&self) -> &super::exception::ExceptionHeap {
        // SAFETY: written only by a builtin of this store's running Wasm or through
        // `&mut self`; a `&self` caller outside the VM layer is not inside such a builtin.
        unsafe { &*self.exceptions.get() }
    }

    /// The store's exception objects, to add to.
    pub fn exceptions_mut(&mut self) -> &mut super::exception::ExceptionHeap {
        self.exceptions.get_mut()
    }

    /// The store as lent by the latest entry into Wasm.
    ///
    /// # Safety
    /// Wasm entered through [`lend_store`] (or a resume of a fiber of this store) must be
    /// running below the caller, and nothing else may use the store until the returned
    /// reference is dropped: the frames that lent it are suspended in that Wasm. The store's
    /// data type is `T` (see [`Self::is_store_of`]; checked in debug builds).
    pub(super) unsafe fn lent_store<'a, T: 'static>(&self) -> &'a mut StoreContext<T> {
        debug_assert!(self.is_store_of::<T>());
        // SAFETY: the pointer was derived from a `&mut StoreContext<T>` (the caller's contract
        // on `T`) by the entry below us, which does not use its borrow until Wasm returns.
        unsafe { &mut *(*self.store.get()).cast::<StoreContext<T>>() }
    }

    /// Whether this is the context of a `StoreContext<T>`.
    pub(super) fn is_store_of<T: 'static>(&self) -> bool {
        self.store_type == TypeId::of::<StoreContext<T>>()
    }
}

/// Lends `store` to the Wasm about to be entered on this thread: host functions and suspending
/// imports reach it through its context until the next entry. Every entry into Wasm does this
/// once, from the `&mut` it was given; returns the context to enter with.
#[inline(always)]
pub(super) fn lend_store<T: 'static>(store: &mut StoreContext<T>) -> NonNull<VMStoreContext> {
    let context = NonNull::from(&*store.opaque.vm);
    let lent = ptr::from_mut(store).cast::<()>();
    // SAFETY: the context is boxed in the store we borrow exclusively, and no Wasm of it runs
    // (Wasm runs only inside an entry, which holds this same borrow).
    unsafe { context.as_ref().store.get().write(lent) };
    context
}

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

/// A global's storage cell. Boxed in its store; compiled code reads and writes it through its
/// address, which instances get from its handle (`VMGlobal::handle`).
#[repr(C, align(16))]
#[derive(Debug, Default)]
pub struct VMGlobal(UnsafeCell<[u8; 16]>);

impl VMGlobal {
    /// The value, little-endian in the low bytes.
    pub fn get(&self) -> u128 {
        // SAFETY: compiled code writes the cell only while Wasm of its store runs, and then
        // nothing outside that Wasm holds the store (so no `&VMGlobal` is in use) except a host
        // function it called, while the Wasm waits for it.
        u128::from_le_bytes(unsafe { *self.0.get() })
    }

    pub fn set(&self, value: u128) {
        // SAFETY: as in `get`.
        unsafe { *self.0.get() = value.to_le_bytes() }
    }
}

/// A funcref of a store: the address of a [`VMFuncRef`] in one of its instances' vmctx or host
/// function contexts, which the store frees only when it is dropped.
///
/// The API's name for a function's code and vmctx, holding no pointer it could dereference.
/// Made only by the VM layer (`Instance::func_ref`, `Instance::func_ref_at`,
/// `HostFuncContext::func_ref`); the API keeps handles only in the store that owns them and
/// uses them only with it (handles carry the store id, checked on use).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FuncRefPtr(NonNull<VMFuncRef>);

// SAFETY: an address of store-owned, immutable data; the store moves between threads as a
// whole.
unsafe impl Send for FuncRefPtr {}
// SAFETY: as above.
unsafe impl Sync for FuncRefPtr {}

impl FuncRefPtr {
    /// # Safety
    /// `func_ref` must point to a `VMFuncRef` owned by a store, initialized and never written
    /// again, that lives as long as that store. One exception: a host function's funcref made
    /// without code gets its `wasm_call` once, through its owner's `&mut`, before the store
    /// hands it to Wasm (`HostFunc::install_trampoline`).
    pub(super) unsafe fn new(func_ref: NonNull<VMFuncRef>) -> Self {
        FuncRefPtr(func_ref)
    }

    /// The funcref as Wasm sees it (its address; 0 is null).
    pub fn to_raw(self) -> u64 {
        self.0.as_ptr() as usize as u64
    }

    /// A copy of the funcref.
    pub fn read(self) -> VMFuncRef {
        // SAFETY: the handle's invariant: the funcref is initialized, immutable, and lives as
        // long as its store, which the API uses the handle with.
        unsafe { *self.0.as_ptr() }
    }

    /// The engine type id of the function.
    pub fn type_id(self) -> u32 {
        self.read().type_id
    }
}

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

/// What a store does when its epoch deadline passes or its fuel runs out (see
/// `builtins::epoch_interrupt` and `out_of_fuel`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Interruption {
    /// In a promising call at the deadline: yield to the executor, then move the deadline this
    /// many ticks past the current epoch. `None`: trap with `Trap::Interrupt`.
    pub epoch_yield_delta: Option<u64>,
    /// In a promising call: yield to the executor after every this much fuel. `None`: run until
    /// the fuel is gone.
    pub fuel_yield_interval: Option<u64>,
}

const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(
        offset_of!(VMStoreContext, stack_limit) == vmoffsets::store_context::STACK_LIMIT as usize
    );
    assert!(
        offset_of!(VMStoreContext, epoch_counter)
            == vmoffsets::store_context::EPOCH_COUNTER as usize
    );
    assert!(
        offset_of!(VMStoreContext, epoch_deadline)
            == vmoffsets::store_context::EPOCH_DEADLINE as usize
    );
    assert!(offset_of!(VMStoreContext, fuel) == vmoffsets::store_context::FUEL as usize);
    assert!(
        offset_of!(VMStoreContext, check_status) == vmoffsets::store_context::CHECK_STATUS as usize
    );
    assert!(offset_of!(VMStoreContext, thrown) == vmoffsets::store_context::THROWN as usize);
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
