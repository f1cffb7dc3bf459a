//! The pooling instance allocator's VM half: slots for memories, tables and vmctx, reserved
//! when the engine is made and reused by instance after instance, so that instantiating needs
//! no `mmap` or `munmap`.
//!
//! ```text
//!   MemoryPool: one mapping, `total` slots of `stride` bytes
//!   ┌──────────────────────┬──────────────────────┬─────
//!   │ slot 0               │ slot 1               │ ...
//!   │ [accessible][rest]   │ [accessible][rest]   │
//!   └──────────────────────┴──────────────────────┴─────
//! ```
//!
//! - With fixed-base memories (`MemoryBounds::fixed_base`) a slot is the reservation plus the
//!   guard, inaccessible but for its first `accessible` bytes. A slot keeps that prefix
//!   accessible when it is given back (its watermark), so the next memory of the same size
//!   costs no `mprotect`; a smaller one makes the excess inaccessible again, because compiled
//!   code relies on faults past the length. Each slot then costs up to two mappings.
//! - With moving-base memories (checked accesses) the whole pool is one read-write mapping
//!   (pages committed only when touched): a slot is `max_memory_size` bytes, growing within
//!   it only changes the length, and the pool costs one mapping whatever its size.
//!
//! A slot is zeroed when it is given back: the pages below the length its memory reached
//! (only those can have been written) are discarded with `MADV_DONTNEED`, or written with
//! zeros where that does not zero them (an emulator may accept the call and ignore it). The
//! first `linear_memory_keep_resident` bytes are zeroed in place instead, and only where they
//! are not zero already ([`zero_in_place`]): a tenant writes a few of its pages, and checking
//! the others is cheaper than writing them.
//!
//! Tables keep their element vectors (capacity `table_elements`) in a free list, and instances
//! their vmctx storage; both pools count what is in use against their totals.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use weft_compiler::{MAX_MEMORY32_BYTES, MemoryBounds};

use super::memory::{self, Memory, WASM_PAGE_SIZE};
use super::table::Table;

/// Sizes and counts of an engine's pools (the runtime's `PoolingAllocationConfig`, checked).
#[derive(Clone, Copy, Debug)]
pub struct PoolLimits {
    pub total_memories: u32,
    /// A memory's size limit in bytes, a multiple of the Wasm page.
    pub max_memory_size: usize,
    pub total_tables: u32,
    pub table_elements: u32,
    pub total_instances: u32,
    /// Bytes at the start of a memory slot zeroed by writing rather than given back to the
    /// system when the slot is released.
    pub keep_resident: usize,
}

/// The pools of one engine.
pub struct Pools {
    pub memories: Arc<MemoryPool>,
    pub tables: Arc<TablePool>,
    pub instances: Arc<InstancePool>,
}

impl Pools {
    /// Reserves the address space of every memory slot.
    ///
    /// # Errors
    /// A message if the reservation is refused or its size overflows.
    pub fn new(limits: PoolLimits, bounds: MemoryBounds) -> Result<Pools, String> {
        Ok(Pools {
            memories: Arc::new(MemoryPool::new(&limits, bounds)?),
            tables: Arc::new(TablePool {
                max_elements: limits.table_elements,
                slots: Slots::new(limits.total_tables, "table", "total_tables"),
            }),
            instances: Arc::new(InstancePool {
                slots: Slots::new(limits.total_instances, "instance", "total_core_instances"),
            }),
        })
    }
}

/// Counted reusable storage: at most `total` in use, and what was given back, for reuse.
struct Slots<S> {
    total: u32,
    /// What the slots are and the setting that bounds them, for the refusal's message.
    what: &'static str,
    setting: &'static str,
    state: Mutex<SlotState<S>>,
}

struct SlotState<S> {
    in_use: u32,
    free: Vec<S>,
}

impl<S> Slots<S> {
    fn new(total: u32, what: &'static str, setting: &'static str) -> Self {
        Slots {
            total,
            what,
            setting,
            state: Mutex::new(SlotState {
                in_use: 0,
                free: Vec::new(),
            }),
        }
    }

    /// Counts one more slot in use, with storage given back earlier if there is some.
    ///
    /// # Errors
    /// A message naming the setting if every slot is in use.
    fn take(&self) -> Result<Option<S>, String> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.in_use == self.total {
            return Err(format!(
                "all {} {} slots of the pool are in use (PoolingAllocationConfig::{})",
                self.total, self.what, self.setting
            ));
        }
        state.in_use += 1;
        Ok(state.free.pop())
    }

    /// Counts a slot as free again, keeping its storage for the next [`Self::take`].
    fn give_back(&self, storage: S) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.in_use -= 1;
        state.free.push(storage);
    }
}

pub struct MemoryPool {
    base: *mut u8,
    /// Bytes mapped for all slots.
    len: usize,
    stride: usize,
    max_memory_bytes: usize,
    fixed_base: bool,
    total: u32,
    /// Bytes at a slot's start zeroed in place on release (`PoolLimits::keep_resident`
    /// rounded up to whole pages).
    keep_resident: usize,
    /// Free slots and the bytes each keeps accessible; the last given back is the first
    /// reused (its pages are the likeliest to be warm).
    free: Mutex<Vec<(u32, usize)>>,
}

// SAFETY: the pool owns its mapping; slots are handed out under the mutex, each to one memory
// at a time, and the pool itself only touches a slot while no memory holds it.
unsafe impl Send for MemoryPool {}
// SAFETY: as above.
unsafe impl Sync for MemoryPool {}

impl MemoryPool {
    fn new(limits: &PoolLimits, bounds: MemoryBounds) -> Result<Self, String> {
        let (total, max_memory_size) = (limits.total_memories, limits.max_memory_size);
        let fixed_base = bounds.fixed_base();
        let too_big = || {
            format!(
                "a memory pool of {total} slots of {max_memory_size} bytes (plus guards) exceeds \
                 the address space"
            )
        };
        let max_memory_bytes = max_memory_size.min(MAX_MEMORY32_BYTES as usize);
        let stride = if fixed_base {
            usize::try_from(bounds.reservation + bounds.guard_size).map_err(|_| too_big())?
        } else {
            max_memory_bytes
        };
        let len = stride.checked_mul(total as usize).ok_or_else(too_big)?;
        let prot = if fixed_base {
            libc::PROT_NONE
        } else {
            libc::PROT_READ | libc::PROT_WRITE
        };
        let base = if len == 0 {
            std::ptr::NonNull::<u8>::dangling().as_ptr()
        } else {
            memory::map_with(len, prot)?
        };
        let accessible = if fixed_base { 0 } else { stride };
        Ok(MemoryPool {
            base,
            len,
            stride,
            max_memory_bytes,
            fixed_base,
            total,
            // Whole pages: what is not zeroed in place is given back with `madvise`, which
            // takes page-aligned ranges only (and would otherwise refuse the whole range).
            keep_resident: limits
                .keep_resident
                .checked_next_multiple_of(weft_arch::stack::page_size())
                .unwrap_or(usize::MAX),
            free: Mutex::new((0..total).rev().map(|slot| (slot, accessible)).collect()),
        })
    }

    /// A memory of `min_pages` pages (at most `max_pages`) in a free slot; a 64-bit one
    /// (`is_64`) too, which compiled code checks explicitly and which cannot grow past the
    /// slot either.
    ///
    /// # Errors
    /// A message if the memory does not fit a slot or every slot is in use.
    pub fn allocate(
        self: &Arc<Self>,
        min_pages: u64,
        max_pages: Option<u64>,
        is_64: bool,
    ) -> Result<Memory, String> {
        let limit = memory::max_pages_for(is_64);
        let max_pages = max_pages.unwrap_or(limit).min(limit);
        if min_pages > max_pages {
            return Err("memory minimum exceeds its maximum".into());
        }
        if min_pages > (self.max_memory_bytes / WASM_PAGE_SIZE) as u64 {
            return Err(format!(
                "a memory of {min_pages} pages does not fit the pool's slots of {} pages \
                 (PoolingAllocationConfig::max_memory_size)",
                self.max_memory_bytes / WASM_PAGE_SIZE
            ));
        }
        let (slot, accessible) = self
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .ok_or_else(|| {
                format!(
                    "all {} memory slots of the pool are in use \
                     (PoolingAllocationConfig::total_memories)",
                    self.total
                )
            })?;
        Memory::in_slot(self.clone(), slot, accessible, min_pages, max_pages, is_64)
    }

    pub(super) fn slot_base(&self, slot: u32) -> *mut u8 {
        self.base.wrapping_add(slot as usize * self.stride)
    }

    pub(super) fn max_memory_bytes(&self) -> usize {
        self.max_memory_bytes
    }

    pub(super) fn fixed_base(&self) -> bool {
        self.fixed_base
    }

    /// Takes back `slot`, whose first `accessible` bytes are accessible and whose first
    /// `dirty` may have been written: zeroes those (the first `keep_resident` in place, so
    /// that the next tenant finds them resident, writing only the chunks that are not zero
    /// already; the rest by giving them back), and keeps the accessible prefix.
    pub(super) fn release(&self, slot: u32, accessible: usize, dirty: usize) {
        let base = self.slot_base(slot);
        let kept = dirty.min(self.keep_resident);
        // SAFETY: the slot's memory is being dropped, so nothing refers to its bytes; they lie
        // in our mapping, are accessible (dirty <= accessible), and the slot's base is
        // page-aligned.
        unsafe {
            zero_in_place(base, kept);
            discard(base.add(kept), dirty - kept);
        }
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((slot, accessible));
    }
}

impl Drop for MemoryPool {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: our own mapping; every memory holds the pool alive, so none is left.
            unsafe { libc::munmap(self.base.cast(), self.len) };
        }
    }
}

/// Bytes a reset inspects at once: a chunk that reads as zero is left alone.
const RESET_CHUNK: usize = 4096;

/// Zeroes the `len` accessible, read-write bytes at `base` in place, writing only the chunks
/// that are not zero already.
///
/// A tenant usually writes a few pages of its memory (its data, its shadow stack's top); the
/// rest still reads as zero, and on Linux a page never written is the shared zero page. So a
/// reset that reads the slot and writes only what is not zero leaves those pages unwritten:
/// with many slots in use (a working set larger than the caches) it costs half of writing the
/// whole slot. With one slot reused hot, reading costs about what writing does (on x86-64 with
/// AVX2 loads; twice as much with 16-byte loads, so those are used only where AVX2 is missing).
///
/// # Safety
/// `base..base + len` is readable and writable, `base` is 8-byte aligned, and nothing else
/// refers to these bytes.
unsafe fn zero_in_place(base: *mut u8, len: usize) {
    // SAFETY: the caller's contract: the bytes are ours, readable and writable, and aligned
    // for `u64` (a slot's base is page-aligned).
    let words = unsafe { std::slice::from_raw_parts_mut(base.cast::<u64>(), len / 8) };
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        unsafe { zero_nonzero_chunks_avx2(words) };
    } else {
        zero_nonzero_chunks(words);
    }
    #[cfg(not(target_arch = "x86_64"))]
    zero_nonzero_chunks(words);
    // SAFETY: as above; the bytes past the last whole word.
    unsafe { std::ptr::write_bytes(base.add(len / 8 * 8), 0, len % 8) };
}

/// [`zero_nonzero_chunks`] compiled with 32-byte loads.
///
/// # Safety
/// The CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn zero_nonzero_chunks_avx2(words: &mut [u64]) {
    zero_nonzero_chunks(words);
}

/// Zeroes each `RESET_CHUNK` of `words` that is not zero. Sixteen accumulators, so that the
/// compiler ORs whole vectors of loads without a dependency from one to the next.
#[inline(always)]
fn zero_nonzero_chunks(words: &mut [u64]) {
    for chunk in words.chunks_mut(RESET_CHUNK / 8) {
        let mut any = [0u64; 16];
        let mut lines = chunk.chunks_exact(16);
        for line in &mut lines {
            for (any, &word) in any.iter_mut().zip(line) {
                *any |= word;
            }
        }
        let rest = lines.remainder().iter().fold(0, |any, &word| any | word);
        if any.iter().fold(rest, |any, &word| any | word) != 0 {
            chunk.fill(0);
        }
    }
}

/// Zeroes the `len` accessible, read-write bytes at `base`, giving the pages back to the
/// system where it can.
///
/// # Safety
/// `base..base + len` is part of an anonymous private mapping of the caller's that nothing
/// else refers to, and read-write.
pub(super) unsafe fn discard(base: *mut u8, len: usize) {
    if len == 0 {
        return;
    }
    if dontneed_zeroes() {
        // SAFETY: the caller's contract; on this system the pages read as zero afterwards.
        unsafe { libc::madvise(base.cast(), len, libc::MADV_DONTNEED) };
    } else {
        // SAFETY: the caller's contract: the bytes are ours and writable.
        unsafe { std::ptr::write_bytes(base, 0, len) };
    }
}

/// Whether `MADV_DONTNEED` zeroes anonymous private pages here (it does on Linux, and under
/// the qemu-user 7.2 CI uses; an emulator that accepts the call and ignores it would leave a
/// slot's old contents). Probed once.
fn dontneed_zeroes() -> bool {
    static PROBED: AtomicU8 = AtomicU8::new(0);
    match PROBED.load(Ordering::Relaxed) {
        1 => return true,
        2 => return false,
        _ => {}
    }
    let page = 4096;
    let works = match memory::map(page) {
        Ok(probe) => {
            // SAFETY: a fresh read-write page of our own, unmapped before returning.
            unsafe {
                probe.write_volatile(1);
                libc::madvise(probe.cast(), page, libc::MADV_DONTNEED);
                let zeroed = probe.read_volatile() == 0;
                libc::munmap(probe.cast(), page);
                zeroed
            }
        }
        Err(_) => false,
    };
    PROBED.store(if works { 1 } else { 2 }, Ordering::Relaxed);
    works
}

pub struct TablePool {
    max_elements: u32,
    slots: Slots<Vec<usize>>,
}

impl TablePool {
    /// A table of `min` elements of `init` (at most `max`) from the pool.
    ///
    /// # Errors
    /// A message if the table is larger than a slot or every slot is in use.
    pub fn allocate(
        self: &Arc<Self>,
        min: u64,
        max: Option<u64>,
        init: usize,
    ) -> Result<Table, String> {
        if min > u64::from(self.max_elements) {
            return Err(format!(
                "a table of {min} elements does not fit the pool's slots of {} \
                 (PoolingAllocationConfig::table_elements)",
                self.max_elements
            ));
        }
        let mut elements = self
            .slots
            .take()?
            .unwrap_or_else(|| Vec::with_capacity(self.max_elements as usize));
        elements.clear();
        elements.resize(min as usize, init);
        let slot = u64::from(self.max_elements);
        let max = Some(max.map_or(slot, |m| m.min(slot)));
        Ok(Table::with_elements(elements, max, Some(self.clone())))
    }

    /// Takes back a table's elements.
    pub(super) fn release(&self, elements: Vec<usize>) {
        self.slots.give_back(elements);
    }
}

pub struct InstancePool {
    slots: Slots<Box<[u128]>>,
}

impl InstancePool {
    /// Storage for a vmctx of `bytes` bytes, zeroed.
    ///
    /// # Errors
    /// A message if every instance slot is in use.
    pub fn allocate(self: &Arc<Self>, bytes: usize) -> Result<Vmctx, String> {
        let words = bytes.div_ceil(16).max(1);
        let reused = self.slots.take()?;
        let words = match reused {
            Some(mut storage) if storage.len() >= words => {
                storage[..words].fill(0);
                storage
            }
            _ => vec![0u128; words].into_boxed_slice(),
        };
        Ok(Vmctx {
            words,
            pool: Some(self.clone()),
        })
    }
}

/// The storage of an instance's vmctx (16-byte aligned), given back to its pool when dropped.
pub struct Vmctx {
    words: Box<[u128]>,
    pool: Option<Arc<InstancePool>>,
}

impl Vmctx {
    /// Zeroed storage of its own for a vmctx of `bytes` bytes.
    pub fn on_demand(bytes: usize) -> Vmctx {
        Vmctx {
            words: vec![0u128; bytes.div_ceil(16).max(1)].into_boxed_slice(),
            pool: None,
        }
    }

    pub(super) fn as_ptr(&self) -> *mut u8 {
        self.words.as_ptr().cast_mut().cast()
    }

    pub(super) fn byte_len(&self) -> usize {
        self.words.len() * 16
    }
}

impl Drop for Vmctx {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            pool.slots.give_back(std::mem::take(&mut self.words));
        }
    }
}
