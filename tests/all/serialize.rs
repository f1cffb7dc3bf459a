//! Serialized modules (`Module::serialize`/`deserialize`) and the code cache
//! (`Config::cache`): round trips, and every kind of damaged or foreign file refused with its
//! typed error before any of its code runs.

use weft::{
    CacheConfig, Config, DeserializeError, Engine, Error, Instance, MemoryMode, Module, Store,
    Trap, is_serialized_module,
};

/// Calls between functions (relocations), a table and `call_indirect` (type ids), a data
/// segment (the kept binary), a trap with a name for its backtrace.
const WAT: &str = r#"
    (module $lib
      (type $ii (func (param i32) (result i32)))
      (memory 1)
      (data (i32.const 16) "\2a")
      (table funcref (elem $fib $load))
      (func $fib (type $ii)
        (if (result i32) (i32.lt_u (local.get 0) (i32.const 2))
          (then (local.get 0))
          (else (i32.add (call $fib (i32.sub (local.get 0) (i32.const 1)))
                         (call $fib (i32.sub (local.get 0) (i32.const 2)))))))
      (func $load (type $ii) (i32.load8_u (local.get 0)))
      (func (export "fib") (param i32) (result i32) (call $fib (local.get 0)))
      (func (export "indirect") (param i32 i32) (result i32)
        (call_indirect (type $ii) (local.get 1) (local.get 0)))
      (func $boom (export "boom") (unreachable)))
"#;

fn engine_with(mode: MemoryMode) -> Engine {
    let mut config = Config::new();
    config.memory_mode(mode);
    Engine::new(&config).unwrap()
}

fn serialized(engine: &Engine) -> Vec<u8> {
    Module::new(engine, WAT).unwrap().serialize().unwrap()
}

fn call(store: &mut Store<()>, instance: &Instance, name: &str, args: &[i32]) -> weft::Result<i32> {
    let func = instance.get_func(&mut *store, name).unwrap();
    let args: Vec<weft::Val> = args.iter().map(|&a| weft::Val::I32(a)).collect();
    let mut results = [weft::Val::I32(0)];
    func.call(&mut *store, &args, &mut results)?;
    Ok(results[0].i32().expect("an i32 result"))
}

fn refusal(engine: &Engine, bytes: &[u8]) -> DeserializeError {
    match Module::deserialize(engine, bytes) {
        Err(Error::Deserialize(why)) => why,
        Err(other) => panic!("expected a deserialize error, got: {other}"),
        Ok(_) => panic!("a damaged or foreign file was loaded"),
    }
}

#[test]
fn deserialized_module_runs_like_the_compiled_one_in_another_engine() {
    let bytes = serialized(&engine_with(MemoryMode::ExplicitBounds));
    assert!(is_serialized_module(&bytes));
    // Another engine with the same settings: type ids are that engine's own.
    let engine = engine_with(MemoryMode::ExplicitBounds);
    let module = Module::deserialize(&engine, &bytes).unwrap();
    assert_eq!(module.name(), Some("lib"));
    assert_eq!(module.exports().len(), 3);
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[]).unwrap();
    assert_eq!(call(&mut store, &instance, "fib", &[20]).unwrap(), 6765);
    assert_eq!(
        call(&mut store, &instance, "indirect", &[0, 10]).unwrap(),
        55
    );
    assert_eq!(
        call(&mut store, &instance, "indirect", &[1, 16]).unwrap(),
        42
    );
    let boom = instance.get_func(&mut store, "boom").unwrap();
    let error = boom.call(&mut store, &[], &mut []).unwrap_err();
    assert_eq!(error.trap(), Some(Trap::Unreachable));
    let frames = &error.backtrace().unwrap().frames;
    assert_eq!(frames[0].func_name.as_deref(), Some("boom"));
    assert!(frames[0].module_offset.is_some());
    // Serializing the loaded module gives the same bytes: nothing was lost on the way.
    assert_eq!(module.serialize().unwrap(), bytes);
}

#[test]
fn every_truncation_is_refused() {
    let engine = Engine::default();
    let bytes = serialized(&engine);
    for len in 0..bytes.len() {
        let why = refusal(&engine, &bytes[..len]);
        if len < 8 {
            assert_eq!(why, DeserializeError::NotSerializedModule);
        } else {
            assert!(
                matches!(why, DeserializeError::Truncated { found, .. } if found == len as u64),
                "length {len}: {why}"
            );
        }
    }
}

#[test]
fn every_bit_flip_is_refused_and_one_in_the_body_is_a_checksum_mismatch() {
    let engine = Engine::default();
    let bytes = serialized(&engine);
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut damaged = bytes.clone();
            damaged[i] ^= 1 << bit;
            let why = refusal(&engine, &damaged);
            match i {
                0..8 => assert_eq!(why, DeserializeError::NotSerializedModule),
                8..12 => assert!(matches!(why, DeserializeError::Version { .. }), "{why}"),
                // The length: shorter than the file is trailing bytes, longer is truncated.
                12..20 => assert!(
                    matches!(
                        why,
                        DeserializeError::Truncated { .. } | DeserializeError::Malformed(_)
                    ),
                    "{why}"
                ),
                _ => assert_eq!(why, DeserializeError::Checksum, "byte {i} bit {bit}"),
            }
        }
    }
}

#[test]
fn file_from_other_settings_is_refused_naming_the_difference() {
    let bytes = serialized(&engine_with(MemoryMode::GuardPages));
    let why = refusal(&engine_with(MemoryMode::ExplicitBounds), &bytes);
    let DeserializeError::Settings { differences } = &why else {
        panic!("expected a settings mismatch, got: {why}");
    };
    assert_eq!(
        differences,
        "memory_bounds: fixed-base-guard-4295032832, moving-base-checked"
    );
    let mut config = Config::new();
    config.wasm_multi_memory(false);
    let why = refusal(&Engine::new(&config).unwrap(), &bytes);
    assert!(matches!(why, DeserializeError::Settings { .. }), "{why}");
    // Code without epoch checks or fuel accounting must not run where they are expected.
    let mut config = Config::new();
    config.epoch_interruption(true);
    let why = refusal(&Engine::new(&config).unwrap(), &bytes);
    assert!(
        matches!(&why, DeserializeError::Settings { differences } if differences == "epoch_interruption: false, true"),
        "{why}"
    );
    let mut config = Config::new();
    config.consume_fuel(true);
    let why = refusal(&Engine::new(&config).unwrap(), &bytes);
    assert!(
        matches!(&why, DeserializeError::Settings { differences } if differences == "consume_fuel: false, true"),
        "{why}"
    );
}

/// The header's strings in order (build id, target, CPU features, settings), the rest of the
/// body after them.
fn split_header(bytes: &[u8]) -> (Vec<String>, &[u8]) {
    let mut at = 24;
    let mut strings = Vec::new();
    for _ in 0..4 {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        strings.push(String::from_utf8(bytes[at + 4..at + 4 + len].to_vec()).unwrap());
        at += 4 + len;
    }
    (strings, &bytes[at..])
}

/// What another producer would write: `bytes` with header string `field` replaced, and a
/// correct length and checksum (so only the field differs).
fn with_header_field(bytes: &[u8], field: usize, value: &str) -> Vec<u8> {
    let (mut strings, rest) = split_header(bytes);
    strings[field] = value.to_string();
    let mut body = Vec::new();
    for s in &strings {
        body.extend_from_slice(&(s.len() as u32).to_le_bytes());
        body.extend_from_slice(s.as_bytes());
    }
    body.extend_from_slice(rest);
    let mut out = bytes[..12].to_vec();
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// CRC-32 (IEEE), bit by bit: the test's own, independent of the one weft uses.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn file_from_another_build_target_or_cpu_is_refused_with_its_own_error() {
    let engine = Engine::default();
    let bytes = serialized(&engine);
    // The rewriting itself is faithful: the unchanged header loads.
    let (strings, _) = split_header(&bytes);
    Module::deserialize(&engine, &with_header_field(&bytes, 0, &strings[0])).unwrap();

    let why = refusal(
        &engine,
        &with_header_field(&bytes, 0, "0.0.1+0123456789abcdef"),
    );
    assert!(
        matches!(&why, DeserializeError::Version { file, .. } if file == "0.0.1+0123456789abcdef"),
        "{why}"
    );
    let why = refusal(
        &engine,
        &with_header_field(&bytes, 1, "riscv64gc-unknown-linux-gnu"),
    );
    assert!(
        matches!(&why, DeserializeError::Target { file, .. } if file == "riscv64gc-unknown-linux-gnu"),
        "{why}"
    );
    // A CPU with one feature more than this one's list.
    let features = format!("{},has_imaginary_feature=true", strings[2]);
    let why = refusal(&engine, &with_header_field(&bytes, 2, &features));
    let DeserializeError::CpuFeatures { differences } = &why else {
        panic!("expected a CPU feature mismatch, got: {why}");
    };
    assert_eq!(differences, "has_imaginary_feature: true, (none)");
    assert!(
        Error::Deserialize(why.clone())
            .to_string()
            .starts_with("cannot load the compiled module: compiled for a CPU with other features"),
        "{why}"
    );
}

#[test]
fn wasm_and_other_bytes_are_not_serialized_modules() {
    let engine = Engine::default();
    let wasm = wat::parse_str("(module)").unwrap();
    assert!(!is_serialized_module(&wasm));
    assert_eq!(
        refusal(&engine, &wasm),
        DeserializeError::NotSerializedModule
    );
    assert_eq!(refusal(&engine, b""), DeserializeError::NotSerializedModule);
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-cache-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.sort();
    entries
}

#[test]
fn cache_stores_a_private_entry_and_a_damaged_entry_is_recompiled() {
    let dir = scratch("store");
    let mut config = Config::new();
    config.cache(Some(CacheConfig::new(&dir)));
    let engine = Engine::new(&config).unwrap();
    Module::new(&engine, WAT).unwrap();
    let stored = entries(&dir);
    assert_eq!(stored.len(), 1, "one entry, no temporary files: {stored:?}");
    let entry = &stored[0];
    assert_eq!(entry.extension().unwrap(), "cwasm");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(entry), 0o600);
    }
    let good = std::fs::read(entry).unwrap();
    assert_eq!(
        good,
        Module::new(&Engine::default(), WAT)
            .unwrap()
            .serialize()
            .unwrap()
    );

    // Damaged: the entry is replaced by a fresh compilation, and the module still works.
    let mut damaged = good.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    std::fs::write(entry, &damaged).unwrap();
    let module = Module::new(&engine, WAT).unwrap();
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[]).unwrap();
    assert_eq!(call(&mut store, &instance, "fib", &[10]).unwrap(), 55);
    assert_eq!(
        std::fs::read(entry).unwrap(),
        good,
        "the damaged entry was rewritten"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn cache_hit_serves_the_entry_and_a_key_collision_is_a_miss() {
    use std::os::unix::fs::MetadataExt;
    let dir = scratch("hit");
    let mut config = Config::new();
    config.cache(Some(CacheConfig::new(&dir)));
    let engine = Engine::new(&config).unwrap();
    Module::new(&engine, WAT).unwrap();
    let entry = entries(&dir).remove(0);
    // Every store replaces the entry by a rename, so a new inode means a miss was compiled and
    // stored; the same inode means the entry was served.
    let inode = || std::fs::metadata(&entry).unwrap().ino();
    let first = inode();
    let module = Module::new(&engine, WAT).unwrap();
    assert_eq!(module.exports().len(), 3);
    assert_eq!(inode(), first, "a hit serves the entry");
    // The serialization of another module under this key: loading it would run the wrong
    // code, but its Wasm bytes are not the ones asked for, so it is a miss.
    let other = Module::new(&Engine::default(), "(module (func (export \"fib\")))").unwrap();
    std::fs::write(&entry, other.serialize().unwrap()).unwrap();
    let module = Module::new(&engine, WAT).unwrap();
    assert_eq!(module.exports().len(), 3, "a key collision is not a hit");
    assert_ne!(inode(), first, "the wrong entry was replaced");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cache_evicts_least_recently_used_entries_beyond_its_limit() {
    let dir = scratch("evict");
    let name = |n: u32| format!("cache-test-entry-{n}");
    let module = |n: u32| {
        format!(
            "(module (func (export \"{}\") (result i32) (i32.const {n})))",
            name(n)
        )
    };
    let holds = |path: &std::path::Path, n: u32| {
        let bytes = std::fs::read(path).unwrap();
        let name = name(n);
        bytes.windows(name.len()).any(|w| w == name.as_bytes())
    };
    let size = Module::new(&Engine::default(), module(0))
        .unwrap()
        .serialize()
        .unwrap()
        .len() as u64;
    let mut config = Config::new();
    // Room for three entries (theirs differ by a few bytes at most).
    config.cache(Some(CacheConfig::new(&dir).max_bytes(3 * size + 16)));
    let engine = Engine::new(&config).unwrap();
    let day = std::time::Duration::from_secs(86_400);
    let age = |n: u32, days: u32| {
        let path = entries(&dir).into_iter().find(|p| holds(p, n)).unwrap();
        let file = std::fs::File::options().append(true).open(path).unwrap();
        file.set_modified(std::time::SystemTime::now() - day * days)
            .unwrap();
    };
    for n in 0..3 {
        Module::new(&engine, module(n)).unwrap();
        age(n, 10 - n);
    }
    // Using entry 0 makes it the most recent; the fourth entry evicts the least recent, 1.
    Module::new(&engine, module(0)).unwrap();
    Module::new(&engine, module(3)).unwrap();
    let kept: Vec<String> = entries(&dir)
        .iter()
        .map(|p| (0..4).find(|&n| holds(p, n)).unwrap().to_string())
        .collect();
    let mut kept = kept;
    kept.sort();
    assert_eq!(kept, ["0", "2", "3"]);
    std::fs::remove_dir_all(&dir).unwrap();
}
