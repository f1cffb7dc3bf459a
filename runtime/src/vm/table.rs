//! Tables: vectors of pointer-sized references (a `*const VMFuncRef` or an externref handle;
//! 0 is null) that compiled code indexes through a `VMTableDefinition`. Indices and sizes are
//! u64 here whatever the table's index type (a 64-bit table's, memory64, or a 32-bit one's):
//! what the type allows is checked where an index enters, and no table holds more than
//! [`MAX_TABLE_ELEMENTS`].

use std::sync::Arc;

use super::pool::TablePool;
use super::vmstructs::VMTableDefinition;

/// Elements a table may hold at most, whatever its declared maximum: growing past this fails
/// like an allocation failure would (`table.grow` returns -1).
pub const MAX_TABLE_ELEMENTS: u64 = 10_000_000;

pub struct Table {
    definition: Box<VMTableDefinition>,
    elements: Vec<usize>,
    /// The declared maximum (or the pool's), if any; never above [`MAX_TABLE_ELEMENTS`] in
    /// effect.
    max: Option<u64>,
    /// The pool the elements go back to (whose `table_elements` bounds `max`).
    pool: Option<Arc<TablePool>>,
}

// SAFETY: `definition.base` always points into `elements`, which the table owns; compiled code
// uses it only while the owning store is exclusively borrowed.
unsafe impl Send for Table {}
// SAFETY: shared access only reads.
unsafe impl Sync for Table {}

impl Table {
    /// A table of `min` elements, all `init`.
    ///
    /// # Errors
    /// A message if `min` exceeds the implementation limit.
    pub fn new(min: u64, max: Option<u64>, init: usize) -> Result<Table, String> {
        if min > MAX_TABLE_ELEMENTS {
            return Err(format!(
                "table of {min} elements exceeds weft's limit of {MAX_TABLE_ELEMENTS}"
            ));
        }
        Ok(Table::with_elements(vec![init; min as usize], max, None))
    }

    /// A table holding `elements`, given back to `pool` (if any) when dropped.
    pub(super) fn with_elements(
        elements: Vec<usize>,
        max: Option<u64>,
        pool: Option<Arc<TablePool>>,
    ) -> Table {
        let mut table = Table {
            definition: Box::new(VMTableDefinition {
                base: std::ptr::null_mut(),
                current_elements: 0,
            }),
            elements,
            max,
            pool,
        };
        table.sync();
        table
    }

    /// Points the definition at the (possibly reallocated) elements.
    fn sync(&mut self) {
        self.definition.base = self.elements.as_mut_ptr();
        self.definition.current_elements = self.elements.len();
    }

    pub fn size(&self) -> u64 {
        self.elements.len() as u64
    }

    pub fn get(&self, index: u64) -> Option<usize> {
        self.elements.get(usize::try_from(index).ok()?).copied()
    }

    /// # Errors
    /// `Err(())` if `index` is out of bounds.
    pub fn set(&mut self, index: u64, value: usize) -> Result<(), ()> {
        let index = usize::try_from(index).map_err(|_| ())?;
        *self.elements.get_mut(index).ok_or(())? = value;
        Ok(())
    }

    /// Grows by `delta` elements of `init`; returns the old size, or `None`.
    pub fn grow(&mut self, delta: u64, init: usize) -> Option<u64> {
        let old = self.size();
        let new = old.checked_add(delta)?;
        if new > self.max.unwrap_or(u64::MAX) || new > MAX_TABLE_ELEMENTS {
            return None;
        }
        self.elements.resize(new as usize, init);
        self.sync();
        Some(old)
    }

    /// `table.fill`; `Err(())` if out of bounds (nothing is written then).
    pub fn fill(&mut self, dst: u64, value: usize, len: u64) -> Result<(), ()> {
        let range = range(dst, len, self.elements.len())?;
        self.elements[range].fill(value);
        Ok(())
    }

    /// Copies `len` elements within this table (overlap allowed).
    pub fn copy_within(&mut self, dst: u64, src: u64, len: u64) -> Result<(), ()> {
        let src = range(src, len, self.elements.len())?;
        let dst = range(dst, len, self.elements.len())?;
        self.elements.copy_within(src, dst.start);
        Ok(())
    }

    /// Writes `values` at `dst`; `Err(())` if they do not fit.
    pub fn init(&mut self, dst: u64, values: &[usize]) -> Result<(), ()> {
        let range = range(dst, values.len() as u64, self.elements.len())?;
        self.elements[range].copy_from_slice(values);
        Ok(())
    }

    pub fn elements(&self) -> &[usize] {
        &self.elements
    }

    /// The definition compiled code reads; its address is stable for the table's lifetime.
    pub fn definition(&self) -> *mut VMTableDefinition {
        (&raw const *self.definition).cast_mut()
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            pool.release(std::mem::take(&mut self.elements));
        }
    }
}

/// `start..start + len` if it fits in `bound` (without wrapping).
pub fn range(start: u64, len: u64, bound: usize) -> Result<std::ops::Range<usize>, ()> {
    match start.checked_add(len) {
        Some(end) if end <= bound as u64 => Ok(start as usize..end as usize),
        _ => Err(()),
    }
}
