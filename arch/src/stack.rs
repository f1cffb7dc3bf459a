//! Stacks for continuations: guarded, lazily committed, pooled, carved from a few large
//! reservations.
//!
//! A [`Stack`] is one slot of a *slab*, an anonymous mapping reserved for many stacks at once:
//! a guard page at the bottom of the slot and the usable stack above it. The whole slab is
//! reserved up front (`MAP_NORESERVE`), and the kernel commits a physical page only when it is
//! first written, so a shallow suspended call costs the page or two it touched however large
//! its reserve. `MAP_STACK` keeps transparent huge pages off (Linux 6.7+), which would otherwise
//! commit 2 MiB at a time.
//!
//! ```text
//!   slab:  ┌───────┬──────────────┬───────┬──────────────┬───────┬─── ─ ─
//!          │ guard │ stack 0      │ guard │ stack 1      │ guard │ …
//!          └───────┴──────────────┴───────┴──────────────┴───────┴─── ─ ─
//!
//!   one slot:
//!   top ──────────────▶ ┌──────────────────────┐  highest address, 16-aligned
//!                       │ resident watermark   │  kept committed between uses
//!                       ├──────────────────────┤
//!                       │                      │  given back (MADV_DONTNEED) on release
//!                       │ usable               │
//!   usable().start ───▶ ├──────────────────────┤
//!                       │ guard page           │  an access here faults: never silent overflow
//!   guard().start ────▶ └──────────────────────┘  (the slot below's top is just under it)
//! ```
//!
//! Wasm code never reaches the guard page: the runtime sets the Wasm stack limit inside
//! [`Stack::usable`] with headroom for host functions, and Cranelift's prologue check traps
//! first. The guard catches host code that overflows anyway; the runtime's signal handler can
//! tell such a fault apart with [`Stack::guard`].
//!
//! # Guard pages and the mapping budget
//!
//! Linux allows `vm.max_map_count` = 65,530 mappings (VMAs) per process by default. A guard
//! made with `mprotect(PROT_NONE)` differs in protection from the stack above it, so it splits
//! the mapping: two VMAs per stack, about 32,000 stacks for the whole process. How guards are
//! made ([`GuardKind`], detected once by [`guard_kind`]):
//!
//! - [`GuardKind::Installed`] (Linux 6.13+): `madvise(MADV_GUARD_INSTALL)` writes guard markers
//!   into the page tables of a range without changing its VMA, so a slab stays one mapping
//!   however many stacks it holds (about 500 stacks of 2 MiB per 1 GiB slab: 0.002 mappings
//!   per stack). An access faults with `SIGSEGV` at the guard's address, exactly as a
//!   `PROT_NONE` page does, so the signal handler's test is the same. The markers survive
//!   `MADV_DONTNEED`, so a slot is guarded once, when it is first carved.
//! - [`GuardKind::Protected`], the fallback: `mprotect(PROT_NONE)` on each slot's guard page.
//!   Used on older kernels (the advice fails with `EINVAL`) and under qemu-user, which accepts
//!   the advice but does not enforce it (guest writes to such a page succeed), so it must not
//!   be trusted: detection installs a guard on a probe page and checks that the kernel refuses
//!   to read it (`write(2)` from it into a pipe fails with `EFAULT`). The fallback costs two
//!   VMAs per stack again, and reaching `vm.max_map_count` makes allocation fail with the OS
//!   error (`ENOMEM`) — a typed error, not a crash. It is still the best layout that keeps an
//!   overflow from silently corrupting a neighbour: every stack grows down towards its own
//!   guard, so no two stacks can share one, and without a guard (relying on the Wasm stack
//!   limit alone) host code running past the bottom would write over the stack below.
//!
//! # The pool
//!
//! [`StackPool`] owns every stack's life: a [`Stack`] is only a handle (dropping it leaks the
//! slot, which is the safe choice for a stack something may still run on), and the pool
//! decides where a released stack goes and when its memory is given back. Allocation, cheapest
//! first:
//!
//! 1. **The caller's spare** ([`SpareStack`]): one stack a caller keeps for its next allocation
//!    (the runtime keeps one per store). Back-to-back allocations from one spare touch no lock,
//!    no thread-local and no `madvise`: a released stack goes straight back into it, warm. A
//!    dropped spare's stack is released like any other (tier 2 first), so a host that makes a
//!    store per request finds the last store's stack still committed.
//! 2. **This thread's warm stacks**: up to [`StackConfig::warm_per_thread`] stacks kept without
//!    giving back their pages, for callers whose spare is taken (several calls in flight).
//! 3. **The shared free list**, behind a lock: released stacks land here with their pages
//!    below the resident watermark given back (last released, first reused, since its top
//!    pages are warm), so one deep call does not keep its memory forever.
//! 4. **Vacant slots**: stacks released beyond [`StackConfig::max_pooled`], and those an
//!    exiting thread's warm list held, with all their pages given back. Their address space
//!    stays reserved (a slot is never unmapped alone), their guard stays installed.
//! 5. A new slot, carved from the current slab, or from a new slab when it is full.
//!
//! At most [`StackConfig::max_stacks`] stacks exist at once (in use, spare, warm, pooled or
//! vacant, counted once carved): beyond that, allocation fails with an error of kind
//! [`io::ErrorKind::QuotaExceeded`]. The slabs are unmapped when the pool and every stack
//! handed out from it are gone. This module is the only place that maps or unmaps a stack.
//!
//! Errors are the operating system's (`std::io::Error` from `mmap`/`mprotect`/`madvise`) or
//! the pool's limit: there is no other way to fail here.

use std::cell::RefCell;
use std::io;
use std::mem::ManuallyDrop;
use std::ops::Range;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// `madvise` advice that installs guard markers in a range's page tables (Linux 6.13+, value
/// from `include/uapi/asm-generic/mman-common.h`). The libc crate in use (0.2.191) does not
/// define it yet.
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// The system page size.
#[inline]
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

fn round_up_to_pages(bytes: usize) -> Option<usize> {
    bytes.checked_next_multiple_of(page_size())
}

/// How each stack's guard page is made. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardKind {
    /// `madvise(MADV_GUARD_INSTALL)`: no extra mapping per stack.
    Installed,
    /// `mprotect(PROT_NONE)`: two mappings per stack.
    Protected,
}

/// The best guard this process can have: [`GuardKind::Installed`] if the kernel supports and
/// enforces `MADV_GUARD_INSTALL`, else [`GuardKind::Protected`]. Detected once.
pub fn guard_kind() -> GuardKind {
    static KIND: OnceLock<GuardKind> = OnceLock::new();
    *KIND.get_or_init(detect_guard_kind)
}

fn detect_guard_kind() -> GuardKind {
    let page = page_size();
    // SAFETY: a fresh private anonymous page at an address of the kernel's choosing.
    let probe = unsafe {
        libc::mmap(
            ptr::null_mut(),
            page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if probe == libc::MAP_FAILED {
        return GuardKind::Protected;
    }
    let mut kind = GuardKind::Protected;
    // SAFETY: the probe page is ours; installing a guard on it affects nothing else.
    if unsafe { libc::madvise(probe, page, MADV_GUARD_INSTALL) } == 0 {
        // Accepted; is it enforced? The kernel refuses to read a guard page on our behalf
        // (EFAULT), where qemu-user, which accepts the advice and ignores it, reads it.
        let mut pipe = [0 as libc::c_int; 2];
        // SAFETY: `pipe` has room for the two descriptors.
        if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } == 0 {
            // SAFETY: a one-byte read of our own probe page by the kernel; an unenforced guard
            // makes it an ordinary write of one byte into a pipe that we own.
            let written = unsafe { libc::write(pipe[1], probe, 1) };
            let error = io::Error::last_os_error().raw_os_error();
            if written == -1 && error == Some(libc::EFAULT) {
                kind = GuardKind::Installed;
            }
            // SAFETY: closing the descriptors we opened.
            unsafe {
                libc::close(pipe[0]);
                libc::close(pipe[1]);
            }
        }
    }
    // SAFETY: the probe mapping is ours and unused.
    unsafe { libc::munmap(probe, page) };
    kind
}

/// How a [`StackPool`] shapes its stacks.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// Usable bytes per stack, rounded up to whole pages. Default 1 MiB.
    pub size: usize,
    /// Bytes at the top of a stack that stay committed when it goes back to the pool, rounded up
    /// to whole pages; everything below is given back. Default 8 KiB.
    pub resident_watermark: usize,
    /// Stacks the pool's shared free list keeps warm below the watermark; stacks released
    /// beyond this become vacant (all their memory given back). Default 1024.
    pub max_pooled: usize,
    /// Stacks each thread keeps warm (pages not given back, no lock to take them) for callers
    /// whose [`SpareStack`] is taken. Default 4; 0 sends every release to the shared list.
    pub warm_per_thread: usize,
    /// The most stacks the pool makes (see the module docs). Default 1,048,576.
    pub max_stacks: usize,
    /// Address space reserved per slab; a slab holds as many stacks as fit (at least one).
    /// Default 1 GiB.
    pub slab_bytes: usize,
    /// How guard pages are made. Default [`guard_kind()`]; asking for
    /// [`GuardKind::Installed`] where it is not available gets [`GuardKind::Protected`].
    pub guard: GuardKind,
}

impl Default for StackConfig {
    fn default() -> Self {
        StackConfig {
            size: 1 << 20,
            resident_watermark: 8 << 10,
            max_pooled: 1024,
            warm_per_thread: 4,
            max_stacks: 1 << 20,
            slab_bytes: 1 << 30,
            guard: guard_kind(),
        }
    }
}

/// A handle to one guarded stack: a slot of a slab.
///
/// Only a [`StackPool`] takes it back: give it back with [`StackPool::release`] or
/// [`StackPool::release_into`]. Dropping the handle leaks the slot and keeps its slab mapped
/// (no pool is at hand to decide what to do with it), which is the safe choice for a stack
/// something may still run on.
#[derive(Debug)]
#[must_use = "a stack is freed only by giving it back to a pool"]
pub struct Stack {
    /// Start of the slot: the guard page.
    base: usize,
    /// Length of the slot (guard + usable).
    len: usize,
    /// The slot's owner, which keeps the slab mapped. Not dropped with the handle: see above.
    owner: ManuallyDrop<Arc<PoolCore>>,
}

impl Stack {
    /// A stack with `size` usable bytes (rounded up to pages) above one guard page, in a slab
    /// of its own, outside any pool. Giving it to any pool's `release` unmaps it.
    ///
    /// # Errors
    ///
    /// The OS error if `mmap` or the guard's `madvise`/`mprotect` fails (address space or
    /// `vm.max_map_count` exhausted).
    pub fn new(size: usize) -> io::Result<Stack> {
        let config = StackConfig {
            size,
            max_stacks: 1,
            slab_bytes: 0,
            ..StackConfig::default()
        };
        PoolCore::new(config, false)?.allocate()
    }

    /// The highest address of the stack (exclusive), aligned to
    /// [`STACK_ALIGNMENT`](crate::STACK_ALIGNMENT): what [`init_stack`](crate::init_stack)
    /// takes.
    #[inline]
    pub fn top(&self) -> usize {
        self.base + self.len
    }

    /// The usable range, from just above the guard page up to [`top`](Self::top). The Wasm stack
    /// limit belongs inside it, high enough above `start` to leave headroom for host functions
    /// called from Wasm (and below the few words the switcher keeps at the top).
    #[inline]
    pub fn usable(&self) -> Range<usize> {
        self.base + page_size()..self.top()
    }

    /// The guard page: a fault with an address in this range is a stack overflow by code that
    /// does not check the Wasm stack limit.
    #[inline]
    pub fn guard(&self) -> Range<usize> {
        self.base..self.base + page_size()
    }

    /// Gives the stack back to its own pool as a vacant slot (all its memory given back), or
    /// lets it go if that pool keeps nothing. Nothing may run on it any more.
    fn vacate(self) {
        let owner = ManuallyDrop::into_inner(self.owner);
        if owner.keep {
            let slot = Slot {
                base: self.base,
                len: self.len,
            };
            slot.decommit_below(0);
            owner.lock().vacant.push(slot.base);
        }
        // Dropping `owner` here may unmap the slabs, if this was the last reference.
    }

    /// Gives the stack back to its own pool, as [`StackPool::release`] describes: warm on this
    /// thread if there is room, else into the shared list or vacant. For an owner that no longer
    /// knows the pool (a fiber kept by a store, say): the handle knows it. Nothing may run on
    /// the stack any more.
    pub fn give_back(self) {
        // A lone stack's pool never allocates again: only a keeping pool's stacks stay warm.
        let limit = if self.owner.keep {
            self.owner.config.warm_per_thread
        } else {
            0
        };
        let mut stack = Some(self);
        if limit > 0 {
            // `try_with`: during thread exit the warm stacks may be gone already.
            let _ = WARM.try_with(|warm| {
                let warm = &mut warm.borrow_mut().0;
                if warm.len() < limit {
                    warm.extend(stack.take());
                }
            });
        }
        let Some(stack) = stack else { return };
        if !stack.owner.keep {
            stack.vacate();
            return;
        }
        let (base, owner) = stack.into_slot();
        owner.take_back(base);
    }

    /// The slot's address, giving up the handle's reference to its owner (the caller has
    /// another: the owner keeps its own slots' addresses only).
    fn into_slot(self) -> (usize, Arc<PoolCore>) {
        (self.base, ManuallyDrop::into_inner(self.owner))
    }
}

/// An address range of a slab: a stack without its owner, as the owner's lists keep it.
struct Slot {
    base: usize,
    len: usize,
}

impl Slot {
    fn decommit_below(&self, keep: usize) {
        let start = self.base + page_size();
        let end = (self.base + self.len).saturating_sub(keep).max(start);
        if end > start {
            // SAFETY: as in `Stack::decommit_below`.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        }
    }
}

/// One reservation: unmapped when its pool is gone.
#[derive(Debug)]
struct Slab {
    base: usize,
    len: usize,
}

impl Drop for Slab {
    fn drop(&mut self) {
        // SAFETY: the slab is ours, and nothing runs on it: every stack in it holds a
        // reference to the pool core that owns the slab, and this is the core's drop.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

/// The shared state of a pool, kept alive by the pool and by every stack handed out from it.
#[derive(Debug)]
struct PoolCore {
    config: StackConfig,
    /// Guard page + usable bytes: the distance between slots.
    stride: usize,
    /// Stacks per new slab.
    per_slab: usize,
    /// The watermark, in whole pages.
    watermark: usize,
    /// Whether released stacks are kept (false for a lone [`Stack::new`]: freed instead).
    keep: bool,
    state: Mutex<PoolState>,
}

#[derive(Debug, Default)]
struct PoolState {
    /// Slots released with their top pages committed (tier 3), by base address.
    free: Vec<usize>,
    /// Slots with nothing committed (tier 4).
    vacant: Vec<usize>,
    /// Not yet carved slots of the newest slab.
    uncarved: Range<usize>,
    /// Slots carved so far (the count [`StackConfig::max_stacks`] limits).
    carved: usize,
    slabs: Vec<Slab>,
}

impl PoolCore {
    fn new(mut config: StackConfig, keep: bool) -> io::Result<Arc<PoolCore>> {
        let too_large = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a stack of {} bytes does not fit the address space",
                    config.size
                ),
            )
        };
        let usable = round_up_to_pages(config.size.max(1)).ok_or_else(too_large)?;
        let stride = usable.checked_add(page_size()).ok_or_else(too_large)?;
        if config.guard == GuardKind::Installed {
            config.guard = guard_kind();
        }
        Ok(Arc::new(PoolCore {
            stride,
            per_slab: (config.slab_bytes / stride).max(1),
            watermark: round_up_to_pages(config.resident_watermark).unwrap_or(usize::MAX),
            keep,
            state: Mutex::new(PoolState::default()),
            config,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A stack from the free list, the vacant slots, or a new slot (tiers 3 to 5).
    fn allocate(self: &Arc<Self>) -> io::Result<Stack> {
        let mut state = self.lock();
        let base = match state.free.pop().or_else(|| state.vacant.pop()) {
            Some(base) => base,
            None => self.carve(&mut state)?,
        };
        drop(state);
        Ok(Stack {
            base,
            len: self.stride,
            owner: ManuallyDrop::new(Arc::clone(self)),
        })
    }

    /// A new slot with its guard installed.
    fn carve(&self, state: &mut PoolState) -> io::Result<usize> {
        if state.uncarved.is_empty() {
            let left = self.config.max_stacks.saturating_sub(state.carved);
            if left == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::QuotaExceeded,
                    format!(
                        "all {} stacks the pool may make are in use",
                        self.config.max_stacks
                    ),
                ));
            }
            let count = self.per_slab.min(left);
            // `count * stride` is at most `max(slab_bytes, stride)`: no overflow.
            let len = count * self.stride;
            // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing touches
            // no existing memory.
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
            let base = base as usize;
            state.slabs.push(Slab { base, len });
            state.uncarved = base..base + len;
        }
        let base = state.uncarved.start;
        let guard = base as *mut libc::c_void;
        // SAFETY: the guard is the first page of a slot of our own slab that nothing uses yet.
        let status = unsafe {
            match self.config.guard {
                GuardKind::Installed => libc::madvise(guard, page_size(), MADV_GUARD_INSTALL),
                GuardKind::Protected => libc::mprotect(guard, page_size(), libc::PROT_NONE),
            }
        };
        if status != 0 {
            // The slot stays uncarved; the next allocation tries it again.
            return Err(io::Error::last_os_error());
        }
        state.uncarved.start += self.stride;
        state.carved += 1;
        Ok(base)
    }

    /// Takes back a released stack of this pool: into the free list with its pages below the
    /// watermark given back, or vacant (everything given back) if the list is full.
    fn take_back(&self, base: usize) {
        let slot = Slot {
            base,
            len: self.stride,
        };
        // Outside the lock: the syscall is the slow part. Should the list fill up meanwhile,
        // the slot is given back whole after all.
        let pooled = self.lock().free.len() < self.config.max_pooled;
        slot.decommit_below(if pooled { self.watermark } else { 0 });
        let mut state = self.lock();
        if pooled && state.free.len() < self.config.max_pooled {
            state.free.push(base);
            return;
        }
        if pooled {
            drop(state);
            slot.decommit_below(0);
            state = self.lock();
        }
        state.vacant.push(base);
    }
}

/// Stacks that are vacated when the holder is dropped: a thread's warm stacks.
#[derive(Debug, Default)]
struct Owned(Vec<Stack>);

impl Drop for Owned {
    fn drop(&mut self) {
        for stack in self.0.drain(..) {
            stack.vacate();
        }
    }
}

thread_local! {
    /// This thread's warm stacks (tier 2 in the module docs), of any pool: a pool takes only
    /// its own.
    static WARM: RefCell<Owned> = const { RefCell::new(Owned(Vec::new())) };
}

/// One stack a caller keeps for its next allocation from a pool (tier 1 in the module docs).
///
/// Use one spare with one pool only. Whatever it still holds when dropped goes back to its
/// pool as a released stack does: warm on this thread if there is room (so the next store's
/// first call on this thread finds it committed), else into the pool's lists.
#[derive(Debug, Default)]
pub struct SpareStack(Option<Stack>);

impl Drop for SpareStack {
    fn drop(&mut self) {
        if let Some(stack) = self.0.take() {
            stack.give_back();
        }
    }
}

/// Reuses stacks, and returns the memory of released stacks to the kernel below a watermark.
///
/// Thread-safe; a stack may be allocated on one thread and released on another.
#[derive(Debug)]
pub struct StackPool {
    core: Arc<PoolCore>,
}

impl StackPool {
    /// An empty pool that makes stacks shaped by `config` (nothing is mapped yet).
    ///
    /// # Panics
    ///
    /// If `config.size` is so large that a stack cannot fit the address space; see
    /// [`StackPool::try_new`].
    pub fn new(config: StackConfig) -> StackPool {
        StackPool::try_new(config).expect("the stack size fits the address space")
    }

    /// An empty pool that makes stacks shaped by `config` (nothing is mapped yet).
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] if `config.size` plus a guard page does not fit in a
    /// `usize`.
    pub fn try_new(config: StackConfig) -> io::Result<StackPool> {
        Ok(StackPool {
            core: PoolCore::new(config, true)?,
        })
    }

    /// The pool's configuration (its `guard` is the one in effect).
    pub fn config(&self) -> &StackConfig {
        &self.core.config
    }

    /// A stack: `spare`'s if it holds one, else as [`allocate`](Self::allocate). The fast path
    /// of back-to-back use: no lock, no thread-local.
    ///
    /// # Errors
    ///
    /// As [`allocate`](Self::allocate).
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

    /// A stack: a warm one of this thread, else the most recently released one, else a vacant
    /// slot, else a new one.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::QuotaExceeded`] if [`StackConfig::max_stacks`] stacks exist already;
    /// the OS error if a new slab cannot be mapped or a guard installed.
    pub fn allocate(&self) -> io::Result<Stack> {
        if self.core.config.warm_per_thread > 0 {
            let warm = WARM.with(|warm| {
                let warm = &mut warm.borrow_mut().0;
                let i = warm
                    .iter()
                    .rposition(|s| Arc::ptr_eq(&s.owner, &self.core))?;
                Some(warm.swap_remove(i))
            });
            if let Some(stack) = warm {
                return Ok(stack);
            }
        }
        self.core.allocate()
    }

    /// Takes `stack` back: into this thread's warm stacks if there is room, else gives its
    /// pages below the resident watermark to the kernel and keeps it in the shared list, or
    /// gives all its pages back (a vacant slot) if that list already holds `max_pooled`
    /// stacks. A stack of another pool goes back to that pool, and a lone [`Stack::new`] is
    /// unmapped. Nothing may run on `stack` any more.
    ///
    /// The shared list costs one `madvise` (about 0.2–1 µs, mostly syscall entry) when the
    /// stack is larger than the watermark.
    pub fn release(&self, stack: Stack) {
        stack.give_back();
    }

    /// How many stacks wait in the pool's shared free list.
    pub fn pooled(&self) -> usize {
        self.core.lock().free.len()
    }

    /// How many stacks the pool has made (and not unmapped): the count that
    /// [`StackConfig::max_stacks`] limits.
    pub fn stacks(&self) -> usize {
        self.core.lock().carved
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

    /// The lines of `/proc/self/maps` (VMAs) that overlap `range`.
    fn mappings_over(range: Range<usize>) -> usize {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines()
            .filter(|line| {
                let span = line.split_whitespace().next().unwrap();
                let (start, end) = span.split_once('-').unwrap();
                let start = usize::from_str_radix(start, 16).unwrap();
                let end = usize::from_str_radix(end, 16).unwrap();
                start < range.end && range.start < end
            })
            .count()
    }

    /// The address range of the pool's first slab.
    fn first_slab(pool: &StackPool) -> Range<usize> {
        let state = pool.core.lock();
        state.slabs[0].base..state.slabs[0].base + state.slabs[0].len
    }

    /// Whether the kernel refuses to read the byte at `address` (`EFAULT`), as it must for a
    /// guard page; reading it directly would fault.
    fn kernel_cannot_read(address: usize) -> bool {
        let mut pipe = [0 as libc::c_int; 2];
        // SAFETY: `pipe` has room for two descriptors; the write reads one byte at `address`
        // in the kernel, which reports a bad address instead of faulting; we close what we
        // opened.
        unsafe {
            assert_eq!(libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC), 0);
            let written = libc::write(pipe[1], address as *const libc::c_void, 1);
            let error = io::Error::last_os_error().raw_os_error();
            libc::close(pipe[0]);
            libc::close(pipe[1]);
            written == -1 && error == Some(libc::EFAULT)
        }
    }

    fn small_pool(guard: GuardKind) -> StackPool {
        StackPool::new(StackConfig {
            size: 64 << 10,
            warm_per_thread: 0,
            guard,
            ..StackConfig::default()
        })
    }

    #[test]
    fn stack_has_aligned_top_and_guard_below_usable_range() {
        let stack = Stack::new(100_000).unwrap();
        assert_eq!(stack.top() % crate::STACK_ALIGNMENT, 0);
        assert_eq!(stack.usable().end, stack.top());
        assert_eq!(stack.guard().end, stack.usable().start);
        assert_eq!(stack.guard().len(), page_size());
        assert_eq!(stack.usable().len(), round_up_to_pages(100_000).unwrap());
        stack.vacate();
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
        stack.vacate();
    }

    #[test]
    fn guard_pages_are_enforced_with_either_kind_of_guard() {
        for kind in [GuardKind::Installed, GuardKind::Protected] {
            let pool = small_pool(kind);
            let stacks: Vec<_> = (0..3).map(|_| pool.allocate().unwrap()).collect();
            for (i, stack) in stacks.iter().enumerate() {
                assert!(kernel_cannot_read(stack.guard().start), "{kind:?}");
                assert!(!kernel_cannot_read(stack.usable().start), "{kind:?}");
                // The guard is right above the stack below (the first one's is the slab's
                // start): an overflow of one stack hits its own guard before any neighbour.
                if i > 0 {
                    assert!(!kernel_cannot_read(stack.guard().start - 1), "{kind:?}");
                }
            }
            assert_eq!(stacks[1].guard().start, stacks[0].top());
            stacks.into_iter().for_each(|stack| pool.release(stack));
        }
    }

    #[test]
    fn installed_guards_keep_a_slab_one_mapping_however_many_stacks_it_holds() {
        let pool = small_pool(GuardKind::Installed);
        let stacks: Vec<_> = (0..100).map(|_| pool.allocate().unwrap()).collect();
        let slab = first_slab(&pool);
        let mappings = mappings_over(slab);
        match pool.config().guard {
            GuardKind::Installed => assert_eq!(mappings, 1),
            // No MADV_GUARD_INSTALL here (an old kernel, or qemu-user): the fallback's cost.
            GuardKind::Protected => assert_eq!(mappings, 200),
        }
        stacks.into_iter().for_each(|stack| pool.release(stack));
    }

    #[test]
    fn protected_guards_cost_two_mappings_per_stack() {
        let pool = small_pool(GuardKind::Protected);
        assert_eq!(pool.config().guard, GuardKind::Protected);
        let stacks: Vec<_> = (0..10).map(|_| pool.allocate().unwrap()).collect();
        assert_eq!(mappings_over(first_slab(&pool)), 20);
        stacks.into_iter().for_each(|stack| pool.release(stack));
    }

    #[test]
    fn stacks_are_carved_from_few_slabs() {
        let pool = StackPool::new(StackConfig {
            size: (1 << 20) - page_size(),
            slab_bytes: 4 << 20,
            warm_per_thread: 0,
            ..StackConfig::default()
        });
        let stacks: Vec<_> = (0..10).map(|_| pool.allocate().unwrap()).collect();
        assert_eq!(pool.core.lock().slabs.len(), 3, "4 + 4 + 2 stacks");
        assert_eq!(stacks[3].top() - stacks[0].guard().start, 4 << 20);
        stacks.into_iter().for_each(|stack| pool.release(stack));
    }

    #[test]
    fn max_stacks_is_a_quota_error_and_a_released_stack_makes_room() {
        let pool = StackPool::new(StackConfig {
            max_stacks: 3,
            warm_per_thread: 0,
            ..StackConfig::default()
        });
        let mut stacks: Vec<_> = (0..3).map(|_| pool.allocate().unwrap()).collect();
        let error = pool.allocate().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::QuotaExceeded);
        assert_eq!(
            pool.core.lock().slabs.len(),
            1,
            "the slab holds 3, not more"
        );
        let last = stacks.pop().unwrap();
        let top = last.top();
        pool.release(last);
        let again = pool.allocate().unwrap();
        assert_eq!(again.top(), top);
        assert_eq!(pool.stacks(), 3);
        stacks.push(again);
        stacks.into_iter().for_each(|stack| pool.release(stack));
    }

    #[test]
    fn a_stack_larger_than_the_address_space_is_an_os_error() {
        let pool = StackPool::new(StackConfig {
            size: 1 << 50,
            ..StackConfig::default()
        });
        let error = pool.allocate().unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENOMEM), "{error}");
        assert_eq!(pool.stacks(), 0);
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
        // A dropped spare gives its stack back as a release does (here, with no warm stacks,
        // to the shared list), reused before a new one.
        drop(spare);
        let stacks: Vec<_> = (0..2).map(|_| pool.allocate().unwrap()).collect();
        assert_eq!(pool.stacks(), 2);
        stacks.into_iter().for_each(|stack| pool.release(stack));
    }

    #[test]
    fn a_dropped_spare_stack_stays_warm_on_its_thread() {
        let pool = StackPool::new(StackConfig::default());
        // A fresh thread: the warm stacks are per thread, and other tests share ours.
        std::thread::spawn(move || {
            let mut spare = SpareStack::default();
            let stack = pool.allocate_from(&mut spare).unwrap();
            let (top, usable) = (stack.top(), stack.usable());
            // Touch pages below the resident watermark: a shared-list release would give
            // them back.
            let deep = usable.end - 8 * page_size()..usable.end;
            touch(deep.clone());
            pool.release_into(&mut spare, stack);
            // What a store does when it is dropped: its spare goes back as a release does.
            drop(spare);
            assert_eq!(pool.pooled(), 0, "not in the shared list");
            let again = pool.allocate().unwrap();
            assert_eq!(
                again.top(),
                top,
                "the same stack, from this thread's warm list"
            );
            assert!(
                resident_pages(deep).into_iter().all(|resident| resident),
                "its pages were not given back"
            );
            pool.release(again);
        })
        .join()
        .unwrap();
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
            // Another pool does not take this one's warm stacks.
            let other = StackPool::default();
            let stack = other.allocate().unwrap();
            assert!(!tops.contains(&stack.top()));
            other.release(stack);
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
        pool.release(again);
    }

    #[test]
    fn release_gives_back_pages_below_the_watermark_only() {
        let config = StackConfig {
            size: 1 << 20,
            resident_watermark: 8 << 10,
            max_pooled: 4,
            warm_per_thread: 0,
            ..StackConfig::default()
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
        pool.release(stack);
    }

    #[test]
    fn stacks_beyond_max_pooled_become_vacant_with_nothing_resident_and_are_reused() {
        let pool = StackPool::new(StackConfig {
            max_pooled: 2,
            warm_per_thread: 0,
            ..StackConfig::default()
        });
        let stacks: Vec<_> = (0..5).map(|_| pool.allocate().unwrap()).collect();
        for stack in &stacks {
            touch(stack.top() - page_size()..stack.top());
        }
        let last = stacks[4].usable();
        for stack in stacks {
            pool.release(stack);
        }
        assert_eq!(pool.pooled(), 2);
        assert!(resident_pages(last).iter().all(|&r| !r));
        let again: Vec<_> = (0..5).map(|_| pool.allocate().unwrap()).collect();
        assert_eq!(pool.stacks(), 5, "no new stack was made");
        again.into_iter().for_each(|stack| pool.release(stack));
    }
}
