//! `Engine` and `Config`: the compiler, its settings, and what is shared by every module and
//! store of one engine (canonical function types and their trampolines).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use weft_compiler::{Compiler, CompilerOptions, Features, MemoryBounds, MemoryMode, Tier};

use crate::error::{Error, Result};
use crate::types::{FuncType, FuncTypeId, ValType};
use crate::vm::code_memory::CodeMemory;

/// Settings for an [`Engine`]: a builder whose setters return `&mut Self`, with a getter
/// (`get_*`) for each setting. [`Engine::new`] checks the combination.
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) memory_reservation: u64,
    pub(crate) memory_guard_size: u64,
    pub(crate) memory_reservation_for_growth: u64,
    pub(crate) allocation_strategy: crate::InstanceAllocationStrategy,
    pub(crate) max_wasm_stack: usize,
    pub(crate) async_stack_size: usize,
    pub(crate) max_async_stacks: usize,
    pub(crate) verify: bool,
    pub(crate) compile_threads: usize,
    pub(crate) features: Features,
    pub(crate) epoch_interruption: bool,
    pub(crate) consume_fuel: bool,
    pub(crate) cache: Option<crate::CacheConfig>,
    pub(crate) lazy_compilation: bool,
    pub(crate) lazy_background_compilation: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            memory_reservation: MemoryBounds::GUARD_PAGES.reservation,
            memory_guard_size: MemoryBounds::GUARD_PAGES.guard_size,
            memory_reservation_for_growth: 0,
            allocation_strategy: crate::InstanceAllocationStrategy::OnDemand,
            max_wasm_stack: 512 * 1024,
            async_stack_size: 2 << 20,
            max_async_stacks: 1 << 20,
            verify: false,
            compile_threads: 0,
            features: Features::default(),
            epoch_interruption: false,
            consume_fuel: false,
            cache: None,
            lazy_compilation: false,
            lazy_background_compilation: true,
        }
    }
}

/// A setter and a getter for one WebAssembly feature switch (all on by default; off, modules
/// using the feature are refused).
macro_rules! feature_switch {
    ($(#[$doc:meta])* $set:ident, $get:ident, $field:ident) => {
        $(#[$doc])*
        /// On by default.
        pub fn $set(&mut self, enable: bool) -> &mut Self {
            self.features.$field = enable;
            self
        }

        #[doc = concat!("Whether the switch is on (see [`Config::", stringify!($set), "`]).")]
        pub fn $get(&self) -> bool {
            self.features.$field
        }
    };
}

impl Config {
    /// The default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// How memory accesses are kept in bounds, as a shorthand for the layout settings:
    /// [`MemoryMode::GuardPages`] (the default) is a reservation of 4 GiB and a guard of
    /// 4 GiB + 64 KiB, so no access is checked; [`MemoryMode::ExplicitBounds`] is a
    /// reservation and guard of 0, so every access is checked and a memory maps only what it
    /// uses (for hosts that cannot reserve address space, or very many memories). Sets
    /// [`Config::memory_reservation`] and [`Config::memory_guard_size`].
    pub fn memory_mode(&mut self, mode: MemoryMode) -> &mut Self {
        let bounds = MemoryBounds::from(mode);
        self.memory_reservation = bounds.reservation;
        self.memory_guard_size = bounds.guard_size;
        self
    }

    /// The memory mode the layout settings amount to: [`MemoryMode::GuardPages`] if no access
    /// needs a check, else [`MemoryMode::ExplicitBounds`] (see [`Config::memory_mode`]).
    pub fn get_memory_mode(&self) -> MemoryMode {
        self.memory_bounds().mode()
    }

    /// Bytes of address space a 32-bit linear memory may occupy without moving (rounded up
    /// to 64 KiB; default 4 GiB), as wasmtime's setting of the same name. This decides which
    /// accesses compiled code checks ([`MemoryBounds`]):
    ///
    /// - 4 GiB or more holds the largest 32-bit memory, so a memory never moves, and an access
    ///   whose static `offset + size` is at most `memory_reservation + memory_guard_size -
    ///   4 GiB` needs no check: whatever its index, it lands in the reservation or the guard,
    ///   and past the memory's length it faults. (With the defaults, none is checked.) Each
    ///   memory costs that much address space, so a 47-bit address space holds about 16,000
    ///   of them.
    /// - Less, and every access is checked against the memory's length; the memory is mapped
    ///   read-write at this size or its own, whichever is larger (only touched pages cost
    ///   memory), grows in place within it and moves when it grows past it. The guard is not
    ///   reserved then. This is the layout for very many small memories.
    ///
    /// Part of the code's fingerprint: modules compiled with other bounds are refused by
    /// [`crate::Module::deserialize`]. [`Engine::new`] refuses more than 1 TiB.
    pub fn memory_reservation(&mut self, bytes: u64) -> &mut Self {
        self.memory_reservation = bytes;
        self
    }

    /// The reservation per memory (see [`Config::memory_reservation`]).
    pub fn get_memory_reservation(&self) -> u64 {
        self.memory_reservation
    }

    /// Inaccessible bytes reserved after a memory whose reservation is 4 GiB or more (rounded
    /// up to 64 KiB; default 4 GiB + 64 KiB): accesses whose static offset plus size fit in
    /// it need no check (see [`Config::memory_reservation`]). Part of the code's fingerprint.
    /// [`Engine::new`] refuses more than 1 TiB.
    pub fn memory_guard_size(&mut self, bytes: u64) -> &mut Self {
        self.memory_guard_size = bytes;
        self
    }

    /// The guard after each memory (see [`Config::memory_guard_size`]).
    pub fn get_memory_guard_size(&self) -> u64 {
        self.memory_guard_size
    }

    /// Extra bytes mapped when a memory that may move (a reservation under 4 GiB) moves, so
    /// that it can grow that much further in place (default 0: each growth past the mapping
    /// moves it again, which `mremap` does without copying). Does not change compiled code.
    pub fn memory_reservation_for_growth(&mut self, bytes: u64) -> &mut Self {
        self.memory_reservation_for_growth = bytes;
        self
    }

    /// The growth room of moving memories (see [`Config::memory_reservation_for_growth`]).
    pub fn get_memory_reservation_for_growth(&self) -> u64 {
        self.memory_reservation_for_growth
    }

    /// Where instances' memories, tables and vmctx come from: allocated on demand (the
    /// default) or from pools reserved when the engine is made
    /// ([`crate::InstanceAllocationStrategy::Pooling`]), for hosts that make very many short-
    /// lived or small instances.
    pub fn allocation_strategy(
        &mut self,
        strategy: crate::InstanceAllocationStrategy,
    ) -> &mut Self {
        self.allocation_strategy = strategy;
        self
    }

    /// The allocation strategy (see [`Config::allocation_strategy`]).
    pub fn get_allocation_strategy(&self) -> &crate::InstanceAllocationStrategy {
        &self.allocation_strategy
    }

    /// The layout compiled code assumes, sizes rounded up to Wasm pages.
    pub(crate) fn memory_bounds(&self) -> MemoryBounds {
        crate::pooling::memory_bounds(self.memory_reservation, self.memory_guard_size)
    }

    /// The stack Wasm may use in a synchronous call before it traps with
    /// [`crate::Trap::StackOverflow`] (default 512 KiB). The thread must have this much stack
    /// plus room for host functions; if it has less, the limit is clamped to the thread's own
    /// stack (less 64 KiB for host code), so recursion still ends in the trap rather than in a
    /// crash. Promising calls run on stacks of their own, sized by
    /// [`Config::async_stack_size`]. [`Engine::new`] refuses more than 1 TiB.
    pub fn max_wasm_stack(&mut self, bytes: usize) -> &mut Self {
        self.max_wasm_stack = bytes;
        self
    }

    /// The Wasm stack limit of synchronous calls (see [`Config::max_wasm_stack`]).
    pub fn get_max_wasm_stack(&self) -> usize {
        self.max_wasm_stack
    }

    /// The size of the whole stack each promising call (`call_async`) runs on, as wasmtime's
    /// setting of the same name: Wasm frames, the host functions they call, and the call's
    /// bookkeeping (a few hundred bytes at the top), not counting the guard page below it.
    /// Default 2 MiB, as in wasmtime. Only the pages a call touches cost memory.
    ///
    /// Wasm in a promising call may use all of it but the lowest 64 KiB, which stay for the
    /// host functions that Wasm calls, so it traps with [`crate::Trap::StackOverflow`] only
    /// then. [`Engine::new`] refuses a size that leaves Wasm less room than
    /// [`Config::max_wasm_stack`]: a promising call can always recurse as deep as a synchronous
    /// one (wasmtime has the same rule), or more than 1 TiB.
    pub fn async_stack_size(&mut self, bytes: usize) -> &mut Self {
        self.async_stack_size = bytes;
        self
    }

    /// The stack size of promising calls (see [`Config::async_stack_size`]).
    pub fn get_async_stack_size(&self) -> usize {
        self.async_stack_size
    }

    /// The most stacks for promising calls that exist at once (default 1,048,576): one per call
    /// in flight, plus the idle ones kept for reuse (one per store, a few per thread, and
    /// those the engine pools). A promising call started when all of them are in use fails
    /// with [`Error::ResourceLimit`] and the store stays usable; so does one for which the OS
    /// refuses the memory. Stacks are carved from reservations of 1 GiB each, so the count
    /// costs address space (about `async_stack_size` each, reserved as they are first needed),
    /// not memory mappings. [`Engine::new`] refuses 0.
    pub fn max_async_stacks(&mut self, count: usize) -> &mut Self {
        self.max_async_stacks = count;
        self
    }

    /// The limit on stacks for promising calls (see [`Config::max_async_stacks`]).
    pub fn get_max_async_stacks(&self) -> usize {
        self.max_async_stacks
    }

    /// Runs Cranelift's IR verifier on all generated code (slow; for testing weft itself).
    pub fn cranelift_verifier(&mut self, enable: bool) -> &mut Self {
        self.verify = enable;
        self
    }

    /// Whether Cranelift's verifier runs (see [`Config::cranelift_verifier`]).
    pub fn get_cranelift_verifier(&self) -> bool {
        self.verify
    }

    feature_switch! {
        /// Accepts modules with more than one memory (WebAssembly 3.0's multi-memory). Off,
        /// such modules are refused, as WebAssembly 2.0 requires.
        wasm_multi_memory, get_wasm_multi_memory, multi_memory
    }
    feature_switch! {
        /// Accepts tail calls (`return_call`, `return_call_indirect`, `return_call_ref`; 3.0).
        wasm_tail_call, get_wasm_tail_call, tail_call
    }
    feature_switch! {
        /// Accepts typed function references (`(ref $t)`, `call_ref`, `br_on_null`...; 3.0).
        /// Needs reference types.
        wasm_function_references, get_wasm_function_references, function_references
    }
    feature_switch! {
        /// Accepts extended constant expressions (arithmetic in initializers; 3.0).
        wasm_extended_const, get_wasm_extended_const, extended_const
    }
    feature_switch! {
        /// Accepts relaxed SIMD (3.0; weft's one deterministic choice per instruction and ISA
        /// is documented in the README). Needs SIMD.
        wasm_relaxed_simd, get_wasm_relaxed_simd, relaxed_simd
    }
    feature_switch! {
        /// Accepts fixed-width SIMD (`v128`; 2.0).
        wasm_simd, get_wasm_simd, simd
    }
    feature_switch! {
        /// Accepts reference types (`funcref`/`externref` values, several tables; 2.0).
        wasm_reference_types, get_wasm_reference_types, reference_types
    }
    feature_switch! {
        /// Accepts bulk memory and table operations (`memory.copy`, `table.init`...; 2.0).
        wasm_bulk_memory, get_wasm_bulk_memory, bulk_memory
    }
    feature_switch! {
        /// Accepts several results and block parameters (2.0).
        wasm_multi_value, get_wasm_multi_value, multi_value
    }
    feature_switch! {
        /// Accepts exception handling: tags, `throw`, `throw_ref`, `try_table`, `exnref`
        /// (3.0).
        wasm_exceptions, get_wasm_exceptions, exceptions
    }
    feature_switch! {
        /// Accepts 64-bit memories and tables (memory64: `memory i64`, `table i64`; 3.0).
        /// Their accesses are always checked against the current length, whatever
        /// [`Config::memory_reservation`] says: no reservation covers a 64-bit address.
        wasm_memory64, get_wasm_memory64, memory64
    }

    /// The feature switches that are off, in wasmtime's CLI spelling (`tail-call`), for
    /// messages.
    pub(crate) fn features_off(&self) -> Vec<&'static str> {
        self.features
            .switches()
            .into_iter()
            .filter_map(|(name, on)| (!on).then_some(name))
            .collect()
    }

    /// Threads used to compile one module's functions; 0 (the default) uses every core.
    pub fn compile_threads(&mut self, threads: usize) -> &mut Self {
        self.compile_threads = threads;
        self
    }

    /// The compile threads per module; 0 is every core (see [`Config::compile_threads`]).
    pub fn get_compile_threads(&self) -> usize {
        self.compile_threads
    }

    /// Compiles code that checks the engine's epoch (see [`Engine::increment_epoch`]) at every
    /// function entry and loop header, so that a store's epoch deadline
    /// ([`crate::Store::set_epoch_deadline`]) can interrupt Wasm that never returns: a
    /// synchronous call traps with [`crate::Trap::Interrupt`], and a promising call traps or
    /// yields to its executor ([`crate::Store::epoch_deadline_async_yield_and_update`]). Off by
    /// default; when off, compiled code has no checks at all. The check is an atomic load, a
    /// load, a compare and a branch.
    pub fn epoch_interruption(&mut self, enable: bool) -> &mut Self {
        self.epoch_interruption = enable;
        self
    }

    /// Whether compiled code checks the epoch (see [`Config::epoch_interruption`]).
    pub fn get_epoch_interruption(&self) -> bool {
        self.epoch_interruption
    }

    /// Compiles code that consumes fuel as it runs: each Wasm operator costs one unit, except
    /// `nop`, `drop`, `block`, `loop`, `end` and `else`, which cost nothing. A store's fuel
    /// ([`crate::Store::set_fuel`]) then bounds how much Wasm it runs: running out traps with
    /// [`crate::Trap::OutOfFuel`], and a promising call can yield to its executor at a fixed
    /// interval of fuel ([`crate::Store::fuel_async_yield_interval`]). Off by default, and then
    /// compiled code carries no fuel accounting.
    pub fn consume_fuel(&mut self, enable: bool) -> &mut Self {
        self.consume_fuel = enable;
        self
    }

    /// Whether compiled code consumes fuel (see [`Config::consume_fuel`]).
    pub fn get_consume_fuel(&self) -> bool {
        self.consume_fuel
    }

    /// Keeps compiled code on disk so that compiling the same module again (in this process or
    /// another) loads it instead: `Some` turns the cache on ([`crate::CacheConfig::user_default`]
    /// is the user's cache directory, as `weft run` uses), `None` (the default) turns it off.
    /// See [`crate::Module::from_binary`]; the cache trusts its directory's contents as
    /// [`crate::Module::deserialize`] trusts a file.
    pub fn cache(&mut self, cache: Option<crate::CacheConfig>) -> &mut Self {
        self.cache = cache;
        self
    }

    /// The code cache, if on (see [`Config::cache`]).
    pub fn get_cache(&self) -> Option<&crate::CacheConfig> {
        self.cache.as_ref()
    }

    /// Compiles a module's functions on first call instead of all up front. A module is
    /// validated when it is made, as always, and each defined function is compiled the first
    /// time anything calls it (directly, through a table or funcref, or as an export), on the
    /// module's compile threads ([`Config::compile_threads`]) while the caller waits; the
    /// other functions are compiled in the background on the same threads
    /// ([`Config::lazy_background_compilation`]). Compiled code behaves exactly as eagerly
    /// compiled code does (traps, backtraces, exceptions, suspension); calls to a lazily
    /// compiled function go through a jump slot, one indirect jump more than eager code.
    ///
    /// A module found in the code cache ([`Config::cache`]) is loaded compiled; one that is
    /// not is compiled lazily and not stored (storing needs all its code). Serializing a
    /// lazily compiled module ([`crate::Module::serialize`]) compiles what is left first.
    /// Off by default.
    pub fn lazy_compilation(&mut self, enable: bool) -> &mut Self {
        self.lazy_compilation = enable;
        self
    }

    /// Whether functions are compiled on first call (see [`Config::lazy_compilation`]).
    pub fn get_lazy_compilation(&self) -> bool {
        self.lazy_compilation
    }

    /// With [`Config::lazy_compilation`], whether the compile threads go on to compile the
    /// functions not called yet while the program runs (on, the default) or compile only
    /// what is called (off: least work for programs that touch little of their code).
    pub fn lazy_background_compilation(&mut self, enable: bool) -> &mut Self {
        self.lazy_background_compilation = enable;
        self
    }

    /// Whether lazy compilation continues in the background (see
    /// [`Config::lazy_background_compilation`]).
    pub fn get_lazy_background_compilation(&self) -> bool {
        self.lazy_background_compilation
    }

    /// Checks that the settings go together.
    fn validate(&self) -> Result<()> {
        for (name, bytes) in [
            ("memory_reservation", self.memory_reservation),
            ("memory_guard_size", self.memory_guard_size),
            (
                "memory_reservation_for_growth",
                self.memory_reservation_for_growth,
            ),
        ] {
            if bytes > MAX_MEMORY_SETTING {
                return Err(Error::InvalidConfig(format!(
                    "{name} ({bytes} bytes) is larger than the most weft accepts \
                     ({MAX_MEMORY_SETTING} bytes)"
                )));
            }
        }
        self.features
            .check()
            .map_err(|e| Error::InvalidConfig(format!("WebAssembly features: {e}")))?;
        if self.async_stack_size > MAX_STACK_SETTING {
            return Err(Error::InvalidConfig(format!(
                "async_stack_size ({} bytes) is larger than the most weft accepts ({} bytes)",
                self.async_stack_size, MAX_STACK_SETTING
            )));
        }
        if self.max_wasm_stack > MAX_STACK_SETTING {
            return Err(Error::InvalidConfig(format!(
                "max_wasm_stack ({} bytes) is larger than the most weft accepts ({} bytes)",
                self.max_wasm_stack, MAX_STACK_SETTING
            )));
        }
        if self.max_async_stacks == 0 {
            return Err(Error::InvalidConfig(
                "max_async_stacks is 0: no promising call could run".into(),
            ));
        }
        // What a stack with exactly `max_wasm_stack` of room for Wasm measures (no overflow:
        // both are bounded above).
        let needed = crate::vm::async_call::stack_size(self.max_wasm_stack);
        if self.async_stack_size < needed {
            return Err(Error::InvalidConfig(format!(
                "async_stack_size ({} bytes) leaves Wasm less stack than max_wasm_stack ({} \
                 bytes): it must be at least {needed} bytes",
                self.async_stack_size, self.max_wasm_stack
            )));
        }
        Ok(())
    }
}

/// The largest `max_wasm_stack` and `async_stack_size` accepted (1 TiB on 64-bit hosts, 1 GiB
/// on others): far beyond any real stack, and small enough that the sizes derived from them
/// (page rounding, guard pages, host headroom) cannot wrap around.
const MAX_STACK_SETTING: usize = if usize::BITS >= 64 { 1 << 40 } else { 1 << 30 };

/// The largest memory layout setting accepted (1 TiB): sums of them cannot wrap, and no
/// memory needs more.
const MAX_MEMORY_SETTING: u64 = 1 << 40;

/// The trampolines of one function type.
#[derive(Clone, Copy)]
pub(crate) struct Trampolines {
    /// Address of `extern "C" fn(vmctx, code, values)`: host to Wasm.
    pub array_to_wasm: usize,
    /// Address of a Wasm-convention function whose vmctx is a host function context: calls
    /// its `ARRAY_CALL` shim.
    pub wasm_to_array: usize,
    /// The same calling the context's `NATIVE_CALL` shim, with the values in registers; 0 if
    /// the type has no such convention (`weft_compiler::native_call_supported`).
    pub wasm_to_native: usize,
}

/// A value type as the registry compares types: a concrete reference names either a type
/// registered before its recursion group (by engine id, inside `Val`) or a type of its own group
/// (by position in the group). Two groups with equal lists of these are the same types: this
/// is WebAssembly's iso-recursive type canonicalization.
#[derive(Clone, PartialEq, Eq, Hash)]
enum CanonicalType {
    Val(ValType),
    InGroup { nullable: bool, index: u32 },
}

/// A function type as the registry compares it (see [`CanonicalType`]).
#[derive(Clone, PartialEq, Eq, Hash)]
struct CanonicalFunc {
    params: Box<[CanonicalType]>,
    results: Box<[CanonicalType]>,
}

/// The engine's function types. A recursion group's types get consecutive ids.
#[derive(Default)]
struct TypeRegistry {
    /// Every registered group, and the id of its first type.
    groups: HashMap<Vec<CanonicalFunc>, u32>,
    /// The type of each id, its concrete references naming engine ids.
    types: Vec<FuncType>,
    trampolines: Vec<Option<Trampolines>>,
    /// Keeps the trampolines' code alive.
    code: Vec<Arc<CodeMemory>>,
}

impl TypeRegistry {
    /// The id of the first type of `group`, registering its `types` (with ids from the
    /// registry's end) if the group is new.
    fn register_group(
        &mut self,
        group: Vec<CanonicalFunc>,
        types: impl FnOnce(u32) -> Vec<FuncType>,
    ) -> u32 {
        if let Some(&first) = self.groups.get(&group) {
            return first;
        }
        let first = self.types.len() as u32;
        let types = types(first);
        debug_assert_eq!(types.len(), group.len());
        self.trampolines.extend(types.iter().map(|_| None));
        self.types.extend(types);
        self.groups.insert(group, first);
        first
    }
}

/// A compiler and its configuration, shared by modules and stores. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    config: Config,
    compiler: Compiler,
    types: Mutex<TypeRegistry>,
    /// Stacks for promising calls.
    stacks: weft_arch::StackPool,
    /// The epoch (see [`Engine::increment_epoch`]); every store's context shares it.
    epoch: Arc<AtomicU64>,
    /// Where instances' memories, tables and vmctx come from.
    allocator: crate::pooling::InstanceAllocator,
}

impl Engine {
    /// An engine for this machine.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the settings do not go together (see
    /// [`Config::async_stack_size`]); an error if Cranelift does not support the host.
    pub fn new(config: &Config) -> Result<Engine> {
        config.validate()?;
        let memory = crate::vm::memory::MemorySettings {
            bounds: config.memory_bounds(),
            reservation_for_growth: usize::try_from(config.memory_reservation_for_growth)
                .map_err(|_| Error::InvalidConfig("memory_reservation_for_growth".into()))?,
        };
        let allocator =
            crate::pooling::InstanceAllocator::new(&config.allocation_strategy, memory)?;
        let compiler = Compiler::new(CompilerOptions {
            memory: memory.bounds,
            verify: config.verify,
            threads: config.compile_threads,
            features: config.features,
            epoch_interruption: config.epoch_interruption,
            consume_fuel: config.consume_fuel,
            tier: Tier::Optimized,
        })
        .map_err(Error::from_compile)?;
        Ok(Engine {
            inner: Arc::new(EngineInner {
                config: config.clone(),
                compiler,
                types: Mutex::default(),
                epoch: Arc::default(),
                allocator,
                stacks: weft_arch::StackPool::new(weft_arch::StackConfig {
                    size: config.async_stack_size,
                    max_stacks: config.max_async_stacks,
                    ..weft_arch::StackConfig::default()
                }),
            }),
        })
    }

    /// The settings this engine was made with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Advances the engine's epoch by one: every store of this engine whose epoch deadline is
    /// now reached is interrupted at its next function entry or loop header (see
    /// [`Config::epoch_interruption`]). One atomic add; callable from any thread, a timer or a
    /// signal-free watchdog.
    pub fn increment_epoch(&self) {
        self.inner.epoch.fetch_add(1, Ordering::Relaxed);
    }

    /// The epoch counter every store's context shares.
    pub(crate) fn epoch_counter(&self) -> Arc<AtomicU64> {
        self.inner.epoch.clone()
    }

    pub(crate) fn stack_pool(&self) -> &weft_arch::StackPool {
        &self.inner.stacks
    }

    pub(crate) fn allocator(&self) -> &crate::pooling::InstanceAllocator {
        &self.inner.allocator
    }

    pub(crate) fn compiler(&self) -> &Compiler {
        &self.inner.compiler
    }

    /// Whether `a` and `b` are the same engine (clones of one [`Engine::new`]).
    pub fn same(a: &Engine, b: &Engine) -> bool {
        Arc::ptr_eq(&a.inner, &b.inner)
    }

    /// The engine-wide id of `ty` (a recursion group of its own): equal types get equal ids,
    /// which is what `call_indirect`, typed references and import checks compare.
    pub(crate) fn type_id(&self, ty: &FuncType) -> u32 {
        let canonical = |types: &[ValType]| types.iter().map(|&t| CanonicalType::Val(t)).collect();
        let key = vec![CanonicalFunc {
            params: canonical(ty.params()),
            results: canonical(ty.results()),
        }];
        let mut registry = self.inner.types.lock().unwrap_or_else(|e| e.into_inner());
        registry.register_group(key, |_| vec![ty.clone()])
    }

    /// The engine ids of a module's types, by type index, registering their recursion groups
    /// (`ModuleInfo::rec_groups`) as needed.
    pub(crate) fn register_module_types(&self, info: &weft_environ::ModuleInfo) -> Vec<u32> {
        use weft_compiler::wasmparser::{HeapType, UnpackedIndex, ValType as W};
        let mut registry = self.inner.types.lock().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<u32> = Vec::with_capacity(info.types.len());
        for group in &info.rec_groups {
            let members = &info.types[group.start as usize..group.end as usize];
            let canonical = |ty: W, ids: &[u32]| match ty {
                W::Ref(r) => match r.heap_type() {
                    HeapType::Concrete(UnpackedIndex::Module(i)) if group.contains(&i) => {
                        CanonicalType::InGroup {
                            nullable: r.is_nullable(),
                            index: i - group.start,
                        }
                    }
                    _ => CanonicalType::Val(ValType::from_wasm(ty, ids)),
                },
                _ => CanonicalType::Val(ValType::from_wasm(ty, ids)),
            };
            let key = members
                .iter()
                .map(|f| CanonicalFunc {
                    params: f.params().iter().map(|&t| canonical(t, &ids)).collect(),
                    results: f.results().iter().map(|&t| canonical(t, &ids)).collect(),
                })
                .collect();
            let first = registry.register_group(key, |first| {
                // The group's own ids are known now: convert with them in place.
                let mut with_group = ids.clone();
                with_group.extend((0..members.len() as u32).map(|j| first + j));
                members
                    .iter()
                    .map(|f| FuncType::from_wasm(f, &with_group))
                    .collect()
            });
            ids.extend((0..members.len() as u32).map(|j| first + j));
        }
        ids
    }

    pub(crate) fn func_type(&self, id: u32) -> FuncType {
        let registry = self.inner.types.lock().unwrap_or_else(|e| e.into_inner());
        registry.types[id as usize].clone()
    }

    /// `f` of the function type `id`, without copying it out of the registry.
    pub(crate) fn with_func_type<R>(&self, id: u32, f: impl FnOnce(&FuncType) -> R) -> R {
        let registry = self.inner.types.lock().unwrap_or_else(|e| e.into_inner());
        f(&registry.types[id as usize])
    }

    /// This engine's id for the function type `ty`, registering it if it is new: what a
    /// typed function reference to functions of that type names
    /// ([`crate::HeapType::ConcreteFunc`]). Modules of this engine that declare an equal
    /// type (outside a recursion group with other types) get the same id.
    pub fn func_type_id(&self, ty: &FuncType) -> FuncTypeId {
        FuncTypeId(self.type_id(ty))
    }

    /// The function type `id` names, if this engine made `id`.
    pub fn func_type_of(&self, id: FuncTypeId) -> Option<FuncType> {
        let registry = self.inner.types.lock().unwrap_or_else(|e| e.into_inner());
        registry.types.get(id.0 as usize).cloned()
    }

    /// The trampolines for type `id`, compiled on first use.
    pub(crate) fn trampolines(&self, id: u32) -> Result<Trampolines> {
        let mut registry = self.inner.types.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = registry.trampolines[id as usize] {
            return Ok(t);
        }
        let ty = registry.types[id as usize].to_wasm_repr();
        let compiler = self.compiler();
        let mut functions = vec![
            compiler
                .compile_array_to_wasm(&ty)
                .map_err(Error::from_compile)?,
            compiler
                .compile_wasm_to_array(&ty)
                .map_err(Error::from_compile)?,
        ];
        functions.extend(
            compiler
                .compile_wasm_to_native(&ty)
                .map_err(Error::from_compile)?,
        );
        let indices = vec![None; functions.len()];
        let code = CodeMemory::publish(&functions, &indices, None).map_err(Error::Message)?;
        let t = Trampolines {
            array_to_wasm: code.function_address(0) as usize,
            wasm_to_array: code.function_address(1) as usize,
            wasm_to_native: if functions.len() > 2 {
                code.function_address(2) as usize
            } else {
                0
            },
        };
        registry.code.push(code);
        registry.trampolines[id as usize] = Some(t);
        Ok(t)
    }
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new(&Config::default()).expect("Cranelift supports the host")
    }
}
