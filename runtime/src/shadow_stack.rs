//! A shadow stack per promising call, for modules built from C, C++ or Rust.
//!
//! Such modules keep the locals whose address is taken (arrays, structs passed by pointer) on a
//! stack in linear memory, the *shadow stack*, whose top is a mutable global: clang and wasm-ld
//! call it `__stack_pointer` and make it global 0, and usually do not export it. Promising calls
//! interleaved on one instance (a [`crate::SharedStore`]) share the linear memory and so that
//! global: a call suspended with a buffer on the shadow stack finds it overwritten by the next
//! call, which started from the same stack pointer. JSPI has the same flaw; toolchains work
//! around it in the guest (emscripten's `REENTRANT_JSPI`, binaryen's `--jspi-hooks`).
//!
//! weft fixes it in the engine, on request: [`Instance::set_shadow_stack`] names the global and
//! where each call's region comes from ([`ShadowStackRegion`]). From then on every promising
//! call on the store gets a region when it starts and gives it back when it ends (returned,
//! trapped or cancelled); the VM layer (`vm::async_call`) puts the call's stack pointer in the
//! global each time it switches into the call's fiber and saves it, restoring the value it
//! found, each time the fiber switches out. Synchronous calls keep using the global as it is
//! (the module's own stack). Stores that do not ask pay one test per resume.
//!
//! Limits: one shadow stack global per store (the instance named; calls of functions of other
//! instances of the store get a region too, unused); an `i32` global (wasm32); a region's
//! overflow is not detected (as for the module's own stack: the guest's problem, but it then
//! tramples the neighbouring region or heap, not weft's memory).

use crate::error::{Error, Result};
use crate::externals::Extern;
use crate::instance::Instance;
use crate::store::{AsContextMut, StoreContext};
use crate::typed::TypedFunc;
use crate::types::{Mutability, ValType};
use crate::vm::async_call::AsyncCall;

/// Which global of an instance is its shadow stack pointer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StackPointerGlobal {
    /// An exported global, by export name.
    Export(String),
    /// A global by its name in the module's `name` section (wasm-ld writes
    /// `__stack_pointer` there unless the module was stripped).
    Named(String),
    /// A global by index in the module's global index space (imports first); clang and wasm-ld
    /// make `__stack_pointer` global 0.
    Index(u32),
}

impl Default for StackPointerGlobal {
    /// `Named("__stack_pointer")`.
    fn default() -> Self {
        StackPointerGlobal::Named("__stack_pointer".to_string())
    }
}

/// Where each promising call's shadow stack comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShadowStackRegion {
    /// The guest's allocator: `alloc(size) -> address` (an export of type `(i32) -> i32`,
    /// `malloc` say) when a call starts, `free(address)` (type `(i32) -> ()`) when it ends.
    /// An allocation that returns 0 or traps fails the call with
    /// [`Error::ResourceLimit`] (or the trap) before it runs.
    GuestAllocator {
        /// Export name of the allocation function.
        alloc: String,
        /// Export name of the release function.
        free: String,
        /// Bytes per call: the deepest the call's shadow stack gets, plus 16 for alignment.
        size: u32,
    },
    /// Fixed slots of `slot_size` bytes carved from `len` bytes at `base` in the instance's
    /// exported memory, which the host reserved (the guest must not use them otherwise). When all
    /// slots are taken, a new call fails with [`Error::ResourceLimit`].
    Arena {
        /// Address of the arena in linear memory.
        base: u32,
        /// Its length in bytes.
        len: u32,
        /// Bytes per call; a multiple of 16.
        slot_size: u32,
    },
}

/// The shadow stack option for [`Instance::set_shadow_stack`]: which global, and where each
/// call's region comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShadowStack {
    /// The shadow stack pointer.
    pub pointer: StackPointerGlobal,
    /// Each call's region.
    pub region: ShadowStackRegion,
}

impl ShadowStack {
    /// `__stack_pointer` (by name-section name), with regions from `region`.
    pub fn new(region: ShadowStackRegion) -> Self {
        ShadowStack {
            pointer: StackPointerGlobal::default(),
            region,
        }
    }

    /// The same, with the pointer global named otherwise.
    pub fn with_pointer(mut self, pointer: StackPointerGlobal) -> Self {
        self.pointer = pointer;
        self
    }
}

/// The resolved option, kept in the store.
pub(crate) struct ShadowStackState {
    /// The global, as an index into the store's globals.
    global: usize,
    source: Source,
}

enum Source {
    Guest {
        alloc: TypedFunc<u32, u32>,
        free: TypedFunc<u32, ()>,
        size: u32,
    },
    Arena {
        base: u32,
        slot_size: u32,
        /// Slots not in use, as indices from `base`.
        free_slots: Vec<u32>,
    },
}

impl Instance {
    /// Gives every promising call on `store` from now on a shadow stack of its own, so that
    /// calls interleaved on this instance do not overwrite each other's stack-allocated locals
    /// (see the module docs of `shadow_stack`). Set once per store: calls give their regions
    /// back to where they came from.
    ///
    /// # Errors
    /// If the store already has a shadow stack setting, the global cannot be found or is not a mutable `i32`, an allocator export is missing
    /// or has the wrong type, or the arena is empty, misaligned or outside memory 0.
    pub fn set_shadow_stack(
        &self,
        mut store: impl AsContextMut,
        option: ShadowStack,
    ) -> Result<()> {
        let store = store.as_context_mut();
        let (store_id, index) = self.parts();
        store.opaque.check(store_id);
        if store.opaque.shadow_stack.is_some() {
            return Err(Error::msg("the store already has a shadow stack setting"));
        }
        let global = find_global(store, index, &option.pointer)?;
        let ty = store.opaque.globals[global].ty;
        if ty.content != ValType::I32 || ty.mutability != Mutability::Var {
            return Err(Error::msg(format!(
                "the shadow stack pointer {:?} is not a mutable i32 global",
                option.pointer
            )));
        }
        let source = match option.region {
            ShadowStackRegion::GuestAllocator { alloc, free, size } => {
                if size < 32 {
                    return Err(Error::msg("a shadow stack region needs at least 32 bytes"));
                }
                Source::Guest {
                    alloc: self.get_typed_func(&mut *store, &alloc)?,
                    free: self.get_typed_func(&mut *store, &free)?,
                    size,
                }
            }
            ShadowStackRegion::Arena {
                base,
                len,
                slot_size,
            } => {
                let memory = match store.opaque.instances[index]
                    .exports
                    .iter()
                    .flatten()
                    .find_map(|e| match e {
                        Extern::Memory(m) => Some(*m),
                        _ => None,
                    }) {
                    Some(memory) => memory,
                    None => {
                        return Err(Error::msg("a shadow stack arena needs an exported memory"));
                    }
                };
                let size = memory.data_size(&mut *store) as u64;
                if slot_size == 0 || slot_size % 16 != 0 || base % 16 != 0 {
                    return Err(Error::msg(
                        "a shadow stack arena's base and slot size must be multiples of 16",
                    ));
                }
                if u64::from(base) + u64::from(len) > size || len < slot_size {
                    return Err(Error::msg(
                        "a shadow stack arena must hold a slot and lie inside the memory",
                    ));
                }
                Source::Arena {
                    base,
                    slot_size,
                    free_slots: (0..len / slot_size).rev().collect(),
                }
            }
        };
        store.opaque.shadow_stack = Some(Box::new(ShadowStackState { global, source }));
        Ok(())
    }
}

/// The store index of the instance's global that `pointer` names.
fn find_global<T: 'static>(
    store: &mut StoreContext<T>,
    instance: usize,
    pointer: &StackPointerGlobal,
) -> Result<usize> {
    let data = &store.opaque.instances[instance];
    let index = match pointer {
        StackPointerGlobal::Export(name) => match data.non_func_export(name) {
            Some(Extern::Global(g)) => return Ok(g.index),
            _ => return Err(Error::msg(format!("no exported global named {name:?}"))),
        },
        StackPointerGlobal::Named(name) => {
            global_named(&data.module.inner.wasm, name).ok_or_else(|| {
                Error::msg(format!(
                    "no global named {name:?} in the module's name section"
                ))
            })?
        }
        StackPointerGlobal::Index(i) => *i,
    };
    data.globals
        .get(index as usize)
        .map(|g| g.index)
        .ok_or_else(|| Error::msg(format!("the module has no global {index}")))
}

/// The index of the global called `name` in the `name` section of `wasm` (a validated module);
/// `None` if there is none or the section is malformed (a custom section may be).
fn global_named(wasm: &[u8], name: &str) -> Option<u32> {
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        let wasmparser::Payload::CustomSection(reader) = payload.ok()? else {
            continue;
        };
        let wasmparser::KnownCustom::Name(names) = reader.as_known() else {
            continue;
        };
        for subsection in names {
            let Ok(wasmparser::Name::Global(map)) = subsection else {
                continue;
            };
            for naming in map.into_iter().flatten() {
                if naming.name == name {
                    return Some(naming.index);
                }
            }
        }
    }
    None
}

/// Takes a shadow stack region for `call`, which has not started, if the store asks for
/// shadow stacks.
///
/// # Errors
/// If the guest allocator fails or traps, or the arena is full.
pub(crate) fn give_region<T: 'static>(
    store: &mut StoreContext<T>,
    call: &mut AsyncCall,
) -> Result<()> {
    let Some(state) = store.opaque.shadow_stack.as_mut() else {
        return Ok(());
    };
    let global = state.global;
    let (region, top) = match &mut state.source {
        Source::Guest { alloc, size, .. } => {
            let (alloc, size) = (*alloc, *size);
            let address = alloc.call(&mut *store, size)?;
            // The stack grows down from the region's end, aligned as clang expects.
            // 0 (no room), or an address no region of `size` bytes can have.
            let Some(end) = address.checked_add(size).filter(|_| address != 0) else {
                return Err(Error::ResourceLimit(
                    "the guest allocator has no room for a shadow stack".to_string(),
                ));
            };
            (address, u64::from(end & !15))
        }
        Source::Arena {
            base,
            slot_size,
            free_slots,
        } => {
            let slot = free_slots.pop().ok_or_else(|| {
                Error::ResourceLimit("every shadow stack slot of the arena is in use".to_string())
            })?;
            let top = u64::from(*base) + u64::from(slot + 1) * u64::from(*slot_size);
            (slot, top)
        }
    };
    call.set_shadow_stack(store, global, top as u32, region);
    Ok(())
}

/// Finishes `call` (see `AsyncCall::finish`), then gives back its shadow stack region, if any.
/// Inlined, as `AsyncCall::finish` is: a call without a shadow stack pays one test.
#[inline(always)]
pub(crate) fn finish_call<T: 'static>(store: &mut StoreContext<T>, call: AsyncCall) {
    let region = call.shadow_region();
    call.finish(store);
    if let Some(region) = region {
        give_back(store, region);
    }
}

/// Gives a region back to where it came from. A `free` that traps is ignored: the call is over,
/// and the region is the guest's to lose.
#[inline(never)]
fn give_back<T: 'static>(store: &mut StoreContext<T>, region: u32) {
    let Some(state) = store.opaque.shadow_stack.as_mut() else {
        return;
    };
    match &mut state.source {
        Source::Guest { free, .. } => {
            let free = *free;
            let _ = free.call(&mut *store, region);
        }
        Source::Arena { free_slots, .. } => free_slots.push(region),
    }
}
