//! A guest for the tests: a module that imports every preview1 function and exports, for each,
//! a wrapper `call_NAME` (so the call comes from Wasm, with the module's memory), plus its
//! memory. Tests write arguments into memory, call wrappers, and read results back.

#![allow(dead_code)]

use weft::{Config, Engine, Error, Func, Instance, Linker, Memory, Module, Store, Val};
use weft_wasi::{WasiCtx, add_to_linker_async, add_to_linker_sync};

/// Every preview1 function: name and parameter types (`i` = i32, `I` = i64).
pub const FUNCTIONS: &[(&str, &str)] = &[
    ("args_get", "ii"),
    ("args_sizes_get", "ii"),
    ("environ_get", "ii"),
    ("environ_sizes_get", "ii"),
    ("clock_res_get", "ii"),
    ("clock_time_get", "iIi"),
    ("fd_advise", "iIIi"),
    ("fd_allocate", "iII"),
    ("fd_close", "i"),
    ("fd_datasync", "i"),
    ("fd_fdstat_get", "ii"),
    ("fd_fdstat_set_flags", "ii"),
    ("fd_fdstat_set_rights", "iII"),
    ("fd_filestat_get", "ii"),
    ("fd_filestat_set_size", "iI"),
    ("fd_filestat_set_times", "iIIi"),
    ("fd_pread", "iiiIi"),
    ("fd_prestat_get", "ii"),
    ("fd_prestat_dir_name", "iii"),
    ("fd_pwrite", "iiiIi"),
    ("fd_read", "iiii"),
    ("fd_readdir", "iiiIi"),
    ("fd_renumber", "ii"),
    ("fd_seek", "iIii"),
    ("fd_sync", "i"),
    ("fd_tell", "ii"),
    ("fd_write", "iiii"),
    ("path_create_directory", "iii"),
    ("path_filestat_get", "iiiii"),
    ("path_filestat_set_times", "iiiiIIi"),
    ("path_link", "iiiiiii"),
    ("path_open", "iiiiiIIii"),
    ("path_readlink", "iiiiii"),
    ("path_remove_directory", "iii"),
    ("path_rename", "iiiiii"),
    ("path_symlink", "iiiii"),
    ("path_unlink_file", "iii"),
    ("poll_oneoff", "iiii"),
    ("proc_raise", "i"),
    ("sched_yield", ""),
    ("random_get", "ii"),
    ("sock_accept", "iii"),
    ("sock_recv", "iiiiii"),
    ("sock_send", "iiiii"),
    ("sock_shutdown", "ii"),
];

fn wasm_types(sig: &str) -> String {
    sig.chars()
        .map(|c| if c == 'I' { " i64" } else { " i32" })
        .collect()
}

/// The guest module's text: imports, wrappers, a one-page memory, and `extra` (more
/// functions a test wants).
pub fn guest_wat(extra: &str) -> String {
    let mut wat = String::from("(module\n");
    for (name, sig) in FUNCTIONS {
        wat += &format!(
            "  (import \"wasi_snapshot_preview1\" \"{name}\" (func ${name} (param{}) (result i32)))\n",
            wasm_types(sig)
        );
    }
    wat += "  (import \"wasi_snapshot_preview1\" \"proc_exit\" (func $proc_exit (param i32)))\n";
    wat += "  (memory (export \"memory\") 1)\n";
    for (name, sig) in FUNCTIONS {
        let gets: String = (0..sig.len()).map(|i| format!(" local.get {i}")).collect();
        wat += &format!(
            "  (func (export \"call_{name}\") (param{}) (result i32){gets} call ${name})\n",
            wasm_types(sig)
        );
    }
    wat += "  (func (export \"call_proc_exit\") (param i32) local.get 0 call $proc_exit)\n";
    wat += extra;
    wat += ")\n";
    wat
}

/// Which binding a guest is linked with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    Sync,
    Async,
}

pub fn engine() -> Engine {
    Engine::new(&Config::new()).expect("engine")
}

/// An instantiated guest.
pub struct Guest {
    pub store: Store<WasiCtx>,
    pub instance: Instance,
    pub memory: Memory,
}

impl Guest {
    pub fn new(ctx: WasiCtx, binding: Binding) -> Guest {
        Self::with_extra(ctx, binding, "")
    }

    pub fn with_extra(ctx: WasiCtx, binding: Binding, extra: &str) -> Guest {
        let engine = engine();
        let module =
            Module::new(&engine, wat::parse_str(guest_wat(extra)).expect("wat")).expect("module");
        let mut linker = Linker::new(&engine);
        match binding {
            Binding::Sync => add_to_linker_sync(&mut linker, |ctx: &mut WasiCtx| ctx),
            Binding::Async => add_to_linker_async(&mut linker, |ctx: &mut WasiCtx| ctx),
        }
        .expect("link");
        let mut store = Store::new(&engine, ctx);
        let instance = linker
            .instantiate(&mut store, &module)
            .expect("instantiate");
        let memory = instance.get_memory(&mut store, "memory").expect("memory");
        Guest {
            store,
            instance,
            memory,
        }
    }

    pub fn func(&mut self, name: &str) -> Func {
        self.instance
            .get_func(&mut self.store, name)
            .unwrap_or_else(|| panic!("no export {name}"))
    }

    /// Calls `call_NAME` synchronously; the errno (or the error).
    pub fn try_call(&mut self, name: &str, args: &[Val]) -> Result<i32, Error> {
        let func = self.func(&format!("call_{name}"));
        let mut results = [Val::I32(0)];
        func.call(&mut self.store, args, &mut results)?;
        Ok(results[0].i32().expect("i32 result"))
    }

    /// Calls `call_NAME` synchronously and returns the errno.
    pub fn call(&mut self, name: &str, args: &[Val]) -> i32 {
        self.try_call(name, args)
            .unwrap_or_else(|e| panic!("{name} failed: {e}"))
    }

    /// Calls `call_NAME` as a promising call.
    pub async fn call_async(&mut self, name: &str, args: &[Val]) -> Result<i32, Error> {
        let func = self.func(&format!("call_{name}"));
        let mut results = [Val::I32(0)];
        func.call_async(&mut self.store, args, &mut results).await?;
        Ok(results[0].i32().expect("i32 result"))
    }

    pub fn write(&mut self, at: u32, bytes: &[u8]) {
        self.memory
            .write(&mut self.store, at as usize, bytes)
            .expect("write");
    }

    pub fn read(&self, at: u32, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        self.memory
            .read(&self.store, at as usize, &mut out)
            .expect("read");
        out
    }

    pub fn u32(&self, at: u32) -> u32 {
        u32::from_le_bytes(self.read(at, 4).try_into().unwrap())
    }

    pub fn u64(&self, at: u32) -> u64 {
        u64::from_le_bytes(self.read(at, 8).try_into().unwrap())
    }

    /// Writes `s` at `at` and returns `(at, len)` as arguments.
    pub fn string(&mut self, at: u32, s: &str) -> (Val, Val) {
        self.write(at, s.as_bytes());
        (i(at), i(s.len() as u32))
    }

    /// Writes one iovec at `at` pointing to `(buf, len)`.
    pub fn iovec(&mut self, at: u32, buf: u32, len: u32) {
        self.write(at, &buf.to_le_bytes());
        self.write(at + 4, &len.to_le_bytes());
    }

    /// Opens `path` beneath directory `dir` with the given open flags and rights; the fd or
    /// the errno.
    pub fn open(
        &mut self,
        dir: u32,
        path: &str,
        oflags: u32,
        rights: u64,
        fdflags: u32,
    ) -> Result<u32, i32> {
        let (p, l) = self.string(6000, path);
        let errno = self.call(
            "path_open",
            &[
                i(dir),
                i(1),
                p,
                l,
                i(oflags),
                I(rights),
                I(rights),
                i(fdflags),
                i(6500),
            ],
        );
        if errno == 0 {
            Ok(self.u32(6500))
        } else {
            Err(errno)
        }
    }

    /// Writes `bytes` to `fd` with `fd_write`; the count or the errno.
    pub fn write_fd(&mut self, fd: u32, bytes: &[u8]) -> Result<u32, i32> {
        self.write(7000, bytes);
        self.iovec(6900, 7000, bytes.len() as u32);
        let errno = self.call("fd_write", &[i(fd), i(6900), i(1), i(6950)]);
        if errno == 0 {
            Ok(self.u32(6950))
        } else {
            Err(errno)
        }
    }

    /// Reads up to `len` bytes from `fd` with `fd_read`.
    pub fn read_fd(&mut self, fd: u32, len: u32) -> Result<Vec<u8>, i32> {
        self.iovec(6900, 7000, len);
        let errno = self.call("fd_read", &[i(fd), i(6900), i(1), i(6950)]);
        if errno == 0 {
            let n = self.u32(6950);
            Ok(self.read(7000, n as usize))
        } else {
            Err(errno)
        }
    }
}

pub fn i(v: u32) -> Val {
    Val::I32(v as i32)
}

#[allow(non_snake_case)]
pub fn I(v: u64) -> Val {
    Val::I64(v as i64)
}

// The errno values the tests compare against (preview1 numbering).
pub const SUCCESS: i32 = 0;
pub const EBADF: i32 = 8;
pub const EEXIST: i32 = 20;
pub const EFAULT: i32 = 21;
pub const EINVAL: i32 = 28;
pub const EISDIR: i32 = 31;
pub const ELOOP: i32 = 32;
pub const ENOENT: i32 = 44;
pub const ENOTDIR: i32 = 54;
pub const ENOTEMPTY: i32 = 55;
pub const ENOTSOCK: i32 = 57;
pub const EPERM: i32 = 63;
pub const ESPIPE: i32 = 70;
pub const ENOTCAPABLE: i32 = 76;

pub const RIGHTS_ALL: u64 = (1 << 30) - 1;
pub const OFLAGS_CREAT: u32 = 1;
pub const OFLAGS_DIRECTORY: u32 = 2;
pub const OFLAGS_EXCL: u32 = 4;
pub const OFLAGS_TRUNC: u32 = 8;

/// A fresh scratch directory under the system's temp dir.
pub fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "weft-wasi-{name}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A `current_thread` tokio runtime with its time driver: what the async binding needs.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}
