//! The fuzz targets and what they share: the engine, import stubs, and outcome descriptions.

pub mod api_sequence;
pub mod compile;
pub mod differential;
pub mod suspension;

use std::sync::OnceLock;

use weft::{
    Engine, Error, ExternType, Global, Instance, Linker, Memory, Module, Store, Table, Val,
};

/// A fuzz target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Compile,
    Differential,
    Suspension,
    Api,
}

impl Target {
    pub fn from_name(name: &str) -> Option<Target> {
        Some(match name {
            "compile" => Target::Compile,
            "differential" => Target::Differential,
            "suspension" => Target::Suspension,
            "api" => Target::Api,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Target::Compile => "compile",
            Target::Differential => "differential",
            Target::Suspension => "suspension",
            Target::Api => "api",
        }
    }

    /// Runs one case: `Ok(signature)` (a short description of what the case did, for the
    /// corpus) or `Err(what was violated)`. Panics are the caller's to catch.
    pub fn run(self, input: &[u8]) -> Result<String, String> {
        match self {
            Target::Compile => compile::run(input),
            Target::Differential => differential::run(input),
            Target::Suspension => suspension::run(input),
            Target::Api => api_sequence::run(input),
        }
    }
}

/// One engine per process: engines are meant to be shared, and making one per case would
/// mostly measure trampoline compilation. One compile thread: the machine is shared.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = weft::Config::new();
        config.compile_threads(1);
        Engine::new(&config).expect("weft supports this host")
    })
}

/// A kind-level name for an error: the trap kind, or the error variant.
pub fn error_kind(error: &Error) -> String {
    match error {
        Error::Trap { trap, .. } => format!("trap:{trap:?}"),
        Error::InvalidModule { .. } => "invalid".into(),
        Error::Unsupported(_) => "unsupported".into(),
        Error::UnknownImport { .. } => "unknown-import".into(),
        Error::IncompatibleImport { .. } => "incompatible-import".into(),
        Error::TypeMismatch(_) => "type-mismatch".into(),
        Error::ResourceLimit(_) => "resource-limit".into(),
        Error::Host(_) => "host".into(),
        Error::Message(_) => "message".into(),
        Error::Exception(_) => "exception".into(),
        _ => "other".into(),
    }
}

/// Instantiates `module` with every import defined by a stub: functions that return zeros,
/// fresh memories, tables and globals of the imported types.
pub fn instantiate_with_stubs(store: &mut Store<()>, module: &Module) -> Result<Instance, Error> {
    let mut linker = Linker::new(store.engine());
    linker.allow_shadowing(true);
    for (module_name, name, ty) in module.imports() {
        match ty {
            ExternType::Func(ty) => {
                let result_types = ty.results().to_vec();
                linker.func_new(module_name, name, ty, move |_, _, results| {
                    for (result, &ty) in results.iter_mut().zip(&result_types) {
                        *result = Val::default_for(ty);
                    }
                    Ok(())
                })?;
            }
            ExternType::Memory(ty) => {
                let memory = Memory::new(&mut *store, ty)?;
                linker.define(&mut *store, module_name, name, memory)?;
            }
            ExternType::Table(ty) => {
                let table = Table::new(&mut *store, ty, Val::default_for(ty.element))?;
                linker.define(&mut *store, module_name, name, table)?;
            }
            ExternType::Global(ty) => {
                let global = Global::new(&mut *store, ty, Val::default_for(ty.content))?;
                linker.define(&mut *store, module_name, name, global)?;
            }
            ExternType::Tag(ty) => {
                let tag = weft::Tag::new(&mut *store, &ty)?;
                linker.define(&mut *store, module_name, name, tag)?;
            }
        }
    }
    linker.instantiate(store, module)
}

/// Whether the module binary has a start function (which might not terminate).
pub fn has_start(bytes: &[u8]) -> bool {
    wasmparser::Parser::new(0)
        .parse_all(bytes)
        .any(|payload| matches!(payload, Ok(wasmparser::Payload::StartSection { .. })))
}

/// Where `--reproduce` wants the module written (before it runs: it may crash the process).
pub static DUMP_MODULE_TO: OnceLock<std::path::PathBuf> = OnceLock::new();

/// Notes the module a case runs, so that `--reproduce` can write it out.
pub fn remember_module(bytes: &[u8]) {
    if let Some(path) = DUMP_MODULE_TO.get() {
        let _ = std::fs::write(path.with_extension("wasm"), bytes);
        let text = wasmprinter::print_bytes(bytes).unwrap_or_else(|e| format!(";; {e}"));
        let _ = std::fs::write(path.with_extension("wat"), text);
        eprintln!(
            "module: {} (and .wat)",
            path.with_extension("wasm").display()
        );
    }
}
