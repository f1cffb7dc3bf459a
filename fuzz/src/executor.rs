//! A hand-rolled executor: poll a future on this thread, counting polls, with a waker that
//! records whether it was woken (a pending future that was never woken would hang an executor).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

/// A waker that remembers a wake.
#[derive(Default)]
pub struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Polls futures and checks that every `Pending` was preceded by a wake-up registration.
pub struct Poller {
    flag: Arc<Flag>,
    waker: Waker,
}

impl Default for Poller {
    fn default() -> Self {
        let flag = Arc::new(Flag::default());
        Poller {
            waker: Waker::from(flag.clone()),
            flag,
        }
    }
}

/// A future that stayed pending without arranging to be woken: it would hang a real executor.
#[derive(Debug)]
pub struct Stalled;

impl Poller {
    /// Polls once. `Err(Stalled)` if the future is pending and nobody woke or will wake it
    /// (every pending future in these targets wakes itself before returning `Pending`).
    pub fn poll_once<F: Future + ?Sized>(
        &self,
        future: Pin<&mut F>,
    ) -> Result<Poll<F::Output>, Stalled> {
        self.flag.0.store(false, Ordering::SeqCst);
        let mut cx = Context::from_waker(&self.waker);
        match future.poll(&mut cx) {
            Poll::Ready(v) => Ok(Poll::Ready(v)),
            Poll::Pending if self.flag.0.load(Ordering::SeqCst) => Ok(Poll::Pending),
            Poll::Pending => Err(Stalled),
        }
    }

    /// Polls until ready, at most `limit` times.
    pub fn block_on<F: Future + ?Sized>(
        &self,
        mut future: Pin<&mut F>,
        limit: u64,
    ) -> Result<F::Output, String> {
        for _ in 0..limit {
            match self.poll_once(future.as_mut()) {
                Ok(Poll::Ready(v)) => return Ok(v),
                Ok(Poll::Pending) => {}
                Err(Stalled) => {
                    return Err("a promising call stayed pending without a wake-up".into());
                }
            }
        }
        Err(format!(
            "a promising call was still pending after {limit} polls"
        ))
    }
}

/// A future that is pending `polls` times (waking itself each time), then gives `value`.
pub struct PendingFor<V> {
    pub polls: u32,
    pub value: Option<V>,
}

impl<V: Unpin> Future for PendingFor<V> {
    type Output = V;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<V> {
        if self.polls > 0 {
            self.polls -= 1;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(
            self.value
                .take()
                .expect("PendingFor polled after it finished"),
        )
    }
}
