//! Executable memory for compiled functions, and the process-wide registry the signal handler
//! consults to decide whether a faulting PC is Wasm code and which trap it is.
//!
//! weft places code itself (on `region`-style mmap + mprotect) rather than through
//! cranelift-jit: functions are compiled in parallel to plain byte buffers, and owning the
//! layout keeps each module's code in one contiguous range, makes PC → function lookups a
//! binary search, and makes the result `Send + Sync` without wrappers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, Weak};

use weft_environ::{
    CallSiteHandlers, CompiledFunction, LibCall, ModuleInfo, RelocKind, RelocTarget, Relocation,
    TrapKind,
};

/// What is known about one function inside a [`CodeMemory`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionInfo {
    /// Offset of the function's first instruction from the start of the code memory.
    pub start: usize,
    pub len: usize,
    /// The Wasm function index, or `None` for a trampoline.
    pub func_index: Option<u32>,
    pub traps: Vec<(u32, TrapKind)>,
    pub source_locations: Vec<(u32, u32)>,
    /// Exception handlers of the function's call sites inside `try_table`, sorted by return
    /// offset.
    pub handlers: Vec<CallSiteHandlers>,
    /// Kept so the code can be written out unrelocated ([`CodeMemory::image`]) and placed again
    /// at another address.
    pub relocations: Vec<Relocation>,
}

/// A published range of machine code.
pub struct CodeMemory {
    base: *mut u8,
    mapped_len: usize,
    functions: Vec<FunctionInfo>,
    /// Names for backtraces; shared with the module.
    pub symbols: Option<Arc<ModuleInfo>>,
}

// SAFETY: after `publish` the mapping is immutable (read + execute) until `Drop`, so sharing
// the pointer between threads is sound.
unsafe impl Send for CodeMemory {}
// SAFETY: as above.
unsafe impl Sync for CodeMemory {}

/// A trap site found by [`lookup_trap`].
#[derive(Clone, Copy, Debug)]
pub struct TrapSite {
    pub kind: TrapKind,
}

/// A PC resolved to a Wasm function by [`lookup_frame`].
#[derive(Clone, Debug)]
pub struct FrameInfo {
    pub func_index: u32,
    pub func_name: Option<String>,
    pub module_name: Option<String>,
    /// Byte offset of the instruction in the module binary.
    pub wasm_offset: Option<u32>,
}

type Registry = BTreeMap<usize, Weak<CodeMemory>>;

/// Every live code memory, keyed by its end address.
static REGISTRY: RwLock<Registry> = RwLock::new(BTreeMap::new());

impl CodeMemory {
    /// Copies `functions` into fresh executable memory, resolving calls between them.
    /// `func_indices[i]` is the Wasm index of `functions[i]` (`None` for trampolines).
    ///
    /// # Errors
    /// An error string if the mapping fails or a relocation cannot be applied.
    pub fn publish(
        functions: &[CompiledFunction],
        func_indices: &[Option<u32>],
        symbols: Option<Arc<ModuleInfo>>,
    ) -> Result<Arc<CodeMemory>, String> {
        let (image, infos) = layout(functions, func_indices);
        CodeMemory::load(&image, infos, symbols)
    }

    /// Places an unrelocated code image (as laid out by `publish`, or as read back by
    /// [`CodeMemory::image`] from a serialized module) in fresh executable memory, applies the
    /// functions' relocations for its new address, and makes it executable (flushing the
    /// instruction cache where the ISA needs it).
    ///
    /// The function table is checked before anything is written: functions in address order
    /// and inside the image, trap sites and source locations sorted, every relocation inside
    /// its function and aimed at a function of this code. So metadata that does not describe
    /// the image is an error, never an out-of-bounds write. (Whether the bytes are sound
    /// machine code cannot be checked; that is the serialized module's trust model.)
    ///
    /// # Errors
    /// An error string if the table does not fit the image, or the mapping fails.
    pub fn load(
        image: &[u8],
        functions: Vec<FunctionInfo>,
        symbols: Option<Arc<ModuleInfo>>,
    ) -> Result<Arc<CodeMemory>, String> {
        CodeMemory::load_with_calls(image, functions, symbols, &|_| None)
    }

    /// Like [`CodeMemory::publish`], for code whose calls may leave it: a relocation to a
    /// function that is not among `functions` goes to `outside(index)` (a lazily compiled
    /// function's calls go to the other functions' entry stubs), and is an error if that is
    /// `None`.
    ///
    /// # Errors
    /// As [`CodeMemory::load`].
    pub fn publish_with_calls(
        functions: &[CompiledFunction],
        func_indices: &[Option<u32>],
        symbols: Option<Arc<ModuleInfo>>,
        outside: &dyn Fn(u32) -> Option<usize>,
    ) -> Result<Arc<CodeMemory>, String> {
        let (image, infos) = layout(functions, func_indices);
        CodeMemory::load_with_calls(&image, infos, symbols, outside)
    }

    /// [`CodeMemory::load`] with calls leaving the code resolved by `outside`, as in
    /// [`CodeMemory::publish_with_calls`].
    ///
    /// # Errors
    /// As [`CodeMemory::load`].
    pub fn load_with_calls(
        image: &[u8],
        functions: Vec<FunctionInfo>,
        symbols: Option<Arc<ModuleInfo>>,
        outside: &dyn Fn(u32) -> Option<usize>,
    ) -> Result<Arc<CodeMemory>, String> {
        let index_of_func = check_function_table(image.len(), &functions, outside)?;
        let page = region::page::size();
        let mapped_len = image.len().max(1).next_multiple_of(page);
        // Every page is written just below: have the kernel fill them in one call rather than
        // take a fault per page (a few milliseconds for the code of a large module).
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let populate = libc::MAP_POPULATE;
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let populate = 0;
        // SAFETY: a fresh anonymous private mapping; no existing memory is affected.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | populate,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(format!(
                "mapping {mapped_len} bytes of code memory failed: {}",
                std::io::Error::last_os_error()
            ));
        }
        let base = base.cast::<u8>();
        // Owned from here: an early return unmaps it.
        let memory = CodeMemory {
            base,
            mapped_len,
            functions,
            symbols,
        };
        // SAFETY: the mapping is `mapped_len >= image.len()` bytes of writable memory owned by
        // `memory`, and nothing else refers to it yet.
        let bytes = unsafe { std::slice::from_raw_parts_mut(base, mapped_len) };
        bytes[..image.len()].copy_from_slice(image);
        for f in &memory.functions {
            for reloc in &f.relocations {
                let at = f.start + reloc.offset as usize;
                let target = match reloc.target {
                    RelocTarget::Func(index) => match index_of_func.get(&index) {
                        Some(start) => base as usize + start,
                        // Checked by `check_function_table`.
                        None => outside(index).ok_or("a call leaves the code")?,
                    },
                    RelocTarget::LibCall(libcall) => libcall_address(libcall),
                };
                apply_relocation(
                    bytes,
                    at,
                    base as usize + at,
                    reloc.kind,
                    target,
                    reloc.addend,
                )?;
            }
        }
        // SAFETY: the range is our own mapping; no Rust reference to it outlives this point
        // (`bytes` is not used again).
        unsafe {
            region::protect(base, mapped_len, region::Protection::READ_EXECUTE)
                .map_err(|e| format!("making code executable failed: {e}"))?;
            weft_arch::flush_icache(base, image.len());
        }
        let memory = Arc::new(memory);
        REGISTRY
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(base as usize + mapped_len, Arc::downgrade(&memory));
        Ok(memory)
    }

    /// The functions, in address order.
    pub fn functions(&self) -> &[FunctionInfo] {
        &self.functions
    }

    /// A copy of the code with every relocated field cleared: the image [`CodeMemory::load`]
    /// takes, independent of where this copy was placed.
    pub fn image(&self) -> Vec<u8> {
        let len = self.functions.last().map_or(0, |f| f.start + f.len);
        // SAFETY: `len <= mapped_len` (checked by `load`), and the mapping stays readable
        // (read + execute) and unchanged until `Drop`.
        let code = unsafe { std::slice::from_raw_parts(self.base, len) };
        let mut image = code.to_vec();
        for f in &self.functions {
            for reloc in &f.relocations {
                clear_relocation(&mut image, f.start + reloc.offset as usize, reloc.kind);
            }
        }
        image
    }

    /// The `i`th function's code with its relocated fields cleared (as in
    /// [`CodeMemory::image`]), and its table entry with `start` 0.
    pub fn function_image(&self, i: usize) -> (Vec<u8>, FunctionInfo) {
        let f = &self.functions[i];
        // SAFETY: the function lies inside the mapping (checked by `load`), which stays
        // readable and unchanged until `Drop`.
        let code = unsafe { std::slice::from_raw_parts(self.base.add(f.start), f.len) };
        let mut bytes = code.to_vec();
        for reloc in &f.relocations {
            clear_relocation(&mut bytes, reloc.offset as usize, reloc.kind);
        }
        (
            bytes,
            FunctionInfo {
                start: 0,
                ..f.clone()
            },
        )
    }

    /// Address of the `i`th published function.
    pub fn function_address(&self, i: usize) -> *const u8 {
        self.base.wrapping_add(self.functions[i].start)
    }

    fn range(&self) -> std::ops::Range<usize> {
        self.base as usize..self.base as usize + self.mapped_len
    }

    fn function_at(&self, pc: usize) -> Option<&FunctionInfo> {
        let offset = pc.checked_sub(self.base as usize)?;
        let i = self
            .functions
            .partition_point(|f| f.start <= offset)
            .checked_sub(1)?;
        let f = &self.functions[i];
        (offset < f.start + f.len).then_some(f)
    }
}

impl Drop for CodeMemory {
    fn drop(&mut self) {
        REGISTRY
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.range().end);
        // SAFETY: the mapping is ours and nothing can execute it any more: every instance and
        // function that could reach it held an `Arc` to it.
        unsafe {
            libc::munmap(self.base.cast(), self.mapped_len);
        }
    }
}

/// Finds the code memory containing `pc` and applies `f` to it. Safe to call from a signal
/// handler on a thread that holds no registry lock (Wasm code never runs while one is held).
fn with_code<R>(pc: usize, f: impl FnOnce(&CodeMemory) -> Option<R>) -> Option<R> {
    let registry = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
    let (_, code) = registry.range(pc + 1..).next()?;
    let code = code.upgrade()?;
    if !code.range().contains(&pc) {
        return None;
    }
    f(&code)
}

/// The trap code of the instruction at `pc`, if `pc` is a trap site in Wasm code.
pub fn lookup_trap(pc: usize) -> Option<TrapSite> {
    with_code(pc, |code| {
        let f = code.function_at(pc)?;
        let offset = (pc - code.base as usize - f.start) as u32;
        let i = f.traps.binary_search_by_key(&offset, |t| t.0).ok()?;
        Some(TrapSite { kind: f.traps[i].1 })
    })
}

/// The exception handlers of one call site, as [`lookup_handlers`] finds them.
pub struct CallSite {
    /// The caller's frame pointer minus this is the stack pointer its handlers expect.
    pub frame_offset: usize,
    /// Where the caller's vmctx is, above that stack pointer.
    pub vmctx_sp_offset: usize,
    /// `(module tag index or None for a catch-all, handler address)`, in match order.
    pub handlers: Vec<(Option<u32>, usize)>,
}

/// The exception handlers of the call whose return address is `return_address`, if it is a
/// call site inside a `try_table` of Wasm code.
pub fn lookup_handlers(return_address: usize) -> Option<CallSite> {
    with_code(return_address, |code| {
        let f = code.function_at(return_address)?;
        let start = code.base as usize + f.start;
        let offset = (return_address - start) as u32;
        let i = f
            .handlers
            .binary_search_by_key(&offset, |h| h.return_offset)
            .ok()?;
        let site = &f.handlers[i];
        Some(CallSite {
            frame_offset: site.frame_offset as usize,
            vmctx_sp_offset: site.vmctx_sp_offset as usize,
            handlers: site
                .handlers
                .iter()
                .map(|&(tag, handler)| (tag, start + handler as usize))
                .collect(),
        })
    })
}

/// Resolves `pc` to a Wasm function and source offset; `None` for trampolines and non-Wasm PCs.
pub fn lookup_frame(pc: usize) -> Option<FrameInfo> {
    with_code(pc, |code| {
        let f = code.function_at(pc)?;
        let func_index = f.func_index?;
        let offset = (pc - code.base as usize - f.start) as u32;
        let wasm_offset = f
            .source_locations
            .partition_point(|s| s.0 <= offset)
            .checked_sub(1)
            .map(|i| f.source_locations[i].1);
        let symbols = code.symbols.as_deref();
        Some(FrameInfo {
            func_index,
            func_name: symbols.and_then(|s| s.func_name(func_index).map(str::to_string)),
            module_name: symbols.and_then(|s| s.name.clone()),
            wasm_offset,
        })
    })
}

/// Lays out `functions` one after another at their alignment (at least 16): the code image
/// with relocations unapplied, and the function table.
fn layout(
    functions: &[CompiledFunction],
    func_indices: &[Option<u32>],
) -> (Vec<u8>, Vec<FunctionInfo>) {
    let mut image = Vec::new();
    let mut infos = Vec::with_capacity(functions.len());
    for (f, &func_index) in functions.iter().zip(func_indices) {
        let align = f.alignment.max(16) as usize;
        image.resize(image.len().next_multiple_of(align), 0);
        infos.push(FunctionInfo {
            start: image.len(),
            len: f.code.len(),
            func_index,
            traps: f.traps.clone(),
            source_locations: f.source_locations.clone(),
            handlers: f.handlers.clone(),
            relocations: f.relocations.clone(),
        });
        image.extend_from_slice(&f.code);
    }
    (image, infos)
}

/// Checks that `functions` describes an image of `image_len` bytes (see [`CodeMemory::load`])
/// and returns where each Wasm function starts.
fn check_function_table(
    image_len: usize,
    functions: &[FunctionInfo],
    outside: &dyn Fn(u32) -> Option<usize>,
) -> Result<HashMap<u32, usize>, String> {
    let mut index_of_func = HashMap::with_capacity(functions.len());
    let mut end = 0usize;
    for f in functions {
        let f_end = f
            .start
            .checked_add(f.len)
            .filter(|&e| f.start >= end && e <= image_len)
            .ok_or("a function lies outside the code or out of order")?;
        end = f_end;
        if !f.traps.is_sorted_by_key(|t| t.0)
            || !f.source_locations.is_sorted_by_key(|s| s.0)
            || !f.handlers.is_sorted_by_key(|h| h.return_offset)
            || f.handlers.iter().any(|h| {
                h.return_offset as usize > f.len
                    || h.handlers.iter().any(|&(_, at)| at as usize >= f.len)
            })
        {
            return Err("trap sites or source locations are not sorted".into());
        }
        if let Some(index) = f.func_index
            && index_of_func.insert(index, f.start).is_some()
        {
            return Err(format!("function {index} appears twice"));
        }
        for reloc in &f.relocations {
            let size = match reloc.kind {
                RelocKind::Abs8 => 8,
                RelocKind::X86PcRel4 | RelocKind::Arm64Call => 4,
            };
            if (reloc.offset as usize)
                .checked_add(size)
                .is_none_or(|e| e > f.len)
            {
                return Err("a relocation lies outside its function".into());
            }
        }
    }
    for f in functions {
        for reloc in &f.relocations {
            if let RelocTarget::Func(index) = reloc.target
                && !index_of_func.contains_key(&index)
                && outside(index).is_none()
            {
                return Err(format!(
                    "relocation to function {index}, which is not in this code"
                ));
            }
        }
    }
    Ok(index_of_func)
}

/// Undoes [`apply_relocation`]'s write at `at` (every kind overwrites its field whole, except
/// `Arm64Call`, which fills the 26-bit offset of a `bl`).
fn clear_relocation(bytes: &mut [u8], at: usize, kind: RelocKind) {
    match kind {
        RelocKind::Abs8 => bytes[at..at + 8].fill(0),
        RelocKind::X86PcRel4 => bytes[at..at + 4].fill(0),
        RelocKind::Arm64Call => {
            let insn = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
            bytes[at..at + 4].copy_from_slice(&(insn & !0x03ff_ffff).to_le_bytes());
        }
    }
}

fn apply_relocation(
    bytes: &mut [u8],
    at: usize,
    at_address: usize,
    kind: RelocKind,
    target: usize,
    addend: i64,
) -> Result<(), String> {
    let target = (target as i64).wrapping_add(addend);
    match kind {
        RelocKind::Abs8 => {
            bytes[at..at + 8].copy_from_slice(&(target as u64).to_le_bytes());
        }
        RelocKind::X86PcRel4 => {
            let delta = target.wrapping_sub(at_address as i64);
            let delta =
                i32::try_from(delta).map_err(|_| "x86 call target out of range".to_string())?;
            bytes[at..at + 4].copy_from_slice(&delta.to_le_bytes());
        }
        RelocKind::Arm64Call => {
            let delta = target.wrapping_sub(at_address as i64);
            if delta % 4 != 0 || !(-(1 << 27)..(1 << 27)).contains(&delta) {
                return Err("arm64 call target out of range".to_string());
            }
            let mut insn = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
            insn |= ((delta >> 2) as u32) & 0x03ff_ffff;
            bytes[at..at + 4].copy_from_slice(&insn.to_le_bytes());
        }
    }
    Ok(())
}

/// Runtime routines compiled code may call where the ISA lacks an instruction.
fn libcall_address(libcall: LibCall) -> usize {
    extern "C" fn ceil_f32(x: f32) -> f32 {
        x.ceil()
    }
    extern "C" fn ceil_f64(x: f64) -> f64 {
        x.ceil()
    }
    extern "C" fn floor_f32(x: f32) -> f32 {
        x.floor()
    }
    extern "C" fn floor_f64(x: f64) -> f64 {
        x.floor()
    }
    extern "C" fn trunc_f32(x: f32) -> f32 {
        x.trunc()
    }
    extern "C" fn trunc_f64(x: f64) -> f64 {
        x.trunc()
    }
    extern "C" fn nearest_f32(x: f32) -> f32 {
        x.round_ties_even()
    }
    extern "C" fn nearest_f64(x: f64) -> f64 {
        x.round_ties_even()
    }
    extern "C" fn fma_f32(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
    extern "C" fn fma_f64(a: f64, b: f64, c: f64) -> f64 {
        a.mul_add(b, c)
    }
    match libcall {
        LibCall::CeilF32 => ceil_f32 as *const () as usize,
        LibCall::CeilF64 => ceil_f64 as *const () as usize,
        LibCall::FloorF32 => floor_f32 as *const () as usize,
        LibCall::FloorF64 => floor_f64 as *const () as usize,
        LibCall::TruncF32 => trunc_f32 as *const () as usize,
        LibCall::TruncF64 => trunc_f64 as *const () as usize,
        LibCall::NearestF32 => nearest_f32 as *const () as usize,
        LibCall::NearestF64 => nearest_f64 as *const () as usize,
        LibCall::FmaF32 => fma_f32 as *const () as usize,
        LibCall::FmaF64 => fma_f64 as *const () as usize,
    }
}
