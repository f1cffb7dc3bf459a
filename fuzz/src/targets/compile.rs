//! `compile`: validate → compile → instantiate (→ call) never panics, crashes or hangs, and
//! weft's verdict on a module agrees with wasmparser's validator with weft's features.
//!
//! The first input byte picks the kind of module:
//! - raw bytes (almost always invalid: the parser's error paths);
//! - a wasm-smith module with a few bytes mutated (deeper validator and decoder paths);
//! - a terminating wasm-smith module of weft's features (compile, instantiate, call each
//!   export with zeros);
//! - a terminating wasm-smith module of every feature wasm-smith knows (must be rejected with
//!   a typed error where weft lacks the feature).
//!
//! Only terminating modules are instantiated when they have a start function, and only they
//! are called, so a hang is always weft's.

use arbitrary::Unstructured;
use weft::{Error, Module, Store, Val};

use super::{engine, error_kind, has_start, instantiate_with_stubs};
use crate::smith;

pub fn run(input: &[u8]) -> Result<String, String> {
    let mut u = Unstructured::new(input);
    let mode = u.arbitrary::<u8>().unwrap_or(0) % 4;
    let (bytes, terminating) = match mode {
        0 => (u.take_rest().to_vec(), false),
        1 => {
            let Ok(module) = wasm_smith::Module::new(smith::weft(), &mut u) else {
                return Ok("smith-failed".into());
            };
            let mut bytes = module.to_bytes();
            let edits = u.int_in_range(1..=4u8).unwrap_or(1);
            for _ in 0..edits {
                if bytes.is_empty() {
                    break;
                }
                let at = u.choose_index(bytes.len()).unwrap_or(0);
                bytes[at] = u.arbitrary().unwrap_or(0xff);
            }
            (bytes, false)
        }
        2 | 3 => {
            let config = if mode == 2 {
                smith::weft()
            } else {
                smith::everything()
            };
            let fuel = u.int_in_range(1..=500u32).unwrap_or(100);
            match smith::terminating(config, &mut u, fuel) {
                Ok(bytes) => (bytes, true),
                Err(_) => return Ok("smith-failed".into()),
            }
        }
        _ => unreachable!("mode is taken modulo 4"),
    };

    super::remember_module(&bytes);
    let reference = wasmparser::Validator::new_with_features(smith::weft_features())
        .validate_all(&bytes)
        .map(|_| ())
        .map_err(|e| e.message().to_string());
    let module = Module::from_binary(engine(), &bytes);
    let verdict = match (&module, &reference) {
        (Ok(_), Ok(())) => "valid".to_string(),
        (Err(Error::InvalidModule { .. }), Err(_)) => "invalid".to_string(),
        (Err(Error::ResourceLimit(_)), _) => "resource-limit".to_string(),
        (Ok(_), Err(why)) => {
            return Err(format!(
                "weft accepted a module wasmparser rejects with weft's features: {why}"
            ));
        }
        // GC passes validation (see `smith::weft_features_without_gc`), and weft refuses it.
        (Err(Error::Unsupported(_)), Ok(()))
            if wasmparser::Validator::new_with_features(smith::weft_features_without_gc())
                .validate_all(&bytes)
                .is_err() =>
        {
            "unsupported-gc".to_string()
        }
        (Err(error), Ok(())) => {
            return Err(format!(
                "weft rejected a module wasmparser accepts with weft's features: {error}"
            ));
        }
        (Err(error), Err(_)) => format!("invalid-as-{}", error_kind(error)),
    };
    let Ok(module) = module else {
        return Ok(format!("m{mode}:{verdict}"));
    };
    if !terminating && has_start(&bytes) {
        return Ok(format!("m{mode}:{verdict}:start-not-run"));
    }
    let mut store = Store::new(engine(), ());
    let instance = match instantiate_with_stubs(&mut store, &module) {
        Ok(instance) => instance,
        Err(e) => return Ok(format!("m{mode}:{verdict}:instantiate-{}", error_kind(&e))),
    };
    let mut calls = Vec::new();
    if terminating {
        for (name, ty) in module.exports() {
            let weft::ExternType::Func(ty) = ty else {
                continue;
            };
            let Some(func) = instance.get_func(&mut store, name) else {
                return Err(format!(
                    "export `{name}` is listed but get_func finds nothing"
                ));
            };
            let params: Vec<Val> = ty.params().iter().map(|&t| Val::default_for(t)).collect();
            let mut results: Vec<Val> = ty.results().iter().map(|&t| Val::default_for(t)).collect();
            match func.call(&mut store, &params, &mut results) {
                Ok(()) => calls.push("ok".to_string()),
                Err(e) => calls.push(error_kind(&e)),
            }
        }
    }
    calls.sort();
    calls.dedup();
    Ok(format!(
        "m{mode}:{verdict}:instantiated:{}",
        calls.join(",")
    ))
}
