//! The seam between the WASI implementation and an engine: [`WasiHost`] lends the context and
//! guest memory for one synchronous step, and [`Blocking`] says how work that may wait is run.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use crate::WasiCtx;
use crate::abi::Errno;
use crate::memory::GuestMemory;

/// What an engine binding provides to the WASI functions.
///
/// Each function reads its inputs in one [`WasiHost::with`], does its I/O (awaiting, with no
/// borrow of the context or memory held), then writes its results in another `with`. So a
/// suspended call holds nothing of the store, and other calls may run on it meanwhile.
pub trait WasiHost {
    /// Runs `f` once with the guest's WASI context and its linear memory.
    ///
    /// The trait is dyn-compatible on purpose: the WASI functions are compiled once, in this
    /// crate, for `dyn WasiHost`, instead of once for every binding and store type in every
    /// crate that links WASI.
    ///
    /// # Errors
    /// If the engine cannot lend them now (for example, the calling instance exports no
    /// memory); the WASI call then fails with that error rather than an errno.
    fn with(&mut self, f: &mut dyn FnMut(&mut WasiCtx, &mut [u8])) -> Result<(), HostError>;

    /// How this binding runs work that may wait.
    fn blocking(&self) -> Blocking;
}

/// How blocking work runs: the one difference between the synchronous and the async binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocking {
    /// On the calling thread: filesystem and stdio calls block it, sleeps are
    /// `thread::sleep`. For embedders that call Wasm synchronously.
    Inline,
    /// On tokio: filesystem and stdio calls go to the blocking pool (`spawn_blocking`) while
    /// the Wasm call stays suspended, sleeps are `tokio::time::sleep`. Works on a
    /// `current_thread` runtime (with its time driver enabled); never `block_in_place`.
    Tokio,
}

impl Blocking {
    /// Runs `f`, which may block, the way this mode runs blocking work.
    pub(crate) async fn run<R: Send + 'static>(
        self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, Abort> {
        match self {
            Blocking::Inline => Ok(f()),
            Blocking::Tokio => {
                let handle = tokio::runtime::Handle::try_current().map_err(|_| {
                    Abort::Host(HostError::new(
                        "async WASI calls must be polled inside a tokio runtime",
                    ))
                })?;
                match handle.spawn_blocking(f).await {
                    Ok(value) => Ok(value),
                    Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                    Err(_) => Err(Abort::Host(HostError::new(
                        "the runtime shut down during a WASI call",
                    ))),
                }
            }
        }
    }

    /// Waits for `duration`.
    pub(crate) async fn sleep(self, duration: Duration) {
        // Sleeps past a century are as good as forever and keep deadline arithmetic in range.
        let duration = duration.min(Duration::from_secs(100 * 365 * 24 * 3600));
        match self {
            Blocking::Inline => std::thread::sleep(duration),
            Blocking::Tokio => tokio::time::sleep(duration).await,
        }
    }

    /// Lets other work run.
    pub(crate) async fn yield_now(self) {
        match self {
            Blocking::Inline => std::thread::yield_now(),
            Blocking::Tokio => tokio::task::yield_now().await,
        }
    }
}

/// An engine-side failure to lend the context or memory (see [`WasiHost::with`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HostError(String);

impl HostError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        HostError(message.into())
    }
}

/// The guest called `proc_exit` with this status. It ends the call as an error, which is not
/// a trap; stdout and stderr have been flushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("exit status {0}")]
pub struct I32Exit(pub i32);

/// Why a WASI call ended the guest's call instead of returning an errno.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Abort {
    /// `proc_exit`.
    #[error(transparent)]
    Exit(#[from] I32Exit),
    /// The engine could not lend the context or memory.
    #[error(transparent)]
    Host(#[from] HostError),
}

/// The failure of one step of a WASI function: an errno for the guest, or an abort.
pub(crate) enum Failure {
    Errno(Errno),
    Abort(Abort),
}

impl From<Errno> for Failure {
    fn from(errno: Errno) -> Self {
        Failure::Errno(errno)
    }
}

impl From<Abort> for Failure {
    fn from(abort: Abort) -> Self {
        Failure::Abort(abort)
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Self {
        Failure::Errno(Errno::from_io(&error))
    }
}

/// Lends context and memory to `f` through `host`, as a [`GuestMemory`].
pub(crate) fn access<H: WasiHost + ?Sized, R>(
    host: &mut H,
    f: impl FnOnce(&mut WasiCtx, &mut GuestMemory<'_>) -> Result<R, Errno>,
) -> Result<R, Failure> {
    let mut f = Some(f);
    let mut outcome = None;
    host.with(&mut |ctx, bytes| {
        if let Some(f) = f.take() {
            outcome = Some(f(ctx, &mut GuestMemory::new(bytes)));
        }
    })
    .map_err(|error| Failure::Abort(Abort::Host(error)))?;
    match outcome {
        Some(Ok(value)) => Ok(value),
        Some(Err(errno)) => Err(Failure::Errno(errno)),
        None => Err(Failure::Abort(Abort::Host(HostError::new(
            "the engine returned without lending the WASI context",
        )))),
    }
}

/// Turns a step's outcome into what the guest sees: `Ok(errno)`, or an abort.
pub(crate) fn to_errno(result: Result<(), Failure>) -> Result<Errno, Abort> {
    match result {
        Ok(()) => Ok(Errno::Success),
        Err(Failure::Errno(errno)) => Ok(errno),
        Err(Failure::Abort(abort)) => Err(abort),
    }
}

/// Drives `future` to completion on this thread: the synchronous binding's executor. In
/// [`Blocking::Inline`] mode nothing a WASI function awaits is ever pending, so this polls
/// once; it parks until woken otherwise.
pub fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
        std::thread::park();
    }
}
