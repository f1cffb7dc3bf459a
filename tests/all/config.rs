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
    assert!(
        defaults.get_cache().is_none(),
        "the embedding API caches only when asked"
    );

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

/// Each WebAssembly feature switch is on by default; off, a module using the feature is
/// refused with words naming the switches that are off; a switch on whose base is off
/// (relaxed SIMD without SIMD) is a config error.
#[test]
fn feature_switches_refuse_what_they_turn_off() {
    let defaults = Config::new();
    for on in [
        defaults.get_wasm_simd(),
        defaults.get_wasm_relaxed_simd(),
        defaults.get_wasm_reference_types(),
        defaults.get_wasm_function_references(),
        defaults.get_wasm_tail_call(),
        defaults.get_wasm_extended_const(),
        defaults.get_wasm_bulk_memory(),
        defaults.get_wasm_multi_value(),
        defaults.get_wasm_exceptions(),
    ] {
        assert!(on);
    }
    // What the refusal says: the validator names most features as switches, which weft's
    // message names as this Config's; an extended constant is just not constant to it.
    let turned_off = "Config turns off";
    type SwitchOff = fn(&mut Config) -> &mut Config;
    let cases: [(&str, SwitchOff, &str); 5] = [
        (
            "(module (func (param v128)))",
            |c| c.wasm_relaxed_simd(false).wasm_simd(false),
            turned_off,
        ),
        (
            "(module (func $f (return_call $f)))",
            |c| c.wasm_tail_call(false),
            turned_off,
        ),
        (
            "(module (global i32 (i32.add (i32.const 1) (i32.const 2))))",
            |c| c.wasm_extended_const(false),
            "constant expression required",
        ),
        (
            "(module (memory 1) (func (memory.fill (i32.const 0) (i32.const 0) (i32.const 0))))",
            |c| c.wasm_bulk_memory(false),
            turned_off,
        ),
        (
            "(module (tag $e) (func (throw $e)))",
            |c| c.wasm_exceptions(false),
            turned_off,
        ),
    ];
    for (wat, switch_off, refusal) in cases {
        let engine = Engine::default();
        Module::new(&engine, wat).unwrap_or_else(|e| panic!("{wat}: {e}"));
        let mut config = Config::new();
        switch_off(&mut config);
        let engine = Engine::new(&config).unwrap();
        let Err(error) = Module::new(&engine, wat) else {
            panic!("{wat} compiled with its feature off");
        };
        assert!(error.to_string().contains(refusal), "{wat}: {error}");
    }
    let mut config = Config::new();
    config.wasm_simd(false);
    let Err(error) = Engine::new(&config) else {
        panic!("relaxed SIMD without SIMD");
    };
    assert!(matches!(error, Error::InvalidConfig(_)), "{error}");
    assert!(
        error.to_string().contains("relaxed-simd needs simd"),
        "{error}"
    );
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

/// Runs `down` synchronously on a new thread with a stack of `thread_stack` bytes, and returns
/// the error it ended with. The module is compiled on the test's thread: Cranelift needs more
/// stack than the small threads have.
fn recurse_on_thread(config: &Config, thread_stack: usize) -> Error {
    let engine = Engine::new(config).unwrap();
    let module = Module::new(&engine, DOWN).unwrap();
    let mut store = Store::new(&engine, ());
    let instance = weft::Linker::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let down = instance
        .get_typed_func::<(), i32>(&mut store, "down")
        .unwrap();
    std::thread::Builder::new()
        .stack_size(thread_stack)
        .spawn(move || down.call(&mut store, ()).unwrap_err())
        .unwrap()
        .join()
        .expect("the thread ends with an error, not a crash")
}

/// Failure 3 of issue 12: with the default 512 KiB Wasm stack on a 256 KiB thread, unbounded
/// recursion ran into the thread's guard page and aborted the process.
#[test]
fn unbounded_recursion_on_a_thread_smaller_than_max_wasm_stack_traps_with_stack_overflow() {
    let error = recurse_on_thread(&Config::new(), 256 << 10);
    assert_eq!(error.trap(), Some(Trap::StackOverflow), "{error}");
}

/// The same with a huge `max_wasm_stack` (as 16 MiB on an 8 MiB main thread).
#[test]
fn max_wasm_stack_beyond_the_threads_stack_is_clamped_to_it() {
    let mut config = Config::new();
    config.max_wasm_stack(64 << 20).async_stack_size(80 << 20);
    let error = recurse_on_thread(&config, 1 << 20);
    assert_eq!(error.trap(), Some(Trap::StackOverflow), "{error}");
}

/// `max_wasm_stack(usize::MAX)` used to underflow the limit to "no limit at all", and
/// `async_stack_size(usize::MAX)` to wrap around to a tiny stack.
#[test]
fn absurd_stack_sizes_are_invalid_config_errors() {
    for (max_wasm_stack, async_stack_size) in [
        (usize::MAX, usize::MAX),
        (512 << 10, usize::MAX),
        (usize::MAX, 2 << 20),
        (usize::MAX - 4096, 2 << 20),
        (2 << 40, 4 << 40),
    ] {
        let mut config = Config::new();
        config
            .max_wasm_stack(max_wasm_stack)
            .async_stack_size(async_stack_size);
        let Err(error) = Engine::new(&config) else {
            panic!("max_wasm_stack {max_wasm_stack}, async_stack_size {async_stack_size}");
        };
        assert!(matches!(error, Error::InvalidConfig(_)), "{error}");
    }
}
