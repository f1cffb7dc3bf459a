//! Epoch deadlines and fuel (see `Config::epoch_interruption` and `Config::consume_fuel`):
//! what the `epoch_interrupt` and `out_of_fuel` builtins do when compiled code finds the
//! deadline reached or its fuel gone.
//!
//! Either traps — always in a synchronous call — or, in a promising call whose store asks for
//! it, *yields*: the call switches out through its suspend point with a future that is pending
//! once and wakes its own task first, so the executor runs everything else that is ready
//! before this call continues (a yield to the back of the queue, not an immediate re-poll).
//! Then the deadline moves on, or the next slice of fuel is handed out, and Wasm carries on.
//! A call cancelled while it yields unwinds like one cancelled in a suspending import.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::entry::Recorded;
use super::suspend::SuspendPoint;
use super::vmstructs::VMStoreContext;
use crate::Trap;

/// Pending once (after waking its task), then ready.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Yields the promising call running Wasm of `store`, if there is one that can suspend.
/// `Ok(false)` if there is none (a synchronous call, or Wasm called from a suspending
/// import's poll).
fn yield_call(store: &VMStoreContext) -> Result<bool, Recorded> {
    let Some(point) = SuspendPoint::current(store) else {
        return Ok(false);
    };
    point
        .block_on(YieldOnce(false))
        .map_err(|_| Recorded::Error(crate::Error::msg("the promising call was cancelled")))?;
    Ok(true)
}

/// The `epoch_interrupt` builtin: compiled code of `store` found the epoch at or past the
/// deadline.
pub(super) fn epoch_reached(store: &VMStoreContext) -> Result<(), Recorded> {
    if store.epoch() < store.epoch_deadline() {
        // The deadline moved (a host function called meanwhile set a new one).
        return Ok(());
    }
    let Some(delta) = store.interruption_now().epoch_yield_delta else {
        return Err(Recorded::Api(Trap::Interrupt));
    };
    if !yield_call(store)? {
        return Err(Recorded::Api(Trap::Interrupt));
    }
    // SAFETY: we run as a builtin of this store's running Wasm, which is where the cell is
    // written from while Wasm runs.
    unsafe { store.write_epoch_deadline(store.epoch().saturating_add(delta)) };
    Ok(())
}

/// The `out_of_fuel` builtin: compiled code of `store` took its fuel below zero.
pub(super) fn fuel_exhausted(store: &VMStoreContext) -> Result<(), Recorded> {
    // SAFETY: as in `epoch_reached`.
    let total = unsafe { store.fuel_total() };
    if total < 0 {
        return Err(Recorded::Api(Trap::OutOfFuel));
    }
    if store.interruption_now().fuel_yield_interval.is_some() {
        yield_call(store)?;
    }
    // SAFETY: as in `epoch_reached`.
    unsafe { store.refuel(total as u64) };
    Ok(())
}
