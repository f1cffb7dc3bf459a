//! The lock behind `SharedStore<T>`: a store that several promising calls use at once.
//!
//! A promising call holds the lock for one poll: while its continuation runs, and never while it
//! is suspended. So calls interleave at their suspension points, and at most one of them (or
//! one synchronous user holding a [`SharedStoreGuard`]) touches the store at any moment.
//!
//! Uncontended, taking and releasing the lock is one compare-and-swap, one store and one load.
//!
//! # Contention: a FIFO queue of tickets, and hand-over
//!
//! A poll that finds the lock taken gets a ticket (a number, kept in its [`LockWaiter`]) and
//! queues it with its waker, under a mutex that only the contended path touches. A release that
//! sees waiters does not leave the lock free for whoever tries first: it keeps it taken, *grants*
//! it to the oldest ticket and wakes that one task alone. The woken poll finds its ticket
//! granted and proceeds. So waiters get the store in the order they asked, and a release wakes
//! one task, not all of them.
//!
//! No wake-up is lost:
//! - A waiter queues, then (after a `SeqCst` fence) tries the lock once more; a release stores
//!   "free", fences, then looks for waiters. One of the two sees the other.
//! - A ticket is removed when its poll gets the lock (granted, or by that second try) and when
//!   its [`LockWaiter`] is dropped. A waiter dropped while holding a grant passes the lock on to
//!   the next ticket, as a release would; so a cancelled call never swallows the only wake.
//! - Synchronous users ([`SharedStore::try_lock`], [`SharedStore::lock_blocking`], which a
//!   dropped call uses to cancel its continuation) may take a lock that is granted but not yet
//!   claimed, since no call runs on the store then; the ticket goes back to the head of the
//!   queue and is granted again on their release. Without that, a `Drop` spinning on the lock
//!   on a current-thread runtime would wait for a task that can only run after it.
//!
//! One unfairness remains: between a release's "free" and its grant, a newcomer's first try may
//! win the lock; the waiters are then served on that newcomer's release.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::store::Store;

/// A [`Store`] shared by reference counting, so that promising calls can be `'static`, and
/// several of them can be in flight on one store (see the crate docs).
pub struct SharedStore<T: 'static> {
    inner: Arc<Inner<T>>,
}

struct Inner<T: 'static> {
    /// Taken by a guard's owner, or granted to a queued ticket (see the module docs).
    locked: AtomicBool,
    /// Whether `queue.waiters` may be non-empty; lets an uncontended release skip the mutex.
    has_waiters: AtomicBool,
    queue: Mutex<Queue>,
    store: UnsafeCell<Store<T>>,
}

/// The contended path's state.
struct Queue {
    next_ticket: u64,
    /// Waiting tickets, oldest first (so sorted by ticket).
    waiters: VecDeque<(u64, Waker)>,
    /// The ticket the lock was handed to, until its poll claims it. While set, `locked` is
    /// true on its behalf.
    granted: Option<(u64, Waker)>,
}

// SAFETY: the store is reached only through a guard, which exists only while `locked` was won
// (or granted to) its creator: one thread at a time has `&mut Store<T>`, so `T: Send` suffices.
unsafe impl<T: Send> Send for Inner<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Inner<T> {}

impl<T: 'static> Clone for SharedStore<T> {
    fn clone(&self) -> Self {
        SharedStore {
            inner: self.inner.clone(),
        }
    }
}

/// Exclusive access to a [`SharedStore`]'s store until dropped.
pub struct SharedStoreGuard<'a, T: 'static> {
    inner: &'a Inner<T>,
}

/// One caller's place in a [`SharedStore`]'s queue, for [`SharedStore::poll_lock`]: keep it
/// across the polls of one acquisition, on one store. Dropping it gives up the place (and passes the lock
/// on if it had just been handed to it), so a cancelled waiter strands nobody.
pub struct LockWaiter<T: 'static> {
    ticket: Option<(Arc<Inner<T>>, u64)>,
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
        let mut queue = inner.queue();
        if queue.granted.as_ref().is_some_and(|(t, _)| *t == ticket) {
            // The lock was handed to us: hand it on.
            queue.granted = None;
            drop(queue);
            inner.release();
        } else if let Ok(i) = queue.waiters.binary_search_by_key(&ticket, |(t, _)| *t) {
            queue.waiters.remove(i);
        }
    }
}

impl<T: 'static> Drop for LockWaiter<T> {
    #[inline]
    fn drop(&mut self) {
        self.leave();
    }
}

impl<T: 'static> Inner<T> {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn try_acquire(&self) -> bool {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Gives the lock up: to the oldest waiter if there is one, else free.
    fn release(&self) {
        self.locked.store(false, Ordering::Release);
        // Pairs with the fence in `poll_lock`: either we see `has_waiters`, or the waiter's
        // second try sees the lock free.
        fence(Ordering::SeqCst);
        if self.has_waiters.load(Ordering::SeqCst) {
            self.hand_over();
        }
    }

    #[cold]
    fn hand_over(&self) {
        let mut queue = self.queue();
        if queue.waiters.is_empty() {
            // Waiters set the flag again under this mutex.
            self.has_waiters.store(false, Ordering::SeqCst);
            return;
        }
        if !self.try_acquire() {
            // Someone took it since we freed it (a newcomer, or a waiter's second try): their
            // release hands it over.
            return;
        }
        let (ticket, waker) = queue.waiters.pop_front().expect("checked non-empty");
        let wake = waker.clone();
        queue.granted = Some((ticket, waker));
        drop(queue);
        wake.wake();
    }

    /// Takes a lock that was granted to a ticket but not yet claimed, putting the ticket back
    /// at the head of the queue (see the module docs).
    fn steal_grant(&self) -> bool {
        let mut queue = self.queue();
        match queue.granted.take() {
            Some(entry) => {
                queue.waiters.push_front(entry);
                true
            }
            None => false,
        }
    }
}

impl<T: 'static> SharedStore<T> {
    /// Shares `store`.
    pub fn new(store: Store<T>) -> Self {
        SharedStore {
            inner: Arc::new(Inner {
                locked: AtomicBool::new(false),
                has_waiters: AtomicBool::new(false),
                queue: Mutex::new(Queue {
                    next_ticket: 0,
                    waiters: VecDeque::new(),
                    granted: None,
                }),
                store: UnsafeCell::new(store),
            }),
        }
    }

    fn guard(&self) -> SharedStoreGuard<'_, T> {
        SharedStoreGuard { inner: &self.inner }
    }

    /// The store, if no promising call is running on it at this moment (suspended calls do
    /// not hold it, nor does a waiting call the lock was handed to but that has not run yet).
    pub fn try_lock(&self) -> Option<SharedStoreGuard<'_, T>> {
        (self.inner.try_acquire() || self.inner.steal_grant()).then(|| self.guard())
    }

    /// The store, once no promising call is running on it and the callers that asked before
    /// `waiter` (through other waiters) have had it. Pass the same `waiter` to every poll of
    /// one acquisition; the lock is granted to it in FIFO order.
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
            let mut queue = self.inner.queue();
            if queue.granted.as_ref().is_some_and(|(t, _)| *t == ticket) {
                queue.granted = None;
                drop(queue);
                waiter.ticket = None;
                return Poll::Ready(self.guard());
            }
            // Still queued (a spurious poll, or our grant was taken by a synchronous user and
            // the ticket put back): a release will grant it and wake us.
            if let Ok(i) = queue.waiters.binary_search_by_key(&ticket, |(t, _)| *t) {
                let waker = &mut queue.waiters[i].1;
                if !waker.will_wake(cx.waker()) {
                    *waker = cx.waker().clone();
                }
            }
            return Poll::Pending;
        }
        if self.inner.try_acquire() {
            return Poll::Ready(self.guard());
        }
        let ticket = {
            let mut queue = self.inner.queue();
            let ticket = queue.next_ticket;
            queue.next_ticket += 1;
            queue.waiters.push_back((ticket, cx.waker().clone()));
            self.inner.has_waiters.store(true, Ordering::SeqCst);
            ticket
        };
        waiter.ticket = Some((self.inner.clone(), ticket));
        // Pairs with the fence in `release`: either the releaser sees `has_waiters`, or the
        // try below sees the lock free.
        fence(Ordering::SeqCst);
        if self.inner.try_acquire() {
            // Not granted meanwhile (a grant keeps the lock taken): just leave the queue.
            let mut queue = self.inner.queue();
            if let Ok(i) = queue.waiters.binary_search_by_key(&ticket, |(t, _)| *t) {
                queue.waiters.remove(i);
            }
            drop(queue);
            waiter.ticket = None;
            return Poll::Ready(self.guard());
        }
        Poll::Pending
    }

    /// The store, once no promising call is running on it (in turn with other waiters).
    pub async fn lock(&self) -> SharedStoreGuard<'_, T> {
        let mut waiter = LockWaiter::new();
        std::future::poll_fn(|cx| self.poll_lock(&mut waiter, cx)).await
    }

    /// The store, waiting by spinning until no promising call is running on it: for `Drop`
    /// implementations, which cannot await. Polls hold the lock only while their call runs.
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
        self.inner.release();
    }
}

impl<T: 'static> Deref for SharedStoreGuard<'_, T> {
    type Target = Store<T>;
    fn deref(&self) -> &Store<T> {
        // SAFETY: the guard exists only while its creator holds the lock.
        unsafe { &*self.inner.store.get() }
    }
}

impl<T: 'static> DerefMut for SharedStoreGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut Store<T> {
        // SAFETY: as in `deref`; `&mut self` makes the borrow unique.
        unsafe { &mut *self.inner.store.get() }
    }
}
