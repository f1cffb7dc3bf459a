//! What the start-cost figures (`examples/instances.rs`, the `pooled_start` cases of
//! `examples/call_counts.rs`) instantiate: a request-shaped module and the pooled layout for
//! many small instances. Included with `#[path]` by both.

use weft::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Each call stores its argument in the memory, waits in the async import `env.wait`, then
/// returns what it stored plus the byte (42) of its data segment.
pub const REQUEST_WAT: &str = r#"(module
  (import "env" "wait" (func $wait (param i32) (result i32)))
  (memory 1 1)
  (data (i32.const 8) "\2a")
  (func (export "run") (param i32) (result i32)
    (i32.store (i32.const 0) (local.get 0))
    (drop (call $wait (local.get 0)))
    (i32.add (i32.load (i32.const 0)) (i32.load8_u (i32.const 8)))))"#;

/// The layout for `count` small instances at once: checked accesses, a slot of one page
/// each, the first `keep_resident` bytes of a slot zeroed by hand rather than given back.
pub fn pooled_config(count: usize, keep_resident: usize) -> Config {
    let mut pool = PoolingAllocationConfig::new();
    pool.linear_memory_keep_resident(keep_resident)
        .total_memories(count as u32)
        .total_tables(count as u32)
        .total_core_instances(count as u32)
        .max_memory_size(1 << 16);
    let mut config = Config::new();
    config
        .memory_reservation(1 << 16)
        .memory_guard_size(0)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config.max_async_stacks(config.get_max_async_stacks().max(count + 64));
    config
}
