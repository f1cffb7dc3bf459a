//! Each preview1 function family through weft, with both bindings where the difference
//! matters, and the bad input of issue 8: wild pointers, closed descriptors, path escapes,
//! renumbering onto a preopen.

use crate::common::*;
use weft::Val;
use weft_wasi::{DirPerms, FilePerms, MemoryInputPipe, MemoryOutputPipe, WasiCtx, exit_code};

fn both(test: impl Fn(Binding)) {
    test(Binding::Sync);
    test(Binding::Async);
}

/// Sync calls into a guest linked with the async binding reach suspending imports outside a
/// promising call; run those on a current-thread runtime instead.
fn call_in(guest: &mut Guest, binding: Binding, name: &str, args: &[Val]) -> i32 {
    match binding {
        Binding::Sync => guest.call(name, args),
        Binding::Async => runtime()
            .block_on(guest.call_async(name, args))
            .unwrap_or_else(|e| panic!("{name}: {e}")),
    }
}

#[test]
fn args_and_environ_are_c_strings_with_pointers() {
    both(|binding| {
        let ctx = WasiCtx::builder()
            .args(["prog", "a b"])
            .env("K", "v")
            .build()
            .unwrap();
        let mut g = Guest::new(ctx, binding);
        assert_eq!(
            call_in(&mut g, binding, "args_sizes_get", &[i(0), i(4)]),
            SUCCESS
        );
        assert_eq!((g.u32(0), g.u32(4)), (2, 9));
        assert_eq!(
            call_in(&mut g, binding, "args_get", &[i(100), i(200)]),
            SUCCESS
        );
        assert_eq!((g.u32(100), g.u32(104)), (200, 205));
        assert_eq!(g.read(200, 9), b"prog\0a b\0");
        assert_eq!(
            call_in(&mut g, binding, "environ_sizes_get", &[i(0), i(4)]),
            SUCCESS
        );
        assert_eq!((g.u32(0), g.u32(4)), (1, 4));
        assert_eq!(
            call_in(&mut g, binding, "environ_get", &[i(100), i(200)]),
            SUCCESS
        );
        assert_eq!(g.read(200, 4), b"K=v\0");
    });
}

#[test]
fn builder_rejects_nul_bytes_and_bad_names() {
    assert!(WasiCtx::builder().arg("a\0b").build().is_err());
    assert!(WasiCtx::builder().env("A=B", "c").build().is_err());
    assert!(WasiCtx::builder().env("", "c").build().is_err());
    assert!(
        WasiCtx::builder()
            .preopened_dir("/no/such/dir/here", "/", DirPerms::ALL, FilePerms::ALL)
            .build()
            .is_err()
    );
}

#[test]
fn fd_write_to_stdout_and_stderr_reaches_memory_pipes() {
    both(|binding| {
        let (out, err) = (MemoryOutputPipe::new(), MemoryOutputPipe::new());
        let ctx = WasiCtx::builder()
            .stdout(out.clone())
            .stderr(err.clone())
            .build()
            .unwrap();
        let mut g = Guest::new(ctx, binding);
        g.write(1000, b"hello, ");
        g.write(1100, b"world");
        g.iovec(0, 1000, 7);
        g.iovec(8, 1100, 5);
        assert_eq!(
            call_in(&mut g, binding, "fd_write", &[i(1), i(0), i(2), i(50)]),
            SUCCESS
        );
        assert_eq!(g.u32(50), 12);
        assert_eq!(
            call_in(&mut g, binding, "fd_write", &[i(2), i(8), i(1), i(50)]),
            SUCCESS
        );
        assert_eq!(out.contents(), b"hello, world");
        assert_eq!(err.contents(), b"world");
    });
}

#[test]
fn fd_read_from_stdin_pipe_then_end_of_file_reads_nothing() {
    both(|binding| {
        let ctx = WasiCtx::builder()
            .stdin(MemoryInputPipe::new("line\n"))
            .stdout(MemoryOutputPipe::new())
            .build()
            .unwrap();
        let mut g = Guest::new(ctx, binding);
        g.iovec(0, 1000, 3);
        g.iovec(8, 1100, 100);
        assert_eq!(
            call_in(&mut g, binding, "fd_read", &[i(0), i(0), i(2), i(50)]),
            SUCCESS
        );
        assert_eq!(g.u32(50), 5);
        assert_eq!(g.read(1000, 3), b"lin");
        assert_eq!(g.read(1100, 2), b"e\n");
        assert_eq!(
            call_in(&mut g, binding, "fd_read", &[i(0), i(0), i(2), i(50)]),
            SUCCESS
        );
        assert_eq!(g.u32(50), 0);
        // stdout is not readable, stdin is not writable
        assert_eq!(
            call_in(&mut g, binding, "fd_read", &[i(1), i(0), i(1), i(50)]),
            EBADF
        );
        assert_eq!(
            call_in(&mut g, binding, "fd_write", &[i(0), i(0), i(1), i(50)]),
            EBADF
        );
    });
}

#[test]
fn wild_pointers_are_efault_and_write_nothing() {
    both(|binding| {
        let out = MemoryOutputPipe::new();
        let ctx = WasiCtx::builder()
            .args(["prog"])
            .stdout(out.clone())
            .build()
            .unwrap();
        let mut g = Guest::new(ctx, binding);
        let end = 65536u32;
        // An iovec whose buffer runs past the end of memory.
        g.iovec(0, end - 4, 8);
        assert_eq!(
            call_in(&mut g, binding, "fd_write", &[i(1), i(0), i(1), i(50)]),
            EFAULT
        );
        // The iovec array itself out of bounds, and one whose size overflows.
        assert_eq!(
            call_in(
                &mut g,
                binding,
                "fd_write",
                &[i(1), i(end - 4), i(1), i(50)]
            ),
            EFAULT
        );
        assert_eq!(
            call_in(
                &mut g,
                binding,
                "fd_write",
                &[i(1), i(0), i(u32::MAX), i(50)]
            ),
            EFAULT
        );
        // The result pointer out of bounds: nothing is written to stdout either.
        g.write(1000, b"x");
        g.iovec(8, 1000, 1);
        assert_eq!(
            call_in(&mut g, binding, "fd_write", &[i(1), i(8), i(1), i(end - 2)]),
            EFAULT
        );
        assert_eq!(
            call_in(
                &mut g,
                binding,
                "fd_write",
                &[i(1), i(8), i(1), i(u32::MAX)]
            ),
            EFAULT
        );
        assert!(out.contents().is_empty());
        // Other families.
        assert_eq!(
            call_in(&mut g, binding, "args_get", &[i(end - 2), i(100)]),
            EFAULT
        );
        assert_eq!(
            call_in(&mut g, binding, "args_get", &[i(0), i(end - 2)]),
            EFAULT
        );
        assert_eq!(
            call_in(&mut g, binding, "clock_time_get", &[i(0), I(0), i(end - 7)]),
            EFAULT
        );
        assert_eq!(
            call_in(&mut g, binding, "random_get", &[i(end - 10), i(11)]),
            EFAULT
        );
        assert_eq!(
            call_in(&mut g, binding, "random_get", &[i(u32::MAX), i(2)]),
            EFAULT
        );
        assert_eq!(
            call_in(&mut g, binding, "fd_fdstat_get", &[i(1), i(end - 8)]),
            EFAULT
        );
        assert_eq!(
            call_in(
                &mut g,
                binding,
                "poll_oneoff",
                &[i(end - 8), i(0), i(1), i(50)]
            ),
            EFAULT
        );
        assert_eq!(
            call_in(
                &mut g,
                binding,
                "poll_oneoff",
                &[i(0), i(0), i(u32::MAX), i(50)]
            ),
            EFAULT
        );
    });
}

#[test]
fn closed_and_unknown_descriptors_are_ebadf() {
    both(|binding| {
        let ctx = WasiCtx::builder()
            .stdin(MemoryInputPipe::new("data"))
            .build()
            .unwrap();
        let mut g = Guest::new(ctx, binding);
        g.iovec(0, 1000, 4);
        assert_eq!(call_in(&mut g, binding, "fd_close", &[i(0)]), SUCCESS);
        assert_eq!(
            call_in(&mut g, binding, "fd_read", &[i(0), i(0), i(1), i(50)]),
            EBADF
        );
        assert_eq!(call_in(&mut g, binding, "fd_close", &[i(0)]), EBADF);
        assert_eq!(
            call_in(&mut g, binding, "fd_read", &[i(99), i(0), i(1), i(50)]),
            EBADF
        );
        assert_eq!(
            call_in(&mut g, binding, "fd_fdstat_get", &[i(1234), i(100)]),
            EBADF
        );
        assert_eq!(
            call_in(&mut g, binding, "fd_prestat_get", &[i(1), i(100)]),
            EBADF
        );
        assert_eq!(
            call_in(&mut g, binding, "fd_seek", &[i(1), I(0), i(0), i(100)]),
            ESPIPE
        );
    });
}

#[test]
fn proc_exit_is_a_typed_exit_not_a_trap_and_output_is_flushed() {
    let out = MemoryOutputPipe::new();
    let ctx = WasiCtx::builder().stdout(out.clone()).build().unwrap();
    let mut g = Guest::new(ctx, Binding::Sync);
    assert_eq!(g.write_fd(1, b"bye").unwrap(), 3);
    let func = g.func("call_proc_exit");
    let error = func.call(&mut g.store, &[i(7)], &mut []).unwrap_err();
    assert_eq!(exit_code(&error), Some(7));
    assert_eq!(error.trap(), None);
    assert_eq!(out.contents(), b"bye");

    let ctx = WasiCtx::builder().build().unwrap();
    let mut g = Guest::new(ctx, Binding::Async);
    let func = g.func("call_proc_exit");
    let error = runtime()
        .block_on(func.call_async(&mut g.store, &[i(3)], &mut []))
        .unwrap_err();
    assert_eq!(exit_code(&error), Some(3));
}

#[test]
fn clocks_tick_and_unknown_clock_is_einval() {
    both(|binding| {
        let mut g = Guest::new(WasiCtx::builder().build().unwrap(), binding);
        assert_eq!(
            call_in(&mut g, binding, "clock_time_get", &[i(1), I(1), i(0)]),
            SUCCESS
        );
        let first = g.u64(0);
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_eq!(
            call_in(&mut g, binding, "clock_time_get", &[i(1), I(1), i(8)]),
            SUCCESS
        );
        assert!(g.u64(8) > first);
        assert_eq!(
            call_in(&mut g, binding, "clock_time_get", &[i(0), I(1), i(0)]),
            SUCCESS
        );
        // After 2020-01-01 in nanoseconds.
        assert!(g.u64(0) > 1_577_836_800_000_000_000);
        for id in 0..4 {
            assert_eq!(
                call_in(&mut g, binding, "clock_res_get", &[i(id), i(0)]),
                SUCCESS
            );
            assert!(g.u64(0) > 0);
        }
        assert_eq!(
            call_in(&mut g, binding, "clock_time_get", &[i(9), I(1), i(0)]),
            EINVAL
        );
        assert_eq!(
            call_in(&mut g, binding, "clock_res_get", &[i(9), i(0)]),
            EINVAL
        );
    });
}

#[test]
fn random_get_fills_the_buffer() {
    both(|binding| {
        let mut g = Guest::new(WasiCtx::builder().build().unwrap(), binding);
        assert_eq!(
            call_in(&mut g, binding, "random_get", &[i(0), i(4096)]),
            SUCCESS
        );
        let bytes = g.read(0, 4096);
        assert!(bytes.iter().filter(|&&b| b == 0).count() < 100);
        assert_eq!(
            call_in(&mut g, binding, "random_get", &[i(0), i(0)]),
            SUCCESS
        );
    });
}

#[test]
fn sched_yield_and_proc_raise() {
    both(|binding| {
        let mut g = Guest::new(WasiCtx::builder().build().unwrap(), binding);
        assert_eq!(call_in(&mut g, binding, "sched_yield", &[]), SUCCESS);
        // Signals do not exist in preview1 hosts worth the name.
        assert_eq!(call_in(&mut g, binding, "proc_raise", &[i(9)]), 52);
    });
}

/// Writes one clock subscription (relative, monotonic) at `at`.
fn clock_subscription(g: &mut Guest, at: u32, userdata: u64, nanos: u64) {
    let mut sub = [0u8; 48];
    sub[0..8].copy_from_slice(&userdata.to_le_bytes());
    sub[8] = 0;
    sub[16..20].copy_from_slice(&1u32.to_le_bytes());
    sub[24..32].copy_from_slice(&nanos.to_le_bytes());
    g.write(at, &sub);
}

fn fd_subscription(g: &mut Guest, at: u32, userdata: u64, fd: u32, write: bool) {
    let mut sub = [0u8; 48];
    sub[0..8].copy_from_slice(&userdata.to_le_bytes());
    sub[8] = if write { 2 } else { 1 };
    sub[16..20].copy_from_slice(&fd.to_le_bytes());
    g.write(at, &sub);
}

#[test]
fn poll_oneoff_sleeps_for_a_clock_and_reports_fd_events() {
    both(|binding| {
        let ctx = WasiCtx::builder()
            .stdin(MemoryInputPipe::new("abc"))
            .build()
            .unwrap();
        let mut g = Guest::new(ctx, binding);
        clock_subscription(&mut g, 0, 42, 30_000_000);
        let start = std::time::Instant::now();
        assert_eq!(
            call_in(
                &mut g,
                binding,
                "poll_oneoff",
                &[i(0), i(1000), i(1), i(2000)]
            ),
            SUCCESS
        );
        assert!(start.elapsed() >= std::time::Duration::from_millis(30));
        assert_eq!(g.u32(2000), 1);
        assert_eq!(g.u64(1000), 42);
        assert_eq!(g.read(1008, 3), [0, 0, 0]); // no error, type clock

        // An fd that is ready wins over a long clock; a bad fd reports EBADF in its event.
        clock_subscription(&mut g, 0, 1, 10_000_000_000);
        fd_subscription(&mut g, 48, 2, 0, false);
        fd_subscription(&mut g, 96, 3, 77, true);
        let start = std::time::Instant::now();
        assert_eq!(
            call_in(
                &mut g,
                binding,
                "poll_oneoff",
                &[i(0), i(1000), i(3), i(2000)]
            ),
            SUCCESS
        );
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(g.u32(2000), 2);
        assert_eq!(g.u64(1000), 2);
        assert_eq!(g.read(1010, 1), [1]); // fd_read
        assert_eq!(g.u64(1016), 3); // bytes available
        assert_eq!(g.u64(1032), 3);
        assert_eq!(
            u16::from_le_bytes(g.read(1040, 2).try_into().unwrap()),
            EBADF as u16
        );

        assert_eq!(
            call_in(
                &mut g,
                binding,
                "poll_oneoff",
                &[i(0), i(1000), i(0), i(2000)]
            ),
            EINVAL
        );
    });
}

#[test]
fn sock_calls_on_non_sockets_are_enotsock() {
    both(|binding| {
        let mut g = Guest::new(WasiCtx::builder().build().unwrap(), binding);
        assert_eq!(
            call_in(&mut g, binding, "sock_accept", &[i(1), i(0), i(0)]),
            ENOTSOCK
        );
        assert_eq!(
            call_in(&mut g, binding, "sock_shutdown", &[i(1), i(3)]),
            ENOTSOCK
        );
        assert_eq!(
            call_in(
                &mut g,
                binding,
                "sock_recv",
                &[i(0), i(0), i(0), i(0), i(8), i(16)]
            ),
            ENOTSOCK
        );
        assert_eq!(
            call_in(
                &mut g,
                binding,
                "sock_send",
                &[i(1), i(0), i(0), i(0), i(8)]
            ),
            ENOTSOCK
        );
        assert_eq!(
            call_in(&mut g, binding, "sock_shutdown", &[i(40), i(3)]),
            EBADF
        );
    });
}

#[test]
fn sockets_handed_in_accept_receive_send_and_shut_down() {
    both(|binding| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let ctx = WasiCtx::builder()
            .preopened_socket(listener)
            .build()
            .unwrap();
        let mut g = Guest::new(ctx, binding);
        let client = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect(address).unwrap();
            stream.write_all(b"ping").unwrap();
            let mut reply = Vec::new();
            stream.read_to_end(&mut reply).unwrap();
            reply
        });
        assert_eq!(
            call_in(&mut g, binding, "sock_accept", &[i(3), i(0), i(0)]),
            SUCCESS
        );
        let fd = g.u32(0);
        g.iovec(100, 1000, 4);
        assert_eq!(
            call_in(
                &mut g,
                binding,
                "sock_recv",
                &[i(fd), i(100), i(1), i(2), i(200), i(204)]
            ),
            SUCCESS
        );
        assert_eq!(g.u32(200), 4);
        assert_eq!(g.read(1000, 4), b"ping");
        g.write(1000, b"pong");
        assert_eq!(
            call_in(
                &mut g,
                binding,
                "sock_send",
                &[i(fd), i(100), i(1), i(0), i(200)]
            ),
            SUCCESS
        );
        assert_eq!(g.u32(200), 4);
        assert_eq!(
            call_in(&mut g, binding, "sock_shutdown", &[i(fd), i(3)]),
            SUCCESS
        );
        assert_eq!(client.join().unwrap(), b"pong");
        assert_eq!(
            call_in(&mut g, binding, "sock_shutdown", &[i(fd), i(9)]),
            EINVAL
        );
    });
}

#[test]
fn module_without_memory_export_fails_the_call_cleanly() {
    let engine = engine();
    let module = weft::Module::new(
        &engine,
        wat::parse_str(
            r#"(module
                (import "wasi_snapshot_preview1" "sched_yield" (func $y (result i32)))
                (import "wasi_snapshot_preview1" "fd_close" (func $c (param i32) (result i32)))
                (func (export "close") (result i32) i32.const 1 call $c))"#,
        )
        .unwrap(),
    )
    .unwrap();
    let mut linker = weft::Linker::new(&engine);
    weft_wasi::add_to_linker_sync(&mut linker, |c: &mut WasiCtx| c).unwrap();
    let mut store = weft::Store::new(&engine, WasiCtx::builder().build().unwrap());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let close = instance
        .get_typed_func::<(), i32>(&mut store, "close")
        .unwrap();
    let error = close.call(&mut store, ()).unwrap_err();
    assert!(error.to_string().contains("memory"), "{error}");
}
