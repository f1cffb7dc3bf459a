//! Stacks for continuations: guarded, lazily committed, pooled.
//!
//! A [`Stack`] is one anonymous mapping: a guard page (`PROT_NONE`) at the bottom and the usable
//! stack above it. The whole size is reserved up front (`MAP_NORESERVE`), and the kernel
//! commits a physical page only when it is first written, so a shallow suspended call costs the
//! page or two it touched however large its reserve. `MAP_STACK` keeps transparent huge pages
//! off (Linux 6.7+), which would otherwise commit 2 MiB at a time.
//!
//! ```text
//!   top ──────────────▶ ┌──────────────────────┐  highest address, 16-aligned
//!                       │ resident watermark   │  kept committed between uses
//!                       ├──────────────────────┤
//!                       │                      │  given back (MADV_DONTNEED) on release
//!                       │ usable               │
//!   usable().start ───▶ ├──────────────────────┤
//!                       │ guard page PROT_NONE │  a write here faults: never silent overflow
//!   guard().start ────▶ └──────────────────────┘
//! ```
//!
//! Wasm code never reaches the guard page: the runtime sets the Wasm stack limit inside
//! [`Stack::usable`] with headroom for host functions, and Cranelift's prologue check traps
//! first. The guard catches host code that overflows anyway; the runtime's signal handler can
//! tell such a fault apart with [`Stack::guard`].
//!
//! [`StackPool`] recycles stacks (last released, first reused, since its top pages are warm) and
//! returns each stack's pages below the resident watermark to the kernel when it comes back,
//! so one deep call does not keep its memory forever.
//!
//! # Limits and the allocation strategy
//!
//! Each stack costs two VMAs (the guard and the usable part differ in protection), and Linux
//! allows `vm.max_map_count` = 65,530 per process by default: about 32,000 stacks, minus what
//! the rest of the process maps. That is enough for the 10,000 suspended calls weft needs now.
//! Reaching a million needs a different strategy — stacks carved from a few large mappings,
//! guarded by the Wasm stack limit alone, or guard pages shared between neighbours — which is
//! why the runtime only sees `StackPool::{allocate, release}` and the [`Stack`] ranges.
//!
//! Errors are the operating system's (`std::io::Error` from `mmap`/`mprotect`): there is no
//! other way to fail here.

use std::io;
use std::ops::Range;
use std::ptr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system page size.
pub fn page_size() -> usize {
    static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);
    match PAGE_SIZE.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: sysconf has no preconditions.
            let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
            PAGE_SIZE.store(size, Ordering::Relaxed);
            size
        }
        size => size,
    }
}

fn round_up_to_pages(bytes: usize) -> usize {
    bytes.next_multiple_of(page_size())
}

/// How a [`StackPool`] shapes its stacks.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// Usable bytes per stack, rounded up to whole pages. Default 1 MiB.
    pub size: usize,
    /// Bytes at the top of a stack that stay committed when it goes back to the pool, rounded up
    /// to whole pages; everything below is given back. Default 8 KiB.
    pub resident_watermark: usize,
    /// Stacks the pool keeps for reuse; stacks released beyond this are unmapped. Default 1024.
    pub max_pooled: usize,
}

impl Default for StackConfig {
    fn default() -> Self {
        StackConfig {
            size: 1 << 20,
            resident_watermark: 8 << 10,
            max_pooled: 1024,
        }
    }
}

/// One guarded stack mapping. Unmapped on drop.
#[derive(Debug)]
pub struct Stack {
    /// Start of the mapping: the guard page.
    base: usize,
    /// Length of the guard.
    guard_len: usize,
    /// Length of the whole mapping (guard + usable).
    len: usize,
}

// SAFETY: a `Stack` is an owned address range; nothing in it is tied to the thread that mapped
// it. Which thread may *run* on it is the switcher's business, not this type's.
unsafe impl Send for Stack {}
// SAFETY: `&Stack` only exposes addresses.
unsafe impl Sync for Stack {}

impl Stack {
    /// Maps a stack with `size` usable bytes (rounded up to pages) above one guard page.
    ///
    /// # Errors
    ///
    /// The OS error if `mmap` or `mprotect` fails (address space or `vm.max_map_count`
    /// exhausted).
    pub fn new(size: usize) -> io::Result<Stack> {
        let guard_len = page_size();
        let len = guard_len + round_up_to_pages(size.max(1));
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing touches no
        // existing memory.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = Stack {
            base: base as usize,
            guard_len,
            len,
        };
        // SAFETY: the guard is the first page of the mapping we just made and own.
        if unsafe { libc::mprotect(base, guard_len, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error()); // `stack` unmaps on drop
        }
        Ok(stack)
    }

    /// The highest address of the stack (exclusive), aligned to
    /// [`STACK_ALIGNMENT`](crate::STACK_ALIGNMENT): what [`init_stack`](crate::init_stack)
    /// takes.
    pub fn top(&self) -> usize {
        self.base + self.len
    }

    /// The usable range, from just above the guard page up to [`top`](Self::top). The Wasm stack
    /// limit belongs inside it, high enough above `start` to leave headroom for host functions
    /// called from Wasm (and below the few words the switcher keeps at the top).
    pub fn usable(&self) -> Range<usize> {
        self.base + self.guard_len..self.top()
    }

    /// The guard page(s): a fault with an address in this range is a stack overflow by code
    /// that does not check the Wasm stack limit.
    pub fn guard(&self) -> Range<usize> {
        self.base..self.base + self.guard_len
    }

    /// Gives the pages of `self.usable()` below `top - keep` back to the kernel; they read as
    /// zero and are committed again on the next write.
    fn decommit_below(&self, keep: usize) {
        let usable = self.usable();
        let end = usable.end.saturating_sub(keep).max(usable.start);
        if end > usable.start {
            // SAFETY: the range is page-aligned, inside our own mapping, and no code runs on the
            // stack (it was released). MADV_DONTNEED cannot fail on a valid private anonymous
            // range, and if it did the pages would merely stay committed.
            unsafe {
                libc::madvise(
                    usable.start as *mut libc::c_void,
                    end - usable.start,
                    libc::MADV_DONTNEED,
                );
            }
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: we own the mapping and nothing runs on it any more (the owner's contract).
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

/// Reuses stacks, and returns the memory of released stacks to the kernel below a watermark.
///
/// Thread-safe; a stack may be allocated on one thread and released on another.
#[derive(Debug)]
pub struct StackPool {
    config: StackConfig,
    free: Mutex<Vec<Stack>>,
}

impl StackPool {
    /// An empty pool that makes stacks shaped by `config`.
    pub fn new(config: StackConfig) -> StackPool {
        StackPool {
            config,
            free: Mutex::new(Vec::new()),
        }
    }

    /// The pool's configuration.
    pub fn config(&self) -> &StackConfig {
        &self.config
    }

    /// A stack: the most recently released one if any, else a new mapping.
    ///
    /// # Errors
    ///
    /// The OS error if a new mapping is needed and `mmap` or `mprotect` fails.
    pub fn allocate(&self) -> io::Result<Stack> {
        let reused = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match reused {
            Some(stack) => Ok(stack),
            None => Stack::new(self.config.size),
        }
    }

    /// Takes `stack` back: gives its pages below the resident watermark to the kernel and keeps
    /// it for reuse, or unmaps it if the pool already holds `max_pooled` stacks. Nothing may run
    /// on `stack` any more.
    ///
    /// Costs one `madvise` (about 0.2–1 µs, mostly syscall entry) when the stack is larger than
    /// the watermark.
    pub fn release(&self, stack: Stack) {
        if self.pooled() >= self.config.max_pooled {
            return; // `stack` unmaps on drop
        }
        // Outside the lock: the syscall is the slow part.
        stack.decommit_below(round_up_to_pages(self.config.resident_watermark));
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < self.config.max_pooled {
            free.push(stack);
        }
    }

    /// How many stacks wait in the pool.
    pub fn pooled(&self) -> usize {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Default for StackPool {
    fn default() -> Self {
        StackPool::new(StackConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which pages of `range` are resident, per `mincore`.
    fn resident_pages(range: Range<usize>) -> Vec<bool> {
        let pages = (range.end - range.start) / page_size();
        let mut flags = vec![0u8; pages];
        // SAFETY: `range` is page-aligned and mapped; `flags` has one byte per page.
        let status = unsafe {
            libc::mincore(
                range.start as *mut libc::c_void,
                range.end - range.start,
                flags.as_mut_ptr(),
            )
        };
        assert_eq!(status, 0, "{}", io::Error::last_os_error());
        flags.iter().map(|flag| flag & 1 != 0).collect()
    }

    fn touch(range: Range<usize>) {
        for page in range.step_by(page_size()) {
            // SAFETY: the tests touch only usable pages of stacks they own.
            unsafe { ptr::write_volatile(page as *mut u8, 0xa5) };
        }
    }

    #[test]
    fn stack_has_aligned_top_and_guard_below_usable_range() {
        let stack = Stack::new(100_000).unwrap();
        assert_eq!(stack.top() % crate::STACK_ALIGNMENT, 0);
        assert_eq!(stack.usable().end, stack.top());
        assert_eq!(stack.guard().end, stack.usable().start);
        assert_eq!(stack.guard().len(), page_size());
        assert_eq!(stack.usable().len(), round_up_to_pages(100_000));
    }

    #[test]
    fn fresh_stack_commits_nothing_until_touched() {
        let stack = Stack::new(1 << 20).unwrap();
        assert!(
            resident_pages(stack.usable())
                .iter()
                .all(|&resident| !resident)
        );
        touch(stack.top() - page_size()..stack.top());
        let resident = resident_pages(stack.usable());
        assert_eq!(resident.iter().filter(|&&r| r).count(), 1);
        assert!(resident[resident.len() - 1]);
    }

    #[test]
    fn pool_reuses_the_last_released_stack() {
        let pool = StackPool::default();
        let first = pool.allocate().unwrap();
        let top = first.top();
        pool.release(first);
        assert_eq!(pool.pooled(), 1);
        let again = pool.allocate().unwrap();
        assert_eq!(again.top(), top);
        assert_eq!(pool.pooled(), 0);
    }

    #[test]
    fn release_gives_back_pages_below_the_watermark_only() {
        let config = StackConfig {
            size: 1 << 20,
            resident_watermark: 8 << 10,
            max_pooled: 4,
        };
        let pool = StackPool::new(config);
        let stack = pool.allocate().unwrap();
        let usable = stack.usable();
        // A deep call: 512 KiB written.
        touch(usable.end - (512 << 10)..usable.end);
        let before = resident_pages(usable.clone())
            .iter()
            .filter(|&&r| r)
            .count();
        assert_eq!(before, 128);
        pool.release(stack);
        let stack = pool.allocate().unwrap();
        let resident = resident_pages(stack.usable());
        let kept = resident.iter().filter(|&&r| r).count();
        assert_eq!(kept, 2, "only the 8 KiB watermark stays resident");
        assert!(resident[resident.len() - 2..].iter().all(|&r| r));
        // Given-back pages read as zero; kept pages keep their contents.
        // SAFETY: both addresses are in the usable range of a stack we own.
        unsafe {
            assert_eq!(*((stack.top() - (256 << 10)) as *const u8), 0);
            assert_eq!(*((stack.top() - page_size()) as *const u8), 0xa5);
        }
    }

    #[test]
    fn pool_unmaps_stacks_beyond_max_pooled() {
        let pool = StackPool::new(StackConfig {
            max_pooled: 2,
            ..StackConfig::default()
        });
        let stacks: Vec<_> = (0..5).map(|_| pool.allocate().unwrap()).collect();
        for stack in stacks {
            pool.release(stack);
        }
        assert_eq!(pool.pooled(), 2);
    }
}
