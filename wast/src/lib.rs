//! Running WebAssembly spec scripts (`.wast`) through weft's public API.
//!
//! Each script gets a fresh store and linker with the spec's `spectest` module defined. Every
//! directive counts as passed or failed; directives this runner deliberately does not execute
//! (component-model and thread directives, which are not part of Wasm 2.0) count as skipped.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::HashMap;

use wast::core::{AbstractHeapType, HeapType, NanPattern, WastArgCore, WastRetCore};
use wast::lexer::Lexer;
use wast::parser::{self, ParseBuffer};
use wast::token::{F32, F64};
use wast::{
    QuoteWat, QuoteWatTest, Wast, WastArg, WastDirective, WastExecute, WastInvoke, WastRet, Wat,
};

use weft::{
    Engine, Error, ExternRef, Global, GlobalType, Instance, Linker, Memory, MemoryType, Module,
    Mutability, Store, Table, TableType, Trap, Val, ValType,
};

/// The outcome of one script.
#[derive(Clone, Debug, Default)]
pub struct WastReport {
    /// Directives that behaved as the script says.
    pub passed: usize,
    /// Directives that did not.
    pub failed: usize,
    /// Directives this runner does not execute.
    pub skipped: usize,
    /// One line per failed directive: `name:line: what went wrong`.
    pub failures: Vec<String>,
}

impl WastReport {
    /// Adds `other`'s counts and failures to this report's.
    pub fn add(&mut self, other: &WastReport) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.failures.extend(other.failures.iter().cloned());
    }
}

/// Runs the script `text` (named `name` in messages) on `engine`.
///
/// # Errors
/// A message if the script itself cannot be parsed.
pub fn run_script(engine: &Engine, name: &str, text: &str) -> Result<WastReport, String> {
    run(engine, name, text, false)
}

/// Runs the script as [`run_script`] does, except that every module that compiles is
/// serialized and loaded back (`Module::serialize` then `Module::deserialize`) before it is
/// used, so the script's assertions check code that went through the `.cwasm` format.
///
/// # Errors
/// As [`run_script`]; a module that does not survive the round trip fails its directive.
pub fn run_script_serialized(
    engine: &Engine,
    name: &str,
    text: &str,
) -> Result<WastReport, String> {
    run(engine, name, text, true)
}

fn run(engine: &Engine, name: &str, text: &str, serialized: bool) -> Result<WastReport, String> {
    let mut lexer = Lexer::new(text);
    // `names.wast` uses characters the lexer rejects by default.
    lexer.allow_confusing_unicode(true);
    let buffer = ParseBuffer::new_with_lexer(lexer).map_err(|e| located(e, name, text))?;
    let wast: Wast<'_> = parser::parse(&buffer).map_err(|e| located(e, name, text))?;
    let mut runner = Runner::new(engine);
    runner.serialized = serialized;
    let mut report = WastReport::default();
    for directive in wast.directives {
        let line = directive.span().linecol_in(text).0 + 1;
        match runner.run(directive) {
            Outcome::Pass => report.passed += 1,
            Outcome::Skip => report.skipped += 1,
            Outcome::Fail(why) => {
                report.failed += 1;
                report.failures.push(format!("{name}:{line}: {why}"));
            }
        }
    }
    Ok(report)
}

fn located(mut e: wast::Error, name: &str, text: &str) -> String {
    e.set_path(std::path::Path::new(name));
    e.set_text(text);
    e.to_string()
}

enum Outcome {
    Pass,
    Skip,
    Fail(String),
}

impl<E: std::fmt::Display> From<Result<(), E>> for Outcome {
    fn from(r: Result<(), E>) -> Self {
        match r {
            Ok(()) => Outcome::Pass,
            Err(e) => Outcome::Fail(e.to_string()),
        }
    }
}

struct Runner {
    engine: Engine,
    store: Store<()>,
    linker: Linker<()>,
    current: Option<Instance>,
    instances: HashMap<String, Instance>,
    definitions: HashMap<String, Module>,
    /// Round-trip every compiled module through `serialize`/`deserialize`.
    serialized: bool,
}

impl Runner {
    fn new(engine: &Engine) -> Self {
        let mut store = Store::new(engine, ());
        if engine.config().get_consume_fuel() {
            // Scripts run to completion; fuel only has to be counted, not run out.
            let _enabled = store.set_fuel(u64::MAX);
        }
        let mut linker = Linker::new(engine);
        linker.allow_shadowing(true);
        define_spectest(&mut linker, &mut store).expect("the spectest module is valid");
        Runner {
            engine: engine.clone(),
            store,
            linker,
            current: None,
            instances: HashMap::new(),
            definitions: HashMap::new(),
            serialized: false,
        }
    }

    /// Compiles `wasm` (and round-trips it, in serialized mode).
    fn compile(&self, wasm: impl AsRef<[u8]>) -> Result<Module, Error> {
        let module = Module::new(&self.engine, wasm)?;
        if !self.serialized {
            return Ok(module);
        }
        Module::deserialize(&self.engine, &module.serialize()?)
    }

    fn run(&mut self, directive: WastDirective<'_>) -> Outcome {
        match directive {
            WastDirective::Module(mut module) => {
                let id = quote_id(&module);
                self.instantiate_quote(&mut module, id).into()
            }
            WastDirective::ModuleDefinition(mut module) => {
                let id = quote_id(&module);
                match encode(&mut module).and_then(|w| self.compile(w).map_err(|e| e.to_string())) {
                    Ok(m) => {
                        if let Some(id) = id {
                            self.definitions.insert(id, m);
                        }
                        Outcome::Pass
                    }
                    Err(e) => Outcome::Fail(e),
                }
            }
            WastDirective::ModuleInstance {
                instance, module, ..
            } => {
                let Some(module) = module.and_then(|m| self.definitions.get(m.name()).cloned())
                else {
                    return Outcome::Fail("unknown module definition".into());
                };
                match self.linker.instantiate(&mut self.store, &module) {
                    Ok(i) => {
                        self.current = Some(i);
                        if let Some(id) = instance {
                            self.instances.insert(id.name().to_string(), i);
                        }
                        Outcome::Pass
                    }
                    Err(e) => Outcome::Fail(e.to_string()),
                }
            }
            WastDirective::Register { name, module, .. } => {
                let Some(instance) = self.instance(module.map(|m| m.name())) else {
                    return Outcome::Fail("register: no such instance".into());
                };
                self.linker
                    .instance(&mut self.store, name, instance)
                    .map(|_| ())
                    .into()
            }
            WastDirective::Invoke(invoke) => self.invoke(&invoke).map(|_| ()).into(),
            WastDirective::AssertReturn { exec, results, .. } => match self.execute(exec) {
                Ok(values) => self.check_results(&values, &results).into(),
                Err(e) => Outcome::Fail(format!("expected results, got error: {e}")),
            },
            WastDirective::AssertTrap { exec, message, .. } => {
                expect_trap(self.execute(exec), message).into()
            }
            WastDirective::AssertException { exec, .. } => match self.execute(exec) {
                Err(Error::Exception(_)) => Outcome::Pass,
                Ok(values) => Outcome::Fail(format!("expected an exception, got {values:?}")),
                Err(e) => Outcome::Fail(format!("expected an exception, got error: {e}")),
            },
            WastDirective::AssertExhaustion { call, message, .. } => {
                expect_trap(self.invoke(&call), message).into()
            }
            WastDirective::AssertMalformed {
                mut module,
                message,
                ..
            }
            | WastDirective::AssertInvalid {
                mut module,
                message,
                ..
            } => match encode(&mut module) {
                // The text itself is malformed: the text parser rejected it, as expected.
                Err(_) => Outcome::Pass,
                Ok(wasm) => match self.compile(wasm) {
                    Ok(_) => Outcome::Fail(format!("expected an invalid module ({message})")),
                    Err(Error::InvalidModule { .. }) | Err(Error::Unsupported(_)) => Outcome::Pass,
                    Err(e) => Outcome::Fail(format!("expected an invalid module, got: {e}")),
                },
            },
            WastDirective::AssertUnlinkable {
                mut module,
                message,
                ..
            } => {
                let wasm = match module.encode() {
                    Ok(w) => w,
                    Err(e) => return Outcome::Fail(e.to_string()),
                };
                let module = match self.compile(wasm) {
                    Ok(m) => m,
                    Err(e) => return Outcome::Fail(format!("module does not compile: {e}")),
                };
                match self.linker.instantiate(&mut self.store, &module) {
                    Ok(_) => Outcome::Fail(format!("expected a link error ({message})")),
                    Err(Error::Trap { trap, .. }) => Outcome::Fail(format!(
                        "expected a link error ({message}), got trap {trap}"
                    )),
                    Err(_) => Outcome::Pass,
                }
            }
            WastDirective::AssertInvalidCustom { .. }
            | WastDirective::AssertMalformedCustom { .. }
            | WastDirective::AssertSuspension { .. }
            | WastDirective::Thread(_)
            | WastDirective::Wait { .. } => Outcome::Skip,
        }
    }

    fn instance(&self, id: Option<&str>) -> Option<Instance> {
        match id {
            Some(id) => self.instances.get(id).copied(),
            None => self.current,
        }
    }

    fn instantiate_quote(
        &mut self,
        module: &mut QuoteWat<'_>,
        id: Option<String>,
    ) -> Result<(), String> {
        let wasm = encode(module)?;
        let module = self.compile(wasm).map_err(|e| e.to_string())?;
        let instance = self
            .linker
            .instantiate(&mut self.store, &module)
            .map_err(|e| e.to_string())?;
        self.current = Some(instance);
        if let Some(id) = id {
            self.instances.insert(id, instance);
        }
        Ok(())
    }

    fn execute(&mut self, exec: WastExecute<'_>) -> Result<Vec<Val>, Error> {
        match exec {
            WastExecute::Invoke(invoke) => self.invoke(&invoke),
            WastExecute::Wat(mut wat) => {
                let wasm = wat.encode().map_err(|e| Error::msg(e.to_string()))?;
                let module = self.compile(wasm)?;
                self.linker.instantiate(&mut self.store, &module)?;
                Ok(Vec::new())
            }
            WastExecute::Get { module, global, .. } => {
                let instance = self
                    .instance(module.map(|m| m.name()))
                    .ok_or_else(|| Error::msg("no such instance"))?;
                let global = instance
                    .get_global(&mut self.store, global)
                    .ok_or_else(|| Error::msg(format!("no global named {global}")))?;
                Ok(vec![global.get(&mut self.store)])
            }
        }
    }

    fn invoke(&mut self, invoke: &WastInvoke<'_>) -> Result<Vec<Val>, Error> {
        let instance = self
            .instance(invoke.module.map(|m| m.name()))
            .ok_or_else(|| Error::msg("no such instance"))?;
        let func = instance
            .get_func(&mut self.store, invoke.name)
            .ok_or_else(|| Error::msg(format!("no function named {}", invoke.name)))?;
        let args = invoke
            .args
            .iter()
            .map(|a| self.arg(a))
            .collect::<Result<Vec<_>, _>>()?;
        let ty = func.ty(&self.store);
        let mut results: Vec<Val> = ty.results().iter().map(|&t| Val::default_for(t)).collect();
        func.call(&mut self.store, &args, &mut results)?;
        Ok(results)
    }

    fn arg(&mut self, arg: &WastArg<'_>) -> Result<Val, Error> {
        let WastArg::Core(arg) = arg else {
            return Err(Error::msg("component values are not supported"));
        };
        Ok(match arg {
            WastArgCore::I32(v) => Val::I32(*v),
            WastArgCore::I64(v) => Val::I64(*v),
            WastArgCore::F32(v) => Val::F32(v.bits),
            WastArgCore::F64(v) => Val::F64(v.bits),
            WastArgCore::V128(v) => Val::V128(u128::from_le_bytes(v.to_le_bytes())),
            WastArgCore::RefNull(
                HeapType::Abstract {
                    ty: AbstractHeapType::Func | AbstractHeapType::NoFunc,
                    ..
                }
                | HeapType::Concrete(_),
            ) => Val::FuncRef(None),
            WastArgCore::RefNull(HeapType::Abstract {
                ty: AbstractHeapType::Exn | AbstractHeapType::NoExn,
                ..
            }) => Val::ExnRef(None),
            WastArgCore::RefNull(_) => Val::ExternRef(None),
            WastArgCore::RefExtern(n) => Val::ExternRef(Some(ExternRef::new(&mut self.store, *n))),
            WastArgCore::RefHost(_) => return Err(Error::msg("ref.host is not supported")),
        })
    }

    fn check_results(&self, actual: &[Val], expected: &[WastRet<'_>]) -> Result<(), String> {
        if actual.len() != expected.len() {
            return Err(format!(
                "expected {} results, got {}",
                expected.len(),
                actual.len()
            ));
        }
        for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
            let WastRet::Core(e) = e else {
                return Err("component results are not supported".into());
            };
            if !self.matches(a, e) {
                return Err(format!("result {i}: expected {e:?}, got {a:?}"));
            }
        }
        Ok(())
    }

    fn matches(&self, actual: &Val, expected: &WastRetCore<'_>) -> bool {
        match (actual, expected) {
            (Val::I32(a), WastRetCore::I32(e)) => a == e,
            (Val::I64(a), WastRetCore::I64(e)) => a == e,
            (Val::F32(a), WastRetCore::F32(e)) => match_f32(*a, e),
            (Val::F64(a), WastRetCore::F64(e)) => match_f64(*a, e),
            (Val::V128(a), WastRetCore::V128(e)) => match_v128(*a, e),
            (Val::FuncRef(a), WastRetCore::RefNull(_)) => a.is_none(),
            (Val::ExternRef(a), WastRetCore::RefNull(_)) => a.is_none(),
            (Val::ExnRef(a), WastRetCore::RefNull(_)) => a.is_none(),
            (Val::FuncRef(a), WastRetCore::RefFunc(_)) => a.is_some(),
            (Val::ExternRef(a), WastRetCore::RefExtern(None)) => a.is_some(),
            (Val::ExternRef(Some(a)), WastRetCore::RefExtern(Some(n))) => {
                a.data(&self.store).downcast_ref::<u32>() == Some(n)
            }
            (_, WastRetCore::Either(options)) => options.iter().any(|o| self.matches(actual, o)),
            _ => false,
        }
    }
}

fn quote_id(module: &QuoteWat<'_>) -> Option<String> {
    match module {
        QuoteWat::Wat(Wat::Module(m)) => m.id.map(|id| id.name().to_string()),
        _ => None,
    }
}

fn encode(module: &mut QuoteWat<'_>) -> Result<Vec<u8>, String> {
    match module {
        QuoteWat::QuoteComponent(..) | QuoteWat::Wat(Wat::Component(_)) => {
            Err("components are not supported".into())
        }
        _ => match module.to_test().map_err(|e| e.to_string())? {
            QuoteWatTest::Binary(bytes) => Ok(bytes),
            QuoteWatTest::Text(_) => module.encode().map_err(|e| e.to_string()),
        },
    }
}

fn expect_trap<T>(result: Result<T, Error>, message: &str) -> Result<(), String> {
    match result {
        Ok(_) => Err(format!("expected trap `{message}`, got success")),
        Err(Error::Trap { trap, .. }) => {
            if trap_matches(trap, message) {
                Ok(())
            } else {
                Err(format!("expected trap `{message}`, got `{trap}`"))
            }
        }
        Err(e) => Err(format!("expected trap `{message}`, got error: {e}")),
    }
}

/// Whether `trap` is the one a script's message names. Scripts sometimes use older wordings.
fn trap_matches(trap: Trap, message: &str) -> bool {
    let actual = trap.message();
    actual.starts_with(message)
        || message.starts_with(actual)
        || match trap {
            Trap::Unreachable => message.contains("unreachable"),
            Trap::MemoryOutOfBounds => message.contains("out of bounds memory access"),
            Trap::UndefinedElement => {
                message == "undefined" || message.contains("undefined element")
            }
            Trap::UninitializedElement => message.contains("uninitialized"),
            // `call_ref` of null is "null function reference" in the scripts.
            Trap::NullReference => message.starts_with("null") && message.ends_with("reference"),
            _ => false,
        }
}

fn match_f32(bits: u32, expected: &NanPattern<F32>) -> bool {
    match expected {
        NanPattern::CanonicalNan => bits & 0x7fff_ffff == 0x7fc0_0000,
        NanPattern::ArithmeticNan => bits & 0x7fc0_0000 == 0x7fc0_0000,
        NanPattern::Value(v) => bits == v.bits,
    }
}

fn match_f64(bits: u64, expected: &NanPattern<F64>) -> bool {
    match expected {
        NanPattern::CanonicalNan => bits & 0x7fff_ffff_ffff_ffff == 0x7ff8_0000_0000_0000,
        NanPattern::ArithmeticNan => bits & 0x7ff8_0000_0000_0000 == 0x7ff8_0000_0000_0000,
        NanPattern::Value(v) => bits == v.bits,
    }
}

fn match_v128(actual: u128, expected: &wast::core::V128Pattern) -> bool {
    use wast::core::V128Pattern as P;
    let bytes = actual.to_le_bytes();
    match expected {
        P::I8x16(e) => e.iter().enumerate().all(|(i, &v)| bytes[i] as i8 == v),
        P::I16x8(e) => e
            .iter()
            .enumerate()
            .all(|(i, &v)| i16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]) == v),
        P::I32x4(e) => e.iter().enumerate().all(|(i, &v)| {
            i32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes")) == v
        }),
        P::I64x2(e) => e.iter().enumerate().all(|(i, &v)| {
            i64::from_le_bytes(bytes[8 * i..8 * i + 8].try_into().expect("8 bytes")) == v
        }),
        P::F32x4(e) => e.iter().enumerate().all(|(i, p)| {
            match_f32(
                u32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes")),
                p,
            )
        }),
        P::F64x2(e) => e.iter().enumerate().all(|(i, p)| {
            match_f64(
                u64::from_le_bytes(bytes[8 * i..8 * i + 8].try_into().expect("8 bytes")),
                p,
            )
        }),
    }
}

/// Defines the `spectest` module the spec scripts import.
fn define_spectest(linker: &mut Linker<()>, store: &mut Store<()>) -> Result<(), Error> {
    linker.func_wrap("spectest", "print", || {})?;
    linker.func_wrap("spectest", "print_i32", |_: i32| {})?;
    linker.func_wrap("spectest", "print_i64", |_: i64| {})?;
    linker.func_wrap("spectest", "print_f32", |_: f32| {})?;
    linker.func_wrap("spectest", "print_f64", |_: f64| {})?;
    linker.func_wrap("spectest", "print_i32_f32", |_: i32, _: f32| {})?;
    linker.func_wrap("spectest", "print_f64_f64", |_: f64, _: f64| {})?;
    let globals = [
        ("global_i32", ValType::I32, Val::I32(666)),
        ("global_i64", ValType::I64, Val::I64(666)),
        ("global_f32", ValType::F32, Val::F32(666.6f32.to_bits())),
        ("global_f64", ValType::F64, Val::F64(666.6f64.to_bits())),
    ];
    for (name, ty, value) in globals {
        let global = Global::new(&mut *store, GlobalType::new(ty, Mutability::Const), value)?;
        linker.define(&mut *store, "spectest", name, global)?;
    }
    let table = Table::new(
        &mut *store,
        TableType::new(ValType::FUNCREF, 10, Some(20)),
        Val::FuncRef(None),
    )?;
    linker.define(&mut *store, "spectest", "table", table)?;
    let memory = Memory::new(&mut *store, MemoryType::new(1, Some(2)))?;
    linker.define(&mut *store, "spectest", "memory", memory)?;
    Ok(())
}
