//! Shared by the engine's tests and the CLI's (`cli/tests/cli.rs` includes this file): starting
//! a process the way the current target can run it, and the smallest suspending future.

use std::process::{Command, Output};

/// A command that runs `exe`, a binary built for the target under test. When the tests are
/// cross-run (AArch64 under qemu-user), a test binary cannot exec another AArch64 binary by
/// itself (CI has no binfmt_misc), so it goes through the runner that `.cargo/config.toml`
/// names in `WEFT_TEST_RUNNER_<arch>`; natively it runs `exe` directly.
pub fn target_command(exe: impl AsRef<std::ffi::OsStr>) -> Command {
    let runner = std::env::var(format!("WEFT_TEST_RUNNER_{}", std::env::consts::ARCH));
    let mut runner = runner.as_deref().unwrap_or("").split_whitespace();
    match runner.next() {
        Some(program) => {
            let mut command = Command::new(program);
            command.args(runner).arg(exe);
            command
        }
        None => Command::new(exe),
    }
}

/// Runs the single test `name` (its full path in the binary, `module::test`) of this test
/// binary again in a child process with `child_var` set, for tests whose subject is how a
/// process dies or that must have a process to themselves. The test checks `child_var` first
/// and, when it is set, does the deed instead of spawning.
#[allow(dead_code)] // The CLI's tests include this file but re-run nothing.
pub fn rerun_test_in_child(name: &str, child_var: &str) -> Output {
    target_command(std::env::current_exe().expect("test binary path"))
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(child_var, "1")
        .output()
        .expect("the test binary runs again")
}

/// For a test that needs a process to itself: `true` in the child, which then does the work;
/// in the parent, runs the test `name` in a child with `child_var` set, asserts that it passed
/// (and ran, not zero tests), and returns `false`.
#[allow(dead_code)] // The CLI's tests include this file but re-run nothing.
pub fn in_own_process(name: &str, child_var: &str) -> bool {
    if std::env::var_os(child_var).is_some() {
        return true;
    }
    let output = rerun_test_in_child(name, child_var);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}\n{stderr}");
    false
}

/// Pending once (waking itself at once), then ready: the smallest suspension, with no executor
/// involved. `PendingOnce(false)` is a fresh one.
#[allow(dead_code)] // The CLI's tests include this file but suspend nothing.
pub struct PendingOnce(pub bool);

impl std::future::Future for PendingOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// The process's memory mappings: lines of `/proc/self/maps`.
#[allow(dead_code)] // The CLI's tests include this file but count no mappings.
pub fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}
