//! weft's side, through its public API only.

use weft::{Caller, Config, Engine, Linker, Module, Store};

use crate::cases::{ASYNC_WAT, CALLS_WAT, PendingOnce};

crate::peer::peer!(Weft, weft);

impl Weft {
    pub fn new() -> weft::Result<Weft> {
        let engine = Engine::new(&Config::new())?;
        let calls = Module::new(&engine, CALLS_WAT)?;
        let mut linker = Linker::new(&engine);
        linker.func_wrap("env", "host", |x: i32| x)?.func_wrap(
            "env",
            "add",
            |a: i32, b: i32| a.wrapping_add(b),
        )?;
        let mut sync = Store::new(&engine, ());
        let instance = linker.instantiate(&mut sync, &calls)?;

        let promising_module = Module::new(&engine, ASYNC_WAT)?;
        let mut async_linker = Linker::new(&engine);
        async_linker
            .func_wrap_async("env", "wait", |_: Caller<'_, ()>, x: i32| {
                PendingOnce::new(x)
            })?
            .func_wrap_async("env", "promise_add", |_: Caller<'_, ()>, a: i32, b: i32| {
                PendingOnce::new(a.wrapping_add(b))
            })?;
        let mut promising = Store::new(&engine, ());
        let async_instance = async_linker.instantiate(&mut promising, &promising_module)?;
        Self::assemble(engine, sync, instance, promising, async_instance)
    }
}
