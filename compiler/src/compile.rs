//! The compile driver: validation, parallel translation and code generation, and the
//! trampolines that cross between the host's calling convention and Wasm's.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{F32, F64, I8, I32, I64};
use cranelift_codegen::ir::{
    self, AbiParam, ExternalName, InstBuilder, MemFlagsData, Signature, UserFuncName,
};
use cranelift_codegen::isa::{CallConv, OwnedTargetIsa, TargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::{Context, FinalizedMachReloc, FinalizedRelocTarget, binemit::Reloc};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use wasmparser::{
    FuncToValidate, FuncType, FuncValidatorAllocations, FunctionBody, Parser, ValType,
    ValidPayload, Validator, ValidatorResources, WasmFeatures,
};
use weft_environ::vmoffsets::{VMOffsets, host_func, store_context};
use weft_environ::{
    BuiltinFunction, CallSiteHandlers, CompiledFunction, LibCall, ModuleInfo, RelocKind,
    RelocTarget, Relocation, TrapKind,
};

use crate::environ::{ir_type, wasm_signature};
use crate::func_environ::{WeftFuncEnvironment, install_stack_limit};
use crate::traps::{trap_code, trap_kind};
use crate::{CompileError, translate};

/// The two classic ways of keeping memory accesses in bounds: a shorthand for a
/// [`MemoryBounds`] (`Config::memory_mode` in the runtime).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum MemoryMode {
    /// Each 32-bit memory reserves 8 GiB of address space (4 GiB of memory plus 4 GiB of
    /// guard), so any `index + offset` lands in the reservation and an access out of bounds
    /// faults on an inaccessible page. No checks in the code: [`MemoryBounds::GUARD_PAGES`].
    #[default]
    GuardPages,
    /// Every access compares against the current length, and a memory reserves only what it
    /// maps. For hosts that cannot reserve address space: [`MemoryBounds::EXPLICIT`].
    ExplicitBounds,
}

/// Largest byte length of a 32-bit memory (65,536 pages of 64 KiB).
pub const MAX_MEMORY32_BYTES: u64 = 1 << 32;

/// How a 32-bit linear memory lies in address space, as far as compiled code depends on it:
/// `reservation` bytes the memory may use without moving, followed by `guard_size` bytes that
/// are never accessible.
///
/// A 64-bit memory (memory64) stays outside this rule whatever the bounds: no reservation
/// holds all it can address, so each of its accesses is checked against the current length
/// (without wrapping: `index + offset + size` past 2^64 traps too) and its base is loaded at
/// each access, as with a small reservation. 32-bit memories' code does not change.
///
/// - A reservation of at least 4 GiB holds the largest 32-bit memory, so the memory's base
///   never moves, and bytes past its current length up to the end of the guard fault. An
///   access whose static `offset + size` is at most `reservation + guard_size - 4 GiB` can
///   then reach no byte outside that region, whatever its index: it gets no check at all.
///   Other accesses (huge offsets) compare against the current length.
/// - A smaller reservation cannot hold every memory: every access is checked against the
///   current length, and a memory that grows past its reservation may move, so its base is
///   loaded again at each access. The guard has no use then and is not reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemoryBounds {
    /// Bytes of address space a memory may occupy without moving.
    pub reservation: u64,
    /// Inaccessible bytes after the reservation.
    pub guard_size: u64,
}

impl MemoryBounds {
    /// 4 GiB of reservation and 4 GiB + 64 KiB of guard (the largest static offset plus the
    /// largest access, rounded to a Wasm page): no access is ever checked.
    pub const GUARD_PAGES: MemoryBounds = MemoryBounds {
        reservation: MAX_MEMORY32_BYTES,
        guard_size: MAX_MEMORY32_BYTES + 65536,
    };
    /// Nothing reserved beyond what a memory maps: every access is checked.
    pub const EXPLICIT: MemoryBounds = MemoryBounds {
        reservation: 0,
        guard_size: 0,
    };

    /// Whether a memory's base is fixed for its lifetime (its reservation holds 4 GiB).
    pub fn fixed_base(&self) -> bool {
        self.reservation >= MAX_MEMORY32_BYTES
    }

    /// The largest static `offset + size` of an access that needs no check, if any access
    /// goes without one.
    pub fn unchecked_reach(&self) -> Option<u64> {
        self.fixed_base().then(|| {
            self.reservation
                .saturating_add(self.guard_size)
                .saturating_sub(MAX_MEMORY32_BYTES)
        })
    }

    /// Whether an access of `size` bytes at static offset `offset` must be checked.
    pub fn needs_check(&self, offset: u64, size: u32) -> bool {
        match self.unchecked_reach() {
            Some(reach) => offset.saturating_add(u64::from(size)) > reach,
            None => true,
        }
    }

    /// The shorthand this layout matches, if any: guard pages when no access can need a check.
    pub fn mode(&self) -> MemoryMode {
        // The largest static offset is u32::MAX, the widest access a v128's 16 bytes.
        if !self.needs_check(u64::from(u32::MAX), 16) {
            MemoryMode::GuardPages
        } else {
            MemoryMode::ExplicitBounds
        }
    }

    /// What compiled code depends on, for the code fingerprint: two layouts with the same
    /// description produce the same code.
    fn describe(&self) -> String {
        match self.unchecked_reach() {
            Some(reach) => format!("fixed-base-guard-{reach}"),
            None => "moving-base-checked".into(),
        }
    }
}

impl From<MemoryMode> for MemoryBounds {
    fn from(mode: MemoryMode) -> Self {
        match mode {
            MemoryMode::GuardPages => MemoryBounds::GUARD_PAGES,
            MemoryMode::ExplicitBounds => MemoryBounds::EXPLICIT,
        }
    }
}

/// Everything that shapes generated code; part of the engine's configuration.
#[derive(Clone, Debug)]
pub struct CompilerOptions {
    /// Where memories lie and so which accesses are checked.
    pub memory: MemoryBounds,
    /// Compile with Cranelift's IR verifier on (slower; for tests).
    pub verify: bool,
    /// Threads for compiling a module's functions; 0 picks the machine's parallelism.
    pub threads: usize,
    /// Which optional WebAssembly features modules may use.
    pub features: Features,
    /// Check the engine's epoch against the store's deadline at every function entry and loop
    /// header (`vmoffsets::store_context::EPOCH_DEADLINE`).
    pub epoch_interruption: bool,
    /// Count fuel per block of Wasm operators (`vmoffsets::store_context::FUEL`).
    pub consume_fuel: bool,
    /// How much work Cranelift puts into each function.
    pub tier: Tier,
}

/// How hard Cranelift works on a function.
///
/// Both tiers translate the same IR and keep every convention compiled code follows (frame
/// pointers, the stack-limit check, trap codes, exception tables, fuel and epoch checks); only
/// Cranelift's optimisation and register allocation differ. The runtime compiles everything
/// [`Tier::Optimized`]; [`Tier::Baseline`] exists to measure what a cheap first tier for lazy
/// compilation would give (`examples/tier_compile.rs`, `docs/startup.md`) and is **not safe to
/// run**: with Cranelift 0.135.8 (regalloc2 0.15.2) its single-pass register allocator
/// miscompiles a function of QuickJS (`programs/wasm/quickjs.wasm`, function 37), although
/// regalloc2's checker accepts the allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Tier {
    /// `opt_level=speed` with the backtracking register allocator: the best code weft makes.
    #[default]
    Optimized,
    /// `opt_level=none` with the single-pass register allocator: compiles 2–2.5× faster,
    /// makes twice the code and larger frames. Miscompiles (see above): for measurements only.
    Baseline,
}

/// WebAssembly's optional features that weft implements, each a switch: all on by default
/// (WebAssembly 3.0 as far as weft implements it). A switch only changes what validation
/// accepts; code for what it accepts is the same either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Features {
    /// Fixed-width SIMD (`v128`; 2.0).
    pub simd: bool,
    /// Relaxed SIMD (3.0); needs `simd`.
    pub relaxed_simd: bool,
    /// Reference types (`funcref`/`externref` values, several tables; 2.0).
    pub reference_types: bool,
    /// Typed function references (`(ref $t)`, `call_ref`; 3.0); needs `reference_types`.
    /// Off, 3.0's rules that validation takes from GC (recursion groups, defined globals in
    /// constant expressions) are off too.
    pub function_references: bool,
    /// Tail calls (`return_call*`; 3.0).
    pub tail_call: bool,
    /// Extended constant expressions (3.0).
    pub extended_const: bool,
    /// Several memories (3.0).
    pub multi_memory: bool,
    /// Bulk memory and table operations (2.0).
    pub bulk_memory: bool,
    /// Several results and block parameters (2.0).
    pub multi_value: bool,
    /// Exception handling: tags, `throw`, `throw_ref`, `try_table`, `exnref` (3.0).
    pub exceptions: bool,
    /// 64-bit memories and tables (`memory i64`, `table i64`; 3.0's memory64).
    pub memory64: bool,
}

impl Default for Features {
    fn default() -> Self {
        Features {
            simd: true,
            relaxed_simd: true,
            reference_types: true,
            function_references: true,
            tail_call: true,
            extended_const: true,
            multi_memory: true,
            bulk_memory: true,
            multi_value: true,
            exceptions: true,
            memory64: true,
        }
    }
}

impl Features {
    /// Each switch with its name in wasmtime's CLI spelling (`-W tail-call=n`).
    pub fn switches(&self) -> [(&'static str, bool); 11] {
        let Features {
            simd,
            relaxed_simd,
            reference_types,
            function_references,
            tail_call,
            extended_const,
            multi_memory,
            bulk_memory,
            multi_value,
            exceptions,
            memory64,
        } = *self;
        [
            ("simd", simd),
            ("relaxed-simd", relaxed_simd),
            ("reference-types", reference_types),
            ("function-references", function_references),
            ("tail-call", tail_call),
            ("extended-const", extended_const),
            ("multi-memory", multi_memory),
            ("bulk-memory", bulk_memory),
            ("multi-value", multi_value),
            ("exceptions", exceptions),
            ("memory64", memory64),
        ]
    }

    /// An error naming the first switch that is on while one it needs is off.
    pub fn check(&self) -> Result<(), String> {
        let needs = [
            (self.relaxed_simd, "relaxed-simd", self.simd, "simd"),
            (
                self.function_references,
                "function-references",
                self.reference_types,
                "reference-types",
            ),
        ];
        for (on, name, needed, needed_name) in needs {
            if on && !needed {
                return Err(format!("{name} needs {needed_name}, which is off"));
            }
        }
        Ok(())
    }
}

impl CompilerOptions {
    /// The WebAssembly features modules are validated against: 2.0, plus the parts of 3.0
    /// weft implements (tail calls, extended constant expressions, relaxed SIMD, typed
    /// function references, multi-memory, exception handling and memory64 when these options
    /// allow it). Shared memories (threads) fail in the parser.
    ///
    /// GC is on for validation only: 3.0 is written with it, and wasmparser applies 3.0's
    /// rules for recursion groups and for constant expressions that read defined globals
    /// only with GC on. weft does not implement GC's types and instructions and refuses them
    /// itself: the parser (struct and array types, declared subtypes, GC reference types in
    /// module-level types, GC constant instructions) and the translator (GC reference types
    /// of locals, blocks, `select` and `ref.null`; GC instructions) return `Unsupported`.
    /// The fuzzer's reference validator uses this same set.
    pub fn wasm_features(&self) -> WasmFeatures {
        let mut features = WasmFeatures::WASM2
            | WasmFeatures::TAIL_CALL
            | WasmFeatures::EXTENDED_CONST
            | WasmFeatures::RELAXED_SIMD
            | WasmFeatures::FUNCTION_REFERENCES
            | WasmFeatures::EXCEPTIONS
            | WasmFeatures::GC;
        let f = &self.features;
        for (flag, on) in [
            (WasmFeatures::SIMD, f.simd),
            (WasmFeatures::RELAXED_SIMD, f.relaxed_simd),
            (WasmFeatures::REFERENCE_TYPES, f.reference_types),
            (WasmFeatures::FUNCTION_REFERENCES, f.function_references),
            // GC's validation rules come with typed references (see above).
            (WasmFeatures::GC, f.function_references),
            (WasmFeatures::TAIL_CALL, f.tail_call),
            (WasmFeatures::EXTENDED_CONST, f.extended_const),
            (WasmFeatures::MULTI_MEMORY, f.multi_memory),
            (WasmFeatures::BULK_MEMORY, f.bulk_memory),
            (WasmFeatures::MULTI_VALUE, f.multi_value),
            (WasmFeatures::EXCEPTIONS, f.exceptions),
            (WasmFeatures::MEMORY64, f.memory64),
        ] {
            features.set(flag, on);
        }
        features
    }
}

impl Default for CompilerOptions {
    fn default() -> Self {
        CompilerOptions {
            memory: MemoryBounds::GUARD_PAGES,
            verify: cfg!(debug_assertions),
            threads: 0,
            features: Features::default(),
            epoch_interruption: false,
            consume_fuel: false,
            tier: Tier::Optimized,
        }
    }
}

/// What the code a [`Compiler`] produces depends on besides the module, as text a serialized
/// module records and a loader compares ([`Compiler::code_fingerprint`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CodeFingerprint {
    /// The target triple.
    pub target: String,
    /// Cranelift's ISA-specific flags: the CPU features the code may use, `name=value` joined
    /// by commas.
    pub cpu_features: String,
    /// Cranelift's shared flags and weft's options that change code or what a module may
    /// contain (memory bounds, the feature switches, epoch checks, fuel), the same way.
    pub settings: String,
}

/// Where a compiled function's code will lie relative to the functions it calls directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    /// In one code image with every function of the module: direct calls are PC-relative.
    Together,
    /// On its own: direct calls load the callee's absolute address (an `Abs8` relocation).
    Apart,
}

/// Cranelift's reusable buffers for [`Compiler::compile_function`], one per thread.
pub struct CompileScratch {
    ctx: Context,
    builder_ctx: FunctionBuilderContext,
}

impl CompileScratch {
    pub fn new() -> Self {
        CompileScratch {
            ctx: Context::new(),
            builder_ctx: FunctionBuilderContext::new(),
        }
    }
}

impl Default for CompileScratch {
    fn default() -> Self {
        Self::new()
    }
}

/// A configured Cranelift for the host.
pub struct Compiler {
    isa: OwnedTargetIsa,
    options: CompilerOptions,
}

impl Compiler {
    /// A compiler for the machine this runs on.
    ///
    /// # Errors
    /// `CompileError::Unsupported` if Cranelift does not support the host.
    pub fn new(options: CompilerOptions) -> Result<Self, CompileError> {
        let mut flags = settings::builder();
        let set = |flags: &mut settings::Builder, name: &str, value: &str| {
            flags
                .set(name, value)
                .map_err(|e| CompileError::Codegen(format!("setting {name}: {e}")))
        };
        match options.tier {
            Tier::Optimized => set(&mut flags, "opt_level", "speed")?,
            Tier::Baseline => {
                set(&mut flags, "opt_level", "none")?;
                set(&mut flags, "regalloc_algorithm", "single_pass")?;
            }
        }
        // Backtraces walk frame pointers, through Wasm and trampolines alike.
        set(&mut flags, "preserve_frame_pointers", "true")?;
        set(&mut flags, "enable_multi_ret_implicit_sret", "true")?;
        // The stack-limit check in every prologue covers the whole frame, so no probes.
        set(&mut flags, "enable_probestack", "false")?;
        set(&mut flags, "unwind_info", "false")?;
        set(
            &mut flags,
            "enable_verifier",
            if options.verify { "true" } else { "false" },
        )?;
        let isa_builder = cranelift_native::builder()
            .map_err(|e| CompileError::Unsupported(format!("host ISA: {e}")))?;
        let isa = isa_builder
            .finish(settings::Flags::new(flags))
            .map_err(|e| CompileError::Codegen(e.to_string()))?;
        Ok(Compiler { isa, options })
    }

    pub fn isa(&self) -> &dyn TargetIsa {
        &*self.isa
    }

    pub fn options(&self) -> &CompilerOptions {
        &self.options
    }

    /// What this compiler's code depends on besides the module: two compilers with equal
    /// fingerprints (and the same weft build) produce the same code for a module. The
    /// verifier setting and the thread count are left out: they do not change the code.
    pub fn code_fingerprint(&self) -> CodeFingerprint {
        let join = |values: Vec<settings::Value>| {
            values
                .iter()
                .map(|v| format!("{}={}", v.name, v.value_string()))
                .collect::<Vec<_>>()
                .join(",")
        };
        let shared = self
            .isa
            .flags()
            .iter()
            .filter(|v| v.name != "enable_verifier")
            .collect();
        // Every option named, none with `..`: a new option must be placed here or left out
        // on purpose, or this does not compile.
        let CompilerOptions {
            memory,
            verify: _,
            threads: _,
            features,
            epoch_interruption,
            consume_fuel,
            // Cranelift's own flags (`opt_level`, `regalloc_algorithm`) name the tier.
            tier: _,
        } = &self.options;
        let features: Vec<String> = features
            .switches()
            .iter()
            .map(|(name, on)| format!("{name}={on}"))
            .collect();
        CodeFingerprint {
            target: self.isa.triple().to_string(),
            cpu_features: join(self.isa.isa_flags()),
            settings: format!(
                "{},memory_bounds={},{},\
                 epoch_interruption={epoch_interruption},consume_fuel={consume_fuel}",
                join(shared),
                memory.describe(),
                features.join(","),
            ),
        }
    }

    fn pointer_type(&self) -> ir::Type {
        self.isa.pointer_type()
    }

    fn host_call_conv(&self) -> CallConv {
        self.isa.default_call_conv()
    }

    /// The WebAssembly features modules are validated against (see
    /// [`CompilerOptions::wasm_features`]).
    pub fn features(&self) -> WasmFeatures {
        self.options.wasm_features()
    }

    /// Validates `wasm` against [`Compiler::features`] and parses its module-level structure.
    ///
    /// # Errors
    /// `CompileError::Invalid` with the byte offset of the first problem (a module using a
    /// proposal outside [`Compiler::features`] gets wasmparser's "not enabled" message, which
    /// the runtime turns into its `Unsupported` error).
    ///
    /// The module-level sections are validated first on the caller's thread, then the
    /// function bodies, on up to [`CompilerOptions::threads`] threads when there is enough
    /// code to be worth it; the error reported is the one a serial validation finds (a
    /// module-level error before any body error, then the first invalid body in order).
    pub fn validate(&self, wasm: &[u8]) -> Result<ModuleInfo, CompileError> {
        let mut validator = Validator::new_with_features(self.features());
        let mut parser = Parser::new(0);
        parser.set_features(self.features());
        let mut bodies = Vec::new();
        for payload in parser.parse_all(wasm) {
            if let ValidPayload::Func(func, body) = validator.payload(&payload?)? {
                bodies.push((func, body));
            }
        }
        self.validate_bodies(bodies)?;
        crate::parse_module(wasm)
    }

    /// Validates function bodies, reporting the error of the first invalid one in order.
    fn validate_bodies(
        &self,
        bodies: Vec<(FuncToValidate<ValidatorResources>, FunctionBody<'_>)>,
    ) -> Result<(), CompileError> {
        // Below this much code, starting threads costs more than it saves.
        const PARALLEL_BYTES: u64 = 256 * 1024;
        let code_bytes: u64 = bodies
            .iter()
            .map(|(_, body)| body.range().end - body.range().start)
            .sum();
        let threads = if code_bytes < PARALLEL_BYTES {
            1
        } else {
            self.thread_count(bodies.len())
        };
        if threads <= 1 {
            let mut allocs = FuncValidatorAllocations::default();
            for (func, body) in bodies {
                let mut validator = func.into_validator(allocs);
                validator.validate(&body)?;
                allocs = validator.into_allocations();
            }
            return Ok(());
        }
        let count = bodies.len();
        // Each body is taken by one worker: `slots[i]` is emptied by the one that takes `i`.
        let slots: Vec<std::sync::Mutex<Option<_>>> = bodies
            .into_iter()
            .map(|b| std::sync::Mutex::new(Some(b)))
            .collect();
        let next = AtomicUsize::new(0);
        // The lowest index of a body found invalid so far: bodies after it need no checking,
        // bodies before it still do (one of them may be invalid too, and comes first).
        let first_invalid = AtomicUsize::new(usize::MAX);
        let work = || -> Option<(usize, wasmparser::BinaryReaderError)> {
            let mut allocs = FuncValidatorAllocations::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || i > first_invalid.load(Ordering::Relaxed) {
                    return None;
                }
                let taken = slots[i].lock().ok().and_then(|mut slot| slot.take());
                let Some((func, body)) = taken else {
                    continue;
                };
                let mut validator = func.into_validator(allocs);
                if let Err(e) = validator.validate(&body) {
                    first_invalid.fetch_min(i, Ordering::Relaxed);
                    // Indices only grow per worker: its first error is its lowest.
                    return Some((i, e));
                }
                allocs = validator.into_allocations();
            }
        };
        let first = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads).map(|_| scope.spawn(work)).collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().expect("validation worker panicked"))
                .min_by_key(|(i, _)| *i)
        });
        match first {
            Some((_, e)) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// The worker threads for `jobs` independent jobs ([`CompilerOptions::threads`], 0 being
    /// every core), at least one.
    fn thread_count(&self, jobs: usize) -> usize {
        match self.options.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        .min(jobs.max(1))
    }

    /// Compiles every defined function of a validated module, in parallel. The code does not
    /// depend on the engine that will run it (it reads engine type ids from the vmctx).
    ///
    /// # Errors
    /// `Unsupported` for features weft lacks; `Codegen` if Cranelift fails.
    pub fn compile_functions(
        &self,
        module: &ModuleInfo,
        wasm: &[u8],
    ) -> Result<Vec<CompiledFunction>, CompileError> {
        self.compile_functions_with_progress(module, wasm, &|_, _| {})
    }

    /// [`Self::compile_functions`], calling `progress(done, total)` after each function
    /// (from whichever worker thread compiled it; `done` counts up to `total` across threads).
    ///
    /// # Errors
    /// As [`Self::compile_functions`].
    pub fn compile_functions_with_progress(
        &self,
        module: &ModuleInfo,
        wasm: &[u8],
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Vec<CompiledFunction>, CompileError> {
        let count = module.bodies.len();
        let finished = AtomicUsize::new(0);
        let threads = self.thread_count(count);
        let offsets = VMOffsets::new(module);
        let next = AtomicUsize::new(0);
        let work = || -> Result<Vec<(usize, CompiledFunction)>, CompileError> {
            let mut done = Vec::new();
            let mut ctx = Context::new();
            let mut builder_ctx = FunctionBuilderContext::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok(done);
                }
                let compiled = self.compile_one(
                    module,
                    wasm,
                    &offsets,
                    i,
                    Placement::Together,
                    &mut ctx,
                    &mut builder_ctx,
                );
                match compiled {
                    Ok(f) => {
                        done.push((i, f));
                        progress(finished.fetch_add(1, Ordering::Relaxed) + 1, count);
                    }
                    Err(e) => {
                        // Stop the other workers early.
                        next.store(count, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
        };
        let results: Vec<_> = if threads <= 1 {
            vec![work()]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..threads).map(|_| scope.spawn(work)).collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("compile worker panicked"))
                    .collect()
            })
        };
        let mut functions = vec![CompiledFunction::default(); count];
        for result in results {
            for (i, f) in result? {
                functions[i] = f;
            }
        }
        Ok(functions)
    }

    /// Compiles defined function `defined_index` of a validated module on its own, for lazy
    /// compilation: its direct calls go to absolute addresses (`Abs8` relocations), so
    /// the runtime can place it anywhere and aim them at each callee's entry stub.
    /// `scratch` carries Cranelift's buffers from one call to the next on a thread.
    ///
    /// # Errors
    /// As [`Self::compile_functions`].
    pub fn compile_function(
        &self,
        module: &ModuleInfo,
        wasm: &[u8],
        defined_index: usize,
        scratch: &mut CompileScratch,
    ) -> Result<CompiledFunction, CompileError> {
        let offsets = VMOffsets::new(module);
        self.compile_one(
            module,
            wasm,
            &offsets,
            defined_index,
            Placement::Apart,
            &mut scratch.ctx,
            &mut scratch.builder_ctx,
        )
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "one private driver of compile_one"
    )]
    fn compile_one(
        &self,
        module: &ModuleInfo,
        wasm: &[u8],
        offsets: &VMOffsets,
        defined_index: usize,
        placement: Placement,
        ctx: &mut Context,
        builder_ctx: &mut FunctionBuilderContext,
    ) -> Result<CompiledFunction, CompileError> {
        let func_index = module.num_imported_funcs + defined_index as u32;
        let range = module.bodies[defined_index].range.clone();
        let body = wasmparser::FunctionBody::new(wasmparser::BinaryReader::new(
            &wasm[range.clone()],
            range.start as u64,
        ));
        ctx.clear();
        ctx.func.signature = wasm_signature(module.func_type(func_index), self.pointer_type());
        ctx.func.name = UserFuncName::user(0, func_index);
        install_stack_limit(&mut ctx.func, self.pointer_type());
        let mut env = WeftFuncEnvironment {
            module,
            offsets,
            memory: self.options.memory,
            pointer_type: self.pointer_type(),
            host_call_conv: self.host_call_conv(),
            epoch_interruption: self.options.epoch_interruption,
            consume_fuel: self.options.consume_fuel,
            fuel_var: None,
            deadline_var: None,
            handlers: Vec::new(),
            colocated_calls: placement == Placement::Together,
        };
        translate::translate_function(
            &mut env,
            &mut ctx.func,
            builder_ctx,
            &body,
            func_index,
            self.isa.frontend_config(),
        )?;
        self.finish(ctx)
    }

    /// Runs Cranelift on `ctx.func` and collects the code and its metadata.
    fn finish(&self, ctx: &mut Context) -> Result<CompiledFunction, CompileError> {
        ctx.compile(&*self.isa, &mut ControlPlane::default())
            .map_err(|e| CompileError::Codegen(format!("{:?}", e.inner)))?;
        // Borrowed again rather than kept from `compile`, so that the function (for the
        // relocations' names) can be borrowed beside it instead of cloned.
        let compiled = ctx
            .compiled_code()
            .ok_or_else(|| CompileError::Codegen("no compiled code".into()))?;
        let func = &ctx.func;
        let buffer = &compiled.buffer;
        let relocations = buffer
            .relocs()
            .iter()
            .map(|r| convert_relocation(r, func))
            .collect::<Result<_, _>>()?;
        let traps = buffer
            .traps()
            .iter()
            .map(|t| {
                let kind = trap_kind(t.code).ok_or_else(|| {
                    CompileError::Codegen(format!("unexpected trap code {}", t.code))
                })?;
                Ok((t.offset, kind))
            })
            .collect::<Result<_, CompileError>>()?;
        let handlers = call_site_handlers(buffer)?;
        Ok(CompiledFunction {
            code: buffer.data().to_vec(),
            alignment: compiled.buffer.alignment,
            relocations,
            traps,
            source_locations: buffer
                .get_srclocs_sorted()
                .iter()
                .filter(|s| !s.loc.is_default())
                .map(|s| (s.start, s.loc.bits()))
                .collect(),
            handlers,
            frame_size: buffer
                .frame_layout()
                .map_or(0, |layout| layout.frame_to_fp_offset),
        })
    }

    /// The host-to-Wasm trampoline for functions of type `ty`:
    /// `extern "C" fn(callee_vmctx, wasm_code, values: *mut [ValRaw])`. It loads the arguments
    /// from `values`, calls `wasm_code` and stores the results back into `values`. Each slot is
    /// 16 bytes.
    ///
    /// # Errors
    /// `Codegen` if Cranelift fails.
    pub fn compile_array_to_wasm(&self, ty: &FuncType) -> Result<CompiledFunction, CompileError> {
        let pointer = self.pointer_type();
        let mut ctx = Context::new();
        let mut sig = Signature::new(self.host_call_conv());
        sig.params.extend([AbiParam::new(pointer); 3]);
        ctx.func.signature = sig;
        let mut builder_ctx = FunctionBuilderContext::new();
        let mut builder = FunctionBuilder::new(&mut ctx.func, &mut builder_ctx);
        let entry = builder.create_block();
        builder.append_block_params_for_function_params(entry);
        builder.switch_to_block(entry);
        let [vmctx, code, values] = builder.block_params(entry) else {
            unreachable!("three parameters")
        };
        let (vmctx, code, values) = (*vmctx, *code, *values);
        let mut args = vec![vmctx, vmctx];
        for (i, &param) in ty.params().iter().enumerate() {
            let ty = ir_type(param, pointer);
            args.push(
                builder
                    .ins()
                    .load(ty, MemFlagsData::trusted(), values, slot(i)),
            );
        }
        let wasm_sig = builder.import_signature(wasm_signature(ty, pointer));
        let call = builder.ins().call_indirect(wasm_sig, code, &args);
        let results = builder.inst_results(call).to_vec();
        for (i, result) in results.into_iter().enumerate() {
            builder
                .ins()
                .store(MemFlagsData::trusted(), result, values, slot(i));
        }
        builder.ins().return_(&[]);
        builder.seal_all_blocks();
        builder.finalize(self.isa.frontend_config());
        self.finish(&mut ctx)
    }

    /// The Wasm-to-host trampoline for host functions of type `ty`: a function with the Wasm
    /// calling convention whose vmctx is a host function's context. It spills the arguments to
    /// a stack buffer, calls the context's `array_call(host_ctx, caller_vmctx, values, len)`,
    /// traps with `RECORDED` if that returns 0, and returns the results from the buffer.
    ///
    /// # Errors
    /// `Codegen` if Cranelift fails.
    pub fn compile_wasm_to_array(&self, ty: &FuncType) -> Result<CompiledFunction, CompileError> {
        let pointer = self.pointer_type();
        let mut ctx = Context::new();
        ctx.func.signature = wasm_signature(ty, pointer);
        let mut builder_ctx = FunctionBuilderContext::new();
        let mut builder = FunctionBuilder::new(&mut ctx.func, &mut builder_ctx);
        let entry = builder.create_block();
        builder.append_block_params_for_function_params(entry);
        builder.switch_to_block(entry);
        let params = builder.block_params(entry).to_vec();
        let (host_ctx, caller_vmctx) = (params[0], params[1]);
        let len = ty.params().len().max(ty.results().len());
        // One slot more than the values: the caller's vmctx, for the throw path (below).
        let vmctx_slot = slot(len.max(1));
        let buffer = builder.create_sized_stack_slot(ir::StackSlotData::new(
            ir::StackSlotKind::ExplicitSlot,
            ((len.max(1) + 1) * 16) as u32,
            4,
        ));
        let values = builder.ins().stack_addr(pointer, buffer, 0);
        for (i, &arg) in params[2..].iter().enumerate() {
            builder
                .ins()
                .store(MemFlagsData::trusted(), arg, values, slot(i));
        }
        let mut host_sig = Signature::new(self.host_call_conv());
        host_sig.params.extend([AbiParam::new(pointer); 4]);
        host_sig.returns.push(AbiParam::new(I8));
        let host_sig = builder.import_signature(host_sig);
        let array_call = builder.ins().load(
            pointer,
            MemFlagsData::trusted(),
            host_ctx,
            host_func::ARRAY_CALL,
        );
        // Stored rather than kept in a register across the call: the throw path alone needs
        // it after the call, and a callee-saved register would cost every call a save and a
        // restore where this costs one store.
        builder
            .ins()
            .store(MemFlagsData::trusted(), caller_vmctx, values, vmctx_slot);
        let len = builder.ins().iconst(pointer, len as i64);
        let call = builder.ins().call_indirect(
            host_sig,
            array_call,
            &[host_ctx, caller_vmctx, values, len],
        );
        let status = builder.inst_results(call)[0];
        self.branch_on_status(&mut builder, status, |builder| {
            let values = builder.ins().stack_addr(pointer, buffer, 0);
            builder
                .ins()
                .load(pointer, MemFlagsData::trusted(), values, vmctx_slot)
        });
        let mut results = Vec::new();
        for (i, &result) in ty.results().iter().enumerate() {
            let ty = ir_type(result, pointer);
            results.push(
                builder
                    .ins()
                    .load(ty, MemFlagsData::trusted(), values, slot(i)),
            );
        }
        builder.ins().return_(&results);
        builder.seal_all_blocks();
        builder.finalize(self.isa.frontend_config());
        self.finish(&mut ctx)
    }

    /// After a Wasm-to-host trampoline's call of its host shim, which returned `status`:
    /// anything but 1 leaves through cold blocks. A host function that threw has its
    /// exception thrown into the Wasm caller from here (the trampoline's return address is
    /// where the handler search starts), with the caller's vmctx from `caller_vmctx` (emitted
    /// in the throw block only); anything else is a recorded trap. Leaves `builder` in the
    /// block where the call succeeded.
    fn branch_on_status(
        &self,
        builder: &mut FunctionBuilder,
        status: ir::Value,
        caller_vmctx: impl FnOnce(&mut FunctionBuilder) -> ir::Value,
    ) {
        let returned = builder.create_block();
        let failed = builder.create_block();
        let is_ok = builder.ins().icmp_imm_u(IntCC::Equal, status, 1);
        builder.ins().brif(is_ok, returned, &[], failed, &[]);
        builder.switch_to_block(failed);
        builder.set_cold_block(failed);
        let threw = builder.create_block();
        let trapped = builder.create_block();
        builder.set_cold_block(threw);
        builder.set_cold_block(trapped);
        let is_throw = builder
            .ins()
            .icmp_imm_u(IntCC::Equal, status, i64::from(host_func::THREW));
        builder.ins().brif(is_throw, threw, &[], trapped, &[]);
        builder.switch_to_block(threw);
        let caller_vmctx = caller_vmctx(builder);
        self.throw_into_caller(builder, caller_vmctx);
        builder.switch_to_block(trapped);
        builder.ins().trap(trap_code(TrapKind::Recorded));
        builder.switch_to_block(returned);
    }

    /// The body of a Wasm-to-host trampoline's block for a host function that threw: throws
    /// the exnref the store context holds into the Wasm caller (the trampoline's return address
    /// is where the handler search starts); traps with `RECORDED` if no frame of the
    /// activation catches it.
    fn throw_into_caller(&self, builder: &mut FunctionBuilder, caller_vmctx: ir::Value) {
        let pointer = self.pointer_type();
        let store_ctx = builder.ins().load(
            pointer,
            MemFlagsData::trusted().with_readonly(),
            caller_vmctx,
            VMOffsets::STORE_CONTEXT as i32,
        );
        let exn = builder.ins().load(
            pointer,
            MemFlagsData::trusted(),
            store_ctx,
            store_context::THROWN,
        );
        let builtins = builder.ins().load(
            pointer,
            MemFlagsData::trusted().with_readonly(),
            caller_vmctx,
            VMOffsets::BUILTINS as i32,
        );
        let load_builtin = |builder: &mut FunctionBuilder, builtin: BuiltinFunction| {
            builder.ins().load(
                pointer,
                MemFlagsData::trusted().with_readonly(),
                builtins,
                builtin.offset(),
            )
        };
        let stub = load_builtin(builder, BuiltinFunction::ThrowRef);
        let find = load_builtin(builder, BuiltinFunction::FindHandler);
        let mut throw_sig = Signature::new(self.host_call_conv());
        throw_sig.params.extend([AbiParam::new(pointer); 3]);
        throw_sig.returns.push(AbiParam::new(I8));
        let throw_sig = builder.import_signature(throw_sig);
        builder
            .ins()
            .call_indirect(throw_sig, stub, &[caller_vmctx, exn, find]);
        builder.ins().trap(trap_code(TrapKind::Recorded));
    }

    /// The register-argument Wasm-to-host trampoline for host functions of type `ty`, or
    /// `None` if the type has no such calling convention (see [`native_call_supported`]): a
    /// function with the Wasm calling convention whose vmctx is a host function's context. It
    /// calls the context's `native_call(host_ctx, caller_vmctx, params...)` with the
    /// parameters where the host's C calling convention puts them (for the first few, the
    /// registers they arrived in), and returns the result from the first return register if
    /// the status in the second is 1; otherwise it throws or traps as
    /// [`Self::compile_wasm_to_array`]'s does (see `weft_environ::vmoffsets::host_func`).
    ///
    /// # Errors
    /// `Codegen` if Cranelift fails.
    pub fn compile_wasm_to_native(
        &self,
        ty: &FuncType,
    ) -> Result<Option<CompiledFunction>, CompileError> {
        if !native_call_supported(ty) {
            return Ok(None);
        }
        let pointer = self.pointer_type();
        let mut ctx = Context::new();
        ctx.func.signature = wasm_signature(ty, pointer);
        let mut builder_ctx = FunctionBuilderContext::new();
        let mut builder = FunctionBuilder::new(&mut ctx.func, &mut builder_ctx);
        let entry = builder.create_block();
        builder.append_block_params_for_function_params(entry);
        builder.switch_to_block(entry);
        let params = builder.block_params(entry).to_vec();
        let host_ctx = params[0];
        let mut host_sig = Signature::new(self.host_call_conv());
        host_sig.params.extend([AbiParam::new(pointer); 2]);
        host_sig.params.extend(
            ty.params()
                .iter()
                .map(|&param| AbiParam::new(ir_type(param, pointer))),
        );
        // `NativeReturn { value: u64, status: u64 }`: two integer registers in both ABIs.
        host_sig.returns.extend([AbiParam::new(I64); 2]);
        let host_sig = builder.import_signature(host_sig);
        let native_call = builder.ins().load(
            pointer,
            MemFlagsData::trusted().with_readonly(),
            host_ctx,
            host_func::NATIVE_CALL,
        );
        let call = builder.ins().call_indirect(host_sig, native_call, &params);
        let [value, status] = builder.inst_results(call) else {
            unreachable!("two return values")
        };
        let (value, status) = (*value, *status);
        // The shim returns the caller's vmctx as the value of a throw, so nothing had to be
        // kept across the call for this path.
        self.branch_on_status(&mut builder, status, |builder| {
            if pointer == I64 {
                value
            } else {
                builder.ins().ireduce(pointer, value)
            }
        });
        let mut results = Vec::new();
        if let Some(&result) = ty.results().first() {
            let result = match ir_type(result, pointer) {
                I64 => value,
                I32 => builder.ins().ireduce(I32, value),
                F64 => builder.ins().bitcast(F64, MemFlagsData::new(), value),
                F32 => {
                    let bits = builder.ins().ireduce(I32, value);
                    builder.ins().bitcast(F32, MemFlagsData::new(), bits)
                }
                other => unreachable!("native_call_supported refused {other}"),
            };
            results.push(result);
        }
        builder.ins().return_(&results);
        builder.seal_all_blocks();
        builder.finalize(self.isa.frontend_config());
        self.finish(&mut ctx).map(Some)
    }
}

/// The exception handlers of a function's `try_call` sites, sorted by return address.
fn call_site_handlers(
    buffer: &cranelift_codegen::MachBufferFinalized<cranelift_codegen::Final>,
) -> Result<Vec<CallSiteHandlers>, CompileError> {
    use cranelift_codegen::{ExceptionContextLoc, FinalizedMachExceptionHandler as H};
    let mut sites = Vec::new();
    for site in buffer.call_sites() {
        if site.exception_handlers.is_empty() {
            continue;
        }
        let mut vmctx_sp_offset = None;
        let mut handlers = Vec::new();
        for handler in site.exception_handlers {
            match *handler {
                H::Context(ExceptionContextLoc::SPOffset(offset)) => {
                    vmctx_sp_offset = Some(offset);
                }
                H::Context(ExceptionContextLoc::GPR(_)) => {
                    return Err(CompileError::Codegen(
                        "an exception context left in a register".into(),
                    ));
                }
                H::Tag(tag, offset) => handlers.push((Some(tag.as_u32()), offset)),
                H::Default(offset) => handlers.push((None, offset)),
            }
        }
        let (Some(frame_offset), Some(vmctx_sp_offset)) = (site.frame_offset, vmctx_sp_offset)
        else {
            return Err(CompileError::Codegen(
                "a try_call site without a frame offset or context".into(),
            ));
        };
        sites.push(CallSiteHandlers {
            return_offset: site.ret_addr,
            frame_offset,
            vmctx_sp_offset,
            handlers,
        });
    }
    sites.sort_by_key(|s| s.return_offset);
    Ok(sites)
}

/// Whether host functions of type `ty` can be called with their parameters and result in
/// registers (the `host_func::NATIVE_CALL` convention): at most one result, and only the
/// numeric types `i32`, `i64`, `f32` and `f64`, which the host's C ABI passes in the same
/// registers (or stack slots) as Cranelift's and which fit the one integer result register.
/// Any number of parameters: the ones past the argument registers go on the stack, laid out
/// by the same C ABI on both sides.
pub fn native_call_supported(ty: &FuncType) -> bool {
    let numeric =
        |t: &ValType| matches!(t, ValType::I32 | ValType::I64 | ValType::F32 | ValType::F64);
    ty.results().len() <= 1 && ty.params().iter().all(numeric) && ty.results().iter().all(numeric)
}

/// Byte offset of value slot `i` in a trampoline's value buffer.
fn slot(i: usize) -> i32 {
    (i * 16) as i32
}

fn convert_relocation(
    reloc: &FinalizedMachReloc,
    func: &ir::Function,
) -> Result<Relocation, CompileError> {
    let target = match &reloc.target {
        FinalizedRelocTarget::ExternalName(ExternalName::User(name)) => {
            RelocTarget::Func(func.params.user_named_funcs()[*name].index)
        }
        FinalizedRelocTarget::ExternalName(ExternalName::LibCall(libcall)) => {
            RelocTarget::LibCall(convert_libcall(*libcall)?)
        }
        other => {
            return Err(CompileError::Codegen(format!(
                "unexpected relocation target {other:?}"
            )));
        }
    };
    let kind = match reloc.kind {
        Reloc::Abs8 => RelocKind::Abs8,
        Reloc::X86CallPCRel4 | Reloc::X86PCRel4 => RelocKind::X86PcRel4,
        Reloc::Arm64Call => RelocKind::Arm64Call,
        other => {
            return Err(CompileError::Codegen(format!(
                "unsupported relocation kind {other:?}"
            )));
        }
    };
    Ok(Relocation {
        offset: reloc.offset,
        kind,
        target,
        addend: reloc.addend,
    })
}

/// The runtime routine for a Cranelift libcall; weft provides the float ones Wasm needs.
fn convert_libcall(libcall: ir::LibCall) -> Result<LibCall, CompileError> {
    use ir::LibCall as C;
    Ok(match libcall {
        C::CeilF32 => LibCall::CeilF32,
        C::CeilF64 => LibCall::CeilF64,
        C::FloorF32 => LibCall::FloorF32,
        C::FloorF64 => LibCall::FloorF64,
        C::TruncF32 => LibCall::TruncF32,
        C::TruncF64 => LibCall::TruncF64,
        C::NearestF32 => LibCall::NearestF32,
        C::NearestF64 => LibCall::NearestF64,
        C::FmaF32 => LibCall::FmaF32,
        C::FmaF64 => LibCall::FmaF64,
        other => {
            return Err(CompileError::Codegen(format!(
                "unsupported libcall {other:?}"
            )));
        }
    })
}

/// A compiler shared between threads.
pub type SharedCompiler = Arc<Compiler>;
