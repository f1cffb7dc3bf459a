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
