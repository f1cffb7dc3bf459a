//! `weft run` of WASI programs built by real toolchains (`programs/`): arguments, environment,
//! preopened directories, stdin, exit statuses, and the one-line errors for what it cannot run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

#[path = "../../tests/all/common.rs"]
mod common;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `weft` with `args` from the repository root, feeding it `stdin`.
fn weft(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = common::target_command(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .current_dir(repo())
        // Hermetic: the code cache has tests of its own (compile_cache.rs).
        .env("WEFT_NO_CACHE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weft starts");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().expect("weft runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh, empty directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn sqlite_driver_writes_a_real_database_in_a_preopened_directory() {
    let dir = scratch("sqlite");
    let mapping = format!("{}::/data", dir.display());
    let out = weft(
        &[
            "run",
            "--dir",
            &mapping,
            "programs/wasm/sqlite-driver.wasm",
            "/data/test.db",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let expected = std::fs::read_to_string(repo().join("programs/sqlite/expected.txt")).unwrap();
    assert_eq!(text(&out.stdout), expected);
    // Really written: a SQLite file of the size the native build writes, and nothing else.
    let db = std::fs::read(dir.join("test.db")).unwrap();
    assert!(db.starts_with(b"SQLite format 3\0"));
    assert_eq!(db.len(), 450_560);
    let entries: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(entries.len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rust_std_program_gets_args_env_stdin_and_its_exit_status() {
    let dir = scratch("rust");
    let mapping = format!("{}::/sandbox", dir.display());
    let stdin = std::fs::read(repo().join("programs/rust-wasi/stdin.txt")).unwrap();
    let out = weft(
        &[
            "run",
            "--dir",
            &mapping,
            "--env",
            "RUST_WASI_NAME=weft",
            "--env",
            "RUST_WASI_QUOTE=say \"hi\"",
            "programs/wasm/rust-wasi.wasm",
            "/sandbox",
            "alpha",
            "beta gamma",
        ],
        &stdin,
    );
    assert_eq!(out.status.code(), Some(17), "{}", text(&out.stderr));
    let expected = std::fs::read_to_string(repo().join("programs/rust-wasi/expected.txt")).unwrap();
    assert_eq!(text(&out.stdout), expected);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sleeper_sleeps_through_poll_oneoff_then_reads_its_file() {
    let out = weft(
        &[
            "run",
            "--dir",
            "programs/sleeper::/data",
            "programs/wasm/sleeper.wasm",
            "50",
            "/data/greeting.txt",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "slept 50 ms; read: Greetings from a file in a preopened directory.\n"
    );
}

#[test]
fn missing_preopen_directory_is_a_one_line_error() {
    let out = weft(
        &["run", "--dir", "/no/such/dir", "programs/wasm/sleeper.wasm"],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: --dir /no/such/dir: /no/such/dir is not a directory\n"
    );
}

#[test]
fn imports_weft_does_not_provide_are_all_named() {
    let file = std::env::temp_dir().join(format!("weft-cli-imports-{}.wat", std::process::id()));
    std::fs::write(
        &file,
        r#"(module (import "env" "foo" (func)) (import "env" "bar" (func (param i32)))
             (func (export "_start")))"#,
    )
    .unwrap();
    let out = weft(&["run", file.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("unknown imports: env::foo, env::bar"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn module_without_start_is_not_a_command_but_can_be_invoked() {
    let file = std::env::temp_dir().join(format!("weft-cli-lib-{}.wat", std::process::id()));
    std::fs::write(
        &file,
        r#"(module (func (export "add") (param i32 i32) (result i32)
             local.get 0 local.get 1 i32.add))"#,
    )
    .unwrap();
    let out = weft(&["run", file.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is not a WASI command"));
    let out = weft(
        &["run", "--invoke", "add", file.to_str().unwrap(), "2", "3"],
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "5\n");
}

#[test]
fn proc_exit_status_is_the_process_status_and_a_trap_is_a_failure() {
    let exit = std::env::temp_dir().join(format!("weft-cli-exit-{}.wat", std::process::id()));
    std::fs::write(
        &exit,
        r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
             (memory (export "memory") 1)
             (func (export "_start") (call $exit (i32.const 3)) unreachable))"#,
    )
    .unwrap();
    let out = weft(&["run", exit.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty());
    let trap = std::env::temp_dir().join(format!("weft-cli-trap-{}.wat", std::process::id()));
    std::fs::write(
        &trap,
        r#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#,
    )
    .unwrap();
    let out = weft(&["run", trap.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("error: wasm trap: unreachable"));
}

#[test]
fn timeout_stops_a_program_waiting_in_poll_oneoff() {
    // 2 s, not less: the timer starts before instantiation, and under qemu-user the sleeper
    // takes 200-300 ms to reach its poll_oneoff, so a shorter limit stopped it in Wasm code
    // instead (a trap and a backtrace), which is not what this test is about.
    let start = std::time::Instant::now();
    let out = weft(
        &[
            "run",
            "-W",
            "timeout=2s",
            "--dir",
            "programs/sleeper::/data",
            "programs/wasm/sleeper.wasm",
            "60000",
            "/data/greeting.txt",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "error: the program ran longer than its time limit (-W timeout=2s) and was stopped\n"
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
}
