//! `Store<T>`: the owner of every instance, memory, table, global and function, plus the
//! embedder's data `T`.
//!
//! Handles (`Func`, `Memory`, ...) are indices into the store's vectors tagged with the store's
//! id; using a handle with another store panics. Everything the VM layer points at (vmctx,
//! memory and table definitions, global cells, host function contexts) is boxed, so raw
//! pointers between them stay valid however the vectors grow, and nothing is freed before the
//! store itself.

use std::any::Any;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::engine::Engine;
use crate::error::Error;
use crate::module::Module;
use crate::types::{FuncType, GlobalType, TableType};
use crate::vm::host::HostFunc;
use crate::vm::{self, FuncRefPtr, VMGlobal, VMStoreContext};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct StoreId(u64);

impl StoreId {
    pub fn as_u64(self) -> u64 {
        self.0
    }

    fn fresh() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        StoreId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// A collection of Wasm objects and the host's data `T`.
pub struct Store<T: 'static> {
    inner: Box<StoreContext<T>>,
}

/// The contents of a store: what both `&mut Store<T>` and `&mut Caller<'_, T>` give access to.
pub struct StoreContext<T: 'static> {
    pub(crate) opaque: StoreOpaque,
    pub(crate) data: T,
}

pub(crate) struct FuncData {
    /// The function's `VMFuncRef` (in a vmctx or a host function context).
    pub func_ref: FuncRefPtr,
    pub type_id: u32,
    /// The context of a host function (what its funcref points into).
    pub host: Option<Box<dyn HostFunc>>,
    /// The type's array-to-Wasm trampoline once a call needed it, else 0: cached here so that
    /// calls skip the engine's type registry and its lock.
    pub array_to_wasm: usize,
    /// Value slots a call needs (the larger of the parameter and result counts); set with
    /// `array_to_wasm`, so that the VM layer can check a call's buffer.
    pub slots: usize,
    /// A host function made by a constructor without an error to return (`Func::wrap`) when
    /// its type's trampoline could not be compiled: its funcref has no code yet, and
    /// [`StoreOpaque::ensure_wasm_callable`] must succeed before Wasm may see it.
    pub needs_trampoline: bool,
}

/// Hashes `func_by_ref`'s keys, addresses of the store's own function references: one
/// multiply and a fold, instead of SipHash, whose resistance to chosen keys buys nothing for
/// addresses no guest chooses. The fold brings the product's high bits down, since the keys'
/// low bits are always zero (aligned) and the table indexes by the low bits.
#[derive(Default)]
pub(crate) struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        let product = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = product ^ (product >> 32);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) struct InstanceData {
    pub vm: Box<vm::instance::Instance>,
    pub module: Module,
    /// The instance's exports in the module's order (`ModuleInfo::exports`): tables,
    /// memories, globals and tags as resolved at instantiation, `None` for functions (found
    /// from the vmctx when asked for); empty if the module exports only functions.
    pub exports: Box<[Option<crate::externals::Extern>]>,
    /// Store handle of each of the instance's globals, in index order (imported ones first).
    pub globals: Vec<crate::externals::Global>,
}

impl InstanceData {
    /// The position in the module's exports of the export `name`.
    pub fn export_position(&self, name: &str) -> Option<usize> {
        self.module
            .inner
            .info
            .exports
            .iter()
            .position(|(n, _)| n == name)
    }

    /// The table, memory, global or tag exported as `name` (`None` for a function).
    pub fn non_func_export(&self, name: &str) -> Option<crate::externals::Extern> {
        *self.exports.get(self.export_position(name)?)?
    }
}

pub(crate) struct TableData {
    pub vm: Box<vm::table::Table>,
    pub ty: TableType,
}

pub(crate) struct GlobalData {
    pub cell: Box<VMGlobal>,
    pub ty: GlobalType,
}

/// The untyped part of a store.
pub(crate) struct StoreOpaque {
    pub id: StoreId,
    pub engine: Engine,
    pub vm: Box<VMStoreContext>,
    pub instances: Vec<InstanceData>,
    /// Boxed: instances point at the `Memory` itself.
    #[allow(clippy::vec_box)]
    pub memories: Vec<Box<vm::memory::Memory>>,
    pub tables: Vec<TableData>,
    pub globals: Vec<GlobalData>,
    pub funcs: Vec<FuncData>,
    /// Funcref (as Wasm sees it) → index in `funcs`.
    pub func_by_ref: HashMap<u64, usize, BuildHasherDefault<AddressHasher>>,
    pub externrefs: Vec<Box<dyn Any + Send + Sync>>,
    /// The type of each exception tag of the store (instances' and the host's), by index,
    /// with the engine's id of that function type (what imports compare).
    pub tags: Vec<(crate::TagType, u32)>,
    /// The started fiber of the last finished promising call, for the next one.
    pub spare_fiber: vm::async_call::SpareFiber,
    /// Per-call shadow stacks, if the embedder asked for them (`Instance::set_shadow_stack`).
    pub shadow_stack: Option<Box<crate::shadow_stack::ShadowStackState>>,
}

impl<T: 'static> Store<T> {
    /// A new store on `engine`, holding the host's `data`.
    pub fn new(engine: &Engine, data: T) -> Self {
        let id = StoreId::fresh();
        Store {
            inner: Box::new(StoreContext {
                opaque: StoreOpaque {
                    id,
                    engine: engine.clone(),
                    vm: VMStoreContext::new::<T>(id.as_u64(), engine.epoch_counter()),
                    instances: Vec::new(),
                    memories: Vec::new(),
                    tables: Vec::new(),
                    globals: Vec::new(),
                    funcs: Vec::new(),
                    func_by_ref: HashMap::default(),
                    externrefs: Vec::new(),
                    tags: Vec::new(),
                    spare_fiber: Default::default(),
                    shadow_stack: None,
                },
                data,
            }),
        }
    }

    /// The store's engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.opaque.engine
    }

    /// The host's data.
    pub fn data(&self) -> &T {
        &self.inner.data
    }

    /// The host's data, mutably.
    pub fn data_mut(&mut self) -> &mut T {
        &mut self.inner.data
    }

    /// How many Wasm exception objects the store holds: those pinned by a reference that
    /// escaped (`catch_ref`, an [`crate::ExnRef`] of the host) and any in flight. Exceptions
    /// caught with `catch`/`catch_all` or turned into a [`crate::WasmException`] are freed
    /// (see [`crate::WasmException::exnref`]), so a program that throws in a loop keeps this
    /// small.
    pub fn exception_count(&self) -> usize {
        self.inner.opaque.vm.exceptions().len()
    }

    /// Drops the store and returns the host's data.
    pub fn into_data(self) -> T {
        self.inner.data
    }

    /// Interrupts this store's Wasm once the engine's epoch has advanced `ticks` beyond its
    /// current value ([`Engine::increment_epoch`]), at the next function entry or loop header.
    /// Needs [`crate::Config::epoch_interruption`]; without a deadline (the default) Wasm is
    /// never interrupted.
    pub fn set_epoch_deadline(&mut self, ticks: u64) {
        let vm = &mut self.inner.opaque.vm;
        let deadline = vm.epoch().saturating_add(ticks);
        vm.set_epoch_deadline(deadline);
    }

    /// At the epoch deadline, trap with [`crate::Trap::Interrupt`] (the default), in
    /// synchronous and promising calls alike.
    pub fn epoch_deadline_trap(&mut self) {
        self.inner.opaque.vm.interruption().epoch_yield_delta = None;
    }

    /// At the epoch deadline, a promising call yields to its executor (its future returns
    /// `Pending` after waking its task, so everything else ready runs first) and the deadline
    /// moves `delta` ticks past the epoch it resumes at. Synchronous calls, which cannot yield,
    /// still trap with [`crate::Trap::Interrupt`].
    pub fn epoch_deadline_async_yield_and_update(&mut self, delta: u64) {
        self.inner.opaque.vm.interruption().epoch_yield_delta = Some(delta);
    }

    /// Sets the fuel this store's Wasm may consume (see [`crate::Config::consume_fuel`]).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the engine does not consume fuel.
    pub fn set_fuel(&mut self, fuel: u64) -> crate::Result<()> {
        self.check_fuel_enabled()?;
        self.inner.opaque.vm.set_fuel(fuel);
        Ok(())
    }

    /// The fuel left.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the engine does not consume fuel.
    pub fn get_fuel(&self) -> crate::Result<u64> {
        self.check_fuel_enabled()?;
        Ok(self.inner.opaque.vm.fuel())
    }

    /// With `Some(n)`, a promising call yields to its executor each time it has consumed `n`
    /// more fuel (and runs on while fuel is left); `None` (the default) runs until the fuel is
    /// gone. Synchronous calls never yield.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the engine does not consume fuel, or `n` is 0.
    pub fn fuel_async_yield_interval(&mut self, interval: Option<u64>) -> crate::Result<()> {
        self.check_fuel_enabled()?;
        if interval == Some(0) {
            return Err(Error::InvalidConfig(
                "a fuel yield interval must be at least 1".into(),
            ));
        }
        let vm = &mut self.inner.opaque.vm;
        let fuel = vm.fuel();
        vm.interruption().fuel_yield_interval = interval;
        vm.set_fuel(fuel);
        Ok(())
    }

    fn check_fuel_enabled(&self) -> crate::Result<()> {
        if self.inner.opaque.engine.config().consume_fuel {
            Ok(())
        } else {
            Err(Error::InvalidConfig(
                "fuel is not enabled: use Config::consume_fuel(true)".into(),
            ))
        }
    }
}

impl<T: 'static> StoreContext<T> {
    /// The store's engine.
    pub fn engine(&self) -> &Engine {
        &self.opaque.engine
    }

    /// The host's data.
    pub fn data(&self) -> &T {
        &self.data
    }

    /// The host's data, mutably.
    pub fn data_mut(&mut self) -> &mut T {
        &mut self.data
    }
}

impl StoreOpaque {
    /// Panics if `id` belongs to another store: handles are only meaningful in their own.
    #[inline]
    #[track_caller]
    pub fn check(&self, id: StoreId) {
        if id != self.id {
            wrong_store();
        }
    }

    /// The `Func` index of the function whose funcref is `func_ref`, registering it if this is
    /// the first time the host sees it.
    pub fn func_for_ref(&mut self, func_ref: FuncRefPtr) -> usize {
        if let Some(&i) = self.func_by_ref.get(&func_ref.to_raw()) {
            return i;
        }
        self.funcs.push(FuncData {
            func_ref,
            type_id: func_ref.type_id(),
            host: None,
            array_to_wasm: 0,
            slots: 0,
            needs_trampoline: false,
        });
        let i = self.funcs.len() - 1;
        self.func_by_ref.insert(func_ref.to_raw(), i);
        i
    }

    /// The `Func` index of the function whose funcref Wasm passed around as `raw` (non-null),
    /// registering it if this is the first time the host sees it.
    ///
    /// # Panics
    /// If `raw` is no funcref of this store: Wasm of a store only ever holds its own.
    pub fn func_for_raw(&mut self, raw: u64) -> usize {
        if let Some(&i) = self.func_by_ref.get(&raw) {
            return i;
        }
        // Host functions are all registered when made; so this is in an instance's vmctx.
        let func_ref = self
            .instances
            .iter()
            .find_map(|instance| instance.vm.func_ref_at(raw))
            .expect("a funcref value of this store");
        self.func_for_ref(func_ref)
    }

    /// The array-to-Wasm trampoline of function `index`'s type (see `FuncData::array_to_wasm`).
    ///
    /// # Errors
    /// If the trampoline has to be compiled and that fails.
    #[inline]
    pub fn array_to_wasm(&mut self, index: usize) -> crate::Result<usize> {
        match self.funcs[index].array_to_wasm {
            0 => self.first_array_to_wasm(index),
            trampoline => Ok(trampoline),
        }
    }

    /// [`Self::array_to_wasm`] the first time function `index` is called from the host.
    #[cold]
    #[inline(never)]
    fn first_array_to_wasm(&mut self, index: usize) -> crate::Result<usize> {
        let type_id = self.funcs[index].type_id;
        let trampoline = self.engine.trampolines(type_id)?.array_to_wasm;
        // In place: copying the type out would allocate its parameter and result lists.
        self.funcs[index].slots = self
            .engine
            .with_func_type(type_id, |ty| ty.params().len().max(ty.results().len()));
        self.funcs[index].array_to_wasm = trampoline;
        Ok(trampoline)
    }

    /// Makes function `index` callable from Wasm, so that its funcref may be handed to Wasm: a
    /// host function made without its trampoline (see `FuncData::needs_trampoline`) gets it
    /// now. Every path by which the host hands a funcref to Wasm (imports, values in tables,
    /// globals, arguments and results) goes through here.
    ///
    /// # Errors
    /// If the trampoline still cannot be compiled or mapped.
    #[inline]
    pub fn ensure_wasm_callable(&mut self, index: usize) -> crate::Result<FuncRefPtr> {
        if self.funcs[index].needs_trampoline {
            let trampolines = self.engine.trampolines(self.funcs[index].type_id)?;
            let host = self.funcs[index]
                .host
                .as_mut()
                .expect("only host functions lack a trampoline");
            host.install_trampoline(&trampolines);
            self.funcs[index].needs_trampoline = false;
        }
        Ok(self.funcs[index].func_ref)
    }

    pub fn func_type(&self, index: usize) -> FuncType {
        self.engine.func_type(self.funcs[index].type_id)
    }
}

/// Access to a store's contents, for everything that takes a store.
pub trait AsContext {
    /// The store's data type.
    type Data: 'static;
    /// The store.
    fn as_context(&self) -> &StoreContext<Self::Data>;
}

/// Mutable access to a store's contents.
pub trait AsContextMut: AsContext {
    /// The store, mutably.
    fn as_context_mut(&mut self) -> &mut StoreContext<Self::Data>;
}

impl<T: 'static> AsContext for Store<T> {
    type Data = T;
    fn as_context(&self) -> &StoreContext<T> {
        &self.inner
    }
}

impl<T: 'static> AsContextMut for Store<T> {
    fn as_context_mut(&mut self) -> &mut StoreContext<T> {
        &mut self.inner
    }
}

impl<T: 'static> AsContext for StoreContext<T> {
    type Data = T;
    fn as_context(&self) -> &StoreContext<T> {
        self
    }
}

impl<T: 'static> AsContextMut for StoreContext<T> {
    fn as_context_mut(&mut self) -> &mut StoreContext<T> {
        self
    }
}

impl<S: AsContext + ?Sized> AsContext for &S {
    type Data = S::Data;
    fn as_context(&self) -> &StoreContext<S::Data> {
        (**self).as_context()
    }
}

impl<S: AsContext + ?Sized> AsContext for &mut S {
    type Data = S::Data;
    fn as_context(&self) -> &StoreContext<S::Data> {
        (**self).as_context()
    }
}

impl<S: AsContextMut + ?Sized> AsContextMut for &mut S {
    fn as_context_mut(&mut self) -> &mut StoreContext<S::Data> {
        (**self).as_context_mut()
    }
}

/// The panic of [`StoreOpaque::check`], out of line so that the check inlines as a compare.
#[cold]
#[inline(never)]
#[track_caller]
fn wrong_store() -> ! {
    panic!("a weft object was used with a store it does not belong to")
}
