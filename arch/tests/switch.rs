//! The stack switcher on real stacks: values in both directions, finishing, depth, many stacks
//! alive at once, moving between threads, backtraces across the switch, and traps on a
//! switched stack.

mod common;

use std::cell::Cell;
use std::hint::black_box;
use std::ops::Range;
use std::ptr;

use weft_arch::stack::page_size;
use weft_arch::{
    EntryRecord, Stack, StackConfig, StackEntry, StackPool, call_with_landing_pad, init_stack,
    switch_and_link, switch_yield,
};

/// A routine on its own stack, as the runtime's continuations will hold one.
struct Routine {
    stack: Stack,
    /// The suspended context; `None` once the entry function returned.
    sp: Option<usize>,
}

impl Routine {
    fn new(stack: Stack, entry: StackEntry, arg: usize) -> Routine {
        // SAFETY: the stack is fresh, owned by the routine, and its top is page-aligned.
        let sp = unsafe { init_stack(stack.top(), entry, arg) };
        Routine {
            stack,
            sp: Some(sp),
        }
    }

    /// Resumes with `value`; returns what the routine yielded or, if it finished, returned.
    #[inline(never)]
    fn resume(&mut self, value: usize) -> usize {
        let sp = self.sp.take().expect("resumed a finished routine");
        // SAFETY: `sp` is the routine's current suspended context on `self.stack`, taken so it
        // cannot be resumed twice; the stack lives as long as `self`.
        let (value, sp) = unsafe { switch_and_link(value, sp, self.stack.top()) };
        self.sp = sp;
        value
    }

    fn finished(&self) -> bool {
        self.sp.is_none()
    }
}

fn yield_value(value: usize, stack_top: usize) -> usize {
    // SAFETY: every caller in this file runs on the stack whose top is `stack_top`, inside its
    // routine, which some `Routine::resume` is waiting for.
    unsafe { switch_yield(value, stack_top) }
}

fn small_stack() -> Stack {
    Stack::new(256 << 10).unwrap()
}

// ---------------------------------------------------------------------------------------------

#[test]
fn switching_back_and_forth_passes_values_both_ways() {
    /// Yields `value + 1` for every value it receives, `rounds` times, then returns `2 * value`.
    unsafe extern "C" fn echo_plus_one(rounds: usize, mut value: usize, top: usize) -> usize {
        for _ in 0..rounds {
            value = yield_value(value + 1, top);
        }
        2 * value
    }
    let rounds = 100_000;
    let mut routine = Routine::new(small_stack(), echo_plus_one, rounds);
    for i in 0..rounds {
        assert_eq!(routine.resume(i * 7), i * 7 + 1);
        assert!(!routine.finished());
    }
    assert_eq!(routine.resume(21), 42);
    assert!(routine.finished());
}

#[test]
fn finished_routine_returns_to_parent_with_its_result() {
    unsafe extern "C" fn add(arg: usize, value: usize, _top: usize) -> usize {
        arg + value
    }
    let mut routine = Routine::new(small_stack(), add, 40);
    assert_eq!(routine.resume(2), 42);
    assert!(routine.finished());
}

#[test]
fn live_registers_survive_switches_on_both_sides() {
    /// Keeps its own integers and floats live across yields while the parent does the same.
    unsafe extern "C" fn busy(_: usize, mut value: usize, top: usize) -> usize {
        let ints: [u64; 12] = black_box([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        let floats: [f64; 10] = black_box([0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5, 9.5]);
        let (mut int_sum, mut float_sum) = (0u64, 0f64);
        for round in 0..1000 {
            value = yield_value(value ^ 0x5555, top);
            int_sum += ints.iter().map(|i| i * round).sum::<u64>();
            float_sum += floats.iter().map(|f| f * round as f64).sum::<f64>();
        }
        let expected_ints = 78 * (999 * 1000 / 2);
        let expected_floats = 50.0 * (999.0 * 1000.0 / 2.0);
        usize::from(int_sum == expected_ints && float_sum == expected_floats)
    }
    let ints: [u64; 12] = black_box([3; 12]);
    let floats: [f64; 10] = black_box([0.25; 10]);
    let (mut int_sum, mut float_sum) = (0u64, 0f64);
    let mut routine = Routine::new(small_stack(), busy, 0);
    for round in 0..1000usize {
        assert_eq!(routine.resume(round), round ^ 0x5555);
        int_sum += ints.iter().sum::<u64>();
        float_sum += floats.iter().sum::<f64>();
    }
    assert_eq!(routine.resume(0), 1, "the routine's values survived");
    assert_eq!(
        (int_sum, float_sum),
        (36_000, 2500.0),
        "the parent's values survived"
    );
}

#[test]
fn deep_recursion_on_a_switched_stack() {
    /// Recurses `depth` times with a 1 KiB frame, yielding at the bottom.
    fn recurse(depth: usize, top: usize) -> usize {
        let mut frame = [depth as u8; 1024];
        black_box(&mut frame);
        let below = if depth == 0 {
            yield_value(0, top)
        } else {
            recurse(depth - 1, top)
        };
        below + usize::from(black_box(&frame)[1000])
    }
    unsafe extern "C" fn deep(depth: usize, _: usize, top: usize) -> usize {
        recurse(depth, top)
    }
    // ~500 KiB of frames on a 1 MiB stack, suspended at the deepest point.
    let mut routine = Routine::new(Stack::new(1 << 20).unwrap(), deep, 500);
    assert_eq!(routine.resume(0), 0);
    let result = routine.resume(1_000_000);
    assert!(routine.finished());
    assert_eq!(
        result,
        1_000_000 + (0..=500).map(|d| d % 256).sum::<usize>()
    );
}

#[test]
fn ten_thousand_stacks_suspended_at_once() {
    unsafe extern "C" fn twice(arg: usize, value: usize, top: usize) -> usize {
        let resumed_with = yield_value(value + arg, top);
        resumed_with * 2 + arg
    }
    let pool = StackPool::new(StackConfig::default());
    let count = 10_000;
    let mut routines: Vec<Routine> = (0..count)
        .map(|i| Routine::new(pool.allocate().unwrap(), twice, i))
        .collect();
    for (i, routine) in routines.iter_mut().enumerate() {
        assert_eq!(routine.resume(1), i + 1);
    }
    // All 10,000 are suspended now; finish them in reverse order.
    for (i, routine) in routines.iter_mut().enumerate().rev() {
        assert_eq!(routine.resume(i), 3 * i);
        assert!(routine.finished());
    }
    for routine in routines {
        pool.release(routine.stack);
    }
    assert_eq!(pool.pooled(), pool.config().max_pooled);
}

/// Which pages of `range` are resident, per `mincore`.
fn resident_pages(range: Range<usize>) -> usize {
    let mut flags = vec![0u8; range.len() / page_size()];
    // SAFETY: `range` is a page-aligned part of a mapped stack; one flag byte per page.
    let status = unsafe {
        libc::mincore(
            range.start as *mut libc::c_void,
            range.len(),
            flags.as_mut_ptr(),
        )
    };
    assert_eq!(status, 0);
    flags.iter().filter(|&&flag| flag & 1 != 0).count()
}

#[test]
fn pool_reuse_releases_the_memory_of_a_deep_call() {
    /// Writes `kib` KiB of stack, yields at the bottom, then returns.
    fn fill(kib: usize, top: usize) -> usize {
        let mut frame = [(kib % 255) as u8 + 1; 1024];
        black_box(&mut frame);
        let below = if kib == 0 {
            yield_value(0, top)
        } else {
            fill(kib - 1, top)
        };
        below + usize::from(black_box(&frame)[0] > 0 && kib > 0)
    }
    unsafe extern "C" fn fill_entry(kib: usize, _: usize, top: usize) -> usize {
        fill(kib, top)
    }
    let pool = StackPool::new(StackConfig {
        size: 1 << 20,
        resident_watermark: 16 << 10,
        max_pooled: 8,
        // Straight to the shared list, whose release gives the pages back.
        warm_per_thread: 0,
        ..StackConfig::default()
    });
    let mut routine = Routine::new(pool.allocate().unwrap(), fill_entry, 600);
    routine.resume(0);
    let usable = routine.stack.usable();
    let deep = resident_pages(usable.clone());
    assert!(deep >= 150, "a 600 KiB call committed {deep} pages");
    assert_eq!(routine.resume(0), 600);
    pool.release(routine.stack);

    // The same stack comes back with only the watermark's pages resident.
    let stack = pool.allocate().unwrap();
    assert_eq!(stack.usable(), usable);
    let kept = resident_pages(stack.usable());
    assert!(
        kept <= (16 << 10) / page_size(),
        "{kept} pages still resident"
    );

    // And a shallow call on it commits nothing new.
    unsafe extern "C" fn shallow(_: usize, value: usize, top: usize) -> usize {
        yield_value(value, top)
    }
    let mut routine = Routine::new(stack, shallow, 0);
    assert_eq!(routine.resume(5), 5);
    assert!(resident_pages(routine.stack.usable()) <= kept.max(1));
    routine.resume(0);
}

#[test]
fn routine_suspended_on_one_thread_resumes_on_another() {
    unsafe extern "C" fn two_steps(_: usize, value: usize, top: usize) -> usize {
        let resumed_with = yield_value(value + 1, top);
        resumed_with + 100
    }
    let mut routine = Routine::new(small_stack(), two_steps, 0);
    let here = std::thread::current().id();
    assert_eq!(routine.resume(1), 2);
    let (result, there) = std::thread::spawn(move || {
        let result = routine.resume(3);
        assert!(routine.finished());
        (result, std::thread::current().id())
    })
    .join()
    .unwrap();
    assert_eq!(result, 103);
    assert_ne!(here, there);
}

#[test]
fn backtrace_inside_a_routine_reaches_its_resumer() {
    thread_local! {
        static BACKTRACE: Cell<String> = const { Cell::new(String::new()) };
    }
    unsafe extern "C" fn capture_backtrace(_: usize, _: usize, _: usize) -> usize {
        let backtrace = std::backtrace::Backtrace::force_capture().to_string();
        BACKTRACE.with(|b| b.set(backtrace));
        0
    }
    let mut routine = Routine::new(small_stack(), capture_backtrace, 0);
    routine.resume(0);
    let backtrace = BACKTRACE.with(Cell::take);
    // Innermost first: the routine, then (past the stack root) the resumer and this test.
    let routine_frame = backtrace.find("capture_backtrace").expect(&backtrace);
    let resumer = backtrace[routine_frame..]
        .find("Routine::resume")
        .expect(&backtrace);
    let test = backtrace[routine_frame + resumer..].find("backtrace_inside_a_routine_reaches");
    assert!(test.is_some(), "{backtrace}");
}

#[test]
fn root_frame_record_links_to_the_resumer() {
    /// Reads the parent link the way a frame-pointer walker does from the root frame record
    /// (`top - 16`): the resumer's saved {fp, resume pc}.
    unsafe extern "C" fn read_parent_frame(_: usize, _: usize, top: usize) -> usize {
        // SAFETY: `top - 16` is this stack's parent link, which points at the resumer's saved
        // context (live while we run); `+ 8` is its resume pc.
        unsafe {
            let parent_sp = *((top - 16) as *const usize);
            *((parent_sp + 8) as *const usize)
        }
    }
    let mut routine = Routine::new(small_stack(), read_parent_frame, 0);
    let resume_pc = routine.resume(0);
    let resume_fn = Routine::resume as *const () as usize;
    assert!(
        (resume_fn..resume_fn + 4096).contains(&resume_pc),
        "{resume_pc:#x} in {resume_fn:#x}"
    );
}

#[test]
fn guard_page_hit_on_a_switched_stack_traps_to_the_landing_pad() {
    /// Recurses with 4 KiB frames (written, so the stack really grows) until the guard.
    #[allow(
        unconditional_recursion,
        reason = "it ends in the guard page, by design"
    )]
    extern "C" fn overflow(depth: usize, _: usize, _: usize) {
        let mut frame = [depth as u8; 4096];
        black_box(&mut frame);
        overflow(depth + 1, 0, 0);
        black_box(&frame);
    }
    /// Runs `overflow` under a landing pad on this stack, as the runtime runs Wasm.
    unsafe extern "C" fn guarded_overflow(_: usize, _: usize, _: usize) -> usize {
        let mut record = EntryRecord::new();
        common::ACTIVE_RECORD.with(|r| r.set(&raw const record));
        // SAFETY: `record` outlives the call; `overflow` holds no values that need dropping.
        let status = unsafe {
            call_with_landing_pad(&raw mut record, overflow as *const () as usize, 0, 0, 0)
        };
        common::ACTIVE_RECORD.with(|r| r.set(ptr::null()));
        status
    }
    let _alt = common::AltStack::install();
    let mut routine = Routine::new(small_stack(), guarded_overflow, 0);
    assert_eq!(
        routine.resume(0),
        1,
        "the overflow trapped and the landing pad returned 1"
    );
    assert!(routine.finished());
    assert_eq!(common::TRAP_SIGNAL.with(Cell::get), libc::SIGSEGV);
    let fault = common::TRAP_ADDRESS.with(Cell::get);
    assert!(
        routine.stack.guard().contains(&fault),
        "fault at {fault:#x}"
    );
}
