//! `Module`: a validated, compiled WebAssembly module, ready to instantiate in any store of its
//! engine.

use std::sync::Arc;

use weft_environ::ModuleInfo;
use weft_environ::module_info::EntityIndex;

use crate::DeserializeError;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::types::{ExternType, GlobalType, MemoryType, Mutability, RefType, TableType, ValType};
use crate::vm::code_memory::CodeMemory;
use crate::vm::lazy::LazyCode;

/// The header fields a serialized module is compared on, for this build and `compiler`.
fn fingerprint(compiler: &weft_compiler::CodeFingerprint) -> crate::serialize::Fingerprint<'_> {
    crate::serialize::Fingerprint {
        build_id: crate::serialize::BUILD_ID,
        target: &compiler.target,
        cpu_features: &compiler.cpu_features,
        settings: &compiler.settings,
    }
}

/// A compiled module. Cheap to clone.
#[derive(Clone)]
pub struct Module {
    pub(crate) inner: Arc<ModuleInner>,
}

pub(crate) struct ModuleInner {
    pub engine: Engine,
    pub info: Arc<ModuleInfo>,
    pub wasm: Arc<[u8]>,
    /// The functions' code: in lazy mode their entry stubs (see [`LazyCode`]).
    pub code: Arc<CodeMemory>,
    /// The workers behind the stubs, in lazy mode.
    pub lazy: Option<LazyCode>,
    /// Engine type id of each of the module's types. Instantiation writes them into the vmctx,
    /// where compiled code reads them: the code itself holds no engine-specific ids.
    pub type_ids: Vec<u32>,
}

/// How far the compilation of a module has got (see [`Module::new_with_progress`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompileProgress {
    /// Functions compiled so far.
    pub functions_done: usize,
    /// Functions the module defines.
    pub functions_total: usize,
}

impl Module {
    /// Compiles a module from its binary or text (WAT) form.
    ///
    /// # Errors
    /// [`Error::InvalidModule`] with the byte offset of the problem if the bytes are not a
    /// valid module, [`Error::Unsupported`] for features weft lacks.
    pub fn new(engine: &Engine, bytes: impl AsRef<[u8]>) -> Result<Module> {
        let bytes = bytes.as_ref();
        let wasm = wat::parse_bytes(bytes).map_err(|e| Error::InvalidModule {
            message: e.to_string(),
            offset: 0,
        })?;
        Module::from_binary(engine, &wasm)
    }

    /// Compiles a module from its binary form.
    ///
    /// With a code cache configured ([`crate::Config::cache`]) the compiled code is looked up
    /// there first and stored there after compiling; a cache that cannot be read or written
    /// only costs the compilation.
    ///
    /// # Errors
    /// As [`Module::new`].
    pub fn from_binary(engine: &Engine, wasm: &[u8]) -> Result<Module> {
        Module::from_binary_with_progress(engine, wasm, |_| {})
    }

    /// [`Module::new`], reporting how far compilation has got: `progress` is called after
    /// each function is compiled, from the thread that compiled it (so it must be cheap and
    /// thread-safe). A module found in the code cache is not compiled and reports nothing.
    /// What a command-line tool needs to show a progress line for a large module.
    ///
    /// # Errors
    /// As [`Module::new`].
    pub fn new_with_progress(
        engine: &Engine,
        bytes: impl AsRef<[u8]>,
        progress: impl Fn(CompileProgress) + Sync,
    ) -> Result<Module> {
        let bytes = bytes.as_ref();
        let wasm = wat::parse_bytes(bytes).map_err(|e| Error::InvalidModule {
            message: e.to_string(),
            offset: 0,
        })?;
        Module::from_binary_with_progress(engine, &wasm, progress)
    }

    /// [`Module::from_binary`] with progress reports, as in [`Module::new_with_progress`].
    ///
    /// # Errors
    /// As [`Module::new`].
    pub fn from_binary_with_progress(
        engine: &Engine,
        wasm: &[u8],
        progress: impl Fn(CompileProgress) + Sync,
    ) -> Result<Module> {
        let progress = |done, total| {
            progress(CompileProgress {
                functions_done: done,
                functions_total: total,
            })
        };
        let Some(cache) = engine.config().cache.as_ref() else {
            return Module::compile(engine, wasm, &progress);
        };
        let fingerprint = engine.compiler().code_fingerprint();
        let key = crate::cache::key(&fingerprint, wasm);
        if let Some(module) = cache.load(&key, |bytes| {
            Module::deserialize(engine, bytes)
                .ok()
                // The key is a hash: the entry is this module only if it holds these bytes.
                .filter(|m| *m.inner.wasm == *wasm)
        }) {
            return Ok(module);
        }
        let module = Module::compile(engine, wasm, &progress)?;
        if module.inner.lazy.is_some() {
            // Storing it would compile it all now.
            return Ok(module);
        }
        if let Ok(bytes) = module.serialize() {
            cache.store(&key, &bytes);
        }
        Ok(module)
    }

    fn compile(
        engine: &Engine,
        wasm: &[u8],
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Module> {
        let compiler = engine.compiler();
        let info = compiler
            .validate(wasm)
            .map_err(|e| Error::from_validation(e, &engine.config().features_off()))?;
        if engine.config().lazy_compilation {
            return Module::compile_lazily(engine, info, wasm.into());
        }
        let functions = compiler
            .compile_functions_with_progress(&info, wasm, progress)
            .map_err(Error::from_compile)?;
        let indices: Vec<Option<u32>> = (0..functions.len() as u32)
            .map(|i| Some(info.num_imported_funcs + i))
            .collect();
        let info = Arc::new(info);
        let code = CodeMemory::publish(&functions, &indices, Some(info.clone()))
            .map_err(Error::Message)?;
        Ok(Module::assemble(engine, info, wasm.into(), code))
    }

    /// A module whose functions are compiled on first call (see
    /// [`crate::Config::lazy_compilation`]).
    fn compile_lazily(engine: &Engine, info: ModuleInfo, wasm: Arc<[u8]>) -> Result<Module> {
        let info = Arc::new(info);
        let compile = {
            let (engine, info, wasm) = (engine.clone(), info.clone(), wasm.clone());
            Box::new(move |i: u32, scratch: &mut weft_compiler::CompileScratch| {
                engine
                    .compiler()
                    .compile_function(&info, &wasm, i as usize, scratch)
                    .map_err(|e| e.to_string())
            })
        };
        let config = engine.config();
        let threads = match config.compile_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let lazy = LazyCode::new(
            info.clone(),
            compile,
            threads,
            config.lazy_background_compilation,
        )
        .map_err(Error::ResourceLimit)?;
        let code = lazy.stubs().clone();
        let mut module = Module::assemble(engine, info, wasm, code);
        Arc::get_mut(&mut module.inner)
            .expect("a module just made has one owner")
            .lazy = Some(lazy);
        Ok(module)
    }

    fn assemble(
        engine: &Engine,
        info: Arc<ModuleInfo>,
        wasm: Arc<[u8]>,
        code: Arc<CodeMemory>,
    ) -> Module {
        let type_ids = engine.register_module_types(&info);
        Module {
            inner: Arc::new(ModuleInner {
                engine: engine.clone(),
                info,
                wasm,
                code,
                lazy: None,
                type_ids,
            }),
        }
    }

    /// How many of the module's defined functions are compiled: all of them, unless the
    /// module is compiled lazily ([`crate::Config::lazy_compilation`]) and some have not been
    /// called or reached by the background compilation yet.
    pub fn compiled_functions(&self) -> usize {
        match &self.inner.lazy {
            Some(lazy) => lazy.compiled(),
            None => self.inner.info.num_defined_funcs() as usize,
        }
    }

    /// The compiled module as bytes that [`Module::deserialize`] loads without compiling (what
    /// `weft compile` writes to a `.cwasm` file). The bytes hold the module's Wasm binary, its
    /// machine code, and a header naming the weft build, target, CPU features and settings
    /// they were compiled for; see [`Module::deserialize`] for what loading checks.
    ///
    /// A lazily compiled module ([`crate::Config::lazy_compilation`]) has its functions not
    /// compiled yet compiled first, and serializes like an eagerly compiled one.
    ///
    /// # Errors
    /// [`Error::ResourceLimit`] if a part of the module is 4 GiB or more (the format's limit),
    /// or if a lazily compiled module's remaining functions cannot be compiled.
    pub fn serialize(&self) -> Result<Vec<u8>> {
        let inner = &self.inner;
        let lazy_code;
        let (image, functions) = match &inner.lazy {
            Some(lazy) => {
                lazy_code = lazy.image().map_err(Error::ResourceLimit)?;
                (lazy_code.0, lazy_code.1.as_slice())
            }
            None => (inner.code.image(), inner.code.functions()),
        };
        if inner.wasm.len() > u32::MAX as usize || image.len() > u32::MAX as usize {
            return Err(Error::ResourceLimit(
                "a serialized module's Wasm and code must each be under 4 GiB".into(),
            ));
        }
        let compiler = inner.engine.compiler().code_fingerprint();
        Ok(crate::serialize::encode(
            &fingerprint(&compiler),
            &inner.wasm,
            &image,
            functions,
        ))
    }

    /// Loads a module written by [`Module::serialize`] (or `weft compile`) without compiling
    /// it: the code is copied into executable memory and relocated for its new address.
    ///
    /// # Trust
    ///
    /// Loading runs machine code from `bytes`, so it trusts whoever produced them, as running
    /// a native program does. The header and checksum checks below catch accidents — a file
    /// from another weft build or machine, or one damaged on the way — not an attacker: a
    /// crafted file can pass them. Load only files you made or would run a program from.
    ///
    /// # Errors
    /// [`Error::Deserialize`] with a [`crate::DeserializeError`] saying why, if the bytes are
    /// not a serialized module, come from another weft build, target, CPU feature set or
    /// code-changing configuration (memory mode, multi-memory, epoch interruption, fuel) than
    /// this engine's, or are truncated or fail the checksum. Nothing is executed before all
    /// checks pass.
    pub fn deserialize(engine: &Engine, bytes: &[u8]) -> Result<Module> {
        let compiler = engine.compiler().code_fingerprint();
        let parts =
            crate::serialize::decode(bytes, &fingerprint(&compiler)).map_err(Error::Deserialize)?;
        let malformed = |what: String| Error::Deserialize(DeserializeError::Malformed(what));
        // The binary was validated when it was compiled, by a build that the header says is
        // this one; parsing its module-level sections again is cheap.
        let info = weft_compiler::parse_module(parts.wasm).map_err(|e| malformed(e.to_string()))?;
        // Instantiation finds defined function `i`'s code at position `i` of the table.
        let expected = (0..info.num_defined_funcs()).map(|i| Some(info.num_imported_funcs + i));
        if !parts.functions.iter().map(|f| f.func_index).eq(expected) {
            return Err(malformed(
                "the code does not hold the module's functions in order".into(),
            ));
        }
        let info = Arc::new(info);
        let code = CodeMemory::load(parts.image, parts.functions, Some(info.clone()))
            .map_err(malformed)?;
        Ok(Module::assemble(engine, info, parts.wasm.into(), code))
    }

    /// Reads a file written by [`Module::serialize`] (a `.cwasm`) and loads it (see
    /// [`Module::deserialize`], whose trust model applies).
    ///
    /// # Errors
    /// [`Error::Host`] with the `io::Error` if the file cannot be read; otherwise as
    /// [`Module::deserialize`].
    pub fn deserialize_file(engine: &Engine, path: impl AsRef<std::path::Path>) -> Result<Module> {
        let bytes = std::fs::read(path)?;
        Module::deserialize(engine, &bytes)
    }

    /// Checks that `wasm` is a valid module without compiling it.
    ///
    /// # Errors
    /// As [`Module::new`].
    pub fn validate(engine: &Engine, wasm: &[u8]) -> Result<()> {
        engine
            .compiler()
            .validate(wasm)
            .map_err(|e| Error::from_validation(e, &engine.config().features_off()))?;
        Ok(())
    }

    /// The engine that compiled the module.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The module's name from its name section.
    pub fn name(&self) -> Option<&str> {
        self.inner.info.name.as_deref()
    }

    /// The imports, in order: (module, name, type).
    pub fn imports(&self) -> impl ExactSizeIterator<Item = (&str, &str, ExternType)> + '_ {
        self.inner.info.imports.iter().map(|i| {
            (
                i.module.as_str(),
                i.name.as_str(),
                self.entity_type(i.index),
            )
        })
    }

    /// The exports, in order: (name, type).
    pub fn exports(&self) -> impl ExactSizeIterator<Item = (&str, ExternType)> + '_ {
        self.inner
            .info
            .exports
            .iter()
            .map(|(name, index)| (name.as_str(), self.entity_type(*index)))
    }

    pub(crate) fn entity_type(&self, index: EntityIndex) -> ExternType {
        let info = &self.inner.info;
        match index {
            EntityIndex::Func(f) => ExternType::Func(
                self.inner
                    .engine
                    .func_type(self.inner.type_ids[info.funcs[f as usize] as usize]),
            ),
            EntityIndex::Table(t) => {
                ExternType::Table(table_type(&info.tables[t as usize], &self.inner.type_ids))
            }
            EntityIndex::Memory(m) => ExternType::Memory(memory_type(&info.memories[m as usize])),
            EntityIndex::Global(g) => ExternType::Global(global_type(
                &info.globals[g as usize].ty,
                &self.inner.type_ids,
            )),
            EntityIndex::Tag(t) => ExternType::Tag(crate::TagType::new(
                self.inner
                    .engine
                    .func_type(self.inner.type_ids[info.tags[t as usize] as usize]),
            )),
        }
    }
}

/// The API type of a module's table (`type_ids`: the engine id of each module type).
pub(crate) fn table_type(t: &weft_compiler::wasmparser::TableType, type_ids: &[u32]) -> TableType {
    TableType {
        element: ValType::Ref(RefType::from_wasm(t.element_type, type_ids)),
        minimum: t.initial,
        maximum: t.maximum,
        is_64: t.table64,
    }
}

pub(crate) fn memory_type(m: &weft_compiler::wasmparser::MemoryType) -> MemoryType {
    MemoryType {
        minimum: m.initial,
        maximum: m.maximum,
        is_64: m.memory64,
    }
}

/// The API type of a module's global (`type_ids` as for [`table_type`]).
pub(crate) fn global_type(
    g: &weft_compiler::wasmparser::GlobalType,
    type_ids: &[u32],
) -> GlobalType {
    GlobalType {
        content: ValType::from_wasm(g.content_type, type_ids),
        mutability: if g.mutable {
            Mutability::Var
        } else {
            Mutability::Const
        },
    }
}
