//! Memory layout settings (`Config::memory_reservation`, `memory_guard_size`) and the pooling
//! instance allocator: which accesses are checked, slots reused zeroed and with their data
//! segments, typed errors at every pool limit with the engine still usable, and mappings that
//! stay flat with many pooled instances.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use weft::{
    Caller, Config, Engine, Error, Instance, InstanceAllocationStrategy, Linker, MemoryMode,
    Module, PoolingAllocationConfig, SharedStore, Store, Trap,
};

use crate::common;

const PAGE: u64 = 65536;

/// A module with one page of memory (growing to `max_pages`), a data segment "weft" at 16,
/// and exports to load, store and grow it.
fn memory_module(engine: &Engine, max_pages: u32) -> Module {
    Module::new(
        engine,
        format!(
            r#"(module
                 (memory (export "memory") 1 {max_pages})
                 (data (i32.const 16) "weft")
                 (func (export "load") (param i32) (result i32) (i32.load8_u (local.get 0)))
                 (func (export "load_far") (param i32) (result i32)
                   (i32.load8_u offset=4294967295 (local.get 0)))
                 (func (export "store") (param i32 i32) (i32.store8 (local.get 0) (local.get 1)))
                 (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))"#
        ),
    )
    .unwrap()
}

fn trap_of(result: weft::Result<i32>) -> Trap {
    match result {
        Err(e) => e.trap().unwrap_or_else(|| panic!("not a trap: {e}")),
        Ok(v) => panic!("expected a trap, got {v}"),
    }
}

fn pooled(reservation: u64, pool: &PoolingAllocationConfig) -> Engine {
    let mut config = Config::new();
    config
        .memory_reservation(reservation)
        .memory_guard_size(0)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(*pool));
    Engine::new(&config).unwrap()
}

fn small_pool(instances: u32) -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_memories(instances)
        .total_tables(instances)
        .total_core_instances(instances)
        .max_memory_size(2 * PAGE as usize)
        .table_elements(100);
    pool
}

#[test]
fn memory_mode_is_a_shorthand_for_reservation_and_guard() {
    let mut config = Config::new();
    assert_eq!(config.get_memory_reservation(), 4 << 30);
    assert_eq!(config.get_memory_guard_size(), (4 << 30) + PAGE);
    config.memory_mode(MemoryMode::ExplicitBounds);
    assert_eq!(config.get_memory_reservation(), 0);
    assert_eq!(config.get_memory_guard_size(), 0);
    // A guard too small for the largest offset leaves some accesses checked.
    config.memory_reservation(4 << 30).memory_guard_size(PAGE);
    assert_eq!(config.get_memory_mode(), MemoryMode::ExplicitBounds);
    config.memory_guard_size((4 << 30) + PAGE);
    assert_eq!(config.get_memory_mode(), MemoryMode::GuardPages);
    config.memory_reservation(2 << 40);
    let Err(Error::InvalidConfig(message)) = Engine::new(&config) else {
        panic!("a 2 TiB reservation was accepted");
    };
    assert!(message.contains("memory_reservation"), "{message}");
}

/// With a reservation below 4 GiB every access is checked against the length, and growing
/// past the reservation moves the memory with its contents.
#[test]
fn small_reservation_checks_accesses_and_moves_memory_that_grows_past_it() {
    for growth in [0, 4 * PAGE] {
        let mut config = Config::new();
        config
            .memory_reservation(PAGE)
            .memory_guard_size(PAGE)
            .memory_reservation_for_growth(growth);
        let engine = Engine::new(&config).unwrap();
        let module = memory_module(&engine, 8);
        let mut store = Store::new(&engine, ());
        let instance = Instance::new(&mut store, &module, &[]).unwrap();
        let load = instance
            .get_typed_func::<i32, i32>(&mut store, "load")
            .unwrap();
        let store8 = instance
            .get_typed_func::<(i32, i32), ()>(&mut store, "store")
            .unwrap();
        let grow = instance
            .get_typed_func::<i32, i32>(&mut store, "grow")
            .unwrap();
        assert_eq!(load.call(&mut store, 16).unwrap(), i32::from(b'w'));
        assert_eq!(
            trap_of(load.call(&mut store, PAGE as i32)),
            Trap::MemoryOutOfBounds
        );
        for pages in 1..8 {
            assert_eq!(grow.call(&mut store, 1).unwrap(), pages);
            store8
                .call(&mut store, (pages * PAGE as i32, pages))
                .unwrap();
        }
        assert_eq!(grow.call(&mut store, 1).unwrap(), -1, "past the maximum");
        assert_eq!(load.call(&mut store, 16).unwrap(), i32::from(b'w'));
        for pages in 1..8 {
            assert_eq!(load.call(&mut store, pages * PAGE as i32).unwrap(), pages);
        }
        assert_eq!(
            trap_of(load.call(&mut store, 8 * PAGE as i32)),
            Trap::MemoryOutOfBounds
        );
    }
}

/// A fixed-base memory whose guard covers small offsets only: those go unchecked (the guard
/// faults), a huge static offset is checked, and both trap alike.
#[test]
fn guard_smaller_than_the_largest_offset_checks_only_the_accesses_it_cannot_cover() {
    let mut config = Config::new();
    config.memory_reservation(4 << 30).memory_guard_size(PAGE);
    let engine = Engine::new(&config).unwrap();
    let module = memory_module(&engine, 1);
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[]).unwrap();
    let load = instance
        .get_typed_func::<i32, i32>(&mut store, "load")
        .unwrap();
    let load_far = instance
        .get_typed_func::<i32, i32>(&mut store, "load_far")
        .unwrap();
    assert_eq!(load.call(&mut store, 16).unwrap(), i32::from(b'w'));
    assert_eq!(trap_of(load.call(&mut store, -1)), Trap::MemoryOutOfBounds);
    assert_eq!(
        trap_of(load_far.call(&mut store, 0)),
        Trap::MemoryOutOfBounds
    );
    assert_eq!(
        trap_of(load_far.call(&mut store, -1)),
        Trap::MemoryOutOfBounds
    );
}

/// A slot reused after an instance wrote its memory (and grew it) starts over: zero but for
/// the new instance's data segment, and as small as the new memory. Both layouts (slots of
/// fixed-base memories, with guards, and of checked ones), with slots given back to the system
/// or kept resident (zeroed by writing, here half of what the memory reached).
#[test]
fn reused_slot_starts_zeroed_with_its_data_segments() {
    for (reservation, keep_resident) in [(PAGE, 0), (PAGE, PAGE), (4 << 30, 0), (4 << 30, PAGE)] {
        // Fixed-base slots are 8 GiB each: one is enough.
        let mut pool = small_pool(1);
        pool.max_memory_size(2 * PAGE as usize)
            .linear_memory_keep_resident(keep_resident as usize);
        let mut config = Config::new();
        config
            .memory_reservation(reservation)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).unwrap();
        let module = memory_module(&engine, 4);
        for round in 0..3 {
            let mut store = Store::new(&engine, ());
            let instance = Instance::new(&mut store, &module, &[]).unwrap();
            let load = instance
                .get_typed_func::<i32, i32>(&mut store, "load")
                .unwrap();
            let store8 = instance
                .get_typed_func::<(i32, i32), ()>(&mut store, "store")
                .unwrap();
            let grow = instance
                .get_typed_func::<i32, i32>(&mut store, "grow")
                .unwrap();
            let memory = instance.get_memory(&mut store, "memory").unwrap();
            assert_eq!(memory.size(&store), 1, "round {round}");
            let data = memory.data(&store);
            assert_eq!(&data[16..20], b"weft", "round {round}");
            assert!(
                data[..16].iter().chain(&data[20..]).all(|&b| b == 0),
                "round {round}: a byte of the last tenant is left"
            );
            assert_eq!(
                trap_of(load.call(&mut store, PAGE as i32)),
                Trap::MemoryOutOfBounds,
                "round {round}"
            );
            // Dirty the page, grow into the slot's second page and dirty that too.
            store8.call(&mut store, (16, 0x55)).unwrap();
            store8.call(&mut store, (100, 0x66)).unwrap();
            assert_eq!(grow.call(&mut store, 1).unwrap(), 1);
            store8.call(&mut store, (PAGE as i32 + 5, 0x77)).unwrap();
            assert_eq!(load.call(&mut store, PAGE as i32 + 5).unwrap(), 0x77);
            // The slot holds two pages: the module's maximum of 4 is out of reach.
            assert_eq!(grow.call(&mut store, 1).unwrap(), -1);
        }
    }
}

/// What a tenant of a pooled slot leaves behind is invisible to the next one: a memory
/// written here and there (the first and last byte of a 4 KiB chunk, the middle of another, the
/// slot's last byte) reads as zero but for the next module's data segment, with the slot kept
/// resident in whole, in part (a length not a multiple of 8), or given back; a table set and
/// grown comes back at its declared size with only its element segment; a global set comes
/// back at its initial value.
#[test]
fn reused_slots_show_nothing_of_the_last_tenant() {
    let module_text = r#"(module
        (memory (export "memory") 1 1)
        (data (i32.const 16) "weft")
        (table $t 2 10 funcref)
        (elem (i32.const 1) $f)
        (global $g (mut i32) (i32.const 7))
        (func $f)
        (func (export "store") (param i32 i32) (i32.store8 (local.get 0) (local.get 1)))
        (func (export "table_set") (param i32) (table.set $t (local.get 0) (ref.func $f)))
        (func (export "table_grow") (result i32) (table.grow $t (ref.func $f) (i32.const 3)))
        (func (export "table_size") (result i32) (table.size $t))
        (func (export "is_null") (param i32) (result i32)
          (ref.is_null (table.get $t (local.get 0))))
        (func (export "global_set") (param i32) (global.set $g (local.get 0)))
        (func (export "global_get") (result i32) (global.get $g)))"#;
    for keep_resident in [PAGE as usize, 5003, 0] {
        let mut pool = small_pool(1);
        pool.max_memory_size(PAGE as usize)
            .linear_memory_keep_resident(keep_resident);
        let engine = pooled(PAGE, &pool);
        let module = Module::new(&engine, module_text).unwrap();
        for round in 0..3 {
            let what = format!("keep_resident {keep_resident}, round {round}");
            let mut store = Store::new(&engine, ());
            let instance = Instance::new(&mut store, &module, &[]).unwrap();
            let memory = instance.get_memory(&mut store, "memory").unwrap();
            let data = memory.data(&store);
            assert_eq!(&data[16..20], b"weft", "{what}");
            let stale = data[..16]
                .iter()
                .chain(&data[20..])
                .position(|&b| b != 0)
                .map(|i| if i < 16 { i } else { i + 4 });
            assert_eq!(stale, None, "{what}: a byte of the last tenant is left");
            let call_i32 = |store: &mut Store<()>, name: &str, arg: Option<i32>| -> i32 {
                match arg {
                    Some(arg) => instance
                        .get_typed_func::<i32, i32>(&mut *store, name)
                        .unwrap()
                        .call(&mut *store, arg)
                        .unwrap(),
                    None => instance
                        .get_typed_func::<(), i32>(&mut *store, name)
                        .unwrap()
                        .call(&mut *store, ())
                        .unwrap(),
                }
            };
            assert_eq!(call_i32(&mut store, "table_size", None), 2, "{what}");
            assert_eq!(call_i32(&mut store, "is_null", Some(0)), 1, "{what}");
            assert_eq!(call_i32(&mut store, "is_null", Some(1)), 0, "{what}");
            assert_eq!(call_i32(&mut store, "global_get", None), 7, "{what}");

            // Dirty everything the next tenant could see.
            let store8 = instance
                .get_typed_func::<(i32, i32), ()>(&mut store, "store")
                .unwrap();
            for offset in [0, 4095, 4096, 30_001, 5002, 5003, 65_535] {
                store8.call(&mut store, (offset, 0xa5)).unwrap();
            }
            instance
                .get_typed_func::<i32, ()>(&mut store, "table_set")
                .unwrap()
                .call(&mut store, 0)
                .unwrap();
            assert_eq!(call_i32(&mut store, "table_grow", None), 2, "{what}");
            assert_eq!(call_i32(&mut store, "is_null", Some(4)), 0, "{what}");
            instance
                .get_typed_func::<i32, ()>(&mut store, "global_set")
                .unwrap()
                .call(&mut store, 99)
                .unwrap();
        }
    }
}

/// Each pool limit is an `Error::ResourceLimit` naming the setting, at instantiation, and
/// the engine goes on serving instances once slots are free again.
#[test]
fn exhausting_the_pool_is_a_resource_limit_and_the_engine_stays_usable() {
    // Instances run out first.
    let engine = pooled(PAGE, &small_pool(3));
    let module = memory_module(&engine, 2);
    let mut stores: Vec<Store<()>> = (0..3)
        .map(|_| {
            let mut store = Store::new(&engine, ());
            Instance::new(&mut store, &module, &[]).unwrap();
            store
        })
        .collect();
    let mut extra = Store::new(&engine, ());
    match Instance::new(&mut extra, &module, &[]) {
        Err(Error::ResourceLimit(message)) => {
            assert!(message.contains("total_core_instances"), "{message}")
        }
        other => panic!("a fourth instance in a pool of three: {:?}", other.err()),
    }
    // The refused store is still usable once a slot is free.
    stores.pop();
    let instance = Instance::new(&mut extra, &module, &[]).unwrap();
    let load = instance
        .get_typed_func::<i32, i32>(&mut extra, "load")
        .unwrap();
    assert_eq!(load.call(&mut extra, 17).unwrap(), i32::from(b'e'));
    drop(stores);

    // Memories run out before instances (a module without memory still instantiates).
    let mut pool = small_pool(3);
    pool.total_memories(1);
    let engine = pooled(PAGE, &pool);
    let module = memory_module(&engine, 2);
    let mut first = Store::new(&engine, ());
    Instance::new(&mut first, &module, &[]).unwrap();
    let mut second = Store::new(&engine, ());
    match Instance::new(&mut second, &module, &[]) {
        Err(Error::ResourceLimit(message)) => {
            assert!(message.contains("total_memories"), "{message}")
        }
        other => panic!("a second memory in a pool of one: {:?}", other.err()),
    }
    let plain = Module::new(
        &engine,
        "(module (func (export \"f\") (result i32) i32.const 7))",
    )
    .unwrap();
    let instance = Instance::new(&mut second, &plain, &[]).unwrap();
    let f = instance
        .get_typed_func::<(), i32>(&mut second, "f")
        .unwrap();
    assert_eq!(f.call(&mut second, ()).unwrap(), 7);
    drop(first);
    Instance::new(&mut second, &module, &[]).unwrap();
}

/// What does not fit a slot, or more memories or tables than the pool allows per module, is
/// refused at instantiation with the setting named.
#[test]
fn module_exceeding_the_pool_slots_is_refused_at_instantiation() {
    let engine = pooled(PAGE, &small_pool(4));
    let refusal = |wat: &str| {
        let module = Module::new(&engine, wat).unwrap();
        let mut store = Store::new(&engine, ());
        match Instance::new(&mut store, &module, &[]) {
            Err(Error::ResourceLimit(message)) => message,
            other => panic!("{wat} was instantiated: {:?}", other.err()),
        }
    };
    let message = refusal("(module (memory 3))");
    assert!(message.contains("max_memory_size"), "{message}");
    let message = refusal("(module (table 101 funcref))");
    assert!(message.contains("table_elements"), "{message}");
    let message = refusal("(module (memory 1) (memory 1))");
    assert!(message.contains("max_memories_per_module"), "{message}");
    let message = refusal("(module (table 1 funcref) (table 1 funcref))");
    assert!(message.contains("max_tables_per_module"), "{message}");
    // None of the refusals kept a slot: the pool of four still serves four instances.
    let module = memory_module(&engine, 2);
    let _stores: Vec<Store<()>> = (0..4)
        .map(|_| {
            let mut store = Store::new(&engine, ());
            Instance::new(&mut store, &module, &[]).unwrap();
            store
        })
        .collect();
}

/// A future that is ready once `flag` is set.
struct Released(Arc<AtomicBool>);

impl Future for Released {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

type Call = Pin<Box<dyn Future<Output = weft::Result<i32>>>>;

/// Many stores, each with its own pooled instance (a 1-page memory) and a promising call
/// suspended in it: instantiating maps nothing, so mappings grow only by what the calls'
/// stacks cost (nothing with guards installed by `madvise`, two each where they cannot be,
/// as under qemu-user); every call resumes with its own memory's result; and once the stores
/// are dropped the same count instantiates again from the same slots. In a child process, so
/// that no other test maps meanwhile.
#[test]
fn many_pooled_instances_with_suspended_calls_keep_mappings_flat() {
    if !common::in_own_process(
        "pooling::many_pooled_instances_with_suspended_calls_keep_mappings_flat",
        "WEFT_TEST_POOL_MAPPINGS_CHILD",
    ) {
        return;
    }
    let count: usize = if cfg!(target_arch = "aarch64") {
        1_000
    } else {
        2_000
    };
    let mut pool = small_pool(count as u32 + 1);
    pool.max_memory_size(PAGE as usize);
    let mut config = Config::new();
    config
        .memory_reservation(PAGE)
        .memory_guard_size(0)
        .max_async_stacks(count + 64)
        .async_stack_size(256 << 10)
        .max_wasm_stack(128 << 10)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let engine = Engine::new(&config).unwrap();
    let module = Module::new(
        &engine,
        r#"(module
             (import "env" "wait" (func $wait (param i32) (result i32)))
             (memory 1 1)
             (data (i32.const 8) "\2a")
             (func (export "run") (param i32) (result i32)
               (i32.store (i32.const 0) (local.get 0))
               (drop (call $wait (local.get 0)))
               (i32.add (i32.load (i32.const 0)) (i32.load8_u (i32.const 8)))))"#,
    )
    .unwrap();
    let released = Arc::new(AtomicBool::new(false));
    let mut linker = Linker::new(&engine);
    let flag = released.clone();
    linker
        .func_wrap_async("env", "wait", move |_: Caller<'_, ()>, x: i32| {
            let released = Released(flag.clone());
            async move {
                released.await;
                x
            }
        })
        .unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    let start = |i: usize, cx: &mut Context<'_>| -> Call {
        let store = SharedStore::new(Store::new(&engine, ()));
        let run = {
            let mut guard = store.try_lock().unwrap();
            let instance = linker.instantiate(&mut *guard, &module).unwrap();
            instance
                .get_typed_func::<i32, i32>(&mut *guard, "run")
                .unwrap()
        };
        let mut call: Call = Box::pin(run.call_async(store, i as i32));
        assert!(call.as_mut().poll(cx).is_pending(), "call {i}");
        call
    };
    // Warm up: code, trampolines, the signal stack, the first slab of stacks.
    drop(start(0, &mut cx));

    for round in 0..2 {
        released.store(false, Ordering::Release);
        let before = common::mappings();
        let mut held: Vec<Call> = (0..count).map(|i| start(i, &mut cx)).collect();
        let per_call = (common::mappings() - before) as f64 / count as f64;
        println!("round {round}: {count} pooled instances: {per_call:.4} mappings each");
        let allowed = match weft_arch::guard_kind() {
            weft_arch::GuardKind::Installed => 0.01,
            weft_arch::GuardKind::Protected => 2.01,
        };
        assert!(
            per_call <= allowed,
            "{per_call} mappings per pooled instance"
        );
        released.store(true, Ordering::Release);
        for (i, call) in held.iter_mut().enumerate() {
            match call.as_mut().poll(&mut cx) {
                Poll::Ready(Ok(result)) => assert_eq!(result, i as i32 + 42, "call {i}"),
                other => panic!(
                    "call {i}: {:?}",
                    other.map(|r| r.map_err(|e| e.to_string()))
                ),
            }
        }
    }
}
