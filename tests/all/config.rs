//! `Config`: getters, the checks `Engine::new` makes, what `async_stack_size` measures, and how
//! weft refuses features it does not implement.

use weft::{Config, Engine, Error, MemoryMode, Module, Store, Trap};

#[test]
fn config_getters_return_what_the_setters_set() {
    let defaults = Config::new();
    assert_eq!(defaults.get_memory_mode(), MemoryMode::GuardPages);
    assert_eq!(defaults.get_max_wasm_stack(), 512 << 10);
    assert_eq!(defaults.get_async_stack_size(), 2 << 20);
    assert!(!defaults.get_cranelift_verifier());
    assert!(defaults.get_wasm_multi_memory());
    assert_eq!(defaults.get_compile_threads(), 0);

    let mut config = Config::new();
    config
        .memory_mode(MemoryMode::ExplicitBounds)
        .max_wasm_stack(100 << 10)
        .async_stack_size(300 << 10)
        .cranelift_verifier(true)
        .wasm_multi_memory(false)
        .compile_threads(3);
    assert_eq!(config.get_memory_mode(), MemoryMode::ExplicitBounds);
    assert_eq!(config.get_max_wasm_stack(), 100 << 10);
    assert_eq!(config.get_async_stack_size(), 300 << 10);
    assert!(config.get_cranelift_verifier());
    assert!(!config.get_wasm_multi_memory());
    assert_eq!(config.get_compile_threads(), 3);
    let engine = Engine::new(&config).unwrap();
    assert_eq!(engine.config().get_async_stack_size(), 300 << 10);
}

#[test]
fn async_stack_size_leaving_wasm_less_than_max_wasm_stack_is_refused() {
    let mut config = Config::new();
    config.max_wasm_stack(512 << 10).async_stack_size(512 << 10);
    let Err(error) = Engine::new(&config) else {
        panic!("a promising call's stack cannot hold max_wasm_stack plus its host headroom");
    };
    assert!(matches!(error, Error::InvalidConfig(_)), "{error}");
    assert!(error.to_string().contains("async_stack_size"), "{error}");
    // The same stack with room to spare for the Wasm limit is fine.
    config.max_wasm_stack(256 << 10);
    Engine::new(&config).unwrap();
}

/// Recurses until the stack runs out, recording its depth in a global.
const DOWN: &str = r#"
(module
  (global $depth (mut i32) (i32.const 0))
  (func $down (param i32) (result i32)
    (global.set $depth (local.get 0))
    (i32.add (call $down (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
  (func (export "down") (result i32) (call $down (i32.const 1)))
  (func (export "depth") (result i32) (global.get $depth)))
"#;

/// How deep `down` gets before it traps with a stack overflow, synchronously or in a
/// promising call.
fn max_depth(engine: &Engine, promising: bool) -> i32 {
    let module = Module::new(engine, DOWN).unwrap();
    let mut store = Store::new(engine, ());
    let instance = weft::Linker::new(engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let down = instance
        .get_typed_func::<(), i32>(&mut store, "down")
        .unwrap();
    let result = if promising {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(down.call_async(&mut store, ()))
    } else {
        down.call(&mut store, ())
    };
    assert_eq!(result.unwrap_err().trap(), Some(Trap::StackOverflow));
    let depth = instance
        .get_typed_func::<(), i32>(&mut store, "depth")
        .unwrap();
    depth.call(&mut store, ()).unwrap()
}

/// `async_stack_size` is the whole stack, as in wasmtime: Wasm in a promising call gets all of
/// it but the host headroom and the call's bookkeeping, not `async_stack_size` bytes of its
/// own. With 256 KiB for synchronous Wasm and a 1 MiB stack, a promising call gets at most
/// (1 MiB − 64 KiB) / 256 KiB = 3.75 times as deep; if the setting were Wasm's room alone,
/// it would get 4 times as deep.
#[test]
fn async_stack_size_is_the_whole_stack_of_a_promising_call() {
    let mut config = Config::new();
    config.max_wasm_stack(256 << 10).async_stack_size(1 << 20);
    let engine = Engine::new(&config).unwrap();
    let sync = max_depth(&engine, false) as f64;
    let promising = max_depth(&engine, true) as f64;
    let ratio = promising / sync;
    assert!(
        (3.5..3.875).contains(&ratio),
        "promising depth {promising} / sync depth {sync} = {ratio}"
    );
}

#[test]
fn continuation_types_are_refused_as_unsupported_without_naming_a_switch() {
    let engine = Engine::default();
    let Err(error) = Module::new(&engine, "(module (type $f (func)) (type $c (cont $f)))") else {
        panic!("weft does not implement stack switching");
    };
    assert!(matches!(error, Error::Unsupported(_)), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("weft does not support stack switching"),
        "{message}"
    );
    assert!(
        !message.contains("disabled") && !message.contains("enable"),
        "{message}"
    );
}
