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
//!
//! # What the store keeps
//!
//! Exception objects are freed without a collector (the invariant is in
//! `vm::exception`): one caught by `catch`/`catch_all` is freed once its payload is read, and
//! one that leaves Wasm uncaught is freed when it becomes a [`WasmException`] (which owns its
//! tag and payload; [`WasmException::exnref`] is then `None`), unless a reference to it
//! escaped. References escape, and their objects then live until the store is dropped, when
//! `catch_ref`/`catch_all_ref` hands the exnref to Wasm and when the host gets an [`ExnRef`]
//! ([`ExnRef::new`], an exnref result, parameter or payload value). A [`WasmException::new`]
//! makes no object until a host function throws it; Wasm catching that with `catch` frees it
//! again. [`Store::exception_count`](crate::Store::exception_count) is the number held.

use std::fmt;

use crate::error::{Error, Result};
use crate::store::{AsContext, AsContextMut, StoreId, StoreOpaque};
use crate::types::{FuncType, ValType};
use crate::values::Val;
use crate::vm::ValRaw;
use crate::vm::exception::ExceptionHeap;

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
/// and `throw_ref` throws again. The store keeps the object until the store is dropped
/// (a handle can be copied freely, so the store cannot tell when the last one goes).
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
        let store = &mut store.as_context_mut().opaque;
        let raw = store.exception_raw_payload(*tag, payload)?;
        let exn = store.vm.exceptions_mut().allocate_with(tag.index, &raw);
        store.vm.exceptions_mut().pin(exn);
        Ok(ExnRef {
            store: store.id,
            exn,
        })
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
    /// The object, if it is pinned (see the module docs); otherwise a throw makes a new one.
    exn: Option<ExnRef>,
    tag: Tag,
    payload: Vec<Val>,
    /// The payload as Wasm stores it.
    raw: Vec<u128>,
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
        let raw = store
            .as_context_mut()
            .opaque
            .exception_raw_payload(*tag, payload)?;
        Ok(WasmException {
            exn: None,
            tag: *tag,
            payload: payload.to_vec(),
            raw,
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

    /// The exception `exn` of `store`, an in-flight reference or a pinned one: an unpinned
    /// object is freed (this was its only reference) and the exception owns its contents.
    pub(crate) fn of(store: &mut StoreOpaque, exn: usize) -> Self {
        let (tag, raw) = store.exception_parts(exn);
        let payload = store.exception_payload(exn);
        let heap = store.vm.exceptions_mut();
        let exn = if heap.is_pinned(exn) {
            Some(ExnRef {
                store: store.id,
                exn,
            })
        } else {
            heap.release(exn);
            None
        };
        WasmException {
            exn,
            tag,
            payload,
            raw,
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

    /// The exception object itself (what `catch_ref` would give Wasm), if it is kept: an
    /// exception thrown again from an [`ExnRef`] (Wasm's `throw_ref` of a `catch_ref`'s
    /// exnref, [`WasmException::from_exnref`]). `None` when no reference to the object
    /// existed: the store freed it when it left Wasm (and [`WasmException::new`] makes none
    /// until it is thrown); the tag and payload are here.
    pub fn exnref(&self) -> Option<ExnRef> {
        self.exn
    }

    /// The raw exnref to throw into Wasm of the store whose id is `store_id` and exception
    /// heap is `heap`, if the exception belongs to that store: its pinned object, or a new
    /// unpinned one (the throw's only reference).
    pub(crate) fn raw_in(&self, store_id: u64, heap: &mut ExceptionHeap) -> Option<usize> {
        if self.tag.store.as_u64() != store_id {
            return None;
        }
        Some(match self.exn {
            Some(exn) => exn.exn,
            None => heap.allocate_with(self.tag.index, &self.raw),
        })
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

    /// `payload` as Wasm stores an exception of `tag`'s.
    fn exception_raw_payload(&mut self, tag: Tag, payload: &[Val]) -> Result<Vec<u128>> {
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
        payload
            .iter()
            .map(|v| v.to_raw(self).map(|r| r.get_u128()))
            .collect()
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
