//! An instance's `VMContext` and the builtins compiled code calls with it.

use std::sync::Arc;

use weft_environ::vmoffsets::VMOffsets;
use weft_environ::{BuiltinTable, ModuleInfo, TrapKind};

use super::memory::Memory;
use super::table::{self, Table};
use super::traphandlers::{Recorded, record};
use super::vmstructs::{VMFuncRef, VMGlobal, VMStoreContext};

/// The runtime side of an instance: its vmctx and what builtins need to act on it.
///
/// Lives in a `Box` owned by the store, so the back-pointer in the vmctx stays valid.
pub struct Instance {
    offsets: VMOffsets,
    /// Backing storage of the vmctx (16-byte aligned).
    vmctx: Box<[u128]>,
    memories: Vec<*mut Memory>,
    tables: Vec<*mut Table>,
    /// Element segments `table.init` may still use; `None` once dropped (active and declared
    /// segments are dropped at instantiation).
    elements: Vec<Option<Vec<usize>>>,
    /// The module binary, for data segments.
    wasm: Arc<[u8]>,
    module: Arc<ModuleInfo>,
    dropped_data: Vec<bool>,
    /// The instance's index in its store.
    pub store_index: usize,
}

// SAFETY: the raw pointers point to store-owned objects that live as long as the store, and
// the instance is used only through the store, which moves between threads as a whole.
unsafe impl Send for Instance {}
// SAFETY: as above.
unsafe impl Sync for Instance {}

/// What an instance refers to, in index-space order (imports first).
pub struct InstanceParts {
    pub memories: Vec<*mut Memory>,
    pub tables: Vec<*mut Table>,
    pub globals: Vec<*const VMGlobal>,
    /// Funcrefs of the imported functions.
    pub imported_funcs: Vec<VMFuncRef>,
    /// Code of each defined function.
    pub defined_code: Vec<*const u8>,
    /// The engine's id of each of the module's types, by type index.
    pub type_ids: Vec<u32>,
}

impl Instance {
    /// Builds the vmctx for an instance of `module`.
    ///
    /// The API guarantees what compiled code will rely on: the pointers in `parts` and `store`
    /// point to objects owned by the store that will own this instance (so they live as long
    /// as it does), and `defined_code` is the module's compiled functions.
    pub fn new(
        module: Arc<ModuleInfo>,
        wasm: Arc<[u8]>,
        store: *const VMStoreContext,
        parts: InstanceParts,
        store_index: usize,
    ) -> Box<Instance> {
        // The vmctx has room for exactly one id per module type.
        assert_eq!(parts.type_ids.len(), module.types.len());
        let offsets = VMOffsets::new(&module);
        let words = (offsets.size() as usize).div_ceil(16);
        let mut instance = Box::new(Instance {
            vmctx: vec![0u128; words.max(1)].into_boxed_slice(),
            offsets,
            memories: parts.memories,
            tables: parts.tables,
            elements: Vec::new(),
            dropped_data: vec![false; module.data.len()],
            wasm,
            module,
            store_index,
        });
        let self_ptr: *mut Instance = &mut *instance;
        instance.write(VMOffsets::STORE_CONTEXT, store as usize);
        instance.write(VMOffsets::BUILTINS, &raw const BUILTINS as usize);
        instance.write(VMOffsets::INSTANCE, self_ptr as usize);
        for i in 0..instance.memories.len() {
            // SAFETY: the caller guarantees the memory pointers are valid.
            let definition = unsafe { (*instance.memories[i]).definition() };
            instance.write(instance.offsets.memory(i as u32), definition as usize);
        }
        for i in 0..instance.tables.len() {
            // SAFETY: the caller guarantees the table pointers are valid.
            let definition = unsafe { (*instance.tables[i]).definition() };
            instance.write(instance.offsets.table(i as u32), definition as usize);
        }
        for (i, global) in parts.globals.iter().enumerate() {
            instance.write(instance.offsets.global(i as u32), *global as usize);
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
        let imported = parts.imported_funcs.len();
        for i in 0..instance.module.funcs.len() {
            let func_ref = if i < imported {
                parts.imported_funcs[i]
            } else {
                VMFuncRef {
                    wasm_call: parts.defined_code[i - imported],
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

    fn write(&mut self, offset: u32, value: usize) {
        // SAFETY: every offset `VMOffsets` hands out is inside the vmctx and pointer-aligned.
        unsafe {
            self.vmctx_ptr()
                .add(offset as usize)
                .cast::<usize>()
                .write(value)
        };
    }

    pub fn vmctx_ptr(&self) -> *mut u8 {
        self.vmctx.as_ptr().cast_mut().cast()
    }

    /// The funcref of function `index` (a pointer into the vmctx; stable for the instance's
    /// lifetime).
    pub fn func_ref(&self, index: u32) -> *const VMFuncRef {
        self.vmctx_ptr()
            .wrapping_add(self.offsets.func_ref(index) as usize)
            .cast()
    }

    pub fn set_elements(&mut self, elements: Vec<Option<Vec<usize>>>) {
        self.elements = elements;
    }

    pub fn drop_data(&mut self, index: u32) {
        self.dropped_data[index as usize] = true;
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
        let segment = if self.dropped_data[data as usize] {
            0..0
        } else {
            self.module.data[data as usize].range.clone()
        };
        let src =
            table::range(src, len, segment.len()).map_err(|()| TrapKind::MemoryOutOfBounds)?;
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
        dst: u32,
        src: u32,
        len: u32,
    ) -> Result<(), TrapKind> {
        let oob = |()| TrapKind::TableOutOfBounds;
        let values = match &self.elements[elem as usize] {
            Some(values) => values.clone(),
            None => Vec::new(),
        };
        let src = table::range(src, len, values.len()).map_err(oob)?;
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
fn status(vmctx: *mut u8, result: Result<(), TrapKind>) -> u8 {
    match result {
        Ok(()) => 1,
        Err(code) => {
            // SAFETY: `vmctx` is a live instance's (builtin contract); its store context is
            // live while its code runs.
            unsafe {
                let store = vmctx
                    .add(VMOffsets::STORE_CONTEXT as usize)
                    .cast::<*const VMStoreContext>()
                    .read();
                record(store, Recorded::Trap(code));
            }
            0
        }
    }
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
    status(vmctx, result)
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
    status(vmctx, result)
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
    status(vmctx, result)
}

unsafe extern "C" fn data_drop(vmctx: *mut u8, data: u32) {
    // SAFETY: called by compiled code with its own vmctx.
    unsafe { instance(vmctx) }.drop_data(data);
}

unsafe extern "C" fn table_grow(vmctx: *mut u8, table: u32, delta: u32, init: usize) -> u32 {
    // SAFETY: called by compiled code with its own vmctx.
    let instance = unsafe { instance(vmctx) };
    instance.table(table).grow(delta, init).unwrap_or(u32::MAX)
}

unsafe extern "C" fn table_fill(
    vmctx: *mut u8,
    table: u32,
    dst: u32,
    value: usize,
    len: u32,
) -> u8 {
    // SAFETY: called by compiled code with its own vmctx.
    let instance = unsafe { instance(vmctx) };
    let result = instance
        .table(table)
        .fill(dst, value, len)
        .map_err(|()| TrapKind::TableOutOfBounds);
    status(vmctx, result)
}

unsafe extern "C" fn table_copy(
    vmctx: *mut u8,
    dst_table: u32,
    src_table: u32,
    dst: u32,
    src: u32,
    len: u32,
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
    status(vmctx, result)
}

unsafe extern "C" fn table_init(
    vmctx: *mut u8,
    table: u32,
    elem: u32,
    dst: u32,
    src: u32,
    len: u32,
) -> u8 {
    // SAFETY: called by compiled code with its own vmctx.
    let instance = unsafe { instance(vmctx) };
    let result = instance.table_init(table, elem, dst, src, len);
    status(vmctx, result)
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
