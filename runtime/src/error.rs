//! weft's error type, traps, and Wasm backtraces.

use std::fmt;

/// Why Wasm execution stopped abnormally. The messages are the spec's wording.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Trap {
    /// `unreachable` was executed.
    Unreachable,
    /// A load, store or bulk memory operation went out of bounds.
    MemoryOutOfBounds,
    /// A table access or bulk table operation went out of bounds.
    TableOutOfBounds,
    /// `call_indirect` with an index past the end of the table.
    UndefinedElement,
    /// `call_indirect` of a null table entry.
    UninitializedElement,
    /// `call_indirect` of a function of another type.
    IndirectCallTypeMismatch,
    /// `call_ref` or `ref.as_non_null` of a null reference.
    NullReference,
    /// Integer division or remainder by zero.
    IntegerDivisionByZero,
    /// The result does not fit: signed division of the minimum by -1, or a trapping
    /// float-to-int conversion of a value out of the integer's range.
    IntegerOverflow,
    /// A trapping float-to-int conversion of NaN.
    BadConversionToInteger,
    /// Wasm used up its stack (see `Config::max_wasm_stack`).
    StackOverflow,
    /// A suspending import was called from a call that cannot suspend (a synchronous `call`
    /// rather than `call_async`), like JSPI's `SuspendError`.
    SuspendOutsidePromisingCall,
    /// The store's epoch deadline passed (see `Config::epoch_interruption`).
    Interrupt,
    /// The store ran out of fuel (see `Config::consume_fuel`).
    OutOfFuel,
}

impl Trap {
    /// The spec's message for this trap.
    pub fn message(self) -> &'static str {
        match self {
            Trap::Unreachable => "unreachable",
            Trap::MemoryOutOfBounds => "out of bounds memory access",
            Trap::TableOutOfBounds => "out of bounds table access",
            Trap::UndefinedElement => "undefined element",
            Trap::UninitializedElement => "uninitialized element",
            Trap::IndirectCallTypeMismatch => "indirect call type mismatch",
            Trap::NullReference => "null reference",
            Trap::IntegerDivisionByZero => "integer divide by zero",
            Trap::IntegerOverflow => "integer overflow",
            Trap::BadConversionToInteger => "invalid conversion to integer",
            Trap::StackOverflow => "call stack exhausted",
            Trap::SuspendOutsidePromisingCall => {
                "suspending import called outside a promising call"
            }
            Trap::Interrupt => "interrupted: the epoch deadline was reached",
            Trap::OutOfFuel => "all fuel consumed",
        }
    }
}

impl fmt::Display for Trap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// One Wasm frame of a backtrace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    /// The function's index in its module (imports included).
    pub func_index: u32,
    /// The function's name from the name section, if any.
    pub func_name: Option<String>,
    /// The module's name from the name section, if any.
    pub module_name: Option<String>,
    /// Byte offset of the instruction in the module binary.
    pub module_offset: Option<u32>,
}

/// The Wasm frames active when a trap happened, innermost first.
///
/// A trap deeper than 128 frames keeps the 64 innermost and the 64 outermost:
/// [`WasmBacktrace::omitted_frames`] says how many were cut in between, at
/// [`WasmBacktrace::omitted_at`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WasmBacktrace {
    /// The frames, innermost first.
    pub frames: Vec<FrameInfo>,
    /// How many frames were cut from the middle of a deep backtrace (0 if none).
    pub omitted_frames: usize,
    /// Where they were cut: between `frames[omitted_at - 1]` and `frames[omitted_at]`.
    pub omitted_at: usize,
}

/// Writes a name from a module's name section with control characters (ANSI escapes,
/// newlines) escaped, so a module cannot forge or garble weft's output.
fn write_name(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    for c in name.chars() {
        if c.is_control() {
            write!(f, "{}", c.escape_unicode())?;
        } else {
            write!(f, "{c}")?;
        }
    }
    Ok(())
}

impl fmt::Display for FrameInfo {
    /// `module!name (func N) @ 0xOFFSET`, names escaped (see `write_name`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(module) = &self.module_name {
            write_name(f, module)?;
            f.write_str("!")?;
        }
        match &self.func_name {
            Some(name) => {
                write_name(f, name)?;
                write!(f, " (func {})", self.func_index)?;
            }
            None => write!(f, "<func {}>", self.func_index)?,
        }
        if let Some(offset) = self.module_offset {
            write!(f, " @ {offset:#x}")?;
        }
        Ok(())
    }
}

impl fmt::Display for WasmBacktrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "wasm backtrace:")?;
        // Deep recursion makes long backtraces; the ends are what matters.
        const SHOWN: usize = 16;
        let len = self.frames.len();
        // Frame numbers count the omitted frames, so the outermost keep their true depth.
        let number = |i: usize| {
            if self.omitted_frames > 0 && i >= self.omitted_at {
                i + self.omitted_frames
            } else {
                i
            }
        };
        let mut hidden = 0;
        for (i, frame) in self.frames.iter().enumerate() {
            if self.omitted_frames > 0 && i == self.omitted_at {
                hidden += self.omitted_frames;
            }
            if len > 2 * SHOWN && (SHOWN..len - SHOWN).contains(&i) {
                hidden += 1;
                continue;
            }
            if hidden > 0 {
                writeln!(f, "  ... {hidden} more frames")?;
                hidden = 0;
            }
            writeln!(f, "  {:>2}: {frame}", number(i))?;
        }
        if hidden > 0 {
            writeln!(f, "  ... {hidden} more frames")?;
        }
        if self.omitted_frames > 0 {
            writeln!(
                f,
                "  (the backtrace was cut: {} frames in the middle were not recorded)",
                self.omitted_frames
            )?;
        }
        Ok(())
    }
}

/// Everything that can go wrong in weft, and what a host function returns when it fails.
///
/// # Composing with other errors
///
/// As `wasmtime::Error`, this type takes in any error with `?`: every
/// `std::error::Error + Send + Sync + 'static` converts into it (as [`Error::Host`], kept
/// whole: [`Error::downcast_ref`] gets it back), so `fn main() -> weft::Result<()>` can `?` an
/// `io::Error`, a `wat` parse error, or the embedder's own error type, and so can a host
/// function that returns `weft::Result`. A [`Trap`] converts into [`Error::Trap`]. In the
/// other direction `?` turns it into `Box<dyn std::error::Error (+ Send + Sync)>` and, with the
/// `anyhow` feature (on by default), into `anyhow::Error`; [`Error::from_anyhow`] goes back.
///
/// The price of the blanket conversion, the same as for `anyhow::Error` and
/// `wasmtime::Error`: this type cannot itself implement `std::error::Error` (the conversion
/// would then conflict with `From<T> for T`), so it cannot be another error's `#[source]`;
/// box it (`Box<dyn Error>::from`) for that. Unlike those two it stays an enum, so weft's own
/// failures can be matched on without downcasting.
#[non_exhaustive]
#[derive(Debug)]
pub enum Error {
    /// The bytes are not a valid WebAssembly module (or not valid WAT).
    InvalidModule {
        /// What is wrong, in the validator's words.
        message: String,
        /// Byte offset of the problem in the module binary (0 for text that does not parse).
        offset: usize,
    },
    /// The module uses a feature weft does not implement.
    Unsupported(String),
    /// Wasm trapped.
    Trap {
        /// Why.
        trap: Trap,
        /// The Wasm frames active at the trap, innermost first.
        backtrace: WasmBacktrace,
    },
    /// A Wasm exception that no Wasm frame caught, with its tag and payload; returned by a
    /// host function, it throws the exception into its Wasm caller (see
    /// [`crate::WasmException`]).
    Exception(Box<crate::WasmException>),
    /// An import has no definition.
    UnknownImport {
        /// The import's module name.
        module: String,
        /// The import's field name.
        name: String,
    },
    /// An import's definition has the wrong type.
    IncompatibleImport {
        /// The import's module name.
        module: String,
        /// The import's field name.
        name: String,
        /// What the import expected and what it got.
        reason: String,
    },
    /// Values of the wrong number or type were passed, or a typed view does not match.
    TypeMismatch(String),
    /// A [`crate::Config`] whose settings do not go together.
    InvalidConfig(String),
    /// A limit was exceeded or the system refused memory.
    ResourceLimit(String),
    /// A promising call on a [`crate::SharedStore`] was polled on a thread where Wasm of that
    /// store is running further down the stack (for instance by hand, inside a synchronous host
    /// function of the store): the store cannot be free before that poll returns, so the call
    /// fails instead of waiting forever. Call the export through the host function's
    /// [`crate::Caller`], make the import a suspending one (`func_wrap_async`), whose future
    /// may await the call, or poll the call elsewhere.
    StoreInUse,
    /// A serialized module was refused: another weft build, target, CPU or configuration, or
    /// a damaged file (see [`crate::Module::deserialize`]).
    Deserialize(crate::DeserializeError),
    /// An error from outside weft: raised by a host function or converted with `?`.
    Host(Box<dyn std::error::Error + Send + Sync>),
    /// Anything else, described in words.
    Message(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidModule { message, offset } => {
                write!(f, "invalid module: {message} (at offset {offset:#x})")
            }
            Error::Exception(e) => e.fmt(f),
            Error::Unsupported(what) => write!(f, "unsupported: {what}"),
            Error::Trap { trap, .. } => write!(f, "wasm trap: {trap}"),
            Error::UnknownImport { module, name } => {
                write!(f, "unknown import: `{module}::{name}` has not been defined")
            }
            Error::IncompatibleImport {
                module,
                name,
                reason,
            } => write!(
                f,
                "incompatible import type for `{module}::{name}`: {reason}"
            ),
            Error::TypeMismatch(what) => write!(f, "type mismatch: {what}"),
            Error::InvalidConfig(what) => write!(f, "invalid configuration: {what}"),
            Error::ResourceLimit(what) => write!(f, "resource limit: {what}"),
            Error::StoreInUse => f.write_str(
                "a promising call was polled where its store is in use further down the same \
                 thread's stack (by a synchronous host function of that store?); it could never \
                 get the store",
            ),
            Error::Deserialize(why) => write!(f, "cannot load the compiled module: {why}"),
            Error::Host(error) => error.fmt(f),
            Error::Message(message) => f.write_str(message),
        }
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for Error {
    fn from(error: E) -> Self {
        Error::Host(Box::new(error))
    }
}

impl From<Trap> for Error {
    fn from(trap: Trap) -> Self {
        Error::trap_without_backtrace(trap)
    }
}

/// A weft [`Error`] as a `std::error::Error`, for the boxed forms.
#[derive(Debug)]
struct BoxedError(Error);

impl fmt::Display for BoxedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BoxedError {}

impl From<Error> for Box<dyn std::error::Error + Send + Sync + 'static> {
    /// A host error comes out as it went in; weft's own errors are boxed as they are.
    fn from(error: Error) -> Self {
        match error {
            Error::Host(error) => error,
            error => Box::new(BoxedError(error)),
        }
    }
}

impl From<Error> for Box<dyn std::error::Error + 'static> {
    fn from(error: Error) -> Self {
        Box::<dyn std::error::Error + Send + Sync>::from(error)
    }
}

/// The message and source chain carry over; downcasting to a host error's type does not
/// (anyhow downcasts only to types it boxed itself): match on the weft error first for that.
#[cfg(feature = "anyhow")]
impl From<Error> for anyhow::Error {
    fn from(error: Error) -> Self {
        anyhow::Error::from_boxed(error.into())
    }
}

impl Error {
    /// A host error carrying `message`.
    pub fn msg(message: impl fmt::Display) -> Self {
        Error::Message(message.to_string())
    }

    /// A host error wrapping `error` (what `?` does too).
    pub fn host(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Host(Box::new(error))
    }

    /// An `anyhow::Error` as a weft error, an [`Error::Host`] with the same message (`?`
    /// cannot do this one: `anyhow::Error` is not a `std::error::Error`).
    #[cfg(feature = "anyhow")]
    pub fn from_anyhow(error: anyhow::Error) -> Self {
        Error::Host(error.into())
    }

    /// The error from outside weft this error carries, if it is one of type `E` (see
    /// [`Error::Host`]).
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            Error::Host(error) => error.downcast_ref::<E>(),
            _ => None,
        }
    }

    /// Whether this error carries an error from outside weft of type `E`.
    pub fn is<E: std::error::Error + 'static>(&self) -> bool {
        self.downcast_ref::<E>().is_some()
    }

    /// The trap, if this error is one.
    pub fn trap(&self) -> Option<Trap> {
        match self {
            Error::Trap { trap, .. } => Some(*trap),
            _ => None,
        }
    }

    /// The Wasm backtrace, if this error is a trap.
    pub fn backtrace(&self) -> Option<&WasmBacktrace> {
        match self {
            Error::Trap { backtrace, .. } => Some(backtrace),
            _ => None,
        }
    }

    pub(crate) fn trap_without_backtrace(trap: Trap) -> Self {
        Error::Trap {
            trap,
            backtrace: WasmBacktrace::default(),
        }
    }
}

impl Error {
    /// The error for a failed compilation. Not a `From` impl: the blanket conversion above
    /// would make any `?` on a `CompileError` an [`Error::Host`], so each site calls this.
    pub(crate) fn from_compile(e: weft_compiler::CompileError) -> Self {
        Error::from_validation(e, &[])
    }

    /// As [`Error::from_compile`], for validation by an engine whose Config turns the feature
    /// switches `off` off: a refused feature's message then names them, as the validator
    /// cannot tell a feature weft lacks from one switched off.
    pub(crate) fn from_validation(e: weft_compiler::CompileError, off: &[&str]) -> Self {
        match e {
            weft_compiler::CompileError::Invalid { message, offset } => {
                match feature_refusal(&message, off) {
                    Some(refusal) => {
                        Error::Unsupported(format!("{refusal} (at offset {offset:#x})"))
                    }
                    None => Error::InvalidModule { message, offset },
                }
            }
            weft_compiler::CompileError::Unsupported(what) => Error::Unsupported(what),
            weft_compiler::CompileError::Codegen(what) => {
                Error::Message(format!("code generation failed: {what}"))
            }
        }
    }
}

/// The validator words a proposal it was not asked to accept as a switch that is off ("...
/// when stack switching is disabled", "... support is not enabled"). weft has no such switch
/// for most of these, so a module that uses one is refused as [`Error::Unsupported`], in words
/// that name what weft lacks rather than a setting to change; where the engine turns some of
/// its switches off (`off`, e.g. `Config::wasm_tail_call(false)`), the words name those too. `None` if `message` is not such a refusal.
fn feature_refusal(message: &str, off: &[&str]) -> Option<String> {
    let lacks = |feature: &str| {
        if off.is_empty() {
            format!("weft does not support {feature}")
        } else {
            format!(
                "{feature} is not enabled (weft lacks it, or it is one of the features this \
                 engine's Config turns off: {})",
                off.join(", ")
            )
        }
    };
    if let Some((what, rest)) = message.split_once(" when ")
        && let Some(feature) = rest
            .strip_suffix(" is disabled")
            .or_else(|| rest.strip_suffix(" are disabled"))
    {
        return Some(format!("{what}: {}", lacks(feature)));
    }
    if let Some((what, rest)) = message.split_once(" because the ")
        && let Some(proposal) = rest.strip_suffix(" proposal is disabled")
    {
        return Some(format!(
            "{what}: {}",
            lacks(&format!("the {proposal} proposal"))
        ));
    }
    if let Some((what, rest)) = message.split_once(" with ")
        && let Some(proposal) = rest.strip_suffix(" proposal disabled")
    {
        return Some(format!(
            "{what}: {}",
            lacks(&format!("the {proposal} proposal"))
        ));
    }
    if let Some(proposal) = message.strip_suffix(" proposal not enabled") {
        return Some(lacks(&format!("the {proposal} proposal")));
    }
    for suffix in [" support is not enabled", " are not enabled"] {
        if let Some(feature) = message.strip_suffix(suffix) {
            return Some(lacks(feature));
        }
    }
    None
}

/// `Result` with weft's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
