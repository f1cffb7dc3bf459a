//! 64-bit memories and tables (memory64, WebAssembly 3.0): addresses past 4 GiB of index trap
//! instead of being truncated, offsets near 2^64 trap instead of wrapping, `memory.grow` and
//! `table.grow` answer in i64, sizes and types through the API, and the pooling allocator
//! takes a 64-bit memory. Each memory test runs in both memory modes, whose 32-bit code
//! differs (guard pages or checks) while 64-bit accesses are always checked.

use weft::{
    Config, Engine, Error, InstanceAllocationStrategy, Linker, Memory, MemoryMode, MemoryType,
    Module, PoolingAllocationConfig, Store, Trap, Val, ValType,
};

const PAGE: u64 = 65536;

fn engines() -> [Engine; 2] {
    [MemoryMode::GuardPages, MemoryMode::ExplicitBounds].map(|mode| {
        let mut config = Config::new();
        config.memory_mode(mode);
        Engine::new(&config).unwrap()
    })
}

/// One page (at most 3) of 64-bit memory with "weft" at 16, and exports that load and
/// store through it (`load_far` with an offset of 2^64 - 16), grow it and report its size.
const MEMORY64: &str = r#"(module
    (memory (export "memory") i64 1 3)
    (data (i64.const 16) "weft")
    (func (export "load") (param i64) (result i32) (i32.load (local.get 0)))
    (func (export "load_far") (param i64) (result i32)
      (i32.load offset=0xfffffffffffffff0 (local.get 0)))
    (func (export "store") (param i64 i32) (i32.store (local.get 0) (local.get 1)))
    (func (export "grow") (param i64) (result i64) (memory.grow (local.get 0)))
    (func (export "size") (result i64) (memory.size))
    (func (export "fill") (param i64 i64) (memory.fill (local.get 0) (i32.const 7) (local.get 1))))"#;

fn trap_of<T: std::fmt::Debug>(result: weft::Result<T>) -> Trap {
    match result {
        Err(e) => e.trap().unwrap_or_else(|| panic!("not a trap: {e}")),
        Ok(v) => panic!("expected a trap, got {v:?}"),
    }
}

#[test]
fn load_past_4_gib_of_index_traps_instead_of_truncating() {
    for engine in engines() {
        let module = Module::new(&engine, MEMORY64).unwrap();
        let mut store = Store::new(&engine, ());
        let instance = Linker::new(&engine)
            .instantiate(&mut store, &module)
            .unwrap();
        let load = instance
            .get_typed_func::<u64, i32>(&mut store, "load")
            .unwrap();
        let weft = i32::from_le_bytes(*b"weft");
        assert_eq!(load.call(&mut store, 16).unwrap(), weft);
        // Truncated to 32 bits, 2^32 + 16 would be 16.
        for address in [(1 << 32) + 16, 1 << 32, PAGE - 3, PAGE, u64::MAX] {
            assert_eq!(
                trap_of(load.call(&mut store, address)),
                Trap::MemoryOutOfBounds,
                "{address:#x}"
            );
        }
        assert_eq!(load.call(&mut store, PAGE - 4).unwrap(), 0);
    }
}

#[test]
fn offset_near_2_pow_64_traps_instead_of_wrapping() {
    for engine in engines() {
        let module = Module::new(&engine, MEMORY64).unwrap();
        let mut store = Store::new(&engine, ());
        let instance = Linker::new(&engine)
            .instantiate(&mut store, &module)
            .unwrap();
        let load_far = instance
            .get_typed_func::<u64, i32>(&mut store, "load_far")
            .unwrap();
        // Address + offset wraps to 16 (where "weft" is) for 0x20, to 0 for 0x10; at
        // u64::MAX the index alone is out of bounds.
        for address in [0x20, 0x10, 0, u64::MAX] {
            assert_eq!(
                trap_of(load_far.call(&mut store, address)),
                Trap::MemoryOutOfBounds,
                "{address:#x}"
            );
        }
    }
}

#[test]
fn memory_grow_on_a_64_bit_memory_answers_in_i64_and_the_api_sees_it() {
    for engine in engines() {
        let module = Module::new(&engine, MEMORY64).unwrap();
        let mut store = Store::new(&engine, ());
        let instance = Linker::new(&engine)
            .instantiate(&mut store, &module)
            .unwrap();
        let grow = instance
            .get_typed_func::<u64, i64>(&mut store, "grow")
            .unwrap();
        let size = instance
            .get_typed_func::<(), i64>(&mut store, "size")
            .unwrap();
        let load = instance
            .get_typed_func::<u64, i32>(&mut store, "load")
            .unwrap();
        let memory = instance.get_memory(&mut store, "memory").unwrap();
        assert_eq!(memory.ty(&store), MemoryType::new64(1, Some(3)));
        assert!(memory.is_64(&store));

        assert_eq!(grow.call(&mut store, 1).unwrap(), 1);
        // Past the maximum, and a delta that does not fit 32 bits: -1, nothing changes.
        assert_eq!(grow.call(&mut store, 2).unwrap(), -1);
        assert_eq!(grow.call(&mut store, 1 << 32).unwrap(), -1);
        assert_eq!(grow.call(&mut store, u64::MAX).unwrap(), -1);
        assert_eq!(size.call(&mut store, ()).unwrap(), 2);
        assert_eq!(memory.size(&store), 2);
        assert_eq!(memory.data_size(&store), 2 * PAGE as usize);

        // The grown page is there for the host and for Wasm, and zero.
        assert_eq!(load.call(&mut store, PAGE + 8).unwrap(), 0);
        memory
            .write(&mut store, PAGE as usize + 8, &7i32.to_le_bytes())
            .unwrap();
        assert_eq!(load.call(&mut store, PAGE + 8).unwrap(), 7);
        assert_eq!(
            trap_of(load.call(&mut store, 2 * PAGE - 3)),
            Trap::MemoryOutOfBounds
        );
        assert_eq!(memory.grow(&mut store, 1).unwrap(), 2);
        assert_eq!(load.call(&mut store, 2 * PAGE).unwrap(), 0);
        assert!(memory.grow(&mut store, 1).is_err());
    }
}

#[test]
fn bulk_operations_take_64_bit_operands_whole() {
    for engine in engines() {
        let module = Module::new(&engine, MEMORY64).unwrap();
        let mut store = Store::new(&engine, ());
        let instance = Linker::new(&engine)
            .instantiate(&mut store, &module)
            .unwrap();
        let fill = instance
            .get_typed_func::<(u64, u64), ()>(&mut store, "fill")
            .unwrap();
        let memory = instance.get_memory(&mut store, "memory").unwrap();
        fill.call(&mut store, (32, 4)).unwrap();
        assert_eq!(&memory.data(&store)[32..37], &[7, 7, 7, 7, 0]);
        // Truncated, these would be in bounds (a destination of 32, a length of 1).
        for (dst, len) in [((1 << 32) + 32, 1), (32, (1 << 32) + 1), (u64::MAX, 2)] {
            assert_eq!(
                trap_of(fill.call(&mut store, (dst, len))),
                Trap::MemoryOutOfBounds,
                "fill {dst:#x} {len:#x}"
            );
        }
        assert_eq!(memory.data(&store)[38], 0);
    }
}

#[test]
fn copy_between_a_32_and_a_64_bit_memory() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
            (memory $small 1)
            (memory $big (export "big") i64 1)
            (data (memory $small) (i32.const 8) "copied")
            ;; destination i64, source i32, length i32: the smaller index type.
            (func (export "copy") (param i64 i32 i32)
              (memory.copy $big $small (local.get 0) (local.get 1) (local.get 2))))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = Linker::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let copy = instance
        .get_typed_func::<(u64, i32, i32), ()>(&mut store, "copy")
        .unwrap();
    let big = instance.get_memory(&mut store, "big").unwrap();
    copy.call(&mut store, (100, 8, 6)).unwrap();
    assert_eq!(&big.data(&store)[100..106], b"copied");
    assert_eq!(
        trap_of(copy.call(&mut store, ((1 << 32) + 100, 8, 6))),
        Trap::MemoryOutOfBounds
    );
}

#[test]
fn table64_indices_are_i64_through_call_indirect_and_table_operations() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
            (type $f (func (result i32)))
            (table $t (export "table") i64 2 10 funcref)
            (elem (table $t) (i64.const 1) func $seven)
            (func $seven (result i32) (i32.const 7))
            (func (export "call") (param i64) (result i32)
              (call_indirect $t (type $f) (local.get 0)))
            (func (export "size") (result i64) (table.size $t))
            (func (export "grow") (param i64) (result i64)
              (table.grow $t (ref.null func) (local.get 0)))
            (func (export "copy") (param i64 i64 i64)
              (table.copy $t $t (local.get 0) (local.get 1) (local.get 2)))
            (func (export "is_null") (param i64) (result i32)
              (ref.is_null (table.get $t (local.get 0)))))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = Linker::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let call = instance
        .get_typed_func::<u64, i32>(&mut store, "call")
        .unwrap();
    let size = instance
        .get_typed_func::<(), i64>(&mut store, "size")
        .unwrap();
    let grow = instance
        .get_typed_func::<u64, i64>(&mut store, "grow")
        .unwrap();
    let copy = instance
        .get_typed_func::<(u64, u64, u64), ()>(&mut store, "copy")
        .unwrap();
    let is_null = instance
        .get_typed_func::<u64, i32>(&mut store, "is_null")
        .unwrap();
    assert_eq!(call.call(&mut store, 1).unwrap(), 7);
    assert_eq!(
        trap_of(call.call(&mut store, 0)),
        Trap::UninitializedElement
    );
    // Truncated to 32 bits, 2^32 + 1 would be element 1.
    assert_eq!(
        trap_of(call.call(&mut store, (1 << 32) + 1)),
        Trap::UndefinedElement
    );
    assert_eq!(
        trap_of(is_null.call(&mut store, (1 << 32) + 1)),
        Trap::TableOutOfBounds
    );
    assert_eq!(size.call(&mut store, ()).unwrap(), 2);
    assert_eq!(grow.call(&mut store, 3).unwrap(), 2);
    assert_eq!(grow.call(&mut store, 1 << 32).unwrap(), -1);
    assert_eq!(size.call(&mut store, ()).unwrap(), 5);
    copy.call(&mut store, (4, 1, 1)).unwrap();
    assert_eq!(call.call(&mut store, 4).unwrap(), 7);
    assert_eq!(
        trap_of(copy.call(&mut store, ((1 << 32) + 4, 1, 1))),
        Trap::TableOutOfBounds
    );

    let table = instance.get_table(&mut store, "table").unwrap();
    let ty = table.ty(&store);
    assert!(ty.is_64);
    assert_eq!((ty.minimum, ty.maximum), (5, Some(10)));
    assert_eq!(table.size(&store), 5);
    assert!(matches!(
        table.get(&mut store, 4),
        Some(Val::FuncRef(Some(_)))
    ));
    assert!(table.get(&mut store, 1 << 32).is_none());
}

#[test]
fn imports_match_only_the_same_index_type() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module (import "host" "memory" (memory i64 1)))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let mut linker = Linker::new(&engine);
    let memory32 = Memory::new(&mut store, MemoryType::new(1, None)).unwrap();
    linker
        .define(&mut store, "host", "memory", memory32)
        .unwrap();
    let error = linker.instantiate(&mut store, &module).unwrap_err();
    assert!(matches!(error, Error::IncompatibleImport { .. }), "{error}");

    let memory64 = Memory::new(&mut store, MemoryType::new64(1, None)).unwrap();
    let mut linker = Linker::new(&engine);
    linker
        .define(&mut store, "host", "memory", memory64)
        .unwrap();
    linker.instantiate(&mut store, &module).unwrap();
    assert_eq!(memory64.ty(&store), MemoryType::new64(1, None));

    let table = weft::TableType::new64(ValType::FUNCREF, 1, None);
    let table = weft::Table::new(&mut store, table, Val::FuncRef(None)).unwrap();
    assert!(table.ty(&store).is_64);
}

#[test]
fn memory64_switched_off_refuses_64_bit_memories() {
    let mut config = Config::new();
    config.wasm_memory64(false);
    let engine = Engine::new(&config).unwrap();
    assert!(Module::new(&engine, MEMORY64).is_err());
    assert!(Module::new(&engine, "(module (memory 1))").is_ok());
}

#[test]
fn pooled_64_bit_memory_works_and_stops_growing_at_its_slot() {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_memories(2)
        .total_tables(2)
        .total_core_instances(2)
        .max_memory_size(2 * PAGE as usize);
    for mode in [MemoryMode::GuardPages, MemoryMode::ExplicitBounds] {
        let mut config = Config::new();
        config
            .memory_mode(mode)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).unwrap();
        let module = Module::new(&engine, MEMORY64).unwrap();
        let mut store = Store::new(&engine, ());
        let instance = Linker::new(&engine)
            .instantiate(&mut store, &module)
            .unwrap();
        let load = instance
            .get_typed_func::<u64, i32>(&mut store, "load")
            .unwrap();
        let grow = instance
            .get_typed_func::<u64, i64>(&mut store, "grow")
            .unwrap();
        assert_eq!(
            load.call(&mut store, 16).unwrap(),
            i32::from_le_bytes(*b"weft")
        );
        assert_eq!(
            trap_of(load.call(&mut store, (1 << 32) + 16)),
            Trap::MemoryOutOfBounds
        );
        // The module allows 3 pages; the slot holds 2.
        assert_eq!(grow.call(&mut store, 1).unwrap(), 1);
        assert_eq!(grow.call(&mut store, 1).unwrap(), -1);
        assert_eq!(load.call(&mut store, PAGE + 4).unwrap(), 0);
    }
}
