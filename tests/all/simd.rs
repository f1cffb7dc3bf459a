//! `v128` across the embedding API: typed and dynamic calls, host functions, globals, and SIMD
//! memory accesses in both memory modes. The instructions themselves are pinned by the spec
//! suite's `proposals/simd` scripts (`wast/tests/spec.rs`).

use weft::{
    Caller, Config, Engine, Error, Global, GlobalType, Instance, Linker, MemoryMode, Module,
    Mutability, Store, Trap, Val, ValType,
};

/// `i32x4` lanes as the `u128` the API carries (lane 0 in the low bits).
fn i32x4(lanes: [u32; 4]) -> u128 {
    lanes
        .iter()
        .rev()
        .fold(0, |acc, &lane| (acc << 32) | u128::from(lane))
}

#[test]
fn v128_crosses_typed_calls_and_typed_host_functions() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (import "host" "double" (func $double (param v128) (result v128)))
             (func (export "add_then_double") (param v128 v128) (result v128)
               (call $double (i32x4.add (local.get 0) (local.get 1)))))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, 0u32);
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap("host", "double", |mut caller: Caller<'_, u32>, v: u128| {
            *caller.data_mut() += 1;
            let lanes = v.to_le_bytes();
            let mut out = [0u8; 16];
            for (chunk, out) in lanes.chunks(4).zip(out.chunks_mut(4)) {
                let lane = u32::from_le_bytes(chunk.try_into().unwrap());
                out.copy_from_slice(&lane.wrapping_mul(2).to_le_bytes());
            }
            u128::from_le_bytes(out)
        })
        .unwrap();
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let typed = instance
        .get_typed_func::<(u128, u128), u128>(&mut store, "add_then_double")
        .unwrap();
    let result = typed
        .call(
            &mut store,
            (i32x4([1, 2, 3, u32::MAX]), i32x4([10, 20, 30, 2])),
        )
        .unwrap();
    assert_eq!(result, i32x4([22, 44, 66, 2]));
    assert_eq!(*store.data(), 1);

    // The same call through `Val`.
    let func = instance.get_func(&mut store, "add_then_double").unwrap();
    let mut results = [Val::V128(0)];
    func.call(
        &mut store,
        &[
            Val::V128(i32x4([1, 1, 1, 1])),
            Val::V128(i32x4([0, 1, 2, 3])),
        ],
        &mut results,
    )
    .unwrap();
    assert_eq!(results, [Val::V128(i32x4([2, 4, 6, 8]))]);
}

#[test]
fn v128_globals_are_shared_with_the_host() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (import "env" "g" (global $g (mut v128)))
             (global $k (export "k") v128 (v128.const i64x2 7 -1))
             (func (export "swap_halves")
               (global.set $g (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7
                 (global.get $g) (global.get $g)))))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let global = Global::new(
        &mut store,
        GlobalType::new(ValType::V128, Mutability::Var),
        Val::V128(0x1111_2222_3333_4444_5555_6666_7777_8888),
    )
    .unwrap();
    let instance = Instance::new(&mut store, &module, &[global.into()]).unwrap();
    let swap = instance
        .get_typed_func::<(), ()>(&mut store, "swap_halves")
        .unwrap();
    swap.call(&mut store, ()).unwrap();
    assert_eq!(
        global.get(&mut store),
        Val::V128(0x5555_6666_7777_8888_1111_2222_3333_4444)
    );
    let k = instance.get_global(&mut store, "k").unwrap();
    assert_eq!(
        k.get(&mut store),
        Val::V128((u128::from(u64::MAX) << 64) | 7)
    );
}

#[test]
fn v128_loads_and_stores_are_bounds_checked_in_both_memory_modes() {
    for mode in [MemoryMode::GuardPages, MemoryMode::ExplicitBounds] {
        let mut config = Config::new();
        config.memory_mode(mode);
        let engine = Engine::new(&config).unwrap();
        let module = Module::new(
            &engine,
            r#"(module
                 (memory 1)
                 (func (export "copy") (param i32 i32)
                   (v128.store (local.get 1) (v128.load (local.get 0))))
                 (func (export "lane") (param i32) (result i32)
                   (i32x4.extract_lane 3 (v128.load32_splat (local.get 0)))))"#,
        )
        .unwrap();
        let mut store = Store::new(&engine, ());
        let instance = Linker::new(&engine)
            .instantiate(&mut store, &module)
            .unwrap();
        let copy = instance
            .get_typed_func::<(i32, i32), ()>(&mut store, "copy")
            .unwrap();
        let lane = instance
            .get_typed_func::<i32, i32>(&mut store, "lane")
            .unwrap();

        // The last 16 bytes of the page are in bounds, one byte further is not.
        copy.call(&mut store, (65536 - 16, 3)).unwrap();
        assert_eq!(lane.call(&mut store, 65536 - 4).unwrap(), 0, "{mode:?}");
        for (src, dst) in [(65536 - 15, 0), (0, 65536 - 15), (-1, 0)] {
            match copy.call(&mut store, (src, dst)) {
                Err(Error::Trap {
                    trap: Trap::MemoryOutOfBounds,
                    ..
                }) => {}
                other => panic!("{mode:?}: copy({src}, {dst}) gave {other:?}"),
            }
        }
    }
}
