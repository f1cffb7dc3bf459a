//! `Val`, a dynamically typed Wasm value, and `ExternRef`, an opaque host reference.

use std::any::Any;

use crate::func::Func;
use crate::store::{AsContext, AsContextMut, StoreId, StoreOpaque};
use crate::types::{HeapType, ValType};
use crate::vm::ValRaw;

/// A Wasm value. Floats are kept as bits so NaN payloads survive.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Val {
    /// A 32-bit integer.
    I32(i32),
    /// A 64-bit integer.
    I64(i64),
    /// The bits of an `f32`.
    F32(u32),
    /// The bits of an `f64`.
    F64(u64),
    /// A 128-bit vector: lane 0 in the least significant bits.
    V128(u128),
    /// A function reference, or null.
    FuncRef(Option<Func>),
    /// An external reference, or null.
    ExternRef(Option<ExternRef>),
    /// An exception reference, or null.
    ExnRef(Option<crate::ExnRef>),
}

impl Val {
    /// The value's type, as far as the value alone tells it: for a reference, `funcref` or
    /// `externref` (whether a function reference also has a typed reference type depends on
    /// the function's type, which [`Val::matches_ty`] looks up in the store).
    pub fn ty(&self) -> ValType {
        match self {
            Val::I32(_) => ValType::I32,
            Val::I64(_) => ValType::I64,
            Val::F32(_) => ValType::F32,
            Val::F64(_) => ValType::F64,
            Val::V128(_) => ValType::V128,
            Val::FuncRef(_) => ValType::FUNCREF,
            Val::ExternRef(_) => ValType::EXTERNREF,
            Val::ExnRef(_) => ValType::EXNREF,
        }
    }

    /// Whether this value may be used where a value of type `ty` is expected: a number of
    /// that type, null for a nullable reference type, a function for `func` (or for a typed
    /// reference to its own type), a host reference for `extern`.
    ///
    /// # Panics
    /// If the value is a function of another store.
    pub fn matches_ty(&self, store: impl AsContext, ty: &ValType) -> bool {
        self.matches_ty_in(&store.as_context().opaque, ty)
    }

    pub(crate) fn matches_ty_in(&self, store: &StoreOpaque, ty: &ValType) -> bool {
        let ValType::Ref(expected) = ty else {
            return self.ty() == *ty;
        };
        match (self, expected.heap_type) {
            (Val::FuncRef(None), HeapType::Func | HeapType::ConcreteFunc(_))
            | (Val::ExternRef(None), HeapType::Extern)
            | (Val::ExnRef(None), HeapType::Exn | HeapType::NoExn) => expected.nullable,
            (Val::FuncRef(Some(_)), HeapType::Func)
            | (Val::ExternRef(Some(_)), HeapType::Extern)
            | (Val::ExnRef(Some(_)), HeapType::Exn) => true,
            (Val::FuncRef(Some(f)), HeapType::ConcreteFunc(id)) => {
                store.check(f.store);
                store.funcs[f.index].type_id == id.0
            }
            _ => false,
        }
    }

    /// The zero value of `ty`, null for a nullable reference type. A non-nullable reference
    /// type has no default: it gets the null of its kind too, which does not match `ty`
    /// (useful only as a placeholder a call overwrites with its results).
    pub fn default_for(ty: ValType) -> Val {
        match ty {
            ValType::I32 => Val::I32(0),
            ValType::I64 => Val::I64(0),
            ValType::F32 => Val::F32(0),
            ValType::F64 => Val::F64(0),
            ValType::V128 => Val::V128(0),
            ValType::Ref(r) if r.heap_type == HeapType::Extern => Val::ExternRef(None),
            ValType::Ref(r) if r.heap_type.is_exn() => Val::ExnRef(None),
            ValType::Ref(_) => Val::FuncRef(None),
        }
    }

    /// The value, if it is an `i32`.
    pub fn i32(&self) -> Option<i32> {
        if let Val::I32(v) = self {
            Some(*v)
        } else {
            None
        }
    }
    /// The value, if it is an `i64`.
    pub fn i64(&self) -> Option<i64> {
        if let Val::I64(v) = self {
            Some(*v)
        } else {
            None
        }
    }
    /// The value, if it is an `f32`.
    pub fn f32(&self) -> Option<f32> {
        if let Val::F32(v) = self {
            Some(f32::from_bits(*v))
        } else {
            None
        }
    }
    /// The value, if it is an `f64`.
    pub fn f64(&self) -> Option<f64> {
        if let Val::F64(v) = self {
            Some(f64::from_bits(*v))
        } else {
            None
        }
    }

    /// The value as Wasm sees it. A funcref is made callable from Wasm first (see
    /// `StoreOpaque::ensure_wasm_callable`), which is the one way this fails.
    pub(crate) fn to_raw(self, store: &mut StoreOpaque) -> crate::Result<ValRaw> {
        Ok(match self {
            Val::I32(v) => ValRaw::from_u32(v as u32),
            Val::I64(v) => ValRaw::from_u64(v as u64),
            Val::F32(v) => ValRaw::from_u32(v),
            Val::F64(v) => ValRaw::from_u64(v),
            Val::V128(v) => ValRaw::from_u128(v),
            Val::FuncRef(None) | Val::ExternRef(None) | Val::ExnRef(None) => ValRaw::default(),
            Val::ExnRef(Some(e)) => {
                store.check(e.store);
                ValRaw::from_u64(e.exn as u64)
            }
            Val::FuncRef(Some(f)) => {
                store.check(f.store);
                ValRaw::from_u64(store.ensure_wasm_callable(f.index)?.to_raw())
            }
            Val::ExternRef(Some(r)) => {
                store.check(r.store);
                ValRaw::from_u64(r.index as u64 + 1)
            }
        })
    }

    pub(crate) fn from_raw(raw: ValRaw, ty: ValType, store: &mut StoreOpaque) -> Val {
        match ty {
            ValType::I32 => Val::I32(raw.get_u32() as i32),
            ValType::I64 => Val::I64(raw.get_u64() as i64),
            ValType::F32 => Val::F32(raw.get_u32()),
            ValType::F64 => Val::F64(raw.get_u64()),
            ValType::V128 => Val::V128(raw.get_u128()),
            ValType::Ref(r) if r.heap_type.is_exn() => Val::ExnRef(match raw.get_u64() {
                0 => None,
                exn => {
                    // Already pinned (a first-class exnref always is); pinning again keeps
                    // that true for the host's copy whatever the path.
                    store.vm.exceptions_mut().pin(exn as usize);
                    Some(crate::ExnRef {
                        store: store.id,
                        exn: exn as usize,
                    })
                }
            }),
            ValType::Ref(r) if r.heap_type != HeapType::Extern => {
                Val::FuncRef(match raw.get_u64() {
                    0 => None,
                    p => Some(Func::from_index(store.id, store.func_for_raw(p))),
                })
            }
            ValType::Ref(_) => Val::ExternRef(match raw.get_u64() {
                0 => None,
                i => Some(ExternRef {
                    store: store.id,
                    index: i as usize - 1,
                }),
            }),
        }
    }
}

impl From<i32> for Val {
    fn from(v: i32) -> Val {
        Val::I32(v)
    }
}
impl From<i64> for Val {
    fn from(v: i64) -> Val {
        Val::I64(v)
    }
}
impl From<f32> for Val {
    fn from(v: f32) -> Val {
        Val::F32(v.to_bits())
    }
}
impl From<f64> for Val {
    fn from(v: f64) -> Val {
        Val::F64(v.to_bits())
    }
}

/// A reference to a host value that Wasm can hold as an `externref`.
///
/// The value lives as long as the store (weft does not collect externrefs yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExternRef {
    store: StoreId,
    index: usize,
}

impl ExternRef {
    /// Puts `value` in the store and returns a reference to it.
    pub fn new(mut store: impl AsContextMut, value: impl Any + Send + Sync) -> ExternRef {
        let store = &mut store.as_context_mut().opaque;
        store.externrefs.push(Box::new(value));
        ExternRef {
            store: store.id,
            index: store.externrefs.len() - 1,
        }
    }

    /// The host value.
    pub fn data<'a, T: 'static>(
        &self,
        store: &'a impl AsContext<Data = T>,
    ) -> &'a (dyn Any + Send + Sync) {
        let store = &store.as_context().opaque;
        store.check(self.store);
        &*store.externrefs[self.index]
    }
}
