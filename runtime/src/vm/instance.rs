//! An instance's `VMContext` and the builtins compiled code calls with it.

use std::sync::Arc;

use weft_environ::vmoffsets::VMOffsets;
use weft_environ::{BuiltinTable, ModuleInfo, TrapKind};

use super::code_memory::CodeMemory;
use super::entry::{Recorded, record};
use super::memory::Memory;
use super::pool::Vmctx;
use super::table::{self, Table};
use super::vmstructs::{FuncRefPtr, VMFuncRef, VMGlobal, VMStoreContext};

/// The runtime side of an instance: its vmctx and what builtins need to act on it.
///
/// Lives in a `Box` owned by the store, so the back-pointer in the vmctx stays valid.
pub struct Instance {
    offsets: VMOffsets,
    /// Backing storage of the vmctx (16-byte aligned).
    vmctx: Vmctx,
    memories: Vec<*mut Memory>,
    tables: Vec<*mut Table>,
    /// Element segments `table.init` may still use; `None` once dropped (active and declared
    /// segments are dropped at instantiation).
    elements: Vec<Option<Vec<usize>>>,
    /// The module binary, for data segments.
    wasm: Arc<[u8]>,
    module: Arc<ModuleInfo>,
    dropped_data: SegmentSet,
    /// The store's index of each of the module's tags (imports first).
    tags: Vec<u32>,
    /// The instance's index in its store.
    pub store_index: usize,
}

// SAFETY: the raw pointers point to store-owned objects that live as long as the store, and
// the instance is used only through the store, which moves between threads as a whole.
unsafe impl Send for Instance {}
// SAFETY: as above.
unsafe impl Sync for Instance {}

/// The data segments an instance dropped (`data.drop`, or active ones once written), as bits:
/// the first 64 inline, so that a module with few segments costs no allocation.
#[derive(Default)]
struct SegmentSet {
    first: u64,
    rest: Vec<u64>,
}

impl SegmentSet {
    fn insert(&mut self, index: u32) {
        let (word, bit) = (index as usize / 64, 1u64 << (index % 64));
        if word == 0 {
            self.first |= bit;
        } else {
            if self.rest.len() < word {
                self.rest.resize(word, 0);
            }
            self.rest[word - 1] |= bit;
        }
    }

    fn contains(&self, index: u32) -> bool {
        let (word, bit) = (index as usize / 64, 1u64 << (index % 64));
        let bits = if word == 0 {
            self.first
        } else {
            self.rest.get(word - 1).copied().unwrap_or(0)
        };
        bits & bit != 0
    }
}

/// A memory, table or global an instance refers to: made by the VM layer from the box its
/// store keeps it in until the store is dropped ([`Memory::handle`], [`Table::handle`],
/// [`VMGlobal::handle`]), which is what instances of that store rely on.
#[derive(Debug)]
pub struct StoreBoxPtr<T>(std::ptr::NonNull<T>);

impl<T> StoreBoxPtr<T> {
    fn as_ptr(&self) -> *mut T {
        self.0.as_ptr()
    }
}

impl Memory {
    /// This memory's handle, for instances of the store whose box holds it.
    pub fn handle(self: &mut Box<Self>) -> StoreBoxPtr<Memory> {
        StoreBoxPtr(std::ptr::NonNull::from(&mut **self))
    }
}

impl Table {
    /// This table's handle, for instances of the store whose box holds it.
    pub fn handle(self: &mut Box<Self>) -> StoreBoxPtr<Table> {
        StoreBoxPtr(std::ptr::NonNull::from(&mut **self))
    }
}

impl VMGlobal {
    /// This global's handle, for instances of the store whose box holds it.
    #[allow(
        clippy::borrowed_box,
        reason = "only a boxed global has a stable address"
    )]
    pub fn handle(self: &Box<Self>) -> StoreBoxPtr<VMGlobal> {
        // Compiled code writes the cell through this; `VMGlobal` is an `UnsafeCell`.
        StoreBoxPtr(std::ptr::NonNull::from(&**self))
    }
}

/// What an instance refers to, in index-space order (imports first).
pub struct InstanceParts<'a> {
    pub memories: Vec<StoreBoxPtr<Memory>>,
    pub tables: Vec<StoreBoxPtr<Table>>,
    pub globals: Vec<StoreBoxPtr<VMGlobal>>,
    /// Funcrefs of the imported functions.
    pub imported_funcs: Vec<FuncRefPtr>,
    /// The module's compiled functions.
    pub code: &'a CodeMemory,
    /// The engine's id of each of the module's types, by type index.
    pub type_ids: &'a [u32],
}

impl Instance {
    /// Builds the vmctx for an instance of `module` in the store whose context is `store`.
    ///
    /// What compiled code relies on comes as handles the VM layer made: `parts` names objects
    /// boxed in that store (so they live as long as this instance), and `parts.code` is the
    /// module's compiled code. `vmctx` is zeroed storage of at least
    /// `VMOffsets::new(&module).size()` bytes.
    ///
    /// # Panics
    /// If `parts` does not match the module's index spaces, or `vmctx` is too small.
    pub fn new(
        module: Arc<ModuleInfo>,
        wasm: Arc<[u8]>,
        store: &VMStoreContext,
        parts: InstanceParts<'_>,
        store_index: usize,
        vmctx: Vmctx,
    ) -> Box<Instance> {
        // The vmctx has room for exactly one id per module type.
        assert_eq!(parts.type_ids.len(), module.types.len());
        let imported = parts.imported_funcs.len();
        assert_eq!(parts.memories.len(), module.memories.len());
        assert_eq!(parts.tables.len(), module.tables.len());
        assert_eq!(parts.globals.len(), module.globals.len());
        assert_eq!(
            imported + module.num_defined_funcs() as usize,
            module.funcs.len()
        );
        let offsets = VMOffsets::new(&module);
        assert!(vmctx.byte_len() >= offsets.size() as usize);
        let mut instance = Box::new(Instance {
            vmctx,
            offsets,
            // In place: a handle is a pointer, so these reuse the parts' allocations.
            memories: parts.memories.into_iter().map(|m| m.as_ptr()).collect(),
            tables: parts.tables.into_iter().map(|t| t.as_ptr()).collect(),
            elements: Vec::new(),
            dropped_data: SegmentSet::default(),
            tags: Vec::new(),
            wasm,
            module,
            store_index,
        });
        let self_ptr: *mut Instance = &mut *instance;
        instance.write(VMOffsets::STORE_CONTEXT, std::ptr::from_ref(store) as usize);
        instance.write(VMOffsets::BUILTINS, &raw const BUILTINS as usize);
        instance.write(VMOffsets::INSTANCE, self_ptr as usize);
        for i in 0..instance.memories.len() {
            // SAFETY: a `StoreBoxPtr` names a live memory of the store (see its docs).
            let definition = unsafe { (*instance.memories[i]).definition() };
            instance.write(instance.offsets.memory(i as u32), definition as usize);
        }
        for i in 0..instance.tables.len() {
            // SAFETY: as above, a live table of the store.
            let definition = unsafe { (*instance.tables[i]).definition() };
            instance.write(instance.offsets.table(i as u32), definition as usize);
        }
        for (i, global) in parts.globals.iter().enumerate() {
            instance.write(instance.offsets.global(i as u32), global.as_ptr() as usize);
        }
        for (i, &type_id) in parts.type_ids.iter().enumerate() {
            let offset = instance.offsets.type_id(i as u32) as usize;
            // SAFETY: `offset..offset + 4` is inside the vmctx and 4-byte aligned (the layout in
            // `vmoffsets` guarantees both).
            unsafe {
                instance
                    .vmctx_ptr()
                    .add(offset)
                    .cast::<u32>()
                    .write(type_id)
            };
        }
        let vmctx = instance.vmctx_ptr();
        for i in 0..instance.module.funcs.len() {
            let func_ref = if i < imported {
                parts.imported_funcs[i].read()
            } else {
                VMFuncRef {
                    wasm_call: parts.code.function_address(i - imported),
                    vmctx,
                    type_id: parts.type_ids[instance.module.funcs[i] as usize],
                }
            };
            let offset = instance.offsets.func_ref(i as u32) as usize;
            // SAFETY: `offset..offset + size_of::<VMFuncRef>()` is inside the vmctx and
            // 8-byte aligned (the layout in `vmoffsets` guarantees both).
            unsafe {
                instance
                    .vmctx_ptr()
                    .add(offset)
                    .cast::<VMFuncRef>()
                    .write(func_ref)
            };
        }
        instance
    }

    /// Writes a word of the vmctx at `offset`, one that `VMOffsets` handed out.
    fn write(&mut self, offset: u32, value: usize) {
        assert!(offset as usize + 8 <= self.vmctx.byte_len());
        // SAFETY: every offset `VMOffsets` hands out is inside the vmctx and pointer-aligned.
        unsafe {
            self.vmctx_ptr()
                .add(offset as usize)
                .cast::<usize>()
                .write(value)
        };
    }

    pub fn vmctx_ptr(&self) -> *mut u8 {
        self.vmctx.as_ptr()
    }

    /// The funcref of function `index` (in the vmctx; stable for the instance's lifetime).
    ///
    /// # Panics
    /// If the module has no function `index`.
    pub fn func_ref(&self, index: u32) -> FuncRefPtr {
        assert!(
            (index as usize) < self.module.funcs.len(),
            "no function {index}"
        );
        let at = self
            .vmctx_ptr()
            .wrapping_add(self.offsets.func_ref(index) as usize)
            .cast::<VMFuncRef>();
        // SAFETY: inside the vmctx (the index is in range), written by `new` and never again;
        // the vmctx lives as long as the instance, which its store frees only when dropped.
        unsafe { FuncRefPtr::new(std::ptr::NonNull::new_unchecked(at)) }
    }

    /// The funcref of this instance whose address Wasm passed around as `raw` (a `ref.func`
    /// value in a table, a global or a result), if it is one of this instance's.
    pub fn func_ref_at(&self, raw: u64) -> Option<FuncRefPtr> {
        if self.module.funcs.is_empty() {
            return None;
        }
        let base = self.vmctx_ptr() as usize as u64;
        let first = u64::from(self.offsets.func_ref(0));
        let size = u64::from(weft_environ::vmoffsets::func_ref::SIZE);
        let offset = raw.checked_sub(base)?.checked_sub(first)?;
        let index = u32::try_from(offset / size).ok()?;
        (offset % size == 0 && (index as usize) < self.module.funcs.len())
            .then(|| self.func_ref(index))
    }

    /// Sets the store's index of each of the module's tags, before any code runs.
    pub fn set_tags(&mut self, tags: Vec<u32>) {
        debug_assert_eq!(tags.len(), self.module.tags.len());
        self.tags = tags;
    }

    /// The store's index of the module's tag `index`.
    pub fn tag(&self, index: u32) -> u32 {
        self.tags[index as usize]
    }

    /// The module this is an instance of.
    pub fn module(&self) -> &ModuleInfo {
        &self.module
    }

    pub fn set_elements(&mut self, elements: Vec<Option<Vec<usize>>>) {
        self.elements = elements;
    }

    pub fn drop_data(&mut self, index: u32) {
        self.dropped_data.insert(index);
    }

    fn memory(&mut self, index: u32) -> &mut Memory {
        // SAFETY: store-owned memory, valid for our lifetime; compiled code is paused in a
        // builtin, so nothing else accesses it.
        unsafe { &mut *self.memories[index as usize] }
    }

    fn table(&mut self, index: u32) -> &mut Table {
        // SAFETY: as in `memory`.
        unsafe { &mut *self.tables[index as usize] }
    }

    /// `memory.init`: copies from data segment `data` (empty once dropped).
    pub fn memory_init(
        &mut self,
        memory: u32,
        data: u32,
        dst: u64,
        src: u32,
        len: u32,
    ) -> Result<(), TrapKind> {
        let segment = if self.dropped_data.contains(data) {
            0..0
        } else {
            self.module.data[data as usize].range.clone()
        };
        let src = table::range(src.into(), len.into(), segment.len())
            .map_err(|()| TrapKind::MemoryOutOfBounds)?;
        let wasm = self.wasm.clone();
        let bytes = &wasm[segment.start + src.start..segment.start + src.end];
        let memory = self.memory(memory).data_mut();
        let dst = memory_range(dst, u64::from(len), memory.len())?;
        memory[dst].copy_from_slice(bytes);
        Ok(())
    }

    /// `table.init`: copies from element segment `elem` (empty once dropped).
    pub fn table_init(
        &mut self,
        table: u32,
        elem: u32,
        dst: u64,
        src: u32,
        len: u32,
    ) -> Result<(), TrapKind> {
        let oob = |()| TrapKind::TableOutOfBounds;
        let values = match &self.elements[elem as usize] {
            Some(values) => values.clone(),
            None => Vec::new(),
        };
        let src = table::range(src.into(), len.into(), values.len()).map_err(oob)?;
        self.table(table).init(dst, &values[src]).map_err(oob)
    }
}

/// `start..start + len` of a memory of `bound` bytes, or the out-of-bounds trap.
fn memory_range(start: u64, len: u64, bound: usize) -> Result<std::ops::Range<usize>, TrapKind> {
    match start.checked_add(len) {
        Some(end) if end <= bound as u64 => Ok(start as usize..end as usize),
        _ => Err(TrapKind::MemoryOutOfBounds),
    }
}

// ---------------------------------------------------------------------------------------------
// Builtins: called by compiled code with its vmctx. Each recovers the instance from the vmctx's
// back-pointer; compiled code is suspended inside the call, so the builtin has exclusive access.

/// The table every vmctx points to. Its type is generated from the builtin list in
/// `weft_environ::builtins`, so each function below must have exactly the signature the compiler
/// calls it with, or this does not compile.
static BUILTINS: BuiltinTable = BuiltinTable {
    memory_grow,
    memory_fill,
    memory_copy,
    memory_init,
    data_drop,
    table_grow,
    table_fill,
    table_copy,
    table_init,
    elem_drop,
    exn_new: super::exception::exn_new,
    exn_release: super::exception::exn_release,
    throw_ref: weft_arch::throw,
    find_handler: super::exception::find_handler,
    epoch_interrupt,
    out_of_fuel,
};

/// # Safety
/// `vmctx` must be the vmctx of a live instance whose compiled code is calling this builtin.
unsafe fn instance<'a>(vmctx: *mut u8) -> &'a mut Instance {
    // SAFETY: the caller guarantees `vmctx` is a live instance's; its back-pointer was written
    // at creation.
    unsafe {
        &mut *vmctx
            .add(VMOffsets::INSTANCE as usize)
            .cast::<*mut Instance>()
            .read()
    }
}

/// Turns a builtin's result into the status compiled code expects, recording the trap.
///
/// # Safety
/// `vmctx` must be the vmctx of a live instance whose compiled code is calling the builtin.
unsafe fn status(vmctx: *mut u8, result: Result<(), TrapKind>) -> u8 {
    match result {
        Ok(()) => 1,
        Err(code) => {
            // SAFETY: `vmctx` is a live instance's whose code calls this builtin (our
            // contract), so its store context is that of the calling code.
            unsafe { record(store_context(vmctx), Recorded::Trap(code)) };
            0
        }
    }
}

/// The store context of the instance whose vmctx is `vmctx`.
///
/// # Safety
/// `vmctx` must be the vmctx of a live instance whose compiled code is calling a builtin.
pub(super) unsafe fn store_context<'a>(vmctx: *mut u8) -> &'a VMStoreContext {
    // SAFETY: the caller's contract; a live instance's store context is live while its code
    // runs.
    unsafe {
        &*vmctx
            .add(VMOffsets::STORE_CONTEXT as usize)
            .cast::<*const VMStoreContext>()
            .read()
    }
}

/// Reports a check's outcome to compiled code (in the store context: these builtins preserve
/// every register and return nothing), recording what stopped it.
///
/// # Safety
/// `store` must be the context of the store whose compiled code is calling the builtin.
unsafe fn report_check(store: &VMStoreContext, result: Result<(), Recorded>) {
    let go_on = match result {
        Ok(()) => true,
        Err(what) => {
            // SAFETY: the caller's contract.
            unsafe { record(store, what) };
            false
        }
    };
    // SAFETY: the caller's contract: we run as a builtin of this store's running Wasm.
    unsafe { store.write_check_status(go_on) };
}

weft_arch::preserve_all_thunk!(
    /// What compiled code calls for `epoch_interrupt` (see `weft_arch::preserve_all_thunk`).
    epoch_interrupt => epoch_interrupt_c
);
weft_arch::preserve_all_thunk!(
    /// What compiled code calls for `out_of_fuel`.
    out_of_fuel => out_of_fuel_c
);

unsafe extern "C" fn epoch_interrupt_c(vmctx: *mut u8) {
    // SAFETY: called (through its thunk) by compiled code with its own vmctx.
    let store = unsafe { store_context(vmctx) };
    let result = super::interrupt::epoch_reached(store);
    // SAFETY: the context of the store whose code called us.
    unsafe { report_check(store, result) }
}

unsafe extern "C" fn out_of_fuel_c(vmctx: *mut u8) {
    // SAFETY: called (through its thunk) by compiled code with its own vmctx.
    let store = unsafe { store_context(vmctx) };
    let result = super::interrupt::fuel_exhausted(store);
    // SAFETY: the context of the store whose code called us.
    unsafe { report_check(store, result) }
}

unsafe extern "C" fn memory_grow(vmctx: *mut u8, memory: u32, delta: u64) -> u64 {
    // SAFETY: called by compiled code with its own vmctx.
    let instance = unsafe { instance(vmctx) };
    instance.memory(memory).grow(delta).unwrap_or(u64::MAX)
}

unsafe extern "C" fn memory_fill(vmctx: *mut u8, memory: u32, dst: u64, byte: u32, len: u64) -> u8 {
    // SAFETY: called by compiled code with its own vmctx.
    let instance = unsafe { instance(vmctx) };
    let data = instance.memory(memory).data_mut();
    let result = memory_range(dst, len, data.len()).map(|r| data[r].fill(byte as u8));
    // SAFETY: called by compiled code with its own vmctx.
    unsafe { status(vmctx, result) }
}

unsafe extern "C" fn memory_copy(
    vmctx: *mut u8,
    dst_memory: u32,
    src_memory: u32,
    dst: u64,
    src: u64,
    len: u64,
) -> u8 {
    // SAFETY: called by compiled code with its own vmctx.
    let instance = unsafe { instance(vmctx) };
    let result = (|| {
        let src_len = instance.memory(src_memory).byte_len();
        let dst_len = instance.memory(dst_memory).byte_len();
        let src = memory_range(src, len, src_len)?;
        let dst = memory_range(dst, len, dst_len)?;
        if dst_memory == src_memory {
            instance
                .memory(dst_memory)
                .data_mut()
                .copy_within(src, dst.start);
        } else {
            let src_ptr = instance.memory(src_memory).data()[src].as_ptr();
            let dst_slice = &mut instance.memory(dst_memory).data_mut()[dst];
            // SAFETY: two distinct memories never overlap; `src_ptr` is valid for `len` bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(src_ptr, dst_slice.as_mut_ptr(), dst_slice.len())
            };
        }
        Ok(())
    })();
    // SAFETY: called by compiled code with its own vmctx.
    unsafe { status(vmctx, result) }
}

unsafe extern "C" fn memory_init(
    vmctx: *mut u8,
    memory: u32,
    data: u32,
    dst: u64,
    src: u32,
    len: u32,
) -> u8 {
    // SAFETY: called by compiled code with its own vmctx.
    let instance = unsafe { instance(vmctx) };
    let result = instance.memory_init(memory, data, dst, src, len);
    // SAFETY: called by compiled code with its own vmctx.
    unsafe { status(vmctx, result) }
}

unsafe extern "C" fn data_drop(vmctx: *mut u8, data: u32) {
    // SAFETY: called by compiled code with its own vmctx.
    unsafe { instance(vmctx) }.drop_data(data);
}

unsafe extern "C" fn table_grow(vmctx: *mut u8, table: u32, delta: u64, init: usize) -> u64 {
    // SAFETY: called by compiled code with its own vmctx.
    let instance = unsafe { instance(vmctx) };
    instance.table(table).grow(delta, init).unwrap_or(u64::MAX)
}

unsafe extern "C" fn table_fill(
    vmctx: *mut u8,
    table: u32,
    dst: u64,
    value: usize,
    len: u64,
) -> u8 {
    // SAFETY: called by compiled code with its own vmctx.
    let instance = unsafe { instance(vmctx) };
    let result = instance
        .table(table)
        .fill(dst, value, len)
        .map_err(|()| TrapKind::TableOutOfBounds);
    // SAFETY: called by compiled code with its own vmctx.
    unsafe { status(vmctx, result) }
}

unsafe extern "C" fn table_copy(
    vmctx: *mut u8,
    dst_table: u32,
    src_table: u32,
    dst: u64,
    src: u64,
    len: u64,
) -> u8 {
    // SAFETY: called by compiled code with its own vmctx.
    let instance = unsafe { instance(vmctx) };
    let oob = |()| TrapKind::TableOutOfBounds;
    let result = if dst_table == src_table {
        instance
            .table(dst_table)
            .copy_within(dst, src, len)
            .map_err(oob)
    } else {
        let src_elements = instance.table(src_table).elements();
        table::range(src, len, src_elements.len())
            .map(|r| src_elements[r].to_vec())
            .map_err(oob)
            .and_then(|values| instance.table(dst_table).init(dst, &values).map_err(oob))
    };
    // SAFETY: called by compiled code with its own vmctx.
    unsafe { status(vmctx, result) }
}

unsafe extern "C" fn table_init(
    vmctx: *mut u8,
    table: u32,
    elem: u32,
    dst: u64,
    src: u32,
    len: u32,
) -> u8 {
    // SAFETY: called by compiled code with its own vmctx.
    let instance = unsafe { instance(vmctx) };
    let result = instance.table_init(table, elem, dst, src, len);
    // SAFETY: called by compiled code with its own vmctx.
    unsafe { status(vmctx, result) }
}

unsafe extern "C" fn elem_drop(vmctx: *mut u8, elem: u32) {
    // SAFETY: called by compiled code with its own vmctx.
    let instance = unsafe { instance(vmctx) };
    instance.elements[elem as usize] = None;
}

/// The instance whose vmctx is `vmctx`.
///
/// # Safety
/// `vmctx` must be the vmctx of a live instance.
pub unsafe fn instance_of_vmctx<'a>(vmctx: *mut u8) -> &'a Instance {
    // SAFETY: forwarded.
    unsafe { instance(vmctx) }
}
