//! The `weft` command as a user meets it: output, messages and exit codes.

use std::process::Output;

// The engine's tests and these share one runner-aware launcher.
#[path = "../../tests/all/common.rs"]
mod common;

/// Runs the built `weft` binary (through the cross-run runner when there is one).
fn weft(args: &[&str]) -> Output {
    common::target_command(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        // Hermetic: the code cache has tests of its own (compile_cache.rs).
        .env("WEFT_NO_CACHE", "1")
        .output()
        .expect("weft runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn run_invoke_prints_the_results() {
    let out = weft(&["run", "../examples/fib.wat", "--invoke", "fib", "20"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "6765\n");
}

#[test]
fn run_invoke_takes_and_prints_v128_as_hex() {
    let dir = std::env::temp_dir().join(format!("weft-cli-v128-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("v128.wat");
    std::fs::write(
        &file,
        r#"(module (func (export "add") (param v128 v128) (result v128)
             (i32x4.add (local.get 0) (local.get 1))))"#,
    )
    .unwrap();
    let out = weft(&[
        "run",
        file.to_str().unwrap(),
        "--invoke",
        "add",
        "0x00000004000000030000000200000001",
        "0x10",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "0x00000004000000030000000200000011\n");
}

#[test]
fn trapping_call_prints_the_trap_and_backtrace_and_fails() {
    let dir = std::env::temp_dir().join(format!("weft-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("trap.wat");
    std::fs::write(
        &file,
        r#"(module $m (func $deep (unreachable)) (func (export "go") (call $deep)))"#,
    )
    .unwrap();
    let out = weft(&["run", file.to_str().unwrap(), "--invoke", "go"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error: wasm trap: unreachable\nwasm backtrace:\n"),
        "{stderr}"
    );
    assert!(stderr.contains("m!deep (func 0)"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn malformed_module_names_the_offset_and_fails() {
    let dir = std::env::temp_dir().join(format!("weft-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.wasm");
    std::fs::write(&file, b"\0asm\x01\0\0\0\x01\x05").unwrap();
    let out = weft(&["run", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("invalid module: unexpected end-of-file (at offset 0xa)"),
        "{stderr}"
    );
}

#[test]
fn wrong_argument_is_a_message_not_a_panic() {
    let out = weft(&["run", "../examples/fib.wat", "--invoke", "fib", "twenty"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "error: `twenty` is not a valid i32\n");
}

/// Issue 12: `--5` was read as 5 (the sign was stripped once by weft and once more by the
/// number parser), and `-+5`, `0x-5` were accepted too.
#[test]
fn doubled_or_misplaced_signs_in_integer_arguments_are_rejected() {
    for arg in ["--5", "-+5", "+5", "0x-5", "-0x+5", "-", "0x"] {
        let out = weft(&["run", "../examples/fib.wat", "--invoke", "fib", "--", arg]);
        assert_eq!(out.status.code(), Some(1), "{arg}");
        assert_eq!(
            text(&out.stderr),
            format!("error: `{arg}` is not a valid i32\n"),
            "{arg}"
        );
    }
    let out = weft(&[
        "run",
        "../examples/fib.wat",
        "--invoke",
        "fib",
        "--",
        "-0x0",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn wast_reports_each_file_and_fails_on_a_failed_directive() {
    let out = weft(&["wast", "tests/fixtures/failing.wast"]);
    assert!(!out.status.success());
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("FAIL tests/fixtures/failing.wast: 2 passed, 1 failed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("total: 2 passed, 1 failed, 0 skipped"),
        "{stdout}"
    );
    assert!(
        text(&out.stderr).contains("failing.wast:4"),
        "{}",
        text(&out.stderr)
    );
}

/// A module that never returns, and one that counts down.
fn spin_module(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("spin.wat");
    std::fs::write(
        &file,
        r#"(module
             (func $spin (export "spin") (loop $l (br $l)))
             (func (export "count") (param $n i32) (result i32)
               (loop $l
                 (local.set $n (i32.sub (local.get $n) (i32.const 1)))
                 (br_if $l (local.get $n)))
               (local.get $n)))"#,
    )
    .unwrap();
    file
}

#[test]
fn timeout_stops_an_infinite_loop_and_names_the_function() {
    let file = spin_module("timeout");
    let out = weft(&[
        "run",
        "-W",
        "timeout=200ms",
        "--invoke",
        "spin",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(
            "error: the program ran longer than its time limit (-W timeout=200ms) and was stopped\n"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("spin"), "{stderr}");
}

#[test]
fn fuel_limits_how_much_a_program_runs() {
    let file = spin_module("fuel");
    let file = file.to_str().unwrap();
    // 6 units an iteration: 1,000 iterations need 6,000.
    let out = weft(&["run", "-W", "fuel=5000", "--invoke", "count", file, "1000"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("error: the program used all its fuel (-W fuel=5000)"),
        "{}",
        text(&out.stderr)
    );
    let out = weft(&["run", "-W", "fuel=7000", "--invoke", "count", file, "1000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "0\n");
    let out = weft(&["run", "-W", "speed=3", "--invoke", "count", file, "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("unknown option"),
        "{}",
        text(&out.stderr)
    );
}

/// `-W tail-call=n` (wasmtime's spelling) turns a 3.0 feature off: a module using it is
/// refused with words that name the switch; on by default, the same module runs.
#[test]
fn feature_switches_turn_proposals_off() {
    let dir = std::env::temp_dir().join(format!("weft-cli-features-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tail.wat");
    std::fs::write(
        &file,
        r#"(module
             (func $count (export "count") (param $n i32) (result i32)
               (if (result i32) (i32.eqz (local.get $n))
                 (then (i32.const 7))
                 (else (return_call $count (i32.sub (local.get $n) (i32.const 1)))))))"#,
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let out = weft(&["run", "--invoke", "count", file, "1000000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "7\n");
    let out = weft(&["run", "-W", "tail-call=n", "--invoke", "count", file, "3"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("tail call"), "{stderr}");
    assert!(stderr.contains("turns off: tail-call"), "{stderr}");
    let out = weft(&["run", "-W", "gc=y", "--invoke", "count", file, "3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("does not implement the gc proposal"),
        "{}",
        text(&out.stderr)
    );
    // Exceptions: on by default, an uncaught one is an error; off, the module is refused.
    let thrower = dir.join("throw.wat");
    std::fs::write(
        &thrower,
        r#"(module (tag $e (param i32)) (func (export "f") (throw $e (i32.const 3))))"#,
    )
    .unwrap();
    let thrower = thrower.to_str().unwrap();
    let out = weft(&["run", "--invoke", "f", thrower]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("uncaught Wasm exception"), "{stderr}");
    assert!(stderr.contains("I32(3)"), "{stderr}");
    let out = weft(&["run", "-W", "exceptions=n", "--invoke", "f", thrower]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("turns off: exceptions"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn lazy_compilation_option_runs_the_same_and_refuses_unknown_keys() {
    for options in ["lazy", "lazy=y,lazy-background=n"] {
        let out = weft(&[
            "run",
            "-C",
            options,
            "../examples/fib.wat",
            "--invoke",
            "fib",
            "20",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "6765\n");
    }
    let out = weft(&["run", "-C", "lazy=sometimes", "../examples/fib.wat"]);
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stderr),
        "error: -C lazy=sometimes: expected y or n\n"
    );
}
