//! The lock behind `SharedStore<T>`: a store that several promising calls use at once.
//!
//! A promising call holds the lock for one poll: while its continuation runs, and never while it
//! is suspended. So calls interleave at their suspension points, and at most one of them (or
//! one synchronous user holding a [`SharedStoreGuard`]) touches the store at any moment.
//!
//! Uncontended, taking and releasing the lock is one compare-and-swap and one swap. A poll that
//! finds it taken queues its waker (under a mutex: the contended path only) and returns
//! `Pending`; every release with waiters wakes them all. That may wake tasks that then find the
//! lock taken again and queue once more; it never loses a wake-up, which matters more here than
//! fairness.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::store::Store;

/// A [`Store`] shared by reference counting, so that promising calls can be `'static`, and
/// several of them can be in flight on one store (see the crate docs).
pub struct SharedStore<T: 'static> {
    inner: Arc<Inner<T>>,
}

struct Inner<T: 'static> {
    locked: AtomicBool,
    has_waiters: AtomicBool,
    waiters: Mutex<Vec<Waker>>,
    store: UnsafeCell<Store<T>>,
}

// SAFETY: the store is reached only through a guard, which exists only while `locked` was won
// by its creator: one thread at a time has `&mut Store<T>`, so `T: Send` suffices.
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

impl<T: 'static> SharedStore<T> {
    /// Shares `store`.
    pub fn new(store: Store<T>) -> Self {
        SharedStore {
            inner: Arc::new(Inner {
                locked: AtomicBool::new(false),
                has_waiters: AtomicBool::new(false),
                waiters: Mutex::new(Vec::new()),
                store: UnsafeCell::new(store),
            }),
        }
    }

    /// The store, if no promising call is running on it at this moment (suspended calls do
    /// not hold it).
    pub fn try_lock(&self) -> Option<SharedStoreGuard<'_, T>> {
        self.inner
            .locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
            // `then`, not `then_some`: a guard built eagerly and dropped on failure would
            // release the lock its holder still holds.
            .then(|| SharedStoreGuard { inner: &self.inner })
    }

    /// The store, once no promising call is running on it.
    pub fn poll_lock(&self, cx: &mut Context<'_>) -> Poll<SharedStoreGuard<'_, T>> {
        if let Some(guard) = self.try_lock() {
            return Poll::Ready(guard);
        }
        {
            let mut waiters = self.inner.waiters.lock().unwrap_or_else(|e| e.into_inner());
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
            self.inner.has_waiters.store(true, Ordering::SeqCst);
        }
        // Pairs with the fence in the guard's drop: either the releaser sees `has_waiters`, or
        // the second try below sees the lock released.
        std::sync::atomic::fence(Ordering::SeqCst);
        // The holder may have released between our first try and the registration.
        match self.try_lock() {
            Some(guard) => Poll::Ready(guard),
            None => Poll::Pending,
        }
    }

    /// The store, once no promising call is running on it.
    pub async fn lock(&self) -> SharedStoreGuard<'_, T> {
        std::future::poll_fn(|cx| self.poll_lock(cx)).await
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
        self.inner.locked.store(false, Ordering::Release);
        // SeqCst pairs with the waiter's store of `has_waiters` before its second try.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.inner.has_waiters.load(Ordering::SeqCst) {
            let waiters = {
                let mut waiters = self.inner.waiters.lock().unwrap_or_else(|e| e.into_inner());
                self.inner.has_waiters.store(false, Ordering::SeqCst);
                std::mem::take(&mut *waiters)
            };
            for waker in waiters {
                waker.wake();
            }
        }
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
