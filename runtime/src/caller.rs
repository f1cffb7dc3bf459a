//! `Caller`: what a host function sees of the store when Wasm calls it.

use crate::externals::Extern;
use crate::store::{AsContext, AsContextMut, StoreContext};

/// What a host function gets when Wasm calls it: the store, and the calling instance.
pub struct Caller<'a, T: 'static> {
    pub(crate) store: &'a mut StoreContext<T>,
    pub(crate) instance: Option<usize>,
}

impl<'a, T: 'static> Caller<'a, T> {
    pub(crate) fn new(store: &'a mut StoreContext<T>, instance: Option<usize>) -> Self {
        Caller { store, instance }
    }

    /// The host's data in the store.
    pub fn data(&self) -> &T {
        self.store.data()
    }

    /// The host's data in the store, mutably.
    pub fn data_mut(&mut self) -> &mut T {
        self.store.data_mut()
    }

    /// The engine of the store.
    pub fn engine(&self) -> &crate::Engine {
        self.store.engine()
    }

    pub(crate) fn store_id(&self) -> u64 {
        self.store.opaque.id.as_u64()
    }

    pub(crate) fn instance_index(&self) -> Option<usize> {
        self.instance
    }

    pub(crate) fn as_store_context(&self) -> &StoreContext<T> {
        self.store
    }

    /// An export of the calling instance (typically its memory), or `None` if there is no
    /// such export or the caller is the host.
    pub fn get_export(&mut self, name: &str) -> Option<Extern> {
        let instance = self.instance?;
        crate::instance::Instance::from_index(self.store.opaque.id, instance)
            .get_export(&mut *self.store, name)
    }
}

impl<T: 'static> AsContext for Caller<'_, T> {
    type Data = T;
    fn as_context(&self) -> &StoreContext<T> {
        self.store
    }
}

impl<T: 'static> AsContextMut for Caller<'_, T> {
    fn as_context_mut(&mut self) -> &mut StoreContext<T> {
        self.store
    }
}
