//! `differential`: deterministic, terminating wasm-smith modules (no imports, every item
//! exported, NaNs canonicalized, loops and calls bounded by a fuel global) run on weft and on
//! the wasmi interpreter. After instantiation and after every call of every exported function
//! (with arguments from the input), the outcomes must agree: the same results bit for bit
//! (references: the same null-ness), the same trap kind, the same bytes in every exported
//! memory, the same values in every exported global, the same size of every exported table.
//!
//! SIMD is left out: wasmi's is not a trustworthy reference (see `run`).
//!
//! Stack exhaustion is not compared: the two engines have different stack limits, so a case
//! where either side overflows its stack stops being compared at that point.

use arbitrary::Unstructured;
use weft::{ExternType, Val, ValType};

use super::{engine, error_kind};
use crate::smith;

/// A result, comparable across the engines.
#[derive(Debug, PartialEq, Eq)]
enum Value {
    Bits(u128),
    Null(bool),
}

type Outcome = Result<Vec<Value>, String>;

fn weft_value(v: &Val) -> Value {
    match *v {
        Val::I32(x) => Value::Bits(x as u32 as u128),
        Val::I64(x) => Value::Bits(x as u64 as u128),
        Val::F32(x) => Value::Bits(x as u128),
        Val::F64(x) => Value::Bits(x as u128),
        Val::V128(x) => Value::Bits(x),
        Val::FuncRef(f) => Value::Null(f.is_none()),
        Val::ExternRef(r) => Value::Null(r.is_none()),
        Val::ExnRef(r) => Value::Null(r.is_none()),
    }
}

fn wasmi_value(v: &wasmi::Val) -> Value {
    match v {
        wasmi::Val::I32(x) => Value::Bits(*x as u32 as u128),
        wasmi::Val::I64(x) => Value::Bits(*x as u64 as u128),
        wasmi::Val::F32(x) => Value::Bits(x.to_bits() as u128),
        wasmi::Val::F64(x) => Value::Bits(x.to_bits() as u128),
        wasmi::Val::V128(x) => Value::Bits(x.as_u128()),
        wasmi::Val::FuncRef(f) => Value::Null(f.is_null()),
        wasmi::Val::ExternRef(r) => Value::Null(r.is_null()),
        #[allow(unreachable_patterns)]
        _ => Value::Null(true),
    }
}

fn wasmi_error_kind(error: &wasmi::Error) -> String {
    use wasmi::TrapCode as C;
    use wasmi::errors::{ErrorKind, MemoryError, TableError};
    let Some(code) = error.as_trap_code() else {
        // Instantiation reports out-of-bounds segments as table or memory errors.
        return match error.kind() {
            ErrorKind::Table(
                TableError::InitOutOfBounds
                | TableError::FillOutOfBounds
                | TableError::SetOutOfBounds
                | TableError::CopyOutOfBounds,
            ) => "trap:TableOutOfBounds".into(),
            ErrorKind::Memory(MemoryError::OutOfBoundsAccess) => "trap:MemoryOutOfBounds".into(),
            // Some segment checks report only in words.
            _ if error.to_string().contains("out of bounds table access") => {
                "trap:TableOutOfBounds".into()
            }
            _ if error.to_string().contains("out of bounds memory access") => {
                "trap:MemoryOutOfBounds".into()
            }
            _ => format!("wasmi-error:{error}"),
        };
    };
    let trap = match code {
        C::UnreachableCodeReached => "Unreachable",
        C::MemoryOutOfBounds => "MemoryOutOfBounds",
        C::TableOutOfBounds => "TableOutOfBounds",
        C::IndirectCallToNull => "UninitializedElement",
        C::IntegerDivisionByZero => "IntegerDivisionByZero",
        C::IntegerOverflow => "IntegerOverflow",
        C::BadConversionToInteger => "BadConversionToInteger",
        C::StackOverflow => "StackOverflow",
        C::BadSignature => "IndirectCallTypeMismatch",
        other => return format!("trap:wasmi-{other:?}"),
    };
    format!("trap:{trap}")
}

/// weft reports a `call_indirect` past the table's end as its own kind; wasmi, like the
/// spec's current wording, as a table access out of bounds. Both are the same trap.
fn normalize(kind: String) -> String {
    if kind == "trap:UndefinedElement" {
        "trap:TableOutOfBounds".into()
    } else {
        kind
    }
}

fn arbitrary_val(u: &mut Unstructured<'_>, ty: ValType) -> (Val, wasmi::Val) {
    match ty {
        ValType::I32 => {
            let x: i32 = u.arbitrary().unwrap_or(0);
            (Val::I32(x), wasmi::Val::I32(x))
        }
        ValType::I64 => {
            let x: i64 = u.arbitrary().unwrap_or(0);
            (Val::I64(x), wasmi::Val::I64(x))
        }
        ValType::F32 => {
            let mut x: u32 = u.arbitrary().unwrap_or(0);
            if f32::from_bits(x).is_nan() {
                x = 0x7fc0_0000;
            }
            (Val::F32(x), wasmi::Val::F32(wasmi::F32::from_bits(x)))
        }
        ValType::F64 => {
            let mut x: u64 = u.arbitrary().unwrap_or(0);
            if f64::from_bits(x).is_nan() {
                x = 0x7ff8_0000_0000_0000;
            }
            (Val::F64(x), wasmi::Val::F64(wasmi::F64::from_bits(x)))
        }
        ValType::V128 => {
            let x: u128 = u.arbitrary().unwrap_or(0);
            (Val::V128(x), wasmi::Val::V128(wasmi::V128::from(x)))
        }
        ValType::EXTERNREF => (
            Val::ExternRef(None),
            wasmi::Val::default_for_ty(wasmi::ValType::ExternRef),
        ),
        // funcref; the generated modules use no typed references (wasmi has none).
        ValType::Ref(_) => (
            Val::FuncRef(None),
            wasmi::Val::default_for_ty(wasmi::ValType::FuncRef),
        ),
    }
}

struct Engines {
    weft: weft::Store<()>,
    weft_instance: weft::Instance,
    wasmi: wasmi::Store<()>,
    wasmi_instance: wasmi::Instance,
}

impl Engines {
    /// Differences in exported memories, globals and tables, if any.
    fn compare_state(&mut self, exports: &[(String, ExternType)]) -> Result<(), String> {
        for (name, ty) in exports {
            let theirs = self.wasmi_instance.get_export(&self.wasmi, name);
            match ty {
                ExternType::Memory(_) => {
                    let ours = self.weft_instance.get_memory(&mut self.weft, name);
                    let theirs = theirs.and_then(|e| e.into_memory());
                    let (Some(ours), Some(theirs)) = (ours, theirs) else {
                        return Err(format!("memory export `{name}` missing on one side"));
                    };
                    let a = ours.data(&self.weft);
                    let b = theirs.data(&self.wasmi);
                    if a.len() != b.len() {
                        return Err(format!(
                            "memory `{name}`: weft has {} bytes, wasmi {}",
                            a.len(),
                            b.len()
                        ));
                    }
                    if let Some(i) = a.iter().zip(b).position(|(x, y)| x != y) {
                        return Err(format!(
                            "memory `{name}` differs first at byte {i:#x}: weft {:#04x}, wasmi {:#04x}",
                            a[i], b[i]
                        ));
                    }
                }
                ExternType::Global(_) => {
                    let ours = self.weft_instance.get_global(&mut self.weft, name);
                    let theirs = theirs.and_then(|e| e.into_global());
                    let (Some(ours), Some(theirs)) = (ours, theirs) else {
                        return Err(format!("global export `{name}` missing on one side"));
                    };
                    let a = weft_value(&ours.get(&mut self.weft));
                    let b = wasmi_value(&theirs.get(&self.wasmi));
                    if a != b {
                        return Err(format!("global `{name}`: weft {a:?}, wasmi {b:?}"));
                    }
                }
                ExternType::Table(_) => {
                    let ours = self.weft_instance.get_table(&mut self.weft, name);
                    let theirs = theirs.and_then(|e| e.into_table());
                    let (Some(ours), Some(theirs)) = (ours, theirs) else {
                        return Err(format!("table export `{name}` missing on one side"));
                    };
                    let (a, b) = (ours.size(&self.weft), theirs.size(&self.wasmi));
                    if a != b {
                        return Err(format!("table `{name}` size: weft {a}, wasmi {b}"));
                    }
                    for i in 0..a.min(64) {
                        let x = ours.get(&mut self.weft, i).map(|v| weft_value(&v));
                        let y = theirs.get(&self.wasmi, i).map(|r| r.is_null());
                        if x.as_ref().map(|v| *v == Value::Null(true)) != y {
                            return Err(format!(
                                "table `{name}` element {i}: weft {x:?}, wasmi null={y:?}"
                            ));
                        }
                    }
                }
                // wasm-smith makes no tags for this target (exceptions are off in
                // `smith::weft`: wasmi has none to compare with).
                ExternType::Func(_) | ExternType::Tag(_) => {}
            }
        }
        Ok(())
    }
}

pub fn run(input: &[u8]) -> Result<String, String> {
    let mut u = Unstructured::new(input);
    let fuel = u.int_in_range(1..=1000u32).unwrap_or(100);
    let config = wasm_smith::Config {
        max_imports: 0,
        export_everything: true,
        canonicalize_nans: true,
        // wasmi 2.0's SIMD is not a trustworthy reference: it stores the wrong byte for
        // `v128.store8_lane` and aborts the process ("failed to decode `OpCode`") on some
        // `v128.store16_lane` (see fuzz/README.md). weft's SIMD is covered by the spec suite.
        simd_enabled: false,
        relaxed_simd_enabled: false,
        // 64-bit memories: weft's bounds checks on 64-bit addresses against wasmi's.
        memory64_enabled: true,
        max_memory64_bytes: 16 * 65536,
        ..smith::weft()
    };
    let Ok(bytes) = smith::terminating(config, &mut u, fuel) else {
        return Ok("smith-failed".into());
    };
    super::remember_module(&bytes);

    let module = weft::Module::from_binary(engine(), &bytes)
        .map_err(|e| format!("weft rejected a valid module: {e}"))?;
    let mut wasmi_config = wasmi::Config::default();
    wasmi_config.wasm_simd(true);
    wasmi_config.wasm_tail_call(true);
    wasmi_config.wasm_extended_const(true);
    wasmi_config.wasm_multi_memory(true);
    wasmi_config.wasm_memory64(true);
    let wasmi_engine = wasmi::Engine::new(&wasmi_config);
    let wasmi_module = wasmi::Module::new(&wasmi_engine, &bytes)
        .map_err(|e| format!("wasmi rejected a valid module (harness?): {e}"))?;

    let mut weft_store = weft::Store::new(engine(), ());
    let mut wasmi_store = wasmi::Store::new(&wasmi_engine, ());
    let ours = weft::Linker::new(engine()).instantiate(&mut weft_store, &module);
    let theirs = wasmi::Linker::<()>::new(&wasmi_engine)
        .instantiate_and_start(&mut wasmi_store, &wasmi_module);
    let (weft_instance, wasmi_instance) = match (ours, theirs) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(a), Err(b)) => {
            let (a, b) = (normalize(error_kind(&a)), normalize(wasmi_error_kind(&b)));
            if a == b || a.contains("StackOverflow") || b.contains("StackOverflow") {
                return Ok(format!("instantiate:{a}"));
            }
            return Err(format!("instantiation: weft {a}, wasmi {b}"));
        }
        (Err(a), Ok(_)) => {
            let a = error_kind(&a);
            if a.contains("StackOverflow") {
                return Ok("instantiate:stack".into());
            }
            return Err(format!(
                "instantiation: weft failed with {a}, wasmi succeeded"
            ));
        }
        (Ok(_), Err(b)) => {
            let b = wasmi_error_kind(&b);
            if b.contains("StackOverflow") {
                return Ok("instantiate:stack".into());
            }
            return Err(format!(
                "instantiation: weft succeeded, wasmi failed with {b}"
            ));
        }
    };
    let mut engines = Engines {
        weft: weft_store,
        weft_instance,
        wasmi: wasmi_store,
        wasmi_instance,
    };
    let exports: Vec<(String, ExternType)> =
        module.exports().map(|(n, t)| (n.to_string(), t)).collect();
    engines
        .compare_state(&exports)
        .map_err(|d| format!("after instantiation: {d}"))?;

    let mut signature = Vec::new();
    for (name, ty) in &exports {
        let ExternType::Func(ty) = ty else { continue };
        let (ours_params, theirs_params): (Vec<Val>, Vec<wasmi::Val>) = ty
            .params()
            .iter()
            .map(|&t| arbitrary_val(&mut u, t))
            .unzip();
        let ours = engines
            .weft_instance
            .get_func(&mut engines.weft, name)
            .ok_or("no weft func")?;
        let theirs = engines
            .wasmi_instance
            .get_func(&engines.wasmi, name)
            .ok_or("no wasmi func")?;
        let mut ours_results: Vec<Val> =
            ty.results().iter().map(|&t| Val::default_for(t)).collect();
        let mut theirs_results: Vec<wasmi::Val> = theirs
            .ty(&engines.wasmi)
            .results()
            .iter()
            .map(|t| wasmi::Val::default_for_ty(*t))
            .collect();
        let a: Outcome = ours
            .call(&mut engines.weft, &ours_params, &mut ours_results)
            .map(|()| ours_results.iter().map(weft_value).collect())
            .map_err(|e| normalize(error_kind(&e)));
        // wasmi 2.0 translates lazily, at a function's first call, and its translator panics
        // on some valid modules (see fuzz/README.md): that ends the comparison, not the run.
        let call = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            theirs.call(&mut engines.wasmi, &theirs_params, &mut theirs_results)
        }));
        let Ok(call) = call else {
            signature.push("wasmi-panicked".to_string());
            break;
        };
        let b: Outcome = call
            .map(|()| theirs_results.iter().map(wasmi_value).collect())
            .map_err(|e| normalize(wasmi_error_kind(&e)));
        let overflow = |o: &Outcome| matches!(o, Err(k) if k.contains("StackOverflow"));
        if overflow(&a) || overflow(&b) {
            signature.push("stack".to_string());
            break;
        }
        if a != b {
            return Err(format!(
                "call `{name}` {ours_params:?}: weft {a:?}, wasmi {b:?}"
            ));
        }
        engines
            .compare_state(&exports)
            .map_err(|d| format!("after call `{name}` {ours_params:?}: {d}"))?;
        signature.push(match &a {
            Ok(_) => "ok".to_string(),
            Err(k) => k.clone(),
        });
    }
    signature.sort();
    signature.dedup();
    Ok(signature.join(","))
}
