//! What weft knows about a module: types, the index spaces, imports, exports, segments and
//! names. The compiler builds one per module (its parser runs after wasmparser has validated the
//! whole binary); the translator, the function environment and the runtime share it read-only.
//!
//! Types are wasmparser's own (`FuncType`, `TableType`, ...): they are small plain data, and
//! both sides already speak them.

use std::collections::HashMap;
use std::ops::Range;

use wasmparser::{FuncType, GlobalType, MemoryType, RefType, TableType};

/// An index into one of a module's index spaces, as named by an import or an export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntityIndex {
    Func(u32),
    Table(u32),
    Memory(u32),
    Global(u32),
}

/// One import, in the order of the import section.
#[derive(Clone, Debug)]
pub struct Import {
    pub module: String,
    pub name: String,
    /// The index this import occupies in its index space.
    pub index: EntityIndex,
}

/// A constant expression, reduced to what Wasm 2.0 allows.
#[derive(Clone, Debug, PartialEq)]
pub enum ConstInit {
    I32(i32),
    I64(i64),
    F32(u32),
    F64(u64),
    V128(u128),
    RefNull,
    RefFunc(u32),
    GlobalGet(u32),
}

/// A global's type and, for a defined global, its initializer.
#[derive(Clone, Debug)]
pub struct GlobalInfo {
    pub ty: GlobalType,
    /// `None` for an imported global.
    pub init: Option<ConstInit>,
}

/// How an element segment is used.
#[derive(Clone, Debug)]
pub enum ElementMode {
    Passive,
    Declared,
    Active { table: u32, offset: ConstInit },
}

#[derive(Clone, Debug)]
pub struct ElementSegment {
    pub mode: ElementMode,
    pub ty: RefType,
    /// One constant expression per element (function indices become `RefFunc`).
    pub items: Vec<ConstInit>,
}

#[derive(Clone, Debug)]
pub enum DataMode {
    Passive,
    Active { memory: u32, offset: ConstInit },
}

#[derive(Clone, Debug)]
pub struct DataSegment {
    pub mode: DataMode,
    /// Byte range of the segment's contents within the module binary.
    pub range: Range<usize>,
}

/// A defined function's body: where its bytes are in the module binary.
#[derive(Clone, Debug)]
pub struct FunctionBodyInfo {
    pub range: Range<usize>,
}

/// Everything about a module except its code.
#[derive(Clone, Debug, Default)]
pub struct ModuleInfo {
    /// The type section. Wasm 2.0 has only function types.
    pub types: Vec<FuncType>,
    /// Type index of every function, imports first.
    pub funcs: Vec<u32>,
    pub num_imported_funcs: u32,
    pub tables: Vec<TableType>,
    pub num_imported_tables: u32,
    pub memories: Vec<MemoryType>,
    pub num_imported_memories: u32,
    pub globals: Vec<GlobalInfo>,
    pub num_imported_globals: u32,
    pub imports: Vec<Import>,
    /// Exports in section order.
    pub exports: Vec<(String, EntityIndex)>,
    pub start: Option<u32>,
    pub elements: Vec<ElementSegment>,
    pub data: Vec<DataSegment>,
    /// Bodies of the defined functions, in order.
    pub bodies: Vec<FunctionBodyInfo>,
    /// The module's name, from the name section.
    pub name: Option<String>,
    /// Function names, from the name section.
    pub func_names: HashMap<u32, String>,
}

impl ModuleInfo {
    /// The function type of function `func` (imports included).
    pub fn func_type(&self, func: u32) -> &FuncType {
        &self.types[self.funcs[func as usize] as usize]
    }

    pub fn num_defined_funcs(&self) -> u32 {
        self.funcs.len() as u32 - self.num_imported_funcs
    }

    pub fn is_imported_func(&self, func: u32) -> bool {
        func < self.num_imported_funcs
    }

    /// The name a backtrace shows for `func`: from the name section, else `None`.
    pub fn func_name(&self, func: u32) -> Option<&str> {
        self.func_names.get(&func).map(String::as_str)
    }
}
