//! The lock behind `SharedStore<T>`: a store that several promising calls use at once.
//!
//! A promising call holds the lock for one poll: while its fiber runs, and never while it is
//! suspended. So calls interleave at their suspension points, and at most one of them (or one
//! synchronous user holding a [`SharedStoreGuard`]) touches the store at any moment.
//!
//! # The store *is* the lock
//!
//! The lock's state is one small struct behind a `std::sync::Mutex`, held only for a few
//! instructions at a time: the store itself when it is free, the queue of waiters, and the
//! grant (below). Taking the lock moves the `Store<T>` (one pointer; the store's contents are
//! boxed and never move) out of that struct into the guard, and releasing it moves it back. So
//! whoever has the store has the lock, with no `UnsafeCell` and no `unsafe`: this module
//! touches no raw memory and is not part of the VM layer. Uncontended, taking and releasing
//! the lock is one uncontended mutex acquisition each.
//!
//! # Contention: a FIFO queue of tickets, and hand-over
//!
//! A poll that finds the store taken gets a ticket (a number, kept in its [`LockWaiter`]) and
//! queues it with its waker. A release that sees waiters does not leave the store free for
//! whoever tries first: it *grants* it to the oldest ticket (the store waits in the grant) and
//! wakes that one task alone. The woken poll finds its ticket granted and takes the store. So
//! waiters get the store in the order they asked, and a release wakes one task, not all.
//!
//! No wake-up is lost: queueing and releasing happen under the same mutex, so a release either
//! sees a waiter or the waiter sees the store free. A ticket is removed when its poll gets the
//! store and when its [`LockWaiter`] is dropped; a waiter dropped while holding a grant passes
//! the store on to the next ticket, as a release would, so a cancelled call never swallows the
//! only wake.
//!
//! Synchronous users ([`SharedStore::try_lock`], [`SharedStore::lock_blocking`], which a
//! dropped call uses to cancel its fiber) may take a store that is granted but not yet claimed,
//! since no call runs on it then; the ticket goes back to the head of the queue and is granted
//! again on their release. Without that, a `Drop` spinning on the lock on a current-thread
//! runtime would wait for a task that can only run after it.

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::store::{AsContext, AsContextMut, Store};

/// A [`Store`] shared by reference counting, so that promising calls can be `'static`, and
/// several of them can be in flight on one store (see the crate docs).
pub struct SharedStore<T: 'static> {
    inner: Arc<Mutex<State<T>>>,
    /// The store's id: a promising call polled from inside a suspending import's poll of the
    /// same store runs on the store lent to that poll (see `promising`).
    id: u64,
}

/// The lock's state (see the module docs).
struct State<T: 'static> {
    /// The store, while nobody has it and it is granted to no ticket.
    free: Option<Store<T>>,
    next_ticket: u64,
    /// Waiting tickets, oldest first (so sorted by ticket).
    waiters: VecDeque<(u64, Waker)>,
    /// The ticket the store was handed to, with the store, until its poll claims it.
    granted: Option<(u64, Waker, Store<T>)>,
    /// Work that needs the store and was handed in while the store was in use further down
    /// the handing thread's stack (a dropped call's cancellation): done by the holder as it
    /// releases the store.
    deferred: Vec<Deferred<T>>,
}

/// See `State::deferred`.
type Deferred<T> = Box<dyn FnOnce(&mut crate::store::StoreContext<T>) + Send>;

impl<T: 'static> State<T> {
    /// Gives `store` up: to the oldest waiter if there is one (returning its waker, to be woken
    /// once the mutex is unlocked), else free.
    fn release(&mut self, store: Store<T>) -> Option<Waker> {
        match self.waiters.pop_front() {
            Some((ticket, waker)) => {
                let wake = waker.clone();
                self.granted = Some((ticket, waker, store));
                Some(wake)
            }
            None => {
                self.free = Some(store);
                None
            }
        }
    }

    /// The free store, or one granted but not yet claimed, its ticket put back at the head of
    /// the queue (see the module docs).
    fn take_for_sync_user(&mut self) -> Option<Store<T>> {
        if let Some(store) = self.free.take() {
            return Some(store);
        }
        let (ticket, waker, store) = self.granted.take()?;
        self.waiters.push_front((ticket, waker));
        Some(store)
    }
}

fn lock<T: 'static>(inner: &Mutex<State<T>>) -> MutexGuard<'_, State<T>> {
    // Only this module's code runs under the mutex, and none of it panics half-way.
    inner.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T: 'static> Clone for SharedStore<T> {
    fn clone(&self) -> Self {
        SharedStore {
            inner: self.inner.clone(),
            id: self.id,
        }
    }
}

/// Exclusive access to a [`SharedStore`]'s store until dropped.
pub struct SharedStoreGuard<'a, T: 'static> {
    /// `Some` until dropped.
    store: Option<Store<T>>,
    inner: &'a Mutex<State<T>>,
}

/// One caller's place in a [`SharedStore`]'s queue, for [`SharedStore::poll_lock`]: keep it
/// across the polls of one acquisition, on one store. Dropping it gives up the place (and
/// passes the store on if it had just been handed to it), so a cancelled waiter strands nobody.
pub struct LockWaiter<T: 'static> {
    ticket: Option<(Arc<Mutex<State<T>>>, u64)>,
}

impl<T: 'static> Default for LockWaiter<T> {
    fn default() -> Self {
        LockWaiter { ticket: None }
    }
}

impl<T: 'static> LockWaiter<T> {
    /// An empty place: no ticket yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives up the place in line, if any (what dropping does). Inline: every promising call
    /// does this, and only a call that waited has anything to give up.
    #[inline]
    pub(crate) fn leave(&mut self) {
        if self.ticket.is_some() {
            self.leave_queue();
        }
    }

    #[cold]
    #[inline(never)]
    fn leave_queue(&mut self) {
        let Some((inner, ticket)) = self.ticket.take() else {
            return;
        };
        let mut state = lock(&inner);
        let wake = match state.granted.take() {
            // The store was handed to us: hand it on.
            Some((t, _, store)) if t == ticket => state.release(store),
            other => {
                state.granted = other;
                if let Ok(i) = state.waiters.binary_search_by_key(&ticket, |(t, _)| *t) {
                    state.waiters.remove(i);
                }
                None
            }
        };
        drop(state);
        if let Some(waker) = wake {
            waker.wake();
        }
    }
}

impl<T: 'static> Drop for LockWaiter<T> {
    #[inline]
    fn drop(&mut self) {
        self.leave();
    }
}

impl<T: 'static> SharedStore<T> {
    /// Shares `store`.
    pub fn new(store: Store<T>) -> Self {
        SharedStore {
            id: store.as_context().opaque.id.as_u64(),
            inner: Arc::new(Mutex::new(State {
                free: Some(store),
                next_ticket: 0,
                waiters: VecDeque::new(),
                granted: None,
                deferred: Vec::new(),
            })),
        }
    }

    /// The id of the shared store.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    fn guard(&self, store: Store<T>) -> SharedStoreGuard<'_, T> {
        SharedStoreGuard {
            store: Some(store),
            inner: &self.inner,
        }
    }

    /// The store, if no promising call is running on it at this moment (suspended calls do
    /// not hold it, nor does a waiting call it was handed to but that has not run yet).
    pub fn try_lock(&self) -> Option<SharedStoreGuard<'_, T>> {
        let store = lock(&self.inner).take_for_sync_user()?;
        Some(self.guard(store))
    }

    /// The store, once no promising call is running on it and the callers that asked before
    /// `waiter` (through other waiters) have had it. Pass the same `waiter` to every poll of
    /// one acquisition; the store is granted to it in FIFO order.
    ///
    /// # Panics
    /// If `waiter` is waiting for another `SharedStore`.
    pub fn poll_lock(
        &self,
        waiter: &mut LockWaiter<T>,
        cx: &mut Context<'_>,
    ) -> Poll<SharedStoreGuard<'_, T>> {
        if let Some((inner, ticket)) = &waiter.ticket {
            assert!(
                Arc::ptr_eq(inner, &self.inner),
                "a LockWaiter polled for another SharedStore than it waits for"
            );
            let ticket = *ticket;
            let mut state = lock(&self.inner);
            match state.granted.take() {
                Some((t, _, store)) if t == ticket => {
                    drop(state);
                    waiter.ticket = None;
                    return Poll::Ready(self.guard(store));
                }
                other => state.granted = other,
            }
            // Still queued (a spurious poll, or our grant was taken by a synchronous user and
            // the ticket put back): a release will grant it and wake us.
            if let Ok(i) = state.waiters.binary_search_by_key(&ticket, |(t, _)| *t) {
                let waker = &mut state.waiters[i].1;
                if !waker.will_wake(cx.waker()) {
                    *waker = cx.waker().clone();
                }
            }
            return Poll::Pending;
        }
        let mut state = lock(&self.inner);
        if let Some(store) = state.free.take() {
            drop(state);
            return Poll::Ready(self.guard(store));
        }
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiters.push_back((ticket, cx.waker().clone()));
        drop(state);
        waiter.ticket = Some((self.inner.clone(), ticket));
        Poll::Pending
    }

    /// Has `work` done with the store by its current holder as it releases it (see
    /// `State::deferred`).
    pub(crate) fn defer(&self, work: Deferred<T>) {
        lock(&self.inner).deferred.push(work);
    }

    /// The store, once no promising call is running on it (in turn with other waiters).
    pub async fn lock(&self) -> SharedStoreGuard<'_, T> {
        let mut waiter = LockWaiter::new();
        std::future::poll_fn(|cx| self.poll_lock(&mut waiter, cx)).await
    }

    /// The store, waiting by spinning until no promising call is running on it: for `Drop`
    /// implementations, which cannot await. Polls hold the store only while their call runs.
    pub fn lock_blocking(&self) -> SharedStoreGuard<'_, T> {
        loop {
            if let Some(guard) = self.try_lock() {
                return guard;
            }
            std::thread::yield_now();
        }
    }
}

impl<T: 'static> Drop for SharedStoreGuard<'_, T> {
    fn drop(&mut self) {
        let Some(mut store) = self.store.take() else {
            return;
        };
        let mut panic = None;
        loop {
            let mut state = lock(self.inner);
            if state.deferred.is_empty() {
                let wake = state.release(store);
                drop(state);
                if let Some(waker) = wake {
                    waker.wake();
                }
                break;
            }
            // Work handed in while we held the store: done before anyone else gets it, outside
            // the mutex; a panic in it is re-raised once the store is released, not lost with
            // the store.
            let work = std::mem::take(&mut state.deferred);
            drop(state);
            for work in work {
                let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    work(store.as_context_mut())
                }));
                if let Err(payload) = done {
                    panic.get_or_insert(payload);
                }
            }
        }
        if let Some(payload) = panic
            && !std::thread::panicking()
        {
            std::panic::resume_unwind(payload);
        }
    }
}

impl<T: 'static> Deref for SharedStoreGuard<'_, T> {
    type Target = Store<T>;
    fn deref(&self) -> &Store<T> {
        self.store
            .as_ref()
            .expect("a guard has its store until dropped")
    }
}

impl<T: 'static> DerefMut for SharedStoreGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut Store<T> {
        self.store
            .as_mut()
            .expect("a guard has its store until dropped")
    }
}
