# Four edits that let QuickJS 2021-03-27 build for wasm32-wasi (applied by programs/build.sh to
# quickjs.c; the other sources build unchanged). WASI has no threads (so no Atomics), a fenv
# with round-to-nearest only (so no directed-rounding printf fix-up) and no
# malloc_usable_size (QuickJS only uses it for memory statistics).
s|^#define CONFIG_ATOMICS$|/* wasm32-wasi: no threads, so no Atomics */|
s|^#define CONFIG_PRINTF_RNDN$|/* wasm32-wasi: fenv has round-to-nearest only */|
s|^    return malloc_usable_size(ptr);$|    return 0; /* wasm32-wasi has no malloc_usable_size */|
s|^    malloc_usable_size,$|    NULL, /* wasm32-wasi has no malloc_usable_size */|
