#!/usr/bin/env bash
# Rebuilds the WASI guest programs in programs/wasm/ from source, then checks each one: the
# same source built natively must print its golden output (expected.txt), the modules may
# import nothing but wasi_snapshot_preview1, and, when `node` is installed, each .wasm run on
# Node's own WASI must print the golden output too.
#
#     programs/build.sh            # build into programs/wasm/ and check
#     KEEP_WORK=1 programs/build.sh  # keep the scratch directory (printed at the end)
#
# Needs (Debian 12 packages): clang-14 (clang), lld-14 (wasm-ld), wasi-libc,
# libclang-rt-14-dev-wasm32, wabt (wasm-strip, wasm-objdump), sqlite3 (the CLI, for checking
# the database file); and rustup's wasm32-wasip1 target, cargo (to fetch the SQLite
# amalgamation from the libsqlite3-sys crate). Optional: nodejs (>= 20) for the wasm runs.
# CI needs none of this: the built modules are committed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out="$here/wasm"
work=$(mktemp -d "${TMPDIR:-/tmp}/weft-programs.XXXXXX")
if [[ -z "${KEEP_WORK:-}" ]]; then
    trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$out"

step() { printf '\n== %s\n' "$*"; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

for tool in clang wasm-ld wasm-strip wasm-objdump sqlite3 cargo rustup; do
    command -v "$tool" >/dev/null || die "$tool not found (see the header of this script)"
done
[[ -e /usr/lib/wasm32-wasi/libc.a ]] || die "wasi-libc is not installed (apt-get install wasi-libc)"
rustup target list --installed | grep -qx wasm32-wasip1 \
    || die "rustup target wasm32-wasip1 missing (rustup target add wasm32-wasip1)"

# Plain C flags for every wasm32-wasi build. --stack-first puts the shadow stack below the
# data, so an overflow runs off address 0 and traps instead of overwriting globals.
WASI_CC=(clang --target=wasm32-wasi -O2 -Wall -Wl,--stack-first)

# Fails unless every import of the module comes from wasi_snapshot_preview1.
check_imports() {
    local wasm=$1 others
    others=$(wasm-objdump -x -j Import "$wasm" | grep -- ' <- ' | grep -v ' <- wasi_snapshot_preview1\.' || true)
    [[ -z "$others" ]] || die "$wasm imports more than WASI preview1:"$'\n'"$others"
    printf '%s: %s bytes, imports:' "$(basename "$wasm")" "$(stat -c %s "$wasm")"
    wasm-objdump -x -j Import "$wasm" | sed -n 's/.* <- wasi_snapshot_preview1\./ /p' | tr -d '\n'
    echo
}

# Compares a program's output with its golden file.
check_output() {
    local what=$1 expected=$2 actual=$3
    if ! diff -u "$expected" "$actual"; then
        die "$what: output differs from $expected"
    fi
    echo "$what: output matches $(basename "$(dirname "$expected")")/$(basename "$expected")"
}

check_status() {
    local what=$1 expected=$2 actual=$3
    [[ "$actual" == "$expected" ]] || die "$what: exit status $actual, expected $expected"
}

# The wasm runs need Node's WASI (node >= 20); without node they are skipped, loudly.
have_node=
if command -v node >/dev/null; then have_node=1; fi
node_run() { node --no-warnings "$here/tools/node-wasi-run.mjs" "$@"; }
skipped() { echo "node not installed: $1 not run as wasm"; }

# ---------------------------------------------------------------------------------------------
step "SQLite amalgamation (from the libsqlite3-sys crate)"
# The version is pinned here and the files' hashes in sqlite/amalgamation.sha256; cargo checks
# the crate's own checksum against crates.io's index.
LIBSQLITE3_SYS_VERSION=0.40.0
mkdir -p "$work/fetch/src"
cat >"$work/fetch/Cargo.toml" <<EOF
[package]
name = "fetch-sqlite-amalgamation"
version = "0.0.0"
edition = "2021"
publish = false
[dependencies]
libsqlite3-sys = { version = "=$LIBSQLITE3_SYS_VERSION", features = ["bundled"] }
[workspace]
EOF
echo 'fn main() {}' >"$work/fetch/src/main.rs"
cargo fetch --quiet --manifest-path "$work/fetch/Cargo.toml"
crate_dir=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"libsqlite3-sys-$LIBSQLITE3_SYS_VERSION" | head -n1)
[[ -d "$crate_dir" ]] || die "cargo fetch did not unpack libsqlite3-sys-$LIBSQLITE3_SYS_VERSION"
mkdir -p "$work/sqlite"
cp "$crate_dir/sqlite3/sqlite3.c" "$crate_dir/sqlite3/sqlite3.h" "$work/sqlite/"
(cd "$work/sqlite" && sha256sum --check --quiet "$here/sqlite/amalgamation.sha256") \
    || die "the SQLite amalgamation does not match sqlite/amalgamation.sha256"
grep -m1 '#define SQLITE_VERSION ' "$work/sqlite/sqlite3.h"

# SQLite's compile-time options; README.md says why each one is here. SQLite itself detects
# __wasi__ and then picks the "unix-dotfile" VFS (locks are directories made with mkdir), no
# mmap, no shared-memory WAL index, no fchmod/fchown.
SQLITE_FLAGS=(
    -DSQLITE_THREADSAFE=0
    -DSQLITE_OMIT_LOAD_EXTENSION
    -DSQLITE_OMIT_WAL
    -DSQLITE_MAX_MMAP_SIZE=0
    -DSQLITE_TEMP_STORE=3
    -DSQLITE_DEFAULT_MEMSTATUS=0
    -DSQLITE_OMIT_DEPRECATED
    -DSQLITE_OMIT_SHARED_CACHE
    -DSQLITE_DQS=0
    # A helper that only the mmap code (compiled out above) calls.
    -Wno-unused-function
)

step "SQLite driver: wasm32-wasi"
"${WASI_CC[@]}" -Wl,-z,stack-size=1048576 "${SQLITE_FLAGS[@]}" -I"$work/sqlite" \
    "$work/sqlite/sqlite3.c" "$here/sqlite/driver.c" -o "$work/sqlite-driver.wasm"
wasm-strip "$work/sqlite-driver.wasm"
install -m 644 "$work/sqlite-driver.wasm" "$out/sqlite-driver.wasm"
check_imports "$out/sqlite-driver.wasm"

step "SQLite driver: native, against the same amalgamation"
clang -O2 -Wall "${SQLITE_FLAGS[@]}" -I"$work/sqlite" \
    "$work/sqlite/sqlite3.c" "$here/sqlite/driver.c" -lm -o "$work/sqlite-driver"
mkdir "$work/sqlite-native"
status=0
"$work/sqlite-driver" "$work/sqlite-native/test.db" >"$work/sqlite-native.out" || status=$?
check_status "native sqlite-driver" 0 "$status"
check_output "native sqlite-driver" "$here/sqlite/expected.txt" "$work/sqlite-native.out"
# Another SQLite (the Debian CLI) must read the file the driver wrote.
[[ "$(sqlite3 "$work/sqlite-native/test.db" 'PRAGMA integrity_check; SELECT count(*), sum(temp), max(id) FROM reading;')" \
    == $'ok\n8576|85700|9999' ]] || die "the sqlite3 CLI does not find the driver's rows"
echo "sqlite3 CLI reads the native driver's database: ok, 8576|85700|9999"

if [[ -z "$have_node" ]]; then
    skipped sqlite-driver
else
    mkdir "$work/sqlite-wasm"
    status=0
    node_run --dir "$work/sqlite-wasm::/data" "$out/sqlite-driver.wasm" /data/test.db \
        >"$work/sqlite-wasm.out" || status=$?
    check_status "sqlite-driver.wasm on node" 0 "$status"
    check_output "sqlite-driver.wasm on node" "$here/sqlite/expected.txt" "$work/sqlite-wasm.out"
    [[ "$(sqlite3 "$work/sqlite-wasm/test.db" 'PRAGMA integrity_check; SELECT count(*), sum(temp), max(id) FROM reading;')" \
        == $'ok\n8576|85700|9999' ]] || die "the sqlite3 CLI does not find the wasm driver's rows"
    [[ "$(ls -A "$work/sqlite-wasm")" == test.db ]] || die "the wasm driver left files behind"
    cmp "$work/sqlite-native/test.db" "$work/sqlite-wasm/test.db" \
        && echo "the wasm driver's database file is byte-identical to the native one's"
fi

# ---------------------------------------------------------------------------------------------
# The same stdin, environment and arguments for the native and the wasm run.
rust_env=(RUST_WASI_NAME=weft 'RUST_WASI_QUOTE=say "hi"')

step "Rust std program: wasm32-wasip1 and native"
export CARGO_TARGET_DIR="$work/rust-target"
export RUSTFLAGS="--remap-path-prefix=$here=programs --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=cargo"
cargo build --quiet --locked --release --target wasm32-wasip1 --manifest-path "$here/rust-wasi/Cargo.toml"
cargo build --quiet --locked --release --manifest-path "$here/rust-wasi/Cargo.toml"
unset RUSTFLAGS CARGO_TARGET_DIR
install -m 644 "$work/rust-target/wasm32-wasip1/release/rust-wasi.wasm" "$out/rust-wasi.wasm"
check_imports "$out/rust-wasi.wasm"

mkdir "$work/rust-native"
status=0
env -i "${rust_env[@]}" "$work/rust-target/release/rust-wasi" "$work/rust-native" alpha 'beta gamma' \
    <"$here/rust-wasi/stdin.txt" >"$work/rust-native.out" || status=$?
check_status "native rust-wasi" 17 "$status"
check_output "native rust-wasi" "$here/rust-wasi/expected.txt" "$work/rust-native.out"
[[ -z "$(ls -A "$work/rust-native")" ]] || die "native rust-wasi left files behind"

if [[ -z "$have_node" ]]; then
    skipped rust-wasi
else
    mkdir "$work/rust-wasm"
    status=0
    node_run --dir "$work/rust-wasm::/sandbox" --env "${rust_env[0]}" --env "${rust_env[1]}" \
        "$out/rust-wasi.wasm" /sandbox alpha 'beta gamma' \
        <"$here/rust-wasi/stdin.txt" >"$work/rust-wasm.out" || status=$?
    check_status "rust-wasi.wasm on node" 17 "$status"
    check_output "rust-wasi.wasm on node" "$here/rust-wasi/expected.txt" "$work/rust-wasm.out"
    [[ -z "$(ls -A "$work/rust-wasm")" ]] || die "rust-wasi.wasm left files behind"
fi

# ---------------------------------------------------------------------------------------------
step "Sleeper: wasm32-wasi and native"
# A small stack keeps each instance's memory at one 64 KiB page until malloc grows it.
"${WASI_CC[@]}" -Wextra -Wl,-z,stack-size=16384 "$here/sleeper/sleeper.c" -o "$work/sleeper.wasm"
wasm-strip "$work/sleeper.wasm"
install -m 644 "$work/sleeper.wasm" "$out/sleeper.wasm"
check_imports "$out/sleeper.wasm"
clang -O2 -Wall -Wextra "$here/sleeper/sleeper.c" -o "$work/sleeper"
status=0
(cd "$here/sleeper" && "$work/sleeper" 200 greeting.txt) >"$work/sleeper-native.out" || status=$?
check_status "native sleeper" 0 "$status"
check_output "native sleeper" "$here/sleeper/expected.txt" "$work/sleeper-native.out"
if [[ -z "$have_node" ]]; then
    skipped sleeper
else
    status=0
    node_run --dir "$here/sleeper::/data" "$out/sleeper.wasm" 200 /data/greeting.txt \
        >"$work/sleeper-wasm.out" || status=$?
    check_status "sleeper.wasm on node" 0 "$status"
    check_output "sleeper.wasm on node" "$here/sleeper/expected.txt" "$work/sleeper-wasm.out"
fi

# ---------------------------------------------------------------------------------------------
step "QuickJS (Fabrice Bellard's JavaScript engine, 2021-03-27, MIT): wasm32-wasi and native"
# The C sources come from the PyPI package `quickjs` (its sdist carries them unchanged in
# upstream-quickjs/); the archive's and every file's hash are pinned. quickjs-wasi.sed makes
# the WASI edits, and the native build uses the same edited source, so both run one engine.
QUICKJS_SDIST=quickjs-1.19.4.tar.gz
QUICKJS_SDIST_SHA256=1205953abc24ff757f4a795304d5d61e4bf1e555c9ef6ec96a132d4b95535484
python3 -m pip download --quiet --no-deps --no-binary :all: --dest "$work/fetch-qjs" quickjs==1.19.4
echo "$QUICKJS_SDIST_SHA256  $work/fetch-qjs/$QUICKJS_SDIST" | sha256sum --check --quiet \
    || die "$QUICKJS_SDIST does not have the pinned hash"
tar -xzf "$work/fetch-qjs/$QUICKJS_SDIST" -C "$work/fetch-qjs"
qjs_src="$work/fetch-qjs/${QUICKJS_SDIST%.tar.gz}/upstream-quickjs"
(cd "$qjs_src" && sha256sum --check --quiet "$here/quickjs/sources.sha256") \
    || die "the QuickJS sources do not match quickjs/sources.sha256"
mkdir -p "$work/quickjs-src"
cp "$qjs_src"/*.h "$qjs_src"/*.c "$work/quickjs-src/"
sed -f "$here/quickjs/quickjs-wasi.sed" "$qjs_src/quickjs.c" >"$work/quickjs-src/quickjs.c"
[[ $(diff "$qjs_src/quickjs.c" "$work/quickjs-src/quickjs.c" | grep -c '^>') == 5 ]] \
    || die "quickjs-wasi.sed did not make its five line edits"
QJS_FLAGS=(-DCONFIG_VERSION='"2021-03-27"' -DCONFIG_BIGNUM -D_GNU_SOURCE -I"$work/quickjs-src"
    # Warnings of QuickJS's own code, not ours.
    -Wno-implicit-const-int-float-conversion -Wno-unused-but-set-variable)
QJS_SOURCES=("$work"/quickjs-src/{quickjs,libregexp,libunicode,cutils,libbf}.c "$here/quickjs/driver.c")
# A 1 MiB shadow stack: the driver limits JavaScript recursion to 768 KiB of it.
"${WASI_CC[@]}" -Wl,-z,stack-size=1048576 "${QJS_FLAGS[@]}" "${QJS_SOURCES[@]}" -lm \
    -o "$work/quickjs.wasm"
wasm-strip "$work/quickjs.wasm"
install -m 644 "$work/quickjs.wasm" "$out/quickjs.wasm"
check_imports "$out/quickjs.wasm"
clang -O2 -Wall "${QJS_FLAGS[@]}" "${QJS_SOURCES[@]}" -lm -o "$work/quickjs"
status=0
(cd "$here/quickjs" && "$work/quickjs" workload.js first second) >"$work/quickjs-native.out" \
    || status=$?
check_status "native quickjs" 0 "$status"
check_output "native quickjs" "$here/quickjs/expected.txt" "$work/quickjs-native.out"
if [[ -z "$have_node" ]]; then
    skipped quickjs
else
    status=0
    # The workload's deepest recursion (its caught stack overflow) needs more native stack than
    # V8 gives Wasm by default; 7,000 KB stays inside the main thread's usual 8 MiB.
    (cd "$here/quickjs" && node --no-warnings --stack-size=7000 "$here/tools/node-wasi-run.mjs" \
        --dir . "$out/quickjs.wasm" workload.js first second) >"$work/quickjs-wasm.out" || status=$?
    check_status "quickjs.wasm on node" 0 "$status"
    check_output "quickjs.wasm on node" "$here/quickjs/expected.txt" "$work/quickjs-wasm.out"
fi

step "Done"
ls -l "$out"
(cd "$out" && sha256sum ./*.wasm)
if [[ -n "${KEEP_WORK:-}" ]]; then echo "scratch directory kept: $work"; fi
