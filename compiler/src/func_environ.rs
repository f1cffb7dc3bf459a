//! weft's [`FuncEnvironment`]: how compiled code reaches memories, tables, globals, other
//! functions and the runtime's builtins, following the layout in `weft_environ::vmoffsets` and
//! the builtin list in `weft_environ::builtins`.

use cranelift_codegen::entity::EntityRef;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{I8, I32, I64};
use cranelift_codegen::ir::{
    self, AbiParam, ArgumentPurpose, BlockArg, ExceptionTableData, ExceptionTableItem,
    ExceptionTag, ExtFuncData, ExternalName, InstBuilder, MemFlagsData, Signature,
    UserExternalName, Value,
};
use cranelift_codegen::isa::CallConv;
use cranelift_frontend::{FunctionBuilder, Variable};
use weft_environ::vmoffsets::{VMOffsets, exception, func_ref, memory, store_context, table};
use weft_environ::{BuiltinFunction, BuiltinType, ModuleInfo, TrapKind};

use crate::MemoryBounds;
use crate::environ::{CallKind, ExceptionHandler, FuncEnvironment, ir_type, wasm_signature};
use crate::traps::trap_code;

/// Flags for loads of VM structure fields that never change while code runs (pointers in the
/// vmctx, a guard-mode memory's base).
fn readonly() -> MemFlagsData {
    MemFlagsData::trusted().with_readonly().with_can_move()
}

/// The environment for translating one function of `module`.
pub struct WeftFuncEnvironment<'a> {
    pub module: &'a ModuleInfo,
    pub offsets: &'a VMOffsets,
    /// Where memories lie, and so which accesses need a check.
    pub memory: MemoryBounds,
    pub pointer_type: ir::Type,
    /// The platform calling convention, used for builtins.
    pub host_call_conv: CallConv,
    /// Emit epoch checks at function entries and loop headers.
    pub epoch_interruption: bool,
    /// Emit fuel accounting.
    pub consume_fuel: bool,
    /// The store's fuel while this function runs (with fuel): kept in a variable, written
    /// back to the store context before calls and returns and read again after calls.
    pub fuel_var: Option<Variable>,
    /// The store's epoch deadline (with epoch checks), likewise: it changes only in calls.
    pub deadline_var: Option<Variable>,
    /// The catch clauses of the open `try_table`s, innermost first.
    pub handlers: Vec<ExceptionHandler>,
    /// Whether a direct call's target lies in the same code as the caller (a PC-relative
    /// call; eager compilation), or anywhere (an absolute address; lazy compilation, where
    /// each function is placed on its own and calls go to the callee's entry stub).
    pub colocated_calls: bool,
}

/// What a call that returns calls.
#[derive(Clone, Copy)]
enum Callee {
    Direct(ir::FuncRef),
    Indirect(ir::SigRef, Value),
}

impl WeftFuncEnvironment<'_> {
    /// The store context's address.
    fn store_context(&self, builder: &mut FunctionBuilder) -> Value {
        let vmctx = self.vmctx(builder);
        builder.ins().load(
            self.pointer_type,
            readonly(),
            vmctx,
            VMOffsets::STORE_CONTEXT as i32,
        )
    }

    /// Branches to a cold block that writes the counters back, calls `builtin` (a status
    /// builtin: it traps or returns) and reads them again, when `condition` holds; continues in
    /// a fresh block either way.
    fn call_builtin_if(
        &mut self,
        builder: &mut FunctionBuilder,
        condition: Value,
        builtin: BuiltinFunction,
    ) {
        let cold = builder.create_block();
        let next = builder.create_block();
        builder.set_cold_block(cold);
        builder.ins().brif(condition, cold, &[], next, &[]);
        builder.seal_block(cold);
        builder.switch_to_block(cold);
        self.spill_counters(builder);
        self.call_builtin(builder, builtin, &[]);
        self.reload_counters_after(builder, true);
        builder.ins().jump(next, &[]);
        builder.seal_block(next);
        builder.switch_to_block(next);
    }

    /// Writes the fuel variable back to the store context (before a call, a return, or a
    /// builtin that reads it).
    fn spill_counters(&mut self, builder: &mut FunctionBuilder) {
        if let Some(fuel) = self.fuel_var {
            let value = builder.use_var(fuel);
            let store = self.store_context(builder);
            builder
                .ins()
                .store(MemFlagsData::trusted(), value, store, store_context::FUEL);
        }
    }

    /// Reads the fuel and (with `deadline`) the epoch deadline into their variables: both at
    /// entry and after the builtins, the fuel alone after calls. A callee can move the deadline
    /// only by yielding, and a stale deadline costs at most one call of `epoch_interrupt`,
    /// which compares with the store's own value and reloads; fuel must be exact.
    fn reload_counters_after(&mut self, builder: &mut FunctionBuilder, deadline: bool) {
        let deadline = self.deadline_var.filter(|_| deadline);
        if self.fuel_var.is_none() && deadline.is_none() {
            return;
        }
        let store = self.store_context(builder);
        if let Some(fuel) = self.fuel_var {
            let value =
                builder
                    .ins()
                    .load(I64, MemFlagsData::trusted(), store, store_context::FUEL);
            builder.def_var(fuel, value);
        }
        if let Some(deadline) = deadline {
            let value = builder.ins().load(
                I64,
                MemFlagsData::trusted(),
                store,
                store_context::EPOCH_DEADLINE,
            );
            builder.def_var(deadline, value);
        }
    }

    /// The fuel check: calls `out_of_fuel` once the fuel is below zero. Stretches of code only
    /// subtract their cost; the check runs where control can go on for long or leave: at
    /// backward branches (every loop iteration takes one), calls and returns. So the operators between
    /// the point where the fuel ran out and the next check still run (never a loop's worth),
    /// and the count itself stays exact.
    fn fuel_check(&mut self, builder: &mut FunctionBuilder) {
        let Some(fuel) = self.fuel_var else {
            return;
        };
        let value = builder.use_var(fuel);
        let overdrawn = builder.ins().icmp_imm_s(IntCC::SignedLessThan, value, 0);
        self.call_builtin_if(builder, overdrawn, BuiltinFunction::OutOfFuel);
    }

    /// The epoch check: calls `epoch_interrupt` once the engine's epoch reaches the store's
    /// deadline. The epoch is loaded atomically, so no optimization reuses an older value.
    fn epoch_check(&mut self, builder: &mut FunctionBuilder) {
        let Some(deadline) = self.deadline_var else {
            return;
        };
        let store = self.store_context(builder);
        let counter = builder.ins().load(
            self.pointer_type,
            readonly(),
            store,
            store_context::EPOCH_COUNTER,
        );
        let epoch = builder
            .ins()
            .atomic_load(I64, MemFlagsData::trusted(), counter);
        let deadline = builder.use_var(deadline);
        let reached = builder
            .ins()
            .icmp(IntCC::UnsignedGreaterThanOrEqual, epoch, deadline);
        self.call_builtin_if(builder, reached, BuiltinFunction::EpochInterrupt);
    }

    /// Emits a call with `emit`: the fuel is written back before it and read again after it
    /// (a tail call does not come back).
    fn around_call(
        &mut self,
        builder: &mut FunctionBuilder,
        kind: CallKind,
        emit: impl FnOnce(&mut Self, &mut FunctionBuilder) -> Vec<Value>,
    ) -> Vec<Value> {
        self.fuel_check(builder);
        self.spill_counters(builder);
        let results = emit(self, builder);
        if kind == CallKind::Normal {
            self.reload_counters_after(builder, false);
        }
        results
    }

    fn vmctx(&self, builder: &FunctionBuilder) -> Value {
        builder
            .func
            .special_param(ArgumentPurpose::VMContext)
            .expect("Wasm functions take a vmctx")
    }

    /// Loads the pointer stored at `offset` in the vmctx.
    fn vmctx_ptr(&self, builder: &mut FunctionBuilder, offset: u32) -> Value {
        let vmctx = self.vmctx(builder);
        builder
            .ins()
            .load(self.pointer_type, readonly(), vmctx, offset as i32)
    }

    /// The IR type of a builtin parameter or result.
    fn builtin_type(&self, ty: BuiltinType) -> ir::Type {
        match ty {
            BuiltinType::U32 => I32,
            BuiltinType::U64 => I64,
            BuiltinType::Reference => self.pointer_type,
            BuiltinType::Status => I8,
        }
    }

    /// Calls builtin `builtin` with `args` (the vmctx is prepended), with the signature the
    /// builtin list declares. A builtin that returns a status traps with `Recorded` when it
    /// reports failure and yields no value; otherwise the result, if any, is returned.
    fn call_builtin(
        &mut self,
        builder: &mut FunctionBuilder,
        builtin: BuiltinFunction,
        args: &[Value],
    ) -> Option<Value> {
        debug_assert!(
            args.len() == builtin.params().len()
                && args.iter().zip(builtin.params()).all(|(&arg, &ty)| builder
                    .func
                    .dfg
                    .value_type(arg)
                    == self.builtin_type(ty)),
            "arguments of {} do not match its declaration",
            builtin.name()
        );
        let sig = self.builtin_signature(builder, builtin);
        let callee = self.builtin_address(builder, builtin);
        let vmctx = self.vmctx(builder);
        let mut all_args = vec![vmctx];
        all_args.extend_from_slice(args);
        let call = builder.ins().call_indirect(sig, callee, &all_args);
        let result = builder.inst_results(call).first().copied();
        if builtin.preserves_registers() {
            // Its outcome is in the store context (it returns nothing).
            let store = self.store_context(builder);
            let ok = builder.ins().load(
                I8,
                MemFlagsData::trusted(),
                store,
                store_context::CHECK_STATUS,
            );
            builder.ins().trapz(ok, trap_code(TrapKind::Recorded));
            return None;
        }
        if builtin.result() == Some(BuiltinType::Status) {
            let ok = result.expect("a status result");
            builder.ins().trapz(ok, trap_code(TrapKind::Recorded));
            return None;
        }
        result
    }

    fn table_definition(&self, builder: &mut FunctionBuilder, table: u32) -> Value {
        self.vmctx_ptr(builder, self.offsets.table(table))
    }

    /// The address of element `index` (an i32, or an i64 for a 64-bit table) of `table`, after
    /// a bounds check that traps with `kind`.
    fn table_element_address(
        &self,
        builder: &mut FunctionBuilder,
        table: u32,
        index: Value,
        kind: TrapKind,
    ) -> Value {
        let definition = self.table_definition(builder, table);
        let len = builder.ins().load(
            I64,
            MemFlagsData::trusted(),
            definition,
            table::CURRENT_ELEMENTS,
        );
        let index = to_u64(builder, index);
        let out_of_bounds = builder
            .ins()
            .icmp(IntCC::UnsignedGreaterThanOrEqual, index, len);
        builder.ins().trapnz(out_of_bounds, trap_code(kind));
        let base = builder.ins().load(
            self.pointer_type,
            MemFlagsData::trusted(),
            definition,
            table::BASE,
        );
        let byte_offset = builder
            .ins()
            .imul_imm_u(index, i64::from(table::ELEMENT_SIZE));
        builder.ins().iadd(base, byte_offset)
    }

    fn i32_const(builder: &mut FunctionBuilder, value: u32) -> Value {
        builder.ins().iconst(I32, i64::from(value))
    }

    /// `heap_address` for a 64-bit memory (`index` an i64). No reservation can hold every
    /// address such a memory may be given, so whatever the memory bounds, every access is
    /// checked: `index + offset + access_size <= current length`, computed without wrapping
    /// (a sum past `u64::MAX` traps as out of bounds too). The runtime may move a 64-bit
    /// memory when it grows, so its base is loaded at each access.
    fn heap_address64(
        &self,
        builder: &mut FunctionBuilder,
        definition: Value,
        index: Value,
        offset: u64,
        access_size: u32,
    ) -> (Value, MemFlagsData) {
        let oob = trap_code(TrapKind::MemoryOutOfBounds);
        let end = match offset.checked_add(u64::from(access_size)) {
            Some(reach) => {
                let reach = builder.ins().iconst(I64, reach as i64);
                builder.ins().uadd_overflow_trap(index, reach, oob)
            }
            // An offset this close to 2^64 leaves no room for any index: two steps, each of
            // which may trap.
            None => {
                let offset = builder.ins().iconst(I64, offset as i64);
                let size = builder.ins().iconst(I64, i64::from(access_size));
                let start = builder.ins().uadd_overflow_trap(index, offset, oob);
                builder.ins().uadd_overflow_trap(start, size, oob)
            }
        };
        let len = builder.ins().load(
            I64,
            MemFlagsData::trusted(),
            definition,
            memory::CURRENT_LENGTH,
        );
        let out_of_bounds = builder.ins().icmp(IntCC::UnsignedGreaterThan, end, len);
        builder.ins().trapnz(out_of_bounds, oob);
        let base = builder.ins().load(
            self.pointer_type,
            MemFlagsData::trusted(),
            definition,
            memory::BASE,
        );
        let mut address = builder.ins().iadd(base, index);
        if offset != 0 {
            address = builder.ins().iadd_imm_u(address, offset as i64);
        }
        // The check above is the only one: the access cannot fault.
        let flags = MemFlagsData::new().with_trap_code(Some(oob));
        (address, flags)
    }

    /// Whether memory `index` is a 64-bit memory (its addresses are i64).
    fn memory64(&self, index: u32) -> bool {
        self.module.memories[index as usize].memory64
    }

    /// Whether table `index` is a 64-bit table (its indices are i64).
    fn table64(&self, index: u32) -> bool {
        self.module.tables[index as usize].table64
    }

    /// A builtin's u64 count or old size as the Wasm result for an address space of 64 bits
    /// (as is) or 32 bits (its low half: `u64::MAX`, a failure, becomes -1).
    fn index_result(builder: &mut FunctionBuilder, value: Value, is_64: bool) -> Value {
        if is_64 {
            value
        } else {
            builder.ins().ireduce(I32, value)
        }
    }

    /// A call that returns, with its results. Outside `try_table` a plain call; inside, a
    /// `try_call` whose exception table names this function's vmctx as the context the
    /// runtime reads tag indices against, then the open catch clauses innermost first, each
    /// landing block receiving the exnref (the first payload register). The normal return
    /// continues in a fresh block: no check on that path, the runtime finds the handler from
    /// the return address when something throws.
    fn returning_call(
        &self,
        builder: &mut FunctionBuilder,
        callee: Callee,
        args: &[Value],
    ) -> Vec<Value> {
        if self.handlers.is_empty() {
            let call = match callee {
                Callee::Direct(func) => builder.ins().call(func, args),
                Callee::Indirect(sig, code) => builder.ins().call_indirect(sig, code, args),
            };
            return builder.inst_results(call).to_vec();
        }
        let sig = match callee {
            Callee::Direct(func) => builder.func.dfg.ext_funcs[func].signature,
            Callee::Indirect(sig, _) => sig,
        };
        let returns: Vec<ir::Type> = builder.func.dfg.signatures[sig]
            .returns
            .iter()
            .map(|r| r.value_type)
            .collect();
        let continuation = builder.create_block();
        let mut results = Vec::with_capacity(returns.len());
        for (i, &ty) in returns.iter().enumerate() {
            builder.append_block_param(continuation, ty);
            results.push(BlockArg::TryCallRet(i as u32));
        }
        let normal = builder.func.dfg.block_call(continuation, &results);
        let vmctx = self.vmctx(builder);
        let mut items = vec![ExceptionTableItem::Context(vmctx)];
        for handler in &self.handlers {
            let target = builder
                .func
                .dfg
                .block_call(handler.landing, &[BlockArg::TryCallExn(0)]);
            items.push(match handler.tag {
                Some(tag) => ExceptionTableItem::Tag(ExceptionTag::new(tag as usize), target),
                None => ExceptionTableItem::Default(target),
            });
        }
        let table = builder
            .func
            .dfg
            .exception_tables
            .push(ExceptionTableData::new(sig, normal, items));
        match callee {
            Callee::Direct(func) => builder.ins().try_call(func, args, table),
            Callee::Indirect(_, code) => builder.ins().try_call_indirect(code, args, table),
        };
        builder.seal_block(continuation);
        builder.switch_to_block(continuation);
        builder.block_params(continuation).to_vec()
    }

    /// Throws `exn` (non-null) through the `throw_ref` stub, as a call inside the open
    /// `try_table`s, so a handler of this very function catches it too. The stub returns only
    /// when nothing in the activation catches the exception, which it has recorded: trap.
    /// (`builtin_signature` of `ThrowRef` is the platform C convention's.)
    fn throw_exception(&mut self, builder: &mut FunctionBuilder, exn: Value) {
        self.fuel_check(builder);
        self.spill_counters(builder);
        let sig = self.builtin_signature(builder, BuiltinFunction::ThrowRef);
        let mut sig = builder.func.dfg.signatures[sig].clone();
        if !self.handlers.is_empty() {
            // As a `try_call`, the stub's call must clobber every register, as Wasm calls do
            // (the resumed handler gets only sp and fp back): Cranelift's `preserve_all`, whose
            // arguments are the C convention's, does on exceptional edges. Its normal return
            // is followed by a trap only.
            sig.call_conv = CallConv::PreserveAll;
        }
        let sig = builder.import_signature(sig);
        let stub = self.builtin_address(builder, BuiltinFunction::ThrowRef);
        let find = self.builtin_address(builder, BuiltinFunction::FindHandler);
        let vmctx = self.vmctx(builder);
        self.returning_call(builder, Callee::Indirect(sig, stub), &[vmctx, exn, find]);
        builder.ins().trap(trap_code(TrapKind::Recorded));
    }

    /// The Cranelift signature of `builtin`'s call.
    fn builtin_signature(
        &self,
        builder: &mut FunctionBuilder,
        builtin: BuiltinFunction,
    ) -> ir::SigRef {
        let call_conv = if builtin.preserves_registers() {
            CallConv::PreserveAll
        } else {
            self.host_call_conv
        };
        let mut sig = Signature::new(call_conv);
        sig.params.push(AbiParam::new(self.pointer_type));
        sig.params.extend(
            builtin
                .params()
                .iter()
                .map(|&t| AbiParam::new(self.builtin_type(t))),
        );
        sig.returns.extend(
            builtin
                .result()
                .map(|t| AbiParam::new(self.builtin_type(t))),
        );
        builder.import_signature(sig)
    }

    /// The address of `builtin` in the builtin table.
    fn builtin_address(&self, builder: &mut FunctionBuilder, builtin: BuiltinFunction) -> Value {
        // Neither load `can_move`: hoisted out of a loop whose only builtin call sits in a cold
        // block (an epoch or fuel check), the address would take a callee-saved register for
        // the whole loop and push the loop's own values to the stack.
        let vmctx = self.vmctx(builder);
        let builtins = builder.ins().load(
            self.pointer_type,
            MemFlagsData::trusted().with_readonly(),
            vmctx,
            VMOffsets::BUILTINS as i32,
        );
        builder.ins().load(
            self.pointer_type,
            MemFlagsData::trusted().with_readonly(),
            builtins,
            builtin.offset(),
        )
    }

    /// Calls the function a non-null funcref points to (its code and vmctx), for
    /// `call_indirect` and `call_ref` once they have checked what they check.
    fn call_func_ref(
        &self,
        builder: &mut FunctionBuilder,
        type_index: u32,
        func_ref: Value,
        args: &[Value],
        kind: CallKind,
    ) -> Vec<Value> {
        let load = |builder: &mut FunctionBuilder, offset| {
            builder
                .ins()
                .load(self.pointer_type, MemFlagsData::trusted(), func_ref, offset)
        };
        let code = load(builder, func_ref::WASM_CALL);
        let callee_vmctx = load(builder, func_ref::VMCTX);
        self.call_wasm(builder, type_index, code, callee_vmctx, args, kind)
    }

    /// Calls `callee_code` with the Wasm calling convention. A tail call passes this
    /// function's own vmctx as the caller's: the instance that made the call is the one a host
    /// callee's `Caller` must see, whichever frame it returns to.
    fn call_wasm(
        &self,
        builder: &mut FunctionBuilder,
        type_index: u32,
        callee_code: Value,
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
                self.returning_call(builder, Callee::Indirect(sig, callee_code), &all_args)
            }
            CallKind::Tail => {
                builder
                    .ins()
                    .return_call_indirect(sig, callee_code, &all_args);
                Vec::new()
            }
        }
    }
}

impl FuncEnvironment for WeftFuncEnvironment<'_> {
    fn module(&self) -> &ModuleInfo {
        self.module
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
        let definition = self.vmctx_ptr(builder, self.offsets.memory(memory));
        if self.memory64(memory) {
            return self.heap_address64(builder, definition, index, offset, access_size);
        }
        let index = builder.ins().uextend(I64, index);
        // The base never moves when the reservation holds the largest memory; then it is
        // loaded like the vmctx's other constant pointers, so it may be hoisted and shared.
        let base_flags = if self.memory.fixed_base() {
            readonly()
        } else {
            // `memory.grow` may move the memory: load the base each time.
            MemFlagsData::trusted()
        };
        if self.memory.needs_check(offset, access_size) {
            // `memory.grow` changes the length: load it each time.
            let len = builder.ins().load(
                I64,
                MemFlagsData::trusted(),
                definition,
                memory::CURRENT_LENGTH,
            );
            // index < 2^32 and offset < 2^32: the sum cannot overflow 64 bits.
            let end = builder
                .ins()
                .iadd_imm_u(index, (offset + u64::from(access_size)) as i64);
            let out_of_bounds = builder.ins().icmp(IntCC::UnsignedGreaterThan, end, len);
            builder
                .ins()
                .trapnz(out_of_bounds, trap_code(TrapKind::MemoryOutOfBounds));
        }
        // Without a check, every address a 32-bit index plus this offset can form lies inside
        // the reservation and its guard (`MemoryBounds`): the inaccessible pages do the check.
        let base = builder
            .ins()
            .load(self.pointer_type, base_flags, definition, memory::BASE);
        let mut address = builder.ins().iadd(base, index);
        if offset != 0 {
            address = builder.ins().iadd_imm_u(address, offset as i64);
        }
        let flags =
            MemFlagsData::new().with_trap_code(Some(trap_code(TrapKind::MemoryOutOfBounds)));
        (address, flags)
    }

    fn global_get(&mut self, builder: &mut FunctionBuilder, index: u32) -> Value {
        let cell = self.vmctx_ptr(builder, self.offsets.global(index));
        let ty = ir_type(
            self.module.globals[index as usize].ty.content_type,
            self.pointer_type,
        );
        builder.ins().load(ty, MemFlagsData::trusted(), cell, 0)
    }

    fn global_set(&mut self, builder: &mut FunctionBuilder, index: u32, value: Value) {
        let cell = self.vmctx_ptr(builder, self.offsets.global(index));
        builder.ins().store(MemFlagsData::trusted(), value, cell, 0);
    }

    fn call(
        &mut self,
        builder: &mut FunctionBuilder,
        callee: u32,
        args: &[Value],
        kind: CallKind,
    ) -> Vec<Value> {
        self.around_call(builder, kind, |env, builder| {
            let type_index = env.module.funcs[callee as usize];
            if env.module.is_imported_func(callee) {
                let vmctx = env.vmctx(builder);
                let offset = env.offsets.func_ref(callee) as i32;
                let code = builder.ins().load(
                    env.pointer_type,
                    readonly(),
                    vmctx,
                    offset + func_ref::WASM_CALL,
                );
                let callee_vmctx = builder.ins().load(
                    env.pointer_type,
                    readonly(),
                    vmctx,
                    offset + func_ref::VMCTX,
                );
                return env.call_wasm(builder, type_index, code, callee_vmctx, args, kind);
            }
            // A defined function of this module: a direct call with our own vmctx (PC-relative
            // when the callee is placed with the caller).
            let sig = builder.import_signature(wasm_signature(
                &env.module.types[type_index as usize],
                env.pointer_type,
            ));
            let name = builder
                .func
                .declare_imported_user_function(UserExternalName::new(0, callee));
            let func_ref = builder.import_function(ExtFuncData {
                name: ExternalName::user(name),
                signature: sig,
                colocated: env.colocated_calls,
                patchable: false,
            });
            let vmctx = env.vmctx(builder);
            let mut all_args = vec![vmctx, vmctx];
            all_args.extend_from_slice(args);
            match kind {
                CallKind::Normal => {
                    env.returning_call(builder, Callee::Direct(func_ref), &all_args)
                }
                CallKind::Tail => {
                    builder.ins().return_call(func_ref, &all_args);
                    Vec::new()
                }
            }
        })
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
        self.around_call(builder, kind, |env, builder| {
            let address =
                env.table_element_address(builder, table, callee, TrapKind::UndefinedElement);
            let func_ref =
                builder
                    .ins()
                    .load(env.pointer_type, MemFlagsData::trusted(), address, 0);
            builder
                .ins()
                .trapz(func_ref, trap_code(TrapKind::UninitializedElement));
            let actual =
                builder
                    .ins()
                    .load(I32, MemFlagsData::trusted(), func_ref, func_ref::TYPE_ID);
            // The engine's id for the expected type lives in the vmctx, so the code does not depend
            // on the engine that compiled it.
            let vmctx = env.vmctx(builder);
            let expected = builder.ins().load(
                I32,
                readonly(),
                vmctx,
                env.offsets.type_id(type_index) as i32,
            );
            let mismatch = builder.ins().icmp(IntCC::NotEqual, actual, expected);
            builder
                .ins()
                .trapnz(mismatch, trap_code(TrapKind::IndirectCallTypeMismatch));
            env.call_func_ref(builder, type_index, func_ref, args, kind)
        })
    }

    fn call_ref(
        &mut self,
        builder: &mut FunctionBuilder,
        type_index: u32,
        callee: Value,
        args: &[Value],
        kind: CallKind,
    ) -> Vec<Value> {
        self.around_call(builder, kind, |env, builder| {
            builder
                .ins()
                .trapz(callee, trap_code(TrapKind::NullReference));
            env.call_func_ref(builder, type_index, callee, args, kind)
        })
    }

    fn memory_size(&mut self, builder: &mut FunctionBuilder, index: u32) -> Value {
        let definition = self.vmctx_ptr(builder, self.offsets.memory(index));
        let len = builder.ins().load(
            I64,
            MemFlagsData::trusted(),
            definition,
            memory::CURRENT_LENGTH,
        );
        let pages = builder.ins().ushr_imm_u(len, 16);
        Self::index_result(builder, pages, self.memory64(index))
    }

    fn memory_grow(&mut self, builder: &mut FunctionBuilder, index: u32, delta: Value) -> Value {
        let is_64 = self.memory64(index);
        let index = Self::i32_const(builder, index);
        let delta = to_u64(builder, delta);
        let old = self
            .call_builtin(builder, BuiltinFunction::MemoryGrow, &[index, delta])
            .expect("memory.grow returns the old size");
        // u64::MAX (failure) is -1 either way.
        Self::index_result(builder, old, is_64)
    }

    fn memory_fill(
        &mut self,
        builder: &mut FunctionBuilder,
        index: u32,
        dst: Value,
        value: Value,
        len: Value,
    ) {
        let index = Self::i32_const(builder, index);
        let dst = to_u64(builder, dst);
        let len = to_u64(builder, len);
        self.call_builtin(
            builder,
            BuiltinFunction::MemoryFill,
            &[index, dst, value, len],
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
        let dst_memory = Self::i32_const(builder, dst_memory);
        let src_memory = Self::i32_const(builder, src_memory);
        // Each operand has its own memory's address type (the length the smaller one's).
        let dst = to_u64(builder, dst);
        let src = to_u64(builder, src);
        let len = to_u64(builder, len);
        self.call_builtin(
            builder,
            BuiltinFunction::MemoryCopy,
            &[dst_memory, src_memory, dst, src, len],
        );
    }

    fn memory_init(
        &mut self,
        builder: &mut FunctionBuilder,
        index: u32,
        data: u32,
        dst: Value,
        src: Value,
        len: Value,
    ) {
        let index = Self::i32_const(builder, index);
        let data = Self::i32_const(builder, data);
        let dst = to_u64(builder, dst);
        self.call_builtin(
            builder,
            BuiltinFunction::MemoryInit,
            &[index, data, dst, src, len],
        );
    }

    fn data_drop(&mut self, builder: &mut FunctionBuilder, data: u32) {
        let data = Self::i32_const(builder, data);
        self.call_builtin(builder, BuiltinFunction::DataDrop, &[data]);
    }

    fn table_get(&mut self, builder: &mut FunctionBuilder, table: u32, index: Value) -> Value {
        let address = self.table_element_address(builder, table, index, TrapKind::TableOutOfBounds);
        builder
            .ins()
            .load(self.pointer_type, MemFlagsData::trusted(), address, 0)
    }

    fn table_set(&mut self, builder: &mut FunctionBuilder, table: u32, index: Value, value: Value) {
        let address = self.table_element_address(builder, table, index, TrapKind::TableOutOfBounds);
        builder
            .ins()
            .store(MemFlagsData::trusted(), value, address, 0);
    }

    fn table_size(&mut self, builder: &mut FunctionBuilder, table: u32) -> Value {
        let definition = self.table_definition(builder, table);
        let len = builder.ins().load(
            I64,
            MemFlagsData::trusted(),
            definition,
            table::CURRENT_ELEMENTS,
        );
        Self::index_result(builder, len, self.table64(table))
    }

    fn table_grow(
        &mut self,
        builder: &mut FunctionBuilder,
        table: u32,
        init: Value,
        delta: Value,
    ) -> Value {
        let is_64 = self.table64(table);
        let table = Self::i32_const(builder, table);
        let delta = to_u64(builder, delta);
        let old = self
            .call_builtin(builder, BuiltinFunction::TableGrow, &[table, delta, init])
            .expect("table.grow returns the old size");
        // u64::MAX (failure) is -1 either way.
        Self::index_result(builder, old, is_64)
    }

    fn table_fill(
        &mut self,
        builder: &mut FunctionBuilder,
        table: u32,
        dst: Value,
        value: Value,
        len: Value,
    ) {
        let table = Self::i32_const(builder, table);
        let dst = to_u64(builder, dst);
        let len = to_u64(builder, len);
        self.call_builtin(
            builder,
            BuiltinFunction::TableFill,
            &[table, dst, value, len],
        );
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
        let dst_table = Self::i32_const(builder, dst_table);
        let src_table = Self::i32_const(builder, src_table);
        // As for `memory.copy`: each operand of its table's index type.
        let dst = to_u64(builder, dst);
        let src = to_u64(builder, src);
        let len = to_u64(builder, len);
        self.call_builtin(
            builder,
            BuiltinFunction::TableCopy,
            &[dst_table, src_table, dst, src, len],
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
        let table = Self::i32_const(builder, table);
        let elem = Self::i32_const(builder, elem);
        let dst = to_u64(builder, dst);
        self.call_builtin(
            builder,
            BuiltinFunction::TableInit,
            &[table, elem, dst, src, len],
        );
    }

    fn elem_drop(&mut self, builder: &mut FunctionBuilder, elem: u32) {
        let elem = Self::i32_const(builder, elem);
        self.call_builtin(builder, BuiltinFunction::ElemDrop, &[elem]);
    }

    fn ref_func(&mut self, builder: &mut FunctionBuilder, func: u32) -> Value {
        let vmctx = self.vmctx(builder);
        builder
            .ins()
            .iadd_imm_u(vmctx, i64::from(self.offsets.func_ref(func)))
    }

    fn set_exception_handlers(&mut self, handlers: &[ExceptionHandler]) {
        self.handlers.clear();
        self.handlers.extend_from_slice(handlers);
    }

    fn throw(&mut self, builder: &mut FunctionBuilder, tag: u32, args: &[Value]) {
        let tag_value = Self::i32_const(builder, tag);
        let exn = self
            .call_builtin(builder, BuiltinFunction::ExnNew, &[tag_value])
            .expect("exn_new returns the exception");
        for (i, &arg) in args.iter().enumerate() {
            let offset = exception::VALUES + (i as u32 * exception::VALUE_SIZE) as i32;
            builder
                .ins()
                .store(MemFlagsData::trusted(), arg, exn, offset);
        }
        self.throw_exception(builder, exn);
    }

    fn throw_ref(&mut self, builder: &mut FunctionBuilder, exn: Value) {
        builder.ins().trapz(exn, trap_code(TrapKind::NullReference));
        self.throw_exception(builder, exn);
    }

    fn exception_payload(
        &mut self,
        builder: &mut FunctionBuilder,
        tag: u32,
        exn: Value,
    ) -> Vec<Value> {
        let params = self.module.tag_params(tag).to_vec();
        params
            .iter()
            .enumerate()
            .map(|(i, &ty)| {
                let offset = exception::VALUES + (i as u32 * exception::VALUE_SIZE) as i32;
                builder.ins().load(
                    ir_type(ty, self.pointer_type),
                    MemFlagsData::trusted(),
                    exn,
                    offset,
                )
            })
            .collect()
    }

    fn exception_caught(&mut self, builder: &mut FunctionBuilder, exn: Value, keeps_ref: bool) {
        if keeps_ref {
            // The exnref becomes a value Wasm can copy anywhere: the object stays.
            let one = builder.ins().iconst(I8, 1);
            builder
                .ins()
                .store(MemFlagsData::trusted(), one, exn, exception::PINNED);
        } else {
            // The payload loads come first (a call orders memory), then the object may go.
            self.call_builtin(builder, BuiltinFunction::ExnRelease, &[exn]);
        }
    }

    fn landing_pad(&mut self, builder: &mut FunctionBuilder) {
        // The counters were written back before the call that threw; the frames it unwound
        // may have used fuel.
        self.reload_counters_after(builder, false);
    }

    fn loop_header(&mut self, builder: &mut FunctionBuilder) {
        self.epoch_check(builder);
    }

    fn function_entry(&mut self, builder: &mut FunctionBuilder) {
        if self.consume_fuel {
            self.fuel_var = Some(builder.declare_var(I64));
        }
        if self.epoch_interruption {
            self.deadline_var = Some(builder.declare_var(I64));
        }
        self.reload_counters_after(builder, true);
        self.epoch_check(builder);
    }

    fn before_return(&mut self, builder: &mut FunctionBuilder) {
        self.fuel_check(builder);
        self.spill_counters(builder);
    }

    fn fuel_enabled(&self) -> bool {
        self.consume_fuel
    }

    fn consume_fuel(&mut self, builder: &mut FunctionBuilder, cost: u32, check: bool) {
        let Some(fuel) = self.fuel_var else {
            return;
        };
        let value = builder.use_var(fuel);
        let left = builder.ins().iadd_imm_s(value, -i64::from(cost));
        builder.def_var(fuel, left);
        if check {
            self.fuel_check(builder);
        }
    }
}

/// `value` (an address, index or count of a 32- or 64-bit memory or table) as an i64: a
/// 32-bit one zero-extended.
fn to_u64(builder: &mut FunctionBuilder, value: Value) -> Value {
    if builder.func.dfg.value_type(value) == I64 {
        value
    } else {
        builder.ins().uextend(I64, value)
    }
}

/// Sets `func.stack_limit` to the limit the store context holds, so the prologue of every Wasm
/// function compares SP against it (and traps with `STACK_OVERFLOW`).
pub fn install_stack_limit(func: &mut ir::Function, pointer_type: ir::Type) {
    let vmctx = func.create_global_value(ir::GlobalValueData::VMContext);
    let readonly_flags = func.dfg.mem_flags.insert_unchecked(readonly());
    let trusted_flags = func.dfg.mem_flags.insert_unchecked(MemFlagsData::trusted());
    let store_context = func.create_global_value(ir::GlobalValueData::Load {
        base: vmctx,
        offset: (VMOffsets::STORE_CONTEXT as i32).into(),
        global_type: pointer_type,
        flags: readonly_flags,
    });
    let limit = func.create_global_value(ir::GlobalValueData::Load {
        base: store_context,
        offset: store_context::STACK_LIMIT.into(),
        global_type: pointer_type,
        flags: trusted_flags,
    });
    func.stack_limit = Some(limit);
}
