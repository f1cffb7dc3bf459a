//! Promising calls interleaved on one instance of a clang-built C module, whose locals live on
//! the shadow stack that `__stack_pointer` points into: corrupted without a shadow stack per
//! call, intact with one (`Instance::set_shadow_stack`).
//!
//! The module is tests/fixtures/shadow_stack/interleave.wasm (C source and build script
//! beside it): `work(id)` fills a 4 KiB stack buffer with a pattern of `id`, calls the
//! suspending import `env.pause`, and returns how many bytes lost the pattern.

use crate::common::PendingOnce;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use weft::{
    Engine, Error, Instance, Linker, Module, ShadowStack, ShadowStackRegion, SharedStore,
    StackPointerGlobal, Store, TypedFunc,
};

const CALLS: i32 = 1000;
/// Bytes of shadow stack per call: the 4 KiB buffer, `work`'s frame, and room to spare.
const REGION: u32 = 8192;

fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

/// A store with one instance of the module, initialized.
fn instance() -> (Store<()>, Instance) {
    let path = format!(
        "{}/tests/fixtures/shadow_stack/interleave.wasm",
        env!("CARGO_MANIFEST_DIR")
    );
    let wasm = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let engine = Engine::default();
    let module = Module::from_binary(&engine, &wasm).unwrap();
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap_async(
            "env",
            "pause",
            |_caller: weft::Caller<'_, ()>, _buffer: i32, _id: i32| PendingOnce(false),
        )
        .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    instance
        .get_typed_func::<(), ()>(&mut store, "_initialize")
        .unwrap()
        .call(&mut store, ())
        .unwrap();
    (store, instance)
}

fn guest_allocator() -> ShadowStackRegion {
    ShadowStackRegion::GuestAllocator {
        alloc: "stack_alloc".into(),
        free: "stack_free".into(),
        size: REGION,
    }
}

/// One step of a schedule of promising calls of `work(id)` on one shared store.
#[derive(Clone, Copy)]
enum Step {
    /// Starts call `id` and polls it once (it suspends in `pause`).
    Start(i32),
    /// Polls call `id` again (it returns).
    Resume(i32),
}

/// Runs `schedule` (every call started once, then resumed once): each call's count of bytes
/// that lost their pattern, or its error, by id.
fn run(store: Store<()>, work: TypedFunc<i32, i32>, schedule: &[Step]) -> Vec<weft::Result<i32>> {
    let shared = SharedStore::new(store);
    let mut calls: Vec<_> = schedule
        .iter()
        .filter(|step| matches!(step, Step::Start(_)))
        .map(|_| None)
        .collect();
    let mut results: Vec<Option<weft::Result<i32>>> = calls.iter().map(|_| None).collect();
    for &step in schedule {
        let (Step::Start(id) | Step::Resume(id)) = step;
        let id = id as usize;
        if let Step::Start(_) = step {
            calls[id] = Some(Box::pin(work.call_async(&shared, id as i32)));
        }
        if results[id].is_some() {
            continue; // it trapped before suspending
        }
        match poll_once(calls[id].as_mut().expect("started").as_mut()) {
            Poll::Ready(result) => results[id] = Some(result),
            Poll::Pending if matches!(step, Step::Resume(_)) => {
                panic!("call {id} still pending after its import was ready")
            }
            Poll::Pending => {}
        }
    }
    results.into_iter().map(Option::unwrap).collect()
}

/// All `count` calls started (and suspended) before any resumes, then resumed in order.
fn all_at_once(count: i32) -> Vec<Step> {
    (0..count)
        .map(Step::Start)
        .chain((0..count).map(Step::Resume))
        .collect()
}

/// `count` calls (a multiple of 5) in rounds of five, as an executor might interleave them:
/// at most four in flight, finishing out of order. With one shared `__stack_pointer` (frames
/// F bytes deep, from the round's base B): a, b, c start at B, B-F, B-2F; b returns and puts the
/// pointer back to B-F; d starts at B-F and e at B-2F, on top of c's suspended buffer; c, d, e
/// and a return, a last, leaving the pointer at B again. So the third call of every round
/// (id 5k + 2) reads e's bytes.
fn rounds(count: i32) -> Vec<Step> {
    use Step::{Resume, Start};
    (0..count / 5)
        .flat_map(|round| {
            let [a, b, c, d, e] = [0, 1, 2, 3, 4].map(|i| 5 * round + i);
            [
                Start(a),
                Start(b),
                Start(c),
                Resume(b),
                Start(d),
                Start(e),
                Resume(c),
                Resume(d),
                Resume(e),
                Resume(a),
            ]
        })
        .collect()
}

fn work(store: &mut Store<()>, instance: Instance) -> TypedFunc<i32, i32> {
    instance.get_typed_func(store, "work").unwrap()
}

#[test]
fn interleaved_calls_sharing_the_shadow_stack_overwrite_each_others_locals() {
    let (mut store, instance) = instance();
    let work = work(&mut store, instance);
    let results = run(store, work, &rounds(CALLS));
    for (id, result) in results.iter().enumerate() {
        let wrong = *result.as_ref().unwrap();
        if id % 5 == 2 {
            // All 4,096 bytes: e's pattern differs from c's everywhere.
            assert!(wrong > 4000, "call {id}: only {wrong} bytes overwritten");
        } else {
            assert_eq!(wrong, 0, "call {id}");
        }
    }
}

#[test]
fn calls_all_suspended_at_once_sharing_the_shadow_stack_run_out_of_it() {
    // Each suspended call keeps its frame on the one 64 KiB shadow stack, so after about 15 of
    // them the next runs off address 0 (the module is linked with --stack-first) and traps.
    let (mut store, instance) = instance();
    let work = work(&mut store, instance);
    let results = run(store, work, &all_at_once(CALLS));
    let first_trap = results
        .iter()
        .position(Result::is_err)
        .expect("some call ran out of shadow stack");
    assert!(
        (10..=16).contains(&first_trap),
        "first trap at call {first_trap}"
    );
    let error = results[first_trap].as_ref().unwrap_err();
    assert!(
        matches!(
            error,
            Error::Trap {
                trap: weft::Trap::MemoryOutOfBounds,
                ..
            }
        ),
        "{error}"
    );
    assert!(results[..first_trap].iter().all(|r| matches!(r, Ok(0))));
}

#[test]
fn interleaved_calls_with_a_shadow_stack_each_from_the_guest_allocator_keep_their_locals() {
    // The two schedules that break a shared shadow stack (the tests above).
    for schedule in [rounds(CALLS), all_at_once(CALLS)] {
        let (mut store, instance) = instance();
        instance
            .set_shadow_stack(&mut store, ShadowStack::new(guest_allocator()))
            .unwrap();
        let work = work(&mut store, instance);
        for (id, result) in run(store, work, &schedule).into_iter().enumerate() {
            assert_eq!(result.unwrap(), 0, "call {id} lost its buffer");
        }
    }
}

#[test]
fn shadow_stack_regions_from_the_guest_allocator_are_freed_when_calls_end() {
    let (mut store, instance) = instance();
    instance
        .set_shadow_stack(&mut store, ShadowStack::new(guest_allocator()))
        .unwrap();
    let alloc = instance
        .get_typed_func::<u32, u32>(&mut store, "stack_alloc")
        .unwrap();
    let free = instance
        .get_typed_func::<u32, ()>(&mut store, "stack_free")
        .unwrap();
    let work = work(&mut store, instance);
    let shared = SharedStore::new(store);
    // Two rounds of interleaved calls, the second cancelled while suspended: if their regions
    // were not freed, a probe allocation would land above all of them.
    let before = {
        let mut guard = shared.try_lock().unwrap();
        let probe = alloc.call(&mut *guard, REGION).unwrap();
        free.call(&mut *guard, probe).unwrap();
        probe
    };
    for round in 0..2 {
        let mut calls: Vec<_> = (0..20)
            .map(|id| Box::pin(work.call_async(&shared, id)))
            .collect();
        for call in &mut calls {
            assert!(poll_once(call.as_mut()).is_pending());
        }
        if round == 0 {
            for call in &mut calls {
                assert!(matches!(poll_once(call.as_mut()), Poll::Ready(Ok(0))));
            }
        }
        drop(calls);
    }
    let mut guard = shared.try_lock().unwrap();
    let after = alloc.call(&mut *guard, REGION).unwrap();
    assert_eq!(
        after, before,
        "the regions of finished and cancelled calls were freed"
    );
}

#[test]
fn interleaved_calls_with_shadow_stacks_from_a_host_arena_keep_their_locals() {
    let (mut store, instance) = instance();
    // The host reserves the arena in linear memory through the guest's allocator, once.
    let base = instance
        .get_typed_func::<u32, u32>(&mut store, "stack_alloc")
        .unwrap()
        .call(&mut store, CALLS as u32 * REGION + 16)
        .unwrap();
    let region = ShadowStackRegion::Arena {
        base: (base + 15) & !15,
        len: CALLS as u32 * REGION,
        slot_size: REGION,
    };
    // clang's stack pointer by index this time.
    let option = ShadowStack::new(region).with_pointer(StackPointerGlobal::Index(0));
    instance.set_shadow_stack(&mut store, option).unwrap();
    let work = work(&mut store, instance);
    for (id, result) in run(store, work, &all_at_once(CALLS))
        .into_iter()
        .enumerate()
    {
        assert_eq!(result.unwrap(), 0, "call {id} lost its buffer");
    }
}

/// A store whose calls take their shadow stacks from an arena of `slots` slots.
fn with_arena(slots: u32) -> (Store<()>, TypedFunc<i32, i32>) {
    let (mut store, instance) = instance();
    let base = instance
        .get_typed_func::<u32, u32>(&mut store, "stack_alloc")
        .unwrap()
        .call(&mut store, slots * REGION + 16)
        .unwrap();
    let region = ShadowStackRegion::Arena {
        base: (base + 15) & !15,
        len: slots * REGION,
        slot_size: REGION,
    };
    instance
        .set_shadow_stack(&mut store, ShadowStack::new(region))
        .unwrap();
    let work = work(&mut store, instance);
    (store, work)
}

#[test]
fn a_call_finding_every_arena_slot_taken_fails_and_later_calls_reuse_freed_slots() {
    let (store, work) = with_arena(2);
    let results = run(store, work, &all_at_once(3));
    assert!(matches!(results[0], Ok(0)));
    assert!(matches!(results[1], Ok(0)));
    assert!(
        matches!(results[2], Err(Error::ResourceLimit(_))),
        "{:?}",
        results[2].as_ref().err().map(ToString::to_string)
    );
    // At most four in flight: 1,000 calls through four slots, each given back and reused.
    let (store, work) = with_arena(4);
    for (id, result) in run(store, work, &rounds(CALLS)).into_iter().enumerate() {
        assert_eq!(result.unwrap(), 0, "call {id} lost its buffer");
    }
}

#[test]
fn a_shadow_stack_pointer_that_is_not_a_mutable_i32_global_of_the_instance_is_refused() {
    let (mut store, instance) = instance();
    for pointer in [
        // Not exported by this module.
        StackPointerGlobal::Export("__stack_pointer".into()),
        StackPointerGlobal::Named("no_such_global".into()),
        StackPointerGlobal::Index(7),
    ] {
        let option = ShadowStack::new(guest_allocator()).with_pointer(pointer.clone());
        assert!(
            instance.set_shadow_stack(&mut store, option).is_err(),
            "{pointer:?} accepted"
        );
    }
    let bad_allocator = ShadowStackRegion::GuestAllocator {
        alloc: "work".into(),
        free: "no_free".into(),
        size: REGION,
    };
    assert!(
        instance
            .set_shadow_stack(&mut store, ShadowStack::new(bad_allocator))
            .is_err()
    );
    let outside_memory = ShadowStackRegion::Arena {
        base: u32::MAX - 15,
        len: REGION,
        slot_size: REGION,
    };
    assert!(
        instance
            .set_shadow_stack(&mut store, ShadowStack::new(outside_memory))
            .is_err()
    );
    // Nothing was set by the refused calls: a good setting is still accepted, once.
    instance
        .set_shadow_stack(&mut store, ShadowStack::new(guest_allocator()))
        .unwrap();
    assert!(
        instance
            .set_shadow_stack(&mut store, ShadowStack::new(guest_allocator()))
            .is_err()
    );
}
