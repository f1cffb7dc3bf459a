//! Linear memories, and where their bytes live.
//!
//! The engine's [`MemoryBounds`] decides the layout, because compiled code depends on it:
//!
//! - **Fixed base** (a reservation of at least 4 GiB): the memory owns `reservation +
//!   guard_size` bytes of inaccessible address space of which the first `current_length` are
//!   readable and writable. Compiled code adds the index and offset to the base without a
//!   check wherever the guard covers the offset; anything past `current_length` faults.
//!   `memory.grow` only changes protection, so the base never moves. Reservations are recycled
//!   through a small process-wide pool, because mapping and unmapping 8 GiB is slow under
//!   emulators.
//! - **Moving base** (a smaller reservation): the memory is one read-write mapping of at least
//!   `reservation` bytes (committed only as pages are touched), compiled code checks each
//!   access against `current_length`, and growing within the mapping only changes the length.
//!   Growing past it moves the memory (`mremap`), reserving `reservation_for_growth` more
//!   bytes than asked so that the next growths stay in place. Being one mapping of one
//!   protection is what lets `mremap` move it and costs a single `/proc/self/maps` line.
//! - **64-bit memories** (memory64) always take the moving-base layout, whatever the
//!   bounds: no reservation holds every address a 64-bit index can form, so compiled code
//!   checks each of their accesses and reloads the base. A fixed-base engine (whose
//!   `reservation` is meant for 32-bit memories) maps only what a 64-bit memory needs; a
//!   moving-base engine gives it its `reservation` like any other memory.
//! - **Pooled**: a slot of an engine's [`MemoryPool`](super::pool::MemoryPool), laid out as
//!   either of the above but never moving: growing past the slot fails.
//!
//! Bytes past `current_length` are always zero: memories never shrink, Wasm and the host reach
//! only bytes below the length, and a pooled slot is zeroed when it is given back.

use std::ptr::{self, NonNull};
use std::sync::{Arc, Mutex};

use weft_compiler::{MAX_MEMORY32_BYTES, MemoryBounds};

use super::pool::MemoryPool;
use super::vmstructs::VMMemoryDefinition;

pub const WASM_PAGE_SIZE: usize = 65536;
/// Pages a 32-bit memory can have at most.
pub const MAX_PAGES_32: u64 = 65536;
/// Pages a 64-bit memory can have at most (2^48, so that its byte length fits 64 bits);
/// long before that, mapping the bytes fails and growth returns `None`.
pub const MAX_PAGES_64: u64 = 1 << 48;
/// Fixed-base reservations kept for reuse after their memory is dropped.
const POOL_LIMIT: usize = 32;

/// Unused fixed-base reservations: base address and length.
static RESERVATION_POOL: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

/// How an engine lays out the memories it makes on demand.
#[derive(Clone, Copy, Debug)]
pub struct MemorySettings {
    /// What compiled code assumes (sizes rounded up to Wasm pages).
    pub bounds: MemoryBounds,
    /// Extra bytes reserved when a moving memory is mapped anew.
    pub reservation_for_growth: usize,
}

/// Where a memory's bytes live.
enum Storage {
    /// Nothing mapped yet (a moving memory of 0 bytes).
    Empty,
    /// A fixed-base reservation of `len` bytes of its own.
    Reserved { len: usize },
    /// A read-write mapping of its own; its length is `Memory::accessible`.
    Mapped,
    /// Slot `slot` of an engine's pool.
    Pooled { pool: Arc<MemoryPool>, slot: u32 },
}

pub struct Memory {
    definition: Box<VMMemoryDefinition>,
    storage: Storage,
    /// Bytes from the base that are readable and writable (at least `current_length`).
    accessible: usize,
    /// Bytes from the base the memory may grow to in place.
    capacity: usize,
    /// Extra bytes to map when a moving memory moves.
    reservation_for_growth: usize,
    max_pages: u64,
    /// A 64-bit memory (memory64): addresses are i64 and the size limit is [`MAX_PAGES_64`].
    is_64: bool,
}

// SAFETY: the memory owns its mapping (or slot); access goes through `&self`/`&mut self`, and
// compiled code touches it only while the owning store is exclusively borrowed.
unsafe impl Send for Memory {}
// SAFETY: shared access only reads the definition.
unsafe impl Sync for Memory {}

impl Memory {
    /// A memory of `min_pages` pages that may grow to `max_pages` (at most
    /// [`max_pages_for`]`(is_64)`), with address space of its own laid out as `settings` say.
    ///
    /// # Errors
    /// A message if the address space or memory cannot be obtained.
    pub fn new(
        settings: &MemorySettings,
        min_pages: u64,
        max_pages: Option<u64>,
        is_64: bool,
    ) -> Result<Memory, String> {
        let limit = max_pages_for(is_64);
        let max_pages = max_pages.unwrap_or(limit).min(limit);
        if min_pages > max_pages {
            return Err("memory minimum exceeds its maximum".into());
        }
        let len = usize::try_from(min_pages)
            .ok()
            .and_then(|pages| pages.checked_mul(WASM_PAGE_SIZE))
            .ok_or_else(|| {
                format!("a memory of {min_pages} pages does not fit the address space")
            })?;
        let mut memory = Memory {
            definition: Box::new(VMMemoryDefinition {
                base: NonNull::<u8>::dangling().as_ptr(),
                current_length: 0,
            }),
            storage: Storage::Empty,
            accessible: 0,
            capacity: 0,
            reservation_for_growth: settings.reservation_for_growth,
            max_pages,
            is_64,
        };
        let bounds = settings.bounds;
        if bounds.fixed_base() && !is_64 {
            let reserved = usize::try_from(bounds.reservation + bounds.guard_size)
                .map_err(|_| "memory reservation exceeds the address space".to_string())?;
            memory.definition.base = take_reservation(reserved)?;
            memory.storage = Storage::Reserved { len: reserved };
            memory.capacity = MAX_MEMORY32_BYTES as usize;
            memory.make_accessible(len)?;
        } else {
            // A fixed-base engine's reservation is for 32-bit memories (see the module doc).
            let reservation = if bounds.fixed_base() {
                0
            } else {
                bounds.reservation as usize
            };
            let wanted = reservation.max(len).min(pages_to_bytes(max_pages));
            if wanted > 0 {
                memory.definition.base = map(wanted)?;
                memory.storage = Storage::Mapped;
                memory.accessible = wanted;
                memory.capacity = wanted;
            }
        }
        memory.definition.current_length = len;
        Ok(memory)
    }

    /// A memory of `min_pages` pages in slot `slot` of `pool`, whose first `accessible` bytes
    /// are readable and writable and zero (the pool's contract), and the rest of which is
    /// inaccessible if the pool's memories have fixed bases.
    ///
    /// # Errors
    /// A message if the pages cannot be made accessible (the slot is then given back).
    pub(super) fn in_slot(
        pool: Arc<MemoryPool>,
        slot: u32,
        accessible: usize,
        min_pages: u64,
        max_pages: u64,
        is_64: bool,
    ) -> Result<Memory, String> {
        let len = min_pages as usize * WASM_PAGE_SIZE;
        let mut memory = Memory {
            definition: Box::new(VMMemoryDefinition {
                base: pool.slot_base(slot),
                current_length: 0,
            }),
            accessible,
            capacity: pool.max_memory_bytes(),
            reservation_for_growth: 0,
            max_pages,
            is_64,
            storage: Storage::Pooled { pool, slot },
        };
        if memory.protects_tail() && accessible > len {
            // A previous tenant grew further: its tail must fault again for us.
            protect(memory.definition.base, len, accessible, libc::PROT_NONE)?;
            memory.accessible = len;
        }
        memory.make_accessible(len)?;
        memory.definition.current_length = len;
        Ok(memory)
    }

    /// Whether bytes past the length must be inaccessible: compiled code relies on faults.
    fn protects_tail(&self) -> bool {
        match &self.storage {
            Storage::Reserved { .. } => true,
            Storage::Pooled { pool, .. } => pool.fixed_base(),
            Storage::Empty | Storage::Mapped => false,
        }
    }

    /// Makes the first `to` bytes accessible, within the capacity.
    fn make_accessible(&mut self, to: usize) -> Result<(), String> {
        if to <= self.accessible {
            return Ok(());
        }
        debug_assert!(to <= self.capacity);
        protect(
            self.definition.base,
            self.accessible,
            to,
            libc::PROT_READ | libc::PROT_WRITE,
        )?;
        self.accessible = to;
        Ok(())
    }

    /// Grows by `delta` pages; returns the old size in pages, or `None` if the memory cannot
    /// grow that far.
    pub fn grow(&mut self, delta: u64) -> Option<u64> {
        let old_pages = self.pages();
        let new_pages = old_pages.checked_add(delta)?;
        if new_pages > self.max_pages {
            return None;
        }
        if delta == 0 {
            return Some(old_pages);
        }
        let new_len = pages_to_bytes(new_pages);
        if new_len <= self.capacity {
            self.make_accessible(new_len).ok()?;
        } else {
            match self.storage {
                Storage::Empty | Storage::Mapped => self.move_to(new_len)?,
                // A fixed base cannot move; a pooled memory cannot leave its slot.
                Storage::Reserved { .. } | Storage::Pooled { .. } => return None,
            }
        }
        self.definition.current_length = new_len;
        Some(old_pages)
    }

    /// Maps a moving memory anew with room for `new_len` bytes and then some.
    fn move_to(&mut self, new_len: usize) -> Option<()> {
        let max_len = pages_to_bytes(self.max_pages);
        let target = new_len
            .saturating_add(self.reservation_for_growth)
            .min(max_len)
            .max(new_len);
        let base = if matches!(self.storage, Storage::Empty) {
            map(target).ok()?
        } else {
            // SAFETY: remapping our own mapping, a single read-write one; compiled code
            // reloads a moving memory's base at every access, so nothing holds the old
            // address.
            let base = unsafe {
                libc::mremap(
                    self.definition.base.cast(),
                    self.accessible,
                    target,
                    libc::MREMAP_MAYMOVE,
                )
            };
            if base == libc::MAP_FAILED {
                return None;
            }
            base.cast()
        };
        self.definition.base = base;
        self.storage = Storage::Mapped;
        self.accessible = target;
        self.capacity = target;
        Some(())
    }

    pub fn pages(&self) -> u64 {
        (self.definition.current_length / WASM_PAGE_SIZE) as u64
    }

    pub fn max_pages(&self) -> u64 {
        self.max_pages
    }

    /// Whether this is a 64-bit memory (memory64).
    pub fn is_64(&self) -> bool {
        self.is_64
    }

    pub fn byte_len(&self) -> usize {
        self.definition.current_length
    }

    /// The definition compiled code reads; its address is stable for the memory's lifetime.
    pub fn definition(&self) -> *mut VMMemoryDefinition {
        (&raw const *self.definition).cast_mut()
    }

    pub fn data(&self) -> &[u8] {
        // SAFETY: `base..base + current_length` is mapped readable for as long as `self` is
        // borrowed (only `grow`, which needs `&mut self`, changes it).
        unsafe { std::slice::from_raw_parts(self.definition.base, self.definition.current_length) }
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`, and `&mut self` makes the access exclusive.
        unsafe {
            std::slice::from_raw_parts_mut(self.definition.base, self.definition.current_length)
        }
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        let base = self.definition.base;
        match &self.storage {
            Storage::Empty => {}
            // SAFETY: our own reservation, no longer referenced by any instance (the store
            // drops its memories only when it is dropped).
            Storage::Reserved { len } => unsafe {
                release_reservation(base, self.accessible, *len)
            },
            // SAFETY: our own mapping, no longer referenced by any instance.
            Storage::Mapped => unsafe {
                libc::munmap(base.cast(), self.accessible);
            },
            // Only the bytes below the length can have been written.
            Storage::Pooled { pool, slot } => {
                pool.release(*slot, self.accessible, self.definition.current_length)
            }
        }
    }
}

/// The most pages a memory of the index type `is_64` says may have.
pub fn max_pages_for(is_64: bool) -> u64 {
    if is_64 { MAX_PAGES_64 } else { MAX_PAGES_32 }
}

/// The byte length of `pages` pages, saturated: a length past the address space is one no
/// mapping can have, so growing to it fails.
fn pages_to_bytes(pages: u64) -> usize {
    usize::try_from(pages)
        .unwrap_or(usize::MAX)
        .saturating_mul(WASM_PAGE_SIZE)
}

/// Sets the protection of `base + from .. base + to`.
///
/// # Errors
/// A message if the system refuses.
pub(super) fn protect(base: *mut u8, from: usize, to: usize, prot: i32) -> Result<(), String> {
    if to <= from {
        return Ok(());
    }
    // SAFETY: callers pass a range inside a reservation or slot they own, whose pages hold
    // nothing that Rust references: only the protection changes.
    let rc = unsafe { libc::mprotect(base.add(from).cast(), to - from, prot) };
    if rc != 0 {
        return Err(format!(
            "changing the protection of linear memory failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// A fresh read-write mapping of `len` bytes, committed as pages are touched.
///
/// # Errors
/// A message if the system refuses.
pub(super) fn map(len: usize) -> Result<*mut u8, String> {
    map_with(len, libc::PROT_READ | libc::PROT_WRITE)
}

/// A fresh anonymous mapping of `len` bytes with protection `prot`.
///
/// # Errors
/// A message if the system refuses.
pub(super) fn map_with(len: usize, prot: i32) -> Result<*mut u8, String> {
    // SAFETY: a fresh anonymous mapping.
    let base = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(format!(
            "mapping {len} bytes for linear memory failed: {} (a smaller \
             Config::memory_reservation needs less address space)",
            std::io::Error::last_os_error()
        ));
    }
    Ok(base.cast())
}

fn take_reservation(len: usize) -> Result<*mut u8, String> {
    {
        let mut pool = RESERVATION_POOL.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = pool.iter().position(|&(_, l)| l == len) {
            return Ok(pool.swap_remove(i).0 as *mut u8);
        }
    }
    map_with(len, libc::PROT_NONE)
}

/// Returns a reservation to the pool with its contents discarded, or unmaps it.
///
/// # Safety
/// `base` is a reservation of `len` bytes from `take_reservation` that nothing refers to any
/// more, with its first `used` bytes made accessible.
unsafe fn release_reservation(base: *mut u8, used: usize, len: usize) {
    // SAFETY: the reservation is ours and no instance refers to it any more (the caller's
    // contract). Discarding the pages and removing access restores a fresh reservation.
    unsafe {
        if used > 0 {
            super::pool::discard(base, used);
            libc::mprotect(base.cast(), used, libc::PROT_NONE);
        }
        let mut pool = RESERVATION_POOL.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOL_LIMIT {
            pool.push((base as usize, len));
        } else {
            libc::munmap(base.cast(), len);
        }
    }
}
