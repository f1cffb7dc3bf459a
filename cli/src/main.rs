//! The `weft` command: run a module's export, compile a module ahead of time, or run spec
//! scripts. A thin layer over the `weft` crate; everything it does is available to embedders.
//!
//! `weft run` caches compiled code in the user's cache directory (`CacheConfig::user_default`:
//! `$XDG_CACHE_HOME/weft`, else `~/.cache/weft`), so a program's second run skips compilation.
//! `--no-cache` or a non-empty `WEFT_NO_CACHE` turns that off; `WEFT_CACHE_DIR` puts the cache
//! elsewhere.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weft::{CacheConfig, Config, Engine, Error, Linker, Module, Store, Val, ValType};
use weft_wasi::{DirPerms, FilePerms, WasiCtx};

mod codegen_options;
mod limits;
mod progress;
mod wasm_options;

use codegen_options::CodegenOptions;
use wasm_options::WasmOptions;

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
    /// Run a WASI program's `_start`, or call one export with --invoke (binary .wasm or text
    /// .wat). Options go before FILE, as with `wasmtime run`; everything after FILE is the
    /// program's arguments.
    Run {
        /// Call this export instead of `_start`, with the arguments after FILE (i32, i64, f32
        /// or f64, as its type says; a v128 is `0x` and up to 32 hex digits, the u128 whose
        /// least significant byte is byte 0 in memory, and is printed the same way).
        #[arg(long, value_name = "NAME")]
        invoke: Option<String>,
        /// Give the program a host directory: HOST as the guest path HOST, or HOST::GUEST.
        /// Repeatable.
        #[arg(long = "dir", value_name = "HOST[::GUEST]")]
        dirs: Vec<String>,
        /// Set an environment variable for the program; `--env NAME` passes the host's value
        /// on. Repeatable.
        #[arg(long = "env", value_name = "NAME[=VAL]")]
        envs: Vec<String>,
        /// The program's `argv[0]` (default: FILE as given).
        #[arg(long, value_name = "ARG")]
        argv0: Option<String>,
        /// Options, as in wasmtime: `-W fuel=N` stops the program after N Wasm operators,
        /// `-W timeout=DURATION` (`1s`, `500ms`, `2m`) after that long; `-W max-wasm-stack=BYTES`;
        /// WebAssembly features on or off, e.g. `-W tail-call=n` (simd, relaxed-simd,
        /// reference-types, function-references, tail-call, extended-const, multi-memory,
        /// bulk-memory, multi-value; all on by default). Repeatable, or comma-separated.
        #[arg(short = 'W', value_name = "KEY=VALUE")]
        wasm_options: Vec<String>,
        /// Compilation options: `-C lazy` (or `lazy=y`) compiles each function on its first
        /// call, so a large program starts at once and compiles the rest in the background
        /// (`-C lazy-background=n`: only what it calls). Off by default: the code cache makes
        /// second runs start at once anyway, and a lazily compiled module is not cached.
        #[arg(short = 'C', value_name = "KEY=VALUE")]
        codegen_options: Vec<String>,
        /// Compile without the code cache (neither read nor write it). A non-empty
        /// `WEFT_NO_CACHE` does the same.
        #[arg(long)]
        no_cache: bool,
        /// The module to run: .wasm, .wat, or a .cwasm from `weft compile`.
        file: PathBuf,
        /// The program's arguments (or the invoked export's).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Compile a module (binary .wasm or text .wat) ahead of time to a .cwasm file, which
    /// `weft run` loads without compiling. It holds machine code for this weft build and this
    /// CPU: another build or machine refuses it (and anyone who can write it controls what
    /// runs, as with any executable).
    Compile {
        /// The module to compile.
        file: PathBuf,
        /// Where to write the compiled module (default: FILE with the extension .cwasm).
        #[arg(short, long, value_name = "OUT")]
        output: Option<PathBuf>,
        /// Options as for `weft run`: feature switches and max-wasm-stack shape the compiled
        /// module, and `-W fuel=N` / `-W timeout=DURATION` compile in the checks they need
        /// (their values are for `weft run`, which must be given the same kinds of limit).
        #[arg(short = 'W', value_name = "KEY=VALUE")]
        wasm_options: Vec<String>,
    },
    /// Run WebAssembly spec scripts (.wast) and report each file and the total.
    Wast {
        /// Feature switches as for `weft run` (e.g. `-W tail-call=n`).
        #[arg(short = 'W', value_name = "KEY=VALUE")]
        wasm_options: Vec<String>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// What `weft run` was asked to do.
struct RunOptions {
    file: PathBuf,
    invoke: Option<String>,
    dirs: Vec<String>,
    envs: Vec<String>,
    argv0: Option<String>,
    args: Vec<String>,
    wasm: WasmOptions,
    codegen: CodegenOptions,
    no_cache: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            file,
            invoke,
            dirs,
            envs,
            argv0,
            wasm_options,
            codegen_options,
            no_cache,
            mut args,
        } => {
            let parsed = WasmOptions::parse(&wasm_options)
                .and_then(|wasm| Ok((wasm, CodegenOptions::parse(&codegen_options)?)));
            let (wasm, codegen) = match parsed {
                Ok(parsed) => parsed,
                Err(message) => {
                    eprintln!("error: {message}");
                    return ExitCode::FAILURE;
                }
            };
            // The older form `weft run FILE --invoke NAME ARGS...` still works: a leading
            // `--invoke NAME` after FILE is the option, when it was not given before FILE.
            let mut invoke = invoke;
            if invoke.is_none() && args.first().map(String::as_str) == Some("--invoke") {
                if args.len() < 2 {
                    eprintln!("error: --invoke needs the name of an export");
                    return ExitCode::FAILURE;
                }
                invoke = Some(args[1].clone());
                args.drain(..2);
            }
            run(RunOptions {
                file,
                invoke,
                dirs,
                envs,
                argv0,
                args,
                wasm,
                codegen,
                no_cache,
            })
        }
        Command::Compile {
            file,
            output,
            wasm_options,
        } => WasmOptions::parse(&wasm_options).and_then(|wasm| compile(&file, output, &wasm)),
        Command::Wast {
            files,
            wasm_options,
        } => WasmOptions::parse(&wasm_options).and_then(|wasm| wast(&files, &wasm)),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The WASI context of a `weft run`: the program's arguments and environment, the process's
/// stdio, and the preopened directories.
fn wasi_context(options: &RunOptions) -> Result<WasiCtx, String> {
    let mut builder = WasiCtx::builder();
    let argv0 = options
        .argv0
        .clone()
        .unwrap_or_else(|| options.file.display().to_string());
    builder.arg(argv0);
    if options.invoke.is_none() {
        builder.args(options.args.iter().cloned());
    }
    for env in &options.envs {
        match env.split_once('=') {
            Some((name, value)) => builder.env(name, value),
            // `--env NAME`: the host's value, if it has one.
            None => match std::env::var(env) {
                Ok(value) => builder.env(env.as_str(), value),
                Err(_) => &mut builder,
            },
        };
    }
    for dir in &options.dirs {
        let (host, guest) = dir.split_once("::").unwrap_or((dir, dir));
        if !std::path::Path::new(host).is_dir() {
            return Err(format!("--dir {dir}: {host} is not a directory"));
        }
        builder.preopened_dir(host, guest, DirPerms::ALL, FilePerms::ALL);
    }
    builder.inherit_stdio();
    builder.build().map_err(|e| e.to_string())
}

/// The code cache `weft run` uses, unless turned off (see the crate docs).
fn cache(no_cache: bool) -> Option<CacheConfig> {
    let off = |var: &str| std::env::var_os(var).is_some_and(|v| !v.is_empty());
    if no_cache || off("WEFT_NO_CACHE") {
        return None;
    }
    match std::env::var_os("WEFT_CACHE_DIR") {
        Some(dir) if !dir.is_empty() => Some(CacheConfig::new(dir)),
        _ => CacheConfig::user_default(),
    }
}

/// Compiles `bytes` (from `file`), with a progress line on stderr when a person is watching
/// and it takes a while (see `progress`).
fn compile_module(
    engine: &Engine,
    file: &std::path::Path,
    bytes: &[u8],
) -> Result<Module, weft::Error> {
    let label = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into(),
    );
    match progress::ProgressLine::for_stderr(&label) {
        Some(line) => {
            let module = Module::new_with_progress(engine, bytes, |p| line.update(p));
            line.finish();
            module
        }
        None => Module::new(engine, bytes),
    }
}

fn compile(
    file: &std::path::Path,
    output: Option<PathBuf>,
    wasm: &WasmOptions,
) -> Result<ExitCode, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    if weft::is_serialized_module(&bytes) {
        return Err(format!("{} is compiled already", file.display()));
    }
    let mut config = Config::new();
    wasm.configure(&mut config);
    let engine = Engine::new(&config).map_err(|e| e.to_string())?;
    let module =
        compile_module(&engine, file, &bytes).map_err(|e| format!("{}: {e}", file.display()))?;
    let serialized = module
        .serialize()
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let output = output.unwrap_or_else(|| file.with_extension("cwasm"));
    std::fs::write(&output, serialized)
        .map_err(|e| format!("cannot write {}: {e}", output.display()))?;
    Ok(ExitCode::SUCCESS)
}

fn run(options: RunOptions) -> Result<ExitCode, String> {
    let file = &options.file;
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let mut config = Config::new();
    options.wasm.configure(&mut config);
    options.codegen.configure(&mut config);
    config.cache(cache(options.no_cache));
    let engine = Engine::new(&config).map_err(|e| e.to_string())?;
    // A .cwasm from `weft compile` is recognized by its header, whatever the file is called.
    let module = if weft::is_serialized_module(&bytes) {
        Module::deserialize(&engine, &bytes)
    } else {
        compile_module(&engine, file, &bytes)
    }
    .map_err(|e| format!("{}: {e}", file.display()))?;
    let wasi = wasi_context(&options)?;
    let mut linker = Linker::new(&engine);
    weft_wasi::add_to_linker_async(&mut linker, |wasi: &mut WasiCtx| wasi)
        .map_err(|e| e.to_string())?;
    // Imports from anywhere but WASI cannot be satisfied: name them all in one line.
    let missing: Vec<String> = module
        .imports()
        .filter(|(module, _, _)| *module != weft_wasi::MODULE)
        .map(|(module, name, _)| format!("{module}::{name}"))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{}: unknown import{}: {} (weft run provides only {})",
            file.display(),
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", "),
            weft_wasi::MODULE
        ));
    }
    let exports_functions = module
        .exports()
        .any(|(_, ty)| matches!(ty, weft::ExternType::Func(_)));
    // One thread: a suspended WASI call leaves it to the runtime's timers and blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let mut store = Store::new(&engine, wasi);
    options.wasm.limits.start(&engine, &mut store)?;
    let program = async {
        let instance = linker.instantiate_async(&mut store, &module).await?;
        match &options.invoke {
            None => {
                let Some(start) = instance.get_func(&mut store, "_start") else {
                    if !exports_functions {
                        // Nothing to call: instantiating ran the start function, if any, and
                        // that was the program.
                        return Ok(None);
                    }
                    return Err(Error::msg(format!(
                        "{} is not a WASI command: it exports no `_start` (call an export with \
                         --invoke NAME)",
                        file.display()
                    )));
                };
                start.call_async(&mut store, &[], &mut []).await?;
                Ok(None)
            }
            Some(name) => {
                // A WASI reactor is initialized before its exports are called.
                if let Some(init) = instance.get_func(&mut store, "_initialize") {
                    init.call_async(&mut store, &[], &mut []).await?;
                }
                let func = instance.get_func(&mut store, name).ok_or_else(|| {
                    Error::msg(format!(
                        "{} has no exported function `{name}`",
                        file.display()
                    ))
                })?;
                let ty = func.ty(&store);
                if options.args.len() != ty.params().len() {
                    return Err(Error::msg(format!(
                        "`{name}` takes {} arguments ({ty}), {} given",
                        ty.params().len(),
                        options.args.len()
                    )));
                }
                let params = options
                    .args
                    .iter()
                    .zip(ty.params())
                    .map(|(arg, &ty)| parse_arg(arg, ty))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(Error::msg)?;
                let mut results: Vec<Val> =
                    ty.results().iter().map(|&t| Val::default_for(t)).collect();
                func.call_async(&mut store, &params, &mut results).await?;
                Ok(Some(results))
            }
        }
    };
    let outcome = runtime.block_on(async {
        match options.wasm.limits.timeout {
            // Computing Wasm is stopped by the epoch; a program waiting in a WASI call, where
            // no epoch check runs, by this timer (dropping the call cancels it).
            Some(timeout) => tokio::time::timeout(timeout, program).await.ok(),
            None => Some(program.await),
        }
    });
    let Some(outcome) = outcome else {
        return Err(options.wasm.limits.timed_out());
    };
    match outcome {
        Ok(Some(results)) => {
            for result in results {
                println!("{}", show(&result));
            }
            Ok(ExitCode::SUCCESS)
        }
        Ok(None) => Ok(ExitCode::SUCCESS),
        Err(error) => match weft_wasi::exit_code(&error) {
            // `proc_exit(n)`: the program's status (the low 8 bits, as the OS keeps them).
            Some(code) => Ok(ExitCode::from(code as u8)),
            None => Err(match options.wasm.limits.explain(&error) {
                // Where it was stopped, too: the backtrace names the function that ran on.
                Some(limit) => format!("{limit}\n{}", describe(&error)),
                None => describe(&error),
            }),
        },
    }
}

fn parse_arg(arg: &str, ty: ValType) -> Result<Val, String> {
    let bad = || format!("`{arg}` is not a valid {ty}");
    let int = |s: &str| -> Option<i128> {
        let (neg, digits) = match s.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, s),
        };
        // Digits only: the std parsers take a sign of their own, which made `--5` read as 5.
        let v = match digits.strip_prefix("0x") {
            Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                i128::from_str_radix(hex, 16).ok()?
            }
            None if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                digits.parse::<i128>().ok()?
            }
            _ => return None,
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
        Val::FuncRef(None) | Val::ExternRef(None) | Val::ExnRef(None) => "null".into(),
        Val::FuncRef(Some(_)) => "funcref".into(),
        Val::ExternRef(Some(_)) => "externref".into(),
        Val::ExnRef(Some(_)) => "exnref".into(),
    }
}

/// An error for people: the message, and a trap's Wasm backtrace.
fn describe(error: &Error) -> String {
    match error.backtrace() {
        Some(bt) if !bt.frames.is_empty() => format!("{error}\n{bt}").trim_end().to_string(),
        _ => error.to_string(),
    }
}

fn wast(files: &[PathBuf], wasm: &WasmOptions) -> Result<ExitCode, String> {
    if wasm.has_limits() {
        return Err("weft wast takes feature switches and max-wasm-stack, not limits".into());
    }
    let mut config = Config::new();
    wasm.configure(&mut config);
    let engine = Engine::new(&config).map_err(|e| e.to_string())?;
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
