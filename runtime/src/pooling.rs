//! Where instances get their memories, tables and vmctx: on demand (the default), or from
//! pools reserved when the engine is made ([`InstanceAllocationStrategy::Pooling`]), as in
//! wasmtime.
//!
//! On demand, each memory maps address space of its own (laid out by
//! [`Config::memory_reservation`](crate::Config::memory_reservation) and its siblings) and
//! each table and vmctx is a heap allocation. Pooled, memories take slots of one mapping made
//! up front, and tables and vmctx reuse storage kept by the engine, so a new store, an
//! instantiation and a call need no `mmap` or `munmap`; the pool's totals bound how many exist
//! at once, and exhausting one is an [`Error::ResourceLimit`] after which the engine and the
//! store go on working. The VM half lives in `vm::pool`.

use weft_compiler::MemoryBounds;
use weft_environ::ModuleInfo;

use crate::error::{Error, Result};
use crate::vm;
use crate::vm::memory::WASM_PAGE_SIZE;

/// How an engine allocates instances' memories, tables and vmctx.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum InstanceAllocationStrategy {
    /// Everything is allocated when an instance (or the host) asks for it, and freed when its
    /// store is dropped. No limits beyond the system's.
    #[default]
    OnDemand,
    /// Slots reserved when the engine is made and reused; see [`PoolingAllocationConfig`].
    Pooling(PoolingAllocationConfig),
}

/// The sizes and counts of a pooling engine's slots ([`InstanceAllocationStrategy::Pooling`]).
/// Each total counts what exists at once across all stores of the engine; a store's memories,
/// tables and instances go back to the pool when the store is dropped.
///
/// Memories in the pool are laid out as [`Config::memory_reservation`](crate::Config) says:
/// with a reservation of 4 GiB or more every slot is the reservation plus the guard (8 GiB by
/// default, so a few thousand slots at most fit in a 47-bit address space); with a smaller
/// one, compiled code checks accesses and a slot is just `max_memory_size` bytes, which is the
/// layout for very many small instances.
#[derive(Clone, Copy, Debug)]
pub struct PoolingAllocationConfig {
    pub(crate) total_memories: u32,
    pub(crate) max_memory_size: usize,
    pub(crate) total_tables: u32,
    pub(crate) table_elements: u32,
    pub(crate) total_core_instances: u32,
    pub(crate) max_memories_per_module: u32,
    pub(crate) max_tables_per_module: u32,
    pub(crate) linear_memory_keep_resident: usize,
}

impl Default for PoolingAllocationConfig {
    fn default() -> Self {
        PoolingAllocationConfig {
            total_memories: 1000,
            max_memory_size: 1 << 32,
            total_tables: 1000,
            table_elements: 10_000,
            total_core_instances: 1000,
            max_memories_per_module: 1,
            max_tables_per_module: 1,
            linear_memory_keep_resident: 0,
        }
    }
}

/// A setter and a getter for one pool setting.
macro_rules! pool_setting {
    ($(#[$doc:meta])* $set:ident, $get:ident, $ty:ty) => {
        $(#[$doc])*
        pub fn $set(&mut self, value: $ty) -> &mut Self {
            self.$set = value;
            self
        }

        #[doc = concat!("The setting of [`PoolingAllocationConfig::", stringify!($set), "`].")]
        pub fn $get(&self) -> $ty {
            self.$set
        }
    };
}

impl PoolingAllocationConfig {
    /// The default sizes and counts.
    pub fn new() -> Self {
        Self::default()
    }

    pool_setting! {
        /// Memories that exist at once (default 1,000): the pool reserves a slot for each.
        total_memories, get_total_memories, u32
    }
    pool_setting! {
        /// The most bytes a pooled memory may have (default 4 GiB; rounded up to 64 KiB
        /// pages): a module whose memory's minimum is larger is refused at instantiation, and
        /// `memory.grow` past it fails. 64-bit memories (memory64) take the same slots under
        /// the same limit.
        max_memory_size, get_max_memory_size, usize
    }
    pool_setting! {
        /// Tables that exist at once (default 1,000).
        total_tables, get_total_tables, u32
    }
    pool_setting! {
        /// The most elements a pooled table may have (default 10,000): a larger minimum is
        /// refused at instantiation, and `table.grow` past it fails.
        table_elements, get_table_elements, u32
    }
    pool_setting! {
        /// Instances that exist at once (default 1,000).
        total_core_instances, get_total_core_instances, u32
    }
    pool_setting! {
        /// The most memories a module may define (default 1); more are refused at
        /// instantiation.
        max_memories_per_module, get_max_memories_per_module, u32
    }
    pool_setting! {
        /// The most tables a module may define (default 1); more are refused at instantiation.
        max_tables_per_module, get_max_tables_per_module, u32
    }
    pool_setting! {
        /// Bytes at the start of a memory slot (rounded up to whole pages) that are zeroed in
        /// place when the memory is dropped, instead of being given back to the system
        /// (default 0). They are read and only the 4 KiB chunks that are not zero are written,
        /// which costs time in proportion to the size and keeps written pages resident, but the
        /// next instance in the slot then takes no page faults on them, and giving pages back
        /// costs a system call and a TLB flush of its own. Beyond it, the bytes the memory
        /// reached are given back (`MADV_DONTNEED`).
        linear_memory_keep_resident, get_linear_memory_keep_resident, usize
    }
}

/// An engine's allocator: what its [`InstanceAllocationStrategy`] became.
pub(crate) enum InstanceAllocator {
    OnDemand(vm::memory::MemorySettings),
    Pooling {
        pools: vm::pool::Pools,
        config: PoolingAllocationConfig,
    },
}

impl InstanceAllocator {
    /// Reserves the pools, if any.
    ///
    /// # Errors
    /// [`Error::ResourceLimit`] if the system refuses the pool's address space.
    pub fn new(
        strategy: &InstanceAllocationStrategy,
        settings: vm::memory::MemorySettings,
    ) -> Result<InstanceAllocator> {
        Ok(match strategy {
            InstanceAllocationStrategy::OnDemand => InstanceAllocator::OnDemand(settings),
            InstanceAllocationStrategy::Pooling(config) => {
                let max_memory_size = config
                    .max_memory_size
                    .min(1 << 32)
                    .next_multiple_of(WASM_PAGE_SIZE);
                let limits = vm::pool::PoolLimits {
                    total_memories: config.total_memories,
                    max_memory_size,
                    total_tables: config.total_tables,
                    table_elements: config.table_elements,
                    total_instances: config.total_core_instances,
                    keep_resident: config.linear_memory_keep_resident,
                };
                let pools =
                    vm::pool::Pools::new(limits, settings.bounds).map_err(Error::ResourceLimit)?;
                InstanceAllocator::Pooling {
                    pools,
                    config: *config,
                }
            }
        })
    }

    /// A memory of `min` pages, growing to at most `max`; a 64-bit one if `is_64`.
    ///
    /// # Errors
    /// [`Error::ResourceLimit`] if it cannot be allocated (no free slot, too large).
    pub fn memory(&self, min: u64, max: Option<u64>, is_64: bool) -> Result<vm::memory::Memory> {
        match self {
            InstanceAllocator::OnDemand(settings) => {
                vm::memory::Memory::new(settings, min, max, is_64)
            }
            InstanceAllocator::Pooling { pools, .. } => pools.memories.allocate(min, max, is_64),
        }
        .map_err(Error::ResourceLimit)
    }

    /// A table of `min` elements of `init`, growing to at most `max`.
    ///
    /// # Errors
    /// [`Error::ResourceLimit`] if it cannot be allocated.
    pub fn table(&self, min: u64, max: Option<u64>, init: usize) -> Result<vm::table::Table> {
        match self {
            InstanceAllocator::OnDemand(_) => vm::table::Table::new(min, max, init),
            InstanceAllocator::Pooling { pools, .. } => pools.tables.allocate(min, max, init),
        }
        .map_err(Error::ResourceLimit)
    }

    /// Storage for the vmctx of an instance of `module`, after checking the module against
    /// the pool's per-module limits. Taken before the instance's memories and tables, so that
    /// a full pool refuses it before anything else is allocated.
    ///
    /// # Errors
    /// [`Error::ResourceLimit`] if the module defines more memories or tables than the pool
    /// allows per module, or every instance slot is in use.
    pub fn vmctx(&self, module: &ModuleInfo) -> Result<vm::pool::Vmctx> {
        let bytes = weft_environ::vmoffsets::VMOffsets::new(module).size() as usize;
        match self {
            InstanceAllocator::OnDemand(_) => Ok(vm::pool::Vmctx::on_demand(bytes)),
            InstanceAllocator::Pooling { pools, config } => {
                let memories = module.memories.len() - module.num_imported_memories as usize;
                let tables = module.tables.len() - module.num_imported_tables as usize;
                if memories > config.max_memories_per_module as usize {
                    return Err(Error::ResourceLimit(format!(
                        "the module defines {memories} memories; the pool allows {} per module \
                         (PoolingAllocationConfig::max_memories_per_module)",
                        config.max_memories_per_module
                    )));
                }
                if tables > config.max_tables_per_module as usize {
                    return Err(Error::ResourceLimit(format!(
                        "the module defines {tables} tables; the pool allows {} per module \
                         (PoolingAllocationConfig::max_tables_per_module)",
                        config.max_tables_per_module
                    )));
                }
                pools
                    .instances
                    .allocate(bytes)
                    .map_err(Error::ResourceLimit)
            }
        }
    }
}

/// The memory layout compiled code assumes, from the config's sizes rounded up to Wasm pages.
pub(crate) fn memory_bounds(reservation: u64, guard_size: u64) -> MemoryBounds {
    let page = WASM_PAGE_SIZE as u64;
    MemoryBounds {
        reservation: reservation.next_multiple_of(page),
        guard_size: guard_size.next_multiple_of(page),
    }
}
