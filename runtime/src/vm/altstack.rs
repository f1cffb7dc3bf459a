//! The alternate signal stack: a fault on an exhausted stack (a guard-page hit) must still
//! find room to run the handler.

use std::ptr;
/// Size of the alternate signal stack weft installs on threads that run Wasm.
const ALTSTACK_SIZE: usize = 64 * 1024;

struct AltStack {
    mapping: *mut libc::c_void,
    len: usize,
}

impl Drop for AltStack {
    fn drop(&mut self) {
        if self.mapping.is_null() {
            return;
        }
        // SAFETY: disable the altstack before unmapping it; this thread is exiting and runs
        // no more Wasm.
        unsafe {
            let disable = libc::stack_t {
                ss_sp: ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            libc::sigaltstack(&disable, ptr::null_mut());
            libc::munmap(self.mapping, self.len);
        }
    }
}

thread_local! {
    static ALTSTACK: std::cell::RefCell<Option<AltStack>> = const { std::cell::RefCell::new(None) };
}

/// Makes sure this thread has an alternate signal stack big enough for the handler, so a fault
/// on an exhausted stack can still be handled. `false` if none could be mapped (see there).
pub(super) fn ensure_altstack() -> bool {
    ALTSTACK.with(|slot| {
        if slot.borrow().is_some() {
            return true;
        }
        // SAFETY: querying the current altstack.
        let mut old: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        unsafe { libc::sigaltstack(ptr::null(), &mut old) };
        if old.ss_flags & libc::SS_DISABLE == 0 && old.ss_size >= ALTSTACK_SIZE {
            *slot.borrow_mut() = Some(AltStack {
                mapping: ptr::null_mut(),
                len: 0,
            });
            return true;
        }
        let page = region::page::size();
        let len = ALTSTACK_SIZE + page;
        // SAFETY: fresh anonymous mapping; the lowest page becomes a guard.
        let mapping = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if mapping == libc::MAP_FAILED {
            // No memory for it (the mapping limit): run without one, and try again at the
            // next entry. Traps still work (the handler runs on the thread's stack); only a
            // fault on an exhausted stack would not be handled.
            return false;
        }
        // SAFETY: the guard page and the stack are inside the mapping we just made.
        let installed = unsafe {
            let stack = libc::stack_t {
                ss_sp: mapping.cast::<u8>().add(page).cast(),
                ss_flags: 0,
                ss_size: ALTSTACK_SIZE,
            };
            libc::mprotect(mapping, page, libc::PROT_NONE) == 0
                && libc::sigaltstack(&stack, ptr::null_mut()) == 0
        };
        if !installed {
            // SAFETY: our own mapping, which nothing uses.
            unsafe { libc::munmap(mapping, len) };
            return false;
        }
        *slot.borrow_mut() = Some(AltStack { mapping, len });
        true
    })
}
