//! Exception handling as the host sees it: [`Tag`]s and their [`TagType`]s, exception
//! references ([`ExnRef`]), and [`WasmException`], the error an exception becomes when it
//! leaves Wasm.
//!
//! # The rule at host frames
//!
//! An exception never crosses a host frame as an exception. When no Wasm frame between the
//! throw and the host's entry into Wasm catches it, the call returns
//! [`Error::Exception`](crate::Error::Exception) with the tag and payload (from
//! [`Func::call`](crate::Func::call), typed calls and promising calls alike). A host function
//! that returns such an error — the one it got from a nested call, or a new one made with
//! [`WasmException::new`] — throws that exception into its Wasm caller, where a `try_table`
//! may catch it. So in host → Wasm → host → Wasm, an exception of the inner Wasm that the
//! host function passes on with `?` continues to the outer Wasm; one the host function handles
//! does not. Any other error of a host function is a trap, as before (an exception of another
//! store too).

use std::fmt;

use crate::error::{Error, Result};
use crate::store::{AsContext, AsContextMut, StoreId, StoreOpaque};
use crate::types::{FuncType, ValType};
use crate::values::Val;
use crate::vm::ValRaw;

/// The type of an exception tag: the types of its payload (a function type with no
/// results, as Wasm writes it).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TagType {
    ty: FuncType,
}

impl TagType {
    /// The type of tags whose payload has `ty`'s parameter types (`ty` has no results).
    ///
    /// # Panics
    /// If `ty` has results.
    pub fn new(ty: FuncType) -> TagType {
        assert!(ty.results().is_empty(), "a tag's type has no results");
        TagType { ty }
    }

    /// The function type (no results) the tag's payload is described by.
    pub fn ty(&self) -> &FuncType {
        &self.ty
    }

    /// The payload's types.
    pub fn params(&self) -> &[ValType] {
        self.ty.params()
    }
}

impl fmt::Display for TagType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(tag {})", self.ty)
    }
}

/// An exception tag of a store: defined by an instance or by the host ([`Tag::new`]). Two
/// tags are the same tag only if they are the same handle; an exception is caught by the
/// clauses that name its tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tag {
    pub(crate) store: StoreId,
    pub(crate) index: u32,
}

impl Tag {
    /// A new tag of type `ty` in `store`.
    ///
    /// # Errors
    /// None today; a `Result` as in wasmtime, for limits to come.
    pub fn new(mut store: impl AsContextMut, ty: &TagType) -> Result<Tag> {
        let store = &mut store.as_context_mut().opaque;
        let id = store.engine.func_type_id(ty.ty()).0;
        Ok(store.new_tag(ty.clone(), id))
    }

    /// The tag's type.
    ///
    /// # Panics
    /// If `store` is not the tag's store.
    pub fn ty(&self, store: impl AsContext) -> TagType {
        let store = &store.as_context().opaque;
        store.check(self.store);
        store.tags[self.index as usize].0.clone()
    }
}

/// A reference to an exception object of a store (`exnref`): what `catch_ref` hands Wasm
/// and `throw_ref` throws again. The store keeps the object as long as it lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExnRef {
    pub(crate) store: StoreId,
    pub(crate) exn: usize,
}

impl ExnRef {
    /// A new exception of `tag` with `payload`.
    ///
    /// # Errors
    /// `TypeMismatch` if the payload does not have the tag's types.
    ///
    /// # Panics
    /// If `tag` or a reference in the payload belongs to another store.
    pub fn new(mut store: impl AsContextMut, tag: &Tag, payload: &[Val]) -> Result<ExnRef> {
        store.as_context_mut().opaque.new_exception(*tag, payload)
    }

    /// The exception's tag.
    ///
    /// # Panics
    /// If `store` is not the exception's store.
    pub fn tag(&self, store: impl AsContext) -> Tag {
        let store = &store.as_context().opaque;
        store.check(self.store);
        store.exception_parts(self.exn).0
    }

    /// The exception's payload.
    ///
    /// # Panics
    /// If `store` is not the exception's store.
    pub fn payload(&self, mut store: impl AsContextMut) -> Vec<Val> {
        let store = &mut store.as_context_mut().opaque;
        store.check(self.store);
        store.exception_payload(self.exn)
    }
}

/// A Wasm exception outside Wasm: one that no Wasm frame caught (in
/// [`Error::Exception`](crate::Error::Exception)), or one a host function throws into its
/// Wasm caller by returning it (see the module docs for the rule).
#[derive(Clone, Debug, PartialEq)]
pub struct WasmException {
    exn: ExnRef,
    tag: Tag,
    payload: Vec<Val>,
}

impl WasmException {
    /// A new exception of `tag` with `payload`, to return from a host function (or to convert
    /// into an [`Error`] with `?`).
    ///
    /// # Errors
    /// `TypeMismatch` if the payload does not have the tag's types.
    ///
    /// # Panics
    /// If `tag` or a reference in the payload belongs to another store.
    pub fn new(mut store: impl AsContextMut, tag: &Tag, payload: &[Val]) -> Result<Self> {
        let exn = ExnRef::new(&mut store, tag, payload)?;
        Ok(WasmException {
            exn,
            tag: *tag,
            payload: payload.to_vec(),
        })
    }

    /// The exception `exn` refers to, to throw again.
    ///
    /// # Panics
    /// If `exn` belongs to another store.
    pub fn from_exnref(mut store: impl AsContextMut, exn: ExnRef) -> Self {
        let store = &mut store.as_context_mut().opaque;
        store.check(exn.store);
        WasmException::of(store, exn.exn)
    }

    pub(crate) fn of(store: &mut StoreOpaque, exn: usize) -> Self {
        WasmException {
            exn: ExnRef {
                store: store.id,
                exn,
            },
            tag: store.exception_parts(exn).0,
            payload: store.exception_payload(exn),
        }
    }

    /// The exception's tag.
    pub fn tag(&self) -> Tag {
        self.tag
    }

    /// The payload values.
    pub fn payload(&self) -> &[Val] {
        &self.payload
    }

    /// The exception object itself (what `catch_ref` would give Wasm).
    pub fn exnref(&self) -> ExnRef {
        self.exn
    }

    /// The raw exnref, for the VM layer, if it belongs to the store whose id is `store_id`.
    pub(crate) fn raw_in(&self, store_id: u64) -> Option<usize> {
        (self.exn.store.as_u64() == store_id).then_some(self.exn.exn)
    }
}

impl From<WasmException> for Error {
    fn from(e: WasmException) -> Error {
        Error::Exception(Box::new(e))
    }
}

impl fmt::Display for WasmException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uncaught Wasm exception (tag {}", self.tag.index)?;
        if !self.payload.is_empty() {
            f.write_str(", payload")?;
            for (i, v) in self.payload.iter().enumerate() {
                write!(f, "{}{v:?}", if i == 0 { " " } else { ", " })?;
            }
        }
        f.write_str(")")
    }
}

impl StoreOpaque {
    /// A new tag of type `ty`, whose engine type id is `type_id`.
    pub(crate) fn new_tag(&mut self, ty: TagType, type_id: u32) -> Tag {
        self.tags.push((ty, type_id));
        Tag {
            store: self.id,
            index: self.tags.len() as u32 - 1,
        }
    }

    pub(crate) fn new_exception(&mut self, tag: Tag, payload: &[Val]) -> Result<ExnRef> {
        self.check(tag.store);
        let ty = self.tags[tag.index as usize].0.clone();
        if ty.params().len() != payload.len()
            || !payload
                .iter()
                .zip(ty.params())
                .all(|(v, t)| v.matches_ty_in(self, t))
        {
            return Err(Error::TypeMismatch(format!(
                "the payload of a {ty} exception has types {:?}",
                ty.params()
            )));
        }
        let raw = payload
            .iter()
            .map(|v| v.to_raw(self).map(|r| r.get_u128()))
            .collect::<Result<Vec<u128>>>()?;
        let heap = self.vm.exceptions_mut();
        let exn = heap.allocate(tag.index, raw.len());
        heap.payload_mut(exn)
            .expect("just allocated")
            .copy_from_slice(&raw);
        Ok(ExnRef {
            store: self.id,
            exn,
        })
    }

    /// The tag and raw payload of exception `exn` of this store.
    fn exception_parts(&self, exn: usize) -> (Tag, Vec<u128>) {
        let (tag, values) = self
            .vm
            .exceptions()
            .get(exn)
            .expect("an exnref of this store");
        (
            Tag {
                store: self.id,
                index: tag,
            },
            values.to_vec(),
        )
    }

    pub(crate) fn exception_payload(&mut self, exn: usize) -> Vec<Val> {
        let (tag, raw) = self.exception_parts(exn);
        let ty = self.tags[tag.index as usize].0.clone();
        ty.params()
            .iter()
            .zip(raw)
            .map(|(&t, r)| Val::from_raw(ValRaw::from_u128(r), t, self))
            .collect()
    }
}
