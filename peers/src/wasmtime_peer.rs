//! wasmtime's side: the same code through wasmtime's API, which is shaped like weft's.

use wasmtime::{Caller, Config, Engine, Linker, Module, Store};

use crate::cases::{ASYNC_WAT, CALLS_WAT, PendingOnce, spin};

crate::peer::peer!(Wasmtime, wasmtime);

impl Wasmtime {
    pub fn new() -> wasmtime::Result<Wasmtime> {
        let engine = Engine::new(&Config::new())?;
        let calls = Module::new(&engine, wat::parse_str(CALLS_WAT).expect("valid WAT"))?;
        let mut linker = Linker::new(&engine);
        linker.func_wrap("env", "host", |x: i32| x)?.func_wrap(
            "env",
            "add",
            |a: i32, b: i32| a.wrapping_add(b),
        )?;
        let mut sync = Store::new(&engine, ());
        let instance = linker.instantiate(&mut sync, &calls)?;

        let promising_module = Module::new(&engine, wat::parse_str(ASYNC_WAT).expect("valid WAT"))?;
        let mut async_linker = Linker::new(&engine);
        async_linker
            .func_wrap_async("env", "wait", |_: Caller<'_, ()>, (x,): (i32,)| {
                Box::new(PendingOnce::new(x))
            })?
            .func_wrap_async(
                "env",
                "promise_add",
                |_: Caller<'_, ()>, (a, b): (i32, i32)| {
                    Box::new(PendingOnce::new(a.wrapping_add(b)))
                },
            )?;
        let mut promising = Store::new(&engine, ());
        // A store with suspending imports is instantiated asynchronously.
        let async_instance =
            spin(async_linker.instantiate_async(&mut promising, &promising_module))?;
        Self::assemble(engine, sync, instance, promising, async_instance)
    }
}
