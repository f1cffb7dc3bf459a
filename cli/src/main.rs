//! The `weft` command: run a module's export, or run spec scripts. A thin layer over the
//! `weft` crate; everything it does is available to embedders.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weft::{Engine, Error, Linker, Module, Store, Val, ValType};

#[derive(Parser)]
#[command(
    name = "weft",
    version,
    about = "A WebAssembly JIT with native continuations"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a module (binary .wasm or text .wat).
    Run {
        /// The module to run.
        file: PathBuf,
        /// Call this export instead of `_start`.
        #[arg(long)]
        invoke: Option<String>,
        /// Arguments for the invoked function (i32, i64, f32 or f64, as its type says; a v128
        /// is `0x` and up to 32 hex digits, the u128 whose least significant byte is byte 0 in
        /// memory, and is printed the same way).
        #[arg(allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run WebAssembly spec scripts (.wast) and report each file and the total.
    Wast {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { file, invoke, args } => run(&file, invoke.as_deref(), &args),
        Command::Wast { files } => wast(&files),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(file: &PathBuf, invoke: Option<&str>, args: &[String]) -> Result<ExitCode, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let engine = Engine::default();
    let module = Module::new(&engine, &bytes).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut store = Store::new(&engine, ());
    let linker = Linker::new(&engine);
    let instance = linker
        .instantiate(&mut store, &module)
        .map_err(|e| describe(&e))?;
    let name = match invoke {
        Some(name) => name,
        None if instance.get_func(&mut store, "_start").is_some() => "_start",
        // No `_start`: instantiating ran the start function, if any; that was the program.
        None => return Ok(ExitCode::SUCCESS),
    };
    let func = instance
        .get_func(&mut store, name)
        .ok_or_else(|| format!("{} has no exported function `{name}`", file.display()))?;
    let ty = func.ty(&store);
    if args.len() != ty.params().len() {
        return Err(format!(
            "`{name}` takes {} arguments ({ty}), {} given",
            ty.params().len(),
            args.len()
        ));
    }
    let params = args
        .iter()
        .zip(ty.params())
        .map(|(arg, &ty)| parse_arg(arg, ty))
        .collect::<Result<Vec<_>, _>>()?;
    let mut results: Vec<Val> = ty.results().iter().map(|&t| Val::default_for(t)).collect();
    func.call(&mut store, &params, &mut results)
        .map_err(|e| describe(&e))?;
    for result in results {
        println!("{}", show(&result));
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_arg(arg: &str, ty: ValType) -> Result<Val, String> {
    let bad = || format!("`{arg}` is not a valid {ty}");
    let int = |s: &str| -> Option<i128> {
        let (neg, digits) = match s.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, s),
        };
        let v = match digits.strip_prefix("0x") {
            Some(hex) => i128::from_str_radix(hex, 16).ok()?,
            None => digits.parse::<i128>().ok()?,
        };
        Some(if neg { -v } else { v })
    };
    Ok(match ty {
        ValType::I32 => {
            let v = int(arg).ok_or_else(bad)?;
            Val::I32(
                i32::try_from(v)
                    .or_else(|_| u32::try_from(v).map(|u| u as i32))
                    .map_err(|_| bad())?,
            )
        }
        ValType::I64 => {
            let v = int(arg).ok_or_else(bad)?;
            Val::I64(
                i64::try_from(v)
                    .or_else(|_| u64::try_from(v).map(|u| u as i64))
                    .map_err(|_| bad())?,
            )
        }
        ValType::F32 => Val::F32(arg.parse::<f32>().map_err(|_| bad())?.to_bits()),
        ValType::F64 => Val::F64(arg.parse::<f64>().map_err(|_| bad())?.to_bits()),
        ValType::V128 => {
            let hex = arg.strip_prefix("0x").ok_or_else(bad)?;
            Val::V128(u128::from_str_radix(hex, 16).map_err(|_| bad())?)
        }
        other => {
            return Err(format!(
                "arguments of type {other} cannot be given on the command line"
            ));
        }
    })
}

fn show(value: &Val) -> String {
    match value {
        Val::I32(v) => v.to_string(),
        Val::I64(v) => v.to_string(),
        Val::F32(b) => f32::from_bits(*b).to_string(),
        Val::F64(b) => f64::from_bits(*b).to_string(),
        Val::V128(v) => format!("{v:#034x}"),
        Val::FuncRef(None) | Val::ExternRef(None) => "null".into(),
        Val::FuncRef(Some(_)) => "funcref".into(),
        Val::ExternRef(Some(_)) => "externref".into(),
    }
}

/// An error for people: the message, and a trap's Wasm backtrace.
fn describe(error: &Error) -> String {
    match error.backtrace() {
        Some(bt) if !bt.frames.is_empty() => format!("{error}\n{bt}").trim_end().to_string(),
        _ => error.to_string(),
    }
}

fn wast(files: &[PathBuf]) -> Result<ExitCode, String> {
    let engine = Engine::default();
    // Spec scripts recurse deeply on purpose; give them a big stack.
    let files = files.to_vec();
    let handle = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || {
            let mut total = weft_wast::WastReport::default();
            for file in &files {
                let name = file.display().to_string();
                let report = match std::fs::read_to_string(file) {
                    Ok(text) => weft_wast::run_script(&engine, &name, &text),
                    Err(e) => Err(format!("cannot read {name}: {e}")),
                };
                match report {
                    Ok(report) => {
                        for failure in &report.failures {
                            eprintln!("  FAIL {failure}");
                        }
                        println!(
                            "{} {name}: {} passed, {} failed, {} skipped",
                            if report.failed == 0 { "ok  " } else { "FAIL" },
                            report.passed,
                            report.failed,
                            report.skipped
                        );
                        total.add(&report);
                    }
                    Err(e) => {
                        eprintln!("  {e}");
                        println!("FAIL {name}: could not be parsed");
                        total.failed += 1;
                    }
                }
            }
            total
        })
        .map_err(|e| format!("cannot start the script runner: {e}"))?;
    let total = handle
        .join()
        .map_err(|_| "the script runner crashed".to_string())?;
    println!(
        "total: {} passed, {} failed, {} skipped",
        total.passed, total.failed, total.skipped
    );
    Ok(if total.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
