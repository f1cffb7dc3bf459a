//! Computes `WEFT_CODE_BUILD_ID`: an identity of everything that decides what compiled code
//! looks like and what it assumes about the runtime (the compiler, the vmctx layout and the
//! builtins, the runtime's VM layer, the stack switcher, and the locked dependency versions,
//! Cranelift's among them). A serialized module records it and loading compares it, so code
//! compiled by a different weft build, even one of the same version number, is refused rather
//! than run against a runtime whose layout it does not know.
//!
//! It is an FNV-1a hash of those source files (paths and contents, in sorted order). Any edit
//! changes it, which is what a developer's code cache needs; identical sources give the same
//! id on every machine, which is what shipping `.cwasm` files needs.

use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest
        .parent()
        .expect("the runtime is a workspace member");
    let mut files = Vec::new();
    for dir in ["compiler/src", "environ/src", "runtime/src", "arch/src"] {
        let dir = root.join(dir);
        println!("cargo:rerun-if-changed={}", dir.display());
        collect(&dir, &mut files);
    }
    let lock = root.join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    if lock.is_file() {
        files.push(lock);
    }
    files.sort();
    let mut hash = Fnv(0xcbf2_9ce4_8422_2325);
    for file in &files {
        let relative = file.strip_prefix(root).unwrap_or(file);
        hash.write(relative.to_string_lossy().as_bytes());
        hash.write(&[0]);
        hash.write(&std::fs::read(file).unwrap_or_default());
        hash.write(&[0]);
    }
    println!(
        "cargo:rustc-env=WEFT_CODE_BUILD_ID={}+{:016x}",
        std::env::var("CARGO_PKG_VERSION").expect("set by cargo"),
        hash.0
    );
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs" || e == "S") {
            files.push(path);
        }
    }
}

struct Fnv(u64);

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}
