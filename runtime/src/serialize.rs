//! Serialized modules (`.cwasm`): a compiled module written out so that loading it skips
//! compilation, for `weft compile` and the code cache.
//!
//! # Format
//!
//! All integers little-endian.
//!
//! ```text
//! offset  size  field
//!      0     8  magic: "\0weft-cw"
//!      8     4  format version (FORMAT_VERSION)
//!     12     8  body length in bytes
//!     20     4  CRC-32 of the body
//!     24     -  body:
//!                 str    weft build id ("VERSION+hash of the sources code depends on")
//!                 str    target triple
//!                 str    CPU features (Cranelift's ISA flags)
//!                 str    settings that change code (Cranelift's shared flags, memory mode,
//!                        multi-memory, epoch interruption, fuel)
//!                 bytes  the module's Wasm binary
//!                 bytes  the code image, relocations unapplied
//!                 u32    function count, then per function:
//!                          u64 start, u64 length, u32 Wasm function index,
//!                          u32 n, n × (u32 code offset, u8 trap kind),
//!                          u32 n, n × (u32 code offset, u32 Wasm offset),
//!                          u32 n, n × (u32 offset, u8 kind, u8 target kind, u32 target,
//!                                      i64 addend)
//! ```
//!
//! `str` and `bytes` are a u32 length and the bytes. The Wasm binary is kept because a module
//! needs it anyway (data segments are ranges of it), and because the module description
//! (`ModuleInfo`) is parsed again from it on load rather than given its own encoding: parsing
//! the module-level sections is a small fraction of a millisecond per megabyte.
//!
//! # Checks on load, in order
//!
//! The magic ([`DeserializeError::NotSerializedModule`]), the format version and the weft
//! build ([`DeserializeError::Version`]), the length ([`DeserializeError::Truncated`]), the
//! checksum over the whole body ([`DeserializeError::Checksum`]), then the target, CPU features
//! and settings against the loading engine's ([`DeserializeError::Target`],
//! [`DeserializeError::CpuFeatures`], [`DeserializeError::Settings`]); and finally the function
//! table against the code image (every relocation and function inside it), so that even
//! metadata that passed the checksum cannot make the loader write outside its own mapping.
//!
//! # Trust model
//!
//! Loading a serialized module runs its machine code: loading a file is trusting whoever
//! produced it, exactly as running a native executable is. The checksum is *not* a security
//! boundary (anyone can compute a CRC-32); it and the header checks exist to catch accidents —
//! a truncated or bit-flipped file, a file from another weft build, another CPU or another
//! configuration — which they refuse with a typed error instead of running code that does not
//! fit. weft keeps `Module::deserialize` safe (its API has no `unsafe` functions) on that
//! understanding; wasmtime makes its equivalent `unsafe` for the same reason. Only load
//! `.cwasm` files you made yourself or got from someone you would run a program from, and keep
//! a cache directory private (weft creates it with mode 0700).

use std::fmt;

use weft_environ::{LibCall, RelocKind, RelocTarget, Relocation, TrapKind};

use crate::vm::code_memory::FunctionInfo;

/// The first bytes of every serialized module.
pub(crate) const MAGIC: [u8; 8] = *b"\0weft-cw";
/// Bumped whenever the layout above changes.
const FORMAT_VERSION: u32 = 2;
const HEADER_LEN: usize = 24;

/// The identity of this weft build (see `runtime/build.rs`).
pub(crate) const BUILD_ID: &str = env!("WEFT_CODE_BUILD_ID");

/// Whether `bytes` starts like a serialized module (a `.cwasm`), not a Wasm binary or text.
pub fn is_serialized_module(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// Why a serialized module was refused by [`crate::Module::deserialize`].
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeserializeError {
    /// The bytes do not start with weft's header.
    NotSerializedModule,
    /// Another weft build (or another version of the format) wrote it.
    Version {
        /// The build that wrote the file.
        file: String,
        /// This build.
        this: String,
    },
    /// The file is shorter than its header says.
    Truncated {
        /// Bytes the header promises.
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// The checksum does not match: the file was damaged (or edited) after it was written.
    Checksum,
    /// Compiled for another target.
    Target {
        /// The file's target triple.
        file: String,
        /// This engine's.
        this: String,
    },
    /// Compiled for a CPU with other features than this one.
    CpuFeatures {
        /// The settings that differ, as `name: file's value, this machine's value`.
        differences: String,
    },
    /// Compiled with other settings that change code (memory mode, multi-memory, epoch
    /// interruption, fuel, Cranelift's shared flags).
    Settings {
        /// The settings that differ, as `name: file's value, this engine's value`.
        differences: String,
    },
    /// The checksum matched but the contents do not describe a module (a file written by a
    /// faulty or hostile producer).
    Malformed(String),
}

impl fmt::Display for DeserializeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeserializeError::NotSerializedModule => {
                f.write_str("not a serialized weft module (no weft header)")
            }
            DeserializeError::Version { file, this } => write!(
                f,
                "compiled by another weft build ({file}); this is {this}: compile it again"
            ),
            DeserializeError::Truncated { expected, found } => write!(
                f,
                "the file is truncated: {found} bytes where its header promises {expected}"
            ),
            DeserializeError::Checksum => {
                f.write_str("checksum mismatch: the file is corrupt or was modified")
            }
            DeserializeError::Target { file, this } => {
                write!(f, "compiled for {file}, but this is {this}")
            }
            DeserializeError::CpuFeatures { differences } => write!(
                f,
                "compiled for a CPU with other features ({differences}; file's value, this \
                 machine's value)"
            ),
            DeserializeError::Settings { differences } => write!(
                f,
                "compiled with other settings ({differences}; file's value, this engine's value)"
            ),
            DeserializeError::Malformed(what) => {
                write!(f, "the contents are not a valid module: {what}")
            }
        }
    }
}

impl std::error::Error for DeserializeError {}

/// What the code depends on besides the module: this build, the engine's compiler.
pub(crate) struct Fingerprint<'a> {
    pub build_id: &'a str,
    pub target: &'a str,
    pub cpu_features: &'a str,
    pub settings: &'a str,
}

/// The parts of a serialized module.
pub(crate) struct Parts<'a> {
    pub wasm: &'a [u8],
    pub image: &'a [u8],
    pub functions: Vec<FunctionInfo>,
}

/// Writes a serialized module.
pub(crate) fn encode(
    fingerprint: &Fingerprint<'_>,
    wasm: &[u8],
    image: &[u8],
    functions: &[FunctionInfo],
) -> Vec<u8> {
    let mut out = Writer(Vec::with_capacity(
        HEADER_LEN + wasm.len() + image.len() + 64 * functions.len() + 1024,
    ));
    out.0.extend_from_slice(&MAGIC);
    out.u32(FORMAT_VERSION);
    out.u64(0); // body length, filled in below
    out.u32(0); // checksum, filled in below
    for s in [
        fingerprint.build_id,
        fingerprint.target,
        fingerprint.cpu_features,
        fingerprint.settings,
    ] {
        out.bytes(s.as_bytes());
    }
    out.bytes(wasm);
    out.bytes(image);
    out.u32(functions.len() as u32);
    for f in functions {
        out.u64(f.start as u64);
        out.u64(f.len as u64);
        out.u32(f.func_index.unwrap_or(u32::MAX));
        out.u32(f.traps.len() as u32);
        for &(offset, kind) in &f.traps {
            out.u32(offset);
            out.0.push(position(TrapKind::ALL, kind));
        }
        out.u32(f.source_locations.len() as u32);
        for &(offset, wasm_offset) in &f.source_locations {
            out.u32(offset);
            out.u32(wasm_offset);
        }
        out.u32(f.handlers.len() as u32);
        for site in &f.handlers {
            out.u32(site.return_offset);
            out.u32(site.frame_offset);
            out.u32(site.vmctx_sp_offset);
            out.u32(site.handlers.len() as u32);
            for &(tag, at) in &site.handlers {
                out.u32(tag.unwrap_or(u32::MAX));
                out.u32(at);
            }
        }
        out.u32(f.relocations.len() as u32);
        for r in &f.relocations {
            out.u32(r.offset);
            out.0.push(position(RelocKind::ALL, r.kind));
            match r.target {
                RelocTarget::Func(index) => {
                    out.0.push(0);
                    out.u32(index);
                }
                RelocTarget::LibCall(libcall) => {
                    out.0.push(1);
                    out.u32(u32::from(position(LibCall::ALL, libcall)));
                }
            }
            out.u64(r.addend as u64);
        }
    }
    let mut bytes = out.0;
    let body_len = (bytes.len() - HEADER_LEN) as u64;
    bytes[12..20].copy_from_slice(&body_len.to_le_bytes());
    let checksum = crc32fast::hash(&bytes[HEADER_LEN..]);
    bytes[20..24].copy_from_slice(&checksum.to_le_bytes());
    bytes
}

fn position<T: PartialEq>(all: &[T], item: T) -> u8 {
    all.iter()
        .position(|x| *x == item)
        .expect("ALL lists every variant") as u8
}

/// Checks a serialized module against `this` (see the module docs for the order) and splits it
/// into its parts.
pub(crate) fn decode<'a>(
    bytes: &'a [u8],
    this: &Fingerprint<'_>,
) -> Result<Parts<'a>, DeserializeError> {
    if !is_serialized_module(bytes) {
        return Err(DeserializeError::NotSerializedModule);
    }
    let mut header = Reader(&bytes[MAGIC.len()..]);
    let truncated = || DeserializeError::Truncated {
        expected: HEADER_LEN as u64,
        found: bytes.len() as u64,
    };
    let format = header.u32().map_err(|_| truncated())?;
    if format != FORMAT_VERSION {
        return Err(DeserializeError::Version {
            file: format!("serialization format {format}"),
            this: format!("{} (format {FORMAT_VERSION})", this.build_id),
        });
    }
    let body_len = header.u64().map_err(|_| truncated())?;
    let checksum = header.u32().map_err(|_| truncated())?;
    let body = &bytes[HEADER_LEN..];
    // Before the checksum: a file from another build is intact, and saying which build wrote
    // it is more useful than "corrupt". A damaged id fails the checksum below instead.
    let mut reader = Reader(body);
    if let Ok(file_build) = reader.str()
        && file_build != this.build_id
        && body.len() as u64 >= body_len
        && crc32fast::hash(&body[..body_len as usize]) == checksum
    {
        return Err(DeserializeError::Version {
            file: file_build.to_string(),
            this: this.build_id.to_string(),
        });
    }
    if (body.len() as u64) < body_len {
        return Err(DeserializeError::Truncated {
            expected: HEADER_LEN as u64 + body_len,
            found: bytes.len() as u64,
        });
    }
    if body.len() as u64 > body_len {
        return Err(DeserializeError::Malformed(format!(
            "{} bytes after the end its header gives",
            body.len() as u64 - body_len
        )));
    }
    if crc32fast::hash(body) != checksum {
        return Err(DeserializeError::Checksum);
    }
    let mut r = Reader(body);
    let malformed = |e: Short| DeserializeError::Malformed(e.to_string());
    let build_id = r.str().map_err(malformed)?;
    if build_id != this.build_id {
        return Err(DeserializeError::Version {
            file: build_id.to_string(),
            this: this.build_id.to_string(),
        });
    }
    let target = r.str().map_err(malformed)?;
    if target != this.target {
        return Err(DeserializeError::Target {
            file: target.to_string(),
            this: this.target.to_string(),
        });
    }
    let cpu_features = r.str().map_err(malformed)?;
    if cpu_features != this.cpu_features {
        return Err(DeserializeError::CpuFeatures {
            differences: differences(cpu_features, this.cpu_features),
        });
    }
    let settings = r.str().map_err(malformed)?;
    if settings != this.settings {
        return Err(DeserializeError::Settings {
            differences: differences(settings, this.settings),
        });
    }
    let wasm = r.bytes().map_err(malformed)?;
    let image = r.bytes().map_err(malformed)?;
    let functions = read_functions(&mut r).map_err(|e| DeserializeError::Malformed(e.0))?;
    if !r.0.is_empty() {
        return Err(DeserializeError::Malformed(
            "bytes left after the function table".into(),
        ));
    }
    Ok(Parts {
        wasm,
        image,
        functions,
    })
}

fn read_functions(r: &mut Reader<'_>) -> Result<Vec<FunctionInfo>, Bad> {
    let count = r.u32()?;
    let mut functions = Vec::new();
    for _ in 0..count {
        let start = usize::try_from(r.u64()?).map_err(|_| Bad::new("function start"))?;
        let len = usize::try_from(r.u64()?).map_err(|_| Bad::new("function length"))?;
        let func_index = Some(r.u32()?).filter(|&i| i != u32::MAX);
        let mut traps = Vec::new();
        for _ in 0..r.u32()? {
            let offset = r.u32()?;
            let kind = *TrapKind::ALL
                .get(usize::from(r.u8()?))
                .ok_or(Bad::new("unknown trap kind"))?;
            traps.push((offset, kind));
        }
        let mut source_locations = Vec::new();
        for _ in 0..r.u32()? {
            source_locations.push((r.u32()?, r.u32()?));
        }
        let mut handlers = Vec::new();
        for _ in 0..r.u32()? {
            let mut site = weft_environ::CallSiteHandlers {
                return_offset: r.u32()?,
                frame_offset: r.u32()?,
                vmctx_sp_offset: r.u32()?,
                handlers: Vec::new(),
            };
            for _ in 0..r.u32()? {
                let tag = Some(r.u32()?).filter(|&t| t != u32::MAX);
                site.handlers.push((tag, r.u32()?));
            }
            handlers.push(site);
        }
        let mut relocations = Vec::new();
        for _ in 0..r.u32()? {
            let offset = r.u32()?;
            let kind = *RelocKind::ALL
                .get(usize::from(r.u8()?))
                .ok_or(Bad::new("unknown relocation kind"))?;
            let target = match (r.u8()?, r.u32()?) {
                (0, index) => RelocTarget::Func(index),
                (1, libcall) => RelocTarget::LibCall(
                    *LibCall::ALL
                        .get(libcall as usize)
                        .ok_or(Bad::new("unknown runtime routine"))?,
                ),
                _ => return Err(Bad::new("unknown relocation target")),
            };
            let addend = r.u64()? as i64;
            relocations.push(Relocation {
                offset,
                kind,
                target,
                addend,
            });
        }
        functions.push(FunctionInfo {
            start,
            len,
            func_index,
            traps,
            source_locations,
            handlers,
            relocations,
        });
    }
    Ok(functions)
}

/// `name: a, b` for each `name=value` entry that differs between two comma-separated lists.
fn differences(file: &str, this: &str) -> String {
    let parse = |s: &str| -> std::collections::BTreeMap<String, String> {
        s.split(',')
            .filter(|e| !e.is_empty())
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e.to_string(), String::new()),
            })
            .collect()
    };
    let (file, this) = (parse(file), parse(this));
    let mut keys: Vec<&String> = file.keys().chain(this.keys()).collect();
    keys.sort();
    keys.dedup();
    let missing = "(none)".to_string();
    keys.into_iter()
        .filter(|k| file.get(*k) != this.get(*k))
        .map(|k| {
            format!(
                "{k}: {}, {}",
                file.get(k).unwrap_or(&missing),
                this.get(k).unwrap_or(&missing)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

struct Writer(Vec<u8>);

impl Writer {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(u32::try_from(b.len()).expect("a module's parts are under 4 GiB"));
        self.0.extend_from_slice(b);
    }
}

/// Reading past the end of the body.
#[derive(Debug)]
struct Short;

impl fmt::Display for Short {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field runs past the end of the file")
    }
}

/// A malformed function table.
struct Bad(String);

impl Bad {
    fn new(what: &str) -> Bad {
        Bad(what.to_string())
    }
}

impl From<Short> for Bad {
    fn from(e: Short) -> Bad {
        Bad(e.to_string())
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Short> {
        if self.0.len() < n {
            return Err(Short);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, Short> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, Short> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, Short> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn bytes(&mut self) -> Result<&'a [u8], Short> {
        let len = self.u32()? as usize;
        self.take(len)
    }
    fn str(&mut self) -> Result<&'a str, Short> {
        // A header string that is not UTF-8 cannot equal ours; reading it as empty makes the
        // comparison fail with the right error.
        Ok(std::str::from_utf8(self.bytes()?).unwrap_or(""))
    }
}
