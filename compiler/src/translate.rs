//! Validated WebAssembly function bodies to Cranelift IR.
//!
//! Translation is one forward pass over the operators, with two stacks that mirror the ones the
//! Wasm validator keeps.
//!
//! **The value stack** (`FuncTranslator::stack`) holds Cranelift SSA values, one per Wasm
//! operand. An arithmetic operator pops its operands, emits one instruction and pushes the
//! result; nothing is spilled or copied. Because every value on the stack was defined in a block
//! that dominates the current one (control only ever enters a Wasm block at its start), values can
//! flow into nested blocks and into both arms of an `if` as plain SSA uses. The only places a
//! value must cross a control-flow *join* are branches: there the values travel as Cranelift
//! block arguments, and the join block's parameters replace them on the stack.
//!
//! **The control stack** (`FuncTranslator::control`) has one `ControlFrame` per open `block`,
//! `loop` and `if`, plus an outermost frame for the function body itself. Each frame owns the
//! Cranelift block where execution continues after its `end` (`next`, whose parameters are the
//! frame's results) and the value-stack height below its parameters, so `end` can cut the stack
//! back. A branch to a `block` or `if` jumps to `next` with the label's results; a branch to a
//! `loop` jumps to its header, whose parameters are the loop's parameters. A branch to the
//! outermost frame reaches the return block, so `br` out of the function needs no special case.
//!
//! An `if` creates its `else` block up front and branches to it on zero. If no `else` arm
//! appears, `end` fills that block with a jump to `next` carrying the `if`'s parameters (valid
//! Wasm guarantees they have the result types). This costs an extra block in the IR, which the
//! backend's branch simplification folds away, and saves rewriting a placeholder branch later.
//!
//! **Unreachable code.** After `br`, `br_table`, `return` or `unreachable` the current Cranelift
//! block is terminated, and Wasm may still contain (valid, type-checked) operators up to the
//! enclosing `end` or `else`. Those are skipped: while `reachable` is false only structure is
//! tracked — nested `block`/`loop`/`if` bump `unreachable_depth`, and no frames are pushed for
//! them — until an `else` or `end` at depth zero closes the frame that went dead. Whether the code
//! after that `end` is reachable depends on whether anything branched to the frame's `next` (or,
//! for an `if` without `else`, on the implicit else path). Frames are only ever pushed in
//! reachable code, so an `if` frame's condition was always evaluated.
//!
//! **Sealing.** Blocks are sealed as soon as all their predecessors are known, which keeps the
//! SSA construction for locals cheap: a frame's `next` and a loop header at the frame's `end`,
//! everything else right after it is created.
//!
//! **Exceptions.** A `try_table` is a block frame that also opens catch clauses. Each clause
//! gets a landing block taking the exnref; the translator keeps the clauses of every open
//! `try_table` (innermost last) and tells the environment whenever the set changes, and the
//! environment makes each call that returns a `try_call` listing them, so only calls carry
//! handlers and the normal path is unchanged. Catch labels are resolved against the frames
//! outside the `try_table`, and its landing blocks are filled at its `end` (the block being
//! translated cannot be left half-filled before): each reads the tag's payload from the
//! exception object and branches to the label with it (and the exnref for the `_ref` forms).
//! `throw` and `throw_ref` end the block like `unreachable`.
//!
//! **SIMD.** A `v128` is one Cranelift value of type `I8X16` wherever it is stored or passed
//! (value stack, locals, block parameters, signatures, globals). Each SIMD operator `bitcast`s
//! its operands to the lane type it works on (`I32X4` for `i32x4.add`, read off the operator's
//! name by `simd_lanes`) and its result back; the bitcasts name little-endian lane order, which
//! is Wasm's, and cost nothing in the backend. Keeping one type means no join or call ever sees
//! two lane types for one Wasm type. Almost every operator is one Cranelift instruction with the
//! Wasm semantics built in; the exceptions (dot product, extending multiplies and pairwise adds,
//! pseudo-min/max, the `_zero` conversions) are short sequences, commented at their arms.
//!
//! Everything that depends on the runtime's layout (memories, globals, tables, calls) goes
//! through [`FuncEnvironment`]. The input is assumed valid — wasmparser's validator has run over
//! the whole module — so operand types and stack heights are never checked here, and a
//! malformed body is free to panic rather than produce a diagnostic.

use cranelift_codegen::ir::{
    self, BlockArg, BlockCall, Endianness, InstBuilder, JumpTableData, MemFlagsData, Value,
    condcodes::{FloatCC, IntCC},
    immediates::{Ieee32, Ieee64},
    types::{F32, F32X4, F64, F64X2, I8, I8X16, I16, I16X8, I32, I32X4, I64, I64X2},
};
use cranelift_codegen::isa::TargetFrontendConfig;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use wasmparser::{BlockType, FunctionBody, MemArg, MemArgTarget, Operator, ValType};
use weft_environ::TrapKind;

use crate::CompileError;
use crate::environ::{CallKind, ExceptionHandler, FuncEnvironment, ir_type};
use crate::parse::{check_heap_type, check_val_type};
use crate::traps::trap_code;

/// Translates one validated function body into `func`, whose signature (`environ::wasm_signature`:
/// callee vmctx, caller vmctx, then the Wasm params) the caller has already set, together with any
/// global values (vmctx, stack limit) it needs.
///
/// Every operator's instructions carry its byte offset in the module binary as their source
/// location, for trap and backtrace reporting.
///
/// # Errors
/// `CompileError::Unsupported` for operators of proposals weft does not implement;
/// `CompileError::Invalid` if the body cannot be read.
pub fn translate_function<E: FuncEnvironment + ?Sized>(
    env: &mut E,
    func: &mut ir::Function,
    builder_ctx: &mut FunctionBuilderContext,
    body: &FunctionBody<'_>,
    func_index: u32,
    frontend_config: TargetFrontendConfig,
) -> Result<(), CompileError> {
    let pointer_type = env.pointer_type();
    let func_type = env.module().func_type(func_index).clone();
    let mut builder = FunctionBuilder::new(func, builder_ctx);

    let entry = builder.create_block();
    builder.append_block_params_for_function_params(entry);
    builder.switch_to_block(entry);
    builder.seal_block(entry);
    // Put the entry block in the layout now, so an environment can find the vmctx with
    // `Function::special_param` even before the first instruction.
    builder.ensure_inserted_block();

    // Locals: parameters from the entry block (after the two vmctx arguments), then the declared
    // locals, zero-initialized.
    let mut locals = Vec::new();
    for (i, &param) in func_type.params().iter().enumerate() {
        let ty = ir_type(param, pointer_type);
        let var = builder.declare_var(ty);
        let value = builder.block_params(entry)[2 + i];
        builder.def_var(var, value);
        locals.push(var);
    }
    for local in body.get_locals_reader()? {
        let (count, ty) = local?;
        // Validation follows GC's rules (see `CompilerOptions::wasm_features`); GC's types
        // stop here.
        check_val_type(ty)?;
        let ir_ty = ir_type(ty, pointer_type);
        for _ in 0..count {
            let var = builder.declare_var(ir_ty);
            let zero = zero_value(&mut builder, ir_ty);
            builder.def_var(var, zero);
            locals.push(var);
        }
    }

    let results: Vec<ir::Type> = func_type
        .results()
        .iter()
        .map(|&ty| ir_type(ty, pointer_type))
        .collect();
    let return_block = builder.create_block();
    for &ty in &results {
        builder.append_block_param(return_block, ty);
    }

    let mut translator = FuncTranslator {
        env,
        builder,
        pointer_type,
        locals,
        stack: Vec::new(),
        control: vec![ControlFrame {
            kind: FrameKind::Block,
            next: return_block,
            num_params: 0,
            num_results: results.len(),
            stack_base: 0,
            next_branched_to: false,
        }],
        reachable: true,
        unreachable_depth: 0,
        handlers: Vec::new(),
    };

    translator.env.function_entry(&mut translator.builder);
    let fuel = translator.env.fuel_enabled();
    // Fuel of the straight-line operators since the last control-flow operator, charged just
    // before the next one (so each stretch is charged where it runs, once per execution).
    let mut fuel_pending: u32 = 0;

    let mut reader = body.get_operators_reader()?;
    while !reader.eof() {
        let (op, offset) = reader.read_with_offset()?;
        let offset = u32::try_from(offset).map_err(|_| {
            CompileError::Unsupported("modules larger than 4 GiB (source locations)".into())
        })?;
        translator.builder.set_srcloc(ir::SourceLoc::new(offset));
        if translator.reachable {
            if fuel {
                fuel_pending = fuel_pending.saturating_add(fuel_cost(&op));
                if ends_straight_line(&op) && fuel_pending > 0 {
                    // Every loop iteration branches back to its header, so checking at
                    // backward branches (and at calls and returns, which the environment does)
                    // bounds how far Wasm runs on empty.
                    let backward = match op {
                        Operator::Br { relative_depth }
                        | Operator::BrIf { relative_depth }
                        | Operator::BrOnNull { relative_depth }
                        | Operator::BrOnNonNull { relative_depth } => {
                            translator.targets_loop(relative_depth)
                        }
                        Operator::BrTable { .. } => true,
                        _ => false,
                    };
                    translator
                        .env
                        .consume_fuel(&mut translator.builder, fuel_pending, backward);
                    fuel_pending = 0;
                }
            }
            translator.translate_operator(&op)?;
        } else {
            translator.skip_unreachable_operator(&op);
        }
    }

    let mut builder = translator.builder;
    builder.seal_all_blocks();
    builder.finalize(frontend_config);
    fold_jumps_to_returns(func);
    Ok(())
}

/// Replaces each `jump` to a block that only returns its parameters with that `return`.
///
/// Structured control flow ends most functions with `if … else … end end`: each arm jumps to
/// the `if`'s join block, whose only instruction returns what the arms passed. Cranelift keeps
/// that join (a jump, and moves into the join's parameter registers before the return's) and
/// does not duplicate returns, so this does: each arm then computes its result into the return
/// register and runs the epilogue itself. In recursive code (`fib`) that is two instructions of
/// about thirty per call. A return block with anything else in it (fuel, counters) is left
/// alone, as are conditional branches to it.
fn fold_jumps_to_returns(func: &mut ir::Function) {
    // Blocks whose only instruction returns exactly their parameters, in order, and how many.
    let mut pure_returns = std::collections::HashSet::new();
    for block in func.layout.blocks() {
        let mut insts = func.layout.block_insts(block);
        let (Some(inst), None) = (insts.next(), insts.next()) else {
            continue;
        };
        if func.dfg.insts[inst].opcode() == ir::Opcode::Return
            && func.dfg.inst_args(inst) == func.dfg.block_params(block)
        {
            pure_returns.insert(block);
        }
    }
    if pure_returns.is_empty() {
        return;
    }
    let blocks: Vec<ir::Block> = func.layout.blocks().collect();
    for block in blocks {
        let Some(inst) = func.layout.last_inst(block) else {
            continue;
        };
        let ir::InstructionData::Jump { destination, .. } = func.dfg.insts[inst] else {
            continue;
        };
        let pool = &func.dfg.value_lists;
        if !pure_returns.contains(&destination.block(pool)) {
            continue;
        }
        let args: Option<Vec<Value>> = destination
            .args(pool)
            .map(|arg| match arg {
                BlockArg::Value(value) => Some(value),
                _ => None,
            })
            .collect();
        if let Some(args) = args {
            func.replace(inst).return_(&args);
        }
    }
}

/// What an operator costs in fuel (see `Config::consume_fuel`): one unit, except for the
/// operators that do no work of their own.
fn fuel_cost(op: &Operator<'_>) -> u32 {
    match op {
        Operator::Nop
        | Operator::Drop
        | Operator::Block { .. }
        | Operator::Loop { .. }
        | Operator::End
        | Operator::Else => 0,
        _ => 1,
    }
}

/// Whether `op` ends a stretch of straight-line code: control flow, calls (the callee sees the
/// fuel counter), and `unreachable`. The fuel of the stretch is charged just before it.
fn ends_straight_line(op: &Operator<'_>) -> bool {
    matches!(
        op,
        Operator::Block { .. }
            | Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::Else
            | Operator::End
            | Operator::Br { .. }
            | Operator::BrIf { .. }
            | Operator::BrTable { .. }
            | Operator::Return
            | Operator::Unreachable
            | Operator::Call { .. }
            | Operator::CallIndirect { .. }
            | Operator::ReturnCall { .. }
            | Operator::ReturnCallIndirect { .. }
            | Operator::CallRef { .. }
            | Operator::ReturnCallRef { .. }
            | Operator::BrOnNull { .. }
            | Operator::BrOnNonNull { .. }
    )
}

/// The memory a load or store accesses. Without GC there are no arrays, so `MemArgTarget::Array`
/// cannot pass validation.
fn memory_index(memarg: MemArg) -> u32 {
    match memarg.target {
        MemArgTarget::Memory(memory) => memory,
        MemArgTarget::Array(_) => unreachable!("GC array access, which validation refuses"),
    }
}

fn zero_value(builder: &mut FunctionBuilder<'_>, ty: ir::Type) -> Value {
    match ty {
        F32 => builder.ins().f32const(Ieee32::with_bits(0)),
        F64 => builder.ins().f64const(Ieee64::with_bits(0)),
        I8X16 => vector_zero(builder, I8X16),
        // Integers and references (null is 0).
        _ => builder.ins().iconst(ty, 0),
    }
}

fn vector_zero(builder: &mut FunctionBuilder<'_>, ty: ir::Type) -> Value {
    let zero = builder.func.dfg.constants.insert(vec![0; 16].into());
    builder.ins().vconst(ty, zero)
}

/// One open Wasm control construct (see the module docs).
struct ControlFrame {
    kind: FrameKind,
    /// Where execution continues after `end`; its parameters are the frame's results.
    next: ir::Block,
    num_params: usize,
    num_results: usize,
    /// Value-stack height below the frame's parameters.
    stack_base: usize,
    /// Whether some branch jumps to `next`, making the code after `end` reachable even when the
    /// end of the body is not.
    next_branched_to: bool,
}

enum FrameKind {
    /// A `block`, or the function body.
    Block,
    Loop {
        /// Branch target of the loop's label; its parameters are the loop's parameters.
        header: ir::Block,
    },
    /// A `try_table`: a block whose calls may land in its catch clauses.
    TryTable { landings: Vec<Landing> },
    If {
        /// Where a false condition goes (the `else` arm, or a jump straight to `next`).
        else_block: ir::Block,
        /// The `if`'s parameters, which the `else` arm starts from.
        params: Vec<Value>,
        else_seen: bool,
    },
}

impl ControlFrame {
    /// The block a branch to this frame's label goes to, and how many values it carries.
    fn branch_target(&self) -> (ir::Block, usize) {
        match self.kind {
            FrameKind::Loop { header } => (header, self.num_params),
            FrameKind::Block | FrameKind::TryTable { .. } | FrameKind::If { .. } => {
                (self.next, self.num_results)
            }
        }
    }
}

struct FuncTranslator<'a, E: FuncEnvironment + ?Sized> {
    env: &'a mut E,
    builder: FunctionBuilder<'a>,
    pointer_type: ir::Type,
    locals: Vec<Variable>,
    stack: Vec<Value>,
    control: Vec<ControlFrame>,
    /// False after an unconditional transfer of control, until the enclosing frame ends.
    reachable: bool,
    /// While unreachable: how many `block`/`loop`/`if`s deep inside the dead code we are.
    unreachable_depth: u32,
    /// The catch clauses of the open `try_table`s, outermost first (the environment gets them
    /// innermost first).
    handlers: Vec<ExceptionHandler>,
}

/// A catch clause of a `try_table`, whose landing block is filled when the `try_table` ends.
struct Landing {
    handler: ExceptionHandler,
    /// Index in the control stack of the frame whose label the clause branches to.
    target_frame: usize,
    /// Whether the exnref goes along (`catch_ref`, `catch_all_ref`).
    with_ref: bool,
}

/// Generates `simd_operator_name` from wasmparser's list of SIMD operators: the operator's name
/// (`"I16x8ExtendLowI8x16S"`) for SIMD operators, `None` for the rest. The name's prefix is the
/// shape an operator works on (`simd_lanes`).
macro_rules! define_simd_operator_name {
    ($( @$proposal:ident $op:ident $({ $($arg:ident: $argty:ty),* })? => $visit:ident ($($ann:tt)*))*) => {
        fn simd_operator_name(op: &Operator<'_>) -> Option<&'static str> {
            match op {
                $(Operator::$op { .. } => Some(stringify!($op)),)*
                _ => None,
            }
        }
    };
}
wasmparser::for_each_visit_simd_operator!(define_simd_operator_name);

/// The lane type named by a SIMD operator's prefix: `I16X8` for `i16x8.add` and for
/// `i16x8.extend_low_i8x16_s` (whose operand is then `split_lanes` of it). Only meaningful for
/// operators with a shape prefix; `v128.*` ones get `I8X16`.
fn simd_lanes(op: &Operator<'_>) -> ir::Type {
    let name = simd_operator_name(op).unwrap_or("");
    [
        ("I8x16", I8X16),
        ("I16x8", I16X8),
        ("I32x4", I32X4),
        ("I64x2", I64X2),
        ("F32x4", F32X4),
        ("F64x2", F64X2),
    ]
    .into_iter()
    .find_map(|(prefix, ty)| name.starts_with(prefix).then_some(ty))
    .unwrap_or(I8X16)
}

/// The operand shape of a widening operator (`i32x4.extmul_low_i16x8_s` reads `I16X8`).
fn simd_narrow_lanes(op: &Operator<'_>) -> ir::Type {
    simd_lanes(op)
        .split_lanes()
        .expect("a widening operator has lanes wider than 8 bits")
}

/// `i16x8.relaxed_dot_i8x16_i7x16_s` as weft defines it: for each 16-bit lane `i`, the sum of
/// the products of bytes `2i` and `2i + 1`, both operands' bytes signed, the sum wrapping.
fn relaxed_dot_i8x16(builder: &mut FunctionBuilder<'_>, x: Value, y: Value) -> Value {
    let low = {
        let (x, y) = (builder.ins().swiden_low(x), builder.ins().swiden_low(y));
        builder.ins().imul(x, y)
    };
    let high = {
        let (x, y) = (builder.ins().swiden_high(x), builder.ins().swiden_high(y));
        builder.ins().imul(x, y)
    };
    builder.ins().iadd_pairwise(low, high)
}

/// Flags for vector `bitcast`s: Wasm numbers lanes in little-endian memory order, whatever the
/// host.
const LANE_ORDER: MemFlagsData = MemFlagsData::new().with_endianness(Endianness::Little);

/// `v` (any 128-bit vector) viewed as lanes of type `ty`.
fn lanes_as(builder: &mut FunctionBuilder<'_>, ty: ir::Type, v: Value) -> Value {
    if builder.func.dfg.value_type(v) == ty {
        v
    } else {
        builder.ins().bitcast(ty, LANE_ORDER, v)
    }
}

/// `v` as a `v128` on the value stack, which always holds `I8X16` (see the SIMD banner).
fn to_v128(builder: &mut FunctionBuilder<'_>, v: Value) -> Value {
    lanes_as(builder, I8X16, v)
}

impl<E: FuncEnvironment + ?Sized> FuncTranslator<'_, E> {
    fn translate_operator(&mut self, op: &Operator<'_>) -> Result<(), CompileError> {
        use Operator::*;
        match *op {
            // ---------------------------------------------------------------------------------
            // Control flow
            // ---------------------------------------------------------------------------------
            Nop => {}
            Unreachable => {
                self.builder.ins().trap(trap_code(TrapKind::Unreachable));
                self.reachable = false;
            }
            Block { blockty } => {
                let (params, results) = self.block_signature(blockty)?;
                let next = self.new_block_with_params(&results);
                self.control.push(ControlFrame {
                    kind: FrameKind::Block,
                    next,
                    num_params: params.len(),
                    num_results: results.len(),
                    stack_base: self.stack.len() - params.len(),
                    next_branched_to: false,
                });
            }
            TryTable { ref try_table } => {
                let (params, results) = self.block_signature(try_table.ty)?;
                let next = self.new_block_with_params(&results);
                // Catch labels are relative to the frames outside the `try_table`. The landing
                // blocks stay empty until its `end`: the current block is still being filled.
                let mut landings = Vec::with_capacity(try_table.catches.len());
                for catch in &try_table.catches {
                    let (tag, label, with_ref) = match *catch {
                        wasmparser::Catch::One { tag, label } => (Some(tag), label, false),
                        wasmparser::Catch::OneRef { tag, label } => (Some(tag), label, true),
                        wasmparser::Catch::All { label } => (None, label, false),
                        wasmparser::Catch::AllRef { label } => (None, label, true),
                    };
                    let landing = self.builder.create_block();
                    self.builder.append_block_param(landing, self.pointer_type);
                    let target_frame = self.control.len() - 1 - label as usize;
                    landings.push(Landing {
                        handler: ExceptionHandler { tag, landing },
                        target_frame,
                        with_ref,
                    });
                }
                self.handlers
                    .extend(landings.iter().rev().map(|l| l.handler));
                self.update_exception_handlers();
                self.control.push(ControlFrame {
                    kind: FrameKind::TryTable { landings },
                    next,
                    num_params: params.len(),
                    num_results: results.len(),
                    stack_base: self.stack.len() - params.len(),
                    next_branched_to: false,
                });
            }
            Throw { tag_index } => {
                let n = self.env.module().tag_params(tag_index).len();
                let args = self.pop_n(n);
                self.env.throw(&mut self.builder, tag_index, &args);
                self.reachable = false;
            }
            ThrowRef => {
                let exn = self.pop();
                self.env.throw_ref(&mut self.builder, exn);
                self.reachable = false;
            }
            Loop { blockty } => {
                let (params, results) = self.block_signature(blockty)?;
                let header = self.new_block_with_params(&params);
                let next = self.new_block_with_params(&results);
                let args = self.pop_n(params.len());
                self.jump(header, &args);
                self.builder.switch_to_block(header);
                let stack_base = self.stack.len();
                self.push_block_params(header);
                self.control.push(ControlFrame {
                    kind: FrameKind::Loop { header },
                    next,
                    num_params: params.len(),
                    num_results: results.len(),
                    stack_base,
                    next_branched_to: false,
                });
                self.env.loop_header(&mut self.builder);
            }
            If { blockty } => {
                let condition = self.pop();
                let (params, results) = self.block_signature(blockty)?;
                let then_block = self.builder.create_block();
                let else_block = self.builder.create_block();
                let next = self.new_block_with_params(&results);
                self.builder
                    .ins()
                    .brif(condition, then_block, &[], else_block, &[]);
                self.builder.seal_block(then_block);
                self.builder.seal_block(else_block);
                self.builder.switch_to_block(then_block);
                let stack_base = self.stack.len() - params.len();
                self.control.push(ControlFrame {
                    kind: FrameKind::If {
                        else_block,
                        params: self.stack[stack_base..].to_vec(),
                        else_seen: false,
                    },
                    next,
                    num_params: params.len(),
                    num_results: results.len(),
                    stack_base,
                    next_branched_to: false,
                });
            }
            Else => {
                // The `then` arm falls through to `next`.
                let frame = self.control.last_mut().expect("else outside if");
                let (next, n) = (frame.next, frame.num_results);
                frame.next_branched_to = true;
                let args = self.peek_n(n).to_vec();
                self.jump(next, &args);
                self.enter_else_arm();
            }
            End if self.control.len() == 1 => {
                // The body falls off its end: return right here rather than through the return
                // block, which then serves only branches to the function's label (if any).
                self.return_results();
                self.close_frame();
            }
            End => {
                let frame = self.control.last_mut().expect("end outside any frame");
                let (next, n) = (frame.next, frame.num_results);
                frame.next_branched_to = true;
                let args = self.peek_n(n).to_vec();
                self.jump(next, &args);
                self.close_frame();
            }
            Br { relative_depth } => {
                self.branch(relative_depth);
                self.reachable = false;
            }
            BrIf { relative_depth } => {
                let condition = self.pop();
                let (target, args) = self.branch_target_and_args(relative_depth);
                self.branch_if(condition, target, args);
            }
            BrTable { ref targets } => {
                let index = self.pop();
                let default = targets.default();
                let (default_block, args) = self.branch_target_and_args(default);
                let mut table = Vec::with_capacity(targets.len() as usize);
                for depth in targets.targets() {
                    let (block, _) = self.branch_target_and_args(depth?);
                    table.push(block);
                }
                // Every target of a valid br_table takes the same values, so they travel as
                // arguments of each jump-table entry.
                let pool = &mut self.builder.func.dfg.value_lists;
                let call = |block, pool: &mut _| {
                    BlockCall::new(block, args.iter().copied().map(BlockArg::Value), pool)
                };
                let default_call = call(default_block, pool);
                let calls: Vec<BlockCall> = table.into_iter().map(|b| call(b, pool)).collect();
                let jump_table = self
                    .builder
                    .create_jump_table(JumpTableData::new(default_call, &calls));
                self.builder.ins().br_table(index, jump_table);
                self.reachable = false;
            }
            // Typed function references: a branch on whether the reference on top of the
            // stack is null. `br_on_null` carries the label's values without the reference
            // and keeps it (now known non-null) when it falls through; `br_on_non_null`
            // carries it as the label's last value and drops it when it falls through.
            BrOnNull { relative_depth } => {
                let reference = self.pop();
                let (target, args) = self.branch_target_and_args(relative_depth);
                let is_null = self.builder.ins().icmp_imm_u(IntCC::Equal, reference, 0);
                self.branch_if(is_null, target, args);
                self.push(reference);
            }
            BrOnNonNull { relative_depth } => {
                let reference = *self.stack.last().expect("br_on_non_null on an empty stack");
                let (target, args) = self.branch_target_and_args(relative_depth);
                self.branch_if(reference, target, args);
                self.pop();
            }
            Return => self.return_results(),

            // ---------------------------------------------------------------------------------
            // Calls
            // ---------------------------------------------------------------------------------
            Call { function_index } => self.call(function_index, CallKind::Normal),
            CallIndirect {
                type_index,
                table_index,
            } => self.call_indirect(table_index, type_index, CallKind::Normal),
            // Tail calls end the function like `return`: what follows is dead until the
            // enclosing `end`.
            ReturnCall { function_index } => {
                self.call(function_index, CallKind::Tail);
                self.reachable = false;
            }
            ReturnCallIndirect {
                type_index,
                table_index,
            } => {
                self.call_indirect(table_index, type_index, CallKind::Tail);
                self.reachable = false;
            }
            // The reference's type is the call's type (validated), so no signature check.
            CallRef { type_index } => self.call_ref(type_index, CallKind::Normal),
            ReturnCallRef { type_index } => {
                self.call_ref(type_index, CallKind::Tail);
                self.reachable = false;
            }

            // ---------------------------------------------------------------------------------
            // Parametric instructions
            // ---------------------------------------------------------------------------------
            Drop => {
                self.pop();
            }
            TypedSelect { ty } => {
                check_val_type(ty)?;
                self.select();
            }
            Select => self.select(),

            // ---------------------------------------------------------------------------------
            // Locals and globals
            // ---------------------------------------------------------------------------------
            LocalGet { local_index } => {
                let value = self.builder.use_var(self.locals[local_index as usize]);
                self.push(value);
            }
            LocalSet { local_index } => {
                let value = self.pop();
                self.builder
                    .def_var(self.locals[local_index as usize], value);
            }
            LocalTee { local_index } => {
                let value = *self.stack.last().expect("local.tee on an empty stack");
                self.builder
                    .def_var(self.locals[local_index as usize], value);
            }
            GlobalGet { global_index } => {
                let value = self.env.global_get(&mut self.builder, global_index);
                self.push(value);
            }
            GlobalSet { global_index } => {
                let value = self.pop();
                self.env.global_set(&mut self.builder, global_index, value);
            }

            // ---------------------------------------------------------------------------------
            // Memory: loads and stores
            // ---------------------------------------------------------------------------------
            I32Load { memarg } => self.load(memarg, 4, |b, f, a| b.ins().load(I32, f, a, 0)),
            I64Load { memarg } => self.load(memarg, 8, |b, f, a| b.ins().load(I64, f, a, 0)),
            F32Load { memarg } => self.load(memarg, 4, |b, f, a| b.ins().load(F32, f, a, 0)),
            F64Load { memarg } => self.load(memarg, 8, |b, f, a| b.ins().load(F64, f, a, 0)),
            I32Load8S { memarg } => self.load(memarg, 1, |b, f, a| b.ins().sload8(I32, f, a, 0)),
            I32Load8U { memarg } => self.load(memarg, 1, |b, f, a| b.ins().uload8(I32, f, a, 0)),
            I32Load16S { memarg } => self.load(memarg, 2, |b, f, a| b.ins().sload16(I32, f, a, 0)),
            I32Load16U { memarg } => self.load(memarg, 2, |b, f, a| b.ins().uload16(I32, f, a, 0)),
            I64Load8S { memarg } => self.load(memarg, 1, |b, f, a| b.ins().sload8(I64, f, a, 0)),
            I64Load8U { memarg } => self.load(memarg, 1, |b, f, a| b.ins().uload8(I64, f, a, 0)),
            I64Load16S { memarg } => self.load(memarg, 2, |b, f, a| b.ins().sload16(I64, f, a, 0)),
            I64Load16U { memarg } => self.load(memarg, 2, |b, f, a| b.ins().uload16(I64, f, a, 0)),
            I64Load32S { memarg } => self.load(memarg, 4, |b, f, a| b.ins().sload32(f, a, 0)),
            I64Load32U { memarg } => self.load(memarg, 4, |b, f, a| b.ins().uload32(f, a, 0)),
            I32Store { memarg } | F32Store { memarg } => {
                self.store(memarg, 4, |b, f, v, a| b.ins().store(f, v, a, 0))
            }
            I64Store { memarg } | F64Store { memarg } => {
                self.store(memarg, 8, |b, f, v, a| b.ins().store(f, v, a, 0))
            }
            I32Store8 { memarg } | I64Store8 { memarg } => {
                self.store(memarg, 1, |b, f, v, a| b.ins().istore8(f, v, a, 0))
            }
            I32Store16 { memarg } | I64Store16 { memarg } => {
                self.store(memarg, 2, |b, f, v, a| b.ins().istore16(f, v, a, 0))
            }
            I64Store32 { memarg } => {
                self.store(memarg, 4, |b, f, v, a| b.ins().istore32(f, v, a, 0))
            }

            // ---------------------------------------------------------------------------------
            // Memory: size, grow and bulk operations
            // ---------------------------------------------------------------------------------
            MemorySize { mem } => {
                let size = self.env.memory_size(&mut self.builder, mem);
                self.push(size);
            }
            MemoryGrow { mem } => {
                let delta = self.pop();
                let old = self.env.memory_grow(&mut self.builder, mem, delta);
                self.push(old);
            }
            MemoryFill { mem } => {
                let (dst, value, len) = self.pop3();
                self.env
                    .memory_fill(&mut self.builder, mem, dst, value, len);
            }
            MemoryCopy { dst_mem, src_mem } => {
                let (dst, src, len) = self.pop3();
                self.env
                    .memory_copy(&mut self.builder, dst_mem, src_mem, dst, src, len);
            }
            MemoryInit { data_index, mem } => {
                let (dst, src, len) = self.pop3();
                self.env
                    .memory_init(&mut self.builder, mem, data_index, dst, src, len);
            }
            DataDrop { data_index } => self.env.data_drop(&mut self.builder, data_index),

            // ---------------------------------------------------------------------------------
            // Tables and references
            // ---------------------------------------------------------------------------------
            TableGet { table } => {
                let index = self.pop();
                let value = self.env.table_get(&mut self.builder, table, index);
                self.push(value);
            }
            TableSet { table } => {
                let (index, value) = self.pop2();
                self.env.table_set(&mut self.builder, table, index, value);
            }
            TableSize { table } => {
                let size = self.env.table_size(&mut self.builder, table);
                self.push(size);
            }
            TableGrow { table } => {
                let (init, delta) = self.pop2();
                let old = self.env.table_grow(&mut self.builder, table, init, delta);
                self.push(old);
            }
            TableFill { table } => {
                let (dst, value, len) = self.pop3();
                self.env
                    .table_fill(&mut self.builder, table, dst, value, len);
            }
            TableCopy {
                dst_table,
                src_table,
            } => {
                let (dst, src, len) = self.pop3();
                self.env
                    .table_copy(&mut self.builder, dst_table, src_table, dst, src, len);
            }
            TableInit { elem_index, table } => {
                let (dst, src, len) = self.pop3();
                self.env
                    .table_init(&mut self.builder, table, elem_index, dst, src, len);
            }
            ElemDrop { elem_index } => self.env.elem_drop(&mut self.builder, elem_index),
            RefNull { hty } => {
                check_heap_type(hty)?;
                let null = self.builder.ins().iconst(self.pointer_type, 0);
                self.push(null);
            }
            RefIsNull => {
                let value = self.pop();
                let is_null = self.builder.ins().icmp_imm_u(IntCC::Equal, value, 0);
                self.push_bool(is_null);
            }
            RefAsNonNull => {
                let value = *self
                    .stack
                    .last()
                    .expect("ref.as_non_null on an empty stack");
                self.builder
                    .ins()
                    .trapz(value, trap_code(TrapKind::NullReference));
            }
            RefFunc { function_index } => {
                let func_ref = self.env.ref_func(&mut self.builder, function_index);
                self.push(func_ref);
            }

            // ---------------------------------------------------------------------------------
            // Constants
            // ---------------------------------------------------------------------------------
            I32Const { value } => {
                // Cranelift wants narrow immediates zero-extended.
                let value = self.builder.ins().iconst(I32, i64::from(value as u32));
                self.push(value);
            }
            I64Const { value } => {
                let value = self.builder.ins().iconst(I64, value);
                self.push(value);
            }
            F32Const { value } => {
                let value = self.builder.ins().f32const(Ieee32::with_bits(value.bits()));
                self.push(value);
            }
            F64Const { value } => {
                let value = self.builder.ins().f64const(Ieee64::with_bits(value.bits()));
                self.push(value);
            }

            // ---------------------------------------------------------------------------------
            // Integer comparisons (Cranelift's i8 flags widen to Wasm's i32)
            // ---------------------------------------------------------------------------------
            I32Eqz | I64Eqz => {
                let value = self.pop();
                let is_zero = self.builder.ins().icmp_imm_u(IntCC::Equal, value, 0);
                self.push_bool(is_zero);
            }
            I32Eq | I64Eq => self.icmp(IntCC::Equal),
            I32Ne | I64Ne => self.icmp(IntCC::NotEqual),
            I32LtS | I64LtS => self.icmp(IntCC::SignedLessThan),
            I32LtU | I64LtU => self.icmp(IntCC::UnsignedLessThan),
            I32GtS | I64GtS => self.icmp(IntCC::SignedGreaterThan),
            I32GtU | I64GtU => self.icmp(IntCC::UnsignedGreaterThan),
            I32LeS | I64LeS => self.icmp(IntCC::SignedLessThanOrEqual),
            I32LeU | I64LeU => self.icmp(IntCC::UnsignedLessThanOrEqual),
            I32GeS | I64GeS => self.icmp(IntCC::SignedGreaterThanOrEqual),
            I32GeU | I64GeU => self.icmp(IntCC::UnsignedGreaterThanOrEqual),

            // ---------------------------------------------------------------------------------
            // Float comparisons (all false on NaN except `ne`)
            // ---------------------------------------------------------------------------------
            F32Eq | F64Eq => self.fcmp(FloatCC::Equal),
            F32Ne | F64Ne => self.fcmp(FloatCC::NotEqual),
            F32Lt | F64Lt => self.fcmp(FloatCC::LessThan),
            F32Gt | F64Gt => self.fcmp(FloatCC::GreaterThan),
            F32Le | F64Le => self.fcmp(FloatCC::LessThanOrEqual),
            F32Ge | F64Ge => self.fcmp(FloatCC::GreaterThanOrEqual),

            // ---------------------------------------------------------------------------------
            // Integer arithmetic. Division traps on its own (zero divisor, INT_MIN / -1) with
            // Cranelift's built-in trap codes; shift and rotate amounts are masked as in Wasm.
            // ---------------------------------------------------------------------------------
            I32Clz | I64Clz => self.unary(|b, x| b.ins().clz(x)),
            I32Ctz | I64Ctz => self.unary(|b, x| b.ins().ctz(x)),
            I32Popcnt | I64Popcnt => self.unary(|b, x| b.ins().popcnt(x)),
            I32Add | I64Add => self.binary(|b, x, y| b.ins().iadd(x, y)),
            I32Sub | I64Sub => self.binary(|b, x, y| b.ins().isub(x, y)),
            I32Mul | I64Mul => self.binary(|b, x, y| b.ins().imul(x, y)),
            I32DivS | I64DivS => self.binary(|b, x, y| b.ins().sdiv(x, y)),
            I32DivU | I64DivU => self.binary(|b, x, y| b.ins().udiv(x, y)),
            I32RemS | I64RemS => self.binary(|b, x, y| b.ins().srem(x, y)),
            I32RemU | I64RemU => self.binary(|b, x, y| b.ins().urem(x, y)),
            I32And | I64And => self.binary(|b, x, y| b.ins().band(x, y)),
            I32Or | I64Or => self.binary(|b, x, y| b.ins().bor(x, y)),
            I32Xor | I64Xor => self.binary(|b, x, y| b.ins().bxor(x, y)),
            I32Shl | I64Shl => self.binary(|b, x, y| b.ins().ishl(x, y)),
            I32ShrS | I64ShrS => self.binary(|b, x, y| b.ins().sshr(x, y)),
            I32ShrU | I64ShrU => self.binary(|b, x, y| b.ins().ushr(x, y)),
            I32Rotl | I64Rotl => self.binary(|b, x, y| b.ins().rotl(x, y)),
            I32Rotr | I64Rotr => self.binary(|b, x, y| b.ins().rotr(x, y)),

            // ---------------------------------------------------------------------------------
            // Float arithmetic. Cranelift's fmin/fmax, nearest and the rounding ops already
            // follow Wasm's NaN and signed-zero rules; abs, neg and copysign are bitwise.
            // ---------------------------------------------------------------------------------
            F32Abs | F64Abs => self.unary(|b, x| b.ins().fabs(x)),
            F32Neg | F64Neg => self.unary(|b, x| b.ins().fneg(x)),
            F32Ceil | F64Ceil => self.unary(|b, x| b.ins().ceil(x)),
            F32Floor | F64Floor => self.unary(|b, x| b.ins().floor(x)),
            F32Trunc | F64Trunc => self.unary(|b, x| b.ins().trunc(x)),
            F32Nearest | F64Nearest => self.unary(|b, x| b.ins().nearest(x)),
            F32Sqrt | F64Sqrt => self.unary(|b, x| b.ins().sqrt(x)),
            F32Add | F64Add => self.binary(|b, x, y| b.ins().fadd(x, y)),
            F32Sub | F64Sub => self.binary(|b, x, y| b.ins().fsub(x, y)),
            F32Mul | F64Mul => self.binary(|b, x, y| b.ins().fmul(x, y)),
            F32Div | F64Div => self.binary(|b, x, y| b.ins().fdiv(x, y)),
            F32Min | F64Min => self.binary(|b, x, y| b.ins().fmin(x, y)),
            F32Max | F64Max => self.binary(|b, x, y| b.ins().fmax(x, y)),
            F32Copysign | F64Copysign => self.binary(|b, x, y| b.ins().fcopysign(x, y)),

            // ---------------------------------------------------------------------------------
            // Conversions
            // ---------------------------------------------------------------------------------
            I32WrapI64 => self.unary(|b, x| b.ins().ireduce(I32, x)),
            I64ExtendI32S => self.unary(|b, x| b.ins().sextend(I64, x)),
            I64ExtendI32U => self.unary(|b, x| b.ins().uextend(I64, x)),
            // Trapping float-to-int: Cranelift traps on NaN and overflow itself.
            I32TruncF32S | I32TruncF64S => self.unary(|b, x| b.ins().fcvt_to_sint(I32, x)),
            I32TruncF32U | I32TruncF64U => self.unary(|b, x| b.ins().fcvt_to_uint(I32, x)),
            I64TruncF32S | I64TruncF64S => self.unary(|b, x| b.ins().fcvt_to_sint(I64, x)),
            I64TruncF32U | I64TruncF64U => self.unary(|b, x| b.ins().fcvt_to_uint(I64, x)),
            F32ConvertI32S | F32ConvertI64S => self.unary(|b, x| b.ins().fcvt_from_sint(F32, x)),
            F32ConvertI32U | F32ConvertI64U => self.unary(|b, x| b.ins().fcvt_from_uint(F32, x)),
            F64ConvertI32S | F64ConvertI64S => self.unary(|b, x| b.ins().fcvt_from_sint(F64, x)),
            F64ConvertI32U | F64ConvertI64U => self.unary(|b, x| b.ins().fcvt_from_uint(F64, x)),
            F32DemoteF64 => self.unary(|b, x| b.ins().fdemote(F32, x)),
            F64PromoteF32 => self.unary(|b, x| b.ins().fpromote(F64, x)),
            I32ReinterpretF32 => self.unary(|b, x| b.ins().bitcast(I32, MemFlagsData::new(), x)),
            I64ReinterpretF64 => self.unary(|b, x| b.ins().bitcast(I64, MemFlagsData::new(), x)),
            F32ReinterpretI32 => self.unary(|b, x| b.ins().bitcast(F32, MemFlagsData::new(), x)),
            F64ReinterpretI64 => self.unary(|b, x| b.ins().bitcast(F64, MemFlagsData::new(), x)),

            // ---------------------------------------------------------------------------------
            // Sign extension
            // ---------------------------------------------------------------------------------
            I32Extend8S => self.sign_extend_from(I8, I32),
            I32Extend16S => self.sign_extend_from(I16, I32),
            I64Extend8S => self.sign_extend_from(I8, I64),
            I64Extend16S => self.sign_extend_from(I16, I64),
            I64Extend32S => self.sign_extend_from(I32, I64),

            // ---------------------------------------------------------------------------------
            // Non-trapping float-to-int
            // ---------------------------------------------------------------------------------
            I32TruncSatF32S | I32TruncSatF64S => {
                self.unary(|b, x| b.ins().fcvt_to_sint_sat(I32, x))
            }
            I32TruncSatF32U | I32TruncSatF64U => {
                self.unary(|b, x| b.ins().fcvt_to_uint_sat(I32, x))
            }
            I64TruncSatF32S | I64TruncSatF64S => {
                self.unary(|b, x| b.ins().fcvt_to_sint_sat(I64, x))
            }
            I64TruncSatF32U | I64TruncSatF64U => {
                self.unary(|b, x| b.ins().fcvt_to_uint_sat(I64, x))
            }

            // ---------------------------------------------------------------------------------
            // SIMD: loads, stores and constants. A `v128` is always `I8X16` on the value stack
            // (and so in locals, block parameters, calls and globals); each operator bitcasts
            // to the lane type it works on and back, which the backend turns into nothing.
            // ---------------------------------------------------------------------------------
            V128Load { memarg } => self.load(memarg, 16, |b, f, a| b.ins().load(I8X16, f, a, 0)),
            V128Load8x8S { memarg } => {
                self.load_vector(memarg, 8, |b, f, a| b.ins().sload8x8(f, a, 0))
            }
            V128Load8x8U { memarg } => {
                self.load_vector(memarg, 8, |b, f, a| b.ins().uload8x8(f, a, 0))
            }
            V128Load16x4S { memarg } => {
                self.load_vector(memarg, 8, |b, f, a| b.ins().sload16x4(f, a, 0))
            }
            V128Load16x4U { memarg } => {
                self.load_vector(memarg, 8, |b, f, a| b.ins().uload16x4(f, a, 0))
            }
            V128Load32x2S { memarg } => {
                self.load_vector(memarg, 8, |b, f, a| b.ins().sload32x2(f, a, 0))
            }
            V128Load32x2U { memarg } => {
                self.load_vector(memarg, 8, |b, f, a| b.ins().uload32x2(f, a, 0))
            }
            V128Load8Splat { memarg } => self.load_splat(memarg, I8X16),
            V128Load16Splat { memarg } => self.load_splat(memarg, I16X8),
            V128Load32Splat { memarg } => self.load_splat(memarg, I32X4),
            V128Load64Splat { memarg } => self.load_splat(memarg, I64X2),
            V128Load32Zero { memarg } => self.load_vector(memarg, 4, |b, f, a| {
                let x = b.ins().load(I32, f, a, 0);
                b.ins().scalar_to_vector(I32X4, x)
            }),
            V128Load64Zero { memarg } => self.load_vector(memarg, 8, |b, f, a| {
                let x = b.ins().load(I64, f, a, 0);
                b.ins().scalar_to_vector(I64X2, x)
            }),
            V128Load8Lane { memarg, lane } => self.load_lane(memarg, lane, I8X16),
            V128Load16Lane { memarg, lane } => self.load_lane(memarg, lane, I16X8),
            V128Load32Lane { memarg, lane } => self.load_lane(memarg, lane, I32X4),
            V128Load64Lane { memarg, lane } => self.load_lane(memarg, lane, I64X2),
            V128Store { memarg } => self.store(memarg, 16, |b, f, v, a| b.ins().store(f, v, a, 0)),
            V128Store8Lane { memarg, lane } => self.store_lane(memarg, lane, I8X16),
            V128Store16Lane { memarg, lane } => self.store_lane(memarg, lane, I16X8),
            V128Store32Lane { memarg, lane } => self.store_lane(memarg, lane, I32X4),
            V128Store64Lane { memarg, lane } => self.store_lane(memarg, lane, I64X2),
            V128Const { value } => {
                let constant = self
                    .builder
                    .func
                    .dfg
                    .constants
                    .insert(value.bytes().to_vec().into());
                let value = self.builder.ins().vconst(I8X16, constant);
                self.push(value);
            }

            // ---------------------------------------------------------------------------------
            // SIMD: lanes (lane indices are immediates that validation has range-checked)
            // ---------------------------------------------------------------------------------
            I8x16Shuffle { lanes } => {
                let (x, y) = self.pop2();
                let mask = self.builder.func.dfg.immediates.push(lanes.to_vec().into());
                let value = self.builder.ins().shuffle(x, y, mask);
                self.push(value);
            }
            // Out-of-range indices select zero in both Wasm and Cranelift.
            I8x16Swizzle => self.simd_binary(I8X16, |b, x, y| b.ins().swizzle(x, y)),
            I8x16Splat | I16x8Splat | I32x4Splat | I64x2Splat | F32x4Splat | F64x2Splat => {
                let ty = simd_lanes(op);
                let scalar = self.pop_lane_scalar(ty);
                let value = self.builder.ins().splat(ty, scalar);
                let value = to_v128(&mut self.builder, value);
                self.push(value);
            }
            I8x16ExtractLaneS { lane } | I16x8ExtractLaneS { lane } => {
                self.extract_lane(simd_lanes(op), lane, |b, x| b.ins().sextend(I32, x))
            }
            I8x16ExtractLaneU { lane } | I16x8ExtractLaneU { lane } => {
                self.extract_lane(simd_lanes(op), lane, |b, x| b.ins().uextend(I32, x))
            }
            I32x4ExtractLane { lane }
            | I64x2ExtractLane { lane }
            | F32x4ExtractLane { lane }
            | F64x2ExtractLane { lane } => self.extract_lane(simd_lanes(op), lane, |_, x| x),
            I8x16ReplaceLane { lane }
            | I16x8ReplaceLane { lane }
            | I32x4ReplaceLane { lane }
            | I64x2ReplaceLane { lane }
            | F32x4ReplaceLane { lane }
            | F64x2ReplaceLane { lane } => {
                let ty = simd_lanes(op);
                let scalar = self.pop_lane_scalar(ty);
                let vector = self.pop();
                let vector = lanes_as(&mut self.builder, ty, vector);
                let value = self.builder.ins().insertlane(vector, scalar, lane);
                let value = to_v128(&mut self.builder, value);
                self.push(value);
            }

            // ---------------------------------------------------------------------------------
            // SIMD: comparisons (each lane becomes all ones or all zeros)
            // ---------------------------------------------------------------------------------
            I8x16Eq | I16x8Eq | I32x4Eq | I64x2Eq => self.simd_icmp(op, IntCC::Equal),
            I8x16Ne | I16x8Ne | I32x4Ne | I64x2Ne => self.simd_icmp(op, IntCC::NotEqual),
            I8x16LtS | I16x8LtS | I32x4LtS | I64x2LtS => self.simd_icmp(op, IntCC::SignedLessThan),
            I8x16LtU | I16x8LtU | I32x4LtU => self.simd_icmp(op, IntCC::UnsignedLessThan),
            I8x16GtS | I16x8GtS | I32x4GtS | I64x2GtS => {
                self.simd_icmp(op, IntCC::SignedGreaterThan)
            }
            I8x16GtU | I16x8GtU | I32x4GtU => self.simd_icmp(op, IntCC::UnsignedGreaterThan),
            I8x16LeS | I16x8LeS | I32x4LeS | I64x2LeS => {
                self.simd_icmp(op, IntCC::SignedLessThanOrEqual)
            }
            I8x16LeU | I16x8LeU | I32x4LeU => self.simd_icmp(op, IntCC::UnsignedLessThanOrEqual),
            I8x16GeS | I16x8GeS | I32x4GeS | I64x2GeS => {
                self.simd_icmp(op, IntCC::SignedGreaterThanOrEqual)
            }
            I8x16GeU | I16x8GeU | I32x4GeU => self.simd_icmp(op, IntCC::UnsignedGreaterThanOrEqual),
            F32x4Eq | F64x2Eq => self.simd_fcmp(op, FloatCC::Equal),
            F32x4Ne | F64x2Ne => self.simd_fcmp(op, FloatCC::NotEqual),
            F32x4Lt | F64x2Lt => self.simd_fcmp(op, FloatCC::LessThan),
            F32x4Gt | F64x2Gt => self.simd_fcmp(op, FloatCC::GreaterThan),
            F32x4Le | F64x2Le => self.simd_fcmp(op, FloatCC::LessThanOrEqual),
            F32x4Ge | F64x2Ge => self.simd_fcmp(op, FloatCC::GreaterThanOrEqual),

            // ---------------------------------------------------------------------------------
            // SIMD: bitwise operations and lane tests
            // ---------------------------------------------------------------------------------
            V128Not => self.simd_unary(I8X16, |b, x| b.ins().bnot(x)),
            V128And => self.simd_binary(I8X16, |b, x, y| b.ins().band(x, y)),
            V128AndNot => self.simd_binary(I8X16, |b, x, y| b.ins().band_not(x, y)),
            V128Or => self.simd_binary(I8X16, |b, x, y| b.ins().bor(x, y)),
            V128Xor => self.simd_binary(I8X16, |b, x, y| b.ins().bxor(x, y)),
            V128Bitselect => {
                let (x, y, mask) = self.pop3();
                let value = self.builder.ins().bitselect(mask, x, y);
                self.push(value);
            }
            V128AnyTrue => {
                let x = self.pop();
                let flag = self.builder.ins().vany_true(x);
                self.push_bool(flag);
            }
            I8x16AllTrue | I16x8AllTrue | I32x4AllTrue | I64x2AllTrue => {
                let x = self.pop();
                let x = lanes_as(&mut self.builder, simd_lanes(op), x);
                let flag = self.builder.ins().vall_true(x);
                self.push_bool(flag);
            }
            I8x16Bitmask | I16x8Bitmask | I32x4Bitmask | I64x2Bitmask => {
                let x = self.pop();
                let x = lanes_as(&mut self.builder, simd_lanes(op), x);
                let mask = self.builder.ins().vhigh_bits(I32, x);
                self.push(mask);
            }

            // ---------------------------------------------------------------------------------
            // SIMD: integer lane arithmetic. Cranelift's vector shifts take a scalar amount;
            // Wasm reduces it modulo the lane width, which is made explicit here.
            // ---------------------------------------------------------------------------------
            I8x16Abs | I16x8Abs | I32x4Abs | I64x2Abs => {
                self.simd_unary(simd_lanes(op), |b, x| b.ins().iabs(x))
            }
            I8x16Neg | I16x8Neg | I32x4Neg | I64x2Neg => {
                self.simd_unary(simd_lanes(op), |b, x| b.ins().ineg(x))
            }
            I8x16Popcnt => self.simd_unary(I8X16, |b, x| b.ins().popcnt(x)),
            I8x16Shl | I16x8Shl | I32x4Shl | I64x2Shl => {
                self.simd_shift(op, |b, x, n| b.ins().ishl(x, n))
            }
            I8x16ShrS | I16x8ShrS | I32x4ShrS | I64x2ShrS => {
                self.simd_shift(op, |b, x, n| b.ins().sshr(x, n))
            }
            I8x16ShrU | I16x8ShrU | I32x4ShrU | I64x2ShrU => {
                self.simd_shift(op, |b, x, n| b.ins().ushr(x, n))
            }
            I8x16Add | I16x8Add | I32x4Add | I64x2Add => {
                self.simd_binary(simd_lanes(op), |b, x, y| b.ins().iadd(x, y))
            }
            I8x16Sub | I16x8Sub | I32x4Sub | I64x2Sub => {
                self.simd_binary(simd_lanes(op), |b, x, y| b.ins().isub(x, y))
            }
            I16x8Mul | I32x4Mul | I64x2Mul => {
                self.simd_binary(simd_lanes(op), |b, x, y| b.ins().imul(x, y))
            }
            I8x16AddSatS | I16x8AddSatS => {
                self.simd_binary(simd_lanes(op), |b, x, y| b.ins().sadd_sat(x, y))
            }
            I8x16AddSatU | I16x8AddSatU => {
                self.simd_binary(simd_lanes(op), |b, x, y| b.ins().uadd_sat(x, y))
            }
            I8x16SubSatS | I16x8SubSatS => {
                self.simd_binary(simd_lanes(op), |b, x, y| b.ins().ssub_sat(x, y))
            }
            I8x16SubSatU | I16x8SubSatU => {
                self.simd_binary(simd_lanes(op), |b, x, y| b.ins().usub_sat(x, y))
            }
            I8x16MinS | I16x8MinS | I32x4MinS => {
                self.simd_binary(simd_lanes(op), |b, x, y| b.ins().smin(x, y))
            }
            I8x16MinU | I16x8MinU | I32x4MinU => {
                self.simd_binary(simd_lanes(op), |b, x, y| b.ins().umin(x, y))
            }
            I8x16MaxS | I16x8MaxS | I32x4MaxS => {
                self.simd_binary(simd_lanes(op), |b, x, y| b.ins().smax(x, y))
            }
            I8x16MaxU | I16x8MaxU | I32x4MaxU => {
                self.simd_binary(simd_lanes(op), |b, x, y| b.ins().umax(x, y))
            }
            I8x16AvgrU | I16x8AvgrU => {
                self.simd_binary(simd_lanes(op), |b, x, y| b.ins().avg_round(x, y))
            }
            I16x8Q15MulrSatS => self.simd_binary(I16X8, |b, x, y| b.ins().sqmul_round_sat(x, y)),
            I32x4DotI16x8S => self.simd_binary(I16X8, |b, x, y| {
                // Products of lanes 2i and 2i+1, widened so they cannot overflow, summed.
                let low = {
                    let (x, y) = (b.ins().swiden_low(x), b.ins().swiden_low(y));
                    b.ins().imul(x, y)
                };
                let high = {
                    let (x, y) = (b.ins().swiden_high(x), b.ins().swiden_high(y));
                    b.ins().imul(x, y)
                };
                b.ins().iadd_pairwise(low, high)
            }),

            // ---------------------------------------------------------------------------------
            // SIMD: narrowing (saturating) and widening
            // ---------------------------------------------------------------------------------
            I8x16NarrowI16x8S | I16x8NarrowI32x4S => self
                .simd_binary(simd_lanes(op).merge_lanes().unwrap(), |b, x, y| {
                    b.ins().snarrow(x, y)
                }),
            I8x16NarrowI16x8U | I16x8NarrowI32x4U => self
                .simd_binary(simd_lanes(op).merge_lanes().unwrap(), |b, x, y| {
                    b.ins().unarrow(x, y)
                }),
            I16x8ExtendLowI8x16S | I32x4ExtendLowI16x8S | I64x2ExtendLowI32x4S => {
                self.simd_unary(simd_narrow_lanes(op), |b, x| b.ins().swiden_low(x))
            }
            I16x8ExtendHighI8x16S | I32x4ExtendHighI16x8S | I64x2ExtendHighI32x4S => {
                self.simd_unary(simd_narrow_lanes(op), |b, x| b.ins().swiden_high(x))
            }
            I16x8ExtendLowI8x16U | I32x4ExtendLowI16x8U | I64x2ExtendLowI32x4U => {
                self.simd_unary(simd_narrow_lanes(op), |b, x| b.ins().uwiden_low(x))
            }
            I16x8ExtendHighI8x16U | I32x4ExtendHighI16x8U | I64x2ExtendHighI32x4U => {
                self.simd_unary(simd_narrow_lanes(op), |b, x| b.ins().uwiden_high(x))
            }
            I16x8ExtMulLowI8x16S | I32x4ExtMulLowI16x8S | I64x2ExtMulLowI32x4S => {
                self.simd_binary(simd_narrow_lanes(op), |b, x, y| {
                    let (x, y) = (b.ins().swiden_low(x), b.ins().swiden_low(y));
                    b.ins().imul(x, y)
                })
            }
            I16x8ExtMulHighI8x16S | I32x4ExtMulHighI16x8S | I64x2ExtMulHighI32x4S => self
                .simd_binary(simd_narrow_lanes(op), |b, x, y| {
                    let (x, y) = (b.ins().swiden_high(x), b.ins().swiden_high(y));
                    b.ins().imul(x, y)
                }),
            I16x8ExtMulLowI8x16U | I32x4ExtMulLowI16x8U | I64x2ExtMulLowI32x4U => {
                self.simd_binary(simd_narrow_lanes(op), |b, x, y| {
                    let (x, y) = (b.ins().uwiden_low(x), b.ins().uwiden_low(y));
                    b.ins().imul(x, y)
                })
            }
            I16x8ExtMulHighI8x16U | I32x4ExtMulHighI16x8U | I64x2ExtMulHighI32x4U => self
                .simd_binary(simd_narrow_lanes(op), |b, x, y| {
                    let (x, y) = (b.ins().uwiden_high(x), b.ins().uwiden_high(y));
                    b.ins().imul(x, y)
                }),
            I16x8ExtAddPairwiseI8x16S | I32x4ExtAddPairwiseI16x8S => {
                self.simd_unary(simd_narrow_lanes(op), |b, x| {
                    let (low, high) = (b.ins().swiden_low(x), b.ins().swiden_high(x));
                    b.ins().iadd_pairwise(low, high)
                })
            }
            I16x8ExtAddPairwiseI8x16U | I32x4ExtAddPairwiseI16x8U => {
                self.simd_unary(simd_narrow_lanes(op), |b, x| {
                    let (low, high) = (b.ins().uwiden_low(x), b.ins().uwiden_high(x));
                    b.ins().iadd_pairwise(low, high)
                })
            }

            // ---------------------------------------------------------------------------------
            // SIMD: float lane arithmetic. As for scalars, Cranelift's min/max, rounding and
            // arithmetic follow Wasm's NaN and signed-zero rules. The pseudo-min/max are plain
            // comparisons and selects: `pmin(a, b) = b < a ? b : a`, `pmax(a, b) = a < b ? b : a`.
            // ---------------------------------------------------------------------------------
            F32x4Ceil | F64x2Ceil => self.simd_unary(simd_lanes(op), |b, x| b.ins().ceil(x)),
            F32x4Floor | F64x2Floor => self.simd_unary(simd_lanes(op), |b, x| b.ins().floor(x)),
            F32x4Trunc | F64x2Trunc => self.simd_unary(simd_lanes(op), |b, x| b.ins().trunc(x)),
            F32x4Nearest | F64x2Nearest => {
                self.simd_unary(simd_lanes(op), |b, x| b.ins().nearest(x))
            }
            F32x4Abs | F64x2Abs => self.simd_unary(simd_lanes(op), |b, x| b.ins().fabs(x)),
            F32x4Neg | F64x2Neg => self.simd_unary(simd_lanes(op), |b, x| b.ins().fneg(x)),
            F32x4Sqrt | F64x2Sqrt => self.simd_unary(simd_lanes(op), |b, x| b.ins().sqrt(x)),
            F32x4Add | F64x2Add => self.simd_binary(simd_lanes(op), |b, x, y| b.ins().fadd(x, y)),
            F32x4Sub | F64x2Sub => self.simd_binary(simd_lanes(op), |b, x, y| b.ins().fsub(x, y)),
            F32x4Mul | F64x2Mul => self.simd_binary(simd_lanes(op), |b, x, y| b.ins().fmul(x, y)),
            F32x4Div | F64x2Div => self.simd_binary(simd_lanes(op), |b, x, y| b.ins().fdiv(x, y)),
            F32x4Min | F64x2Min => self.simd_binary(simd_lanes(op), |b, x, y| b.ins().fmin(x, y)),
            F32x4Max | F64x2Max => self.simd_binary(simd_lanes(op), |b, x, y| b.ins().fmax(x, y)),
            F32x4PMin | F64x2PMin => {
                let ty = simd_lanes(op);
                self.simd_binary(ty, |b, x, y| {
                    let y_less = b.ins().fcmp(FloatCC::LessThan, y, x);
                    let y_less = lanes_as(b, ty, y_less);
                    b.ins().bitselect(y_less, y, x)
                })
            }
            F32x4PMax | F64x2PMax => {
                let ty = simd_lanes(op);
                self.simd_binary(ty, |b, x, y| {
                    let x_less = b.ins().fcmp(FloatCC::LessThan, x, y);
                    let x_less = lanes_as(b, ty, x_less);
                    b.ins().bitselect(x_less, y, x)
                })
            }

            // ---------------------------------------------------------------------------------
            // SIMD: conversions. The f64x2 → i32x4 truncations convert to i64 lanes with
            // saturation, then narrow with saturation against zero lanes: the result's upper
            // two lanes are zero, as Wasm's `_zero` requires. The x86-64 backend lowers only
            // this exact shape (an i64x2 `vconst` zero), so it must not be a bitcast zero.
            // ---------------------------------------------------------------------------------
            I32x4TruncSatF32x4S => {
                self.simd_unary(F32X4, |b, x| b.ins().fcvt_to_sint_sat(I32X4, x))
            }
            I32x4TruncSatF32x4U => {
                self.simd_unary(F32X4, |b, x| b.ins().fcvt_to_uint_sat(I32X4, x))
            }
            F32x4ConvertI32x4S => self.simd_unary(I32X4, |b, x| b.ins().fcvt_from_sint(F32X4, x)),
            F32x4ConvertI32x4U => self.simd_unary(I32X4, |b, x| b.ins().fcvt_from_uint(F32X4, x)),
            I32x4TruncSatF64x2SZero => self.simd_unary(F64X2, |b, x| {
                let wide = b.ins().fcvt_to_sint_sat(I64X2, x);
                let zero = vector_zero(b, I64X2);
                b.ins().snarrow(wide, zero)
            }),
            I32x4TruncSatF64x2UZero => self.simd_unary(F64X2, |b, x| {
                let wide = b.ins().fcvt_to_uint_sat(I64X2, x);
                let zero = vector_zero(b, I64X2);
                b.ins().uunarrow(wide, zero)
            }),
            F64x2ConvertLowI32x4S => self.simd_unary(I32X4, |b, x| {
                let wide = b.ins().swiden_low(x);
                b.ins().fcvt_from_sint(F64X2, wide)
            }),
            F64x2ConvertLowI32x4U => self.simd_unary(I32X4, |b, x| {
                let wide = b.ins().uwiden_low(x);
                b.ins().fcvt_from_uint(F64X2, wide)
            }),
            F32x4DemoteF64x2Zero => self.simd_unary(F64X2, |b, x| b.ins().fvdemote(x)),
            F64x2PromoteLowF32x4 => self.simd_unary(F32X4, |b, x| b.ins().fvpromote_low(x)),

            // ---------------------------------------------------------------------------------
            // Relaxed SIMD (WebAssembly 3.0). The spec lets each of these pick among a few
            // results where hardware differs; weft makes one choice per operator, the same on
            // every ISA, so a module computes the same bits everywhere:
            // - swizzle, truncations, min/max, q15mulr: exactly their non-relaxed operators
            //   (out-of-range swizzle lanes are 0; truncations saturate, NaN is 0; min/max
            //   propagate NaN and order -0 < +0; q15mulr saturates).
            // - madd/nmadd: unfused, `a * b + c` and `-(a * b) + c`, each step rounded.
            // - laneselect: a bitwise select (`v128.bitselect`), whatever the mask lanes hold.
            // - dot products: both operands' bytes signed, products summed in 16 bits with
            //   wrapping (only reachable when the second operand has bytes above 127).
            // ---------------------------------------------------------------------------------
            I8x16RelaxedSwizzle => self.translate_operator(&I8x16Swizzle)?,
            I32x4RelaxedTruncF32x4S => self.translate_operator(&I32x4TruncSatF32x4S)?,
            I32x4RelaxedTruncF32x4U => self.translate_operator(&I32x4TruncSatF32x4U)?,
            I32x4RelaxedTruncF64x2SZero => self.translate_operator(&I32x4TruncSatF64x2SZero)?,
            I32x4RelaxedTruncF64x2UZero => self.translate_operator(&I32x4TruncSatF64x2UZero)?,
            F32x4RelaxedMin => self.translate_operator(&F32x4Min)?,
            F32x4RelaxedMax => self.translate_operator(&F32x4Max)?,
            F64x2RelaxedMin => self.translate_operator(&F64x2Min)?,
            F64x2RelaxedMax => self.translate_operator(&F64x2Max)?,
            I16x8RelaxedQ15mulrS => self.translate_operator(&I16x8Q15MulrSatS)?,
            I8x16RelaxedLaneselect
            | I16x8RelaxedLaneselect
            | I32x4RelaxedLaneselect
            | I64x2RelaxedLaneselect => self.translate_operator(&V128Bitselect)?,
            F32x4RelaxedMadd | F64x2RelaxedMadd | F32x4RelaxedNmadd | F64x2RelaxedNmadd => {
                let ty = simd_lanes(op);
                let negate = matches!(op, F32x4RelaxedNmadd | F64x2RelaxedNmadd);
                let (a, b, c) = self.pop3();
                let [a, b, c] = [a, b, c].map(|v| lanes_as(&mut self.builder, ty, v));
                let mut product = self.builder.ins().fmul(a, b);
                if negate {
                    product = self.builder.ins().fneg(product);
                }
                let sum = self.builder.ins().fadd(product, c);
                let value = to_v128(&mut self.builder, sum);
                self.push(value);
            }
            I16x8RelaxedDotI8x16I7x16S => self.simd_binary(I8X16, relaxed_dot_i8x16),
            I32x4RelaxedDotI8x16I7x16AddS => {
                let addend = self.pop();
                let addend = lanes_as(&mut self.builder, I32X4, addend);
                self.simd_binary(I8X16, |b, x, y| {
                    let dot = relaxed_dot_i8x16(b, x, y);
                    let (low, high) = (b.ins().swiden_low(dot), b.ins().swiden_high(dot));
                    let sums = b.ins().iadd_pairwise(low, high);
                    b.ins().iadd(sums, addend)
                });
            }

            // ---------------------------------------------------------------------------------
            // Not supported: proposals weft does not implement (validation refuses most of them
            // before translation; this is the backstop).
            // ---------------------------------------------------------------------------------
            ref other => {
                return Err(CompileError::Unsupported(format!(
                    "operator {other:?} (a WebAssembly proposal weft does not implement)"
                )));
            }
        }
        Ok(())
    }

    /// A direct call of `function_index`, its arguments popped and its results pushed.
    fn call(&mut self, function_index: u32, kind: CallKind) {
        let num_params = self.env.module().func_type(function_index).params().len();
        let args = self.pop_n(num_params);
        let results = self
            .env
            .call(&mut self.builder, function_index, &args, kind);
        self.stack.extend(results);
    }

    /// `call_indirect` through `table` with the expected type `type_index`.
    fn call_indirect(&mut self, table: u32, type_index: u32, kind: CallKind) {
        let callee = self.pop();
        let num_params = self.env.module().types[type_index as usize].params().len();
        let args = self.pop_n(num_params);
        let results =
            self.env
                .call_indirect(&mut self.builder, table, type_index, callee, &args, kind);
        self.stack.extend(results);
    }

    /// `select`: the condition on top, the value for a true one deepest.
    fn select(&mut self) {
        let condition = self.pop();
        let (if_true, if_false) = self.pop2();
        let value = self.builder.ins().select(condition, if_true, if_false);
        self.push(value);
    }

    /// `call_ref` of type `type_index`: the funcref on top, the arguments below it.
    fn call_ref(&mut self, type_index: u32, kind: CallKind) {
        let callee = self.pop();
        let num_params = self.env.module().types[type_index as usize].params().len();
        let args = self.pop_n(num_params);
        let results = self
            .env
            .call_ref(&mut self.builder, type_index, callee, &args, kind);
        self.stack.extend(results);
    }

    /// Branches to `target` with `args` when `condition` is non-zero, and goes on in a fresh
    /// block otherwise.
    fn branch_if(&mut self, condition: Value, target: ir::Block, args: Vec<Value>) {
        let fallthrough = self.builder.create_block();
        let args: Vec<BlockArg> = args.into_iter().map(BlockArg::Value).collect();
        self.builder
            .ins()
            .brif(condition, target, &args, fallthrough, &[]);
        self.builder.seal_block(fallthrough);
        self.builder.switch_to_block(fallthrough);
    }

    /// Walks dead code: only the nesting structure matters, until an `else` or `end` closes the
    /// frame that went dead.
    fn skip_unreachable_operator(&mut self, op: &Operator<'_>) {
        match op {
            Operator::Block { .. }
            | Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::TryTable { .. } => {
                self.unreachable_depth += 1;
            }
            Operator::Else if self.unreachable_depth == 0 => {
                // The `then` arm ended dead, but the `if` head was reachable (frames are only
                // pushed in reachable code), so the `else` arm is.
                self.enter_else_arm();
            }
            Operator::End if self.unreachable_depth == 0 => self.close_frame(),
            Operator::End => self.unreachable_depth -= 1,
            _ => {}
        }
    }

    /// Switches to the `else` arm of the innermost frame, an `if`, with the `if`'s parameters.
    fn enter_else_arm(&mut self) {
        let frame = self.control.last_mut().expect("else outside if");
        let FrameKind::If {
            else_block,
            ref params,
            ref mut else_seen,
        } = frame.kind
        else {
            unreachable!("else closes an if frame in valid Wasm");
        };
        *else_seen = true;
        self.stack.truncate(frame.stack_base);
        self.stack.extend_from_slice(params);
        self.builder.switch_to_block(else_block);
        self.reachable = true;
    }

    /// Ends the innermost frame. The current block, if reachable, has already jumped to `next`.
    fn close_frame(&mut self) {
        let mut frame = self.control.pop().expect("end outside any frame");
        let mut next_reachable = frame.next_branched_to;
        match frame.kind {
            FrameKind::Block => {}
            FrameKind::TryTable { ref mut landings } => {
                let landings = std::mem::take(landings);
                self.handlers.truncate(self.handlers.len() - landings.len());
                self.update_exception_handlers();
                self.fill_landings(landings);
            }
            FrameKind::Loop { header } => self.builder.seal_block(header),
            FrameKind::If {
                else_block,
                params,
                else_seen,
            } => {
                if !else_seen {
                    // No `else`: a false condition passes the parameters straight through.
                    self.builder.switch_to_block(else_block);
                    self.jump(frame.next, &params);
                    next_reachable = true;
                }
            }
        }
        self.stack.truncate(frame.stack_base);
        self.builder.seal_block(frame.next);
        self.unreachable_depth = 0;
        if !next_reachable {
            // Nothing reaches the code after `end`: it stays dead until the enclosing frame ends.
            self.reachable = false;
            return;
        }
        self.builder.switch_to_block(frame.next);
        self.push_block_params(frame.next);
        self.reachable = true;
        if self.control.is_empty() {
            // The end of the function body, reached by branches to its label.
            let results = self.stack.clone();
            self.emit_return(&results);
        }
    }

    /// Tells the environment which catch clauses are in force, innermost first.
    fn update_exception_handlers(&mut self) {
        let innermost_first: Vec<ExceptionHandler> = self.handlers.iter().rev().copied().collect();
        self.env.set_exception_handlers(&innermost_first);
    }

    /// Fills the landing blocks of a `try_table` that just ended (every call that may land in
    /// them has been emitted): each reads the payload and branches to its clause's label.
    fn fill_landings(&mut self, landings: Vec<Landing>) {
        for landing in landings {
            let block = landing.handler.landing;
            self.builder.switch_to_block(block);
            self.builder.seal_block(block);
            let exn = self.builder.block_params(block)[0];
            self.env.landing_pad(&mut self.builder);
            let mut args = match landing.handler.tag {
                Some(tag) => self.env.exception_payload(&mut self.builder, tag, exn),
                None => Vec::new(),
            };
            self.env
                .exception_caught(&mut self.builder, exn, landing.with_ref);
            if landing.with_ref {
                args.push(exn);
            }
            let frame = &mut self.control[landing.target_frame];
            let (target, _) = frame.branch_target();
            if !matches!(frame.kind, FrameKind::Loop { .. }) {
                frame.next_branched_to = true;
            }
            self.jump(target, &args);
        }
    }

    /// An unconditional branch to the label `relative_depth` frames out.
    fn branch(&mut self, relative_depth: u32) {
        let (target, args) = self.branch_target_and_args(relative_depth);
        self.jump(target, &args);
    }

    /// The target block of a branch to `relative_depth`, and the values it carries (left on the
    /// stack). Records that the frame's `next` is branched to.
    /// Whether a branch `relative_depth` frames out goes back to a loop's header.
    fn targets_loop(&self, relative_depth: u32) -> bool {
        let index = self.control.len() - 1 - relative_depth as usize;
        matches!(self.control[index].kind, FrameKind::Loop { .. })
    }

    fn branch_target_and_args(&mut self, relative_depth: u32) -> (ir::Block, Vec<Value>) {
        let index = self.control.len() - 1 - relative_depth as usize;
        let frame = &mut self.control[index];
        let (target, n) = frame.branch_target();
        if !matches!(frame.kind, FrameKind::Loop { .. }) {
            frame.next_branched_to = true;
        }
        (target, self.peek_n(n).to_vec())
    }

    /// Returns the function's results from the top of the stack (`return`, or falling off the
    /// body's end); what follows is dead until the enclosing `end`.
    fn return_results(&mut self) {
        let n = self.control[0].num_results;
        let results = self.peek_n(n).to_vec();
        self.emit_return(&results);
    }

    /// Returns `results`, with the environment's work before every return.
    fn emit_return(&mut self, results: &[Value]) {
        self.env.before_return(&mut self.builder);
        self.builder.ins().return_(results);
        self.reachable = false;
    }

    fn jump(&mut self, block: ir::Block, args: &[Value]) {
        let args: Vec<BlockArg> = args.iter().copied().map(BlockArg::Value).collect();
        self.builder.ins().jump(block, &args);
    }

    /// The parameter and result types of a block type.
    ///
    /// # Errors
    /// `CompileError::Unsupported` for a GC value type (a type index names a function type,
    /// which the parser has checked).
    fn block_signature(
        &self,
        blockty: BlockType,
    ) -> Result<(Vec<ir::Type>, Vec<ir::Type>), CompileError> {
        Ok(match blockty {
            BlockType::Empty => (Vec::new(), Vec::new()),
            BlockType::Type(ty) => {
                check_val_type(ty)?;
                (Vec::new(), vec![ir_type(ty, self.pointer_type)])
            }
            BlockType::FuncType(index) => {
                let ty = &self.env.module().types[index as usize];
                let convert =
                    |tys: &[ValType]| tys.iter().map(|&t| ir_type(t, self.pointer_type)).collect();
                (convert(ty.params()), convert(ty.results()))
            }
        })
    }

    fn new_block_with_params(&mut self, types: &[ir::Type]) -> ir::Block {
        let block = self.builder.create_block();
        for &ty in types {
            self.builder.append_block_param(block, ty);
        }
        block
    }

    fn push_block_params(&mut self, block: ir::Block) {
        let params = self.builder.block_params(block);
        self.stack.extend_from_slice(params);
    }

    // -----------------------------------------------------------------------------------------
    // Value stack
    // -----------------------------------------------------------------------------------------

    fn push(&mut self, value: Value) {
        self.stack.push(value);
    }

    /// Pushes an `icmp`/`fcmp` result as Wasm's i32 boolean.
    fn push_bool(&mut self, flag: Value) {
        let value = self.builder.ins().uextend(I32, flag);
        self.push(value);
    }

    fn pop(&mut self) -> Value {
        self.stack.pop().expect("value stack underflow")
    }

    /// Pops two values, returned in push order.
    fn pop2(&mut self) -> (Value, Value) {
        let b = self.pop();
        let a = self.pop();
        (a, b)
    }

    /// Pops three values, returned in push order.
    fn pop3(&mut self) -> (Value, Value, Value) {
        let c = self.pop();
        let (a, b) = self.pop2();
        (a, b, c)
    }

    /// Pops `n` values, returned in push order.
    fn pop_n(&mut self, n: usize) -> Vec<Value> {
        self.stack.split_off(self.stack.len() - n)
    }

    /// The top `n` values, in push order.
    fn peek_n(&self, n: usize) -> &[Value] {
        &self.stack[self.stack.len() - n..]
    }

    // -----------------------------------------------------------------------------------------
    // Shapes of operators
    // -----------------------------------------------------------------------------------------

    fn unary(&mut self, emit: impl FnOnce(&mut FunctionBuilder<'_>, Value) -> Value) {
        let x = self.pop();
        let value = emit(&mut self.builder, x);
        self.push(value);
    }

    fn binary(&mut self, emit: impl FnOnce(&mut FunctionBuilder<'_>, Value, Value) -> Value) {
        let (x, y) = self.pop2();
        let value = emit(&mut self.builder, x, y);
        self.push(value);
    }

    fn icmp(&mut self, cc: IntCC) {
        let (x, y) = self.pop2();
        let flag = self.builder.ins().icmp(cc, x, y);
        self.push_bool(flag);
    }

    fn fcmp(&mut self, cc: FloatCC) {
        let (x, y) = self.pop2();
        let flag = self.builder.ins().fcmp(cc, x, y);
        self.push_bool(flag);
    }

    /// `iN.extendM_s`: sign-extends the low `narrow` bits of a `wide` value.
    fn sign_extend_from(&mut self, narrow: ir::Type, wide: ir::Type) {
        self.unary(|b, x| {
            let low = b.ins().ireduce(narrow, x);
            b.ins().sextend(wide, low)
        });
    }

    /// A SIMD operator on one vector viewed as `ty` lanes; the result goes back as a `v128`.
    fn simd_unary(
        &mut self,
        ty: ir::Type,
        emit: impl FnOnce(&mut FunctionBuilder<'_>, Value) -> Value,
    ) {
        let x = self.pop();
        let x = lanes_as(&mut self.builder, ty, x);
        let value = emit(&mut self.builder, x);
        let value = to_v128(&mut self.builder, value);
        self.push(value);
    }

    /// A SIMD operator on two vectors viewed as `ty` lanes; the result goes back as a `v128`.
    fn simd_binary(
        &mut self,
        ty: ir::Type,
        emit: impl FnOnce(&mut FunctionBuilder<'_>, Value, Value) -> Value,
    ) {
        let (x, y) = self.pop2();
        let x = lanes_as(&mut self.builder, ty, x);
        let y = lanes_as(&mut self.builder, ty, y);
        let value = emit(&mut self.builder, x, y);
        let value = to_v128(&mut self.builder, value);
        self.push(value);
    }

    fn simd_icmp(&mut self, op: &Operator<'_>, cc: IntCC) {
        self.simd_binary(simd_lanes(op), |b, x, y| b.ins().icmp(cc, x, y));
    }

    fn simd_fcmp(&mut self, op: &Operator<'_>, cc: FloatCC) {
        self.simd_binary(simd_lanes(op), |b, x, y| b.ins().fcmp(cc, x, y));
    }

    /// A lane-wise shift by an i32 amount, taken modulo the lane width as Wasm specifies.
    fn simd_shift(
        &mut self,
        op: &Operator<'_>,
        emit: impl FnOnce(&mut FunctionBuilder<'_>, Value, Value) -> Value,
    ) {
        let ty = simd_lanes(op);
        let amount = self.pop();
        let mask = self
            .builder
            .ins()
            .iconst(I32, i64::from(ty.lane_bits() - 1));
        let amount = self.builder.ins().band(amount, mask);
        let x = self.pop();
        let x = lanes_as(&mut self.builder, ty, x);
        let value = emit(&mut self.builder, x, amount);
        let value = to_v128(&mut self.builder, value);
        self.push(value);
    }

    /// Pops the scalar operand of a splat or replace-lane for `ty` lanes: i8 and i16 lanes take
    /// the low bits of an i32.
    fn pop_lane_scalar(&mut self, ty: ir::Type) -> Value {
        let scalar = self.pop();
        let lane = ty.lane_type();
        if lane == I8 || lane == I16 {
            self.builder.ins().ireduce(lane, scalar)
        } else {
            scalar
        }
    }

    fn extract_lane(
        &mut self,
        ty: ir::Type,
        lane: u8,
        extend: impl FnOnce(&mut FunctionBuilder<'_>, Value) -> Value,
    ) {
        let vector = self.pop();
        let vector = lanes_as(&mut self.builder, ty, vector);
        let scalar = self.builder.ins().extractlane(vector, lane);
        let value = extend(&mut self.builder, scalar);
        self.push(value);
    }

    /// A load that produces a vector of any lane type, pushed as a `v128`.
    fn load_vector(
        &mut self,
        memarg: MemArg,
        access_size: u32,
        emit: impl FnOnce(&mut FunctionBuilder<'_>, MemFlagsData, Value) -> Value,
    ) {
        self.load(memarg, access_size, |b, f, a| {
            let value = emit(b, f, a);
            to_v128(b, value)
        });
    }

    /// `v128.loadN_splat`: one lane's worth of memory copied into every lane of `ty`.
    fn load_splat(&mut self, memarg: MemArg, ty: ir::Type) {
        let lane = ty.lane_type();
        self.load_vector(memarg, lane.bytes(), |b, f, a| {
            let scalar = b.ins().load(lane, f, a, 0);
            b.ins().splat(ty, scalar)
        });
    }

    /// `v128.loadN_lane`: the operands are the address, then the vector to insert into.
    fn load_lane(&mut self, memarg: MemArg, lane: u8, ty: ir::Type) {
        let vector = self.pop();
        let lane_type = ty.lane_type();
        self.load_vector(memarg, lane_type.bytes(), |b, f, a| {
            let scalar = b.ins().load(lane_type, f, a, 0);
            let vector = lanes_as(b, ty, vector);
            b.ins().insertlane(vector, scalar, lane)
        });
    }

    /// `v128.storeN_lane`: stores lane `lane` of the vector viewed as `ty` lanes.
    fn store_lane(&mut self, memarg: MemArg, lane: u8, ty: ir::Type) {
        self.store(memarg, ty.lane_type().bytes(), |b, f, v, a| {
            let vector = lanes_as(b, ty, v);
            let scalar = b.ins().extractlane(vector, lane);
            b.ins().store(f, scalar, a, 0)
        });
    }

    fn load(
        &mut self,
        memarg: MemArg,
        access_size: u32,
        emit: impl FnOnce(&mut FunctionBuilder<'_>, MemFlagsData, Value) -> Value,
    ) {
        let index = self.pop();
        let (addr, flags) = self.env.heap_address(
            &mut self.builder,
            memory_index(memarg),
            index,
            memarg.offset,
            access_size,
        );
        let value = emit(&mut self.builder, flags, addr);
        self.push(value);
    }

    fn store(
        &mut self,
        memarg: MemArg,
        access_size: u32,
        emit: impl FnOnce(&mut FunctionBuilder<'_>, MemFlagsData, Value, Value) -> ir::Inst,
    ) {
        let (index, value) = self.pop2();
        let (addr, flags) = self.env.heap_address(
            &mut self.builder,
            memory_index(memarg),
            index,
            memarg.offset,
            access_size,
        );
        emit(&mut self.builder, flags, value, addr);
    }
}
