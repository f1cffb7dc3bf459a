//! weft's fuzzer, on stable Rust: no nightly, no cargo-fuzz, no sanitizer coverage.
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --release -- TARGET --seconds N [--seed S]
//! cargo run --manifest-path fuzz/Cargo.toml --release -- TARGET --reproduce FILE
//! ```
//!
//! # Targets
//!
//! Each target turns one byte string into one test case (through `arbitrary` and `wasm-smith`)
//! and checks a property of weft's public API (the `weft` crate only):
//!
//! - `compile` (`targets::compile`): bytes, mutated wasm-smith modules and wasm-smith modules of
//!   every feature go through validate → compile → instantiate (→ call) with typed errors only:
//!   no panic, crash or hang; and a module wasmparser accepts with weft's features compiles.
//! - `differential` (`targets::differential`): deterministic, terminating wasm-smith modules
//!   run on weft and on the `wasmi` interpreter: the same results, the same trap kinds, the same
//!   memories, globals and table sizes after every call.
//! - `suspension` (`targets::suspension`): every import is a suspending import that is pending
//!   a seeded random number of polls; the results equal the synchronous run, also on a
//!   `SharedStore`, when the call moves to another thread mid-way, and after a cancelled call.
//! - `api` (`targets::api_sequence`): random sequences of instantiate / call / call_async / poll
//!   / drop / memory.grow on one `SharedStore`, checked against a model.
//!
//! # Supervision
//!
//! The process the user starts is a supervisor: it runs the cases in a child process (itself,
//! with a hidden `__worker` argument) and reads a stream of frames from the child's stdout:
//! each case's input before it runs, and its outcome after. So a crash or abort of the child
//! (a signal, `fatal runtime error`, an exit in the middle of a case) is reported with the
//! input that caused it, and a case that takes longer than the per-case limit (`--case-ms`)
//! is a hang: the supervisor kills the child and reports the input. Panics and property
//! violations are caught in the child (`catch_unwind`) and reported as a frame. After a crash
//! or a hang the supervisor starts a new child with the next seed.
//!
//! # Corpus and reproducers
//!
//! Without coverage instrumentation the corpus keeps inputs whose *outcome signature* (what
//! the case did: which errors, which traps, how many exports...) was new, up to a cap, in
//! `fuzz/corpus/TARGET/`; every run replays the corpus first and then mixes fresh random
//! inputs with mutations of corpus entries. Every failure is written to
//! `fuzz/artifacts/TARGET/KIND-HASH.bin` (the input) with `KIND-HASH.txt` (one line: what
//! failed), and `--reproduce` runs one such file in-process.

#![forbid(unsafe_code)]

mod driver;
mod executor;
mod rng;
mod smith;
mod targets;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// What the command line asked for.
struct Args {
    target: targets::Target,
    seconds: u64,
    seed: u64,
    case_limit: Duration,
    reproduce: Option<PathBuf>,
    worker: bool,
    replay: bool,
    dir: PathBuf,
}

const USAGE: &str =
    "usage: weft-fuzz TARGET [--seconds N] [--seed S] [--case-ms MS] [--dir DIR] [--reproduce FILE]
targets: compile, differential, suspension, api";

fn parse_args() -> Result<Args, String> {
    let mut argv = std::env::args().skip(1);
    let mut worker = false;
    let mut first = argv.next().ok_or_else(|| USAGE.to_string())?;
    if first == "__worker" {
        worker = true;
        first = argv.next().ok_or_else(|| USAGE.to_string())?;
    }
    if first == "-h" || first == "--help" {
        return Err(USAGE.to_string());
    }
    let target = targets::Target::from_name(&first)
        .ok_or_else(|| format!("unknown target `{first}`\n{USAGE}"))?;
    let mut args = Args {
        target,
        seconds: 60,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
        case_limit: Duration::from_secs(10),
        reproduce: None,
        worker,
        replay: false,
        dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
    };
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |s: String| s.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--seconds" => args.seconds = number(value()?)?,
            "--seed" => args.seed = number(value()?)?,
            "--case-ms" => args.case_limit = Duration::from_millis(number(value()?)?),
            "--dir" => args.dir = PathBuf::from(value()?),
            "--reproduce" => args.reproduce = Some(PathBuf::from(value()?)),
            "--replay" => args.replay = true,
            _ => return Err(format!("unknown argument `{flag}`\n{USAGE}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    if let Some(file) = &args.reproduce {
        return driver::reproduce(args.target, file);
    }
    if args.worker {
        return driver::worker(args.target, args.seed, args.seconds, args.replay, &args.dir);
    }
    driver::supervise(
        args.target,
        args.seed,
        Duration::from_secs(args.seconds),
        args.case_limit,
        &args.dir,
    )
}
