//! Errors compose: `?` brings the errors an embedder meets into `weft::Error`, host errors come
//! back whole, and weft errors leave as boxed errors or `anyhow::Error`.

use std::fmt;

use weft::{Caller, Engine, Error, Linker, Module, Store, Trap};

/// An embedder's own error type.
#[derive(Debug, PartialEq)]
struct OutOfCoffee {
    cups: i32,
}

impl fmt::Display for OutOfCoffee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "out of coffee after {} cups", self.cups)
    }
}

impl std::error::Error for OutOfCoffee {}

fn brew(cups: i32) -> Result<i32, OutOfCoffee> {
    if cups > 2 {
        Err(OutOfCoffee { cups })
    } else {
        Ok(cups * 10)
    }
}

/// `brew` as a host function that uses `?` on the embedder's error, and a module calling it.
fn coffee() -> weft::Result<(Store<()>, weft::TypedFunc<i32, i32>)> {
    let engine = Engine::default();
    // A wat error would convert with `?` as well.
    let wasm = wat::parse_str(
        r#"(module
             (import "env" "brew" (func $brew (param i32) (result i32)))
             (func (export "run") (param i32) (result i32) (call $brew (local.get 0))))"#,
    )?;
    let module = Module::new(&engine, wasm)?;
    let mut linker = Linker::new(&engine);
    linker.func_wrap("env", "brew", |cups: i32| -> weft::Result<i32> {
        Ok(brew(cups)?)
    })?;
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module)?;
    let run = instance.get_typed_func::<i32, i32>(&mut store, "run")?;
    Ok((store, run))
}

#[test]
fn question_mark_takes_io_errors_into_weft_errors() {
    fn read_module() -> weft::Result<Vec<u8>> {
        Ok(std::fs::read("/nonexistent/weft/module.wasm")?)
    }
    let error = read_module().unwrap_err();
    assert_eq!(
        error.downcast_ref::<std::io::Error>().map(|e| e.kind()),
        Some(std::io::ErrorKind::NotFound)
    );
}

#[test]
fn question_mark_takes_wat_errors_into_weft_errors() {
    fn parse() -> weft::Result<Vec<u8>> {
        Ok(wat::parse_str("(module (func (oops)))")?)
    }
    let error = parse().unwrap_err();
    assert!(error.is::<wat::Error>(), "{error:?}");
    assert!(error.to_string().contains("oops"), "{error}");
}

#[test]
fn host_functions_question_mark_their_own_errors_and_the_caller_gets_them_back_whole() {
    let (mut store, run) = coffee().unwrap();
    assert_eq!(run.call(&mut store, 2).unwrap(), 20);
    let error = run.call(&mut store, 3).unwrap_err();
    assert!(error.is::<OutOfCoffee>());
    assert_eq!(
        error.downcast_ref::<OutOfCoffee>(),
        Some(&OutOfCoffee { cups: 3 })
    );
    assert_eq!(error.to_string(), "out of coffee after 3 cups");
    assert!(error.trap().is_none());
}

#[test]
fn a_trap_returned_by_a_host_function_is_a_trap() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module (import "env" "stop" (func $stop)) (func (export "run") (call $stop)))"#,
    )
    .unwrap();
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap("env", "stop", |_: Caller<'_, ()>| -> weft::Result<()> {
            Err(Trap::Unreachable.into())
        })
        .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let run = instance
        .get_typed_func::<(), ()>(&mut store, "run")
        .unwrap();
    let error = run.call(&mut store, ()).unwrap_err();
    assert_eq!(error.trap(), Some(Trap::Unreachable));
}

#[test]
fn weft_errors_leave_as_boxed_errors() {
    fn boxed() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let (mut store, run) = coffee()?;
        run.call(&mut store, 5)?;
        Ok(())
    }
    // A host error comes out as the error the host function raised.
    let error = boxed().unwrap_err();
    assert_eq!(
        error.downcast_ref::<OutOfCoffee>(),
        Some(&OutOfCoffee { cups: 5 })
    );

    fn unboxed_main() -> Result<(), Box<dyn std::error::Error>> {
        Module::new(&Engine::default(), b"\0asm\x01\0\0\0\x01\x05")?;
        Ok(())
    }
    // weft's own errors keep their message.
    assert_eq!(
        unboxed_main().unwrap_err().to_string(),
        "invalid module: unexpected end-of-file (at offset 0xa)"
    );
}

#[test]
fn weft_errors_leave_as_anyhow_errors_and_come_back() {
    fn with_anyhow() -> anyhow::Result<i32> {
        let (mut store, run) = coffee()?;
        Ok(run.call(&mut store, 4)?)
    }
    let error = with_anyhow().unwrap_err();
    assert_eq!(error.to_string(), "out of coffee after 4 cups");

    let back = Error::from_anyhow(anyhow::anyhow!("no beans"));
    assert!(matches!(back, Error::Host(_)));
    assert_eq!(back.to_string(), "no beans");
}

/// Issue 12: a backtrace deeper than the 128 recorded frames kept only the innermost ones and
/// printed "... N more frames" as if complete. Now it keeps the outermost frames too and says
/// that frames were cut.
#[test]
fn cut_backtrace_keeps_outermost_frames_and_says_it_was_cut() {
    let engine = weft::Engine::default();
    let module = weft::Module::new(
        &engine,
        r#"(module
             (func $down (param i32) (result i32)
               (i32.add (call $down (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
             (func $start (export "start") (result i32) (call $down (i32.const 0))))"#,
    )
    .unwrap();
    let mut store = weft::Store::new(&engine, ());
    let instance = weft::Linker::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let start = instance
        .get_typed_func::<(), i32>(&mut store, "start")
        .unwrap();
    let error = start.call(&mut store, ()).unwrap_err();
    let weft::Error::Trap { trap, backtrace } = &error else {
        panic!("{error}");
    };
    assert_eq!(*trap, weft::Trap::StackOverflow);
    assert!(
        backtrace.omitted_frames > 1000,
        "{}",
        backtrace.omitted_frames
    );
    // 128 program counters, of which the trampolines' are not Wasm frames.
    assert!((120..=128).contains(&backtrace.frames.len()));
    assert!((60..=64).contains(&backtrace.omitted_at));
    assert_eq!(backtrace.frames[0].func_index, 0);
    let outermost = backtrace.frames.last().unwrap();
    assert_eq!(
        outermost.func_index, 1,
        "the export that started the recursion"
    );
    assert_eq!(outermost.func_name.as_deref(), Some("start"));
    let text = backtrace.to_string();
    assert!(text.contains("the backtrace was cut"), "{text}");
    let last_line = text.lines().rev().nth(1).unwrap();
    let depth = backtrace.frames.len() - 1 + backtrace.omitted_frames;
    assert!(
        last_line.contains(&format!("{depth}: start (func 1)")),
        "{last_line}"
    );
}

/// Issue 12: names from the name section were printed raw, so a module could put ANSI escape
/// sequences and newlines into weft's error output.
#[test]
fn control_characters_in_name_section_names_are_escaped_when_printed() {
    let frame = weft::FrameInfo {
        func_index: 3,
        func_name: Some("evil\u{1b}[31m\nfake: frame".to_string()),
        module_name: Some("m\r".to_string()),
        module_offset: Some(0x2a),
    };
    let text = frame.to_string();
    assert_eq!(
        text,
        "m\\u{d}!evil\\u{1b}[31m\\u{a}fake: frame (func 3) @ 0x2a"
    );
    let backtrace = weft::WasmBacktrace {
        frames: vec![frame],
        ..Default::default()
    };
    let printed = backtrace.to_string();
    assert!(
        !printed.contains('\u{1b}') && !printed.contains('\r'),
        "{printed}"
    );
    assert_eq!(printed.lines().count(), 2, "{printed}");
}

/// Issue 12: `Func::wrap` (whose signature has no error to return) panicked when its type's
/// trampoline could not be mapped, e.g. at the process's mapping limit. Now the function is
/// made anyway, and whatever hands it to Wasm retries: an error while mappings are exhausted,
/// a working import once they are free again. In a child process, since it exhausts the
/// process's memory mappings.
#[test]
fn func_wrap_at_the_mapping_limit_defers_its_trampoline_error_to_instantiation() {
    if !crate::common::in_own_process(
        "errors::func_wrap_at_the_mapping_limit_defers_its_trampoline_error_to_instantiation",
        "WEFT_TEST_MAPPING_LIMIT_CHILD",
    ) {
        return;
    }
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (import "host" "f" (func $f (param i64 f32 i32 i64 f64) (result f64)))
             (func (export "run") (result f64)
               (call $f (i64.const 1) (f32.const 2) (i32.const 3) (i64.const 4) (f64.const 5))))"#,
    )
    .unwrap();
    // Take every mapping the process can still get: single pages, alternately readable and
    // inaccessible so that neighbours cannot merge into one mapping.
    let mut pages = Vec::new();
    loop {
        let protection = if pages.len() % 2 == 0 {
            libc::PROT_READ
        } else {
            libc::PROT_NONE
        };
        // SAFETY: a fresh anonymous mapping that nothing else refers to; it is unmapped below.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                protection,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if page == libc::MAP_FAILED {
            break;
        }
        pages.push(page as usize);
        assert!(pages.len() < 10_000_000, "no mapping limit reached");
    }
    // A host function of a type no trampoline exists for yet: made, not panicking.
    let mut store = Store::new(&engine, ());
    let f = weft::Func::wrap(&mut store, |a: i64, b: f32, c: i32, d: i64, e: f64| {
        a as f64 + f64::from(b) + f64::from(c) + d as f64 + e
    });
    let error = Linker::new(&engine)
        .define(&mut store, "host", "f", f)
        .unwrap()
        .instantiate(&mut store, &module)
        .map(|_| ())
        .unwrap_err();
    assert!(
        !matches!(error, Error::Trap { .. }),
        "an instantiation error, not a trap: {error}"
    );
    println!(
        "with {} pages mapped, instantiating reported: {error}",
        pages.len()
    );
    // Mappings free again: the same function now instantiates and runs.
    for page in pages {
        // SAFETY: mapped above, of this size, and referred to by nothing.
        unsafe { libc::munmap(page as *mut libc::c_void, 4096) };
    }
    let instance = Linker::new(&engine)
        .define(&mut store, "host", "f", f)
        .unwrap()
        .instantiate(&mut store, &module)
        .unwrap();
    let run = instance
        .get_typed_func::<(), f64>(&mut store, "run")
        .unwrap();
    assert_eq!(run.call(&mut store, ()).unwrap(), 15.0);
}
