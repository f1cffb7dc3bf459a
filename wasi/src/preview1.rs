//! Every function of `wasi_snapshot_preview1`, engine-neutral.
//!
//! Each public function takes a [`WasiHost`] and the call's arguments as the guest passed
//! them (`u32` for `i32`, `u64` for `i64`) and returns the errno, or an [`Abort`] (`proc_exit`,
//! or the engine failing to lend memory). The shape of each is the same: read the inputs in
//! one `access` (pointers checked, handles `Arc`-cloned out of the table), do the I/O (on the
//! blocking pool in async mode), write the results in another `access`. Nothing borrowed from
//! the context or memory lives across an await.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use cap_fs_ext::{
    DirExt, FollowSymlinks, OpenOptionsFollowExt, OpenOptionsMaybeDirExt, OpenOptionsSyncExt,
    OsMetadataExt, SystemTimeSpec,
};
use cap_std::fs::{Dir, Metadata, OpenOptions};

use crate::abi::*;
use crate::ctx::{Descriptor, Entry, OpenDir, OpenFile, Socket, WasiCtx};
use crate::host::{Abort, Blocking, Failure, I32Exit, WasiHost, access, to_errno};
use crate::memory::{IoVec, total_len};

/// Calls `$mac!` with the name and parameters of every preview1 function that returns an
/// errno (all but `proc_exit`), `u32` standing for a Wasm `i32` and `u64` for an `i64`.
#[macro_export]
#[doc(hidden)]
macro_rules! for_each_preview1_function {
    ($mac:ident) => {
        $mac! {
            args_get(argv: u32, argv_buf: u32);
            args_sizes_get(argc: u32, argv_buf_size: u32);
            environ_get(environ: u32, environ_buf: u32);
            environ_sizes_get(count: u32, buf_size: u32);
            clock_res_get(id: u32, resolution: u32);
            clock_time_get(id: u32, precision: u64, time: u32);
            fd_advise(fd: u32, offset: u64, len: u64, advice: u32);
            fd_allocate(fd: u32, offset: u64, len: u64);
            fd_close(fd: u32);
            fd_datasync(fd: u32);
            fd_fdstat_get(fd: u32, stat: u32);
            fd_fdstat_set_flags(fd: u32, flags: u32);
            fd_fdstat_set_rights(fd: u32, base: u64, inheriting: u64);
            fd_filestat_get(fd: u32, stat: u32);
            fd_filestat_set_size(fd: u32, size: u64);
            fd_filestat_set_times(fd: u32, atim: u64, mtim: u64, fst_flags: u32);
            fd_pread(fd: u32, iovs: u32, iovs_len: u32, offset: u64, nread: u32);
            fd_prestat_get(fd: u32, prestat: u32);
            fd_prestat_dir_name(fd: u32, path: u32, path_len: u32);
            fd_pwrite(fd: u32, iovs: u32, iovs_len: u32, offset: u64, nwritten: u32);
            fd_read(fd: u32, iovs: u32, iovs_len: u32, nread: u32);
            fd_readdir(fd: u32, buf: u32, buf_len: u32, cookie: u64, bufused: u32);
            fd_renumber(fd: u32, to: u32);
            fd_seek(fd: u32, offset: u64, whence: u32, newoffset: u32);
            fd_sync(fd: u32);
            fd_tell(fd: u32, offset: u32);
            fd_write(fd: u32, iovs: u32, iovs_len: u32, nwritten: u32);
            path_create_directory(fd: u32, path: u32, path_len: u32);
            path_filestat_get(fd: u32, flags: u32, path: u32, path_len: u32, stat: u32);
            path_filestat_set_times(fd: u32, flags: u32, path: u32, path_len: u32, atim: u64, mtim: u64, fst_flags: u32);
            path_link(old_fd: u32, old_flags: u32, old_path: u32, old_path_len: u32, new_fd: u32, new_path: u32, new_path_len: u32);
            path_open(fd: u32, dirflags: u32, path: u32, path_len: u32, oflags: u32, rights_base: u64, rights_inheriting: u64, fdflags: u32, opened_fd: u32);
            path_readlink(fd: u32, path: u32, path_len: u32, buf: u32, buf_len: u32, bufused: u32);
            path_remove_directory(fd: u32, path: u32, path_len: u32);
            path_rename(fd: u32, old_path: u32, old_path_len: u32, new_fd: u32, new_path: u32, new_path_len: u32);
            path_symlink(old_path: u32, old_path_len: u32, fd: u32, new_path: u32, new_path_len: u32);
            path_unlink_file(fd: u32, path: u32, path_len: u32);
            poll_oneoff(subscriptions: u32, events: u32, nsubscriptions: u32, nevents: u32);
            proc_raise(signal: u32);
            sched_yield();
            random_get(buf: u32, buf_len: u32);
            sock_accept(fd: u32, flags: u32, new_fd: u32);
            sock_recv(fd: u32, ri_data: u32, ri_data_len: u32, ri_flags: u32, ro_datalen: u32, ro_flags: u32);
            sock_send(fd: u32, si_data: u32, si_data_len: u32, si_flags: u32, so_datalen: u32);
            sock_shutdown(fd: u32, how: u32);
        }
    };
}

macro_rules! public_functions {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            #[doc = concat!("`wasi_snapshot_preview1::", stringify!($name), "`.")]
            ///
            /// # Errors
            /// An [`Abort`] if the host cannot lend the context or memory.
            #[allow(clippy::too_many_arguments)] // the ABI's arity
            pub async fn $name<H: WasiHost + ?Sized>(host: &mut H, $($arg: $ty),*) -> Result<Errno, Abort> {
                to_errno(imp::$name(host, $($arg),*).await)
            }
        )*
    };
}
for_each_preview1_function!(public_functions);

/// `wasi_snapshot_preview1::proc_exit`: ends the guest's call with [`I32Exit`], after the
/// output streams are flushed (they never hold data: every write is flushed).
pub async fn proc_exit<H: WasiHost + ?Sized>(host: &mut H, code: u32) -> Abort {
    let _ = host;
    Abort::Exit(I32Exit(code as i32))
}

/// One entry of a directory listing, as `fd_readdir` reports it.
pub(crate) struct DirListing {
    name: Vec<u8>,
    ino: u64,
    filetype: u8,
}

/// The largest single read or write the host performs for one call (a shorter count is a
/// legal result; callers loop).
const MAX_IO: usize = 64 << 20;
/// Reads from streams (stdin, pipes, sockets) return what is there, up to this much.
const MAX_STREAM_READ: usize = 64 << 10;

type Step<T = ()> = Result<T, Failure>;

fn entry(ctx: &WasiCtx, fd: u32) -> Result<Entry, Errno> {
    ctx.table.get(fd).cloned()
}

fn descriptor(ctx: &WasiCtx, fd: u32) -> Result<Descriptor, Errno> {
    Ok(ctx.table.get(fd)?.descriptor.clone())
}

/// `entry` holds all of `rights`, or the call is `ENOTCAPABLE`.
fn has_rights(entry: &Entry, rights: u64) -> Result<(), Errno> {
    if entry.rights_base & rights == rights {
        Ok(())
    } else {
        Err(Errno::Notcapable)
    }
}

/// The descriptor `fd`, if it holds `rights`.
fn checked(ctx: &WasiCtx, fd: u32, rights: u64) -> Result<Descriptor, Errno> {
    let entry = ctx.table.get(fd)?;
    has_rights(entry, rights)?;
    Ok(entry.descriptor.clone())
}

/// The directory `fd` (`ENOTDIR` if it is something else), if it holds `rights`.
fn dir(ctx: &WasiCtx, fd: u32, rights: u64) -> Result<Arc<OpenDir>, Errno> {
    let entry = ctx.table.get(fd)?;
    let Descriptor::Dir(dir) = &entry.descriptor else {
        return Err(Errno::Notdir);
    };
    has_rights(entry, rights)?;
    Ok(dir.clone())
}

/// The file `fd` (`EISDIR` for a directory, `ESPIPE` for a stream), if it holds `rights`.
fn file(ctx: &WasiCtx, fd: u32, rights: u64) -> Result<Arc<OpenFile>, Errno> {
    let entry = ctx.table.get(fd)?;
    let file = match &entry.descriptor {
        Descriptor::File(file) => file.clone(),
        Descriptor::Dir(_) => return Err(Errno::Isdir),
        Descriptor::Stream(_) | Descriptor::Socket(_) => return Err(Errno::Spipe),
    };
    has_rights(entry, rights)?;
    Ok(file)
}

fn require(allowed: bool) -> Result<(), Errno> {
    if allowed {
        Ok(())
    } else {
        Err(Errno::Notcapable)
    }
}

fn filetype(ty: cap_std::fs::FileType) -> u8 {
    use cap_fs_ext::FileTypeExt;
    if ty.is_dir() {
        FILETYPE_DIRECTORY
    } else if ty.is_file() {
        FILETYPE_REGULAR_FILE
    } else if ty.is_symlink() {
        FILETYPE_SYMBOLIC_LINK
    } else if ty.is_char_device() {
        FILETYPE_CHARACTER_DEVICE
    } else if ty.is_block_device() {
        FILETYPE_BLOCK_DEVICE
    } else if ty.is_socket() {
        FILETYPE_SOCKET_STREAM
    } else {
        FILETYPE_UNKNOWN
    }
}

/// A `filestat`, laid out as the guest reads it.
fn filestat_bytes(meta: &Metadata) -> [u8; FILESTAT_SIZE as usize] {
    fn nanos(secs: i64, nsec: i64) -> u64 {
        u64::try_from(secs)
            .unwrap_or(0)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::try_from(nsec).unwrap_or(0))
    }
    let mut out = [0u8; FILESTAT_SIZE as usize];
    out[0..8].copy_from_slice(&meta.dev().to_le_bytes());
    out[8..16].copy_from_slice(&meta.ino().to_le_bytes());
    out[16] = filetype(meta.file_type());
    out[24..32].copy_from_slice(&meta.nlink().to_le_bytes());
    out[32..40].copy_from_slice(&meta.size().to_le_bytes());
    out[40..48].copy_from_slice(&nanos(meta.atime(), meta.atime_nsec()).to_le_bytes());
    out[48..56].copy_from_slice(&nanos(meta.mtime(), meta.mtime_nsec()).to_le_bytes());
    out[56..64].copy_from_slice(&nanos(meta.ctime(), meta.ctime_nsec()).to_le_bytes());
    out
}

fn std_metadata(file: &std::fs::File) -> std::io::Result<Metadata> {
    file.metadata().map(Metadata::from_just_metadata)
}

fn clock_id(id: u32) -> Result<rustix::time::ClockId, Errno> {
    use rustix::time::ClockId;
    Ok(match id {
        CLOCKID_REALTIME => ClockId::Realtime,
        CLOCKID_MONOTONIC => ClockId::Monotonic,
        CLOCKID_PROCESS_CPUTIME_ID => ClockId::ProcessCPUTime,
        CLOCKID_THREAD_CPUTIME_ID => ClockId::ThreadCPUTime,
        _ => return Err(Errno::Inval),
    })
}

fn timespec_nanos(ts: rustix::time::Timespec) -> u64 {
    u64::try_from(ts.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0))
}

/// The time a `fst_flags` pair asks for: unchanged, now, or the given timestamp.
fn time_spec(
    fst_flags: u32,
    set: u16,
    now: u16,
    timestamp: u64,
) -> Result<Option<fs_set_times::SystemTimeSpec>, Errno> {
    use fs_set_times::SystemTimeSpec;
    let (set, now) = (fst_flags & set as u32 != 0, fst_flags & now as u32 != 0);
    match (set, now) {
        (true, true) => Err(Errno::Inval),
        (true, false) => Ok(Some(SystemTimeSpec::Absolute(
            SystemTime::UNIX_EPOCH + Duration::from_nanos(timestamp),
        ))),
        (false, true) => Ok(Some(SystemTimeSpec::SymbolicNow)),
        (false, false) => Ok(None),
    }
}

fn check_fst_flags(fst_flags: u32) -> Result<(), Errno> {
    let all = FSTFLAGS_ATIM | FSTFLAGS_ATIM_NOW | FSTFLAGS_MTIM | FSTFLAGS_MTIM_NOW;
    if fst_flags & !(all as u32) != 0 {
        return Err(Errno::Inval);
    }
    Ok(())
}

/// Writes C strings and the pointers to them (for `args_get`, `environ_get`).
fn write_strings(
    mem: &mut crate::memory::GuestMemory<'_>,
    strings: &[Vec<u8>],
    pointers: u32,
    buf: u32,
) -> Result<(), Errno> {
    let mut at = buf;
    for (i, s) in strings.iter().enumerate() {
        let slot = (i as u32)
            .checked_mul(4)
            .and_then(|o| pointers.checked_add(o))
            .ok_or(Errno::Fault)?;
        mem.write_u32(slot, at)?;
        mem.write(at, s)?;
        at = at.checked_add(s.len() as u32).ok_or(Errno::Fault)?;
    }
    Ok(())
}

fn write_sizes(
    mem: &mut crate::memory::GuestMemory<'_>,
    strings: &[Vec<u8>],
    count: u32,
    size: u32,
) -> Result<(), Errno> {
    let total: usize = strings.iter().map(Vec::len).sum();
    mem.write_u32(count, strings.len() as u32)?;
    mem.write_u32(size, u32::try_from(total).map_err(|_| Errno::Overflow)?)
}

/// Reads from a descriptor at its position (`offset` `None`) or at `offset`.
async fn read_descriptor(
    blocking: Blocking,
    descriptor: Descriptor,
    max: usize,
    offset: Option<u64>,
) -> Step<Vec<u8>> {
    match descriptor {
        Descriptor::File(file) => {
            if !file.readable {
                return Err(Errno::Badf.into());
            }
            let max = max.min(MAX_IO);
            Ok(blocking
                .run(move || -> std::io::Result<Vec<u8>> {
                    let mut buffer = vec![0; max];
                    let n = match offset {
                        Some(offset) => file.file.read_at(&mut buffer, offset)?,
                        None => (&file.file).read(&mut buffer)?,
                    };
                    buffer.truncate(n);
                    Ok(buffer)
                })
                .await??)
        }
        Descriptor::Stream(stream) => {
            if offset.is_some() {
                return Err(Errno::Spipe.into());
            }
            if !stream.readable() {
                return Err(Errno::Badf.into());
            }
            let max = max.min(MAX_STREAM_READ);
            if stream.may_block() {
                Ok(blocking.run(move || stream.read(max)).await??)
            } else {
                Ok(stream.read(max)?)
            }
        }
        Descriptor::Socket(socket) => {
            if offset.is_some() {
                return Err(Errno::Spipe.into());
            }
            let max = max.min(MAX_STREAM_READ);
            Ok(blocking
                .run(move || -> Result<Vec<u8>, Errno> {
                    let Socket::Stream(stream) = &*socket else {
                        return Err(Errno::Notconn);
                    };
                    let mut buffer = vec![0; max];
                    let n = (&*stream).read(&mut buffer)?;
                    buffer.truncate(n);
                    Ok(buffer)
                })
                .await??)
        }
        Descriptor::Dir(_) => Err(Errno::Isdir.into()),
    }
}

/// Writes to a descriptor at its position (`offset` `None`) or at `offset`.
async fn write_descriptor(
    blocking: Blocking,
    descriptor: Descriptor,
    data: Vec<u8>,
    offset: Option<u64>,
) -> Step<usize> {
    match descriptor {
        Descriptor::File(file) => {
            if !file.writable {
                return Err(Errno::Badf.into());
            }
            Ok(blocking
                .run(move || match offset {
                    Some(offset) => file.file.write_at(&data, offset),
                    None => (&file.file).write(&data),
                })
                .await??)
        }
        Descriptor::Stream(stream) => {
            if offset.is_some() {
                return Err(Errno::Spipe.into());
            }
            if !stream.writable() {
                return Err(Errno::Badf.into());
            }
            if stream.may_block() {
                Ok(blocking.run(move || stream.write(&data)).await??)
            } else {
                Ok(stream.write(&data)?)
            }
        }
        Descriptor::Socket(socket) => {
            if offset.is_some() {
                return Err(Errno::Spipe.into());
            }
            Ok(blocking
                .run(move || -> Result<usize, Errno> {
                    let Socket::Stream(stream) = &*socket else {
                        return Err(Errno::Notconn);
                    };
                    Ok((&*stream).write(&data)?)
                })
                .await??)
        }
        Descriptor::Dir(_) => Err(Errno::Isdir.into()),
    }
}

/// What one `poll_oneoff` subscription asks for.
enum Subscription {
    Clock { deadline: Option<Instant> },
    Fd { fd: u32, write: bool },
}

mod imp {
    use super::*;

    pub async fn args_get<H: WasiHost + ?Sized>(host: &mut H, argv: u32, argv_buf: u32) -> Step {
        access(host, |ctx, mem| {
            write_strings(mem, &ctx.args, argv, argv_buf)
        })
    }

    pub async fn args_sizes_get<H: WasiHost + ?Sized>(host: &mut H, argc: u32, size: u32) -> Step {
        access(host, |ctx, mem| write_sizes(mem, &ctx.args, argc, size))
    }

    pub async fn environ_get<H: WasiHost + ?Sized>(host: &mut H, environ: u32, buf: u32) -> Step {
        access(host, |ctx, mem| write_strings(mem, &ctx.env, environ, buf))
    }

    pub async fn environ_sizes_get<H: WasiHost + ?Sized>(
        host: &mut H,
        count: u32,
        size: u32,
    ) -> Step {
        access(host, |ctx, mem| write_sizes(mem, &ctx.env, count, size))
    }

    pub async fn clock_res_get<H: WasiHost + ?Sized>(
        host: &mut H,
        id: u32,
        resolution: u32,
    ) -> Step {
        access(host, |_, mem| {
            let res = timespec_nanos(rustix::time::clock_getres(clock_id(id)?));
            mem.write_u64(resolution, res.max(1))
        })
    }

    pub async fn clock_time_get<H: WasiHost + ?Sized>(
        host: &mut H,
        id: u32,
        _precision: u64,
        time: u32,
    ) -> Step {
        access(host, |_, mem| {
            let now = timespec_nanos(rustix::time::clock_gettime(clock_id(id)?));
            mem.write_u64(time, now)
        })
    }

    pub async fn fd_advise<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        offset: u64,
        len: u64,
        advice: u32,
    ) -> Step {
        use rustix::fs::Advice;
        let file = access(host, |ctx, _| {
            file(ctx, fd, RIGHTS_FD_ADVISE).map_err(not_file_is_badf)
        })?;
        let advice = match u8::try_from(advice).map_err(|_| Errno::Inval)? {
            ADVICE_NORMAL => Advice::Normal,
            ADVICE_SEQUENTIAL => Advice::Sequential,
            ADVICE_RANDOM => Advice::Random,
            ADVICE_WILLNEED => Advice::WillNeed,
            ADVICE_DONTNEED => Advice::DontNeed,
            ADVICE_NOREUSE => Advice::NoReuse,
            _ => return Err(Errno::Inval.into()),
        };
        if i64::try_from(offset).is_err() || i64::try_from(len).is_err() {
            return Err(Errno::Inval.into());
        }
        rustix::fs::fadvise(&file.file, offset, std::num::NonZeroU64::new(len), advice)
            .map_err(Errno::from)?;
        Ok(())
    }

    /// For calls that only make sense on files, a directory or stream is `EBADF`.
    pub(super) fn not_file_is_badf(errno: Errno) -> Errno {
        match errno {
            Errno::Isdir | Errno::Spipe => Errno::Badf,
            other => other,
        }
    }

    pub async fn fd_allocate<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        offset: u64,
        len: u64,
    ) -> Step {
        let file = access(host, |ctx, _| {
            file(ctx, fd, RIGHTS_FD_ALLOCATE).map_err(not_file_is_badf)
        })?;
        if !file.writable {
            return Err(Errno::Badf.into());
        }
        if offset
            .checked_add(len)
            .is_none_or(|end| end > i64::MAX as u64)
        {
            return Err(Errno::Fbig.into());
        }
        if len == 0 {
            return Err(Errno::Inval.into());
        }
        host.blocking()
            .run(move || {
                rustix::fs::fallocate(&file.file, rustix::fs::FallocateFlags::empty(), offset, len)
            })
            .await?
            .map_err(Errno::from)?;
        Ok(())
    }

    pub async fn fd_close<H: WasiHost + ?Sized>(host: &mut H, fd: u32) -> Step {
        access(host, |ctx, _| ctx.table.remove(fd).map(drop))
    }

    async fn sync<H: WasiHost + ?Sized>(host: &mut H, fd: u32, data_only: bool) -> Step {
        let right = if data_only {
            RIGHTS_FD_DATASYNC
        } else {
            RIGHTS_FD_SYNC
        };
        let descriptor = access(host, |ctx, _| checked(ctx, fd, right))?;
        let run = move || -> Result<(), Errno> {
            match &descriptor {
                Descriptor::File(file) if data_only => Ok(file.file.sync_data()?),
                Descriptor::File(file) => Ok(file.file.sync_all()?),
                Descriptor::Dir(dir) => Ok(rustix::fs::fsync(&dir.dir)?),
                Descriptor::Stream(_) | Descriptor::Socket(_) => Err(Errno::Inval),
            }
        };
        host.blocking().run(run).await??;
        Ok(())
    }

    pub async fn fd_datasync<H: WasiHost + ?Sized>(host: &mut H, fd: u32) -> Step {
        sync(host, fd, true).await
    }

    pub async fn fd_sync<H: WasiHost + ?Sized>(host: &mut H, fd: u32) -> Step {
        sync(host, fd, false).await
    }

    pub async fn fd_fdstat_get<H: WasiHost + ?Sized>(host: &mut H, fd: u32, stat: u32) -> Step {
        let entry = access(host, |ctx, mem| {
            mem.slice(stat, FDSTAT_SIZE)?;
            entry(ctx, fd)
        })?;
        // Only a file needs the OS (an `fstat` and an `fcntl`); the rest is known here.
        let (filetype_, flags) = match &entry.descriptor {
            Descriptor::Stream(stream) if stream.is_terminal() => (FILETYPE_CHARACTER_DEVICE, 0),
            Descriptor::Stream(_) => (FILETYPE_UNKNOWN, 0),
            Descriptor::Dir(_) => (FILETYPE_DIRECTORY, 0),
            Descriptor::Socket(_) => (FILETYPE_SOCKET_STREAM, 0),
            Descriptor::File(file) => {
                let file = file.clone();
                host.blocking()
                    .run(move || -> Result<(u8, u16), Errno> {
                        let ty = filetype(std_metadata(&file.file)?.file_type());
                        Ok((ty, fdflags(&file.file)?))
                    })
                    .await??
            }
        };
        access(host, |_, mem| {
            let mut out = [0u8; FDSTAT_SIZE as usize];
            out[0] = filetype_;
            out[2..4].copy_from_slice(&flags.to_le_bytes());
            out[8..16].copy_from_slice(&entry.rights_base.to_le_bytes());
            out[16..24].copy_from_slice(&entry.rights_inheriting.to_le_bytes());
            mem.write(stat, &out)
        })
    }

    fn fdflags(file: &std::fs::File) -> Result<u16, Errno> {
        use rustix::fs::OFlags;
        let os = rustix::fs::fcntl_getfl(file)?;
        let mut flags = 0;
        if os.contains(OFlags::APPEND) {
            flags |= FDFLAGS_APPEND;
        }
        if os.contains(OFlags::NONBLOCK) {
            flags |= FDFLAGS_NONBLOCK;
        }
        if os.contains(OFlags::SYNC) {
            flags |= FDFLAGS_SYNC;
        } else if os.contains(OFlags::DSYNC) {
            flags |= FDFLAGS_DSYNC;
        }
        Ok(flags)
    }

    pub async fn fd_fdstat_set_flags<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        flags: u32,
    ) -> Step {
        use rustix::fs::OFlags;
        let descriptor = access(host, |ctx, _| checked(ctx, fd, RIGHTS_FD_FDSTAT_SET_FLAGS))?;
        let known =
            FDFLAGS_APPEND | FDFLAGS_DSYNC | FDFLAGS_NONBLOCK | FDFLAGS_RSYNC | FDFLAGS_SYNC;
        if flags & !(known as u32) != 0 {
            return Err(Errno::Inval.into());
        }
        let flags = flags as u16;
        match descriptor {
            Descriptor::File(file) => {
                // The sync flags are fixed when a file is opened (Linux ignores them in
                // F_SETFL); only append and non-blocking mode can change.
                if flags & (FDFLAGS_DSYNC | FDFLAGS_RSYNC | FDFLAGS_SYNC) != 0 {
                    return Err(Errno::Notsup.into());
                }
                let mut os = rustix::fs::fcntl_getfl(&file.file).map_err(Errno::from)?;
                os.set(OFlags::APPEND, flags & FDFLAGS_APPEND != 0);
                os.set(OFlags::NONBLOCK, flags & FDFLAGS_NONBLOCK != 0);
                rustix::fs::fcntl_setfl(&file.file, os).map_err(Errno::from)?;
                Ok(())
            }
            Descriptor::Socket(socket) => {
                if flags & !FDFLAGS_NONBLOCK != 0 {
                    return Err(Errno::Inval.into());
                }
                let nonblocking = flags & FDFLAGS_NONBLOCK != 0;
                match &*socket {
                    Socket::Listener(l) => l.set_nonblocking(nonblocking)?,
                    Socket::Stream(s) => s.set_nonblocking(nonblocking)?,
                }
                Ok(())
            }
            // A stream's reads and writes complete or suspend; there is no mode to switch.
            Descriptor::Stream(_) if flags & !FDFLAGS_NONBLOCK == 0 => Ok(()),
            Descriptor::Stream(_) => Err(Errno::Inval.into()),
            Descriptor::Dir(_) => Err(Errno::Badf.into()),
        }
    }

    pub async fn fd_fdstat_set_rights<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        base: u64,
        inheriting: u64,
    ) -> Step {
        access(host, |ctx, _| {
            let entry = ctx.table.get_mut(fd)?;
            if base & !entry.rights_base != 0 || inheriting & !entry.rights_inheriting != 0 {
                return Err(Errno::Notcapable);
            }
            entry.rights_base = base;
            entry.rights_inheriting = inheriting;
            Ok(())
        })
    }

    pub async fn fd_filestat_get<H: WasiHost + ?Sized>(host: &mut H, fd: u32, stat: u32) -> Step {
        let descriptor = access(host, |ctx, mem| {
            mem.slice(stat, FILESTAT_SIZE)?;
            checked(ctx, fd, RIGHTS_FD_FILESTAT_GET)
        })?;
        let bytes = host
            .blocking()
            .run(move || -> Result<[u8; FILESTAT_SIZE as usize], Errno> {
                Ok(match &descriptor {
                    Descriptor::File(file) => filestat_bytes(&std_metadata(&file.file)?),
                    Descriptor::Dir(dir) => filestat_bytes(&dir.dir.dir_metadata()?),
                    Descriptor::Stream(stream) => {
                        let mut out = [0u8; FILESTAT_SIZE as usize];
                        out[16] = if stream.is_terminal() {
                            FILETYPE_CHARACTER_DEVICE
                        } else {
                            FILETYPE_UNKNOWN
                        };
                        out
                    }
                    Descriptor::Socket(_) => {
                        let mut out = [0u8; FILESTAT_SIZE as usize];
                        out[16] = FILETYPE_SOCKET_STREAM;
                        out
                    }
                })
            })
            .await??;
        access(host, |_, mem| mem.write(stat, &bytes))
    }

    pub async fn fd_filestat_set_size<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        size: u64,
    ) -> Step {
        let file = access(host, |ctx, _| {
            file(ctx, fd, RIGHTS_FD_FILESTAT_SET_SIZE).map_err(not_file_is_badf)
        })?;
        if !file.writable {
            return Err(Errno::Badf.into());
        }
        if size > i64::MAX as u64 {
            return Err(Errno::Fbig.into());
        }
        host.blocking()
            .run(move || file.file.set_len(size))
            .await??;
        Ok(())
    }

    pub async fn fd_filestat_set_times<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        atim: u64,
        mtim: u64,
        fst_flags: u32,
    ) -> Step {
        use fs_set_times::SetTimes;
        let descriptor = access(host, |ctx, _| {
            checked(ctx, fd, RIGHTS_FD_FILESTAT_SET_TIMES)
        })?;
        check_fst_flags(fst_flags)?;
        let atime = time_spec(fst_flags, FSTFLAGS_ATIM, FSTFLAGS_ATIM_NOW, atim)?;
        let mtime = time_spec(fst_flags, FSTFLAGS_MTIM, FSTFLAGS_MTIM_NOW, mtim)?;
        let run = move || -> Result<(), Errno> {
            match &descriptor {
                Descriptor::File(file) => Ok(SetTimes::set_times(&file.file, atime, mtime)?),
                Descriptor::Dir(dir) => Ok(SetTimes::set_times(&dir.dir, atime, mtime)?),
                _ => Err(Errno::Badf),
            }
        };
        host.blocking().run(run).await??;
        Ok(())
    }

    async fn read_into<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        iovs: u32,
        iovs_len: u32,
        offset: Option<u64>,
        nread: u32,
    ) -> Step {
        let (descriptor, iovs) = access(host, |ctx, mem| {
            let iovs = mem.read_iovecs(iovs, iovs_len)?;
            mem.slice(nread, 4)?;
            Ok((checked(ctx, fd, RIGHTS_FD_READ)?, iovs))
        })?;
        let data = read_descriptor(host.blocking(), descriptor, total_len(&iovs), offset).await?;
        access(host, |_, mem| {
            mem.scatter(&iovs, &data)?;
            mem.write_u32(nread, data.len() as u32)
        })
    }

    async fn write_from<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        iovs: u32,
        iovs_len: u32,
        offset: Option<u64>,
        nwritten: u32,
    ) -> Step {
        let (descriptor, data) = access(host, |ctx, mem| {
            let iovs: Vec<IoVec> = mem.read_iovecs(iovs, iovs_len)?;
            mem.slice(nwritten, 4)?;
            let descriptor = checked(ctx, fd, RIGHTS_FD_WRITE)?;
            Ok((descriptor, mem.gather(&iovs, MAX_IO)?))
        })?;
        let n = write_descriptor(host.blocking(), descriptor, data, offset).await?;
        access(host, |_, mem| mem.write_u32(nwritten, n as u32))
    }

    pub async fn fd_read<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        iovs: u32,
        iovs_len: u32,
        nread: u32,
    ) -> Step {
        read_into(host, fd, iovs, iovs_len, None, nread).await
    }

    pub async fn fd_pread<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        iovs: u32,
        iovs_len: u32,
        offset: u64,
        nread: u32,
    ) -> Step {
        if offset > i64::MAX as u64 {
            return Err(Errno::Inval.into());
        }
        read_into(host, fd, iovs, iovs_len, Some(offset), nread).await
    }

    pub async fn fd_write<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        iovs: u32,
        iovs_len: u32,
        nwritten: u32,
    ) -> Step {
        write_from(host, fd, iovs, iovs_len, None, nwritten).await
    }

    pub async fn fd_pwrite<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        iovs: u32,
        iovs_len: u32,
        offset: u64,
        nwritten: u32,
    ) -> Step {
        if offset > i64::MAX as u64 {
            return Err(Errno::Inval.into());
        }
        write_from(host, fd, iovs, iovs_len, Some(offset), nwritten).await
    }

    pub async fn fd_prestat_get<H: WasiHost + ?Sized>(host: &mut H, fd: u32, prestat: u32) -> Step {
        access(host, |ctx, mem| {
            let Descriptor::Dir(dir) = &ctx.table.get(fd)?.descriptor else {
                return Err(Errno::Badf);
            };
            let name = dir.preopen.as_ref().ok_or(Errno::Badf)?;
            let mut out = [0u8; PRESTAT_SIZE as usize];
            out[0] = PREOPENTYPE_DIR;
            out[4..8].copy_from_slice(&(name.len() as u32).to_le_bytes());
            mem.write(prestat, &out)
        })
    }

    pub async fn fd_prestat_dir_name<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        path: u32,
        path_len: u32,
    ) -> Step {
        access(host, |ctx, mem| {
            let Descriptor::Dir(dir) = &ctx.table.get(fd)?.descriptor else {
                return Err(Errno::Badf);
            };
            let name = dir.preopen.as_ref().ok_or(Errno::Badf)?;
            if (path_len as usize) < name.len() {
                return Err(Errno::Nametoolong);
            }
            mem.write(path, name.as_bytes())
        })
    }

    pub async fn fd_readdir<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        buf: u32,
        buf_len: u32,
        cookie: u64,
        bufused: u32,
    ) -> Step {
        let dir = access(host, |ctx, mem| {
            mem.slice(buf, buf_len)?;
            mem.slice(bufused, 4)?;
            dir(ctx, fd, RIGHTS_FD_READDIR)
        })?;
        let cached = if cookie == 0 {
            None
        } else {
            crate::ctx::lock_listing(&dir).clone()
        };
        let listing = match cached {
            Some(listing) => listing,
            None => {
                let dir2 = dir.clone();
                let listing = Arc::new(host.blocking().run(move || list(&dir2.dir)).await??);
                *crate::ctx::lock_listing(&dir) = Some(listing.clone());
                listing
            }
        };
        access(host, |_, mem| {
            let mut out = Vec::new();
            let start = usize::try_from(cookie).unwrap_or(usize::MAX);
            for (i, entry) in listing.iter().enumerate().skip(start) {
                if out.len() >= buf_len as usize {
                    break;
                }
                let mut header = [0u8; DIRENT_SIZE as usize];
                header[0..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
                header[8..16].copy_from_slice(&entry.ino.to_le_bytes());
                header[16..20].copy_from_slice(&(entry.name.len() as u32).to_le_bytes());
                header[20] = entry.filetype;
                out.extend_from_slice(&header);
                out.extend_from_slice(&entry.name);
            }
            out.truncate(buf_len as usize);
            mem.write(buf, &out)?;
            mem.write_u32(bufused, out.len() as u32)
        })
    }

    fn list(dir: &Dir) -> Result<Vec<DirListing>, Errno> {
        use std::os::unix::fs::DirEntryExt;
        let own = dir.dir_metadata()?;
        let mut listing = vec![
            DirListing {
                name: b".".to_vec(),
                ino: own.ino(),
                filetype: FILETYPE_DIRECTORY,
            },
            DirListing {
                name: b"..".to_vec(),
                // The parent may lie outside the sandbox; its inode is not the guest's to see.
                ino: 0,
                filetype: FILETYPE_DIRECTORY,
            },
        ];
        for entry in dir.entries()? {
            let entry = entry?;
            let filetype_ = entry.file_type().map(filetype).unwrap_or(FILETYPE_UNKNOWN);
            listing.push(DirListing {
                name: entry.file_name().as_bytes().to_vec(),
                ino: entry.ino(),
                filetype: filetype_,
            });
        }
        Ok(listing)
    }

    pub async fn fd_renumber<H: WasiHost + ?Sized>(host: &mut H, fd: u32, to: u32) -> Step {
        access(host, |ctx, _| {
            ctx.table.get(fd)?;
            ctx.table.get(to)?;
            if fd != to {
                let entry = ctx.table.remove(fd)?;
                ctx.table.insert_at(to, entry);
            }
            Ok(())
        })
    }

    pub async fn fd_seek<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        offset: u64,
        whence: u32,
        newoffset: u32,
    ) -> Step {
        seek(host, fd, offset, whence, newoffset, RIGHTS_FD_SEEK).await
    }

    async fn seek<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        offset: u64,
        whence: u32,
        newoffset: u32,
        right: u64,
    ) -> Step {
        let file = access(host, |ctx, mem| {
            mem.slice(newoffset, 8)?;
            file(ctx, fd, right).map_err(|e| if e == Errno::Isdir { Errno::Badf } else { e })
        })?;
        let offset = offset as i64;
        let from = match u8::try_from(whence).map_err(|_| Errno::Inval)? {
            WHENCE_SET => SeekFrom::Start(u64::try_from(offset).map_err(|_| Errno::Inval)?),
            WHENCE_CUR => SeekFrom::Current(offset),
            WHENCE_END => SeekFrom::End(offset),
            _ => return Err(Errno::Inval.into()),
        };
        let position = host
            .blocking()
            .run(move || (&file.file).seek(from))
            .await??;
        access(host, |_, mem| mem.write_u64(newoffset, position))
    }

    pub async fn fd_tell<H: WasiHost + ?Sized>(host: &mut H, fd: u32, offset: u32) -> Step {
        seek(host, fd, 0, WHENCE_CUR as u32, offset, RIGHTS_FD_TELL).await
    }

    pub async fn path_create_directory<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        path: u32,
        path_len: u32,
    ) -> Step {
        change_entry(
            host,
            fd,
            path,
            path_len,
            RIGHTS_PATH_CREATE_DIRECTORY,
            |dir, path| dir.create_dir(path),
        )
        .await
    }

    fn dir_and_path<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        path: u32,
        path_len: u32,
        rights: u64,
    ) -> Step<(Arc<OpenDir>, String)> {
        access(host, |ctx, mem| {
            let path = mem.read_str(path, path_len)?;
            Ok((dir(ctx, fd, rights)?, path))
        })
    }

    /// The calls that create or remove one entry: `path` in directory `fd` (with `rights`,
    /// and a preopen that may be changed), then `op` on the blocking pool.
    async fn change_entry<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        path: u32,
        path_len: u32,
        rights: u64,
        op: fn(&Dir, &str) -> std::io::Result<()>,
    ) -> Step {
        let (dir, path) = dir_and_path(host, fd, path, path_len, rights)?;
        require(dir.perms.mutate)?;
        host.blocking().run(move || op(&dir.dir, &path)).await??;
        Ok(())
    }

    pub async fn path_filestat_get<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        flags: u32,
        path: u32,
        path_len: u32,
        stat: u32,
    ) -> Step {
        let (dir, path) = dir_and_path(host, fd, path, path_len, RIGHTS_PATH_FILESTAT_GET)?;
        access(host, |_, mem| mem.slice(stat, FILESTAT_SIZE).map(drop))?;
        require(dir.perms.read)?;
        let follow = flags & LOOKUPFLAGS_SYMLINK_FOLLOW != 0;
        let bytes = host
            .blocking()
            .run(move || -> std::io::Result<_> {
                let meta = if follow {
                    dir.dir.metadata(&path)?
                } else {
                    dir.dir.symlink_metadata(&path)?
                };
                Ok(filestat_bytes(&meta))
            })
            .await??;
        access(host, |_, mem| mem.write(stat, &bytes))
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn path_filestat_set_times<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        flags: u32,
        path: u32,
        path_len: u32,
        atim: u64,
        mtim: u64,
        fst_flags: u32,
    ) -> Step {
        let (dir, path) = dir_and_path(host, fd, path, path_len, RIGHTS_PATH_FILESTAT_SET_TIMES)?;
        require(dir.perms.mutate)?;
        check_fst_flags(fst_flags)?;
        let atime = time_spec(fst_flags, FSTFLAGS_ATIM, FSTFLAGS_ATIM_NOW, atim)?;
        let mtime = time_spec(fst_flags, FSTFLAGS_MTIM, FSTFLAGS_MTIM_NOW, mtim)?;
        let (atime, mtime) = (
            atime.map(SystemTimeSpec::from_std),
            mtime.map(SystemTimeSpec::from_std),
        );
        let follow = flags & LOOKUPFLAGS_SYMLINK_FOLLOW != 0;
        host.blocking()
            .run(move || {
                if follow {
                    dir.dir.set_times(&path, atime, mtime)
                } else {
                    dir.dir.set_symlink_times(&path, atime, mtime)
                }
            })
            .await??;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn path_link<H: WasiHost + ?Sized>(
        host: &mut H,
        old_fd: u32,
        old_flags: u32,
        old_path: u32,
        old_path_len: u32,
        new_fd: u32,
        new_path: u32,
        new_path_len: u32,
    ) -> Step {
        let (old_dir, old_path) = dir_and_path(
            host,
            old_fd,
            old_path,
            old_path_len,
            RIGHTS_PATH_LINK_SOURCE,
        )?;
        let (new_dir, new_path) = dir_and_path(
            host,
            new_fd,
            new_path,
            new_path_len,
            RIGHTS_PATH_LINK_TARGET,
        )?;
        require(new_dir.perms.mutate)?;
        // Linking what a symlink points to could link a file from outside the sandbox.
        if old_flags & LOOKUPFLAGS_SYMLINK_FOLLOW != 0 {
            return Err(Errno::Inval.into());
        }
        host.blocking()
            .run(move || old_dir.dir.hard_link(&old_path, &new_dir.dir, &new_path))
            .await??;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn path_open<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        dirflags: u32,
        path: u32,
        path_len: u32,
        oflags: u32,
        rights_base: u64,
        rights_inheriting: u64,
        fdflags: u32,
        opened_fd: u32,
    ) -> Step {
        let (dir, path, parent_inheriting) = access(host, |ctx, mem| {
            let path = mem.read_str(path, path_len)?;
            mem.slice(opened_fd, 4)?;
            let mut needed = RIGHTS_PATH_OPEN;
            if oflags & OFLAGS_CREAT as u32 != 0 {
                needed |= RIGHTS_PATH_CREATE_FILE;
            }
            if oflags & OFLAGS_TRUNC as u32 != 0 {
                needed |= RIGHTS_PATH_FILESTAT_SET_SIZE;
            }
            let dir = dir(ctx, fd, needed)?;
            Ok((dir, path, ctx.table.get(fd)?.rights_inheriting))
        })?;
        let all_oflags = OFLAGS_CREAT | OFLAGS_DIRECTORY | OFLAGS_EXCL | OFLAGS_TRUNC;
        let all_fdflags =
            FDFLAGS_APPEND | FDFLAGS_DSYNC | FDFLAGS_NONBLOCK | FDFLAGS_RSYNC | FDFLAGS_SYNC;
        if oflags & !(all_oflags as u32) != 0 || fdflags & !(all_fdflags as u32) != 0 {
            return Err(Errno::Inval.into());
        }
        let (oflags, fdflags) = (oflags as u16, fdflags as u16);
        let create = oflags & OFLAGS_CREAT != 0;
        let truncate = oflags & OFLAGS_TRUNC != 0;
        let directory = oflags & OFLAGS_DIRECTORY != 0;
        let read = rights_base & (RIGHTS_FD_READ | RIGHTS_FD_READDIR) != 0;
        let write =
            rights_base & (RIGHTS_FD_WRITE | RIGHTS_FD_ALLOCATE | RIGHTS_FD_FILESTAT_SET_SIZE) != 0
                || fdflags & FDFLAGS_APPEND != 0;
        if directory && (create || truncate) {
            return Err(Errno::Inval.into());
        }
        require(dir.perms.read)?;
        if create {
            require(dir.perms.mutate)?;
        }
        if write || truncate || create {
            require(dir.file_perms.write)?;
        }
        if read {
            require(dir.file_perms.read)?;
        }
        let follow = if dirflags & LOOKUPFLAGS_SYMLINK_FOLLOW != 0 {
            FollowSymlinks::Yes
        } else {
            FollowSymlinks::No
        };
        let parent = dir.clone();
        let opened = host
            .blocking()
            .run(move || -> Result<Descriptor, Errno> {
                if directory {
                    let opened = match follow {
                        FollowSymlinks::Yes => parent.dir.open_dir(&path)?,
                        FollowSymlinks::No => parent.dir.open_dir_nofollow(&path)?,
                    };
                    // A directory cannot be opened for writing (checked once it is known
                    // to be one, so a file named with `O_DIRECTORY` stays `ENOTDIR`).
                    if rights_base & RIGHTS_FD_WRITE != 0 {
                        return Err(Errno::Isdir);
                    }
                    return Ok(sub_dir(&parent, opened));
                }
                let mut options = OpenOptions::new();
                // The OS needs write access to create or truncate; the guest's descriptor
                // still writes only if it asked to.
                let os_write = write || create || truncate;
                options
                    .read(read || !os_write)
                    .write(os_write)
                    .create(create)
                    .create_new(create && oflags & OFLAGS_EXCL != 0)
                    .truncate(truncate)
                    .follow(follow)
                    .maybe_dir(true)
                    .dsync(fdflags & FDFLAGS_DSYNC != 0)
                    .rsync(fdflags & FDFLAGS_RSYNC != 0)
                    .sync(fdflags & FDFLAGS_SYNC != 0);
                let file = parent.dir.open_with(&path, &options)?.into_std();
                if file.metadata()?.is_dir() {
                    if write {
                        return Err(Errno::Isdir);
                    }
                    return Ok(sub_dir(&parent, Dir::from_std_file(file)));
                }
                // Append mode is set after the open: the open options refuse to combine it
                // with truncation, which `O_APPEND | O_TRUNC` asks for.
                if fdflags & (FDFLAGS_NONBLOCK | FDFLAGS_APPEND) != 0 {
                    let mut os = rustix::fs::fcntl_getfl(&file)?;
                    os.set(
                        rustix::fs::OFlags::NONBLOCK,
                        fdflags & FDFLAGS_NONBLOCK != 0,
                    );
                    os.set(rustix::fs::OFlags::APPEND, fdflags & FDFLAGS_APPEND != 0);
                    rustix::fs::fcntl_setfl(&file, os)?;
                }
                Ok(Descriptor::File(Arc::new(OpenFile {
                    file,
                    readable: read || !write,
                    writable: write,
                })))
            })
            .await??;
        let (base, inheriting) = match &opened {
            Descriptor::File(file) => {
                let mut base = rights_base & parent_inheriting & RIGHTS_FILE;
                if !file.readable {
                    base &= !RIGHTS_FD_READ;
                }
                if !file.writable {
                    base &= !(RIGHTS_FD_WRITE | RIGHTS_FD_ALLOCATE | RIGHTS_FD_FILESTAT_SET_SIZE);
                }
                (base, rights_inheriting & parent_inheriting)
            }
            _ => (
                rights_base & parent_inheriting & RIGHTS_DIRECTORY,
                rights_inheriting & parent_inheriting,
            ),
        };
        access(host, |ctx, mem| {
            let new_fd = ctx.table.push(Entry {
                descriptor: opened,
                rights_base: base,
                rights_inheriting: inheriting,
            })?;
            if let Err(errno) = mem.write_u32(opened_fd, new_fd) {
                let _ = ctx.table.remove(new_fd);
                return Err(errno);
            }
            Ok(())
        })
    }

    fn sub_dir(parent: &OpenDir, dir: Dir) -> Descriptor {
        Descriptor::Dir(Arc::new(OpenDir {
            dir,
            perms: parent.perms,
            file_perms: parent.file_perms,
            preopen: None,
            listing: Default::default(),
        }))
    }

    pub async fn path_readlink<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        path: u32,
        path_len: u32,
        buf: u32,
        buf_len: u32,
        bufused: u32,
    ) -> Step {
        let (dir, path) = dir_and_path(host, fd, path, path_len, RIGHTS_PATH_READLINK)?;
        access(host, |_, mem| {
            mem.slice(buf, buf_len)?;
            mem.slice(bufused, 4).map(drop)
        })?;
        require(dir.perms.read)?;
        let target = host
            .blocking()
            .run(move || dir.dir.read_link(&path))
            .await??;
        access(host, |_, mem| {
            let bytes = target.as_os_str().as_bytes();
            let n = bytes.len().min(buf_len as usize);
            mem.write(buf, &bytes[..n])?;
            mem.write_u32(bufused, n as u32)
        })
    }

    pub async fn path_remove_directory<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        path: u32,
        path_len: u32,
    ) -> Step {
        change_entry(
            host,
            fd,
            path,
            path_len,
            RIGHTS_PATH_REMOVE_DIRECTORY,
            |dir, path| dir.remove_dir(path),
        )
        .await
    }

    pub async fn path_rename<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        old_path: u32,
        old_path_len: u32,
        new_fd: u32,
        new_path: u32,
        new_path_len: u32,
    ) -> Step {
        let (old_dir, old_path) =
            dir_and_path(host, fd, old_path, old_path_len, RIGHTS_PATH_RENAME_SOURCE)?;
        let (new_dir, new_path) = dir_and_path(
            host,
            new_fd,
            new_path,
            new_path_len,
            RIGHTS_PATH_RENAME_TARGET,
        )?;
        require(old_dir.perms.mutate && new_dir.perms.mutate)?;
        host.blocking()
            .run(move || old_dir.dir.rename(&old_path, &new_dir.dir, &new_path))
            .await??;
        Ok(())
    }

    pub async fn path_symlink<H: WasiHost + ?Sized>(
        host: &mut H,
        old_path: u32,
        old_path_len: u32,
        fd: u32,
        new_path: u32,
        new_path_len: u32,
    ) -> Step {
        let target = access(host, |_, mem| mem.read_str(old_path, old_path_len))?;
        let (dir, link) = dir_and_path(host, fd, new_path, new_path_len, RIGHTS_PATH_SYMLINK)?;
        require(dir.perms.mutate)?;
        // `Dir::symlink` refuses absolute targets; relative ones that climb out are created
        // (they are only data) but never followed out of the sandbox.
        host.blocking()
            .run(move || dir.dir.symlink(&target, &link))
            .await??;
        Ok(())
    }

    pub async fn path_unlink_file<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        path: u32,
        path_len: u32,
    ) -> Step {
        change_entry(
            host,
            fd,
            path,
            path_len,
            RIGHTS_PATH_UNLINK_FILE,
            |dir, path| dir.remove_file(path),
        )
        .await
    }

    pub async fn poll_oneoff<H: WasiHost + ?Sized>(
        host: &mut H,
        subscriptions: u32,
        events: u32,
        nsubscriptions: u32,
        nevents: u32,
    ) -> Step {
        if nsubscriptions == 0 {
            return Err(Errno::Inval.into());
        }
        // (userdata, subscription or the errno to report for it)
        let subs = access(host, |_, mem| {
            let in_size = nsubscriptions
                .checked_mul(SUBSCRIPTION_SIZE)
                .ok_or(Errno::Fault)?;
            let out_size = nsubscriptions.checked_mul(EVENT_SIZE).ok_or(Errno::Fault)?;
            mem.slice(subscriptions, in_size)?;
            mem.slice(events, out_size)?;
            mem.slice(nevents, 4)?;
            let now = Instant::now();
            let mut subs = Vec::with_capacity(nsubscriptions as usize);
            for i in 0..nsubscriptions {
                let at = subscriptions + i * SUBSCRIPTION_SIZE;
                let userdata = mem.read_u64(at)?;
                let sub = match mem.read_u8(at + 8)? {
                    EVENTTYPE_CLOCK => {
                        let id = mem.read_u32(at + 16)?;
                        let timeout = mem.read_u64(at + 24)?;
                        let flags = mem.read_u16(at + 40)?;
                        clock_deadline(id, timeout, flags, now)
                            .map(|deadline| Subscription::Clock { deadline })
                    }
                    EVENTTYPE_FD_READ => Ok(Subscription::Fd {
                        fd: mem.read_u32(at + 16)?,
                        write: false,
                    }),
                    EVENTTYPE_FD_WRITE => Ok(Subscription::Fd {
                        fd: mem.read_u32(at + 16)?,
                        write: true,
                    }),
                    _ => return Err(Errno::Inval),
                };
                subs.push((userdata, sub));
            }
            Ok(subs)
        })?;
        // Descriptors are always ready: files by definition, and reads and writes on streams
        // and sockets complete or suspend the call, so a guest never spins on them.
        let mut fired: Vec<(u64, Errno, u8, u64)> = Vec::new();
        let mut fd_subs = Vec::new();
        for (userdata, sub) in &subs {
            match sub {
                Ok(Subscription::Fd { fd, write }) => fd_subs.push((*userdata, *fd, *write)),
                Err(errno) => fired.push((*userdata, *errno, EVENTTYPE_CLOCK, 0)),
                Ok(Subscription::Clock { .. }) => {}
            }
        }
        if !fd_subs.is_empty() {
            let lookups = access(host, |ctx, _| {
                Ok(fd_subs
                    .iter()
                    .map(|&(userdata, fd, write)| (userdata, write, descriptor(ctx, fd)))
                    .collect::<Vec<_>>())
            })?;
            let ready = host
                .blocking()
                .run(move || {
                    lookups
                        .into_iter()
                        .map(|(userdata, write, descriptor)| {
                            let ty = if write {
                                EVENTTYPE_FD_WRITE
                            } else {
                                EVENTTYPE_FD_READ
                            };
                            match descriptor {
                                Ok(descriptor) => (
                                    userdata,
                                    Errno::Success,
                                    ty,
                                    ready_bytes(&descriptor, write),
                                ),
                                Err(errno) => (userdata, errno, ty, 0),
                            }
                        })
                        .collect::<Vec<_>>()
                })
                .await?;
            fired.extend(ready);
        }
        let deadlines: Vec<(u64, Option<Instant>)> = subs
            .iter()
            .filter_map(|(userdata, sub)| match sub {
                Ok(Subscription::Clock { deadline }) => Some((*userdata, *deadline)),
                _ => None,
            })
            .collect();
        let expired = |now: Instant| {
            deadlines
                .iter()
                .filter(|(_, deadline)| deadline.is_none_or(|d| d <= now))
                .map(|&(userdata, _)| (userdata, Errno::Success, EVENTTYPE_CLOCK, 0))
                .collect::<Vec<_>>()
        };
        fired.extend(expired(Instant::now()));
        if fired.is_empty() {
            // Only clocks, none expired: sleep until the first.
            let first = deadlines.iter().filter_map(|(_, d)| *d).min();
            if let Some(first) = first {
                host.blocking()
                    .sleep(first.saturating_duration_since(Instant::now()))
                    .await;
            }
            fired.extend(expired(
                Instant::now().max(first.unwrap_or_else(Instant::now)),
            ));
        }
        access(host, |_, mem| {
            for (i, (userdata, error, ty, nbytes)) in fired.iter().enumerate() {
                let mut out = [0u8; EVENT_SIZE as usize];
                out[0..8].copy_from_slice(&userdata.to_le_bytes());
                out[8..10].copy_from_slice(&(*error as u16).to_le_bytes());
                out[10] = *ty;
                out[16..24].copy_from_slice(&nbytes.to_le_bytes());
                mem.write(events + i as u32 * EVENT_SIZE, &out)?;
            }
            mem.write_u32(nevents, fired.len() as u32)
        })
    }

    /// When a clock subscription fires, as an `Instant` (`None`: already).
    fn clock_deadline(
        id: u32,
        timeout: u64,
        flags: u16,
        now: Instant,
    ) -> Result<Option<Instant>, Errno> {
        let clock = clock_id(id)?;
        if !matches!(id, CLOCKID_REALTIME | CLOCKID_MONOTONIC) {
            return Err(Errno::Notsup);
        }
        let wait = if flags & SUBCLOCKFLAGS_ABSTIME != 0 {
            let current = timespec_nanos(rustix::time::clock_gettime(clock));
            timeout.saturating_sub(current)
        } else {
            timeout
        };
        if wait == 0 {
            return Ok(None);
        }
        // Beyond `Instant`'s range is never.
        Ok(Some(
            now.checked_add(Duration::from_nanos(wait))
                .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600)),
        ))
    }

    fn ready_bytes(descriptor: &Descriptor, write: bool) -> u64 {
        match descriptor {
            Descriptor::File(file) if !write => {
                let size = file.file.metadata().map(|m| m.len()).unwrap_or(0);
                let position = (&file.file).stream_position().unwrap_or(size);
                size.saturating_sub(position)
            }
            Descriptor::Stream(stream) if !write => stream.ready_bytes(),
            _ => 0,
        }
    }

    pub async fn proc_raise<H: WasiHost + ?Sized>(_host: &mut H, _signal: u32) -> Step {
        Err(Errno::Nosys.into())
    }

    pub async fn sched_yield<H: WasiHost + ?Sized>(host: &mut H) -> Step {
        host.blocking().yield_now().await;
        Ok(())
    }

    pub async fn random_get<H: WasiHost + ?Sized>(host: &mut H, buf: u32, buf_len: u32) -> Step {
        access(host, |_, mem| {
            let mut out = mem.slice_mut(buf, buf_len)?;
            while !out.is_empty() {
                let n = rustix::rand::getrandom(&mut *out, rustix::rand::GetRandomFlags::empty())?;
                out = &mut out[n..];
            }
            Ok(())
        })
    }

    fn socket(ctx: &WasiCtx, fd: u32) -> Result<Arc<Socket>, Errno> {
        match &ctx.table.get(fd)?.descriptor {
            Descriptor::Socket(socket) => Ok(socket.clone()),
            _ => Err(Errno::Notsock),
        }
    }

    pub async fn sock_accept<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        flags: u32,
        new_fd: u32,
    ) -> Step {
        let listener = access(host, |ctx, mem| {
            mem.slice(new_fd, 4)?;
            socket(ctx, fd)
        })?;
        if flags & !(FDFLAGS_NONBLOCK as u32) != 0 {
            return Err(Errno::Inval.into());
        }
        let stream = host
            .blocking()
            .run(move || -> Result<std::net::TcpStream, Errno> {
                let Socket::Listener(listener) = &*listener else {
                    return Err(Errno::Inval);
                };
                let (stream, _) = listener.accept()?;
                Ok(stream)
            })
            .await??;
        stream.set_nonblocking(flags & FDFLAGS_NONBLOCK as u32 != 0)?;
        access(host, |ctx, mem| {
            let fd = ctx.table.push(Entry {
                descriptor: Descriptor::Socket(Arc::new(Socket::Stream(stream))),
                rights_base: RIGHTS_SOCKET,
                rights_inheriting: 0,
            })?;
            if let Err(errno) = mem.write_u32(new_fd, fd) {
                let _ = ctx.table.remove(fd);
                return Err(errno);
            }
            Ok(())
        })
    }

    pub async fn sock_recv<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        ri_data: u32,
        ri_data_len: u32,
        ri_flags: u32,
        ro_datalen: u32,
        ro_flags: u32,
    ) -> Step {
        let (socket, iovs) = access(host, |ctx, mem| {
            let iovs = mem.read_iovecs(ri_data, ri_data_len)?;
            mem.slice(ro_datalen, 4)?;
            mem.slice(ro_flags, 2)?;
            Ok((socket(ctx, fd)?, iovs))
        })?;
        let known = (RIFLAGS_RECV_PEEK | RIFLAGS_RECV_WAITALL) as u32;
        if ri_flags & !known != 0 {
            return Err(Errno::Inval.into());
        }
        let max = total_len(&iovs).min(MAX_IO);
        let data = host
            .blocking()
            .run(move || -> Result<Vec<u8>, Errno> {
                let Socket::Stream(stream) = &*socket else {
                    return Err(Errno::Notconn);
                };
                let mut buffer = vec![0; max];
                let n = if ri_flags & RIFLAGS_RECV_PEEK as u32 != 0 {
                    stream.peek(&mut buffer)?
                } else if ri_flags & RIFLAGS_RECV_WAITALL as u32 != 0 {
                    let mut n = 0;
                    while n < max {
                        match (&*stream).read(&mut buffer[n..])? {
                            0 => break,
                            k => n += k,
                        }
                    }
                    n
                } else {
                    (&*stream).read(&mut buffer)?
                };
                buffer.truncate(n);
                Ok(buffer)
            })
            .await??;
        access(host, |_, mem| {
            mem.scatter(&iovs, &data)?;
            mem.write_u32(ro_datalen, data.len() as u32)?;
            mem.write_u16(ro_flags, 0)
        })
    }

    pub async fn sock_send<H: WasiHost + ?Sized>(
        host: &mut H,
        fd: u32,
        si_data: u32,
        si_data_len: u32,
        si_flags: u32,
        so_datalen: u32,
    ) -> Step {
        let (socket, data) = access(host, |ctx, mem| {
            let iovs = mem.read_iovecs(si_data, si_data_len)?;
            mem.slice(so_datalen, 4)?;
            let socket = socket(ctx, fd)?;
            Ok((socket, mem.gather(&iovs, MAX_IO)?))
        })?;
        if si_flags != 0 {
            return Err(Errno::Inval.into());
        }
        let n = write_descriptor(host.blocking(), Descriptor::Socket(socket), data, None).await?;
        access(host, |_, mem| mem.write_u32(so_datalen, n as u32))
    }

    pub async fn sock_shutdown<H: WasiHost + ?Sized>(host: &mut H, fd: u32, how: u32) -> Step {
        use std::net::Shutdown;
        let socket = access(host, |ctx, _| socket(ctx, fd))?;
        let how = match u8::try_from(how).map_err(|_| Errno::Inval)? {
            SDFLAGS_RD => Shutdown::Read,
            SDFLAGS_WR => Shutdown::Write,
            x if x == SDFLAGS_RD | SDFLAGS_WR => Shutdown::Both,
            _ => return Err(Errno::Inval.into()),
        };
        match &*socket {
            Socket::Stream(stream) => Ok(stream.shutdown(how)?),
            Socket::Listener(_) => Err(Errno::Notconn.into()),
        }
    }
}
