//! The embedding API: calls, host functions, traps and their backtraces, imports and exports.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use weft::{
    Caller, Config, Engine, Error, Extern, Func, FuncType, Global, GlobalType, Instance, Linker,
    MemoryMode, Module, Mutability, Store, Trap, Val, ValType,
};

fn instantiate(wat: &str) -> (Store<()>, Instance) {
    let engine = Engine::default();
    let module = Module::new(&engine, wat).expect("module compiles");
    let mut store = Store::new(&engine, ());
    let instance = Linker::new(&engine)
        .instantiate(&mut store, &module)
        .expect("module instantiates");
    (store, instance)
}

const TRAPS: &str = r#"
(module $traps
  (memory 1)
  (func $load (param i32) (result i32) (i32.load (local.get 0)))
  (func $via (export "load") (param i32) (result i32) (call $load (local.get 0)))
  (func (export "div") (param i32 i32) (result i32) (i32.div_s (local.get 0) (local.get 1)))
  (func (export "unreachable") unreachable)
  (func $rec (export "recurse") (param i32) (result i32)
    (i32.add (call $rec (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
  (func (export "depth") (param i32) (result i32)
    (if (result i32) (i32.eqz (local.get 0)) (then (i32.const 0))
      (else (i32.add (i32.const 1) (call 5 (i32.sub (local.get 0) (i32.const 1))))))))
"#;

#[test]
fn out_of_bounds_load_is_a_trap_with_named_backtrace() {
    let (mut store, instance) = instantiate(TRAPS);
    let load = instance
        .get_typed_func::<i32, i32>(&mut store, "load")
        .unwrap();
    let error = load.call(&mut store, 65536).unwrap_err();
    assert_eq!(error.trap(), Some(Trap::MemoryOutOfBounds));
    assert_eq!(error.to_string(), "wasm trap: out of bounds memory access");
    let frames = &error.backtrace().unwrap().frames;
    let names: Vec<_> = frames.iter().map(|f| f.func_name.as_deref()).collect();
    assert_eq!(names, [Some("load"), Some("via")]);
    assert_eq!(frames[0].module_name.as_deref(), Some("traps"));
    assert!(frames.iter().all(|f| f.module_offset.is_some()));
    // The last byte in bounds still loads.
    assert_eq!(load.call(&mut store, 65532).unwrap(), 0);
}

#[test]
fn arithmetic_traps_have_the_spec_messages() {
    let (mut store, instance) = instantiate(TRAPS);
    let div = instance
        .get_typed_func::<(i32, i32), i32>(&mut store, "div")
        .unwrap();
    assert_eq!(
        div.call(&mut store, (1, 0)).unwrap_err().trap(),
        Some(Trap::IntegerDivisionByZero)
    );
    assert_eq!(
        div.call(&mut store, (i32::MIN, -1)).unwrap_err().trap(),
        Some(Trap::IntegerOverflow)
    );
    let unreachable = instance
        .get_typed_func::<(), ()>(&mut store, "unreachable")
        .unwrap();
    assert_eq!(
        unreachable.call(&mut store, ()).unwrap_err().to_string(),
        "wasm trap: unreachable"
    );
}

#[test]
fn stack_overflow_in_deep_recursion_is_a_trap_and_the_store_stays_usable() {
    let (mut store, instance) = instantiate(TRAPS);
    let recurse = instance
        .get_typed_func::<i32, i32>(&mut store, "recurse")
        .unwrap();
    let depth = instance
        .get_typed_func::<i32, i32>(&mut store, "depth")
        .unwrap();
    for _ in 0..3 {
        let error = recurse.call(&mut store, 0).unwrap_err();
        assert_eq!(error.trap(), Some(Trap::StackOverflow));
        assert_eq!(depth.call(&mut store, 1000).unwrap(), 1000);
    }
}

#[test]
fn many_traps_in_a_row_recover_every_time() {
    let (mut store, instance) = instantiate(TRAPS);
    let div = instance
        .get_typed_func::<(i32, i32), i32>(&mut store, "div")
        .unwrap();
    for i in 0..10_000 {
        assert!(div.call(&mut store, (i, 0)).is_err());
        assert_eq!(div.call(&mut store, (i, 1)).unwrap(), i);
    }
}

#[test]
fn traps_on_several_threads_at_once_stay_on_their_own_thread() {
    let engine = Engine::default();
    let module = Module::new(&engine, TRAPS).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (engine, module) = (engine.clone(), module.clone());
            std::thread::spawn(move || {
                let mut store = Store::new(&engine, ());
                let instance = Linker::new(&engine)
                    .instantiate(&mut store, &module)
                    .unwrap();
                let div = instance
                    .get_typed_func::<(i32, i32), i32>(&mut store, "div")
                    .unwrap();
                for i in 0..2000 {
                    assert_eq!(
                        div.call(&mut store, (i, 0)).unwrap_err().trap(),
                        Some(Trap::IntegerDivisionByZero)
                    );
                    assert_eq!(div.call(&mut store, (i * t, 1)).unwrap(), i * t);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

const HOST: &str = r#"
(module
  (import "host" "double" (func $double (param i32) (result i32)))
  (import "host" "fail" (func $fail))
  (import "host" "panic" (func $panic))
  (import "host" "reenter" (func $reenter (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello")
  (func (export "twice_double") (param i32) (result i32)
    (call $double (call $double (local.get 0))))
  (func (export "fail") (call $fail))
  (func (export "panic") (call $panic))
  (func (export "inner") (param i32) (result i32)
    (if (result i32) (i32.eqz (local.get 0)) (then unreachable) (else (i32.mul (local.get 0) (i32.const 10)))))
  (func (export "outer") (param i32) (result i32)
    (i32.add (call $reenter (local.get 0)) (i32.const 1))))
"#;

fn host_instance() -> (Store<Arc<AtomicUsize>>, Instance) {
    let engine = Engine::default();
    let module = Module::new(&engine, HOST).unwrap();
    let mut store = Store::new(&engine, Arc::new(AtomicUsize::new(0)));
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap(
            "host",
            "double",
            |caller: Caller<'_, Arc<AtomicUsize>>, x: i32| {
                caller.data().fetch_add(1, Ordering::Relaxed);
                x * 2
            },
        )
        .unwrap();
    linker
        .func_wrap("host", "fail", || -> Result<(), Error> {
            Err(Error::msg("the host said no"))
        })
        .unwrap();
    linker
        .func_wrap("host", "panic", || -> () {
            panic!("host function panicked")
        })
        .unwrap();
    linker
        .func_wrap(
            "host",
            "reenter",
            |mut caller: Caller<'_, Arc<AtomicUsize>>, x: i32| -> Result<i32, Error> {
                // Reads the caller's memory, then calls back into the same instance.
                let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
                    return Err(Error::msg("no memory"));
                };
                let mut hello = [0u8; 5];
                memory.read(&caller, 16, &mut hello)?;
                assert_eq!(&hello, b"hello");
                let inner = caller.get_export("inner").unwrap().into_func().unwrap();
                let inner = inner.typed::<i32, i32>(&caller)?;
                inner.call(&mut caller, x)
            },
        )
        .unwrap();
    let instance = linker.instantiate(&mut store, &module).unwrap();
    (store, instance)
}

#[test]
fn host_functions_see_their_store_data() {
    let (mut store, instance) = host_instance();
    let f = instance
        .get_typed_func::<i32, i32>(&mut store, "twice_double")
        .unwrap();
    assert_eq!(f.call(&mut store, 5).unwrap(), 20);
    assert_eq!(store.data().load(Ordering::Relaxed), 2);
}

#[test]
fn host_error_reaches_the_caller_unchanged() {
    let (mut store, instance) = host_instance();
    let f = instance
        .get_typed_func::<(), ()>(&mut store, "fail")
        .unwrap();
    let error = f.call(&mut store, ()).unwrap_err();
    assert!(
        matches!(&error, Error::Message(m) if m == "the host said no"),
        "{error:?}"
    );
}

#[test]
fn host_panic_resumes_in_the_caller_and_the_store_stays_usable() {
    let (mut store, instance) = host_instance();
    let f = instance
        .get_typed_func::<(), ()>(&mut store, "panic")
        .unwrap();
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f.call(&mut store, ())))
        .unwrap_err();
    assert_eq!(
        panic.downcast_ref::<&str>(),
        Some(&"host function panicked")
    );
    let g = instance
        .get_typed_func::<i32, i32>(&mut store, "twice_double")
        .unwrap();
    assert_eq!(g.call(&mut store, 1).unwrap(), 4);
}

#[test]
fn host_can_reenter_wasm_and_a_nested_trap_reaches_the_outer_caller() {
    let (mut store, instance) = host_instance();
    let outer = instance
        .get_typed_func::<i32, i32>(&mut store, "outer")
        .unwrap();
    assert_eq!(outer.call(&mut store, 4).unwrap(), 41);
    let error = outer.call(&mut store, 0).unwrap_err();
    assert_eq!(error.trap(), Some(Trap::Unreachable));
    assert_eq!(outer.call(&mut store, 2).unwrap(), 21);
}

#[test]
fn malformed_module_names_the_byte_offset() {
    let engine = Engine::default();
    let error = Module::new(&engine, b"\0asm\x01\0\0\0\x01\x05")
        .err()
        .unwrap();
    match error {
        Error::InvalidModule { offset, .. } => assert_eq!(offset, 10),
        other => panic!("expected an invalid-module error, got {other:?}"),
    }
    let error = Module::new(&engine, "(module (func (result i32) i64.const 0))")
        .err()
        .unwrap();
    assert!(error.to_string().contains("type mismatch"), "{error}");
}

fn leb128(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A module of `count` functions of type `[] -> []`, each 4000 `nop`s long (enough code for
/// the bodies to be validated on several threads); the bodies in `invalid` start with an
/// `i32.add` on an empty stack. `trailer` is appended after the code section. Returns the
/// module and the byte range of each body.
fn big_module(
    count: usize,
    invalid: &[usize],
    trailer: &[u8],
) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
    let section = |id: u8, contents: &[u8], out: &mut Vec<u8>| {
        out.push(id);
        leb128(contents.len(), out);
        out.extend_from_slice(contents);
    };
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[1, 0x60, 0, 0], &mut wasm);
    let mut funcs = Vec::new();
    leb128(count, &mut funcs);
    funcs.extend(std::iter::repeat_n(0, count));
    section(3, &funcs, &mut wasm);
    let mut code = Vec::new();
    leb128(count, &mut code);
    let mut bodies = Vec::new();
    for i in 0..count {
        let mut body = vec![0]; // no locals
        if invalid.contains(&i) {
            body.push(0x6a); // i32.add
        }
        body.extend(std::iter::repeat_n(0x01, 4000)); // nop
        body.push(0x0b); // end
        leb128(body.len(), &mut code);
        bodies.push(code.len()..code.len() + body.len());
        code.extend_from_slice(&body);
    }
    wasm.push(10);
    leb128(code.len(), &mut wasm);
    let code_start = wasm.len();
    wasm.extend_from_slice(&code);
    wasm.extend_from_slice(trailer);
    let bodies = bodies
        .into_iter()
        .map(|r| r.start + code_start..r.end + code_start)
        .collect();
    (wasm, bodies)
}

fn invalid_offset(wasm: &[u8], threads: usize, lazy: bool) -> (usize, String) {
    let mut config = Config::new();
    config.compile_threads(threads).lazy_compilation(lazy);
    let engine = Engine::new(&config).unwrap();
    match Module::new(&engine, wasm).err() {
        Some(Error::InvalidModule { offset, message }) => (offset, message),
        other => panic!("expected an invalid-module error, got {other:?}"),
    }
}

#[test]
fn first_invalid_body_in_order_is_reported_whatever_the_thread_count() {
    // 96 bodies of 4 KB: validated on several threads. Bodies 5, 40 and 70 are invalid; a worker
    // may reach a later one first, yet 5 is the one reported, as one thread reports it.
    let (wasm, bodies) = big_module(96, &[40, 5, 70], &[]);
    let serial = invalid_offset(&wasm, 1, false);
    assert!(bodies[5].contains(&serial.0), "{serial:?} not in body 5");
    assert!(serial.1.contains("type mismatch"), "{serial:?}");
    for threads in [2, 4, 8] {
        for lazy in [false, true] {
            assert_eq!(
                invalid_offset(&wasm, threads, lazy),
                serial,
                "{threads} threads"
            );
        }
    }
    // Only the last body is invalid: every other one is checked first.
    let (wasm, bodies) = big_module(96, &[95], &[]);
    let (offset, _) = invalid_offset(&wasm, 4, true);
    assert!(bodies[95].contains(&offset), "{offset} not in body 95");
    // A valid module of as much code is accepted on several threads.
    let (wasm, _) = big_module(96, &[], &[]);
    let mut config = Config::new();
    config.compile_threads(4).lazy_compilation(true);
    Module::new(&Engine::new(&config).unwrap(), &wasm).unwrap();
}

#[test]
fn module_level_error_after_the_code_is_reported_before_an_invalid_body() {
    // A data section for memory 0 of a module without memory, after an invalid body.
    let trailer = [11, 7, 1, 0, 0x41, 0, 0x0b, 1, 0];
    let (wasm, bodies) = big_module(96, &[3], &trailer);
    let serial = invalid_offset(&wasm, 1, false);
    assert!(
        serial.0 > bodies[95].end,
        "{serial:?} is not after the code"
    );
    for threads in [2, 4] {
        assert_eq!(invalid_offset(&wasm, threads, true), serial);
    }
}

#[test]
fn imports_are_checked_by_name_and_type() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module (import "env" "f" (func (param i32))) (import "env" "g" (global (mut i64))))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let mut linker = Linker::new(&engine);
    let error = linker.instantiate(&mut store, &module).unwrap_err();
    assert!(matches!(error, Error::UnknownImport { .. }), "{error}");
    linker.func_wrap("env", "f", |_: i64| {}).unwrap();
    let global = Global::new(
        &mut store,
        GlobalType::new(ValType::I64, Mutability::Var),
        Val::I64(7),
    )
    .unwrap();
    linker.define(&mut store, "env", "g", global).unwrap();
    let error = linker.instantiate(&mut store, &module).unwrap_err();
    assert!(matches!(error, Error::IncompatibleImport { .. }), "{error}");
}

#[test]
fn instance_pre_resolves_imports_once_and_instantiates_in_many_stores() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (import "env" "add" (func $add (param i32 i32) (result i32)))
             (global $g (mut i32) (i32.const 0))
             (memory (export "memory") 1)
             (start $init)
             (func $init (global.set $g (i32.const 100)))
             (func (export "run") (param i32) (result i32)
               (global.set $g (call $add (global.get $g) (local.get 0)))
               (global.get $g)))"#,
    )
    .unwrap();
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap("env", "add", |a: i32, b: i32| a + b)
        .unwrap();
    let pre = linker.instantiate_pre(&module).unwrap();
    // Each store gets its own instance, started, with its own state.
    for round in 1..=3 {
        let mut store = Store::new(&engine, ());
        let instance = pre.instantiate(&mut store).unwrap();
        let run = instance
            .get_typed_func::<i32, i32>(&mut store, "run")
            .unwrap();
        assert_eq!(run.call(&mut store, round).unwrap(), 100 + round);
        assert_eq!(run.call(&mut store, round).unwrap(), 100 + 2 * round);
        assert!(instance.get_memory(&mut store, "memory").is_some());
    }
    // Defining more in the linker afterwards does not change what the pre resolved.
    linker.allow_shadowing(true);
    linker
        .func_wrap("env", "add", |a: i32, b: i32| a - b)
        .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = pre.clone().instantiate(&mut store).unwrap();
    let run = instance
        .get_typed_func::<i32, i32>(&mut store, "run")
        .unwrap();
    assert_eq!(run.call(&mut store, 5).unwrap(), 105);
}

#[test]
fn instance_pre_refuses_unknown_and_mistyped_imports_up_front() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module (import "env" "f" (func (param i32) (result i32))))"#,
    )
    .unwrap();
    let mut linker = Linker::<()>::new(&engine);
    let error = linker.instantiate_pre(&module).err().unwrap();
    assert!(matches!(error, Error::UnknownImport { .. }), "{error}");
    linker.func_wrap("env", "f", |x: i64| x).unwrap();
    let error = linker.instantiate_pre(&module).err().unwrap();
    assert!(matches!(error, Error::IncompatibleImport { .. }), "{error}");
    assert!(
        error.to_string().contains(
            "expected (func (param i32) (result i32)), found (func (param i64) (result i64))"
        ),
        "{error}"
    );
    let other = Engine::default();
    let foreign = Module::new(&other, "(module)").unwrap();
    assert!(linker.instantiate_pre(&foreign).is_err());
}

#[test]
fn mutable_global_import_is_shared_with_the_host() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module (import "env" "g" (global $g (mut i64)))
             (func (export "bump") (global.set $g (i64.add (global.get $g) (i64.const 1)))))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let global = Global::new(
        &mut store,
        GlobalType::new(ValType::I64, Mutability::Var),
        Val::I64(41),
    )
    .unwrap();
    let instance = Instance::new(&mut store, &module, &[global.into()]).unwrap();
    let bump = instance
        .get_typed_func::<(), ()>(&mut store, "bump")
        .unwrap();
    bump.call(&mut store, ()).unwrap();
    assert_eq!(global.get(&mut store), Val::I64(42));
}

#[test]
fn host_functions_in_tables_are_callable_indirectly() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module (table (export "t") 2 funcref) (type $t (func (param i32) (result i32)))
             (func (export "call") (param i32 i32) (result i32)
               (call_indirect (type $t) (local.get 1) (local.get 0))))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[]).unwrap();
    let square = Func::wrap(&mut store, |x: i32| x * x);
    let add_one = Func::new(
        &mut store,
        FuncType::new([ValType::I32], [ValType::I32]),
        |_, params, results| {
            results[0] = Val::I32(params[0].i32().unwrap() + 1);
            Ok(())
        },
    );
    let table = instance.get_table(&mut store, "t").unwrap();
    table
        .set(&mut store, 0, Val::FuncRef(Some(square)))
        .unwrap();
    table
        .set(&mut store, 1, Val::FuncRef(Some(add_one)))
        .unwrap();
    let call = instance
        .get_typed_func::<(i32, i32), i32>(&mut store, "call")
        .unwrap();
    assert_eq!(call.call(&mut store, (0, 7)).unwrap(), 49);
    assert_eq!(call.call(&mut store, (1, 7)).unwrap(), 8);
    assert_eq!(
        call.call(&mut store, (2, 7)).unwrap_err().trap(),
        Some(Trap::UndefinedElement)
    );
    // The table hands back the same functions.
    assert_eq!(table.get(&mut store, 0), Some(Val::FuncRef(Some(square))));
}

#[test]
fn typed_view_with_the_wrong_type_is_an_error() {
    let (mut store, instance) = instantiate(TRAPS);
    let error = instance
        .get_typed_func::<(i32, i32), i64>(&mut store, "div")
        .err()
        .unwrap();
    assert!(matches!(error, Error::TypeMismatch(_)), "{error}");
}

#[test]
fn memory_grows_in_both_modes_and_the_host_sees_writes() {
    for mode in [MemoryMode::GuardPages, MemoryMode::ExplicitBounds] {
        let mut config = Config::new();
        config.memory_mode(mode);
        let engine = Engine::new(&config).unwrap();
        let module = Module::new(
            &engine,
            r#"(module (memory (export "m") 1 3)
                 (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
                 (func (export "store") (param i32 i32) (i32.store (local.get 0) (local.get 1))))"#,
        )
        .unwrap();
        let mut store = Store::new(&engine, ());
        let instance = Instance::new(&mut store, &module, &[]).unwrap();
        let grow = instance
            .get_typed_func::<i32, i32>(&mut store, "grow")
            .unwrap();
        let write = instance
            .get_typed_func::<(i32, i32), ()>(&mut store, "store")
            .unwrap();
        assert_eq!(
            write.call(&mut store, (65536, 1)).unwrap_err().trap(),
            Some(Trap::MemoryOutOfBounds)
        );
        assert_eq!(grow.call(&mut store, 1).unwrap(), 1);
        write.call(&mut store, (65536, 0x1234_5678)).unwrap();
        let memory = instance.get_memory(&mut store, "m").unwrap();
        assert_eq!(
            &memory.data(&store)[65536..65540],
            &0x1234_5678u32.to_le_bytes()
        );
        assert_eq!(grow.call(&mut store, 2).unwrap(), -1);
        assert_eq!(memory.size(&store), 2);
    }
}

#[test]
fn readme_embedding_example_works() -> Result<(), Error> {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"
        (module
          (import "host" "log" (func $log (param i32)))
          (func (export "run") (param i32) (result i32)
            (call $log (local.get 0))
            (i32.mul (local.get 0) (i32.const 2))))
    "#,
    )?;
    let mut store = Store::new(&engine, Vec::new());
    let mut linker = Linker::new(&engine);
    linker.func_wrap("host", "log", |mut caller: Caller<'_, Vec<i32>>, x: i32| {
        caller.data_mut().push(x);
    })?;
    let instance = linker.instantiate(&mut store, &module)?;
    let run = instance.get_typed_func::<i32, i32>(&mut store, "run")?;
    assert_eq!(run.call(&mut store, 21)?, 42);
    assert_eq!(store.data(), &[21]);
    Ok(())
}

#[test]
fn readme_async_example_works() -> Result<(), Error> {
    use std::time::Duration;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let engine = Engine::default();
        let module = Module::new(
            &engine,
            r#"
            (module
              (import "env" "sleep" (func $sleep (param i32)))
              (func (export "nap") (param i32) (result i32)
                (call $sleep (local.get 0))
                (i32.const 1)))
        "#,
        )?;
        let mut linker = Linker::new(&engine);
        linker.func_wrap_async("env", "sleep", |_: Caller<'_, ()>, ms: i32| {
            tokio::time::sleep(Duration::from_millis(ms as u64))
        })?;
        let mut store = Store::new(&engine, ());
        let instance = linker.instantiate(&mut store, &module)?;
        let nap = instance.get_typed_func::<i32, i32>(&mut store, "nap")?;
        assert_eq!(nap.call_async(&mut store, 10).await?, 1);
        Ok(())
    })
}

/// The child half of `fault_in_host_code_is_not_taken_for_a_trap`: a host function called from
/// Wasm writes to an inaccessible page.
fn fault_in_a_host_function() -> ! {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module (import "env" "poke" (func $poke)) (func (export "run") (call $poke)))"#,
    )
    .unwrap();
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap("env", "poke", || {
            // SAFETY: not safe on purpose: the test needs a genuine fault in host code. The
            // page is mapped inaccessible, so the write faults and nothing is corrupted.
            unsafe {
                let page = libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_NONE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                std::ptr::write_volatile(page.cast::<u8>(), 1);
            }
        })
        .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let run = instance
        .get_typed_func::<(), ()>(&mut store, "run")
        .unwrap();
    let result = run.call(&mut store, ());
    eprintln!("the fault was swallowed: {result:?}");
    std::process::exit(0);
}

/// weft's signal handler takes only faults at trap sites of Wasm code; a fault in host code
/// goes to the handler installed before (here the default), so the process dies of SIGSEGV
/// instead of reporting a bogus trap.
#[test]
fn fault_in_host_code_is_not_taken_for_a_trap() {
    const CHILD: &str = "WEFT_TEST_HOST_FAULT_CHILD";
    if std::env::var_os(CHILD).is_some() {
        fault_in_a_host_function();
    }
    let output =
        common::rerun_test_in_child("api::fault_in_host_code_is_not_taken_for_a_trap", CHILD);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the child survived:\n{stderr}");
    assert!(!stderr.contains("swallowed"), "{stderr}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(output.status.signal(), Some(libc::SIGSEGV), "{stderr}");
}

/// `Memory::data_and_store_mut` lends the memory's bytes and the store's data together, as a
/// host function that copies between them needs.
#[test]
fn memory_bytes_and_store_data_borrowed_together() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module (memory (export "memory") 1) (data (i32.const 8) "weft"))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, Vec::<u8>::new());
    let instance = Linker::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let memory = instance.get_memory(&mut store, "memory").unwrap();
    let (bytes, data) = memory.data_and_store_mut(&mut store);
    data.extend_from_slice(&bytes[8..12]);
    bytes[0] = b'!';
    assert_eq!(store.data().as_slice(), b"weft");
    assert_eq!(memory.data(&store)[0], b'!');
}
