//! `weft compile` and `.cwasm` files, and the code cache `weft run` keeps by default: round
//! trips, what a damaged file prints, several processes filling one cache at once.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "../../tests/all/common.rs"]
mod common;

/// `weft` with `args`, from the CLI crate's directory, with no cache settings inherited from
/// the environment that runs the tests.
fn weft_command(args: &[&str]) -> Command {
    let mut command = common::target_command(env!("CARGO_BIN_EXE_weft"));
    command
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("WEFT_NO_CACHE")
        .env_remove("WEFT_CACHE_DIR");
    command
}

fn weft(args: &[&str], cache_dir: &Path) -> Output {
    weft_command(args)
        .env("WEFT_CACHE_DIR", cache_dir)
        .output()
        .expect("weft runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh, empty directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-cache-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn fib(file: &Path, cache_dir: &Path) -> Output {
    weft(
        &["run", "--invoke", "fib", file.to_str().unwrap(), "20"],
        cache_dir,
    )
}

#[test]
fn compiled_module_runs_from_its_cwasm_file() {
    let dir = scratch("compile");
    let cwasm = dir.join("fib.cwasm");
    let out = weft(
        &[
            "compile",
            "../examples/fib.wat",
            "-o",
            cwasm.to_str().unwrap(),
        ],
        &dir.join("cache"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(std::fs::read(&cwasm).unwrap().starts_with(b"\0weft-cw"));
    // Recognized by its header, not its name.
    let renamed = dir.join("fib.wasm");
    std::fs::rename(&cwasm, &renamed).unwrap();
    let out = fib(&renamed, &dir.join("cache"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "6765\n");
    // Loading a .cwasm neither needs nor fills the cache.
    assert!(files(&dir.join("cache")).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `weft compile -W fuel=N` compiles the fuel checks in, so `weft run -W fuel=N` runs the
/// .cwasm with its limit; run without the limit, the same file is refused (its code was made
/// for other settings), and so is a .cwasm made without checks when a limit is asked for.
#[test]
fn compile_takes_the_options_that_shape_code() {
    let dir = scratch("compile-w");
    let fueled = dir.join("fueled.cwasm");
    let plain = dir.join("plain.cwasm");
    let cache = dir.join("cache");
    for (cwasm, options) in [(&fueled, &["-W", "fuel=1"][..]), (&plain, &[][..])] {
        let mut args = vec![
            "compile",
            "../examples/fib.wat",
            "-o",
            cwasm.to_str().unwrap(),
        ];
        args.extend_from_slice(options);
        let out = weft(&args, &cache);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let run = |cwasm: &Path, options: &[&str]| {
        let mut args = vec!["run"];
        args.extend_from_slice(options);
        args.extend_from_slice(&["--invoke", "fib", cwasm.to_str().unwrap(), "20"]);
        weft(&args, &cache)
    };
    let out = run(&fueled, &["-W", "fuel=100"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("error: the program used all its fuel (-W fuel=100)"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&fueled, &["-W", "fuel=100000000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "6765\n");
    for (cwasm, options) in [(&fueled, &[][..]), (&plain, &["-W", "fuel=100"][..])] {
        let out = run(cwasm, options);
        assert_eq!(out.status.code(), Some(1), "{options:?}");
        assert!(
            text(&out.stderr).contains("consume_fuel"),
            "{options:?}: {}",
            text(&out.stderr)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compile_writes_next_to_the_module_by_default() {
    let dir = scratch("default-out");
    let wat = dir.join("fib.wat");
    std::fs::copy("../examples/fib.wat", &wat).unwrap();
    let out = weft(&["compile", wat.to_str().unwrap()], &dir.join("cache"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(dir.join("fib.cwasm").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn damaged_cwasm_is_a_one_line_error_naming_what_is_wrong() {
    let dir = scratch("damaged");
    let cwasm = dir.join("fib.cwasm");
    let out = weft(
        &[
            "compile",
            "../examples/fib.wat",
            "-o",
            cwasm.to_str().unwrap(),
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let good = std::fs::read(&cwasm).unwrap();

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x10;
    std::fs::write(&cwasm, &flipped).unwrap();
    let out = fib(&cwasm, &dir);
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: {}: cannot load the compiled module: checksum mismatch: the file is corrupt \
             or was modified\n",
            cwasm.display()
        )
    );

    std::fs::write(&cwasm, &good[..good.len() - 100]).unwrap();
    let out = fib(&cwasm, &dir);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot load the compiled module: the file is truncated")
            && stderr.lines().count() == 1,
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn run_caches_compiled_code_in_the_user_cache_directory_by_default() {
    let home = scratch("xdg");
    let run = |extra: &[&str]| {
        let mut args = vec!["run"];
        args.extend_from_slice(extra);
        args.extend(["--invoke", "fib", "../examples/fib.wat", "20"]);
        weft_command(&args)
            .env("XDG_CACHE_HOME", &home)
            .output()
            .expect("weft runs")
    };
    let out = run(&["--no-cache"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(files(&home).is_empty(), "--no-cache writes nothing");
    let out = run(&[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "6765\n");
    let entries = files(&home.join("weft"));
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].ends_with(".cwasm"), "{entries:?}");
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn processes_filling_one_cache_at_once_all_succeed_and_leave_one_whole_entry() {
    let dir = scratch("race");
    let cache = dir.join("cache");
    let wat = "../examples/fib.wat";
    let children: Vec<_> = (0..4)
        .map(|_| {
            weft_command(&["run", "--invoke", "fib", wat, "20"])
                .env("WEFT_CACHE_DIR", &cache)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("weft starts")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "6765\n");
    }
    let entries = files(&cache);
    assert_eq!(
        entries.len(),
        1,
        "one entry, no temporary files: {entries:?}"
    );
    let entry = cache.join(&entries[0]);
    let whole = std::fs::read(&entry).unwrap();

    // Half an entry (weft's writes cannot leave one, but disk trouble or a careless copy can)
    // is refused, recompiled and replaced.
    std::fs::write(&entry, &whole[..whole.len() / 2]).unwrap();
    let out = fib(Path::new(wat), &cache);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "6765\n");
    assert_eq!(std::fs::read(&entry).unwrap(), whole);
    std::fs::remove_dir_all(&dir).unwrap();
}
