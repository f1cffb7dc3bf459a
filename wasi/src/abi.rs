//! The preview1 ABI: errno values, flag bits, enum values and the byte layout of the structs
//! the guest passes by pointer, as defined by `wasi_snapshot_preview1.witx`. The constants
//! carry the witx's names (the type's prefix, then the value's name) and the spec's meaning.

#![allow(missing_docs)]

/// A preview1 error code. `Success` (0) is what a function returns when nothing went wrong.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Errno {
    Success = 0,
    TooBig = 1,
    Acces = 2,
    Addrinuse = 3,
    Addrnotavail = 4,
    Afnosupport = 5,
    Again = 6,
    Already = 7,
    Badf = 8,
    Badmsg = 9,
    Busy = 10,
    Canceled = 11,
    Child = 12,
    Connaborted = 13,
    Connrefused = 14,
    Connreset = 15,
    Deadlk = 16,
    Destaddrreq = 17,
    Dom = 18,
    Dquot = 19,
    Exist = 20,
    Fault = 21,
    Fbig = 22,
    Hostunreach = 23,
    Idrm = 24,
    Ilseq = 25,
    Inprogress = 26,
    Intr = 27,
    Inval = 28,
    Io = 29,
    Isconn = 30,
    Isdir = 31,
    Loop = 32,
    Mfile = 33,
    Mlink = 34,
    Msgsize = 35,
    Multihop = 36,
    Nametoolong = 37,
    Netdown = 38,
    Netreset = 39,
    Netunreach = 40,
    Nfile = 41,
    Nobufs = 42,
    Nodev = 43,
    Noent = 44,
    Noexec = 45,
    Nolck = 46,
    Nolink = 47,
    Nomem = 48,
    Nomsg = 49,
    Noprotoopt = 50,
    Nospc = 51,
    Nosys = 52,
    Notconn = 53,
    Notdir = 54,
    Notempty = 55,
    Notrecoverable = 56,
    Notsock = 57,
    Notsup = 58,
    Notty = 59,
    Nxio = 60,
    Overflow = 61,
    Ownerdead = 62,
    Perm = 63,
    Pipe = 64,
    Proto = 65,
    Protonosupport = 66,
    Prototype = 67,
    Range = 68,
    Rofs = 69,
    Spipe = 70,
    Srch = 71,
    Stale = 72,
    Timedout = 73,
    Txtbsy = 74,
    Xdev = 75,
    Notcapable = 76,
}

impl Errno {
    /// The errno for a host I/O error.
    ///
    /// cap-std reports a path that would leave its directory (`..` past the root, an absolute
    /// path, a symlink pointing out) as `PermissionDenied` without an OS code; that becomes
    /// `EPERM`, which is what wasmtime returns for sandbox escapes too.
    pub fn from_io(error: &std::io::Error) -> Errno {
        match error.raw_os_error() {
            Some(code) => Errno::from_os(code),
            None => match error.kind() {
                std::io::ErrorKind::NotFound => Errno::Noent,
                std::io::ErrorKind::PermissionDenied => Errno::Perm,
                std::io::ErrorKind::AlreadyExists => Errno::Exist,
                std::io::ErrorKind::InvalidInput => Errno::Inval,
                std::io::ErrorKind::Unsupported => Errno::Notsup,
                std::io::ErrorKind::WouldBlock => Errno::Again,
                std::io::ErrorKind::BrokenPipe => Errno::Pipe,
                std::io::ErrorKind::Interrupted => Errno::Intr,
                std::io::ErrorKind::OutOfMemory => Errno::Nomem,
                _ => Errno::Io,
            },
        }
    }

    /// The errno for a Linux/POSIX `errno` value.
    pub fn from_os(code: i32) -> Errno {
        use libc::*;
        match code {
            E2BIG => Errno::TooBig,
            EACCES => Errno::Acces,
            EADDRINUSE => Errno::Addrinuse,
            EADDRNOTAVAIL => Errno::Addrnotavail,
            EAFNOSUPPORT => Errno::Afnosupport,
            EAGAIN => Errno::Again,
            EALREADY => Errno::Already,
            EBADF => Errno::Badf,
            EBADMSG => Errno::Badmsg,
            EBUSY => Errno::Busy,
            ECANCELED => Errno::Canceled,
            ECHILD => Errno::Child,
            ECONNABORTED => Errno::Connaborted,
            ECONNREFUSED => Errno::Connrefused,
            ECONNRESET => Errno::Connreset,
            EDEADLK => Errno::Deadlk,
            EDESTADDRREQ => Errno::Destaddrreq,
            EDOM => Errno::Dom,
            EDQUOT => Errno::Dquot,
            EEXIST => Errno::Exist,
            EFAULT => Errno::Fault,
            EFBIG => Errno::Fbig,
            EHOSTUNREACH => Errno::Hostunreach,
            EIDRM => Errno::Idrm,
            EILSEQ => Errno::Ilseq,
            EINPROGRESS => Errno::Inprogress,
            EINTR => Errno::Intr,
            EINVAL => Errno::Inval,
            EIO => Errno::Io,
            EISCONN => Errno::Isconn,
            EISDIR => Errno::Isdir,
            ELOOP => Errno::Loop,
            EMFILE => Errno::Mfile,
            EMLINK => Errno::Mlink,
            EMSGSIZE => Errno::Msgsize,
            EMULTIHOP => Errno::Multihop,
            ENAMETOOLONG => Errno::Nametoolong,
            ENETDOWN => Errno::Netdown,
            ENETRESET => Errno::Netreset,
            ENETUNREACH => Errno::Netunreach,
            ENFILE => Errno::Nfile,
            ENOBUFS => Errno::Nobufs,
            ENODEV => Errno::Nodev,
            ENOENT => Errno::Noent,
            ENOEXEC => Errno::Noexec,
            ENOLCK => Errno::Nolck,
            ENOLINK => Errno::Nolink,
            ENOMEM => Errno::Nomem,
            ENOMSG => Errno::Nomsg,
            ENOPROTOOPT => Errno::Noprotoopt,
            ENOSPC => Errno::Nospc,
            ENOSYS => Errno::Nosys,
            ENOTCONN => Errno::Notconn,
            ENOTDIR => Errno::Notdir,
            ENOTEMPTY => Errno::Notempty,
            ENOTRECOVERABLE => Errno::Notrecoverable,
            ENOTSOCK => Errno::Notsock,
            ENOTSUP => Errno::Notsup,
            ENOTTY => Errno::Notty,
            ENXIO => Errno::Nxio,
            EOVERFLOW => Errno::Overflow,
            EOWNERDEAD => Errno::Ownerdead,
            EPERM => Errno::Perm,
            EPIPE => Errno::Pipe,
            EPROTO => Errno::Proto,
            EPROTONOSUPPORT => Errno::Protonosupport,
            EPROTOTYPE => Errno::Prototype,
            ERANGE => Errno::Range,
            EROFS => Errno::Rofs,
            ESPIPE => Errno::Spipe,
            ESRCH => Errno::Srch,
            ESTALE => Errno::Stale,
            ETIMEDOUT => Errno::Timedout,
            ETXTBSY => Errno::Txtbsy,
            EXDEV => Errno::Xdev,
            _ => Errno::Io,
        }
    }
}

impl From<std::io::Error> for Errno {
    fn from(error: std::io::Error) -> Self {
        Errno::from_io(&error)
    }
}

impl From<rustix::io::Errno> for Errno {
    fn from(error: rustix::io::Errno) -> Self {
        Errno::from_os(error.raw_os_error())
    }
}

// `filetype`
pub const FILETYPE_UNKNOWN: u8 = 0;
pub const FILETYPE_BLOCK_DEVICE: u8 = 1;
pub const FILETYPE_CHARACTER_DEVICE: u8 = 2;
pub const FILETYPE_DIRECTORY: u8 = 3;
pub const FILETYPE_REGULAR_FILE: u8 = 4;
pub const FILETYPE_SOCKET_DGRAM: u8 = 5;
pub const FILETYPE_SOCKET_STREAM: u8 = 6;
pub const FILETYPE_SYMBOLIC_LINK: u8 = 7;

// `fdflags`
pub const FDFLAGS_APPEND: u16 = 1 << 0;
pub const FDFLAGS_DSYNC: u16 = 1 << 1;
pub const FDFLAGS_NONBLOCK: u16 = 1 << 2;
pub const FDFLAGS_RSYNC: u16 = 1 << 3;
pub const FDFLAGS_SYNC: u16 = 1 << 4;

// `oflags`
pub const OFLAGS_CREAT: u16 = 1 << 0;
pub const OFLAGS_DIRECTORY: u16 = 1 << 1;
pub const OFLAGS_EXCL: u16 = 1 << 2;
pub const OFLAGS_TRUNC: u16 = 1 << 3;

// `lookupflags`
pub const LOOKUPFLAGS_SYMLINK_FOLLOW: u32 = 1 << 0;

// `fstflags`
pub const FSTFLAGS_ATIM: u16 = 1 << 0;
pub const FSTFLAGS_ATIM_NOW: u16 = 1 << 1;
pub const FSTFLAGS_MTIM: u16 = 1 << 2;
pub const FSTFLAGS_MTIM_NOW: u16 = 1 << 3;

// `whence`
pub const WHENCE_SET: u8 = 0;
pub const WHENCE_CUR: u8 = 1;
pub const WHENCE_END: u8 = 2;

// `clockid`
pub const CLOCKID_REALTIME: u32 = 0;
pub const CLOCKID_MONOTONIC: u32 = 1;
pub const CLOCKID_PROCESS_CPUTIME_ID: u32 = 2;
pub const CLOCKID_THREAD_CPUTIME_ID: u32 = 3;

// `advice`
pub const ADVICE_NORMAL: u8 = 0;
pub const ADVICE_SEQUENTIAL: u8 = 1;
pub const ADVICE_RANDOM: u8 = 2;
pub const ADVICE_WILLNEED: u8 = 3;
pub const ADVICE_DONTNEED: u8 = 4;
pub const ADVICE_NOREUSE: u8 = 5;

// `eventtype`
pub const EVENTTYPE_CLOCK: u8 = 0;
pub const EVENTTYPE_FD_READ: u8 = 1;
pub const EVENTTYPE_FD_WRITE: u8 = 2;

// `subclockflags`, `eventrwflags`
pub const SUBCLOCKFLAGS_ABSTIME: u16 = 1 << 0;
pub const EVENTRWFLAGS_FD_READWRITE_HANGUP: u16 = 1 << 0;

// `preopentype`
pub const PREOPENTYPE_DIR: u8 = 0;

// `riflags`, `roflags`, `sdflags`
pub const RIFLAGS_RECV_PEEK: u16 = 1 << 0;
pub const RIFLAGS_RECV_WAITALL: u16 = 1 << 1;
pub const ROFLAGS_RECV_DATA_TRUNCATED: u16 = 1 << 0;
pub const SDFLAGS_RD: u8 = 1 << 0;
pub const SDFLAGS_WR: u8 = 1 << 1;

// `rights`
pub const RIGHTS_FD_DATASYNC: u64 = 1 << 0;
pub const RIGHTS_FD_READ: u64 = 1 << 1;
pub const RIGHTS_FD_SEEK: u64 = 1 << 2;
pub const RIGHTS_FD_FDSTAT_SET_FLAGS: u64 = 1 << 3;
pub const RIGHTS_FD_SYNC: u64 = 1 << 4;
pub const RIGHTS_FD_TELL: u64 = 1 << 5;
pub const RIGHTS_FD_WRITE: u64 = 1 << 6;
pub const RIGHTS_FD_ADVISE: u64 = 1 << 7;
pub const RIGHTS_FD_ALLOCATE: u64 = 1 << 8;
pub const RIGHTS_PATH_CREATE_DIRECTORY: u64 = 1 << 9;
pub const RIGHTS_PATH_CREATE_FILE: u64 = 1 << 10;
pub const RIGHTS_PATH_LINK_SOURCE: u64 = 1 << 11;
pub const RIGHTS_PATH_LINK_TARGET: u64 = 1 << 12;
pub const RIGHTS_PATH_OPEN: u64 = 1 << 13;
pub const RIGHTS_FD_READDIR: u64 = 1 << 14;
pub const RIGHTS_PATH_READLINK: u64 = 1 << 15;
pub const RIGHTS_PATH_RENAME_SOURCE: u64 = 1 << 16;
pub const RIGHTS_PATH_RENAME_TARGET: u64 = 1 << 17;
pub const RIGHTS_PATH_FILESTAT_GET: u64 = 1 << 18;
pub const RIGHTS_PATH_FILESTAT_SET_SIZE: u64 = 1 << 19;
pub const RIGHTS_PATH_FILESTAT_SET_TIMES: u64 = 1 << 20;
pub const RIGHTS_FD_FILESTAT_GET: u64 = 1 << 21;
pub const RIGHTS_FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
pub const RIGHTS_FD_FILESTAT_SET_TIMES: u64 = 1 << 23;
pub const RIGHTS_PATH_SYMLINK: u64 = 1 << 24;
pub const RIGHTS_PATH_REMOVE_DIRECTORY: u64 = 1 << 25;
pub const RIGHTS_PATH_UNLINK_FILE: u64 = 1 << 26;
pub const RIGHTS_POLL_FD_READWRITE: u64 = 1 << 27;
pub const RIGHTS_SOCK_SHUTDOWN: u64 = 1 << 28;
pub const RIGHTS_SOCK_ACCEPT: u64 = 1 << 29;
/// Every right preview1 defines.
pub const RIGHTS_ALL: u64 = (1 << 30) - 1;

/// The rights that make sense on a regular file.
pub const RIGHTS_FILE: u64 = RIGHTS_FD_DATASYNC
    | RIGHTS_FD_READ
    | RIGHTS_FD_SEEK
    | RIGHTS_FD_FDSTAT_SET_FLAGS
    | RIGHTS_FD_SYNC
    | RIGHTS_FD_TELL
    | RIGHTS_FD_WRITE
    | RIGHTS_FD_ADVISE
    | RIGHTS_FD_ALLOCATE
    | RIGHTS_FD_FILESTAT_GET
    | RIGHTS_FD_FILESTAT_SET_SIZE
    | RIGHTS_FD_FILESTAT_SET_TIMES
    | RIGHTS_POLL_FD_READWRITE;

/// The rights that make sense on a directory.
pub const RIGHTS_DIRECTORY: u64 = RIGHTS_FD_DATASYNC
    | RIGHTS_FD_FDSTAT_SET_FLAGS
    | RIGHTS_FD_SYNC
    | RIGHTS_PATH_CREATE_DIRECTORY
    | RIGHTS_PATH_CREATE_FILE
    | RIGHTS_PATH_LINK_SOURCE
    | RIGHTS_PATH_LINK_TARGET
    | RIGHTS_PATH_OPEN
    | RIGHTS_FD_READDIR
    | RIGHTS_PATH_READLINK
    | RIGHTS_PATH_RENAME_SOURCE
    | RIGHTS_PATH_RENAME_TARGET
    | RIGHTS_PATH_FILESTAT_GET
    | RIGHTS_PATH_FILESTAT_SET_SIZE
    | RIGHTS_PATH_FILESTAT_SET_TIMES
    | RIGHTS_FD_FILESTAT_GET
    | RIGHTS_FD_FILESTAT_SET_TIMES
    | RIGHTS_PATH_SYMLINK
    | RIGHTS_PATH_REMOVE_DIRECTORY
    | RIGHTS_PATH_UNLINK_FILE
    | RIGHTS_POLL_FD_READWRITE;

/// The rights of a stream: stdio, pipes, character devices.
pub const RIGHTS_STREAM: u64 = RIGHTS_FD_READ
    | RIGHTS_FD_WRITE
    | RIGHTS_FD_FDSTAT_SET_FLAGS
    | RIGHTS_FD_FILESTAT_GET
    | RIGHTS_POLL_FD_READWRITE;

/// The rights of a socket.
pub const RIGHTS_SOCKET: u64 = RIGHTS_FD_READ
    | RIGHTS_FD_WRITE
    | RIGHTS_FD_FDSTAT_SET_FLAGS
    | RIGHTS_FD_FILESTAT_GET
    | RIGHTS_POLL_FD_READWRITE
    | RIGHTS_SOCK_SHUTDOWN
    | RIGHTS_SOCK_ACCEPT;

// Struct sizes (the offsets are written out where each struct is read or written).
pub const IOVEC_SIZE: u32 = 8;
pub const FDSTAT_SIZE: u32 = 24;
pub const FILESTAT_SIZE: u32 = 64;
pub const DIRENT_SIZE: u32 = 24;
pub const PRESTAT_SIZE: u32 = 8;
pub const SUBSCRIPTION_SIZE: u32 = 48;
pub const EVENT_SIZE: u32 = 32;
