//! Linear memories.
//!
//! In guard-page mode a 32-bit memory owns an 8 GiB reservation of inaccessible address space
//! (4 GiB for the largest memory plus 4 GiB for the largest static offset) of which the first
//! `current_length` bytes are readable and writable. Compiled code adds the 32-bit index and
//! offset to the base without a check; anything past `current_length` faults. `memory.grow`
//! only changes protection, so the base never moves. Reservations are recycled through a small
//! process-wide pool, because mapping and unmapping 8 GiB is slow under emulators.
//!
//! In explicit-bounds mode the memory is mapped at its current size and compiled code checks
//! each access; growing may move it (`mremap`).

use std::ptr::{self, NonNull};
use std::sync::Mutex;

use weft_compiler::MemoryMode;

use super::vmstructs::VMMemoryDefinition;

pub const WASM_PAGE_SIZE: usize = 65536;
/// Pages a 32-bit memory can have at most.
pub const MAX_PAGES_32: u64 = 65536;
/// Address space one guard-page memory reserves.
const RESERVATION: usize = (8 << 30) + WASM_PAGE_SIZE;
/// Reservations kept for reuse after their memory is dropped.
const POOL_LIMIT: usize = 32;

static RESERVATION_POOL: Mutex<Vec<usize>> = Mutex::new(Vec::new());

pub struct Memory {
    definition: Box<VMMemoryDefinition>,
    mode: MemoryMode,
    /// Bytes mapped (explicit mode) or reserved (guard mode); 0 when nothing is mapped.
    mapped: usize,
    max_pages: u64,
}

// SAFETY: the memory owns its mapping; access goes through `&self`/`&mut self`, and compiled
// code touches it only while the owning store is exclusively borrowed.
unsafe impl Send for Memory {}
// SAFETY: shared access only reads the definition.
unsafe impl Sync for Memory {}

impl Memory {
    /// A memory of `min_pages` pages that may grow to `max_pages` (at most 65536).
    ///
    /// # Errors
    /// A message if the address space or memory cannot be obtained.
    pub fn new(mode: MemoryMode, min_pages: u64, max_pages: Option<u64>) -> Result<Memory, String> {
        let max_pages = max_pages.unwrap_or(MAX_PAGES_32).min(MAX_PAGES_32);
        if min_pages > max_pages {
            return Err("memory minimum exceeds its maximum".into());
        }
        let len = min_pages as usize * WASM_PAGE_SIZE;
        let mut memory = Memory {
            definition: Box::new(VMMemoryDefinition {
                base: NonNull::<u8>::dangling().as_ptr(),
                current_length: 0,
            }),
            mode,
            mapped: 0,
            max_pages,
        };
        match mode {
            MemoryMode::GuardPages => {
                let base = take_reservation()?;
                memory.definition.base = base;
                memory.mapped = RESERVATION;
                memory.make_accessible(0, len)?;
            }
            MemoryMode::ExplicitBounds => {
                if len > 0 {
                    memory.definition.base = map(len)?;
                    memory.mapped = len;
                }
            }
        }
        memory.definition.current_length = len;
        Ok(memory)
    }

    fn make_accessible(&mut self, from: usize, to: usize) -> Result<(), String> {
        if to <= from {
            return Ok(());
        }
        // SAFETY: `from..to` lies inside our reservation (to <= 4 GiB < RESERVATION).
        let rc = unsafe {
            libc::mprotect(
                self.definition.base.add(from).cast(),
                to - from,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if rc != 0 {
            return Err(format!(
                "committing memory failed: {}",
                std::io::Error::last_os_error()
            ));
        }
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
        let old_len = self.definition.current_length;
        let new_len = new_pages as usize * WASM_PAGE_SIZE;
        if delta == 0 {
            return Some(old_pages);
        }
        match self.mode {
            MemoryMode::GuardPages => self.make_accessible(old_len, new_len).ok()?,
            MemoryMode::ExplicitBounds => {
                let base = if self.mapped == 0 {
                    map(new_len).ok()?
                } else {
                    // SAFETY: remapping our own mapping; compiled code reloads the base after
                    // every call, so nothing holds the old address.
                    let base = unsafe {
                        libc::mremap(
                            self.definition.base.cast(),
                            self.mapped,
                            new_len,
                            libc::MREMAP_MAYMOVE,
                        )
                    };
                    if base == libc::MAP_FAILED {
                        return None;
                    }
                    base.cast()
                };
                self.definition.base = base;
                self.mapped = new_len;
            }
        }
        self.definition.current_length = new_len;
        Some(old_pages)
    }

    pub fn pages(&self) -> u64 {
        (self.definition.current_length / WASM_PAGE_SIZE) as u64
    }

    pub fn max_pages(&self) -> u64 {
        self.max_pages
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
        if self.mapped == 0 {
            return;
        }
        match self.mode {
            // SAFETY: our own reservation, no longer referenced by any instance (the store
            // drops its memories only when it is dropped).
            MemoryMode::GuardPages => unsafe {
                release_reservation(self.definition.base, self.definition.current_length)
            },
            // SAFETY: our own mapping, no longer referenced by any instance.
            MemoryMode::ExplicitBounds => unsafe {
                libc::munmap(self.definition.base.cast(), self.mapped);
            },
        }
    }
}

fn map(len: usize) -> Result<*mut u8, String> {
    // SAFETY: a fresh anonymous mapping.
    let base = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(format!(
            "mapping {len} bytes of linear memory failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(base.cast())
}

fn take_reservation() -> Result<*mut u8, String> {
    if let Some(base) = RESERVATION_POOL
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop()
    {
        return Ok(base as *mut u8);
    }
    // SAFETY: a fresh anonymous, inaccessible reservation.
    let base = unsafe {
        libc::mmap(
            ptr::null_mut(),
            RESERVATION,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(format!(
            "reserving {} GiB of address space for a linear memory failed: {} \
             (Config::memory_mode(MemoryMode::ExplicitBounds) needs none)",
            RESERVATION >> 30,
            std::io::Error::last_os_error()
        ));
    }
    Ok(base.cast())
}

/// Returns a reservation to the pool with its contents discarded, or unmaps it.
///
/// # Safety
/// `base` is a reservation from `take_reservation` that nothing refers to any more, with its
/// first `used` bytes made accessible.
unsafe fn release_reservation(base: *mut u8, used: usize) {
    // SAFETY: the reservation is ours and no instance refers to it any more (the caller's
    // contract). Discarding the pages and removing access restores a fresh reservation.
    unsafe {
        if used > 0 {
            libc::madvise(base.cast(), used, libc::MADV_DONTNEED);
            libc::mprotect(base.cast(), used, libc::PROT_NONE);
        }
        let mut pool = RESERVATION_POOL.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOL_LIMIT {
            pool.push(base as usize);
        } else {
            libc::munmap(base.cast(), RESERVATION);
        }
    }
}
