//! Wasm exceptions: the store's exception objects and the handler search behind `throw`.
//!
//! An `exnref` is the address of an exception object the store owns (layout in
//! `weft_environ::vmoffsets::exception`: a header holding the store's index of the tag and
//! the payload length, then one 16-byte slot per payload value). Objects live as long as the
//! store: weft has no collector, so each `throw` costs the store its payload until the store
//! is dropped.
//!
//! Throwing is zero cost until it happens. Compiled code makes every call inside a `try_table`
//! a Cranelift `try_call`, whose return address the compiler lists with the catch clauses
//! (`weft_environ::CallSiteHandlers`) and nothing else; the normal return path has no check.
//! `throw` and `throw_ref` call the `weft_arch::throw` stub, which calls [`find_handler`]
//! with the return address into the thrower and its frame pointer. That walks the
//! frame-pointer chain of the running activation, looking each return address up in the code
//! memories' handler tables; a clause matches if it catches all or names a tag whose identity
//! in the calling frame's instance (read from the frame through the vmctx Cranelift spilled
//! there, the exception table's context) is the exception's tag. The stub then resumes at
//! the handler with the frame's stack and frame pointers and the exnref in the first payload
//! register, dropping the Wasm frames in between (they own nothing; Cranelift saved every
//! register the handler's function needs around its `try_call`s).
//!
//! The walk never leaves the activation: it stops at the activation's entry frame, which on a
//! promising call's fiber is the base of the fiber's stack and in a host → Wasm call the
//! host's entry. An exception that no frame of the activation catches is recorded as the
//! activation's outcome, and the thrower traps with `Recorded`, which unwinds to the entry
//! like any trap: the host gets it as [`crate::Error::Exception`].

use std::collections::HashMap;

use weft_arch::ResumeTarget;
use weft_environ::vmoffsets::exception;

use super::code_memory;
use super::entry::{Frames, Recorded, record};
use super::instance::instance_of_vmctx;
use super::vmstructs::VMStoreContext;

/// The exception objects of one store, by address (the exnref).
///
/// Each object is a boxed slice of 16-byte slots: the header (tag index in bits 0..32,
/// payload length in bits 32..64, the pinned byte at `exception::PINNED`), then the payload.
#[derive(Default)]
pub struct ExceptionHeap {
    objects: HashMap<usize, Box<[u128]>>,
}

/// The header bit of the pinned byte (`exception::PINNED` is its byte offset).
const PINNED_BITS: u128 = 0xff << (8 * exception::PINNED as u32);

impl ExceptionHeap {
    /// A new, unpinned exception of the store's tag `tag` with `len` zeroed payload slots:
    /// its exnref.
    pub fn allocate(&mut self, tag: u32, len: usize) -> usize {
        let mut object = vec![0u128; 1 + len].into_boxed_slice();
        object[0] = u128::from(tag) | ((len as u128) << 32);
        let address = object.as_ptr() as usize;
        debug_assert_eq!(exception::VALUES, 16);
        self.objects.insert(address, object);
        address
    }

    /// A new, unpinned exception of the store's tag `tag` with payload `raw`: its exnref.
    pub fn allocate_with(&mut self, tag: u32, raw: &[u128]) -> usize {
        let exn = self.allocate(tag, raw.len());
        self.objects.get_mut(&exn).expect("just allocated")[1..].copy_from_slice(raw);
        exn
    }

    /// The store's index of the tag of exception `exn`, and its payload slots; `None` if `exn`
    /// is not an exception of this store.
    pub fn get(&self, exn: usize) -> Option<(u32, &[u128])> {
        let object = self.objects.get(&exn)?;
        Some((object[0] as u32, &object[1..]))
    }

    /// Keeps exception `exn` until the store is dropped: a reference to it escapes to where
    /// it can be copied (a Wasm value, a host handle).
    pub fn pin(&mut self, exn: usize) {
        if let Some(object) = self.objects.get_mut(&exn) {
            object[0] |= PINNED_BITS;
        }
    }

    /// Whether exception `exn` is pinned (`false` if it is not one of the store's).
    pub fn is_pinned(&self, exn: usize) -> bool {
        self.objects
            .get(&exn)
            .is_some_and(|object| object[0] & PINNED_BITS != 0)
    }

    /// Frees exception `exn` unless it is pinned: the caller held the only reference to it
    /// (see [`ExceptionHeap`]'s invariant in the module docs) and is done with it.
    pub fn release(&mut self, exn: usize) {
        if !self.is_pinned(exn) {
            self.objects.remove(&exn);
        }
    }

    /// How many exception objects the store holds.
    pub fn len(&self) -> usize {
        self.objects.len()
    }
}

/// The `exn_new` builtin: a new exception of the caller's tag `tag`, whose payload compiled
/// code writes.
///
/// # Safety
/// Called by compiled code with its own vmctx.
pub(super) unsafe extern "C" fn exn_new(vmctx: *mut u8, tag: u32) -> usize {
    // SAFETY: our contract.
    let (instance, store) = unsafe { (instance_of_vmctx(vmctx), store_of(vmctx)) };
    let store_tag = instance.tag(tag);
    let len = instance.module().tag_params(tag).len();
    // SAFETY: the store's Wasm is running this builtin: nothing else touches the heap.
    unsafe { (*store.exceptions.get()).allocate(store_tag, len) }
}

/// The `exn_release` builtin: a `catch` or `catch_all` landed with exception `exn` and read
/// its payload; it is freed unless pinned.
///
/// # Safety
/// Called by compiled code with its own vmctx, with the exnref its landing block received.
pub(super) unsafe extern "C" fn exn_release(vmctx: *mut u8, exn: usize) {
    // SAFETY: our contract.
    let store = unsafe { store_of(vmctx) };
    // SAFETY: the store's Wasm is running this builtin: nothing else touches the heap.
    unsafe { (*store.exceptions.get()).release(exn) }
}

/// The store context of the instance whose vmctx is `vmctx`.
///
/// # Safety
/// `vmctx` is the vmctx of a live instance whose code is running.
unsafe fn store_of<'a>(vmctx: *mut u8) -> &'a VMStoreContext {
    // SAFETY: the caller's contract; the vmctx starts with the store context pointer.
    unsafe {
        &*vmctx
            .add(weft_environ::vmoffsets::VMOffsets::STORE_CONTEXT as usize)
            .cast::<*const VMStoreContext>()
            .read()
    }
}

/// The `find_handler` builtin, called by `weft_arch::throw` (see the module docs): fills
/// `target` with the innermost handler of the running activation that catches `exn`, or
/// records the exception as the activation's outcome and returns 0.
///
/// # Safety
/// Called by the throw stub for compiled code of the instance `vmctx` throwing `exn` (an
/// exception of its store), with the return address into the throwing frame, that frame's
/// frame pointer and a writable target.
pub(super) unsafe extern "C" fn find_handler(
    vmctx: *mut u8,
    exn: usize,
    return_address: usize,
    fp: usize,
    target: usize,
) -> u8 {
    // SAFETY: our contract.
    let store = unsafe { store_of(vmctx) };
    // SAFETY: the store's Wasm runs this builtin, so the activation running it is this
    // thread's innermost one, live.
    let end = unsafe { (*super::entry::current()).entry.fp };
    // SAFETY: as above, nothing else touches the heap while the builtin runs.
    let thrown = unsafe { (*store.exceptions.get()).get(exn) }.map(|(tag, _)| tag);
    let Some(thrown) = thrown else {
        // Not an exception of this store: compiled code only has exnrefs of its own store.
        // SAFETY: as above.
        unsafe { record(store, Recorded::Trap(weft_environ::TrapKind::NullReference)) };
        return 0;
    };
    // SAFETY: the stub's frame is the thrower's callee, so `fp` is a live Wasm frame of the
    // store's innermost activation and `return_address` is in it; the stack from there up to
    // the activation's entry frame is live while this builtin runs.
    let frames = unsafe { Frames::new(return_address, fp, fp, end) };
    for (return_address, fp) in frames {
        if fp >= end {
            // The entry routine's frame, or past a broken chain: no Wasm frame to search.
            break;
        }
        if let Some(site) = code_memory::lookup_handlers(return_address) {
            let sp = fp - site.frame_offset;
            // SAFETY: `fp` is a live Wasm frame of this activation (below its entry), and the
            // compiler recorded where its `try_call` keeps the vmctx, a live instance's.
            let frame_vmctx = unsafe { *((sp + site.vmctx_sp_offset) as *const *mut u8) };
            // SAFETY: as above.
            let instance = unsafe { instance_of_vmctx(frame_vmctx) };
            for &(tag, handler) in &site.handlers {
                if tag.is_none_or(|tag| instance.tag(tag) == thrown) {
                    let resume = ResumeTarget {
                        pc: handler,
                        sp,
                        fp,
                        payload: exn,
                    };
                    // SAFETY: the stub passes a writable target in its frame.
                    unsafe { (target as *mut ResumeTarget).write(resume) };
                    return 1;
                }
            }
        }
    }
    // SAFETY: as above.
    unsafe { record(store, Recorded::Exception(exn)) };
    0
}
