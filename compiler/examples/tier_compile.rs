//! Compile time and code size of a module's functions at each tier ([`Tier`]), on one thread,
//! alternating the tiers so that a noisy machine treats both alike.
//!
//! ```console
//! $ cargo run --release -p weft-compiler --example tier_compile -- programs/wasm/sqlite-driver.wasm [ROUNDS [TIER]]
//! ```
//!
//! With `FUNCS=FILE` (defined-function indices, one per line: for example the functions a
//! lazily compiled run asked for), it also prints what share of each tier's compile time and
//! code those functions take.

use std::time::{Duration, Instant};

use weft_compiler::{CompileScratch, Compiler, CompilerOptions, Tier};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "programs/wasm/sqlite-driver.wasm".into());
    let rounds: usize = std::env::args().nth(2).map_or(Ok(3), |n| n.parse())?;
    let wasm = std::fs::read(&path)?;
    let compiler = |tier| {
        Compiler::new(CompilerOptions {
            tier,
            verify: false,
            threads: 1,
            ..CompilerOptions::default()
        })
    };
    // A third argument keeps one tier (for a profiler).
    let only = std::env::args().nth(3);
    let tiers: Vec<_> = [
        ("optimized", compiler(Tier::Optimized)?),
        ("baseline", compiler(Tier::Baseline)?),
    ]
    .into_iter()
    .filter(|(name, _)| only.as_deref().is_none_or(|o| o == *name))
    .collect();
    let module = tiers[0].1.validate(&wasm)?;
    let count = module.num_defined_funcs() as usize;
    println!("{path}: {count} functions, {} bytes of Wasm", wasm.len());
    let mut times = vec![Vec::new(); tiers.len()];
    let mut bytes = vec![0; tiers.len()];
    let mut frames = vec![Vec::new(); tiers.len()];
    // Each function's compile time, summed over the rounds, per tier.
    let mut each = vec![vec![Duration::ZERO; count]; tiers.len()];
    let mut sizes = vec![vec![0; count]; tiers.len()];
    for _ in 0..rounds {
        for (t, (_, compiler)) in tiers.iter().enumerate() {
            let mut scratch = CompileScratch::new();
            let start = Instant::now();
            let mut size = 0;
            let mut frame = Vec::with_capacity(count);
            for i in 0..count {
                let one = Instant::now();
                let f = compiler.compile_function(&module, &wasm, i, &mut scratch)?;
                each[t][i] += one.elapsed();
                sizes[t][i] = f.code.len();
                size += f.code.len();
                frame.push(f.frame_size);
            }
            times[t].push(start.elapsed());
            bytes[t] = size;
            frames[t] = frame;
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let base = median(&mut times[0].clone());
    for (t, (name, _)) in tiers.iter().enumerate() {
        let m = median(&mut times[t]);
        println!(
            "{name:>9}: median {:7.1} ms (min {:7.1}), {:5.2}x optimized's time; {} bytes of code",
            m.as_secs_f64() * 1e3,
            times[t][0].as_secs_f64() * 1e3,
            m.as_secs_f64() / base.as_secs_f64(),
            bytes[t]
        );
        let f = &frames[t];
        let mut sorted = f.clone();
        sorted.sort();
        println!(
            "{:>9}  frames: median {} bytes, 90th percentile {}, largest {}; {} over 4 KiB, {} over 16 KiB",
            "",
            sorted[sorted.len() / 2],
            sorted[sorted.len() * 9 / 10],
            sorted[sorted.len() - 1],
            f.iter().filter(|&&s| s > 4096).count(),
            f.iter().filter(|&&s| s > 16384).count(),
        );
        if let Ok(i) = std::env::var("FRAME_OF") {
            let i: usize = i.parse()?;
            println!(
                "{:>9}  function {i}: frame {} bytes",
                "",
                f[i - module.num_imported_funcs as usize]
            );
        }
    }
    if let Ok(list) = std::env::var("FUNCS") {
        let listed: Vec<usize> = std::fs::read_to_string(&list)?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        let mut chosen = vec![false; count];
        for &i in &listed {
            *chosen
                .get_mut(i)
                .ok_or("FUNCS names a function the module lacks")? = true;
        }
        let n = chosen.iter().filter(|&&c| c).count();
        println!("{list}: {n} of {count} functions");
        for (t, (name, _)) in tiers.iter().enumerate() {
            let share = |v: &[f64]| {
                let all: f64 = v.iter().sum();
                let some: f64 = v
                    .iter()
                    .zip(&chosen)
                    .filter(|(_, c)| **c)
                    .map(|(x, _)| x)
                    .sum();
                some / all
            };
            let time: Vec<f64> = each[t].iter().map(Duration::as_secs_f64).collect();
            let code: Vec<f64> = sizes[t].iter().map(|&s| s as f64).collect();
            println!(
                "{name:>9}: listed functions take {:.1}% of the compile time, {:.1}% of the code",
                100.0 * share(&time),
                100.0 * share(&code)
            );
        }
    }
    Ok(())
}
