//! A WASI command written against Rust's `std` only: files and directories, arguments and
//! environment, stdin, clocks and sleeping, and a non-zero exit status.
//!
//! ```text
//! rust-wasi DIR [WORDS...] < lines
//! ```
//!
//! `DIR` is a directory the program may scribble in (a preopened guest path under WASI); it
//! creates `DIR/rust-wasi-work`, works inside it and removes it again. `WORDS` are echoed back.
//! The environment variables whose names start with `RUST_WASI_` are listed (sorted). Every
//! line of stdin is echoed transformed (upper-cased, words reversed). Everything printed is
//! deterministic, so the native build and the wasm32-wasip1 build print the same text
//! (`expected.txt`). The exit status is **17** when every check passed (to prove that a
//! `proc_exit` code reaches the host) and 1 (with the reason on stderr) when one failed; a
//! missing `DIR` is a usage error, status 2.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The status a fully successful run exits with.
const SUCCESS_EXIT_CODE: i32 = 17;

/// 2020-01-01T00:00:00Z: a real clock reads later than this.
const JAN_2020_UNIX_SECONDS: u64 = 1_577_836_800;

/// How long the program sleeps (`poll_oneoff` with a clock subscription under WASI).
const SLEEP: Duration = Duration::from_millis(50);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args.get(1) else {
        eprintln!("usage: rust-wasi DIR [WORDS...] < lines");
        process::exit(2);
    };
    let words = &args[2..];
    match run(Path::new(dir), words) {
        Ok(()) => {
            println!("exit {SUCCESS_EXIT_CODE}");
            process::exit(SUCCESS_EXIT_CODE);
        }
        Err(message) => {
            eprintln!("rust-wasi: {message}");
            process::exit(1);
        }
    }
}

/// A failed check: the message says which one.
type Check = Result<(), String>;

fn ensure(condition: bool, what: &str) -> Check {
    if condition {
        Ok(())
    } else {
        Err(format!("check failed: {what}"))
    }
}

fn io_context<T>(what: &str, result: io::Result<T>) -> Result<T, String> {
    result.map_err(|e| format!("{what}: {e}"))
}

fn run(dir: &Path, words: &[String]) -> Check {
    arguments(words);
    environment();
    filesystem(dir)?;
    standard_input()?;
    clocks()?;
    Ok(())
}

fn arguments(words: &[String]) {
    println!("args: {}", words.len());
    for (i, word) in words.iter().enumerate() {
        println!("  arg[{}] = {word:?}", i + 1);
    }
}

fn environment() {
    let vars: BTreeMap<String, String> = std::env::vars()
        .filter(|(name, _)| name.starts_with("RUST_WASI_"))
        .collect();
    println!("env: {} RUST_WASI_* variables", vars.len());
    for (name, value) in &vars {
        println!("  {name} = {value:?}");
    }
    match std::env::var("RUST_WASI_UNSET") {
        Err(std::env::VarError::NotPresent) => println!("  RUST_WASI_UNSET is not set"),
        other => println!("  RUST_WASI_UNSET: {other:?}"),
    }
}

fn filesystem(dir: &Path) -> Check {
    let work = dir.join("rust-wasi-work");
    if work.exists() {
        io_context("remove a stale work directory", fs::remove_dir_all(&work))?;
    }
    io_context(
        "create_dir_all",
        fs::create_dir_all(work.join("nested/deeper")),
    )?;
    io_context("create_dir", fs::create_dir(work.join("empty")))?;
    ensure(
        fs::create_dir(work.join("empty")).map_err(|e| e.kind()) == Err(ErrorKind::AlreadyExists),
        "create_dir on an existing directory is AlreadyExists",
    )?;

    // Write, append, read back.
    let notes = work.join("notes.txt");
    io_context("write", fs::write(&notes, "first line\n"))?;
    {
        let mut file = io_context(
            "open for append",
            OpenOptions::new().append(true).open(&notes),
        )?;
        io_context("append", file.write_all(b"second line\n"))?;
        io_context("sync_all", file.sync_all())?;
    }
    let text = io_context("read_to_string", fs::read_to_string(&notes))?;
    print!("fs: notes.txt has {} bytes:\n{text}", text.len());

    // Seek and partial reads and writes through one handle.
    {
        let mut file = io_context(
            "open read+write",
            OpenOptions::new().read(true).write(true).open(&notes),
        )?;
        io_context("seek", file.seek(SeekFrom::Start(6)))?;
        let mut word = [0u8; 4];
        io_context("read_exact", file.read_exact(&mut word))?;
        println!("fs: bytes 6..10 are {:?}", String::from_utf8_lossy(&word));
        io_context("seek from end", file.seek(SeekFrom::End(-5)))?;
        io_context("overwrite", file.write_all(b"LINE"))?;
        let position = io_context("stream_position", file.stream_position())?;
        println!("fs: position after overwrite {position}");
    }
    let text = io_context("read again", fs::read_to_string(&notes))?;
    println!("fs: after overwrite {text:?}");

    // Metadata, truncation, copy, rename.
    let meta = io_context("metadata", fs::metadata(&notes))?;
    println!(
        "fs: metadata len {} is_file {} is_dir {}",
        meta.len(),
        meta.is_file(),
        meta.is_dir()
    );
    ensure(meta.modified().is_ok(), "a file has a modification time")?;
    {
        let file = io_context(
            "open to truncate",
            OpenOptions::new().write(true).open(&notes),
        )?;
        io_context("set_len", file.set_len(10))?;
    }
    println!(
        "fs: truncated to {:?}",
        io_context("read", fs::read_to_string(&notes))?
    );
    let copied = io_context("copy", fs::copy(&notes, work.join("nested/copy.txt")))?;
    println!("fs: copied {copied} bytes");
    io_context(
        "rename",
        fs::rename(&notes, work.join("nested/deeper/moved.txt")),
    )?;
    ensure(!notes.exists(), "a renamed file is gone from its old name")?;
    let mut big = io_context("create", File::create(work.join("nested/big.bin")))?;
    let block: Vec<u8> = (0..=255u8).cycle().take(64 * 1024).collect();
    for _ in 0..4 {
        io_context("write block", big.write_all(&block))?;
    }
    drop(big);
    let data = io_context("read big", fs::read(work.join("nested/big.bin")))?;
    let sum: u64 = data.iter().map(|&b| u64::from(b)).sum();
    println!("fs: big.bin {} bytes, byte sum {sum}", data.len());

    // Directory listing, sorted (readdir order is the host's).
    list(&work, &work)?;

    // Errors come back as the right kinds.
    ensure(
        fs::read(work.join("missing.txt")).map_err(|e| e.kind()) == Err(ErrorKind::NotFound),
        "reading a missing file is NotFound",
    )?;
    ensure(
        fs::remove_dir(work.join("nested")).is_err(),
        "removing a non-empty directory fails",
    )?;
    println!("fs: missing file is NotFound, non-empty remove_dir fails");

    // Clean up, piece by piece and then recursively.
    io_context("remove_file", fs::remove_file(work.join("nested/copy.txt")))?;
    io_context("remove_dir", fs::remove_dir(work.join("empty")))?;
    io_context("remove_dir_all", fs::remove_dir_all(&work))?;
    ensure(!work.exists(), "remove_dir_all removed the work directory")?;
    println!("fs: cleaned up");
    Ok(())
}

/// Prints the tree under `dir` in name order, paths relative to `root`.
fn list(root: &Path, dir: &Path) -> Check {
    let mut entries = Vec::new();
    for entry in io_context("read_dir", fs::read_dir(dir))? {
        let entry = io_context("read_dir entry", entry)?;
        let kind = io_context("file_type", entry.file_type())?;
        entries.push((entry.file_name(), entry.path(), kind.is_dir()));
    }
    entries.sort();
    for (_, path, is_dir) in entries {
        let relative = path.strip_prefix(root).map_err(|e| e.to_string())?;
        if is_dir {
            println!("  dir  {}/", relative.display());
            list(root, &path)?;
        } else {
            let len = io_context("metadata", fs::metadata(&path))?.len();
            println!("  file {} ({len} bytes)", relative.display());
        }
    }
    Ok(())
}

fn standard_input() -> Check {
    let mut stdin = io::stdin().lock();
    let mut lines = 0;
    let mut bytes = 0;
    let mut line = String::new();
    loop {
        line.clear();
        let read = io_context("read stdin", stdin.read_line(&mut line))?;
        if read == 0 {
            break;
        }
        lines += 1;
        bytes += read;
        let reversed: Vec<String> = line
            .split_whitespace()
            .rev()
            .map(str::to_uppercase)
            .collect();
        println!("stdin {lines}: {:?}", reversed.join(" "));
    }
    println!("stdin: {lines} lines, {bytes} bytes");
    Ok(())
}

fn clocks() -> Check {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| format!("system time before 1970: {e}"))?;
    ensure(
        now.as_secs() > JAN_2020_UNIX_SECONDS,
        "the system clock reads after 2020",
    )?;
    println!("time: system clock is after 2020");

    let start = Instant::now();
    thread::sleep(SLEEP);
    let slept = start.elapsed();
    ensure(slept >= SLEEP, "sleep lasts at least as long as asked")?;
    ensure(
        Instant::now() >= start + slept,
        "the monotonic clock does not go back",
    )?;
    println!("time: slept at least {} ms", SLEEP.as_millis());
    Ok(())
}
