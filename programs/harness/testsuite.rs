//! Reading and judging the official WASI test suite (`tests/wasi-testsuite/`), independent of
//! how a test is run.
//!
//! Each test is `NAME.wasm` (a WASI command) with an optional `NAME.json` beside it that says
//! how to run it and what must happen (see `tests/wasi-testsuite/SOURCE.md`). This module turns
//! the pair into a [`TestCase`]: the arguments, the environment, the directory to preopen as
//! `/`, and the expected exit status and output prefixes. The caller supplies the runner, an
//! in-process one on the WASI host crate or a `weft run` process, as a closure to
//! [`run_suite`], which gives each test a fresh copy of its directory (the tests write into it)
//! and compares the outcome.
//!
//! Meant as a test-support module (`mod testsuite;` in an integration test); it needs
//! `serde_json` as a dev-dependency and nothing else outside std.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// One test of the suite, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestCase {
    /// `LANGUAGE/NAME`, e.g. `rust/fd_readdir`: unique in the suite, stable across checkouts.
    pub name: String,
    /// The module to run.
    pub wasm: PathBuf,
    /// The program's arguments after `argv[0]` (which is the module path, as in wasmtime).
    pub args: Vec<String>,
    /// The whole environment, in name order; nothing is inherited.
    pub env: Vec<(String, String)>,
    /// A host directory to preopen as the guest's `/`; run on a copy (see [`run_suite`]).
    pub root: Option<PathBuf>,
    /// The exit status the program must end with.
    pub exit_code: i32,
    /// What stdout must start with, if the test says.
    pub stdout: Option<String>,
    /// What stderr must start with, if the test says.
    pub stderr: Option<String>,
}

/// Why a test description could not be read.
#[derive(Debug)]
pub enum DescriptionError {
    /// Reading the suite folder or a `.json` failed.
    Io { path: PathBuf, error: io::Error },
    /// A `.json` is not JSON, or a key has the wrong type.
    Malformed { path: PathBuf, reason: String },
    /// A `.json` uses a key this reader does not know (the suite's newer `operations` format,
    /// say): better to fail than to run the test with part of its description ignored.
    UnknownKey { path: PathBuf, key: String },
}

impl fmt::Display for DescriptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, error } => write!(f, "{}: {error}", path.display()),
            Self::Malformed { path, reason } => write!(f, "{}: {reason}", path.display()),
            Self::UnknownKey { path, key } => {
                write!(
                    f,
                    "{}: unknown key {key:?} in a test description",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for DescriptionError {}

/// Reads every test under `suite_dir` (the folder holding `assemblyscript/`, `c/`, `rust/`),
/// sorted by name. `manifest.json` files are not tests and are skipped.
///
/// # Errors
/// A folder that cannot be listed or a description that cannot be read (see
/// [`DescriptionError`]).
pub fn discover(suite_dir: &Path) -> Result<Vec<TestCase>, DescriptionError> {
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |error| DescriptionError::Io { path, error }
    };
    let mut tests = Vec::new();
    for language in fs::read_dir(suite_dir).map_err(io_error(suite_dir))? {
        let language = language.map_err(io_error(suite_dir))?.path();
        if !language.is_dir() {
            continue;
        }
        for entry in fs::read_dir(&language).map_err(io_error(&language))? {
            let path = entry.map_err(io_error(&language))?.path();
            if path.extension().is_some_and(|ext| ext == "wasm") {
                tests.push(load(&path)?);
            }
        }
    }
    tests.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(tests)
}

/// Reads the test whose module is `wasm`, with the `.json` beside it if there is one.
///
/// # Errors
/// See [`DescriptionError`].
pub fn load(wasm: &Path) -> Result<TestCase, DescriptionError> {
    let stem = wasm
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let language = wasm
        .parent()
        .and_then(Path::file_name)
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut test = TestCase {
        name: format!("{language}/{stem}"),
        wasm: wasm.to_path_buf(),
        args: Vec::new(),
        env: Vec::new(),
        root: None,
        exit_code: 0,
        stdout: None,
        stderr: None,
    };
    let json_path = wasm.with_extension("json");
    let text = match fs::read_to_string(&json_path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(test),
        Err(error) => {
            return Err(DescriptionError::Io {
                path: json_path,
                error,
            });
        }
    };
    let malformed = |reason: String| DescriptionError::Malformed {
        path: json_path.clone(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
    let object = value
        .as_object()
        .ok_or_else(|| malformed("not a JSON object".into()))?;
    for (key, value) in object {
        match key.as_str() {
            "args" => {
                test.args =
                    strings(value).ok_or_else(|| malformed("args: not a list of strings".into()))?
            }
            "env" => {
                let map = value
                    .as_object()
                    .ok_or_else(|| malformed("env: not an object".into()))?;
                for (name, value) in map {
                    let value = value
                        .as_str()
                        .ok_or_else(|| malformed(format!("env.{name}: not a string")))?;
                    test.env.push((name.clone(), value.to_owned()));
                }
                test.env.sort();
            }
            "root" => {
                let root = value
                    .as_str()
                    .ok_or_else(|| malformed("root: not a string".into()))?;
                let base = json_path.parent().unwrap_or(Path::new("."));
                test.root = Some(base.join(root));
            }
            "exit_code" => {
                test.exit_code = value
                    .as_i64()
                    .and_then(|code| i32::try_from(code).ok())
                    .ok_or_else(|| malformed("exit_code: not a 32-bit integer".into()))?;
            }
            "stdout" | "stderr" => {
                let text = value
                    .as_str()
                    .ok_or_else(|| malformed(format!("{key}: not a string")))?
                    .to_owned();
                if key == "stdout" {
                    test.stdout = Some(text);
                } else {
                    test.stderr = Some(text);
                }
            }
            // The suite's original ("legacy") format has just the keys above, and the preview1
            // tests use nothing else.
            _ => {
                return Err(DescriptionError::UnknownKey {
                    path: json_path.clone(),
                    key: key.clone(),
                });
            }
        }
    }
    Ok(test)
}

fn strings(value: &serde_json::Value) -> Option<Vec<String>> {
    value
        .as_array()?
        .iter()
        .map(|item| item.as_str().map(str::to_owned))
        .collect()
}

/// How one run of a test is to be made: the test's description with its root replaced by a
/// private copy.
#[derive(Debug)]
pub struct Invocation<'a> {
    pub test: &'a TestCase,
    /// The copy of [`TestCase::root`] to preopen as `/`, if the test has a root.
    pub root: Option<PathBuf>,
}

impl Invocation<'_> {
    /// The `weft run` (or `wasmtime run`) arguments for this run: `--env NAME=VALUE`...,
    /// `--dir ROOT::/`, the module, then the program's arguments, the order of the suite's own
    /// wasmtime adapter.
    pub fn command_line(&self) -> Vec<String> {
        let mut argv = Vec::new();
        for (name, value) in &self.test.env {
            argv.push("--env".to_owned());
            argv.push(format!("{name}={value}"));
        }
        if let Some(root) = &self.root {
            argv.push("--dir".to_owned());
            argv.push(format!("{}::/", root.display()));
        }
        argv.push(self.test.wasm.display().to_string());
        argv.extend(self.test.args.iter().cloned());
        argv
    }
}

/// What a run produced.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl TestCase {
    /// Compares a run's outcome with what the test expects: the exit status exactly, stdout
    /// and stderr by prefix (as the suite's runner does, which reads as many characters as
    /// expected).
    ///
    /// # Errors
    /// A message naming the first mismatch, with the output attached.
    pub fn check(&self, outcome: &Outcome) -> Result<(), String> {
        let stdout = String::from_utf8_lossy(&outcome.stdout);
        let stderr = String::from_utf8_lossy(&outcome.stderr);
        let mut problems = Vec::new();
        if outcome.exit_code != self.exit_code {
            problems.push(format!(
                "exit status {}, expected {}",
                outcome.exit_code, self.exit_code
            ));
        }
        if let Some(expected) = &self.stdout
            && !stdout.starts_with(expected.as_str())
        {
            problems.push(format!("stdout does not start with {expected:?}"));
        }
        if let Some(expected) = &self.stderr
            && !stderr.starts_with(expected.as_str())
        {
            problems.push(format!("stderr does not start with {expected:?}"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{}: {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
                self.name,
                problems.join("; ")
            ))
        }
    }
}

/// The totals of a suite run, and the messages of the tests that went wrong.
#[derive(Debug, Default)]
pub struct Summary {
    pub passed: Vec<String>,
    /// Tests that failed and were not expected to: (name, message).
    pub failed: Vec<(String, String)>,
    /// Tests listed as expected failures that did fail.
    pub expected_failures: Vec<String>,
    /// Tests listed as expected failures that passed: the list is stale.
    pub unexpected_passes: Vec<String>,
}

impl Summary {
    /// True when nothing failed unexpectedly and no expected failure passed.
    pub fn is_clean(&self) -> bool {
        self.failed.is_empty() && self.unexpected_passes.is_empty()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "WASI test suite: {} passed, {} failed, {} expected failures, {} unexpected passes",
            self.passed.len(),
            self.failed.len(),
            self.expected_failures.len(),
            self.unexpected_passes.len()
        )?;
        for (_, message) in &self.failed {
            writeln!(f, "FAILED {message}")?;
        }
        for name in &self.unexpected_passes {
            writeln!(f, "PASSED but listed as an expected failure: {name}")?;
        }
        Ok(())
    }
}

/// Runs every test in `tests` through `run`, each on a fresh copy of its root made under
/// `scratch` (which should be an empty temporary directory), and judges the outcomes.
/// `expected_failures` lists test names ([`TestCase::name`]) with the reason each may fail.
///
/// `run` returns `Err` for a failure of the harness itself (the runner could not start); that
/// counts as a failed test, not as an abort, so one broken test does not hide the others.
///
/// # Errors
/// Only copying a root directory failing (the scratch disk is full, say).
pub fn run_suite(
    tests: &[TestCase],
    scratch: &Path,
    expected_failures: &[(&str, &str)],
    mut run: impl FnMut(&Invocation<'_>) -> Result<Outcome, String>,
) -> io::Result<Summary> {
    let mut summary = Summary::default();
    for (index, test) in tests.iter().enumerate() {
        let root = match &test.root {
            Some(root) => {
                let copy = scratch.join(format!("{index:03}-{}", test.name.replace('/', "-")));
                copy_tree(root, &copy)?;
                Some(copy)
            }
            None => None,
        };
        let invocation = Invocation { test, root };
        let verdict = run(&invocation).and_then(|outcome| test.check(&outcome));
        let expected_to_fail = expected_failures.iter().any(|(name, _)| *name == test.name);
        match (verdict, expected_to_fail) {
            (Ok(()), false) => summary.passed.push(test.name.clone()),
            (Ok(()), true) => summary.unexpected_passes.push(test.name.clone()),
            (Err(_), true) => summary.expected_failures.push(test.name.clone()),
            (Err(message), false) => summary.failed.push((test.name.clone(), message)),
        }
    }
    Ok(summary)
}

/// Copies a directory tree of plain files and directories (what the suite's roots hold).
/// A symbolic link in the source is an error rather than something to follow or recreate.
///
/// # Errors
/// Any I/O error; `InvalidInput` for a symbolic link.
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            fs::copy(entry.path(), &target)?;
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a plain file or directory", entry.path().display()),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tests/wasi-testsuite` of the repository, from whichever crate this module is in.
    fn suite_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|dir| dir.join("tests/wasi-testsuite"))
            .find(|dir| dir.is_dir())
            .expect("tests/wasi-testsuite above CARGO_MANIFEST_DIR")
    }

    #[test]
    fn discover_finds_all_72_preview1_tests_and_no_manifest() {
        let tests = discover(&suite_dir()).unwrap();
        assert_eq!(tests.len(), 72);
        assert!(tests.iter().all(|t| !t.name.ends_with("manifest")));
        let per_language =
            |prefix: &str| tests.iter().filter(|t| t.name.starts_with(prefix)).count();
        assert_eq!(per_language("assemblyscript/"), 12);
        assert_eq!(per_language("c/"), 14);
        assert_eq!(per_language("rust/"), 46);
    }

    #[test]
    fn description_gives_args_env_exit_code_and_stdout() {
        let dir = suite_dir().join("assemblyscript");
        let args = load(&dir.join("args_get-multiple-arguments.wasm")).unwrap();
        assert_eq!(args.args, ["first", "the \"second\" arg", "3"]);
        let env = load(&dir.join("environ_get-multiple-variables.wasm")).unwrap();
        assert_eq!(env.env[2], ("c".to_owned(), "new\nline".to_owned()));
        let exit = load(&dir.join("proc_exit-failure.wasm")).unwrap();
        assert_eq!(exit.exit_code, 33);
        let stdout = load(&dir.join("fd_write-to-stdout.wasm")).unwrap();
        assert_eq!(stdout.stdout.as_deref(), Some("hello"));
    }

    #[test]
    fn test_without_json_runs_bare_and_expects_status_zero() {
        let test = load(&suite_dir().join("c/clock_getres-monotonic.wasm")).unwrap();
        assert_eq!(test.name, "c/clock_getres-monotonic");
        assert!(test.args.is_empty() && test.env.is_empty() && test.root.is_none());
        assert_eq!(test.exit_code, 0);
    }

    #[test]
    fn root_resolves_beside_the_json_and_command_line_preopens_the_copy_as_slash() {
        let test = load(&suite_dir().join("c/lseek.wasm")).unwrap();
        assert_eq!(test.root, Some(suite_dir().join("c/fs-tests.dir")));
        let invocation = Invocation {
            test: &test,
            root: Some(PathBuf::from("/tmp/copy")),
        };
        let argv = invocation.command_line();
        assert_eq!(argv[..2], ["--dir".to_owned(), "/tmp/copy::/".to_owned()]);
        assert!(argv[2].ends_with("c/lseek.wasm"));
    }

    #[test]
    fn check_compares_exit_status_exactly_and_stdout_by_prefix() {
        let dir = suite_dir().join("assemblyscript");
        let test = load(&dir.join("fd_write-to-stdout.wasm")).unwrap();
        let ok = Outcome {
            exit_code: 0,
            stdout: b"hello\n".to_vec(),
            stderr: Vec::new(),
        };
        assert!(test.check(&ok).is_ok());
        let wrong_text = Outcome {
            stdout: b"help".to_vec(),
            ..ok.clone()
        };
        assert!(test.check(&wrong_text).is_err());
        let wrong_status = Outcome { exit_code: 1, ..ok };
        assert!(test.check(&wrong_status).is_err());
    }

    #[test]
    fn unknown_key_is_an_error_not_ignored() {
        let dir = std::env::temp_dir().join(format!("wasi-harness-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("t.json"), r#"{"operations": []}"#).unwrap();
        let error = load(&dir.join("t.wasm")).unwrap_err();
        fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(error, DescriptionError::UnknownKey { key, .. } if key == "operations"));
    }

    #[test]
    fn run_suite_gives_each_test_a_fresh_root_and_counts_expected_failures() {
        let tests = discover(&suite_dir()).unwrap();
        let scratch = std::env::temp_dir().join(format!("wasi-harness-run-{}", std::process::id()));
        let summary = run_suite(&tests, &scratch, &[("rust/stdio", "for the test")], |inv| {
            if let Some(root) = &inv.root {
                // Every copy is fresh: nothing written by an earlier test is there.
                assert!(!root.join("written-by-a-test").exists());
                fs::write(root.join("written-by-a-test"), "x").map_err(|e| e.to_string())?;
            }
            // Pretend to be a runtime that passes everything except rust/stdio.
            let exit_code = if inv.test.name == "rust/stdio" {
                99
            } else {
                inv.test.exit_code
            };
            Ok(Outcome {
                exit_code,
                stdout: inv.test.stdout.clone().unwrap_or_default().into_bytes(),
                stderr: Vec::new(),
            })
        })
        .unwrap();
        fs::remove_dir_all(&scratch).unwrap();
        assert_eq!(summary.passed.len(), 71);
        assert_eq!(summary.expected_failures, ["rust/stdio"]);
        assert!(summary.is_clean());
    }
}
