//! weft beside wasmtime: the same cases on both engines in one process, interleaved run by run
//! (weft first on even runs, wasmtime first on odd ones), one table of medians with min–max and
//! the ratio. Not part of weft's workspace build: CI and `cargo test` never compile wasmtime.
//!
//! ```console
//! $ cargo run --release --manifest-path peers/Cargo.toml            # 7 runs per case
//! $ cargo run --release --manifest-path peers/Cargo.toml -- --quick # 3 runs, short batches
//! $ cargo run --release --manifest-path peers/Cargo.toml -- --only suspend
//! ```
//!
//! Each run of a case times one batch of operations (sized once per engine so a batch takes
//! at least 20 ms, or 5 ms with `--quick`) and divides by the operations in it; the table gives
//! the median of the runs and their range. Every operation's result is checked. Both engines run
//! with their default `Config` (Cranelift, optimizing for speed; signal-based bounds checks).
//! The suspended-call rows run in child processes (`--held ENGINE COUNT`), one per engine and
//! count.

mod cases;
mod held;
mod peer;
mod wasmtime_peer;
mod weft_peer;

use std::process::Command;
use std::time::{Duration, Instant};

use peer::Peer;

/// The module the compile row compiles: SQLite with its driver, built for WASI (1.0 MB).
const SQLITE: &[u8] = include_bytes!("../../programs/wasm/sqlite-driver.wasm");

/// What a run gets besides its engine.
struct Shared {
    tokio: tokio::runtime::Runtime,
}

/// One row of the table.
struct Case {
    name: &'static str,
    /// What one operation is.
    what: &'static str,
    /// Operations per iteration (a call of `sync_fib(20)` is 10,945 imports).
    ops_per_iter: f64,
    /// At most this many iterations in a batch (the compile row takes one).
    max_iters: u64,
    run: fn(&mut dyn Peer, &Shared, u64) -> Duration,
}

fn cases() -> Vec<Case> {
    let additions = cases::additions(peer::FIB_N as u64) as f64;
    vec![
        Case {
            name: "call/typed_sync",
            what: "typed sync call of an empty export",
            ops_per_iter: 1.0,
            max_iters: u64::MAX,
            run: |p, _, n| p.typed_call(n),
        },
        Case {
            name: "call/wasm_to_host",
            what: "Wasm loop iteration calling a sync import (i32)->i32",
            ops_per_iter: 1.0,
            max_iters: i32::MAX as u64,
            run: |p, _, n| p.wasm_to_host(n),
        },
        Case {
            name: "badfib/sync_import",
            what: "addition of fib(20) through a sync import",
            ops_per_iter: additions,
            max_iters: u64::MAX,
            run: |p, _, n| p.sync_fib(n),
        },
        Case {
            name: "badfib/pure",
            what: "addition of fib(20), i32.add inline (per add)",
            ops_per_iter: additions,
            max_iters: u64::MAX,
            run: |p, _, n| p.pure_fib(n),
        },
        Case {
            name: "kernel/fib64_30",
            what: "recursive i64 fib(30)",
            ops_per_iter: 1.0,
            max_iters: u64::MAX,
            run: |p, _, n| p.fib64(n),
        },
        Case {
            name: "kernel/sieve_1M",
            what: "sieve of Eratosthenes below 1,000,000 (bytes in memory)",
            ops_per_iter: 1.0,
            max_iters: u64::MAX,
            run: |p, _, n| p.sieve(n),
        },
        Case {
            name: "kernel/xorshift_10M",
            what: "10M rounds of a 64-bit xorshift",
            ops_per_iter: 1.0,
            max_iters: u64::MAX,
            run: |p, _, n| p.xorshift(n),
        },
        Case {
            name: "suspend/spin",
            what: "suspend+resume through an import pending once, spin executor",
            ops_per_iter: 1.0,
            max_iters: i32::MAX as u64,
            run: |p, _, n| p.suspend_spin(n),
        },
        Case {
            name: "suspend/tokio",
            what: "the same, promising call driven by tokio current_thread",
            ops_per_iter: 1.0,
            max_iters: i32::MAX as u64,
            run: |p, s, n| p.suspend_tokio(&s.tokio, n),
        },
        Case {
            name: "call_async/empty",
            what: "promising call of an empty export, spin executor",
            ops_per_iter: 1.0,
            max_iters: u64::MAX,
            run: |p, _, n| p.call_async(n),
        },
        Case {
            name: "badfib/suspending",
            what: "addition of fib(20) through an import pending once",
            ops_per_iter: additions,
            max_iters: u64::MAX,
            run: |p, _, n| p.promise_fib(n),
        },
        Case {
            name: "compile/sqlite",
            what: "Module::new of SQLite + driver, 1.0 MB (caches off)",
            ops_per_iter: 1.0,
            max_iters: 1,
            run: |p, _, n| p.compile(SQLITE, n),
        },
    ]
}

/// How many iterations make a batch of at least `batch` (the first calls warm up).
fn calibrate(case: &Case, peer: &mut dyn Peer, shared: &Shared, batch: Duration) -> u64 {
    let mut iters = 1;
    loop {
        let took = (case.run)(peer, shared, iters);
        if took >= batch || iters >= case.max_iters {
            return iters;
        }
        let scale = (batch.as_secs_f64() / took.as_secs_f64().max(1e-9) * 1.2).clamp(2.0, 100.0);
        iters = ((iters as f64 * scale) as u64).min(case.max_iters);
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A time in seconds, in the unit that reads best.
fn show(seconds: f64) -> String {
    if seconds >= 0.1 {
        format!("{seconds:.2} s")
    } else if seconds >= 1e-4 {
        format!("{:.2} ms", seconds * 1e3)
    } else if seconds >= 1e-6 {
        format!("{:.2} µs", seconds * 1e6)
    } else {
        format!("{:.1} ns", seconds * 1e9)
    }
}

fn cell(runs: &mut [f64]) -> (f64, String) {
    let m = median(runs);
    let (lo, hi) = (runs[0], runs[runs.len() - 1]);
    (m, format!("{} ({}–{})", show(m), show(lo), show(hi)))
}

/// The executor alone: a plain Rust future pending once (waking itself), awaited `n` times
/// in one `block_on` of the same runtime.
fn executor_alone(shared: &Shared, n: u64) -> Duration {
    let start = Instant::now();
    let sum = shared.tokio.block_on(async {
        let mut sum = 0u64;
        for i in 0..n {
            sum += cases::PendingOnce::new((i & 1) as i32).await as u64;
        }
        sum
    });
    assert_eq!(sum, n / 2);
    start.elapsed()
}

/// Runs `--held ENGINE COUNT` in a child process; returns (held, rss KiB, error).
fn held_child(engine: &str, count: usize) -> (usize, u64, Option<String>) {
    let exe = std::env::current_exe().expect("own path");
    let out = Command::new(exe)
        .args(["--held", engine, &count.to_string()])
        .output()
        .expect("the child runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut held = None;
    let mut progress = 0;
    let mut error = None;
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["held", n, "rss_kib", k] => held = Some((n.parse().unwrap(), k.parse().unwrap())),
            ["progress", n] => progress = n.parse().unwrap(),
            _ => {
                if let Some(e) = line.strip_prefix("error: ") {
                    error = Some(e.to_string());
                }
            }
        }
    }
    match held {
        Some((n, kib)) => (n, kib, error),
        None => (
            progress,
            0,
            Some(format!(
                "the process died ({}) after {progress} calls: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            )),
        ),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--held") {
        let count = args[i + 2].parse().expect("COUNT");
        match args[i + 1].as_str() {
            "weft" => held::weft(count),
            "wasmtime" => held::wasmtime(count),
            other => panic!("unknown engine {other}"),
        }
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .map(|i| args[i + 1].clone());
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .map_or(if quick { 3 } else { 7 }, |i| {
            args[i + 1].parse().expect("--runs N")
        });
    let batch = Duration::from_millis(if quick { 5 } else { 20 });
    let wanted = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));

    let shared = Shared {
        tokio: cases::tokio_runtime(),
    };
    let mut weft = weft_peer::Weft::new().expect("weft setup");
    let mut wasmtime = wasmtime_peer::Wasmtime::new().expect("wasmtime setup");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "weft (this tree) beside wasmtime 48.0.8: {runs} runs per case, interleaved; load average at start: {}\n",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "| case | one operation | weft: median (min–max) | wasmtime: median (min–max) | wasmtime ÷ weft |"
    );
    println!("| --- | --- | --- | --- | --- |");
    let mut medians = std::collections::HashMap::new();
    for case in cases().iter().filter(|c| wanted(c.name)) {
        let peers: [&mut dyn Peer; 2] = [&mut weft, &mut wasmtime];
        let [weft_peer, wasmtime_peer] = peers;
        let iters = [
            calibrate(case, weft_peer, &shared, batch),
            calibrate(case, wasmtime_peer, &shared, batch),
        ];
        let mut times = [Vec::new(), Vec::new()];
        for run in 0..runs {
            for k in [run % 2, 1 - run % 2] {
                let peer: &mut dyn Peer = if k == 0 {
                    &mut *weft_peer
                } else {
                    &mut *wasmtime_peer
                };
                let took = (case.run)(peer, &shared, iters[k]);
                times[k].push(took.as_secs_f64() / (iters[k] as f64 * case.ops_per_iter));
            }
        }
        let (w, wc) = cell(&mut times[0]);
        let (t, tc) = cell(&mut times[1]);
        medians.insert(case.name, (w, t));
        println!(
            "| {} | {} | {wc} | {tc} | {:.2} |",
            case.name,
            case.what,
            t / w
        );
    }

    if wanted("suspend/tokio") {
        let iters = {
            let mut n = 1000;
            while executor_alone(&shared, n) < batch {
                n *= 2;
            }
            n
        };
        let mut alone: Vec<f64> = (0..runs)
            .map(|_| executor_alone(&shared, iters).as_secs_f64() / iters as f64)
            .collect();
        let (e, ec) = cell(&mut alone);
        println!(
            "| tokio/executor_alone | a plain Rust future pending once, awaited in the same runtime | {ec} | (same) | |"
        );
        if let Some((w, t)) = medians.get("suspend/tokio") {
            println!(
                "| suspend/tokio − executor | the engine's share of a suspend+resume under tokio | {} | {} | {:.2} |",
                show(w - e),
                show(t - e),
                (t - e) / (w - e)
            );
        }
    }

    if wanted("held") {
        let per_call = 10_000;
        let cap = 100_000;
        let mut rss = Vec::new();
        let mut most = Vec::new();
        for engine in ["weft", "wasmtime"] {
            let (n, kib, error) = held_child(engine, per_call);
            rss.push(if n == per_call {
                format!("{:.2} KiB", kib as f64 / n as f64)
            } else {
                format!("failed at {n}: {}", error.unwrap_or_default())
            });
            let (n, _, error) = held_child(engine, cap);
            most.push(match error {
                None => format!("≥ {n} (the cap; all held)"),
                Some(e) => format!("{n}, then: {e}"),
            });
        }
        println!(
            "| held/rss_per_call | resident memory per suspended call, {per_call} held (weft: one SharedStore; wasmtime: a Store each) | {} | {} | |",
            rss[0], rss[1]
        );
        println!(
            "| held/most | suspended calls held at once, up to {cap} | {} | {} | |",
            most[0], most[1]
        );
    }
}
