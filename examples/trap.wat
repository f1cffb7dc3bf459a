;; A load past the end of memory traps: `weft run examples/trap.wat --invoke middle 70000`
(module $demo
  (memory 1)
  (func $inner (param i32) (result i32) (i32.load (local.get 0)))
  (func $middle (export "middle") (param i32) (result i32) (call $inner (local.get 0))))
