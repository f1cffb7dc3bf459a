//! What the held-calls examples (`million`, `instances`) share: a future the test releases by
//! hand, and the process's memory figures from `/proc`. Included with `#[path]`, since each
//! example is its own crate.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

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

/// The process's memory figures and the time, taken before the calls are started.
pub struct Before {
    rss: u64,
    pte: u64,
    maps: u64,
    at: Instant,
}

impl Before {
    pub fn now() -> Before {
        Before {
            rss: status_kib("VmRSS:"),
            pte: status_kib("VmPTE:"),
            maps: mappings(),
            at: Instant::now(),
        }
    }

    /// Time since [`Before::now`].
    pub fn elapsed(&self) -> Duration {
        self.at.elapsed()
    }

    /// What holding `count` suspended calls cost since [`Before::now`]: read right after the
    /// last call suspended.
    pub fn held(&self, count: usize) -> Held {
        Held {
            count,
            started: self.at.elapsed(),
            rss: status_kib("VmRSS:").saturating_sub(self.rss),
            pte: status_kib("VmPTE:").saturating_sub(self.pte),
            maps: mappings().saturating_sub(self.maps),
        }
    }
}

/// The cost of the suspended calls, as [`Before::held`] measured it.
pub struct Held {
    count: usize,
    started: Duration,
    rss: u64,
    pte: u64,
    maps: u64,
}

impl Held {
    /// Prints the figures under `headline`; `started` names the first phase ("suspend all",
    /// "start all"), `resumed` and `wall` are the other times.
    pub fn print(&self, headline: &str, started: &str, resumed: Duration, wall: Duration) {
        let (count, n) = (self.count, self.count as f64);
        println!("{headline}");
        println!(
            "  RSS:      +{:.1} MiB, {:.2} KiB per suspended call (VmRSS)",
            self.rss as f64 / 1024.0,
            self.rss as f64 / n
        );
        println!(
            "  page tables: +{:.1} MiB, {:.2} KiB per suspended call (VmPTE, not in VmRSS)",
            self.pte as f64 / 1024.0,
            self.pte as f64 / n
        );
        println!(
            "  mappings: +{}, {:.6} per suspended call (/proc/self/maps lines)",
            self.maps,
            self.maps as f64 / n
        );
        println!(
            "  time:     {started} {:.2} s ({:.2} µs per call), resume all {:.2} s ({:.2} µs per \
             call), wall {:.2} s",
            self.started.as_secs_f64(),
            self.started.as_secs_f64() * 1e6 / n,
            resumed.as_secs_f64(),
            resumed.as_secs_f64() * 1e6 / n,
            wall.as_secs_f64()
        );
        println!("  all {count} results correct");
    }
}
