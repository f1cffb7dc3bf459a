//! Lazy compilation's VM half: entry stubs and slots, the resolver a stub reaches while its
//! function is not compiled, and the compile workers.
//!
//! A lazily compiled module is validated up front, and its defined functions get one
//! [`ENTRY_STUB_SIZE`]-byte entry stub each, published as the module's code: everything that
//! refers to function `i` (direct calls, funcrefs in the vmctx and in tables, exports) uses
//! stub `i`'s address, which never changes. A stub jumps through its **slot** (a word of
//! ordinary memory; see `weft_arch::lazy` for the machine code), which first holds the lazy
//! entry thunk and, once the function is compiled, the function's code. So eager code is
//! untouched, and lazy code pays one indirect jump per call.
//!
//! Functions are compiled on the module's worker threads, never on the calling thread: a
//! call may run on a small fiber stack, and Cranelift wants a large one. A call that reaches
//! the resolver queues its function ahead of everything else and waits; the workers compile
//! the rest in the background (unless [`crate::Config::lazy_compilation`]'s background
//! setting is off), so a long-running program ends up with all its code compiled without
//! paying for it up front. The background goes first to the direct callees of the functions
//! compiled so far, depth first (a function's callees in the order its body names them): the
//! code a program is about to run, usually, where index order spends the spare core on
//! functions that may never run (SQLite's driver calls 522 of its 1,110). Then it sweeps the
//! rest in index order. Each compiled function is published as a [`CodeMemory`] of
//! its own, registered like any other, so trap lookup, backtraces and the exception
//! unwinder's handler search find it unchanged; its direct calls go to the callees' stubs.
//!
//! A function cannot fail to compile once its module validated, except by running out of a
//! resource (a mapping refused, a compiler bug caught as a panic). The resolver then records
//! [`crate::Error::ResourceLimit`] with the reason and sends the call to a trap instruction,
//! so the Wasm call fails with that error; nothing panics across the stub.
//!
//! Workers hold the shared state; the module holds a [`LazyCode`], whose drop tells them to
//! stop after the function at hand.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use weft_arch::lazy::{ENTRY_STUB_SIZE, TRAP_INSTRUCTION, write_entry_stub};
use weft_compiler::CompileScratch;
use weft_environ::{CompiledFunction, ModuleInfo, RelocTarget, TrapKind};

use super::code_memory::{CodeMemory, FunctionInfo};
use super::entry::{Recorded, record};

/// Compiles defined function `i` of the module (with calls to other functions going
/// through absolute relocations), using the thread's scratch buffers.
pub type CompileFunction =
    dyn Fn(u32, &mut CompileScratch) -> Result<CompiledFunction, String> + Send + Sync;

/// One function's slot. The stub jumps through `target` (offset 0, the stub's contract).
#[repr(C)]
struct Slot {
    target: AtomicUsize,
    /// The `Shared` this slot belongs to (set once, before any stub is published).
    owner: AtomicUsize,
    /// The defined function's index.
    index: u32,
}

const _: () = assert!(std::mem::offset_of!(Slot, target) == 0);

#[derive(Clone)]
enum Status {
    /// Not compiled, not asked for.
    Pending,
    /// Asked for by a call (or by [`LazyCode::compile_all`]): in the urgent queue.
    Queued,
    Compiling,
    /// Compiled: function 0 of this code.
    Done(Arc<CodeMemory>),
    Failed(String),
}

struct State {
    status: Vec<Status>,
    urgent: VecDeque<u32>,
    /// Direct callees of compiled functions, for the background before the sweep: popped
    /// from the end (depth first), skipped if no longer `Pending`.
    callees: Vec<u32>,
    /// Where the background sweep goes on.
    next: usize,
    /// Functions `Done` or `Failed`.
    finished: usize,
    cancelled: bool,
}

struct Shared {
    compile: Box<CompileFunction>,
    symbols: Arc<ModuleInfo>,
    slots: Box<[Slot]>,
    /// The entry stubs, then the trap instruction calls go to when compiling failed.
    stubs: OnceLock<Arc<CodeMemory>>,
    background: bool,
    state: Mutex<State>,
    /// Workers wait here for work.
    work: Condvar,
    /// Callers wait here for a function to be finished.
    ready: Condvar,
}

/// A module's lazily compiled code: its entry stubs ([`LazyCode::stubs`], what instances use
/// as the module's code) and the workers that compile behind them.
pub struct LazyCode {
    shared: Arc<Shared>,
}

weft_arch::lazy_entry_thunk!(
    /// Where the slot of every function not compiled yet points (see `weft_arch::lazy`).
    ///
    /// # Safety
    /// Never called from Rust: only an entry stub jumps here, with `r11` / `x16` holding its
    /// slot's address and the callee's vmctx as the first Wasm argument.
    lazy_entry => resolve
);

impl LazyCode {
    /// Sets up lazy compilation of a validated module's defined functions with `threads`
    /// workers (at least one), compiling in the background too if `background`.
    ///
    /// # Errors
    /// An error string if the stubs cannot be mapped or no worker thread can be started.
    pub fn new(
        symbols: Arc<ModuleInfo>,
        compile: Box<CompileFunction>,
        threads: usize,
        background: bool,
    ) -> Result<LazyCode, String> {
        let count = symbols.num_defined_funcs() as usize;
        let slots = (0..count as u32)
            .map(|index| Slot {
                target: AtomicUsize::new(lazy_entry as *const () as usize),
                owner: AtomicUsize::new(0),
                index,
            })
            .collect();
        let shared = Arc::new(Shared {
            compile,
            symbols,
            slots,
            stubs: OnceLock::new(),
            background,
            state: Mutex::new(State {
                status: vec![Status::Pending; count],
                urgent: VecDeque::new(),
                callees: Vec::new(),
                next: 0,
                finished: 0,
                cancelled: false,
            }),
            work: Condvar::new(),
            ready: Condvar::new(),
        });
        let owner = Arc::as_ptr(&shared) as usize;
        let mut image = vec![0; count * ENTRY_STUB_SIZE];
        let mut functions = Vec::with_capacity(count + 1);
        for (i, slot) in shared.slots.iter().enumerate() {
            slot.owner.store(owner, Ordering::Relaxed);
            let at = i * ENTRY_STUB_SIZE;
            write_entry_stub(
                &mut image[at..at + ENTRY_STUB_SIZE],
                &slot.target as *const AtomicUsize as usize,
            );
            functions.push(stub_info(at, ENTRY_STUB_SIZE, Vec::new()));
        }
        let trap_at = image.len().next_multiple_of(16);
        image.resize(trap_at, 0);
        image.extend_from_slice(&TRAP_INSTRUCTION);
        functions.push(stub_info(
            trap_at,
            TRAP_INSTRUCTION.len(),
            vec![(0, TrapKind::Recorded)],
        ));
        let stubs = CodeMemory::load(&image, functions, None)?;
        let _ = shared.stubs.set(stubs);
        let lazy = LazyCode { shared };
        if count > 0 {
            let mut started = 0;
            let threads = threads.max(1);
            for n in 0..threads {
                let shared = lazy.shared.clone();
                // With background work and more than one worker, the first keeps to calls, so
                // a call never waits behind a background function.
                let calls_only = n == 0 && background && threads > 1;
                let spawned = std::thread::Builder::new()
                    .name("weft-lazy-compile".into())
                    // Cranelift recurses on large functions; the default 2 MiB is tight.
                    .stack_size(8 << 20)
                    .spawn(move || worker(&shared, calls_only));
                started += usize::from(spawned.is_ok());
            }
            if started == 0 {
                return Err("could not start a compile thread".into());
            }
        }
        Ok(lazy)
    }

    /// The entry stubs: function `i`'s stub is function `i` of this code (for instances).
    pub fn stubs(&self) -> &Arc<CodeMemory> {
        self.shared.stubs()
    }

    /// How many of the module's functions are compiled so far.
    pub fn compiled(&self) -> usize {
        let state = self.shared.lock();
        state
            .status
            .iter()
            .filter(|s| matches!(s, Status::Done(_)))
            .count()
    }

    /// Compiles every function not compiled yet (on the workers) and waits for them.
    ///
    /// # Errors
    /// The first function that failed to compile, with the reason.
    pub fn compile_all(&self) -> Result<(), String> {
        let shared = &self.shared;
        let mut state = shared.lock();
        for i in 0..state.status.len() {
            if matches!(state.status[i], Status::Pending) {
                state.status[i] = Status::Queued;
                state.urgent.push_back(i as u32);
            }
        }
        shared.work.notify_all();
        while state.finished < state.status.len() {
            state = shared.ready.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        for (i, status) in state.status.iter().enumerate() {
            if let Status::Failed(why) = status {
                return Err(format!("compiling function {i}: {why}"));
            }
        }
        Ok(())
    }

    /// Every function's code, compiled first if need be, laid out in index order as one
    /// image with its function table: what a serialized module holds. The functions' calls
    /// stay absolute relocations, which loading resolves inside the one image.
    ///
    /// # Errors
    /// As [`LazyCode::compile_all`].
    pub fn image(&self) -> Result<(Vec<u8>, Vec<FunctionInfo>), String> {
        self.compile_all()?;
        let state = self.shared.lock();
        let mut image = Vec::new();
        let mut functions = Vec::with_capacity(state.status.len());
        for status in &state.status {
            let Status::Done(code) = status else {
                unreachable!("compile_all finished every function")
            };
            let (bytes, mut info) = code.function_image(0);
            image.resize(image.len().next_multiple_of(16), 0);
            info.start = image.len();
            image.extend_from_slice(&bytes);
            functions.push(info);
        }
        Ok((image, functions))
    }
}

impl Drop for LazyCode {
    fn drop(&mut self) {
        self.shared.lock().cancelled = true;
        self.shared.work.notify_all();
    }
}

fn stub_info(start: usize, len: usize, traps: Vec<(u32, TrapKind)>) -> FunctionInfo {
    FunctionInfo {
        start,
        len,
        func_index: None,
        traps,
        source_locations: Vec::new(),
        handlers: Vec::new(),
        relocations: Vec::new(),
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stubs(&self) -> &Arc<CodeMemory> {
        self.stubs.get().expect("stubs are published before use")
    }

    /// The address of defined function `index`'s code, compiled on a worker first if it is
    /// not yet; waits for it.
    fn demand(&self, index: u32) -> Result<usize, String> {
        let mut state = self.lock();
        loop {
            match &state.status[index as usize] {
                Status::Done(code) => return Ok(code.function_address(0) as usize),
                Status::Failed(why) => return Err(why.clone()),
                Status::Pending => {
                    state.status[index as usize] = Status::Queued;
                    state.urgent.push_back(index);
                    self.work.notify_one();
                }
                Status::Queued | Status::Compiling => {}
            }
            state = self.ready.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The next function a worker should compile (one asked for, or with `!calls_only` one
    /// for the background), or `None` when it should stop.
    fn next_job(&self, calls_only: bool) -> Option<u32> {
        let mut state = self.lock();
        loop {
            if state.cancelled {
                return None;
            }
            if let Some(i) = state.urgent.pop_front() {
                state.status[i as usize] = Status::Compiling;
                return Some(i);
            }
            if self.background && !calls_only {
                while let Some(i) = state.callees.pop() {
                    if matches!(state.status[i as usize], Status::Pending) {
                        state.status[i as usize] = Status::Compiling;
                        return Some(i);
                    }
                }
                let count = state.status.len();
                while state.next < count && !matches!(state.status[state.next], Status::Pending) {
                    state.next += 1;
                }
                if state.next < count {
                    let i = state.next;
                    state.status[i] = Status::Compiling;
                    return Some(i as u32);
                }
            }
            if state.finished == state.status.len() {
                return None;
            }
            state = self.work.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Compiles and publishes defined function `index`, and points its slot at the code.
    /// Appends the defined functions it calls directly to `callees`, in the order its
    /// relocations name them (a callee once per call site).
    fn compile(
        &self,
        index: u32,
        scratch: &mut CompileScratch,
        callees: &mut Vec<u32>,
    ) -> Result<Arc<CodeMemory>, String> {
        let compiled = catch_unwind(AssertUnwindSafe(|| (self.compile)(index, scratch)))
            .unwrap_or_else(|_| {
                // The buffers may be half-written.
                *scratch = CompileScratch::new();
                Err("the compiler panicked".into())
            })?;
        let imported = self.symbols.num_imported_funcs;
        callees.extend(compiled.relocations.iter().filter_map(|r| match r.target {
            RelocTarget::Func(callee) => callee.checked_sub(imported),
            RelocTarget::LibCall(_) => None,
        }));
        let stubs = self.stubs();
        let code = CodeMemory::publish_with_calls(
            &[compiled],
            &[Some(imported + index)],
            Some(self.symbols.clone()),
            &|callee| {
                let defined = callee.checked_sub(imported)? as usize;
                (defined < self.slots.len()).then(|| stubs.function_address(defined) as usize)
            },
        )?;
        publish_to_other_threads();
        self.slots[index as usize]
            .target
            .store(code.function_address(0) as usize, Ordering::Release);
        Ok(code)
    }
}

fn worker(shared: &Shared, calls_only: bool) {
    let mut scratch = CompileScratch::new();
    let mut callees = Vec::new();
    while let Some(index) = shared.next_job(calls_only) {
        callees.clear();
        let status = match shared.compile(index, &mut scratch, &mut callees) {
            Ok(code) => Status::Done(code),
            Err(why) => Status::Failed(why),
        };
        let mut state = shared.lock();
        state.status[index as usize] = status;
        if shared.background {
            // Reversed, so that popping from the end takes them in the body's order; only
            // the ones still to compile. No worker needs waking: while any function is
            // `Pending`, the background ones are busy with the sweep.
            let state = &mut *state;
            for &callee in callees.iter().rev() {
                if matches!(state.status.get(callee as usize), Some(Status::Pending)) {
                    state.callees.push(callee);
                }
            }
        }
        state.finished += 1;
        shared.ready.notify_all();
        if state.finished == state.status.len() {
            // Idle workers without background work wait for nothing more.
            shared.work.notify_all();
        }
    }
}

/// Makes code just published by this thread safe to run on the others. x86-64 needs nothing
/// (coherent instruction fetch; `mprotect` serializes). AArch64 wants a context
/// synchronization on every core that may run it: a thread that waited for the function
/// gets one by returning from the futex wait, and the others get one here through
/// `membarrier(SYNC_CORE)` where the kernel offers it (qemu-user does not, and needs none).
fn publish_to_other_threads() {
    #[cfg(all(target_arch = "aarch64", target_os = "linux"))]
    {
        const REGISTER_PRIVATE_EXPEDITED_SYNC_CORE: libc::c_long = 1 << 6;
        const PRIVATE_EXPEDITED_SYNC_CORE: libc::c_long = 1 << 5;
        static REGISTERED: OnceLock<bool> = OnceLock::new();
        let registered = *REGISTERED.get_or_init(|| {
            // SAFETY: membarrier takes no pointers; registering has no other effect.
            unsafe {
                libc::syscall(
                    libc::SYS_membarrier,
                    REGISTER_PRIVATE_EXPEDITED_SYNC_CORE,
                    0,
                    0,
                ) == 0
            }
        });
        if registered {
            // SAFETY: as above; this only interrupts the process's other running threads.
            unsafe {
                libc::syscall(libc::SYS_membarrier, PRIVATE_EXPEDITED_SYNC_CORE, 0, 0);
            }
        }
    }
}

/// The resolver behind [`lazy_entry`]: the address to continue at for the call that reached
/// `slot`'s stub with callee vmctx `vmctx`.
///
/// # Safety
/// Called only by the lazy entry thunk, from a stub of a live module: `slot` is that stub's
/// slot, and `vmctx` the vmctx of an instance of the module whose code is running.
unsafe extern "C" fn resolve(slot: usize, vmctx: *mut u8) -> usize {
    // SAFETY: a stub names a slot of its module's `Shared`, which the module keeps alive while
    // any of its code (these stubs included) can run; `owner` was set before the stubs were
    // published.
    let slot = unsafe { &*(slot as *const Slot) };
    // SAFETY: as above.
    let shared = unsafe { &*(slot.owner.load(Ordering::Relaxed) as *const Shared) };
    let why = match catch_unwind(AssertUnwindSafe(|| shared.demand(slot.index))) {
        Ok(Ok(address)) => return address,
        Ok(Err(why)) => why,
        Err(_) => "waiting for the compiler panicked".into(),
    };
    let why = format!(
        "compiling function {} lazily: {why}",
        shared.symbols.num_imported_funcs + slot.index
    );
    // SAFETY: `vmctx` is the running callee's (our contract), so its store context is the
    // running store's.
    unsafe {
        record(
            super::instance::store_context(vmctx),
            Recorded::Error(crate::Error::ResourceLimit(why)),
        )
    };
    shared.stubs().function_address(shared.slots.len()) as usize
}
