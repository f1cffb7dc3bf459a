;; The recursive programs the benchmark suite runs twice: as written, on weft's suspending
;; imports, and rewritten by Binaryen's Asyncify (see build.sh). `promise_add` and `leaf` are
;; the imports that may suspend; `add` never does.
(module
  (import "env" "add" (func $add (param i32 i32) (result i32)))
  (import "env" "promise_add" (func $promise_add (param i32 i32) (result i32)))
  (import "env" "leaf" (func $leaf (param i32) (result i32)))
  ;; Asyncify's data buffers live here; the driver picks the addresses (2 MiB + 64 KiB).
  (memory (export "memory") 33)

  ;; JSPI's badfib, three ways: additions in Wasm, through a synchronous import, through a
  ;; suspending one.
  (func $local_fib (export "local_fib") (param $n i32) (result i32)
    (if (result i32) (i32.lt_s (local.get $n) (i32.const 2))
      (then (local.get $n))
      (else
        (i32.add
          (call $local_fib (i32.sub (local.get $n) (i32.const 1)))
          (call $local_fib (i32.sub (local.get $n) (i32.const 2)))))))
  (func $js_fib (export "js_fib") (param $n i32) (result i32)
    (if (result i32) (i32.lt_s (local.get $n) (i32.const 2))
      (then (local.get $n))
      (else
        (call $add
          (call $js_fib (i32.sub (local.get $n) (i32.const 1)))
          (call $js_fib (i32.sub (local.get $n) (i32.const 2)))))))
  (func $promise_fib (export "promise_fib") (param $n i32) (result i32)
    (if (result i32) (i32.lt_s (local.get $n) (i32.const 2))
      (then (local.get $n))
      (else
        (call $promise_add
          (call $promise_fib (i32.sub (local.get $n) (i32.const 1)))
          (call $promise_fib (i32.sub (local.get $n) (i32.const 2)))))))

  ;; fib whose leaves come from the import: additions in Wasm, a possible suspension per leaf.
  (func $leaf_fib (export "leaf_fib") (param $n i32) (result i32)
    (if (result i32) (i32.lt_s (local.get $n) (i32.const 2))
      (then (call $leaf (local.get $n)))
      (else
        (i32.add
          (call $leaf_fib (i32.sub (local.get $n) (i32.const 1)))
          (call $leaf_fib (i32.sub (local.get $n) (i32.const 2)))))))

  ;; Recurses $n deep, calls the import once at the bottom, and returns leaf(0) + n.
  (func $deep (export "deep") (param $n i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n))
      (then (call $leaf (i32.const 0)))
      (else
        (i32.add
          (call $deep (i32.sub (local.get $n) (i32.const 1)))
          (i32.const 1))))))
