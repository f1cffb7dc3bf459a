//! `Linker<T>`: named definitions that satisfy a module's imports.

use std::collections::HashMap;
use std::future::Future;

use crate::caller::Caller;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::externals::Extern;
use crate::func::{Func, HostCallback, dynamic_callback};
use crate::instance::Instance;
use crate::module::Module;
use crate::store::AsContextMut;
use crate::typed::IntoFunc;
use crate::types::FuncType;
use crate::values::Val;
use weft_environ::module_info::EntityIndex;

enum Definition<T: 'static> {
    /// An item of one particular store.
    Extern(Extern),
    /// A host function, created in each store that instantiates with it.
    HostFunc(HostDefinition<T>),
}

impl<T> Clone for Definition<T> {
    fn clone(&self) -> Self {
        match self {
            Definition::Extern(e) => Definition::Extern(*e),
            Definition::HostFunc(f) => Definition::HostFunc(f.clone()),
        }
    }
}

/// A host function as the linker keeps it: its engine type id is found once, when it is
/// defined, so instantiating matches and creates it without hashing its type again.
struct HostDefinition<T: 'static> {
    type_id: u32,
    callback: HostCallback<T>,
}

impl<T> Clone for HostDefinition<T> {
    fn clone(&self) -> Self {
        HostDefinition {
            type_id: self.type_id,
            callback: self.callback.clone(),
        }
    }
}

impl<T: 'static> HostDefinition<T> {
    /// The function, made in `store`.
    fn make(&self, mut store: impl AsContextMut<Data = T>) -> Result<Func> {
        Func::try_from_type_id(store.as_context_mut(), self.type_id, self.callback.clone())
    }
}

/// Resolves imports by `(module, name)`.
pub struct Linker<T: 'static> {
    engine: Engine,
    /// By module name, then by name: looked up with borrowed names, so resolving an import
    /// allocates nothing.
    definitions: HashMap<String, HashMap<String, Definition<T>>>,
    allow_shadowing: bool,
}

impl<T: 'static> Linker<T> {
    /// An empty linker for modules of `engine`.
    pub fn new(engine: &Engine) -> Self {
        Linker {
            engine: engine.clone(),
            definitions: HashMap::new(),
            allow_shadowing: false,
        }
    }

    /// The engine the linker's modules belong to.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Whether a later definition of the same name replaces an earlier one (default: no, it
    /// is an error).
    pub fn allow_shadowing(&mut self, allow: bool) -> &mut Self {
        self.allow_shadowing = allow;
        self
    }

    fn insert(&mut self, module: &str, name: &str, definition: Definition<T>) -> Result<()> {
        let names = match self.definitions.get_mut(module) {
            Some(names) => names,
            None => self.definitions.entry(module.to_string()).or_default(),
        };
        if !self.allow_shadowing && names.contains_key(name) {
            return Err(Error::msg(format!("`{module}::{name}` is already defined")));
        }
        names.insert(name.to_string(), definition);
        Ok(())
    }

    fn insert_host(
        &mut self,
        module: &str,
        name: &str,
        ty: &FuncType,
        callback: HostCallback<T>,
    ) -> Result<()> {
        let type_id = self.engine.type_id(ty);
        self.insert(
            module,
            name,
            Definition::HostFunc(HostDefinition { type_id, callback }),
        )
    }

    fn definition(&self, module: &str, name: &str) -> Option<&Definition<T>> {
        self.definitions.get(module)?.get(name)
    }

    /// Defines `module::name` as `item`, an item of `store`.
    ///
    /// # Errors
    /// If the name is taken and shadowing is off.
    pub fn define(
        &mut self,
        _store: impl AsContextMut<Data = T>,
        module: &str,
        name: &str,
        item: impl Into<Extern>,
    ) -> Result<&mut Self> {
        self.insert(module, name, Definition::Extern(item.into()))?;
        Ok(self)
    }

    /// Defines a host function from a typed closure (see [`Func::wrap`]).
    ///
    /// # Errors
    /// If the name is taken and shadowing is off.
    pub fn func_wrap<Params, Results>(
        &mut self,
        module: &str,
        name: &str,
        f: impl IntoFunc<T, Params, Results>,
    ) -> Result<&mut Self> {
        let (ty, callback) = f.into_func();
        self.insert_host(module, name, &ty, callback)?;
        Ok(self)
    }

    /// Defines a *suspending import*: an async host function. `f` gets the [`Caller`] and the
    /// Wasm arguments synchronously and returns a future of the results (or of a `Result` of
    /// them). When the future is pending, the promising call that reached the import is
    /// switched out and its `call_async` future returns `Pending`; when woken, weft switches
    /// back in and polls again; when ready, the import returns to Wasm like a synchronous one.
    ///
    /// The future must be `'static`, not borrowing the store: while it is pending, other
    /// promising calls may run on the same store (see [`crate::SharedStore`]). It can still use
    /// the store during its polls through [`Caller::store_access`].
    ///
    /// Reached from a synchronous call, the import traps with
    /// [`crate::Trap::SuspendOutsidePromisingCall`] without calling `f`.
    ///
    /// # Errors
    /// If the name is taken and shadowing is off.
    pub fn func_wrap_async<Params, Results>(
        &mut self,
        module: &str,
        name: &str,
        f: impl crate::IntoAsyncFunc<T, Params, Results>,
    ) -> Result<&mut Self> {
        let (ty, callback) = f.into_async_func();
        self.insert_host(module, name, &ty, callback)?;
        Ok(self)
    }

    /// Resolves `module`'s imports and instantiates it like [`Linker::instantiate`], but runs
    /// its start function as a promising call, so it may reach suspending imports.
    ///
    /// # Errors
    /// As [`Linker::instantiate`].
    pub async fn instantiate_async<S: crate::AsyncStore<Data = T>>(
        &self,
        mut store: S,
        module: &Module,
    ) -> Result<Instance> {
        let (instance, start) = crate::promising::with_store(&mut store, |store| {
            let imports = self.resolve_imports(&mut *store, module)?;
            Instance::new_without_start(store, module, &imports)
        })
        .await?;
        if let Some(start) = start {
            start.call_async(store, &[], &mut []).await?;
        }
        Ok(instance)
    }

    /// Defines a host function of type `ty` on dynamically typed values (see [`Func::new`]).
    ///
    /// # Errors
    /// If the name is taken and shadowing is off.
    pub fn func_new(
        &mut self,
        module: &str,
        name: &str,
        ty: FuncType,
        f: impl Fn(Caller<'_, T>, &[Val], &mut [Val]) -> Result<()> + Send + Sync + 'static,
    ) -> Result<&mut Self> {
        let callback = dynamic_callback(ty.clone(), f);
        self.insert_host(module, name, &ty, callback)?;
        Ok(self)
    }

    /// Defines an untyped suspending import of type `ty`: the dynamically typed counterpart
    /// of [`Linker::func_wrap_async`]. `f` gets the [`Caller`] and the arguments (one [`Val`]
    /// per parameter type) synchronously, and returns a `'static` future of the results, one
    /// `Val` per result type. While the future is pending the promising call is switched out;
    /// during its polls it may use the store through [`Caller::store_access`].
    ///
    /// Results of the wrong number or types make the call fail with [`Error::TypeMismatch`].
    /// Reached from a synchronous call, the import traps with
    /// [`crate::Trap::SuspendOutsidePromisingCall`] without calling `f`.
    ///
    /// # Errors
    /// If the name is taken and shadowing is off.
    pub fn func_new_async<F, Fut>(
        &mut self,
        module: &str,
        name: &str,
        ty: FuncType,
        f: F,
    ) -> Result<&mut Self>
    where
        F: Fn(Caller<'_, T>, &[Val]) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Val>>> + Send + 'static,
    {
        let callback = crate::promising::dynamic_async_callback(ty.clone(), f);
        self.insert_host(module, name, &ty, callback)?;
        Ok(self)
    }

    /// Defines every export of `instance` under `module`.
    ///
    /// # Errors
    /// If a name is taken and shadowing is off.
    pub fn instance(
        &mut self,
        mut store: impl AsContextMut<Data = T>,
        module: &str,
        instance: Instance,
    ) -> Result<&mut Self> {
        for (name, item) in instance.exports(&mut store) {
            self.insert(module, &name, Definition::Extern(item))?;
        }
        Ok(self)
    }

    /// The definition of `module::name` as an item of `store`.
    ///
    /// `None` also if it is a host function whose trampoline cannot be compiled or mapped (no
    /// code memory left); [`Self::instantiate`] reports that as an error.
    pub fn get(
        &self,
        store: impl AsContextMut<Data = T>,
        module: &str,
        name: &str,
    ) -> Option<Extern> {
        self.try_get(store, module, name).ok().flatten()
    }

    /// [`Self::get`], with the failure to make a host function as an error.
    fn try_get(
        &self,
        store: impl AsContextMut<Data = T>,
        module: &str,
        name: &str,
    ) -> Result<Option<Extern>> {
        self.definition(module, name)
            .map(|definition| definition.make(store))
            .transpose()
    }

    /// Resolves `module`'s imports and instantiates it (running its start function).
    ///
    /// # Errors
    /// [`Error::UnknownImport`] for an import with no definition; otherwise as
    /// [`Instance::new`].
    pub fn instantiate(
        &self,
        mut store: impl AsContextMut<Data = T>,
        module: &Module,
    ) -> Result<Instance> {
        let imports = self.resolve_imports(&mut store, module)?;
        Instance::new(store, module, &imports)
    }

    pub(crate) fn resolve_imports(
        &self,
        mut store: impl AsContextMut<Data = T>,
        module: &Module,
    ) -> Result<Vec<Extern>> {
        self.resolve(module)
            .map(|definition| definition?.make(&mut store))
            .collect()
    }

    /// The definitions of `module`'s imports, in order, with host functions' types checked.
    fn resolve<'a>(
        &'a self,
        module: &'a Module,
    ) -> impl Iterator<Item = Result<&'a Definition<T>>> + 'a {
        let info = &module.inner.info;
        info.imports.iter().map(move |import| {
            let (m, n) = (import.module.as_str(), import.name.as_str());
            let definition = self.definition(m, n).ok_or_else(|| Error::UnknownImport {
                module: m.to_string(),
                name: n.to_string(),
            })?;
            // A host function must match the import exactly; the general check happens in
            // `Instance::new`, this one only improves the message.
            if let (EntityIndex::Func(f), Definition::HostFunc(host)) = (import.index, definition) {
                let expected = module.inner.type_ids[info.funcs[f as usize] as usize];
                if expected != host.type_id {
                    return Err(Error::IncompatibleImport {
                        module: m.to_string(),
                        name: n.to_string(),
                        reason: format!(
                            "expected {}, found {}",
                            self.engine.func_type(expected),
                            self.engine.func_type(host.type_id)
                        ),
                    });
                }
            }
            Ok(definition)
        })
    }

    /// Resolves `module`'s imports once, for many instantiations: each
    /// [`InstancePre::instantiate`] then only makes the host functions in its store and
    /// instantiates, without looking names up or matching function types again.
    ///
    /// # Errors
    /// [`Error::UnknownImport`] for an import with no definition, [`Error::IncompatibleImport`]
    /// for a host function of the wrong type, or if `module` belongs to another engine.
    pub fn instantiate_pre(&self, module: &Module) -> Result<InstancePre<T>> {
        if !Engine::same(&self.engine, module.engine()) {
            return Err(Error::msg("module and linker belong to different engines"));
        }
        let definitions = self.resolve(module).collect::<Result<Vec<_>>>()?;
        // Compile the host functions' trampolines now rather than in the first instantiation.
        for definition in &definitions {
            if let Definition::HostFunc(host) = definition {
                self.engine.trampolines(host.type_id)?;
            }
        }
        Ok(InstancePre {
            module: module.clone(),
            definitions: definitions.into_iter().cloned().collect(),
        })
    }
}

impl<T: 'static> Definition<T> {
    /// The item, made in `store` if it is a host function.
    fn make(&self, store: impl AsContextMut<Data = T>) -> Result<Extern> {
        match self {
            Definition::Extern(e) => Ok(*e),
            Definition::HostFunc(f) => Ok(Extern::Func(f.make(store)?)),
        }
    }
}

/// A module with its imports resolved by a [`Linker`] ([`Linker::instantiate_pre`]): what a
/// host that instantiates the same module once per request keeps, so that each
/// instantiation does only the per-store work.
///
/// Items the linker defined with [`Linker::define`] or [`Linker::instance`] belong to the
/// store they came from: instantiating in another store panics, as using them there would.
/// Host functions are made anew in each store.
pub struct InstancePre<T: 'static> {
    module: Module,
    definitions: std::sync::Arc<[Definition<T>]>,
}

impl<T: 'static> Clone for InstancePre<T> {
    fn clone(&self) -> Self {
        InstancePre {
            module: self.module.clone(),
            definitions: self.definitions.clone(),
        }
    }
}

impl<T: 'static> InstancePre<T> {
    /// The module this instantiates.
    pub fn module(&self) -> &Module {
        &self.module
    }

    fn imports(&self, mut store: impl AsContextMut<Data = T>) -> Result<Vec<Extern>> {
        self.definitions
            .iter()
            .map(|item| item.make(&mut store))
            .collect()
    }

    /// Instantiates the module in `store` (running its start function), as
    /// [`Linker::instantiate`] would have.
    ///
    /// # Errors
    /// As [`Instance::new`].
    pub fn instantiate(&self, mut store: impl AsContextMut<Data = T>) -> Result<Instance> {
        let imports = self.imports(&mut store)?;
        Instance::new(store, &self.module, &imports)
    }

    /// Instantiates the module in `store`, running its start function as a promising call,
    /// as [`Linker::instantiate_async`] would have.
    ///
    /// # Errors
    /// As [`Instance::new`].
    pub async fn instantiate_async<S: crate::AsyncStore<Data = T>>(
        &self,
        mut store: S,
    ) -> Result<Instance> {
        let (instance, start) = crate::promising::with_store(&mut store, |store| {
            let imports = self.imports(&mut *store)?;
            Instance::new_without_start(store, &self.module, &imports)
        })
        .await?;
        if let Some(start) = start {
            start.call_async(store, &[], &mut []).await?;
        }
        Ok(instance)
    }
}
