//! What the held-calls examples (`million`, `instances`) share: a future the test releases by
//! hand, and the process's memory figures from `/proc`. Included with `#[path]`, since each
//! example is its own crate.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

/// A future that is ready once `flag` is set. Polled by hand here, so it needs no waker.
pub struct Released(pub Arc<AtomicBool>);

impl Future for Released {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// A `/proc/self/status` field, in KiB.
pub fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    status
        .lines()
        .find_map(|line| {
            line.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Lines of `/proc/self/maps`: the process's memory mappings.
pub fn mappings() -> u64 {
    std::fs::read_to_string("/proc/self/maps")
        .expect("Linux /proc")
        .lines()
        .count() as u64
}
