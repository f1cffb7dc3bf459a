//! Value, function and extern types as the API shows them.

use weft_compiler::wasmparser as wasmparser_types;

use std::fmt;

/// The type of a Wasm value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValType {
    /// 32-bit integer.
    I32,
    /// 64-bit integer.
    I64,
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
    /// 128-bit vector.
    V128,
    /// Function reference (nullable).
    FuncRef,
    /// External reference (nullable).
    ExternRef,
}

impl ValType {
    pub(crate) fn from_wasm(ty: wasmparser_types::ValType) -> ValType {
        use wasmparser_types::ValType as W;
        match ty {
            W::I32 => ValType::I32,
            W::I64 => ValType::I64,
            W::F32 => ValType::F32,
            W::F64 => ValType::F64,
            W::V128 => ValType::V128,
            W::Ref(r) if r.is_func_ref() => ValType::FuncRef,
            W::Ref(_) => ValType::ExternRef,
        }
    }
}

impl fmt::Display for ValType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValType::I32 => "i32",
            ValType::I64 => "i64",
            ValType::F32 => "f32",
            ValType::F64 => "f64",
            ValType::V128 => "v128",
            ValType::FuncRef => "funcref",
            ValType::ExternRef => "externref",
        })
    }
}

/// A function's parameter and result types.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FuncType {
    params: Box<[ValType]>,
    results: Box<[ValType]>,
}

impl FuncType {
    /// A function type with these parameter and result types.
    pub fn new(
        params: impl IntoIterator<Item = ValType>,
        results: impl IntoIterator<Item = ValType>,
    ) -> Self {
        FuncType {
            params: params.into_iter().collect(),
            results: results.into_iter().collect(),
        }
    }

    /// The parameter types.
    pub fn params(&self) -> &[ValType] {
        &self.params
    }

    /// The result types.
    pub fn results(&self) -> &[ValType] {
        &self.results
    }

    pub(crate) fn from_wasm(ty: &wasmparser_types::FuncType) -> Self {
        FuncType::new(
            ty.params().iter().map(|&t| ValType::from_wasm(t)),
            ty.results().iter().map(|&t| ValType::from_wasm(t)),
        )
    }

    pub(crate) fn to_wasm(&self) -> wasmparser_types::FuncType {
        let convert = |t: &ValType| match t {
            ValType::I32 => wasmparser_types::ValType::I32,
            ValType::I64 => wasmparser_types::ValType::I64,
            ValType::F32 => wasmparser_types::ValType::F32,
            ValType::F64 => wasmparser_types::ValType::F64,
            ValType::V128 => wasmparser_types::ValType::V128,
            ValType::FuncRef => wasmparser_types::ValType::FUNCREF,
            ValType::ExternRef => wasmparser_types::ValType::EXTERNREF,
        };
        wasmparser_types::FuncType::new(
            self.params.iter().map(convert),
            self.results.iter().map(convert),
        )
    }
}

impl fmt::Display for FuncType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[ValType]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        };
        write!(
            f,
            "(func (param {}) (result {}))",
            list(&self.params),
            list(&self.results)
        )
    }
}

/// A memory's limits, in 64 KiB pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemoryType {
    /// Initial size in pages.
    pub minimum: u64,
    /// Largest size in pages, if limited.
    pub maximum: Option<u64>,
}

impl MemoryType {
    /// A memory type of `minimum` pages and at most `maximum`.
    pub fn new(minimum: u32, maximum: Option<u32>) -> Self {
        MemoryType {
            minimum: minimum.into(),
            maximum: maximum.map(Into::into),
        }
    }
}

/// A table's element type and limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TableType {
    /// The type of the elements.
    pub element: ValType,
    /// Initial size in elements.
    pub minimum: u32,
    /// Largest size in elements, if limited.
    pub maximum: Option<u32>,
}

impl TableType {
    /// A table type of `element`s: `minimum` of them at first and at most `maximum`.
    pub fn new(element: ValType, minimum: u32, maximum: Option<u32>) -> Self {
        TableType {
            element,
            minimum,
            maximum,
        }
    }
}

/// Whether a global can be set after instantiation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mutability {
    /// Immutable.
    Const,
    /// Mutable.
    Var,
}

/// A global's value type and mutability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GlobalType {
    /// The type of the value.
    pub content: ValType,
    /// Whether it can be set.
    pub mutability: Mutability,
}

impl GlobalType {
    /// A global type holding a `content` that is `mutability`.
    pub fn new(content: ValType, mutability: Mutability) -> Self {
        GlobalType {
            content,
            mutability,
        }
    }
}

/// The type of an import or export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExternType {
    /// A function.
    Func(FuncType),
    /// A table.
    Table(TableType),
    /// A memory.
    Memory(MemoryType),
    /// A global.
    Global(GlobalType),
}

/// Limits subtyping: is `(actual_min, actual_max)` usable where `(min, max)` is declared?
pub(crate) fn limits_match(
    actual_min: u64,
    actual_max: Option<u64>,
    min: u64,
    max: Option<u64>,
) -> bool {
    actual_min >= min
        && match (max, actual_max) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(max), Some(actual)) => actual <= max,
        }
}
