//! The runtime functions compiled code calls, declared once.
//!
//! [`foreach_builtin!`](crate::foreach_builtin) is the only list of builtins. Everything else
//! is generated from it:
//!
//! - [`BuiltinFunction`], the enum the compiler names a builtin by, with each builtin's
//!   parameter and result types ([`BuiltinFunction::params`], [`BuiltinFunction::result`]), from
//!   which the compiler builds the Cranelift signature of the call;
//! - the slot of each builtin in the table the vmctx points to ([`BuiltinFunction::offset`]);
//! - [`BuiltinTable`], the `#[repr(C)]` table itself, one typed `unsafe extern "C" fn` pointer
//!   per builtin. The runtime fills it with its functions by name, so a runtime function whose
//!   signature differs from the list does not compile, and the field order is the slot order.
//!
//! For example, the runtime's `memory_grow` must be exactly what the list says:
//!
//! ```
//! unsafe extern "C" fn memory_grow(_vmctx: *mut u8, _memory: u32, _delta_pages: u64) -> u64 {
//!     u64::MAX
//! }
//! fn install(table: &mut weft_environ::BuiltinTable) {
//!     table.memory_grow = memory_grow;
//! }
//! ```
//!
//! and one that takes the page delta as a `u32` is rejected:
//!
//! ```compile_fail,E0308
//! unsafe extern "C" fn memory_grow(_vmctx: *mut u8, _memory: u32, _delta_pages: u32) -> u64 {
//!     u64::MAX
//! }
//! fn install(table: &mut weft_environ::BuiltinTable) {
//!     table.memory_grow = memory_grow;
//! }
//! ```
//!
//! Every builtin takes the caller's vmctx first and uses the platform C calling convention. A
//! builtin whose result is [`BuiltinType::Status`] can trap: it returns 0 after recording the
//! trap in the activation, and compiled code then traps with [`TrapKind::Recorded`].
//!
//! [`TrapKind::Recorded`]: crate::TrapKind::Recorded

/// Calls `$mac!` with the list of builtins, one per line:
/// `Variant = name(param: type, ...) -> result;`, where a type is `u32`, `u64`, `reference`
/// (pointer-sized: a funcref pointer, an externref handle, an exnref or an address) or `status` (a `u8`, 0 on a trap),
/// and a builtin without `-> result` returns nothing. The vmctx parameter is implicit.
#[macro_export]
macro_rules! foreach_builtin {
    ($mac:ident) => {
        $mac! {
            /// `memory.grow`: the old size in pages, or `u64::MAX` if the memory cannot grow.
            MemoryGrow = memory_grow(memory: u32, delta_pages: u64) -> u64;
            /// `memory.fill` of `len` bytes at `dst` with the low byte of `byte`.
            MemoryFill = memory_fill(memory: u32, dst: u64, byte: u32, len: u64) -> status;
            /// `memory.copy`, possibly between two memories.
            MemoryCopy = memory_copy(dst_memory: u32, src_memory: u32, dst: u64, src: u64, len: u64) -> status;
            /// `memory.init` from data segment `data` (empty once dropped).
            MemoryInit = memory_init(memory: u32, data: u32, dst: u64, src: u32, len: u32) -> status;
            /// `data.drop`.
            DataDrop = data_drop(data: u32);
            /// `table.grow`: the old size, or `u64::MAX` if the table cannot grow. Indices and
            /// counts of tables (as addresses of memories) are u64 whatever the table's index
            /// type: compiled code zero-extends a 32-bit table's.
            TableGrow = table_grow(table: u32, delta: u64, init: reference) -> u64;
            /// `table.fill`.
            TableFill = table_fill(table: u32, dst: u64, value: reference, len: u64) -> status;
            /// `table.copy`, possibly between two tables.
            TableCopy = table_copy(dst_table: u32, src_table: u32, dst: u64, src: u64, len: u64) -> status;
            /// `table.init` from element segment `elem` (empty once dropped).
            TableInit = table_init(table: u32, elem: u32, dst: u64, src: u32, len: u32) -> status;
            /// `elem.drop`.
            ElemDrop = elem_drop(elem: u32);
            /// A new exception of tag `tag` (a module tag index) with room for its payload:
            /// an exnref, whose payload slots compiled code fills (see
            /// `vmoffsets::exception`).
            ExnNew = exn_new(tag: u32) -> reference;
            /// A handler that does not keep the exnref (`catch`, `catch_all`) has read the
            /// payload of exception `exn`: the store frees the object unless it is pinned
            /// (`vmoffsets::exception::PINNED`).
            ExnRelease = exn_release(exn: reference);
            /// Throws exception `exn` (non-null): an assembly stub (`weft_arch::throw`) that
            /// asks `find_handler` (the `FindHandler` builtin's address, passed along) for the
            /// handler and resumes there. Returns 0 only when no Wasm frame of the activation
            /// catches it, after recording the exception as the activation's outcome.
            ThrowRef = throw_ref(exn: reference, find_handler: reference) -> status;
            /// Never called by compiled code: `throw_ref`'s handler search, which compiled code
            /// hands to the stub. Takes the return address and frame pointer of the throwing
            /// frame and a `weft_arch::ResumeTarget` to fill; returns 1 when it found a handler.
            FindHandler = find_handler(exn: reference, return_address: reference, fp: reference, target: reference) -> status;
            /// The epoch reached the store's deadline: trap, or (in a promising call whose
            /// store says so) yield to the executor and extend the deadline. Preserves every
            /// register (see [`BuiltinFunction::preserves_registers`]).
            EpochInterrupt = epoch_interrupt();
            /// The store's fuel went below zero: trap, or (in a promising call whose store has
            /// a yield interval) yield and refuel from the store's reserve. Preserves every
            /// register.
            OutOfFuel = out_of_fuel();
        }
    };
}

/// The type of a builtin's parameter or result, as the list writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuiltinType {
    U32,
    U64,
    /// Pointer-sized: a funcref pointer, an externref handle, an exnref (0 is null) or an
    /// address.
    Reference,
    /// A `u8` that is 0 when the builtin recorded a trap.
    Status,
}

/// The Rust type of a builtin parameter or result in [`BuiltinTable`].
macro_rules! builtin_rust_type {
    (u32) => {
        u32
    };
    (u64) => {
        u64
    };
    (reference) => {
        usize
    };
    (status) => {
        u8
    };
}

/// The [`BuiltinType`] of a type in the list.
macro_rules! builtin_type {
    (u32) => {
        BuiltinType::U32
    };
    (u64) => {
        BuiltinType::U64
    };
    (reference) => {
        BuiltinType::Reference
    };
    (status) => {
        BuiltinType::Status
    };
}

macro_rules! declare_builtins {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $name:ident($($param:ident: $ty:tt),*) $(-> $result:tt)?;
    )*) => {
        /// A builtin function, named by the compiler; see the module docs.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum BuiltinFunction {
            $($(#[$doc])* $variant,)*
        }

        impl BuiltinFunction {
            /// Every builtin, in table order.
            pub const ALL: &'static [BuiltinFunction] = &[$(BuiltinFunction::$variant),*];
            /// How many builtins there are.
            pub const COUNT: usize = Self::ALL.len();

            /// The builtin's name (its field in [`BuiltinTable`]).
            pub fn name(self) -> &'static str {
                match self {
                    $(BuiltinFunction::$variant => stringify!($name),)*
                }
            }

            /// The parameter types after the implicit vmctx.
            pub fn params(self) -> &'static [BuiltinType] {
                match self {
                    $(BuiltinFunction::$variant => &[$(builtin_type!($ty)),*],)*
                }
            }

            /// The result type, if the builtin returns one.
            pub fn result(self) -> Option<BuiltinType> {
                match self {
                    $(BuiltinFunction::$variant => {
                        #[allow(unused_mut, unused_assignments)]
                        let mut result = None;
                        $(result = Some(builtin_type!($result));)?
                        result
                    })*
                }
            }
        }

        /// The table of builtin addresses the vmctx points to (`VMOffsets::BUILTINS`): one typed
        /// function pointer per builtin, in list order. The runtime builds the one instance.
        #[repr(C)]
        pub struct BuiltinTable {
            $(
                $(#[$doc])*
                pub $name: unsafe extern "C" fn(
                    vmctx: *mut u8,
                    $($param: builtin_rust_type!($ty)),*
                ) $(-> builtin_rust_type!($result))?,
            )*
        }
    };
}

foreach_builtin!(declare_builtins);

impl BuiltinFunction {
    /// Whether compiled code calls this builtin with a convention that preserves every
    /// register (Cranelift's `preserve_all`), through a thunk of the runtime's that saves what
    /// the C convention would clobber. These are the epoch and fuel checks' builtins: they sit
    /// in cold blocks inside hot loops, where a call that clobbers registers would push the
    /// loop's own values into callee-saved registers or onto the stack on every iteration.
    /// Such a builtin returns nothing; it reports its outcome in the store context
    /// (`vmoffsets::store_context::CHECK_STATUS`: 0 after recording a trap).
    pub fn preserves_registers(self) -> bool {
        matches!(
            self,
            BuiltinFunction::EpochInterrupt | BuiltinFunction::OutOfFuel
        )
    }

    /// Offset of this builtin's address within the [`BuiltinTable`].
    pub fn offset(self) -> i32 {
        self as i32 * crate::vmoffsets::PTR as i32
    }
}

// The table is a plain array of pointers, so slot `i` is at `i * PTR`.
const _: () =
    assert!(size_of::<BuiltinTable>() == BuiltinFunction::COUNT * crate::vmoffsets::PTR as usize);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_builtins_offset_is_its_field_in_the_table() {
        macro_rules! check_offsets {
            ($($(#[$doc:meta])* $variant:ident = $name:ident($($rest:tt)*) $(-> $result:tt)?;)*) => {
                $(assert_eq!(
                    std::mem::offset_of!(BuiltinTable, $name),
                    BuiltinFunction::$variant.offset() as usize,
                    "{}", BuiltinFunction::$variant.name(),
                );)*
            };
        }
        foreach_builtin!(check_offsets);
    }

    #[test]
    fn status_is_a_result_type_only() {
        for builtin in BuiltinFunction::ALL {
            assert!(
                !builtin.params().contains(&BuiltinType::Status),
                "{}",
                builtin.name()
            );
        }
    }
}
