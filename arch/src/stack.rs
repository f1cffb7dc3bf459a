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
//! [`StackPool`] owns every stack's life: a [`Stack`] is only a handle (it does not unmap
//! itself when dropped), and the pool decides where a released stack goes and when its memory
//! is given back. Its policy, cheapest first:
//!
//! 1. **The caller's spare** ([`SpareStack`]): one stack a caller keeps for its next allocation
//!    (the runtime keeps one per store). Back-to-back allocations from one spare touch no lock,
//!    no thread-local and no `madvise`: a released stack goes straight back into it, warm.
//! 2. **This thread's warm stacks**: up to [`StackConfig::warm_per_thread`] stacks kept without
//!    giving back their pages, for callers whose spare is taken (several calls in flight).
//! 3. **The shared free list**, behind a lock: released stacks land here with their pages
//!    below the resident watermark given back (last released, first reused, since its top
//!    pages are warm), so one deep call does not keep its memory forever.
//! 4. A new mapping.
//!
//! Stacks beyond the shared list's [`StackConfig::max_pooled`] are unmapped; so are the warm
//! stacks of a thread when it exits, and whatever a dropped pool or [`SpareStack`] still holds.
//! This module is the only place that unmaps a stack.
//!
//! # Limits and the allocation strategy
//!
//! Each stack costs two VMAs (the guard and the usable part differ in protection), and Linux
//! allows `vm.max_map_count` = 65,530 per process by default: about 32,000 stacks, minus what
//! the rest of the process maps. That is enough for the 10,000 suspended calls weft needs now.
//! Reaching a million needs a different strategy — stacks carved from a few large mappings,
//! guarded by the Wasm stack limit alone, or guard pages shared between neighbours — which is
//! why the runtime only sees `StackPool::{allocate_from, release_into}`, [`SpareStack`] and the
//! [`Stack`] ranges: a million-stack allocator replaces this module behind the same seam.
//!
//! Errors are the operating system's (`std::io::Error` from `mmap`/`mprotect`): there is no
//! other way to fail here.

use std::cell::RefCell;
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
    /// Stacks the pool's shared free list keeps for reuse; stacks released beyond this are
    /// unmapped. Default 1024.
    pub max_pooled: usize,
    /// Stacks each thread keeps warm (pages not given back, no lock to take them) for callers
    /// whose [`SpareStack`] is taken. Default 4; 0 sends every release to the shared list.
    pub warm_per_thread: usize,
}

impl Default for StackConfig {
    fn default() -> Self {
        StackConfig {
            size: 1 << 20,
            resident_watermark: 8 << 10,
            max_pooled: 1024,
            warm_per_thread: 4,
        }
    }
}

/// A handle to one guarded stack mapping.
///
/// Only a [`StackPool`] frees it: give it back with [`StackPool::release`] or
/// [`StackPool::release_into`]. Dropping the handle leaks the mapping (no pool is at hand to
/// decide what to do with it), which is the safe choice for a stack something may still run on.
#[derive(Debug)]
#[must_use = "a stack is freed only by giving it back to a pool"]
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
    /// Maps a stack with `size` usable bytes (rounded up to pages) above one guard page,
    /// outside any pool (any pool's `release` takes it back).
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
            let error = io::Error::last_os_error();
            stack.unmap();
            return Err(error);
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

    /// Frees the mapping. Only the pool's policy calls this, for a stack nothing runs on.
    fn unmap(self) {
        // SAFETY: the handle owns the mapping (handles are never duplicated) and nothing runs
        // on it any more: it was released, or never used.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

/// Stacks that are unmapped when the holder is dropped: the pool's free list, a thread's warm
/// stacks.
#[derive(Debug, Default)]
struct Owned(Vec<Stack>);

impl Drop for Owned {
    fn drop(&mut self) {
        for stack in self.0.drain(..) {
            stack.unmap();
        }
    }
}

thread_local! {
    /// This thread's warm stacks (tier 2 in the module docs), of any pool: a stack is taken
    /// only by a pool whose stacks are no larger.
    static WARM: RefCell<Owned> = const { RefCell::new(Owned(Vec::new())) };
}

/// One stack a caller keeps for its next allocation from a pool (tier 1 in the module docs).
///
/// Use one spare with one pool only. Whatever it still holds when dropped is unmapped.
#[derive(Debug, Default)]
pub struct SpareStack(Option<Stack>);

impl Drop for SpareStack {
    fn drop(&mut self) {
        if let Some(stack) = self.0.take() {
            stack.unmap();
        }
    }
}

/// Reuses stacks, and returns the memory of released stacks to the kernel below a watermark.
///
/// Thread-safe; a stack may be allocated on one thread and released on another.
#[derive(Debug)]
pub struct StackPool {
    config: StackConfig,
    free: Mutex<Owned>,
}

impl StackPool {
    /// An empty pool that makes stacks shaped by `config`.
    pub fn new(config: StackConfig) -> StackPool {
        StackPool {
            config,
            free: Mutex::new(Owned::default()),
        }
    }

    /// The pool's configuration.
    pub fn config(&self) -> &StackConfig {
        &self.config
    }

    /// A stack: `spare`'s if it holds one, else as [`allocate`](Self::allocate). The fast path
    /// of back-to-back use: no lock, no thread-local.
    ///
    /// # Errors
    ///
    /// The OS error if a new mapping is needed and `mmap` or `mprotect` fails.
    #[inline]
    pub fn allocate_from(&self, spare: &mut SpareStack) -> io::Result<Stack> {
        match spare.0.take() {
            Some(stack) => Ok(stack),
            None => self.allocate(),
        }
    }

    /// Takes `stack` back into `spare` if it is empty, else as [`release`](Self::release).
    /// Nothing may run on `stack` any more.
    #[inline]
    pub fn release_into(&self, spare: &mut SpareStack, stack: Stack) {
        if spare.0.is_none() {
            spare.0 = Some(stack);
        } else {
            self.release(stack);
        }
    }

    /// A stack: a warm one of this thread, else the most recently released one, else a new
    /// mapping.
    ///
    /// # Errors
    ///
    /// The OS error if a new mapping is needed and `mmap` or `mprotect` fails.
    pub fn allocate(&self) -> io::Result<Stack> {
        if self.config.warm_per_thread > 0 {
            let size = self.config.size;
            let warm = WARM.with(|warm| {
                let warm = &mut warm.borrow_mut().0;
                let i = warm.iter().rposition(|s| s.usable().len() >= size)?;
                Some(warm.swap_remove(i))
            });
            if let Some(stack) = warm {
                return Ok(stack);
            }
        }
        let reused = self.free.lock().unwrap_or_else(|e| e.into_inner()).0.pop();
        match reused {
            Some(stack) => Ok(stack),
            None => Stack::new(self.config.size),
        }
    }

    /// Takes `stack` back: into this thread's warm stacks if there is room, else gives its
    /// pages below the resident watermark to the kernel and keeps it in the shared list, or
    /// unmaps it if that list already holds `max_pooled` stacks. Nothing may run on `stack`
    /// any more.
    ///
    /// The shared list costs one `madvise` (about 0.2–1 µs, mostly syscall entry) when the
    /// stack is larger than the watermark.
    pub fn release(&self, stack: Stack) {
        let mut stack = Some(stack);
        if self.config.warm_per_thread > 0 {
            let limit = self.config.warm_per_thread;
            // `try_with`: during thread exit the warm stacks may be gone already.
            let _ = WARM.try_with(|warm| {
                let warm = &mut warm.borrow_mut().0;
                if warm.len() < limit {
                    warm.extend(stack.take());
                }
            });
        }
        let Some(stack) = stack else { return };
        if self.pooled() >= self.config.max_pooled {
            stack.unmap();
            return;
        }
        // Outside the lock: the syscall is the slow part.
        stack.decommit_below(round_up_to_pages(self.config.resident_watermark));
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.0.len() < self.config.max_pooled {
            free.0.push(stack);
        } else {
            drop(free);
            stack.unmap();
        }
    }

    /// How many stacks wait in the pool's shared free list.
    pub fn pooled(&self) -> usize {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).0.len()
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
        stack.unmap();
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
        stack.unmap();
    }

    #[test]
    fn spare_stack_comes_back_first_without_touching_the_pool() {
        let pool = StackPool::new(StackConfig {
            warm_per_thread: 0,
            ..StackConfig::default()
        });
        let mut spare = SpareStack::default();
        let stack = pool.allocate_from(&mut spare).unwrap();
        let top = stack.top();
        pool.release_into(&mut spare, stack);
        assert_eq!(pool.pooled(), 0, "the spare took it");
        let again = pool.allocate_from(&mut spare).unwrap();
        assert_eq!(again.top(), top);
        // A second stack while the spare's is in use goes to the shared list on release.
        let other = pool.allocate_from(&mut spare).unwrap();
        pool.release_into(&mut spare, again);
        pool.release_into(&mut spare, other);
        assert_eq!(pool.pooled(), 1);
    }

    #[test]
    fn released_stacks_stay_warm_on_their_thread_up_to_the_limit() {
        let pool = StackPool::new(StackConfig {
            warm_per_thread: 2,
            ..StackConfig::default()
        });
        // Run on a fresh thread: the warm stacks are per thread, and other tests share ours.
        std::thread::spawn(move || {
            let stacks: Vec<_> = (0..3).map(|_| pool.allocate().unwrap()).collect();
            let tops: Vec<_> = stacks.iter().map(Stack::top).collect();
            for stack in stacks {
                pool.release(stack);
            }
            assert_eq!(
                pool.pooled(),
                1,
                "two stay warm on the thread, one is pooled"
            );
            let warm = pool.allocate().unwrap();
            assert_eq!(warm.top(), tops[1], "the last warm one first");
            pool.release(warm);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn pool_reuses_the_last_released_stack() {
        let pool = StackPool::new(StackConfig {
            warm_per_thread: 0,
            ..StackConfig::default()
        });
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
            warm_per_thread: 0,
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
            warm_per_thread: 0,
            ..StackConfig::default()
        });
        let stacks: Vec<_> = (0..5).map(|_| pool.allocate().unwrap()).collect();
        for stack in stacks {
            pool.release(stack);
        }
        assert_eq!(pool.pooled(), 2);
    }
}
