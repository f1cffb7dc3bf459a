//! The weft binding: registers every preview1 function in a [`Linker`], using only weft's
//! public API.
//!
//! A call reaches the guest's memory and its [`WasiCtx`] through a [`WasiHost`]: in the
//! synchronous binding that is the [`Caller`] itself, and the function's future is driven to
//! completion on the calling thread; in the async binding it is the call's [`StoreAccess`],
//! which lends the store to each poll of the suspending import's future and to nothing else.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use weft::{Caller, Error, Extern, FuncType, Linker, Result, StoreAccess, Val, ValType};

use crate::abi::Errno;
use crate::host::{Abort, Blocking, HostError, I32Exit, WasiHost, block_on};
use crate::{WasiCtx, preview1};

/// The import module of every preview1 function.
pub const MODULE: &str = "wasi_snapshot_preview1";

type Getter<T> = Arc<dyn Fn(&mut T) -> &mut WasiCtx + Send + Sync>;

/// Lends `f` the context and the calling instance's memory export, both borrowed from the
/// caller at once.
fn lend<T: 'static>(
    caller: &mut Caller<'_, T>,
    get: &(dyn Fn(&mut T) -> &mut WasiCtx + Send + Sync),
    f: &mut dyn FnMut(&mut WasiCtx, &mut [u8]),
) -> Result<(), HostError> {
    let memory = caller
        .get_export("memory")
        .and_then(Extern::into_memory)
        .ok_or_else(|| HostError::new("a WASI module must export its memory as \"memory\""))?;
    let (bytes, data) = memory.data_and_store_mut(caller);
    f(get(data), bytes);
    Ok(())
}

/// The synchronous binding's host: the caller, borrowed for the whole call.
struct SyncHost<'a, 'c, T: 'static> {
    caller: Caller<'c, T>,
    get: &'a (dyn Fn(&mut T) -> &mut WasiCtx + Send + Sync),
}

impl<T: 'static> WasiHost for SyncHost<'_, '_, T> {
    fn with(&mut self, f: &mut dyn FnMut(&mut WasiCtx, &mut [u8])) -> Result<(), HostError> {
        lend(&mut self.caller, self.get, f)
    }
    fn blocking(&self) -> Blocking {
        Blocking::Inline
    }
}

/// The async binding's host: owns nothing of the store, so its futures are `'static`.
struct AsyncHost<T: 'static> {
    access: StoreAccess<T>,
    get: Getter<T>,
}

impl<T: 'static> WasiHost for AsyncHost<T> {
    fn with(&mut self, f: &mut dyn FnMut(&mut WasiCtx, &mut [u8])) -> Result<(), HostError> {
        let get = &*self.get;
        self.access
            .with(|mut caller| lend(&mut caller, get, f))
            .map_err(|e| HostError::new(e.to_string()))?
    }
    fn blocking(&self) -> Blocking {
        Blocking::Tokio
    }
}

fn abort_to_error(abort: Abort) -> Error {
    match abort {
        Abort::Exit(exit) => Error::host(exit),
        Abort::Host(error) => Error::host(error),
    }
}

/// The `proc_exit` status carried by `error`, if the guest exited rather than failed.
pub fn exit_code(error: &Error) -> Option<i32> {
    match error {
        Error::Host(inner) => inner.downcast_ref::<I32Exit>().map(|exit| exit.0),
        _ => None,
    }
}

macro_rules! valtype {
    (u32) => {
        ValType::I32
    };
    (u64) => {
        ValType::I64
    };
}

fn arg_u32(val: Option<&Val>) -> u32 {
    val.and_then(Val::i32).unwrap_or_default() as u32
}

fn arg_u64(val: Option<&Val>) -> u64 {
    val.and_then(Val::i64).unwrap_or_default() as u64
}

macro_rules! from_val {
    (u32, $v:expr) => {
        arg_u32($v)
    };
    (u64, $v:expr) => {
        arg_u64($v)
    };
}

/// One preview1 function for the synchronous binding: decodes the guest's arguments and
/// drives the function to completion on the calling thread.
type SyncShim = fn(&mut dyn WasiHost, &[Val]) -> Result<Errno, Abort>;

/// The future of one preview1 function in the async binding.
type WasiFuture = Pin<Box<dyn Future<Output = Result<Errno, Abort>> + Send>>;

/// One preview1 function for the async binding: decodes the guest's arguments and returns the
/// function's future, which owns its host.
type AsyncShim = fn(Box<dyn WasiHost + Send>, &[Val]) -> WasiFuture;

/// The shims of every preview1 function, with their parameter types. They are not generic, so
/// the WASI functions are compiled once, here, and a crate that links WASI into a store type
/// of its own compiles only [`define_sync`] and [`define_async`] for it.
macro_rules! shims {
    ($($name:ident($($arg:ident: $ty:ident),*);)*) => {
        const SHIMS: &[(&str, &[ValType], SyncShim, AsyncShim)] = &[$((
            stringify!($name),
            &[$(valtype!($ty)),*],
            |host, params| {
                #[allow(unused_mut, unused_variables)]
                let mut params = params.iter();
                $(let $arg = from_val!($ty, params.next());)*
                block_on(preview1::$name(host, $($arg),*))
            },
            |mut host, params| {
                #[allow(unused_mut, unused_variables)]
                let mut params = params.iter();
                $(let $arg = from_val!($ty, params.next());)*
                Box::pin(async move { preview1::$name(&mut *host, $($arg),*).await })
            },
        ),)*];
    };
}
crate::for_each_preview1_function!(shims);

/// Registers one function of the synchronous binding (a `func_new` whose future is driven
/// on the calling thread).
fn define_sync<T: 'static>(
    linker: &mut Linker<T>,
    get: &Getter<T>,
    name: &str,
    params: &[ValType],
    shim: SyncShim,
) -> Result<()> {
    let get = get.clone();
    linker.func_new(
        MODULE,
        name,
        FuncType::new(params.iter().cloned(), [ValType::I32]),
        move |caller: Caller<'_, T>, params: &[Val], results: &mut [Val]| {
            let mut host = SyncHost { caller, get: &*get };
            let errno = shim(&mut host, params).map_err(abort_to_error)?;
            results[0] = Val::I32(errno as i32);
            Ok(())
        },
    )?;
    Ok(())
}

/// Defines every preview1 function in `linker` for synchronous calls: blocking work blocks
/// the calling thread, sleeps are `thread::sleep`. `get` finds the [`WasiCtx`] in the store's
/// data. Calls need the calling instance to export its memory as `memory`.
///
/// # Errors
/// If a name is already defined in `linker` (and shadowing is off).
pub fn add_to_linker_sync<T: 'static>(
    linker: &mut Linker<T>,
    get: impl Fn(&mut T) -> &mut WasiCtx + Send + Sync + 'static,
) -> Result<()> {
    let get: Getter<T> = Arc::new(get);
    for &(name, params, shim, _) in SHIMS {
        define_sync(linker, &get, name, params, shim)?;
    }
    define_proc_exit(linker)
}

fn define_proc_exit<T: 'static>(linker: &mut Linker<T>) -> Result<()> {
    linker.func_wrap(MODULE, "proc_exit", |code: i32| -> Result<()> {
        Err(Error::host(I32Exit(code)))
    })?;
    Ok(())
}

/// Registers one function of the async binding (a suspending import).
fn define_async<T: 'static>(
    linker: &mut Linker<T>,
    get: &Getter<T>,
    name: &str,
    params: &[ValType],
    shim: AsyncShim,
) -> Result<()> {
    let get = get.clone();
    linker.func_new_async(
        MODULE,
        name,
        FuncType::new(params.iter().cloned(), [ValType::I32]),
        move |caller: Caller<'_, T>, params: &[Val]| {
            let host = AsyncHost {
                access: caller.store_access(),
                get: get.clone(),
            };
            let future = shim(Box::new(host), params);
            async move {
                let errno = future.await.map_err(abort_to_error)?;
                Ok(vec![Val::I32(errno as i32)])
            }
        },
    )?;
    Ok(())
}

/// Defines every preview1 function in `linker` as a *suspending import*: call the guest with
/// `call_async` on a tokio runtime (a `current_thread` one is enough; enable its time driver).
/// Filesystem and stdio work runs on tokio's blocking pool while the call is suspended;
/// `poll_oneoff` sleeps with `tokio::time::sleep`. `get` finds the [`WasiCtx`] in the store's
/// data. Reached from a synchronous `call`, these imports trap
/// ([`weft::Trap::SuspendOutsidePromisingCall`]): use [`add_to_linker_sync`] for that.
///
/// # Errors
/// If a name is already defined in `linker` (and shadowing is off).
pub fn add_to_linker_async<T: 'static>(
    linker: &mut Linker<T>,
    get: impl Fn(&mut T) -> &mut WasiCtx + Send + Sync + 'static,
) -> Result<()> {
    let get: Getter<T> = Arc::new(get);
    for &(name, params, _, shim) in SHIMS {
        define_async(linker, &get, name, params, shim)?;
    }
    define_proc_exit(linker)
}
