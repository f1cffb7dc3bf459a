#!/bin/sh
# Builds the two modules the Asyncify comparison runs, from fib.wat:
#   fib.wasm           the program as written, optimized by wasm-opt -O2 (what weft runs with its
#                      suspending imports);
#   fib.asyncify.wasm  the same after Binaryen's Asyncify pass, with env.promise_add and
#                      env.leaf as the imports that may unwind, then -O2 as emscripten does.
# Needs Debian's wabt (wat2wasm) and binaryen (wasm-opt). The outputs are committed, so the
# benchmarks do not need these tools; rerun this after editing fib.wat.
set -eu
cd "$(dirname "$0")"
wat2wasm --debug-names fib.wat -o fib.raw.wasm
wasm-opt -O2 -g fib.raw.wasm -o fib.wasm
wasm-opt -g --asyncify \
  --pass-arg=asyncify-imports@env.promise_add,env.leaf \
  -O2 fib.raw.wasm -o fib.asyncify.wasm
rm fib.raw.wasm
wat2wasm --version | sed 's/^/wat2wasm /'
wasm-opt --version
ls -l fib.wasm fib.asyncify.wasm
