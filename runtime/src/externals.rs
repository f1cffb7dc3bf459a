//! Memories, tables and globals as the host sees them, and `Extern`, any importable item.

use crate::error::{Error, Result};
use crate::func::Func;
use crate::store::{AsContext, AsContextMut, GlobalData, StoreId, TableData};
use crate::types::{ExternType, GlobalType, MemoryType, Mutability, TableType};
use crate::values::Val;
use crate::vm::{self, VMGlobal};

/// Anything an instance can import or export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extern {
    /// A function.
    Func(Func),
    /// A linear memory.
    Memory(Memory),
    /// A table.
    Table(Table),
    /// A global.
    Global(Global),
    /// An exception tag.
    Tag(crate::Tag),
}

impl Extern {
    /// The function, if this is one.
    pub fn into_func(self) -> Option<Func> {
        if let Extern::Func(f) = self {
            Some(f)
        } else {
            None
        }
    }
    /// The memory, if this is one.
    pub fn into_memory(self) -> Option<Memory> {
        if let Extern::Memory(m) = self {
            Some(m)
        } else {
            None
        }
    }
    /// The table, if this is one.
    pub fn into_table(self) -> Option<Table> {
        if let Extern::Table(t) = self {
            Some(t)
        } else {
            None
        }
    }
    /// The global, if this is one.
    pub fn into_global(self) -> Option<Global> {
        if let Extern::Global(g) = self {
            Some(g)
        } else {
            None
        }
    }

    /// The tag, if this is one.
    pub fn into_tag(self) -> Option<crate::Tag> {
        if let Extern::Tag(t) = self {
            Some(t)
        } else {
            None
        }
    }

    /// The item's type.
    ///
    /// # Panics
    /// If `store` is not the item's store.
    pub fn ty(&self, store: impl AsContext) -> ExternType {
        match self {
            Extern::Func(f) => ExternType::Func(f.ty(store)),
            Extern::Memory(m) => ExternType::Memory(m.ty(store)),
            Extern::Table(t) => ExternType::Table(t.ty(store)),
            Extern::Global(g) => ExternType::Global(g.ty(store)),
            Extern::Tag(t) => ExternType::Tag(t.ty(store)),
        }
    }
}

impl From<Func> for Extern {
    fn from(f: Func) -> Self {
        Extern::Func(f)
    }
}
impl From<Memory> for Extern {
    fn from(m: Memory) -> Self {
        Extern::Memory(m)
    }
}
impl From<Table> for Extern {
    fn from(t: Table) -> Self {
        Extern::Table(t)
    }
}
impl From<crate::Tag> for Extern {
    fn from(t: crate::Tag) -> Extern {
        Extern::Tag(t)
    }
}
impl From<Global> for Extern {
    fn from(g: Global) -> Self {
        Extern::Global(g)
    }
}

/// A linear memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Memory {
    pub(crate) store: StoreId,
    pub(crate) index: usize,
}

impl Memory {
    /// A new memory of type `ty` in `store`.
    ///
    /// # Errors
    /// [`Error::ResourceLimit`] if the memory cannot be allocated.
    pub fn new(mut store: impl AsContextMut, ty: MemoryType) -> Result<Memory> {
        let store = &mut store.as_context_mut().opaque;
        let memory = store
            .engine
            .allocator()
            .memory(ty.minimum, ty.maximum, ty.is_64)?;
        store.memories.push(Box::new(memory));
        Ok(Memory {
            store: store.id,
            index: store.memories.len() - 1,
        })
    }

    fn vm<'a>(&self, store: &'a crate::store::StoreOpaque) -> &'a vm::memory::Memory {
        store.check(self.store);
        &store.memories[self.index]
    }

    /// The memory's type: its current size as the minimum, its maximum and its index type.
    ///
    /// # Panics
    /// If `store` is not the memory's store.
    pub fn ty(&self, store: impl AsContext) -> MemoryType {
        let memory = self.vm(&store.as_context().opaque);
        let limit = vm::memory::max_pages_for(memory.is_64());
        MemoryType {
            minimum: memory.pages(),
            maximum: Some(memory.max_pages()).filter(|&m| m != limit),
            is_64: memory.is_64(),
        }
    }

    /// Whether this is a 64-bit memory (memory64), addressed with i64.
    ///
    /// # Panics
    /// If `store` is not the memory's store.
    pub fn is_64(&self, store: impl AsContext) -> bool {
        self.vm(&store.as_context().opaque).is_64()
    }

    /// Size in 64 KiB pages.
    pub fn size(&self, store: impl AsContext) -> u64 {
        self.vm(&store.as_context().opaque).pages()
    }

    /// Size in bytes.
    pub fn data_size(&self, store: impl AsContext) -> usize {
        self.vm(&store.as_context().opaque).byte_len()
    }

    /// Grows by `delta` pages and returns the old size.
    ///
    /// # Errors
    /// [`Error::ResourceLimit`] if the memory cannot grow that far.
    pub fn grow(&self, mut store: impl AsContextMut, delta: u64) -> Result<u64> {
        let store = &mut store.as_context_mut().opaque;
        store.check(self.store);
        store.memories[self.index]
            .grow(delta)
            .ok_or_else(|| Error::ResourceLimit(format!("memory cannot grow by {delta} pages")))
    }

    /// The memory's bytes.
    ///
    /// # Panics
    /// If `store` is not the memory's store.
    pub fn data<'a, T: 'static>(&self, store: &'a impl AsContext<Data = T>) -> &'a [u8] {
        self.vm(&store.as_context().opaque).data()
    }

    /// The memory's bytes, mutably.
    ///
    /// # Panics
    /// If `store` is not the memory's store.
    pub fn data_mut<'a, T: 'static>(
        &self,
        store: &'a mut impl AsContextMut<Data = T>,
    ) -> &'a mut [u8] {
        let store = &mut store.as_context_mut().opaque;
        store.check(self.store);
        store.memories[self.index].data_mut()
    }

    /// The memory's bytes and the store's data at once, both mutable (as wasmtime's
    /// `Memory::data_and_store_mut`): for host code that works on guest memory with its own
    /// state, such as a WASI implementation.
    ///
    /// # Panics
    /// If `store` is not the memory's store.
    pub fn data_and_store_mut<'a, T: 'static>(
        &self,
        store: &'a mut impl AsContextMut<Data = T>,
    ) -> (&'a mut [u8], &'a mut T) {
        let store = store.as_context_mut();
        store.opaque.check(self.store);
        (
            store.opaque.memories[self.index].data_mut(),
            &mut store.data,
        )
    }

    /// Copies `buffer.len()` bytes at `offset` into `buffer`.
    ///
    /// # Errors
    /// [`Error::Trap`] with `MemoryOutOfBounds` if the range is out of bounds.
    pub fn read(&self, store: impl AsContext, offset: usize, buffer: &mut [u8]) -> Result<()> {
        let data = self.vm(&store.as_context().opaque).data();
        let src = offset
            .checked_add(buffer.len())
            .and_then(|end| data.get(offset..end))
            .ok_or_else(|| Error::trap_without_backtrace(crate::Trap::MemoryOutOfBounds))?;
        buffer.copy_from_slice(src);
        Ok(())
    }

    /// Copies `buffer` into memory at `offset`.
    ///
    /// # Errors
    /// [`Error::Trap`] with `MemoryOutOfBounds` if the range is out of bounds.
    pub fn write(&self, mut store: impl AsContextMut, offset: usize, buffer: &[u8]) -> Result<()> {
        let store = &mut store.as_context_mut().opaque;
        store.check(self.store);
        let data = store.memories[self.index].data_mut();
        let dst = offset
            .checked_add(buffer.len())
            .and_then(|end| data.get_mut(offset..end))
            .ok_or_else(|| Error::trap_without_backtrace(crate::Trap::MemoryOutOfBounds))?;
        dst.copy_from_slice(buffer);
        Ok(())
    }
}

/// A table of references.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Table {
    pub(crate) store: StoreId,
    pub(crate) index: usize,
}

impl Table {
    /// A new table of type `ty`, every element `init`.
    ///
    /// # Errors
    /// [`Error::TypeMismatch`] if `init` is not of the element type; [`Error::ResourceLimit`]
    /// if the table is too large.
    pub fn new(mut store: impl AsContextMut, ty: TableType, init: Val) -> Result<Table> {
        let store = &mut store.as_context_mut().opaque;
        if ty.element.as_ref().is_none() {
            return Err(Error::TypeMismatch(format!(
                "a table holds references, not {}",
                ty.element
            )));
        }
        if !init.matches_ty_in(store, &ty.element) {
            return Err(Error::TypeMismatch(format!(
                "table of {} initialized with {}",
                ty.element,
                init.ty()
            )));
        }
        let init = init.to_raw(store)?.get_u64() as usize;
        let table = store
            .engine
            .allocator()
            .table(ty.minimum, ty.maximum, init)?;
        store.tables.push(TableData {
            vm: Box::new(table),
            ty,
        });
        Ok(Table {
            store: store.id,
            index: store.tables.len() - 1,
        })
    }

    /// The table's type: its current size as the minimum, and its maximum.
    ///
    /// # Panics
    /// If `store` is not the table's store.
    pub fn ty(&self, store: impl AsContext) -> TableType {
        let store = &store.as_context().opaque;
        store.check(self.store);
        let data = &store.tables[self.index];
        TableType {
            minimum: data.vm.size(),
            ..data.ty
        }
    }

    /// The table's current size, in elements.
    ///
    /// # Panics
    /// If `store` is not the table's store.
    pub fn size(&self, store: impl AsContext) -> u64 {
        let store = &store.as_context().opaque;
        store.check(self.store);
        store.tables[self.index].vm.size()
    }

    /// Element `index`, or `None` if out of bounds.
    pub fn get(&self, mut store: impl AsContextMut, index: u64) -> Option<Val> {
        let store = &mut store.as_context_mut().opaque;
        store.check(self.store);
        let data = &store.tables[self.index];
        let raw = data.vm.get(index)?;
        let ty = data.ty.element;
        Some(Val::from_raw(vm::ValRaw::from_u64(raw as u64), ty, store))
    }

    /// Sets element `index`.
    ///
    /// # Errors
    /// [`Error::TypeMismatch`] for a value of the wrong type; a `TableOutOfBounds` trap.
    pub fn set(&self, mut store: impl AsContextMut, index: u64, value: Val) -> Result<()> {
        let store = &mut store.as_context_mut().opaque;
        store.check(self.store);
        let raw = self.raw_element(store, value)?;
        store.tables[self.index]
            .vm
            .set(index, raw)
            .map_err(|()| Error::trap_without_backtrace(crate::Trap::TableOutOfBounds))
    }

    /// Grows by `delta` elements of `init`; returns the old size.
    ///
    /// # Errors
    /// [`Error::ResourceLimit`] if the table cannot grow that far.
    pub fn grow(&self, mut store: impl AsContextMut, delta: u64, init: Val) -> Result<u64> {
        let store = &mut store.as_context_mut().opaque;
        store.check(self.store);
        let raw = self.raw_element(store, init)?;
        store.tables[self.index]
            .vm
            .grow(delta, raw)
            .ok_or_else(|| Error::ResourceLimit(format!("table cannot grow by {delta}")))
    }

    fn raw_element(&self, store: &mut crate::store::StoreOpaque, value: Val) -> Result<usize> {
        let ty = store.tables[self.index].ty.element;
        if !value.matches_ty_in(store, &ty) {
            return Err(Error::TypeMismatch(format!(
                "table of {ty} given a {}",
                value.ty()
            )));
        }
        Ok(value.to_raw(store)?.get_u64() as usize)
    }
}

/// A global variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Global {
    pub(crate) store: StoreId,
    pub(crate) index: usize,
}

impl Global {
    /// A new global of type `ty` holding `value`.
    ///
    /// # Errors
    /// [`Error::TypeMismatch`] if `value` is not of the content type.
    pub fn new(mut store: impl AsContextMut, ty: GlobalType, value: Val) -> Result<Global> {
        let store = &mut store.as_context_mut().opaque;
        if !value.matches_ty_in(store, &ty.content) {
            return Err(Error::TypeMismatch(format!(
                "global of {} initialized with {}",
                ty.content,
                value.ty()
            )));
        }
        let cell = Box::new(VMGlobal::default());
        cell.set(value.to_raw(store)?.get_u128());
        store.globals.push(GlobalData { cell, ty });
        Ok(Global {
            store: store.id,
            index: store.globals.len() - 1,
        })
    }

    /// The global's type.
    ///
    /// # Panics
    /// If `store` is not the global's store.
    pub fn ty(&self, store: impl AsContext) -> GlobalType {
        let store = &store.as_context().opaque;
        store.check(self.store);
        store.globals[self.index].ty
    }

    /// The global's current value.
    ///
    /// # Panics
    /// If `store` is not the global's store.
    pub fn get(&self, mut store: impl AsContextMut) -> Val {
        let store = &mut store.as_context_mut().opaque;
        store.check(self.store);
        let data = &store.globals[self.index];
        let (raw, ty) = (data.cell.get(), data.ty.content);
        Val::from_raw(vm::ValRaw::from_u128(raw), ty, store)
    }

    /// # Errors
    /// [`Error::TypeMismatch`] if the global is immutable or `value` has the wrong type.
    pub fn set(&self, mut store: impl AsContextMut, value: Val) -> Result<()> {
        let store = &mut store.as_context_mut().opaque;
        store.check(self.store);
        let ty = store.globals[self.index].ty;
        if ty.mutability != Mutability::Var {
            return Err(Error::TypeMismatch("global is immutable".into()));
        }
        if !value.matches_ty_in(store, &ty.content) {
            return Err(Error::TypeMismatch(format!(
                "global of {} given a {}",
                ty.content,
                value.ty()
            )));
        }
        let raw = value.to_raw(store)?.get_u128();
        store.globals[self.index].cell.set(raw);
        Ok(())
    }
}
