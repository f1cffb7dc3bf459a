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
    /// An exception tag (WebAssembly 3.0's exception handling).
    Tag(u32),
}

/// One import, in the order of the import section.
#[derive(Clone, Debug)]
pub struct Import {
    pub module: String,
    pub name: String,
    /// The index this import occupies in its index space.
    pub index: EntityIndex,
}

/// A constant expression. The single-instruction forms of Wasm 2.0 have their own variants;
/// anything longer (WebAssembly 3.0's extended constant expressions: integer `add`, `sub` and
/// `mul` over constants and `global.get`) is an [`ConstInit::Expr`] in postfix order.
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
    /// Instructions in order; a valid expression leaves exactly one value.
    Expr(Vec<ConstOp>),
}

/// One instruction of an extended constant expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConstOp {
    /// Pushes a value (any single-instruction [`ConstInit`] except `Expr`), as its raw bits.
    I32(i32),
    I64(i64),
    F32(u32),
    F64(u64),
    V128(u128),
    RefNull,
    RefFunc(u32),
    GlobalGet(u32),
    I32Add,
    I32Sub,
    I32Mul,
    I64Add,
    I64Sub,
    I64Mul,
}

impl ConstInit {
    /// The expression's value as the raw bits of a value slot (integers zero-extended, floats
    /// as their bit patterns, references as addresses). `global` reads the current value of a
    /// global and `func_ref` gives the funcref of a function, in the same representation.
    ///
    /// The expression has been validated: its operators are well typed and leave one value,
    /// so the evaluation cannot fail (integer arithmetic wraps, as Wasm's does).
    pub fn eval(
        &self,
        mut global: impl FnMut(u32) -> u128,
        func_ref: impl Fn(u32) -> u128,
    ) -> u128 {
        let ops = match self {
            ConstInit::I32(v) => return u128::from(*v as u32),
            ConstInit::I64(v) => return u128::from(*v as u64),
            ConstInit::F32(v) => return u128::from(*v),
            ConstInit::F64(v) => return u128::from(*v),
            ConstInit::V128(v) => return *v,
            ConstInit::RefNull => return 0,
            ConstInit::RefFunc(f) => return func_ref(*f),
            ConstInit::GlobalGet(g) => return global(*g),
            ConstInit::Expr(ops) => ops,
        };
        let mut stack: Vec<u128> = Vec::with_capacity(4);
        for op in ops {
            let value = match *op {
                ConstOp::I32(v) => u128::from(v as u32),
                ConstOp::I64(v) => u128::from(v as u64),
                ConstOp::F32(v) => u128::from(v),
                ConstOp::F64(v) => u128::from(v),
                ConstOp::V128(v) => v,
                ConstOp::RefNull => 0,
                ConstOp::RefFunc(f) => func_ref(f),
                ConstOp::GlobalGet(g) => global(g),
                binary => {
                    let rhs = stack.pop().expect("validated: two operands");
                    let lhs = stack.pop().expect("validated: two operands");
                    let (a32, b32) = (lhs as u32, rhs as u32);
                    let (a64, b64) = (lhs as u64, rhs as u64);
                    match binary {
                        ConstOp::I32Add => u128::from(a32.wrapping_add(b32)),
                        ConstOp::I32Sub => u128::from(a32.wrapping_sub(b32)),
                        ConstOp::I32Mul => u128::from(a32.wrapping_mul(b32)),
                        ConstOp::I64Add => u128::from(a64.wrapping_add(b64)),
                        ConstOp::I64Sub => u128::from(a64.wrapping_sub(b64)),
                        ConstOp::I64Mul => u128::from(a64.wrapping_mul(b64)),
                        _ => unreachable!("the value-producing operators are matched above"),
                    }
                }
            };
            stack.push(value);
        }
        stack
            .pop()
            .expect("validated: a constant expression leaves one value")
    }
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
    /// The type section: function types only (the parser refuses GC types).
    pub types: Vec<FuncType>,
    /// The type section's recursion groups, as ranges of type indices in order (every type is
    /// in exactly one). A type declared outside `rec` is a group of its own. Types are
    /// canonicalized (made equal across modules) a whole group at a time.
    pub rec_groups: Vec<Range<u32>>,
    /// Type index of every function, imports first.
    pub funcs: Vec<u32>,
    pub num_imported_funcs: u32,
    pub tables: Vec<TableType>,
    /// Each table's initializer (WebAssembly 3.0's `(table n (ref $t) (expr))`), by table
    /// index; `None` for imported tables and for tables that start out null.
    pub table_inits: Vec<Option<ConstInit>>,
    pub num_imported_tables: u32,
    pub memories: Vec<MemoryType>,
    pub num_imported_memories: u32,
    pub globals: Vec<GlobalInfo>,
    pub num_imported_globals: u32,
    /// Type index (a function type with no results) of every exception tag, imports first.
    pub tags: Vec<u32>,
    pub num_imported_tags: u32,
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

    /// The parameter types of tag `tag`'s payload.
    pub fn tag_params(&self, tag: u32) -> &[wasmparser::ValType] {
        self.types[self.tags[tag as usize] as usize].params()
    }

    /// The name a backtrace shows for `func`: from the name section, else `None`.
    pub fn func_name(&self, func: u32) -> Option<&str> {
        self.func_names.get(&func).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_globals(_: u32) -> u128 {
        unreachable!("no global.get in this expression")
    }

    fn no_funcs(_: u32) -> u128 {
        unreachable!("no ref.func in this expression")
    }

    #[test]
    fn extended_i32_arithmetic_wraps_and_reads_globals() {
        // (global.get 0) * 3 - 1, with global 0 = 0x8000_0000: wraps to 0x7fff_ffff.
        let expr = ConstInit::Expr(vec![
            ConstOp::GlobalGet(0),
            ConstOp::I32(3),
            ConstOp::I32Mul,
            ConstOp::I32(1),
            ConstOp::I32Sub,
        ]);
        assert_eq!(expr.eval(|_| 0x8000_0000, no_funcs), 0x7fff_ffff);
    }

    #[test]
    fn extended_i64_results_are_zero_extended_bits() {
        let expr = ConstInit::Expr(vec![ConstOp::I64(0), ConstOp::I64(1), ConstOp::I64Sub]);
        assert_eq!(expr.eval(no_globals, no_funcs), u128::from(u64::MAX));
    }

    #[test]
    fn single_instruction_forms_evaluate_without_a_stack() {
        assert_eq!(ConstInit::I32(-1).eval(no_globals, no_funcs), 0xffff_ffff);
        assert_eq!(
            ConstInit::RefFunc(7).eval(no_globals, |f| u128::from(f) * 2),
            14
        );
    }
}
