//! Files and directories through a preopen, and the sandbox: escapes by `..`, absolute paths
//! and symlinks (the host's and the guest's own) fail with the spec's errno and leave
//! everything outside the preopen byte-for-byte as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::*;
use weft_wasi::{DirPerms, FilePerms, WasiCtx};

/// A host tree: `outside/secret.txt` and `outside/sandbox/` (preopened as `/sandbox`).
struct Tree {
    root: PathBuf,
    sandbox: PathBuf,
}

fn tree(name: &str) -> Tree {
    let root = scratch(name);
    std::fs::write(root.join("secret.txt"), b"top secret\n").unwrap();
    let sandbox = root.join("sandbox");
    std::fs::create_dir(&sandbox).unwrap();
    std::fs::write(sandbox.join("hello.txt"), b"hello from the host\n").unwrap();
    Tree { root, sandbox }
}

/// Every file outside `sandbox` under `root`, with its bytes (symlinks as their targets).
fn snapshot_outside(root: &Path, sandbox: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path == sandbox {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                out.insert(path.clone(), b"<dir>".to_vec());
                stack.push(path);
            } else if meta.is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.insert(path, target.to_string_lossy().as_bytes().to_vec());
            } else {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

fn guest(tree: &Tree, perms: DirPerms, file_perms: FilePerms) -> Guest {
    let ctx = WasiCtx::builder()
        .preopened_dir(&tree.sandbox, "/sandbox", perms, file_perms)
        .build()
        .unwrap();
    Guest::new(ctx, Binding::Sync)
}

const PREOPEN: u32 = 3;

#[test]
fn preopen_is_reported_with_its_guest_name() {
    let tree = tree("prestat");
    let mut g = guest(&tree, DirPerms::ALL, FilePerms::ALL);
    assert_eq!(g.call("fd_prestat_get", &[i(PREOPEN), i(0)]), SUCCESS);
    assert_eq!(g.read(0, 1), [0]);
    assert_eq!(g.u32(4), 8);
    assert_eq!(
        g.call("fd_prestat_dir_name", &[i(PREOPEN), i(100), i(3)]),
        37
    ); // ENAMETOOLONG
    assert_eq!(
        g.call("fd_prestat_dir_name", &[i(PREOPEN), i(100), i(8)]),
        SUCCESS
    );
    assert_eq!(g.read(100, 8), b"/sandbox");
    assert_eq!(g.call("fd_prestat_get", &[i(PREOPEN + 1), i(0)]), EBADF);
    assert_eq!(g.call("fd_fdstat_get", &[i(PREOPEN), i(0)]), SUCCESS);
    assert_eq!(g.read(0, 1), [3]); // directory
}

#[test]
fn files_are_created_written_read_seeked_and_truncated() {
    let tree = tree("files");
    let mut g = guest(&tree, DirPerms::ALL, FilePerms::ALL);
    let fd = g
        .open(
            PREOPEN,
            "new.txt",
            OFLAGS_CREAT | OFLAGS_EXCL,
            RIGHTS_ALL,
            0,
        )
        .unwrap();
    assert_eq!(
        g.open(
            PREOPEN,
            "new.txt",
            OFLAGS_CREAT | OFLAGS_EXCL,
            RIGHTS_ALL,
            0
        ),
        Err(EEXIST)
    );
    assert_eq!(g.write_fd(fd, b"0123456789").unwrap(), 10);
    assert_eq!(g.call("fd_tell", &[i(fd), i(0)]), SUCCESS);
    assert_eq!(g.u64(0), 10);
    assert_eq!(g.call("fd_seek", &[i(fd), I(2), i(0), i(0)]), SUCCESS);
    assert_eq!(g.read_fd(fd, 3).unwrap(), b"234");
    assert_eq!(
        g.call("fd_seek", &[i(fd), I(-2i64 as u64), i(2), i(0)]),
        SUCCESS
    );
    assert_eq!(g.u64(0), 8);
    assert_eq!(
        g.call("fd_seek", &[i(fd), I(-20i64 as u64), i(1), i(0)]),
        EINVAL
    );
    assert_eq!(g.call("fd_seek", &[i(fd), I(0), i(7), i(0)]), EINVAL);
    // pread/pwrite at an offset leave the position alone
    g.write(2000, b"AB");
    g.iovec(100, 2000, 2);
    assert_eq!(
        g.call("fd_pwrite", &[i(fd), i(100), i(1), I(4), i(200)]),
        SUCCESS
    );
    g.iovec(100, 2100, 4);
    assert_eq!(
        g.call("fd_pread", &[i(fd), i(100), i(1), I(3), i(200)]),
        SUCCESS
    );
    assert_eq!(g.read(2100, 4), b"3AB6");
    assert_eq!(g.call("fd_tell", &[i(fd), i(0)]), SUCCESS);
    assert_eq!(g.u64(0), 8);
    // size, truncation, allocation, sync, advice
    assert_eq!(g.call("fd_filestat_get", &[i(fd), i(300)]), SUCCESS);
    assert_eq!(g.read(316, 1), [4]); // regular file
    assert_eq!(g.u64(332), 10);
    assert_eq!(g.call("fd_filestat_set_size", &[i(fd), I(4)]), SUCCESS);
    assert_eq!(g.call("fd_allocate", &[i(fd), I(0), I(100)]), SUCCESS);
    assert_eq!(g.call("fd_sync", &[i(fd)]), SUCCESS);
    assert_eq!(g.call("fd_datasync", &[i(fd)]), SUCCESS);
    assert_eq!(g.call("fd_advise", &[i(fd), I(0), I(0), i(1)]), SUCCESS);
    assert_eq!(g.call("fd_advise", &[i(fd), I(0), I(0), i(9)]), EINVAL);
    assert_eq!(
        g.call(
            "fd_filestat_set_times",
            &[i(fd), I(1_000_000_000), I(2_000_000_000), i(5)]
        ),
        SUCCESS
    );
    assert_eq!(
        g.call("fd_filestat_set_times", &[i(fd), I(0), I(0), i(3)]),
        EINVAL
    );
    assert_eq!(g.call("fd_close", &[i(fd)]), SUCCESS);
    let meta = std::fs::metadata(tree.sandbox.join("new.txt")).unwrap();
    assert_eq!(meta.len(), 100);
    assert_eq!(
        meta.modified().unwrap(),
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(2)
    );
    assert_eq!(
        &std::fs::read(tree.sandbox.join("new.txt")).unwrap()[..4],
        b"0123"
    );
    // O_TRUNC empties it; append mode writes at the end
    let fd = g
        .open(PREOPEN, "new.txt", OFLAGS_TRUNC, RIGHTS_ALL, 1)
        .unwrap();
    g.write_fd(fd, b"one").unwrap();
    assert_eq!(g.call("fd_seek", &[i(fd), I(0), i(0), i(0)]), SUCCESS);
    g.write_fd(fd, b"two").unwrap();
    assert_eq!(g.call("fd_fdstat_get", &[i(fd), i(0)]), SUCCESS);
    assert_eq!(g.read(2, 1), [1]); // FDFLAGS_APPEND
    assert_eq!(
        std::fs::read(tree.sandbox.join("new.txt")).unwrap(),
        b"onetwo"
    );
}

#[test]
fn directories_are_created_listed_renamed_and_removed() {
    let tree = tree("dirs");
    let mut g = guest(&tree, DirPerms::ALL, FilePerms::ALL);
    let (p, l) = g.string(6000, "sub");
    assert_eq!(
        g.call("path_create_directory", &[i(PREOPEN), p, l]),
        SUCCESS
    );
    assert_eq!(g.call("path_create_directory", &[i(PREOPEN), p, l]), EEXIST);
    let fd = g
        .open(PREOPEN, "sub/inner.txt", OFLAGS_CREAT, RIGHTS_ALL, 0)
        .unwrap();
    g.call("fd_close", &[i(fd)]);
    assert_eq!(
        g.call("path_remove_directory", &[i(PREOPEN), p, l]),
        ENOTEMPTY
    );
    // readdir of the preopen: ".", "..", hello.txt, sub
    assert_eq!(
        g.call("fd_readdir", &[i(PREOPEN), i(0), i(4096), I(0), i(5000)]),
        SUCCESS
    );
    let used = g.u32(5000) as usize;
    let bytes = g.read(0, used);
    let mut names = Vec::new();
    let mut at = 0;
    while at + 24 <= used {
        let len = u32::from_le_bytes(bytes[at + 16..at + 20].try_into().unwrap()) as usize;
        names.push(String::from_utf8(bytes[at + 24..at + 24 + len].to_vec()).unwrap());
        at += 24 + len;
    }
    names.sort();
    assert_eq!(names, [".", "..", "hello.txt", "sub"]);
    // a small buffer is filled completely and the cookie continues the listing
    assert_eq!(
        g.call("fd_readdir", &[i(PREOPEN), i(0), i(30), I(0), i(5000)]),
        SUCCESS
    );
    assert_eq!(g.u32(5000), 30);
    assert_eq!(
        g.call("fd_readdir", &[i(PREOPEN), i(0), i(4096), I(3), i(5000)]),
        SUCCESS
    );
    assert_eq!(g.u64(0), 4); // d_next of the fourth entry
    assert_eq!(
        g.call("fd_readdir", &[i(1), i(0), i(4096), I(0), i(5000)]),
        ENOTDIR
    );
    // rename, stat by path, unlink, remove
    let (o, ol) = g.string(6100, "sub/inner.txt");
    let (n, nl) = g.string(6200, "moved.txt");
    assert_eq!(
        g.call("path_rename", &[i(PREOPEN), o, ol, i(PREOPEN), n, nl]),
        SUCCESS
    );
    assert_eq!(
        g.call("path_filestat_get", &[i(PREOPEN), i(1), n, nl, i(300)]),
        SUCCESS
    );
    assert_eq!(g.read(316, 1), [4]);
    assert_eq!(g.call("path_unlink_file", &[i(PREOPEN), n, nl]), SUCCESS);
    assert_eq!(g.call("path_unlink_file", &[i(PREOPEN), n, nl]), ENOENT);
    assert_eq!(g.call("path_unlink_file", &[i(PREOPEN), p, l]), EISDIR);
    assert_eq!(
        g.call("path_remove_directory", &[i(PREOPEN), p, l]),
        SUCCESS
    );
    assert!(!tree.sandbox.join("sub").exists());
    // open a subdirectory and work beneath it
    std::fs::create_dir(tree.sandbox.join("d")).unwrap();
    // Directories are opened without FD_WRITE (with it they are EISDIR, as below).
    let (d, dl) = g.string(6000, "d");
    let dir_rights = RIGHTS_ALL & !(1 << 6);
    let errno = g.call(
        "path_open",
        &[
            i(PREOPEN),
            i(1),
            d,
            dl,
            i(OFLAGS_DIRECTORY),
            I(dir_rights),
            I(RIGHTS_ALL),
            i(0),
            i(6500),
        ],
    );
    assert_eq!(errno, SUCCESS);
    let dir = g.u32(6500);
    assert_eq!(
        g.open(PREOPEN, "d", OFLAGS_DIRECTORY, RIGHTS_ALL, 0),
        Err(EISDIR)
    );
    let file = g.open(dir, "f", OFLAGS_CREAT, RIGHTS_ALL, 0).unwrap();
    g.write_fd(file, b"x").unwrap();
    assert_eq!(std::fs::read(tree.sandbox.join("d/f")).unwrap(), b"x");
    assert_eq!(
        g.open(PREOPEN, "hello.txt", OFLAGS_DIRECTORY, RIGHTS_ALL, 0),
        Err(ENOTDIR)
    );
    assert_eq!(g.open(PREOPEN, "d", 0, 1 << 6, 0), Err(EISDIR));
    assert_eq!(g.open(PREOPEN, "missing", 0, RIGHTS_ALL, 0), Err(ENOENT));
    // a path through a file is not a directory
    assert_eq!(g.open(file, "x", 0, RIGHTS_ALL, 0), Err(ENOTDIR));
}

#[test]
fn links_and_symlinks_inside_the_preopen_work() {
    let tree = tree("links");
    let mut g = guest(&tree, DirPerms::ALL, FilePerms::ALL);
    let (t, tl) = g.string(6000, "hello.txt");
    let (s, sl) = g.string(6100, "link");
    assert_eq!(g.call("path_symlink", &[t, tl, i(PREOPEN), s, sl]), SUCCESS);
    assert_eq!(
        g.call("path_readlink", &[i(PREOPEN), s, sl, i(0), i(100), i(200)]),
        SUCCESS
    );
    assert_eq!(g.u32(200), 9);
    assert_eq!(g.read(0, 9), b"hello.txt");
    // a short buffer truncates
    assert_eq!(
        g.call("path_readlink", &[i(PREOPEN), s, sl, i(0), i(4), i(200)]),
        SUCCESS
    );
    assert_eq!(g.u32(200), 4);
    // stat without following sees the link
    assert_eq!(
        g.call("path_filestat_get", &[i(PREOPEN), i(0), s, sl, i(300)]),
        SUCCESS
    );
    assert_eq!(g.read(316, 1), [7]);
    assert_eq!(
        g.call("path_filestat_get", &[i(PREOPEN), i(1), s, sl, i(300)]),
        SUCCESS
    );
    assert_eq!(g.read(316, 1), [4]);
    let fd = g.open(PREOPEN, "link", 0, RIGHTS_ALL, 0).unwrap();
    assert_eq!(g.read_fd(fd, 5).unwrap(), b"hello");
    // hard link (the open above reused the path buffer)
    let (t, tl) = g.string(6000, "hello.txt");
    let (h, hl) = g.string(6200, "hard");
    assert_eq!(
        g.call("path_link", &[i(PREOPEN), i(0), t, tl, i(PREOPEN), h, hl]),
        SUCCESS
    );
    assert_eq!(
        std::fs::read(tree.sandbox.join("hard")).unwrap(),
        b"hello from the host\n"
    );
    assert_eq!(
        g.call(
            "path_filestat_set_times",
            &[i(PREOPEN), i(0), s, sl, I(0), I(0), i(10)]
        ),
        SUCCESS
    );
}

#[test]
fn escapes_fail_and_touch_nothing_outside() {
    let tree = tree("escapes");
    // The host's own symlinks pointing out, and a loop.
    std::os::unix::fs::symlink("../secret.txt", tree.sandbox.join("out")).unwrap();
    std::os::unix::fs::symlink(&tree.root, tree.sandbox.join("abs_out")).unwrap();
    std::os::unix::fs::symlink("loop_b", tree.sandbox.join("loop_a")).unwrap();
    std::os::unix::fs::symlink("loop_a", tree.sandbox.join("loop_b")).unwrap();
    let before = snapshot_outside(&tree.root, &tree.sandbox);
    let mut g = guest(&tree, DirPerms::ALL, FilePerms::ALL);
    let write_rights = RIGHTS_ALL;

    // `..`, absolute paths, host symlinks out: EPERM, for reading and for writing.
    for path in [
        "../secret.txt",
        "/etc/passwd",
        "out",
        "abs_out/secret.txt",
        "./../sandbox/../secret.txt",
    ] {
        assert_eq!(
            g.open(PREOPEN, path, 0, RIGHTS_ALL, 0),
            Err(EPERM),
            "{path}"
        );
        assert_eq!(
            g.open(PREOPEN, path, OFLAGS_TRUNC, write_rights, 0),
            Err(EPERM),
            "{path}"
        );
    }
    assert_eq!(
        g.open(PREOPEN, "../new.txt", OFLAGS_CREAT, write_rights, 0),
        Err(EPERM)
    );
    // A symlink loop, and a final symlink with following off.
    assert_eq!(g.open(PREOPEN, "loop_a", 0, RIGHTS_ALL, 0), Err(ELOOP));
    let (p, l) = g.string(6000, "hello.txt");
    let (s, sl) = g.string(6100, "mine");
    assert_eq!(g.call("path_symlink", &[p, l, i(PREOPEN), s, sl]), SUCCESS);
    let (m, ml) = g.string(6000, "mine");
    assert_eq!(
        g.call(
            "path_open",
            &[
                i(PREOPEN),
                i(0),
                m,
                ml,
                i(0),
                I(RIGHTS_ALL),
                I(RIGHTS_ALL),
                i(0),
                i(6500)
            ]
        ),
        ELOOP
    );
    // Symlinks the guest creates: an absolute target is refused, a relative one that climbs
    // out is created (it is only data) but never followed out.
    let (t, tl) = g.string(6000, "/etc/passwd");
    let (n, nl) = g.string(6100, "guest_abs");
    assert_eq!(g.call("path_symlink", &[t, tl, i(PREOPEN), n, nl]), EPERM);
    let (t, tl) = g.string(6000, "../secret.txt");
    let (n, nl) = g.string(6100, "guest_out");
    assert_eq!(g.call("path_symlink", &[t, tl, i(PREOPEN), n, nl]), SUCCESS);
    assert_eq!(g.open(PREOPEN, "guest_out", 0, RIGHTS_ALL, 0), Err(EPERM));
    assert_eq!(
        g.open(PREOPEN, "guest_out", OFLAGS_TRUNC, write_rights, 0),
        Err(EPERM)
    );
    // Every mutating call aimed outside.
    for (name, path) in [
        ("path_create_directory", "../evil"),
        ("path_remove_directory", "../sandbox"),
        ("path_unlink_file", "../secret.txt"),
        ("path_unlink_file", "/tmp"),
    ] {
        let (p, l) = g.string(6000, path);
        assert_eq!(g.call(name, &[i(PREOPEN), p, l]), EPERM, "{name} {path}");
    }
    let (o, ol) = g.string(6000, "hello.txt");
    let (n, nl) = g.string(6100, "../stolen.txt");
    assert_eq!(
        g.call("path_rename", &[i(PREOPEN), o, ol, i(PREOPEN), n, nl]),
        EPERM
    );
    assert_eq!(
        g.call("path_link", &[i(PREOPEN), i(0), o, ol, i(PREOPEN), n, nl]),
        EPERM
    );
    let (s, sl) = g.string(6200, "../secret.txt");
    assert_eq!(
        g.call("path_rename", &[i(PREOPEN), s, sl, i(PREOPEN), o, ol]),
        EPERM
    );
    assert_eq!(
        g.call("path_filestat_get", &[i(PREOPEN), i(1), s, sl, i(300)]),
        EPERM
    );
    assert_eq!(
        g.call(
            "path_filestat_set_times",
            &[i(PREOPEN), i(1), s, sl, I(0), I(0), i(10)]
        ),
        EPERM
    );
    let (gs, gsl) = g.string(6300, "guest_out");
    assert_eq!(
        g.call(
            "path_filestat_set_times",
            &[i(PREOPEN), i(1), gs, gsl, I(0), I(0), i(10)]
        ),
        EPERM
    );
    assert_eq!(
        g.call("path_readlink", &[i(PREOPEN), s, sl, i(0), i(100), i(200)]),
        EPERM
    );

    assert_eq!(snapshot_outside(&tree.root, &tree.sandbox), before);
    assert_eq!(
        std::fs::read(tree.root.join("secret.txt")).unwrap(),
        b"top secret\n"
    );
}

#[test]
fn renumbering_onto_a_preopen_replaces_it_and_grants_nothing() {
    let tree = tree("renumber");
    let before = snapshot_outside(&tree.root, &tree.sandbox);
    let mut g = guest(&tree, DirPerms::ALL, FilePerms::ALL);
    let fd = g.open(PREOPEN, "hello.txt", 0, RIGHTS_ALL, 0).unwrap();
    assert_eq!(g.call("fd_renumber", &[i(fd), i(PREOPEN)]), SUCCESS);
    // The preopen is gone: its number is now the file, and the old number is closed.
    assert_eq!(g.call("fd_prestat_get", &[i(PREOPEN), i(0)]), EBADF);
    assert_eq!(g.read_fd(PREOPEN, 5).unwrap(), b"hello");
    assert_eq!(g.read_fd(fd, 5), Err(EBADF));
    assert_eq!(
        g.open(PREOPEN, "../secret.txt", 0, RIGHTS_ALL, 0),
        Err(ENOTDIR)
    );
    // Renumbering from or onto a closed descriptor is EBADF.
    assert_eq!(g.call("fd_renumber", &[i(fd), i(PREOPEN)]), EBADF);
    assert_eq!(g.call("fd_renumber", &[i(PREOPEN), i(99)]), EBADF);
    assert_eq!(g.call("fd_renumber", &[i(PREOPEN), i(PREOPEN)]), SUCCESS);
    assert_eq!(snapshot_outside(&tree.root, &tree.sandbox), before);
}

#[test]
fn read_only_preopen_refuses_writes_with_enotcapable() {
    let tree = tree("readonly");
    let mut g = guest(&tree, DirPerms::READ_ONLY, FilePerms::READ_ONLY);
    assert_eq!(
        g.open(PREOPEN, "new.txt", OFLAGS_CREAT, RIGHTS_ALL, 0),
        Err(ENOTCAPABLE)
    );
    assert_eq!(g.open(PREOPEN, "hello.txt", 0, 1 << 6, 0), Err(ENOTCAPABLE));
    assert_eq!(
        g.open(PREOPEN, "hello.txt", OFLAGS_TRUNC, 1 << 1, 0),
        Err(ENOTCAPABLE)
    );
    let (p, l) = g.string(6000, "dir");
    assert_eq!(
        g.call("path_create_directory", &[i(PREOPEN), p, l]),
        ENOTCAPABLE
    );
    let (p, l) = g.string(6000, "hello.txt");
    assert_eq!(g.call("path_unlink_file", &[i(PREOPEN), p, l]), ENOTCAPABLE);
    let fd = g.open(PREOPEN, "hello.txt", 0, 1 << 1, 0).unwrap();
    assert_eq!(g.read_fd(fd, 5).unwrap(), b"hello");
    assert_eq!(g.write_fd(fd, b"x"), Err(ENOTCAPABLE));
    assert_eq!(
        std::fs::read(tree.sandbox.join("hello.txt")).unwrap(),
        b"hello from the host\n"
    );
}

#[test]
fn dropped_rights_are_enforced_and_cannot_be_regained() {
    let tree = tree("rights");
    let mut g = guest(&tree, DirPerms::ALL, FilePerms::ALL);
    let fd = g.open(PREOPEN, "hello.txt", 0, RIGHTS_ALL, 0).unwrap();
    let read = 1u64 << 1;
    assert_eq!(g.call("fd_fdstat_get", &[i(fd), i(0)]), SUCCESS);
    let base = g.u64(8);
    assert_ne!(base & read, 0);
    assert_eq!(
        g.call("fd_fdstat_set_rights", &[i(fd), I(base & !read), I(0)]),
        SUCCESS
    );
    assert_eq!(g.read_fd(fd, 1), Err(ENOTCAPABLE));
    assert_eq!(
        g.call("fd_fdstat_set_rights", &[i(fd), I(base), I(0)]),
        ENOTCAPABLE
    );
    // A file opened for reading only cannot be written, whatever its rights say.
    let fd = g.open(PREOPEN, "hello.txt", 0, read, 0).unwrap();
    assert_eq!(g.write_fd(fd, b"x"), Err(ENOTCAPABLE));
}
