//! The code cache: compiled modules kept on disk, so that compiling a module a second time is
//! loading it (what `weft run` does by default; off in the embedding API unless
//! [`crate::Config::cache`] turns it on).
//!
//! # Layout
//!
//! One directory (by default `$XDG_CACHE_HOME/weft`, else `~/.cache/weft`), created with mode
//! 0700, holding one serialized module per entry: `<key>.cwasm`, mode 0600, in the format of
//! `Module::serialize`. The key is 24 hex digits: a SipHash of the weft build id, the target,
//! CPU features and code-changing settings, and the Wasm bytes, then a CRC-32 of the Wasm
//! bytes. A hit is checked like any `.cwasm` (header, checksum) and must also hold exactly the
//! Wasm bytes asked for, so a hash collision is a miss, not the wrong code.
//!
//! # Several processes, crashes
//!
//! An entry is written to a temporary file in the same directory (`.<key>.<pid>.<n>.tmp`,
//! created exclusively) and renamed over `<key>.cwasm`: a reader sees the old entry, the new
//! one, or none, never half of one, whichever processes race. A crash mid-write leaves only a
//! temporary file, which nothing loads and eviction removes after an hour. Anything that
//! still does not load (a damaged disk, an edit) fails its checksum, is treated as a miss and
//! replaced; the cache never makes loading fail.
//!
//! # Eviction
//!
//! A hit sets the entry's modification time to now, so modification time is last use. After
//! each write, if the entries together exceed the size limit (512 MiB by default), the
//! least recently used are deleted until they fit.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use weft_compiler::CodeFingerprint;

/// Where and how much compiled code to cache (see [`crate::Config::cache`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    dir: PathBuf,
    max_bytes: u64,
}

/// Temporary files older than this are left over from a crash.
const STALE_TEMP: Duration = Duration::from_secs(3600);

impl CacheConfig {
    /// A cache in `dir` (created on first write, mode 0700) with the default size limit.
    pub fn new(dir: impl Into<PathBuf>) -> CacheConfig {
        CacheConfig {
            dir: dir.into(),
            max_bytes: 512 << 20,
        }
    }

    /// The user's cache: `$XDG_CACHE_HOME/weft`, else `$HOME/.cache/weft`; `None` if neither
    /// variable is set to an absolute path.
    pub fn user_default() -> Option<CacheConfig> {
        let absolute = |var: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        let base =
            absolute("XDG_CACHE_HOME").or_else(|| absolute("HOME").map(|h| h.join(".cache")));
        base.map(|b| CacheConfig::new(b.join("weft")))
    }

    /// The most bytes of entries kept; beyond it the least recently used are deleted.
    pub fn max_bytes(mut self, bytes: u64) -> CacheConfig {
        self.max_bytes = bytes;
        self
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The size limit (see [`CacheConfig::max_bytes`]).
    pub fn get_max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn entry(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.cwasm"))
    }

    /// The entry for `key`, if there is one that `accept` takes; a hit counts as a use.
    pub(crate) fn load<T>(&self, key: &str, accept: impl FnOnce(&[u8]) -> Option<T>) -> Option<T> {
        let path = self.entry(key);
        let bytes = std::fs::read(&path).ok()?;
        let value = accept(&bytes)?;
        if let Ok(file) = std::fs::File::options().append(true).open(&path) {
            let _ = file.set_modified(SystemTime::now());
        }
        Some(value)
    }

    /// Stores `bytes` as the entry for `key` (atomically), then evicts down to the limit.
    /// Failures are ignored: the cache is an optimization.
    pub(crate) fn store(&self, key: &str, bytes: &[u8]) {
        if self.write_entry(key, bytes).is_ok() {
            self.evict();
        }
    }

    fn write_entry(&self, key: &str, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        create_private_dir(&self.dir)?;
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let temp = self.dir.join(format!(
            ".{key}.{}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let mut options = std::fs::File::options();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options
            .open(&temp)
            .and_then(|mut file| file.write_all(bytes))
            .and_then(|()| std::fs::rename(&temp, self.entry(key)));
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written
    }

    /// Deletes the least recently used entries until the rest fit in the limit, and temporary
    /// files left by crashed writers.
    fn evict(&self) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        let mut entries = Vec::new();
        let mut total = 0u64;
        for entry in dir.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            let modified = meta.modified().unwrap_or(now);
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".tmp") {
                if now.duration_since(modified).unwrap_or_default() > STALE_TEMP {
                    let _ = std::fs::remove_file(&path);
                }
            } else if name.ends_with(".cwasm") && meta.is_file() {
                total += meta.len();
                entries.push((modified, meta.len(), path));
            }
        }
        if total <= self.max_bytes {
            return;
        }
        entries.sort();
        for (_, len, path) in entries {
            if total <= self.max_bytes {
                break;
            }
            // Another process may have deleted or replaced it already; either way it is gone.
            let _ = std::fs::remove_file(&path);
            total -= len;
        }
    }
}

/// Creates `dir` and its missing parents, private to the user (0700) where the OS has modes.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// The cache key of `wasm` compiled by this build with `compiler`'s fingerprint.
pub(crate) fn key(compiler: &CodeFingerprint, wasm: &[u8]) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    crate::serialize::BUILD_ID.hash(&mut hasher);
    compiler.hash(&mut hasher);
    wasm.hash(&mut hasher);
    format!("{:016x}{:08x}", hasher.finish(), crc32fast::hash(wasm))
}
