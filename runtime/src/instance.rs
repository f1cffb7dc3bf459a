//! `Instance`: a module instantiated in a store, and instantiation itself.

use weft_environ::module_info::{ConstInit, DataMode, ElementMode, EntityIndex};

use crate::error::{Error, Result, Trap};
use crate::externals::{Extern, Global, Memory, Table};
use crate::func::Func;
use crate::module::{Module, global_type, table_type};
use crate::store::{AsContextMut, GlobalData, InstanceData, StoreContext, StoreId, TableData};
use crate::typed::{TypedFunc, WasmParams, WasmResults};
use crate::types::{ExternType, Mutability, limits_match};
use crate::vm;

/// An instantiated module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Instance {
    store: StoreId,
    index: usize,
}

impl Instance {
    pub(crate) fn from_index(store: StoreId, index: usize) -> Instance {
        Instance { store, index }
    }

    /// The store it belongs to, and its index there.
    pub(crate) fn parts(&self) -> (StoreId, usize) {
        (self.store, self.index)
    }

    /// Instantiates `module` with `imports` given in the order of the module's imports, then
    /// runs its start function.
    ///
    /// # Errors
    /// [`Error::IncompatibleImport`] for imports of the wrong kind or type; a trap raised while
    /// initializing tables and memories or by the start function.
    pub fn new<T: 'static>(
        mut store: impl AsContextMut<Data = T>,
        module: &Module,
        imports: &[Extern],
    ) -> Result<Instance> {
        let store = store.as_context_mut();
        let instance = instantiate_without_start(store, module, imports)?;
        if let Some(start) = module.inner.info.start {
            let func = instance.func_by_index(store, start);
            func.call(&mut *store, &[], &mut [])?;
        }
        Ok(instance)
    }

    /// Instantiates without running the start function; returns that function, if any.
    pub(crate) fn new_without_start<T: 'static>(
        store: &mut StoreContext<T>,
        module: &Module,
        imports: &[Extern],
    ) -> Result<(Instance, Option<Func>)> {
        let instance = instantiate_without_start(store, module, imports)?;
        let start = module
            .inner
            .info
            .start
            .map(|start| instance.func_by_index(store, start));
        Ok((instance, start))
    }

    pub(crate) fn func_by_index<T: 'static>(
        &self,
        store: &mut StoreContext<T>,
        index: u32,
    ) -> Func {
        let opaque = &mut store.opaque;
        let func_ref = opaque.instances[self.index].vm.func_ref(index);
        Func::from_index(opaque.id, opaque.func_for_ref(func_ref))
    }

    /// The export named `name`.
    pub fn get_export(&self, mut store: impl AsContextMut, name: &str) -> Option<Extern> {
        let store = store.as_context_mut();
        store.opaque.check(self.store);
        let position = store.opaque.instances[self.index].export_position(name)?;
        Some(self.export_at(store, position))
    }

    /// The export at `position` of the module's exports.
    fn export_at<T: 'static>(&self, store: &mut StoreContext<T>, position: usize) -> Extern {
        let data = &store.opaque.instances[self.index];
        // Only a module with a non-function export keeps a slot per export.
        if let Some(&Some(export)) = data.exports.get(position) {
            return export;
        }
        match data.module.inner.info.exports[position].1 {
            EntityIndex::Func(f) => Extern::Func(self.func_by_index(store, f)),
            // Tables, memories, globals and tags are resolved at instantiation.
            _ => unreachable!("non-function exports are recorded at instantiation"),
        }
    }

    /// All exports, in the module's order.
    pub fn exports(&self, mut store: impl AsContextMut) -> Vec<(String, Extern)> {
        let store = store.as_context_mut();
        store.opaque.check(self.store);
        let module = store.opaque.instances[self.index].module.clone();
        module
            .inner
            .info
            .exports
            .iter()
            .enumerate()
            .map(|(position, (name, _))| (name.clone(), self.export_at(store, position)))
            .collect()
    }

    /// The exported function `name`, if there is one.
    pub fn get_func(&self, store: impl AsContextMut, name: &str) -> Option<Func> {
        self.get_export(store, name)?.into_func()
    }

    /// The exported function `name` with a static type.
    ///
    /// # Errors
    /// [`Error::Message`] if there is no such function; [`Error::TypeMismatch`] if its type
    /// differs.
    pub fn get_typed_func<Params: WasmParams, Results: WasmResults>(
        &self,
        mut store: impl AsContextMut,
        name: &str,
    ) -> Result<TypedFunc<Params, Results>> {
        let func = self
            .get_func(&mut store, name)
            .ok_or_else(|| Error::msg(format!("no exported function named `{name}`")))?;
        func.typed(&store)
    }

    /// The exported memory `name`, if there is one.
    pub fn get_memory(&self, store: impl AsContextMut, name: &str) -> Option<Memory> {
        self.get_export(store, name)?.into_memory()
    }

    /// The exported table `name`, if there is one.
    pub fn get_table(&self, store: impl AsContextMut, name: &str) -> Option<Table> {
        self.get_export(store, name)?.into_table()
    }

    /// The exported global `name`, if there is one.
    pub fn get_global(&self, store: impl AsContextMut, name: &str) -> Option<Global> {
        self.get_export(store, name)?.into_global()
    }

    /// The exported tag `name`, if there is one.
    pub fn get_tag(&self, store: impl AsContextMut, name: &str) -> Option<crate::Tag> {
        self.get_export(store, name)?.into_tag()
    }
}

/// Checks `actual` against what the module declares for import `i`.
fn check_import<T: 'static>(
    store: &StoreContext<T>,
    module: &Module,
    i: usize,
    actual: &Extern,
) -> Result<()> {
    let import = &module.inner.info.imports[i];
    let incompatible = |reason: String| Error::IncompatibleImport {
        module: import.module.clone(),
        name: import.name.clone(),
        reason,
    };
    // The common case first, without building either type: a function of the expected
    // canonical type.
    if let (EntityIndex::Func(f), Extern::Func(func)) = (import.index, actual) {
        store.opaque.check(func.store);
        let expected_id = module.inner.type_ids[module.inner.info.funcs[f as usize] as usize];
        if store.opaque.funcs[func.index].type_id == expected_id {
            return Ok(());
        }
    }
    let expected = module.entity_type(import.index);
    let actual_ty = actual.ty(store);
    match (&expected, &actual_ty) {
        (ExternType::Func(e), ExternType::Func(a)) => {
            // Function types are final: the types must be the same canonical type.
            let EntityIndex::Func(f) = import.index else {
                unreachable!("a function import's index is a function's");
            };
            let expected_id = module.inner.type_ids[module.inner.info.funcs[f as usize] as usize];
            let actual_id = match actual {
                Extern::Func(func) => store.opaque.funcs[func.index].type_id,
                _ => unreachable!("matched as a function"),
            };
            if expected_id != actual_id {
                return Err(incompatible(format!("expected {e}, found {a}")));
            }
        }
        (ExternType::Table(e), ExternType::Table(a)) => {
            if e.element != a.element
                || e.is_64 != a.is_64
                || !limits_match(a.minimum, a.maximum, e.minimum, e.maximum)
            {
                return Err(incompatible(format!("expected {e:?}, found {a:?}")));
            }
        }
        (ExternType::Memory(e), ExternType::Memory(a)) => {
            if e.is_64 != a.is_64 || !limits_match(a.minimum, a.maximum, e.minimum, e.maximum) {
                return Err(incompatible(format!("expected {e:?}, found {a:?}")));
            }
        }
        (ExternType::Global(e), ExternType::Global(a)) => {
            // A mutable global is read and written: its type must be exactly the declared one.
            // An immutable one is only read: a subtype will do.
            let content_ok = match e.mutability {
                Mutability::Var => e.content == a.content,
                Mutability::Const => a.content.matches(&e.content),
            };
            if e.mutability != a.mutability || !content_ok {
                return Err(incompatible(format!("expected {e:?}, found {a:?}")));
            }
        }
        (ExternType::Tag(e), ExternType::Tag(a)) => {
            // Tags are matched by their exact type: the same canonical type.
            let EntityIndex::Tag(t) = import.index else {
                unreachable!("a tag import's index is a tag's");
            };
            let expected_id = module.inner.type_ids[module.inner.info.tags[t as usize] as usize];
            let actual_id = match actual {
                Extern::Tag(tag) => {
                    store.opaque.check(tag.store);
                    store.opaque.tags[tag.index as usize].1
                }
                _ => unreachable!("matched as a tag"),
            };
            if expected_id != actual_id {
                return Err(incompatible(format!("expected {e}, found {a}")));
            }
        }
        (e, a) => {
            return Err(incompatible(format!(
                "expected {}, found {}",
                kind(e),
                kind(a)
            )));
        }
    }
    Ok(())
}

fn kind(ty: &ExternType) -> &'static str {
    match ty {
        ExternType::Func(_) => "a function",
        ExternType::Table(_) => "a table",
        ExternType::Memory(_) => "a memory",
        ExternType::Global(_) => "a global",
        ExternType::Tag(_) => "a tag",
    }
}

fn instantiate_without_start<T: 'static>(
    store: &mut StoreContext<T>,
    module: &Module,
    imports: &[Extern],
) -> Result<Instance> {
    let info = module.inner.info.clone();
    if !crate::Engine::same(store.engine(), module.engine()) {
        return Err(Error::msg("module and store belong to different engines"));
    }
    if imports.len() != info.imports.len() {
        return Err(Error::msg(format!(
            "module has {} imports, {} given",
            info.imports.len(),
            imports.len()
        )));
    }
    for (i, import) in imports.iter().enumerate() {
        check_import(store, module, i, import)?;
    }
    let opaque = &mut store.opaque;
    // The instance's slot first: a full pool refuses it before anything else is taken.
    let vmctx = opaque.engine.allocator().vmctx(&info)?;

    // Imported items first, as the index spaces order them.
    let mut memories = Vec::new();
    let mut tables = Vec::new();
    let mut globals = Vec::new();
    let mut imported_funcs = Vec::new();
    let mut memory_handles = Vec::new();
    let mut table_handles = Vec::new();
    let mut global_handles = Vec::new();
    let mut tags = Vec::new();
    for import in imports {
        match *import {
            Extern::Tag(t) => {
                opaque.check(t.store);
                tags.push(t.index);
            }
            Extern::Func(f) => {
                opaque.check(f.store);
                imported_funcs.push(opaque.ensure_wasm_callable(f.index)?);
            }
            Extern::Memory(m) => {
                opaque.check(m.store);
                memories.push(opaque.memories[m.index].handle());
                memory_handles.push(m);
            }
            Extern::Table(t) => {
                opaque.check(t.store);
                tables.push(opaque.tables[t.index].vm.handle());
                table_handles.push(t);
            }
            Extern::Global(g) => {
                opaque.check(g.store);
                globals.push(opaque.globals[g.index].cell.handle());
                global_handles.push(g);
            }
        }
    }
    // Defined memories, tables and (not yet initialized) globals.
    for ty in &info.memories[info.num_imported_memories as usize..] {
        let memory = opaque
            .engine
            .allocator()
            .memory(ty.initial, ty.maximum, ty.memory64)?;
        opaque.memories.push(Box::new(memory));
        memories.push(opaque.memories.last_mut().expect("just pushed").handle());
        memory_handles.push(Memory {
            store: opaque.id,
            index: opaque.memories.len() - 1,
        });
    }
    for ty in &info.tables[info.num_imported_tables as usize..] {
        // Null for now; a table with an initializer gets its value once globals are set.
        let table = opaque.engine.allocator().table(ty.initial, ty.maximum, 0)?;
        opaque.tables.push(TableData {
            vm: Box::new(table),
            ty: table_type(ty, &module.inner.type_ids),
        });
        tables.push(opaque.tables.last_mut().expect("just pushed").vm.handle());
        table_handles.push(Table {
            store: opaque.id,
            index: opaque.tables.len() - 1,
        });
    }
    for global in &info.globals[info.num_imported_globals as usize..] {
        opaque.globals.push(GlobalData {
            cell: Box::default(),
            ty: global_type(&global.ty, &module.inner.type_ids),
        });
        globals.push(opaque.globals.last().expect("just pushed").cell.handle());
        global_handles.push(Global {
            store: opaque.id,
            index: opaque.globals.len() - 1,
        });
    }
    let parts = vm::instance::InstanceParts {
        memories,
        tables,
        globals,
        imported_funcs,
        code: &module.inner.code,
        type_ids: &module.inner.type_ids,
    };
    // Defined tags: new tags of the store, one per instance.
    for &ty_index in &info.tags[info.num_imported_tags as usize..] {
        let ty = crate::TagType::new(
            module
                .engine()
                .func_type(module.inner.type_ids[ty_index as usize]),
        );
        tags.push(
            opaque
                .new_tag(ty, module.inner.type_ids[ty_index as usize])
                .index,
        );
    }
    let instance_index = opaque.instances.len();
    let mut vm_instance = vm::instance::Instance::new(
        info.clone(),
        module.inner.wasm.clone(),
        &opaque.vm,
        parts,
        instance_index,
        vmctx,
    );
    vm_instance.set_tags(tags.clone());
    // Functions are found from the vmctx when asked for: a module exporting nothing else
    // keeps no slots (`InstanceData::exports` is then empty).
    let only_funcs = info
        .exports
        .iter()
        .all(|(_, index)| matches!(index, EntityIndex::Func(_)));
    let exports = info
        .exports
        .iter()
        .filter(|_| !only_funcs)
        .map(|(_, index)| match *index {
            EntityIndex::Func(_) => None,
            EntityIndex::Memory(m) => Some(Extern::Memory(memory_handles[m as usize])),
            EntityIndex::Table(t) => Some(Extern::Table(table_handles[t as usize])),
            EntityIndex::Global(g) => Some(Extern::Global(global_handles[g as usize])),
            EntityIndex::Tag(t) => Some(Extern::Tag(crate::Tag {
                store: opaque.id,
                index: tags[t as usize],
            })),
        })
        .collect();
    opaque.instances.push(InstanceData {
        vm: vm_instance,
        module: module.clone(),
        exports,
        globals: global_handles.clone(),
    });
    let instance = Instance::from_index(opaque.id, instance_index);

    // Globals, in order, each set before the next is evaluated: a `global.get` names an
    // imported global or (WebAssembly 3.0) an earlier one.
    let vm_instance = &opaque.instances[instance_index].vm;
    let read_global = |g: u32| opaque.globals[global_handles[g as usize].index].cell.get();
    let func_ref = |f: u32| u128::from(vm_instance.func_ref(f).to_raw());
    let eval = |init: &ConstInit| init.eval(read_global, func_ref);
    for (global, handle) in info.globals[info.num_imported_globals as usize..]
        .iter()
        .zip(&global_handles[info.num_imported_globals as usize..])
    {
        let init = global
            .init
            .as_ref()
            .expect("defined globals have initializers");
        opaque.globals[handle.index].cell.set(eval(init));
    }
    // Tables with an initializer (WebAssembly 3.0), which may read the globals.
    for (init, handle) in info.table_inits.iter().zip(&table_handles) {
        if let Some(init) = init {
            let value = eval(init) as usize;
            let table = &mut opaque.tables[handle.index].vm;
            let size = table.size();
            table
                .fill(0, value, size)
                .expect("a fill of the whole table is in bounds");
        }
    }
    let elements: Vec<Vec<usize>> = info
        .elements
        .iter()
        .map(|e| e.items.iter().map(|item| eval(item) as usize).collect())
        .collect();
    // An offset is an i32, or an i64 for a 64-bit table or memory.
    let offsets: Vec<Option<u64>> = info
        .elements
        .iter()
        .map(|e| match &e.mode {
            ElementMode::Active { offset, table } => Some(index_value(
                eval(offset),
                info.tables[*table as usize].table64,
            )),
            _ => None,
        })
        .collect();

    // Element segments, then data segments, in order; a segment that does not fit traps, and
    // what was written before stays written.
    let mut passive = Vec::with_capacity(elements.len());
    let mut failure = None;
    for (i, (segment, values)) in info.elements.iter().zip(elements).enumerate() {
        match &segment.mode {
            ElementMode::Passive => passive.push(Some(values)),
            ElementMode::Declared => passive.push(None),
            ElementMode::Active { table, .. } => {
                passive.push(None);
                if failure.is_some() {
                    continue;
                }
                let handle = table_handles[*table as usize];
                let offset = offsets[i].expect("active segments have offsets");
                if opaque.tables[handle.index]
                    .vm
                    .init(offset, &values)
                    .is_err()
                {
                    failure = Some(Trap::TableOutOfBounds);
                }
            }
        }
    }
    // Data segments, unless an element segment failed; `written` counts the segments done.
    // Their drops wait for the loop: evaluating an offset borrows the instance.
    let mut written = 0;
    if failure.is_none() {
        for segment in info.data.iter() {
            if let DataMode::Active { memory, offset } = &segment.mode {
                let memory = *memory as usize;
                // Evaluated here rather than with the element offsets (which would take a
                // vector): a constant expression reads only globals and function references,
                // which the segments do not change.
                let offset = index_value(eval(offset), info.memories[memory].memory64);
                let bytes = &module.inner.wasm[segment.range.clone()];
                let data = opaque.memories[memory_handles[memory].index].data_mut();
                match usize::try_from(offset)
                    .ok()
                    .and_then(|offset| Some(offset..offset.checked_add(bytes.len())?))
                    .and_then(|range| data.get_mut(range))
                {
                    Some(dst) => dst.copy_from_slice(bytes),
                    None => {
                        failure = Some(Trap::MemoryOutOfBounds);
                        break;
                    }
                }
            }
            written += 1;
        }
    }
    let vm_instance = &mut opaque.instances[instance_index].vm;
    vm_instance.set_elements(passive);
    // The active segments written are dropped; passive ones stay for `memory.init`.
    for (i, segment) in info.data.iter().enumerate().take(written) {
        if matches!(segment.mode, DataMode::Active { .. }) {
            vm_instance.drop_data(i as u32);
        }
    }
    if let Some(trap) = failure {
        return Err(Error::trap_without_backtrace(trap));
    }
    Ok(instance)
}

/// A constant expression's value (as `ConstInit::eval` gives it) as a table index or memory
/// address: an i32's low 32 bits zero-extended, an i64 (`is_64`) whole.
fn index_value(value: u128, is_64: bool) -> u64 {
    if is_64 {
        value as u64
    } else {
        u64::from(value as u32)
    }
}
