//! `Module`: a validated, compiled WebAssembly module, ready to instantiate in any store of its
//! engine.

use std::sync::Arc;

use weft_environ::ModuleInfo;
use weft_environ::module_info::EntityIndex;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::types::{ExternType, FuncType, GlobalType, MemoryType, Mutability, TableType, ValType};
use crate::vm::code_memory::CodeMemory;

/// A compiled module. Cheap to clone.
#[derive(Clone)]
pub struct Module {
    pub(crate) inner: Arc<ModuleInner>,
}

pub(crate) struct ModuleInner {
    pub engine: Engine,
    pub info: Arc<ModuleInfo>,
    pub wasm: Arc<[u8]>,
    pub code: Arc<CodeMemory>,
    /// Engine type id of each of the module's types. Instantiation writes them into the vmctx,
    /// where compiled code reads them: the code itself holds no engine-specific ids.
    pub type_ids: Vec<u32>,
}

impl Module {
    /// Compiles a module from its binary or text (WAT) form.
    ///
    /// # Errors
    /// [`Error::InvalidModule`] with the byte offset of the problem if the bytes are not a
    /// valid module, [`Error::Unsupported`] for features weft lacks.
    pub fn new(engine: &Engine, bytes: impl AsRef<[u8]>) -> Result<Module> {
        let bytes = bytes.as_ref();
        let wasm = wat::parse_bytes(bytes).map_err(|e| Error::InvalidModule {
            message: e.to_string(),
            offset: 0,
        })?;
        Module::from_binary(engine, &wasm)
    }

    /// Compiles a module from its binary form.
    ///
    /// # Errors
    /// As [`Module::new`].
    pub fn from_binary(engine: &Engine, wasm: &[u8]) -> Result<Module> {
        let compiler = engine.compiler();
        let info = compiler.validate(wasm).map_err(Error::from_compile)?;
        let type_ids: Vec<u32> = info
            .types
            .iter()
            .map(|t| engine.type_id(&FuncType::from_wasm(t)))
            .collect();
        let functions = compiler
            .compile_functions(&info, wasm)
            .map_err(Error::from_compile)?;
        let indices: Vec<Option<u32>> = (0..functions.len() as u32)
            .map(|i| Some(info.num_imported_funcs + i))
            .collect();
        let info = Arc::new(info);
        let code = CodeMemory::publish(&functions, &indices, Some(info.clone()))
            .map_err(Error::Message)?;
        Ok(Module {
            inner: Arc::new(ModuleInner {
                engine: engine.clone(),
                info,
                wasm: wasm.into(),
                code,
                type_ids,
            }),
        })
    }

    /// Checks that `wasm` is a valid module without compiling it.
    ///
    /// # Errors
    /// As [`Module::new`].
    pub fn validate(engine: &Engine, wasm: &[u8]) -> Result<()> {
        engine
            .compiler()
            .validate(wasm)
            .map_err(Error::from_compile)?;
        Ok(())
    }

    /// The engine that compiled the module.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The module's name from its name section.
    pub fn name(&self) -> Option<&str> {
        self.inner.info.name.as_deref()
    }

    /// The imports, in order: (module, name, type).
    pub fn imports(&self) -> impl ExactSizeIterator<Item = (&str, &str, ExternType)> + '_ {
        self.inner.info.imports.iter().map(|i| {
            (
                i.module.as_str(),
                i.name.as_str(),
                self.entity_type(i.index),
            )
        })
    }

    /// The exports, in order: (name, type).
    pub fn exports(&self) -> impl ExactSizeIterator<Item = (&str, ExternType)> + '_ {
        self.inner
            .info
            .exports
            .iter()
            .map(|(name, index)| (name.as_str(), self.entity_type(*index)))
    }

    pub(crate) fn entity_type(&self, index: EntityIndex) -> ExternType {
        let info = &self.inner.info;
        match index {
            EntityIndex::Func(f) => ExternType::Func(FuncType::from_wasm(info.func_type(f))),
            EntityIndex::Table(t) => ExternType::Table(table_type(&info.tables[t as usize])),
            EntityIndex::Memory(m) => ExternType::Memory(memory_type(&info.memories[m as usize])),
            EntityIndex::Global(g) => ExternType::Global(global_type(&info.globals[g as usize].ty)),
        }
    }
}

pub(crate) fn table_type(t: &weft_compiler::wasmparser::TableType) -> TableType {
    TableType {
        element: ValType::from_wasm(weft_compiler::wasmparser::ValType::Ref(t.element_type)),
        minimum: t.initial as u32,
        maximum: t.maximum.map(|m| m as u32),
    }
}

pub(crate) fn memory_type(m: &weft_compiler::wasmparser::MemoryType) -> MemoryType {
    MemoryType {
        minimum: m.initial,
        maximum: m.maximum,
    }
}

pub(crate) fn global_type(g: &weft_compiler::wasmparser::GlobalType) -> GlobalType {
    GlobalType {
        content: ValType::from_wasm(g.content_type),
        mutability: if g.mutable {
            Mutability::Var
        } else {
            Mutability::Const
        },
    }
}
