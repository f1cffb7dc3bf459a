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
    /// A reference: `funcref`, `externref`, or a typed function reference `(ref null? $t)`.
    Ref(RefType),
}

impl ValType {
    /// `funcref`: a nullable reference to any function.
    pub const FUNCREF: ValType = ValType::Ref(RefType::FUNCREF);
    /// `externref`: a nullable reference to a host value.
    pub const EXTERNREF: ValType = ValType::Ref(RefType::EXTERNREF);
    /// `exnref`: a nullable reference to an exception.
    pub const EXNREF: ValType = ValType::Ref(RefType::EXNREF);

    /// Whether a value of this type may be used where `other` is expected (WebAssembly's
    /// subtyping: equal types, a non-nullable reference where the nullable one is expected,
    /// a typed function reference where an abstract one is).
    pub fn matches(&self, other: &ValType) -> bool {
        match (self, other) {
            (ValType::Ref(a), ValType::Ref(b)) => a.matches(b),
            (a, b) => a == b,
        }
    }

    /// Whether values of this type have a default (zero or null): every type except the
    /// non-nullable references.
    pub fn is_defaultable(&self) -> bool {
        match self {
            ValType::Ref(r) => r.nullable,
            _ => true,
        }
    }

    /// The reference type, if this is one.
    pub fn as_ref(&self) -> Option<&RefType> {
        match self {
            ValType::Ref(r) => Some(r),
            _ => None,
        }
    }

    /// The API type of a module's value type; `type_ids` maps the module's type indices to
    /// the engine's ids (what a concrete reference names).
    pub(crate) fn from_wasm(ty: wasmparser_types::ValType, type_ids: &[u32]) -> ValType {
        use wasmparser_types::ValType as W;
        match ty {
            W::I32 => ValType::I32,
            W::I64 => ValType::I64,
            W::F32 => ValType::F32,
            W::F64 => ValType::F64,
            W::V128 => ValType::V128,
            W::Ref(r) => ValType::Ref(RefType::from_wasm(r, type_ids)),
        }
    }

    /// The wasmparser type with the same machine representation: a concrete reference
    /// becomes its abstract heap type (what the trampolines, which only move values, need).
    pub(crate) fn to_wasm_repr(self) -> wasmparser_types::ValType {
        use wasmparser_types::ValType as W;
        match self {
            ValType::I32 => W::I32,
            ValType::I64 => W::I64,
            ValType::F32 => W::F32,
            ValType::F64 => W::F64,
            ValType::V128 => W::V128,
            ValType::Ref(r) if r.heap_type == HeapType::Extern => W::EXTERNREF,
            ValType::Ref(r) if r.heap_type.is_exn() => W::EXNREF,
            ValType::Ref(_) => W::FUNCREF,
        }
    }
}

impl fmt::Display for ValType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValType::I32 => f.write_str("i32"),
            ValType::I64 => f.write_str("i64"),
            ValType::F32 => f.write_str("f32"),
            ValType::F64 => f.write_str("f64"),
            ValType::V128 => f.write_str("v128"),
            ValType::Ref(r) => r.fmt(f),
        }
    }
}

/// A reference type: what it points to, and whether it may be null.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RefType {
    /// Whether null is a value of this type.
    pub nullable: bool,
    /// What a non-null reference points to.
    pub heap_type: HeapType,
}

impl RefType {
    /// `funcref`, i.e. `(ref null func)`.
    pub const FUNCREF: RefType = RefType::new(true, HeapType::Func);
    /// `externref`, i.e. `(ref null extern)`.
    pub const EXTERNREF: RefType = RefType::new(true, HeapType::Extern);
    /// `exnref`, i.e. `(ref null exn)`.
    pub const EXNREF: RefType = RefType::new(true, HeapType::Exn);

    /// A reference to `heap_type`, nullable or not.
    pub const fn new(nullable: bool, heap_type: HeapType) -> RefType {
        RefType {
            nullable,
            heap_type,
        }
    }

    /// Subtyping (see [`ValType::matches`]).
    pub fn matches(&self, other: &RefType) -> bool {
        (other.nullable || !self.nullable) && self.heap_type.matches(&other.heap_type)
    }

    pub(crate) fn from_wasm(r: wasmparser_types::RefType, type_ids: &[u32]) -> RefType {
        use wasmparser_types::{AbstractHeapType, HeapType as W, UnpackedIndex};
        let heap_type = match r.heap_type() {
            W::Concrete(UnpackedIndex::Module(index)) => {
                HeapType::ConcreteFunc(FuncTypeId(type_ids[index as usize]))
            }
            W::Abstract {
                ty: AbstractHeapType::Extern,
                ..
            } => HeapType::Extern,
            W::Abstract {
                ty: AbstractHeapType::Exn,
                ..
            } => HeapType::Exn,
            W::Abstract {
                ty: AbstractHeapType::NoExn,
                ..
            } => HeapType::NoExn,
            // The parser refuses every other heap type (`weft_compiler::parse::check_ref_type`),
            // and a module's types name each other by module index.
            _ => HeapType::Func,
        };
        RefType::new(r.is_nullable(), heap_type)
    }
}

impl fmt::Display for RefType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.nullable, self.heap_type) {
            (true, HeapType::Func) => f.write_str("funcref"),
            (true, HeapType::Extern) => f.write_str("externref"),
            (true, HeapType::Exn) => f.write_str("exnref"),
            (true, HeapType::NoExn) => f.write_str("nullexnref"),
            (nullable, heap) => write!(f, "(ref {}{heap})", if nullable { "null " } else { "" }),
        }
    }
}

/// What a reference points to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeapType {
    /// Any function.
    Func,
    /// A host value.
    Extern,
    /// An exception.
    Exn,
    /// No exception: the bottom of `exn` (the exception-handling proposal's `noexn`). Only null
    /// is a value of `(ref null noexn)`, i.e. `nullexnref`, and `(ref noexn)` has none.
    NoExn,
    /// A function of one type, as the engine names it (see [`crate::Engine::func_type_id`]).
    ConcreteFunc(FuncTypeId),
}

impl HeapType {
    /// Subtyping: equal heap types, a concrete function type below `func`, or `noexn` below
    /// `exn`.
    pub fn matches(&self, other: &HeapType) -> bool {
        self == other
            || matches!(
                (self, other),
                (HeapType::ConcreteFunc(_), HeapType::Func) | (HeapType::NoExn, HeapType::Exn)
            )
    }

    /// Whether references of this type are exception references in memory (`exn`, `noexn`).
    pub(crate) fn is_exn(&self) -> bool {
        matches!(self, HeapType::Exn | HeapType::NoExn)
    }
}

impl fmt::Display for HeapType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeapType::Func => f.write_str("func"),
            HeapType::Extern => f.write_str("extern"),
            HeapType::Exn => f.write_str("exn"),
            HeapType::NoExn => f.write_str("noexn"),
            HeapType::ConcreteFunc(id) => write!(f, "{id}"),
        }
    }
}

/// An engine's name for a function type: equal types (in the sense of WebAssembly's type
/// canonicalization, which looks through recursion groups) have equal ids within one engine.
/// It is what a typed function reference `(ref $t)` points to in the API. An id is meaningful
/// only in the engine that made it: [`crate::Engine::func_type_id`] makes one for a type,
/// [`crate::Engine::func_type_of`] gives the type back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FuncTypeId(pub(crate) u32);

impl fmt::Display for FuncTypeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "$type{}", self.0)
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

    /// The API type of a module's function type (`type_ids` as for [`ValType`]).
    pub(crate) fn from_wasm(ty: &wasmparser_types::FuncType, type_ids: &[u32]) -> Self {
        FuncType::new(
            ty.params().iter().map(|&t| ValType::from_wasm(t, type_ids)),
            ty.results()
                .iter()
                .map(|&t| ValType::from_wasm(t, type_ids)),
        )
    }

    /// A wasmparser type with the same machine representation (see
    /// [`ValType::to_wasm_repr`]), for compiling trampolines.
    pub(crate) fn to_wasm_repr(&self) -> wasmparser_types::FuncType {
        wasmparser_types::FuncType::new(
            self.params.iter().map(|t| t.to_wasm_repr()),
            self.results.iter().map(|t| t.to_wasm_repr()),
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

/// A memory's limits, in 64 KiB pages, and its index type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemoryType {
    /// Initial size in pages.
    pub minimum: u64,
    /// Largest size in pages, if limited.
    pub maximum: Option<u64>,
    /// A 64-bit memory (memory64, WebAssembly 3.0): addressed with i64 and limited to 2^48
    /// pages rather than 65,536. An import matches only a memory of the same index type.
    pub is_64: bool,
}

impl MemoryType {
    /// A 32-bit memory type of `minimum` pages and at most `maximum`.
    pub fn new(minimum: u32, maximum: Option<u32>) -> Self {
        MemoryType {
            minimum: minimum.into(),
            maximum: maximum.map(Into::into),
            is_64: false,
        }
    }

    /// A 64-bit memory type (memory64) of `minimum` pages and at most `maximum`.
    pub fn new64(minimum: u64, maximum: Option<u64>) -> Self {
        MemoryType {
            minimum,
            maximum,
            is_64: true,
        }
    }
}

/// A table's element type, limits and index type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TableType {
    /// The type of the elements.
    pub element: ValType,
    /// Initial size in elements.
    pub minimum: u64,
    /// Largest size in elements, if limited.
    pub maximum: Option<u64>,
    /// A 64-bit table (memory64's `table i64`): indexed with i64. An import matches only a
    /// table of the same index type.
    pub is_64: bool,
}

impl TableType {
    /// A 32-bit table type of `element`s: `minimum` of them at first and at most `maximum`.
    pub fn new(element: ValType, minimum: u32, maximum: Option<u32>) -> Self {
        TableType {
            element,
            minimum: minimum.into(),
            maximum: maximum.map(Into::into),
            is_64: false,
        }
    }

    /// A 64-bit table type (memory64's `table i64`), as [`TableType::new`].
    pub fn new64(element: ValType, minimum: u64, maximum: Option<u64>) -> Self {
        TableType {
            element,
            minimum,
            maximum,
            is_64: true,
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
    /// An exception tag.
    Tag(crate::TagType),
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
