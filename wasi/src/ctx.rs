//! The state of one WASI guest: arguments, environment, and the descriptor table, built with
//! [`WasiCtxBuilder`].

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::abi::*;

/// What a guest may do inside a preopened directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirPerms {
    /// List entries, stat, open files and subdirectories.
    pub read: bool,
    /// Create, remove, rename and link entries.
    pub mutate: bool,
}

impl DirPerms {
    /// Everything.
    pub const ALL: DirPerms = DirPerms {
        read: true,
        mutate: true,
    };
    /// Look, don't touch.
    pub const READ_ONLY: DirPerms = DirPerms {
        read: true,
        mutate: false,
    };
}

/// What a guest may do with files it opens inside a preopened directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilePerms {
    /// Open files for reading.
    pub read: bool,
    /// Open files for writing (and create or truncate them).
    pub write: bool,
}

impl FilePerms {
    /// Read and write.
    pub const ALL: FilePerms = FilePerms {
        read: true,
        write: true,
    };
    /// Read only.
    pub const READ_ONLY: FilePerms = FilePerms {
        read: true,
        write: false,
    };
}

/// Bytes a guest reads from its stdin, held in memory (for tests and embedders).
#[derive(Clone, Debug, Default)]
pub struct MemoryInputPipe {
    inner: Arc<Mutex<io::Cursor<Vec<u8>>>>,
}

impl MemoryInputPipe {
    /// A pipe that yields `bytes`, then end of file.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        MemoryInputPipe {
            inner: Arc::new(Mutex::new(io::Cursor::new(bytes.into()))),
        }
    }

    fn remaining(&self) -> u64 {
        let cursor = lock(&self.inner);
        (cursor.get_ref().len() as u64).saturating_sub(cursor.position())
    }
}

/// Collects what a guest writes to stdout or stderr, in memory; clones share the buffer, so
/// the host keeps one to read [`MemoryOutputPipe::contents`] after the guest ran.
#[derive(Clone, Debug, Default)]
pub struct MemoryOutputPipe {
    inner: Arc<Mutex<Vec<u8>>>,
}

impl MemoryOutputPipe {
    /// An empty pipe.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything written so far.
    pub fn contents(&self) -> Vec<u8> {
        lock(&self.inner).clone()
    }
}

/// A mutex whose poisoning (a panic while writing a byte buffer) cannot leave it inconsistent.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A stdio stream: the process's own, a memory pipe, or any `Read`/`Write` the host gives.
pub(crate) enum Stream {
    Stdin,
    Stdout,
    Stderr,
    MemoryIn(MemoryInputPipe),
    MemoryOut(MemoryOutputPipe),
    Reader(Mutex<Box<dyn Read + Send>>),
    Writer(Mutex<Box<dyn Write + Send>>),
    /// Reads give end of file; writes are discarded.
    Null,
}

impl Stream {
    pub(crate) fn readable(&self) -> bool {
        matches!(
            self,
            Stream::Stdin | Stream::MemoryIn(_) | Stream::Reader(_) | Stream::Null
        )
    }

    pub(crate) fn writable(&self) -> bool {
        matches!(
            self,
            Stream::Stdout
                | Stream::Stderr
                | Stream::MemoryOut(_)
                | Stream::Writer(_)
                | Stream::Null
        )
    }

    /// Whether reads or writes may wait (and so belong on the blocking pool in async mode).
    pub(crate) fn may_block(&self) -> bool {
        !matches!(
            self,
            Stream::MemoryIn(_) | Stream::MemoryOut(_) | Stream::Null
        )
    }

    pub(crate) fn is_terminal(&self) -> bool {
        use std::io::IsTerminal;
        match self {
            Stream::Stdin => io::stdin().is_terminal(),
            Stream::Stdout => io::stdout().is_terminal(),
            Stream::Stderr => io::stderr().is_terminal(),
            _ => false,
        }
    }

    /// Bytes readable without waiting, where known (for `poll_oneoff`).
    pub(crate) fn ready_bytes(&self) -> u64 {
        match self {
            Stream::MemoryIn(pipe) => pipe.remaining(),
            _ => 0,
        }
    }

    /// Reads at most `max` bytes (blocking).
    pub(crate) fn read(&self, max: usize) -> io::Result<Vec<u8>> {
        let mut buffer = vec![0; max];
        let n = match self {
            Stream::Stdin => io::stdin().lock().read(&mut buffer)?,
            Stream::MemoryIn(pipe) => lock(&pipe.inner).read(&mut buffer)?,
            Stream::Reader(reader) => lock(reader).read(&mut buffer)?,
            Stream::Null => 0,
            _ => return Err(io::Error::from_raw_os_error(libc::EBADF)),
        };
        buffer.truncate(n);
        Ok(buffer)
    }

    /// Writes all of `bytes` and flushes (blocking): nothing stays buffered in the host, so a
    /// `proc_exit` right after loses nothing.
    pub(crate) fn write(&self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()?;
            }
            Stream::Stderr => io::stderr().lock().write_all(bytes)?,
            Stream::MemoryOut(pipe) => lock(&pipe.inner).extend_from_slice(bytes),
            Stream::Writer(writer) => {
                let mut writer = lock(writer);
                writer.write_all(bytes)?;
                writer.flush()?;
            }
            Stream::Null => {}
            _ => return Err(io::Error::from_raw_os_error(libc::EBADF)),
        }
        Ok(bytes.len())
    }
}

/// An open regular file (or other non-directory the guest opened by path).
pub(crate) struct OpenFile {
    pub file: std::fs::File,
    pub readable: bool,
    pub writable: bool,
}

/// An open directory: a capability to everything beneath it, and nothing else.
pub(crate) struct OpenDir {
    pub dir: cap_std::fs::Dir,
    pub perms: DirPerms,
    pub file_perms: FilePerms,
    /// The guest path it was preopened as (`fd_prestat_get` reports it), if it was.
    pub preopen: Option<String>,
    /// The entries of the last `fd_readdir` that started at cookie 0, for the calls that
    /// continue from a later cookie.
    pub listing: Mutex<Option<Arc<Vec<crate::preview1::DirListing>>>>,
}

/// The cached listing of `dir` (see [`OpenDir::listing`]).
pub(crate) fn lock_listing(
    dir: &OpenDir,
) -> std::sync::MutexGuard<'_, Option<Arc<Vec<crate::preview1::DirListing>>>> {
    lock(&dir.listing)
}

/// A socket the host handed in, or one accepted from such a listener.
pub(crate) enum Socket {
    Listener(std::net::TcpListener),
    Stream(std::net::TcpStream),
}

/// What a descriptor refers to. Cloning is cheap (an `Arc`), so calls take their handle out
/// of the table and keep it across awaits while the table stays free for other calls.
#[derive(Clone)]
pub(crate) enum Descriptor {
    Stream(Arc<Stream>),
    File(Arc<OpenFile>),
    Dir(Arc<OpenDir>),
    Socket(Arc<Socket>),
}

/// A descriptor with the rights the guest holds on it.
#[derive(Clone)]
pub(crate) struct Entry {
    pub descriptor: Descriptor,
    pub rights_base: u64,
    pub rights_inheriting: u64,
}

/// How many descriptors one guest may have open.
const MAX_DESCRIPTORS: usize = 1 << 14;

/// The guest's descriptor table: numbers to descriptors; new ones take the lowest free number.
#[derive(Default)]
pub(crate) struct FdTable {
    entries: BTreeMap<u32, Entry>,
}

impl FdTable {
    pub(crate) fn get(&self, fd: u32) -> Result<&Entry, Errno> {
        self.entries.get(&fd).ok_or(Errno::Badf)
    }

    pub(crate) fn get_mut(&mut self, fd: u32) -> Result<&mut Entry, Errno> {
        self.entries.get_mut(&fd).ok_or(Errno::Badf)
    }

    pub(crate) fn push(&mut self, entry: Entry) -> Result<u32, Errno> {
        if self.entries.len() >= MAX_DESCRIPTORS {
            return Err(Errno::Mfile);
        }
        let mut fd = 0;
        for &used in self.entries.keys() {
            if used != fd {
                break;
            }
            fd += 1;
        }
        self.entries.insert(fd, entry);
        Ok(fd)
    }

    pub(crate) fn insert_at(&mut self, fd: u32, entry: Entry) {
        self.entries.insert(fd, entry);
    }

    pub(crate) fn remove(&mut self, fd: u32) -> Result<Entry, Errno> {
        self.entries.remove(&fd).ok_or(Errno::Badf)
    }
}

/// The state of one WASI guest. It lives in the store's data (the binding gets it through the
/// accessor given to `add_to_linker_*`); calls borrow it only between their awaits.
#[derive(Default)]
pub struct WasiCtx {
    pub(crate) args: Vec<Vec<u8>>,
    pub(crate) env: Vec<Vec<u8>>,
    pub(crate) table: FdTable,
}

impl WasiCtx {
    /// A builder for a context.
    pub fn builder() -> WasiCtxBuilder {
        WasiCtxBuilder::new()
    }
}

impl std::fmt::Debug for WasiCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasiCtx")
            .field("args", &self.args.len())
            .field("env", &self.env.len())
            .field("descriptors", &self.table.entries.len())
            .finish()
    }
}

/// Why a [`WasiCtxBuilder`] could not build its context.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// An argument or environment entry contains a NUL byte (the guest sees C strings).
    #[error("{0:?} contains a NUL byte")]
    Nul(String),
    /// An environment variable's name is empty or contains `=`.
    #[error("invalid environment variable name {0:?}")]
    EnvName(String),
    /// More preopens than a guest may hold descriptors.
    #[error("too many preopened descriptors")]
    TooManyDescriptors,
    /// A directory to preopen could not be opened.
    #[error("cannot open directory {path}: {error}")]
    Preopen {
        /// The host path given.
        path: String,
        /// Why opening it failed.
        error: io::Error,
    },
}

/// Builds a [`WasiCtx`]: arguments, environment, stdio, preopened directories and sockets.
///
/// By default the guest has no arguments, no environment, an empty stdin, stdout and stderr
/// that discard what is written, and no directories.
pub struct WasiCtxBuilder {
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdio: [Stream; 3],
    preopens: Vec<(Descriptor, u64, u64)>,
    errors: Vec<BuildError>,
}

impl Default for WasiCtxBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl WasiCtxBuilder {
    /// A builder with nothing given to the guest.
    pub fn new() -> Self {
        WasiCtxBuilder {
            args: Vec::new(),
            env: Vec::new(),
            stdio: [Stream::Null, Stream::Null, Stream::Null],
            preopens: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Appends one argument (the first is the program's name, `argv[0]`).
    pub fn arg(&mut self, arg: impl Into<String>) -> &mut Self {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<S: Into<String>>(&mut self, args: impl IntoIterator<Item = S>) -> &mut Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one environment variable.
    pub fn env(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Gives the guest this process's stdin, stdout and stderr.
    pub fn inherit_stdio(&mut self) -> &mut Self {
        self.stdio = [Stream::Stdin, Stream::Stdout, Stream::Stderr];
        self
    }

    /// Gives the guest this process's stdin.
    pub fn inherit_stdin(&mut self) -> &mut Self {
        self.stdio[0] = Stream::Stdin;
        self
    }

    /// Gives the guest this process's stdout.
    pub fn inherit_stdout(&mut self) -> &mut Self {
        self.stdio[1] = Stream::Stdout;
        self
    }

    /// Gives the guest this process's stderr.
    pub fn inherit_stderr(&mut self) -> &mut Self {
        self.stdio[2] = Stream::Stderr;
        self
    }

    /// The guest's stdin reads from `pipe`.
    pub fn stdin(&mut self, pipe: MemoryInputPipe) -> &mut Self {
        self.stdio[0] = Stream::MemoryIn(pipe);
        self
    }

    /// The guest's stdout goes to `pipe`.
    pub fn stdout(&mut self, pipe: MemoryOutputPipe) -> &mut Self {
        self.stdio[1] = Stream::MemoryOut(pipe);
        self
    }

    /// The guest's stderr goes to `pipe`.
    pub fn stderr(&mut self, pipe: MemoryOutputPipe) -> &mut Self {
        self.stdio[2] = Stream::MemoryOut(pipe);
        self
    }

    /// The guest's stdin reads from `reader` (on the blocking pool in async mode).
    pub fn stdin_reader(&mut self, reader: impl Read + Send + 'static) -> &mut Self {
        self.stdio[0] = Stream::Reader(Mutex::new(Box::new(reader)));
        self
    }

    /// The guest's stdout goes to `writer` (on the blocking pool in async mode).
    pub fn stdout_writer(&mut self, writer: impl Write + Send + 'static) -> &mut Self {
        self.stdio[1] = Stream::Writer(Mutex::new(Box::new(writer)));
        self
    }

    /// The guest's stderr goes to `writer` (on the blocking pool in async mode).
    pub fn stderr_writer(&mut self, writer: impl Write + Send + 'static) -> &mut Self {
        self.stdio[2] = Stream::Writer(Mutex::new(Box::new(writer)));
        self
    }

    /// Preopens the host directory `host_path` as `guest_path`: the guest reaches everything
    /// beneath it, with `perms` on the directory tree and `file_perms` on its files, and
    /// nothing outside it. Preopens take descriptors 3, 4, ... in the order given.
    pub fn preopened_dir(
        &mut self,
        host_path: impl AsRef<Path>,
        guest_path: impl Into<String>,
        perms: DirPerms,
        file_perms: FilePerms,
    ) -> &mut Self {
        let host_path = host_path.as_ref();
        match cap_std::fs::Dir::open_ambient_dir(host_path, cap_std::ambient_authority()) {
            Ok(dir) => self.preopens.push((
                Descriptor::Dir(Arc::new(OpenDir {
                    dir,
                    perms,
                    file_perms,
                    preopen: Some(guest_path.into()),
                    listing: Mutex::new(None),
                })),
                RIGHTS_DIRECTORY,
                RIGHTS_DIRECTORY | RIGHTS_FILE,
            )),
            Err(error) => self.errors.push(BuildError::Preopen {
                path: host_path.display().to_string(),
                error,
            }),
        }
        self
    }

    /// Hands the guest a listening TCP socket (like wasmtime's `--tcplisten`); it takes the
    /// next descriptor after the preopens given before it. The guest accepts connections with
    /// `sock_accept`.
    pub fn preopened_socket(&mut self, listener: std::net::TcpListener) -> &mut Self {
        self.preopens.push((
            Descriptor::Socket(Arc::new(Socket::Listener(listener))),
            RIGHTS_SOCKET,
            RIGHTS_SOCKET,
        ));
        self
    }

    /// The context.
    ///
    /// # Errors
    /// The first problem met: a preopen that could not be opened, a NUL byte in an argument or
    /// environment entry, or an invalid variable name.
    pub fn build(&mut self) -> Result<WasiCtx, BuildError> {
        if !self.errors.is_empty() {
            return Err(self.errors.remove(0));
        }
        let mut ctx = WasiCtx::default();
        for arg in &self.args {
            ctx.args.push(c_string(arg)?);
        }
        for (name, value) in &self.env {
            if name.is_empty() || name.contains('=') {
                return Err(BuildError::EnvName(name.clone()));
            }
            ctx.env.push(c_string(&format!("{name}={value}"))?);
        }
        let stdio = std::mem::replace(&mut self.stdio, [Stream::Null, Stream::Null, Stream::Null]);
        for stream in stdio {
            ctx.table
                .push(Entry {
                    descriptor: Descriptor::Stream(Arc::new(stream)),
                    rights_base: RIGHTS_STREAM,
                    rights_inheriting: 0,
                })
                .expect("an empty table has room for stdio");
        }
        for (descriptor, rights_base, rights_inheriting) in self.preopens.drain(..) {
            ctx.table
                .push(Entry {
                    descriptor,
                    rights_base,
                    rights_inheriting,
                })
                .map_err(|_| BuildError::TooManyDescriptors)?;
        }
        Ok(ctx)
    }
}

fn c_string(s: &str) -> Result<Vec<u8>, BuildError> {
    if s.contains('\0') {
        return Err(BuildError::Nul(s.to_owned()));
    }
    let mut bytes = s.as_bytes().to_vec();
    bytes.push(0);
    Ok(bytes)
}
