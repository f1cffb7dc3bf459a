//! The comparison tables of weft's benchmark suite, and their plots (`docs/bench/*.svg`):
//!
//! 1. JSPI's badfib table: fib(n), n = 0..20, with its additions in Wasm (`local`), through a
//!    synchronous host function (`js`), through a suspending import pending once per call
//!    (`promise`), and `promise` rewritten by Asyncify (`asyncify`).
//! 2. Asyncify beside weft's suspending imports: code size, time when nothing suspends, time
//!    per suspension, deepest recursion.
//! 3. Suspension cost against recursion depth.
//! 4. Resident memory against the number of suspended promising calls held.
//!
//! ```console
//! $ cargo run --release --example bench_report            # tables, and the SVGs redrawn
//! $ cargo run --release --example bench_report -- --quick # shorter batches, noisier
//! ```
//!
//! Each figure is the median of 7 batches (each ≥ 20 ms, or 5 ms with `--quick`) of the call it
//! names; every call's result is checked before its time counts (see `support::time_per_call`).

#[path = "../benches/support/mod.rs"]
mod support;

use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::Duration;

use plotters::prelude::*;
use support::{
    ASYNCIFY_WASM, Asyncify, FIB_WASM, Weft, additions, code_size, fib, leaves, resident_bytes,
    time_per_call,
};
use weft::{Caller, Engine, Linker, Module, Store};

const SAMPLES: usize = 7;
const PLOTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/bench");

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn nanos(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

fn main() -> Result<(), Box<dyn Error>> {
    let quick = std::env::args().any(|a| a == "--quick");
    let batch = Duration::from_millis(if quick { 5 } else { 20 });
    let engine = support::engine();
    let plain = Module::new(&engine, FIB_WASM)?;
    let asyncified = Module::new(&engine, ASYNCIFY_WASM)?;
    let mut weft = Weft::new(&engine, &plain)?;
    let mut asyncify = Asyncify::new(&engine, &asyncified)?;
    std::fs::create_dir_all(PLOTS)?;

    // ---- 1. badfib ----
    println!("## badfib: time per fib(n) call (µs), and per suspension (ns)\n");
    println!("local: additions in Wasm, synchronous call; js: additions through a synchronous");
    println!("host function, synchronous call; promise: additions through a suspending import");
    println!("pending once, one promising call (weft's native stack switching); asyncify: the");
    println!("promise variant rewritten by wasm-opt --asyncify, driven like Asyncify's JS glue.");
    println!("Per suspension: (promise − js) / additions, and (asyncify − js) / additions.\n");
    println!(
        "| n | fib(n) | suspensions | local µs | js µs | promise µs | asyncify µs | weft ns/susp | asyncify ns/susp |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut rows = Vec::new();
    for n in 0..=20 {
        let expected = fib(n);
        let local = time_per_call(expected, batch, SAMPLES, || weft.local_fib(n));
        let js = time_per_call(expected, batch, SAMPLES, || weft.js_fib(n));
        let promise = time_per_call(expected, batch, SAMPLES, || weft.promise_fib(n));
        let unwinds = asyncify.unwinds();
        asyncify.promise_fib(n)?;
        assert_eq!(
            asyncify.unwinds() - unwinds,
            additions(n),
            "one unwind per addition"
        );
        let asyncified = time_per_call(expected, batch, SAMPLES, || asyncify.promise_fib(n));
        let suspensions = additions(n);
        let per = |t: Duration| {
            if suspensions == 0 {
                "–".to_string()
            } else {
                format!("{:.0}", (nanos(t) - nanos(js)) / suspensions as f64)
            }
        };
        println!(
            "| {n} | {expected} | {suspensions} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} |",
            micros(local),
            micros(js),
            micros(promise),
            micros(asyncified),
            per(promise),
            per(asyncified)
        );
        rows.push((n, local, js, promise, asyncified));
    }
    plot_lines(
        &format!("{PLOTS}/badfib.svg"),
        "badfib: time per fib(n) call (weft, x86-64)",
        "n",
        "µs per fib(n) call (log)",
        false,
        &[
            ("local (additions in Wasm)", line(&rows, |r| r.1)),
            ("js (sync host import)", line(&rows, |r| r.2)),
            ("promise (weft suspending import)", line(&rows, |r| r.3)),
            ("asyncify (wasm-opt --asyncify)", line(&rows, |r| r.4)),
        ],
    )?;

    // ---- 2. Asyncify beside weft ----
    println!("\n## Asyncify beside weft's suspending imports\n");
    println!("Code size: the function's body in bytes (module size in bytes), wasm-opt -O2 with");
    println!("and without --asyncify. Times are per leaf_fib(20) call (10,946 leaves), one leaf");
    println!("import per leaf; per suspension: (suspending − not suspending) / leaves.\n");
    let n = 20;
    let expected = fib(n);
    let nothing_weft_sync = time_per_call(expected, batch, SAMPLES, || weft.local_fib(n));
    let nothing_weft = time_per_call(expected, batch, SAMPLES, || weft.leaf_fib(n, false));
    let nothing_asyncify = time_per_call(expected, batch, SAMPLES, || asyncify.leaf_fib(n, false));
    let nothing_asyncify_local = time_per_call(expected, batch, SAMPLES, || asyncify.local_fib(n));
    let suspend_weft = time_per_call(expected, batch, SAMPLES, || weft.leaf_fib(n, true));
    let unwinds = asyncify.unwinds();
    asyncify.leaf_fib(n, true)?;
    assert_eq!(
        asyncify.unwinds() - unwinds,
        leaves(n),
        "one unwind per leaf"
    );
    let suspend_asyncify = time_per_call(expected, batch, SAMPLES, || asyncify.leaf_fib(n, true));
    let depth_weft = deepest(|d| Weft::new(&engine, &plain)?.deep(d, true));
    let depth_asyncify = deepest(|d| Asyncify::new(&engine, &asyncified)?.deep(d, true));
    println!("| | weft (native stack switching) | Asyncify (on weft) |");
    println!("|---|---:|---:|");
    for export in ["leaf_fib", "promise_fib", "deep", "local_fib"] {
        let (f, m) = code_size(FIB_WASM, export);
        let (fa, ma) = code_size(ASYNCIFY_WASM, export);
        println!("| `{export}` body bytes (module bytes) | {f} ({m}) | {fa} ({ma}) |");
    }
    println!(
        "| leaf_fib(20), nothing suspends, µs per call | {:.1} (promising call; sync `local_fib`: {:.1}) | {:.1} (sync call; untouched `local_fib`: {:.1}) |",
        micros(nothing_weft),
        micros(nothing_weft_sync),
        micros(nothing_asyncify),
        micros(nothing_asyncify_local)
    );
    println!(
        "| leaf_fib(20), every leaf suspends once, µs per call | {:.1} | {:.1} |",
        micros(suspend_weft),
        micros(suspend_asyncify)
    );
    let leaves20 = leaves(n) as f64;
    println!(
        "| ns per suspension (depth ≤ 20) | {:.0} | {:.0} |",
        (nanos(suspend_weft) - nanos(nothing_weft)) / leaves20,
        (nanos(suspend_asyncify) - nanos(nothing_asyncify)) / leaves20
    );
    println!(
        "| deepest `deep(d)` that suspends at the bottom and returns | {} ({}) | {} ({}) |",
        depth_weft.0, depth_weft.1, depth_asyncify.0, depth_asyncify.1
    );
    println!(
        "\nLimits: weft's promising call runs on a 2 MiB stack; Asyncify runs in a synchronous call with {} KiB of Wasm stack and a 2 MiB data buffer.",
        support::WASM_STACK / 1024
    );

    // ---- 3. suspension cost against depth ----
    println!("\n## One suspension at the bottom of a recursion d deep (µs per deep(d) call)\n");
    println!("deep(d) recurses d frames, calls the leaf import once and returns. weft: one");
    println!("promising call, the leaf's future pending once (suspends) or ready at once;");
    println!("Asyncify: the leaf unwinds and is rewound, or returns at once. The difference is");
    println!("the suspension's cost (noisy when it is small next to the call).\n");
    println!(
        "| depth | weft suspends | weft ready | weft diff ns | asyncify suspends | asyncify no unwind | asyncify diff ns |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut depth_rows = Vec::new();
    for d in [1, 3, 10, 30, 100, 300, 1000, 3000, 10000] {
        let t = |f: &mut dyn FnMut(bool) -> weft::Result<i32>| {
            let yes = time_per_call(d, batch, SAMPLES, || f(true));
            let no = time_per_call(d, batch, SAMPLES, || f(false));
            (micros(yes), micros(no))
        };
        let w = t(&mut |s| weft.deep(d, s));
        let a = t(&mut |s| asyncify.deep(d, s));
        println!(
            "| {d} | {:.3} | {:.3} | {:.0} | {:.3} | {:.3} | {:.0} |",
            w.0,
            w.1,
            (w.0 - w.1) * 1e3,
            a.0,
            a.1,
            (a.0 - a.1) * 1e3
        );
        depth_rows.push((f64::from(d), w, a));
    }
    plot_lines(
        &format!("{PLOTS}/suspension_vs_depth.svg"),
        "One suspension at the bottom of a recursion d deep",
        "recursion depth d (frames, log)",
        "µs per deep(d) call (log)",
        true,
        &[
            (
                "weft, leaf suspends once",
                depth_rows.iter().map(|r| (r.0, r.1.0)).collect(),
            ),
            (
                "weft, leaf ready (no suspension)",
                depth_rows.iter().map(|r| (r.0, r.1.1)).collect(),
            ),
            (
                "Asyncify, leaf unwinds + rewinds once",
                depth_rows.iter().map(|r| (r.0, r.2.0)).collect(),
            ),
            (
                "Asyncify, leaf returns at once",
                depth_rows.iter().map(|r| (r.0, r.2.1)).collect(),
            ),
        ],
    )?;

    // ---- 4. RSS against suspended calls ----
    println!("\n## Resident memory against suspended promising calls held (weft)\n");
    println!("| suspended calls | RSS growth MiB (depth 1) | RSS growth MiB (depth 100) |");
    println!("|---:|---:|---:|");
    let counts: Vec<usize> = (0..=10).map(|i| i * 1000).collect();
    let shallow = held_rss(&engine, &plain, 1, &counts)?;
    let deep = held_rss(&engine, &plain, 100, &counts)?;
    for ((c, s), (_, d)) in shallow.iter().zip(&deep) {
        println!("| {c} | {:.1} | {:.1} |", s, d);
    }
    let last = counts.len() - 1;
    println!(
        "\nPer suspended call: {:.2} KiB (depth 1), {:.2} KiB (depth 100).",
        shallow[last].1 * 1024.0 / counts[last] as f64,
        deep[last].1 * 1024.0 / counts[last] as f64
    );
    plot_lines(
        &format!("{PLOTS}/rss_vs_suspended.svg"),
        "Resident memory vs suspended promising calls (weft)",
        "suspended calls held",
        "RSS growth (MiB)",
        false,
        &[
            (
                "deep(1) suspended",
                shallow.iter().map(|&(c, m)| (c as f64, m)).collect(),
            ),
            (
                "deep(100) suspended",
                deep.iter().map(|&(c, m)| (c as f64, m)).collect(),
            ),
        ],
    )?;
    println!("\nPlots written to {PLOTS}/");
    Ok(())
}

type Row = (i32, Duration, Duration, Duration, Duration);

fn line(rows: &[Row], pick: impl Fn(&Row) -> Duration) -> Vec<(f64, f64)> {
    rows.iter()
        .map(|r| (f64::from(r.0), micros(pick(r))))
        .collect()
}

/// The deepest `d` for which `case(d)` returns `d` (searched by doubling, then bisecting; a
/// fresh instance per probe), and the error of the first depth that fails.
fn deepest(case: impl Fn(i32) -> weft::Result<i32>) -> (i32, String) {
    let ok = |d: i32| matches!(case(d), Ok(r) if r == d);
    let mut good = 1;
    let mut bad = 2;
    while ok(bad) {
        good = bad;
        bad = bad.saturating_mul(2);
        if bad == i32::MAX {
            return (good, "no limit found".into());
        }
    }
    while bad - good > 1 {
        let mid = good + (bad - good) / 2;
        if ok(mid) { good = mid } else { bad = mid }
    }
    let why = match case(bad) {
        Err(e) => e.to_string(),
        Ok(r) => format!("returned {r}"),
    };
    (good, why)
}

/// RSS growth (MiB) as promising calls of `deep(depth)` suspend and stay suspended, sampled at
/// each count in `counts` (ascending).
fn held_rss(
    engine: &Engine,
    module: &Module,
    depth: i32,
    counts: &[usize],
) -> Result<Vec<(usize, f64)>, Box<dyn Error>> {
    let mut linker = Linker::new(engine);
    linker
        .func_wrap("env", "add", |a: i32, b: i32| a.wrapping_add(b))?
        .func_wrap("env", "promise_add", |a: i32, b: i32| a.wrapping_add(b))?
        .func_wrap_async("env", "leaf", |_: Caller<'_, ()>, n: i32| async move {
            std::future::pending::<()>().await;
            n
        })?;
    let store = weft::SharedStore::new(Store::new(engine, ()));
    let deep = {
        let mut guard = store.try_lock().expect("unshared");
        let instance = linker.instantiate(&mut *guard, module)?;
        instance.get_typed_func::<i32, i32>(&mut *guard, "deep")?
    };
    let mut cx = Context::from_waker(Waker::noop());
    // Warm up: code, signal stack, the first stack.
    let mut warm = Box::pin(deep.call_async(store.clone(), depth));
    assert!(warm.as_mut().poll(&mut cx).is_pending());
    drop(warm);
    let before = resident_bytes();
    let mut held: Vec<Pin<Box<dyn Future<Output = weft::Result<i32>>>>> = Vec::new();
    let mut out = Vec::new();
    for &count in counts {
        while held.len() < count {
            let mut call = Box::pin(deep.call_async(store.clone(), depth));
            assert!(
                call.as_mut().poll(&mut cx).is_pending(),
                "the call suspends"
            );
            held.push(call);
        }
        let grown = resident_bytes().saturating_sub(before);
        out.push((count, grown as f64 / f64::from(1 << 20)));
    }
    Ok(out)
}

/// An axis label: whole numbers without a fraction, others with up to 3 significant digits.
fn tick(v: &f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{}", (v * 1000.0).round() / 1000.0)
    }
}

const COLORS: [RGBColor; 4] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
];

/// Draws `series` as lines with markers into an SVG at `path`; y on a log scale unless the
/// data include 0 (the RSS plot), x on a log scale if `log_x`.
fn plot_lines(
    path: &str,
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    log_x: bool,
    series: &[(&str, Vec<(f64, f64)>)],
) -> Result<(), Box<dyn Error>> {
    let points = series.iter().flat_map(|s| s.1.iter().copied());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in points.filter(|p| p.1.is_finite()) {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let log_y = y0 > 0.0;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(caption, ("sans-serif", 24))
        .margin(20)
        .margin_right(40)
        .x_label_area_size(55)
        .y_label_area_size(80);
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc(y_desc)
                .x_label_formatter(&tick)
                .y_label_formatter(&tick)
                .label_style(("sans-serif", 16))
                .axis_desc_style(("sans-serif", 18))
                .draw()?;
            for (i, (name, data)) in series.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                let data: Vec<(f64, f64)> =
                    data.iter().copied().filter(|p| p.1.is_finite()).collect();
                chart
                    .draw_series(LineSeries::new(data.clone(), color.stroke_width(2)))?
                    .label(*name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
                    });
                chart.draw_series(data.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .label_font(("sans-serif", 16))
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .draw()?;
        }};
    }
    let (y0, y1) = if log_y {
        (y0 / 2.0, y1 * 2.0)
    } else {
        (0.0, y1 * 1.1)
    };
    match (log_x, log_y) {
        (true, true) => draw!(
            builder.build_cartesian_2d((x0 / 1.5..x1 * 1.5).log_scale(), (y0..y1).log_scale())?
        ),
        (false, true) => draw!(builder.build_cartesian_2d(x0..x1, (y0..y1).log_scale())?),
        (true, false) => {
            draw!(builder.build_cartesian_2d((x0 / 1.5..x1 * 1.5).log_scale(), y0..y1)?)
        }
        (false, false) => draw!(builder.build_cartesian_2d(x0..x1, y0..y1)?),
    }
    root.present()?;
    Ok(())
}
