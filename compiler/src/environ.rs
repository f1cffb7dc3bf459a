//! The seam between the translator and the runtime's layout.
//!
//! `translate.rs` turns Wasm operators into Cranelift IR without knowing where memories,
//! tables, globals or other functions live. Everything that touches runtime state goes through
//! [`FuncEnvironment`]; `func_environ.rs` implements it on top of the layout in
//! `weft_environ::vmoffsets`, and the tests use a dummy environment.

use cranelift_codegen::ir::{self, AbiParam, ArgumentPurpose, MemFlagsData, Signature, Value};
use cranelift_codegen::isa::CallConv;
use cranelift_frontend::FunctionBuilder;
use wasmparser::{FuncType, ValType};
use weft_environ::ModuleInfo;

/// The Cranelift type a Wasm value of type `ty` is held in. References are pointer-sized.
pub fn ir_type(ty: ValType, pointer_type: ir::Type) -> ir::Type {
    match ty {
        ValType::I32 => ir::types::I32,
        ValType::I64 => ir::types::I64,
        ValType::F32 => ir::types::F32,
        ValType::F64 => ir::types::F64,
        ValType::V128 => ir::types::I8X16,
        ValType::Ref(_) => pointer_type,
    }
}

/// The calling convention of every Wasm function weft compiles.
///
/// `tail` supports any number of results, and it is the convention under which Cranelift's
/// `return_call`/`return_call_indirect` replace the caller's frame: the callee pops its own
/// stack arguments, so a chain of tail calls with growing argument lists runs in constant stack.
/// Host code reaches Wasm only through the array-to-Wasm trampolines, which use the platform
/// convention on their host side.
pub const WASM_CALL_CONV: CallConv = CallConv::Tail;

/// Whether a call returns to its caller (`call*`) or replaces the caller's frame
/// (`return_call*`, WebAssembly 3.0's tail calls).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    Normal,
    /// A tail call: it ends the current function, so no instruction follows it in its block
    /// and it produces no values here.
    Tail,
}

/// The Cranelift signature of a Wasm function of type `ty`: the callee's vmctx, the caller's
/// vmctx, then the Wasm parameters; the Wasm results.
pub fn wasm_signature(ty: &FuncType, pointer_type: ir::Type) -> Signature {
    let mut sig = Signature::new(WASM_CALL_CONV);
    sig.params
        .push(AbiParam::special(pointer_type, ArgumentPurpose::VMContext));
    sig.params.push(AbiParam::new(pointer_type));
    for &param in ty.params() {
        sig.params.push(AbiParam::new(ir_type(param, pointer_type)));
    }
    for &result in ty.results() {
        sig.returns
            .push(AbiParam::new(ir_type(result, pointer_type)));
    }
    sig
}

/// One catch clause of an open `try_table`, as calls see it: exceptions of `tag` (a module
/// tag index; `None` catches all) continue at `landing`, a block taking the exnref.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExceptionHandler {
    pub tag: Option<u32>,
    pub landing: ir::Block,
}

/// Everything the translator asks of the world outside one function body.
///
/// Indices are Wasm indices (imports included). Operands arrive already popped from the value
/// stack and have the types validation guarantees; a method that produces a value returns it
/// with the type [`ir_type`] gives.
pub trait FuncEnvironment {
    /// The module being compiled.
    fn module(&self) -> &ModuleInfo;

    /// The target's pointer type.
    fn pointer_type(&self) -> ir::Type;

    /// The signature to call a function of type `type_index` with (see [`wasm_signature`]).
    fn signature(&self, type_index: u32) -> Signature {
        wasm_signature(
            &self.module().types[type_index as usize],
            self.pointer_type(),
        )
    }

    /// The native address of the `access_size` bytes at Wasm address `index + offset` of
    /// `memory` (`index` is an i32, or an i64 for a 64-bit memory), and the flags to load or
    /// store through it. Emits the bounds check the memory bounds need; an out-of-bounds access traps with
    /// `TrapCode::HEAP_OUT_OF_BOUNDS` (a check, or the returned flags' trap code on a guard-page
    /// fault).
    fn heap_address(
        &mut self,
        builder: &mut FunctionBuilder,
        memory: u32,
        index: Value,
        offset: u64,
        access_size: u32,
    ) -> (Value, MemFlagsData);

    fn global_get(&mut self, builder: &mut FunctionBuilder, global: u32) -> Value;
    fn global_set(&mut self, builder: &mut FunctionBuilder, global: u32, value: Value);

    /// A direct call; returns the callee's results (none for a tail call, which terminates the
    /// current block).
    fn call(
        &mut self,
        builder: &mut FunctionBuilder,
        callee: u32,
        args: &[Value],
        kind: CallKind,
    ) -> Vec<Value>;

    /// `call_indirect`: `callee` is the table index (an i32, an i64 for a 64-bit table). Checks bounds, null and signature.
    /// Results as for [`FuncEnvironment::call`].
    fn call_indirect(
        &mut self,
        builder: &mut FunctionBuilder,
        table: u32,
        type_index: u32,
        callee: Value,
        args: &[Value],
        kind: CallKind,
    ) -> Vec<Value>;

    /// `call_ref` of a function of type `type_index`: `callee` is a funcref, possibly null
    /// (which traps with `TrapKind::NullReference`). Validation has checked that a non-null
    /// `callee` has that type, so there is no signature check. Results as for
    /// [`FuncEnvironment::call`].
    fn call_ref(
        &mut self,
        builder: &mut FunctionBuilder,
        type_index: u32,
        callee: Value,
        args: &[Value],
        kind: CallKind,
    ) -> Vec<Value>;

    /// `memory.size`, in pages, as an i32 (an i64 for a 64-bit memory).
    fn memory_size(&mut self, builder: &mut FunctionBuilder, memory: u32) -> Value;
    /// `memory.grow`: returns the old size in pages, or -1, as an i32 (an i64 for a 64-bit
    /// memory).
    fn memory_grow(&mut self, builder: &mut FunctionBuilder, memory: u32, delta: Value) -> Value;
    fn memory_fill(
        &mut self,
        builder: &mut FunctionBuilder,
        memory: u32,
        dst: Value,
        value: Value,
        len: Value,
    );
    fn memory_copy(
        &mut self,
        builder: &mut FunctionBuilder,
        dst_memory: u32,
        src_memory: u32,
        dst: Value,
        src: Value,
        len: Value,
    );
    fn memory_init(
        &mut self,
        builder: &mut FunctionBuilder,
        memory: u32,
        data: u32,
        dst: Value,
        src: Value,
        len: Value,
    );
    fn data_drop(&mut self, builder: &mut FunctionBuilder, data: u32);

    fn table_get(&mut self, builder: &mut FunctionBuilder, table: u32, index: Value) -> Value;
    fn table_set(&mut self, builder: &mut FunctionBuilder, table: u32, index: Value, value: Value);
    /// `table.size` as an i32 (an i64 for a 64-bit table).
    fn table_size(&mut self, builder: &mut FunctionBuilder, table: u32) -> Value;
    /// `table.grow`: returns the old size, or -1, as an i32 (an i64 for a 64-bit table).
    fn table_grow(
        &mut self,
        builder: &mut FunctionBuilder,
        table: u32,
        init: Value,
        delta: Value,
    ) -> Value;
    fn table_fill(
        &mut self,
        builder: &mut FunctionBuilder,
        table: u32,
        dst: Value,
        value: Value,
        len: Value,
    );
    fn table_copy(
        &mut self,
        builder: &mut FunctionBuilder,
        dst_table: u32,
        src_table: u32,
        dst: Value,
        src: Value,
        len: Value,
    );
    fn table_init(
        &mut self,
        builder: &mut FunctionBuilder,
        table: u32,
        elem: u32,
        dst: Value,
        src: Value,
        len: Value,
    );
    fn elem_drop(&mut self, builder: &mut FunctionBuilder, elem: u32);

    /// `ref.func`: a non-null funcref.
    fn ref_func(&mut self, builder: &mut FunctionBuilder, func: u32) -> Value;

    /// The catch clauses in force for the calls emitted from now on, innermost first (the
    /// translator updates them as `try_table`s open and close). While there are any, every
    /// call that returns (tail calls leave the `try_table`) must let an exception thrown below
    /// it continue at the first matching clause's landing block, and cost nothing when none
    /// is thrown.
    fn set_exception_handlers(&mut self, handlers: &[ExceptionHandler]);

    /// `throw` of `tag` with its payload `args`: never returns (the block is terminated).
    fn throw(&mut self, builder: &mut FunctionBuilder, tag: u32, args: &[Value]);

    /// `throw_ref` of `exn`, an exnref that may be null (which traps with
    /// `TrapKind::NullReference`): never returns (the block is terminated).
    fn throw_ref(&mut self, builder: &mut FunctionBuilder, exn: Value);

    /// The payload values of `exn`, a caught exception of tag `tag`, with the types
    /// [`ir_type`] gives the tag's parameters. Called at the start of a landing block.
    fn exception_payload(
        &mut self,
        builder: &mut FunctionBuilder,
        tag: u32,
        exn: Value,
    ) -> Vec<Value>;

    /// Called in every landing block after the payload was read, before the branch to the
    /// clause's label: `keeps_ref` says whether the exnref `exn` goes along (`catch_ref`,
    /// `catch_all_ref`), so that the object outlives the catch; otherwise nothing refers to it
    /// any more unless a reference escaped earlier.
    fn exception_caught(&mut self, _builder: &mut FunctionBuilder, _exn: Value, _keeps_ref: bool) {}

    /// Called at the top of every landing block, before the payload is read (a place to
    /// reload what calls may change).
    fn landing_pad(&mut self, _builder: &mut FunctionBuilder) {}

    /// Called at the top of every loop body (a place for epoch checks).
    fn loop_header(&mut self, _builder: &mut FunctionBuilder) {}

    /// Called once at the start of every function body, after the locals are set up.
    fn function_entry(&mut self, _builder: &mut FunctionBuilder) {}

    /// Called just before each `return` the translator emits (tail calls go through
    /// [`Self::call`], [`Self::call_indirect`] and [`Self::call_ref`], which see their kind).
    fn before_return(&mut self, _builder: &mut FunctionBuilder) {}

    /// Whether [`Self::consume_fuel`] is wanted: the translator then counts the cost of the
    /// operators it translates and reports it at each control-flow operator.
    fn fuel_enabled(&self) -> bool {
        false
    }

    /// The straight-line operators just translated cost `cost` units of fuel (emitted before
    /// the control-flow operator that ends them); with `check`, that operator branches back to a
    /// loop's header, and the fuel left is checked here.
    fn consume_fuel(&mut self, _builder: &mut FunctionBuilder, _cost: u32, _check: bool) {}
}
