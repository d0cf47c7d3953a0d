//! The synchronisation primitives of the lock-free code, switched in one place: `std`'s in normal builds,
//! loom's model-checked ones when built with `RUSTFLAGS="--cfg loom"` (tests/loom_ring.rs). Code that uses
//! them ([`crate::notify`]) is written once; under loom every atomic access, fence, lock and park becomes a
//! point where the model checker explores another interleaving.
//!
//! Only what the notification ring needs is here. The rest of the crate uses `std::sync` directly: its locks
//! are ordinary mutual exclusion that loom need not explore.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize};
#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize};
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

/// A hint to the processor that the caller spins (`std::hint::spin_loop`); under loom, a yield to the model
/// checker so that a spinning thread lets the others run.
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// Gives up the processor for a moment (`std::thread::yield_now`, or loom's).
#[inline]
pub(crate) fn yield_now() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::thread::yield_now();
}
