//! The notification ring: how the committer tells subscribers "the head moved to X" without ever waiting for
//! them.
//!
//! Algorithm: a single-producer, multi-consumer broadcast ring of sequence-stamped slots (the LMAX Disruptor's
//! ring of sequence-numbered slots, read as tokio's `broadcast` channel reads it, each slot a small seqlock as
//! in crossbeam's `AtomicCell` fallback and the Linux kernel's `seqcount`). The producer never looks at readers:
//! it overwrites the oldest slot. Each subscriber holds its own `Cursor`; a subscriber that fell more than
//! the capacity behind finds the slot it wanted stamped with a later sequence and gets `Recv::Lagged`. That
//! loses nothing: the ring carries only head positions (wake-ups), never event bytes, and the log is the source
//! of truth, so a lagging subscriber simply reads the log up to the current head.
//!
//! Invariants: only one thread publishes at a time (the committer, under the commit lock); published values
//! never decrease; a slot's stamp is `seq + 1` exactly while it holds the value of sequence `seq`, and 0 while
//! it is being overwritten (or was never written). Waiting: spin briefly, then park on a condition variable
//! after announcing it in `waiting`; the producer pays one SeqCst fence and one relaxed load when nobody waits.
//! The ring holds no `unsafe` code: every shared word is an atomic. Model-checked by tests/loom_ring.rs.

use std::task::Waker;
use std::time::Instant;

use crate::sync::{fence, AtomicBool, AtomicU64, AtomicUsize, Condvar, Mutex, MutexGuard};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

/// Slots of the ring in normal builds: enough that a subscriber busy for 1024 commits is not told it lagged
/// (which would cost it one extra load of the head, nothing more).
pub const CAPACITY: usize = if cfg!(loom) { 4 } else { 1024 };
/// Spin rounds before a waiter yields; round `i` spins `2^i` times (exponential backoff, as crossbeam's
/// `Backoff`). Small: on a 2-core machine a spinning subscriber takes the core a writer needs.
const SPIN_ROUNDS: u32 = if cfg!(loom) { 0 } else { 6 };
/// `yield_now` rounds after spinning and before parking.
const YIELD_ROUNDS: u32 = if cfg!(loom) { 0 } else { 2 };

const _: () = assert!(CAPACITY.is_power_of_two() && CAPACITY >= 2);

/// What [`Ring::try_recv`] and [`Ring::recv_latest`] found.
///
/// ```
/// use annals::notify::{Recv, Ring};
/// let ring = Ring::with_capacity(2);
/// let mut cursor = ring.cursor();
/// assert_eq!(ring.try_recv(&mut cursor), Recv::Empty);
/// ring.publish(7);
/// assert_eq!(ring.try_recv(&mut cursor), Recv::Value(7));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recv {
    /// The next head value for this cursor.
    Value(u64),
    /// Nothing was published since the cursor's last read.
    Empty,
    /// The cursor fell more than the capacity behind: `missed` values were overwritten before it read them.
    /// The cursor now stands at the newest sequence; read the head from the log.
    Lagged {
        /// How many notifications this cursor skipped.
        missed: u64,
    },
}

/// One subscriber's place in the ring: the sequence number of the next notification it has not seen. Owned
/// (and only read and written) by its subscriber.
///
/// ```
/// use annals::notify::Ring;
/// let ring = Ring::with_capacity(4);
/// ring.publish(1);
/// let cursor = ring.cursor(); // starts after everything published so far
/// assert_eq!(cursor.sequence(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    next: u64,
}

impl Cursor {
    /// The sequence number of the next notification this cursor will read.
    pub fn sequence(&self) -> u64 {
        self.next
    }
}

/// One slot: a value and the stamp that says which sequence it belongs to.
struct Slot {
    /// `seq + 1` while the slot holds the value of sequence `seq`; 0 while it is being overwritten or was never
    /// written. Written by the producer only (0 with Relaxed before the release fence F1, then `seq + 1` with
    /// Release R1); read by subscribers with Acquire (A1, pairs with R1) and, to validate, with Relaxed after
    /// the acquire fence F4 (which pairs with F1).
    stamp: AtomicU64,
    /// The head position of sequence `stamp - 1`. Written by the producer only (Relaxed, between F1 and R1);
    /// read by subscribers with Relaxed between A1 and F4.
    value: AtomicU64,
}

/// Async subscribers waiting for the next publication.
struct Parking {
    /// (key, waker) of every registered async waiter; each counted once in `Ring::waiting`.
    wakers: Vec<(u64, Waker)>,
    /// The next key [`Ring::waker_key`] hands out.
    next_key: u64,
}

/// The notification ring. See the module docs for the algorithm and its invariants.
///
/// ```
/// use annals::notify::{Recv, Ring};
/// let ring = Ring::with_capacity(2);
/// let mut fast = ring.cursor();
/// let mut slow = ring.cursor();
/// for head in [10, 20, 30] {
///     ring.publish(head);
///     assert_eq!(ring.try_recv(&mut fast), Recv::Value(head));
/// }
/// // The slow subscriber fell behind by more than the capacity: told so, and moved to the present.
/// assert_eq!(ring.try_recv(&mut slow), Recv::Lagged { missed: 3 });
/// assert_eq!(ring.try_recv(&mut slow), Recv::Empty);
/// ```
pub struct Ring {
    /// The number of values published so far: sequence `tail` goes next into slot `tail & mask`. Written by
    /// the producer only (Relaxed load of its own value; Release store R2 after the slot's stamp); read by
    /// subscribers with Acquire (A2, pairs with R2, so a subscriber that sees sequence `s` published also sees
    /// slot `s`'s stamp R1 or a later one) and after the SeqCst fence F3 when it parks.
    tail: AtomicU64,
    /// `capacity` slots; sequence `s` lives in slot `s & mask`.
    slots: Box<[Slot]>,
    mask: u64,
    /// Set once by [`Ring::close`] (Release, then the SeqCst fence F2); read with Acquire by waiters, which
    /// then stop waiting for good.
    closed: AtomicBool,
    /// How many subscribers are parked or registered to be woken. Incremented by a waiter under `parking`
    /// before its SeqCst fence F3; decremented by the waiter itself (blocking) or by the producer when it
    /// takes the wakers (async). Read Relaxed by the producer after its SeqCst fence F2: F2/F3 make sure that
    /// either the producer sees the waiter or the waiter sees the new `tail` (Dekker's pattern).
    waiting: AtomicUsize,
    /// Registered async wakers; also the mutex that parked threads wait on.
    parking: Mutex<Parking>,
    /// Parked (blocking) subscribers sleep here.
    unparked: Condvar,
}

impl Ring {
    /// A ring with the default capacity ([`CAPACITY`]; 4 under loom).
    ///
    /// ```
    /// let ring = annals::notify::Ring::new();
    /// assert_eq!(ring.capacity(), annals::notify::CAPACITY);
    /// ```
    #[allow(clippy::new_without_default, reason = "a ring is made by the commit, not by users")]
    pub fn new() -> Ring {
        Ring::with_capacity(CAPACITY)
    }

    /// A ring of `capacity` slots (a power of two, at least 2): small ones let the model checker cover
    /// wraparound.
    ///
    /// ```
    /// let ring = annals::notify::Ring::with_capacity(2);
    /// assert_eq!(ring.capacity(), 2);
    /// ```
    pub fn with_capacity(capacity: usize) -> Ring {
        assert!(capacity.is_power_of_two() && capacity >= 2, "capacity must be a power of two, at least 2");
        let slots = (0..capacity).map(|_| Slot { stamp: AtomicU64::new(0), value: AtomicU64::new(0) }).collect();
        Ring {
            tail: AtomicU64::new(0),
            slots,
            mask: capacity as u64 - 1,
            closed: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            parking: Mutex::new(Parking { wakers: Vec::new(), next_key: 0 }),
            unparked: Condvar::new(),
        }
    }

    /// The number of slots.
    ///
    /// ```
    /// assert_eq!(annals::notify::Ring::with_capacity(8).capacity(), 8);
    /// ```
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Publishes a new head position and wakes parked subscribers. Never waits for a subscriber.
    ///
    /// Only one thread may publish at a time (the committer does, under the commit lock), and values must not
    /// decrease. With nobody waiting, this costs four stores, a SeqCst fence and one relaxed load.
    ///
    /// ```
    /// use annals::notify::{Recv, Ring};
    /// let ring = Ring::with_capacity(2);
    /// let mut c = ring.cursor();
    /// ring.publish(5);
    /// assert_eq!(ring.recv_latest(&mut c), Recv::Value(5));
    /// ```
    pub fn publish(&self, value: u64) {
        // Only this thread writes `tail`: its own last store is what a Relaxed load returns.
        let seq = self.tail.load(Relaxed);
        let slot = &self.slots[(seq & self.mask) as usize];
        if seq > 0 {
            let previous = &self.slots[((seq - 1) & self.mask) as usize];
            debug_assert!(previous.value.load(Relaxed) <= value, "published heads never decrease");
        }
        slot.stamp.store(0, Relaxed);
        // F1: pairs with F4 in `read_slot`. A subscriber that reads the new `value` below then sees stamp 0 (or
        // later) when it validates, so it never takes the new value for the old sequence.
        fence(Release);
        slot.value.store(value, Relaxed);
        // R1: pairs with A1 in `read_slot`: a subscriber that reads this stamp sees `value` and everything the
        // committer did before (the head store, hence the events below it).
        slot.stamp.store(seq + 1, Release);
        // R2: pairs with A2 (every Acquire load of `tail`): a subscriber that sees `seq + 1` here sees R1 too.
        self.tail.store(seq + 1, Release);
        // F2: pairs with F3 in `wait` and `register`; see `waiting`.
        fence(SeqCst);
        if self.waiting.load(Relaxed) != 0 {
            self.wake_all();
        }
    }

    /// Marks the ring closed (the store is poisoned: nothing will be published again) and wakes everyone.
    ///
    /// ```
    /// let ring = annals::notify::Ring::with_capacity(2);
    /// let c = ring.cursor();
    /// ring.close();
    /// assert!(ring.is_closed());
    /// assert!(ring.wait(&c, None)); // returns at once
    /// ```
    pub fn close(&self) {
        // Release pairs with the Acquire loads in `is_closed`; F2 as in `publish`.
        self.closed.store(true, Release);
        fence(SeqCst);
        self.wake_all();
    }

    /// True once [`Ring::close`] was called.
    ///
    /// ```
    /// assert!(!annals::notify::Ring::with_capacity(2).is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.closed.load(Acquire)
    }

    /// A cursor standing after everything published so far. Take it *before* reading the head from the log:
    /// then any head published after that read is news to the cursor, and no wake-up is lost.
    ///
    /// ```
    /// use annals::notify::{Recv, Ring};
    /// let ring = Ring::with_capacity(2);
    /// ring.publish(1);
    /// let mut c = ring.cursor();
    /// assert_eq!(ring.try_recv(&mut c), Recv::Empty);
    /// ```
    pub fn cursor(&self) -> Cursor {
        // A2.
        Cursor { next: self.tail.load(Acquire) }
    }

    /// True if something was published after the cursor's position, or the ring is closed.
    ///
    /// ```
    /// let ring = annals::notify::Ring::with_capacity(2);
    /// let c = ring.cursor();
    /// assert!(!ring.has_news(&c));
    /// ring.publish(3);
    /// assert!(ring.has_news(&c));
    /// ```
    pub fn has_news(&self, cursor: &Cursor) -> bool {
        // A2.
        self.tail.load(Acquire) > cursor.next || self.is_closed()
    }

    /// The next value for `cursor`, in publication order; [`Recv::Lagged`] if it was overwritten.
    ///
    /// ```
    /// use annals::notify::{Recv, Ring};
    /// let ring = Ring::with_capacity(4);
    /// let mut c = ring.cursor();
    /// ring.publish(1);
    /// ring.publish(2);
    /// assert_eq!(ring.try_recv(&mut c), Recv::Value(1));
    /// assert_eq!(ring.try_recv(&mut c), Recv::Value(2));
    /// assert_eq!(ring.try_recv(&mut c), Recv::Empty);
    /// ```
    pub fn try_recv(&self, cursor: &mut Cursor) -> Recv {
        // A2.
        let tail = self.tail.load(Acquire);
        assert!(cursor.next <= tail, "a cursor never runs ahead of the ring");
        if cursor.next == tail {
            return Recv::Empty;
        }
        if tail - cursor.next <= self.mask + 1 {
            if let Some(value) = self.read_slot(cursor.next) {
                cursor.next += 1;
                return Recv::Value(value);
            }
        }
        self.lagged(cursor)
    }

    /// The newest value published after `cursor`'s position, skipping older ones (heads only grow, so the
    /// newest says all the older ones said). [`Recv::Lagged`] only if the producer overwrote even that slot
    /// while it was read.
    ///
    /// ```
    /// use annals::notify::{Recv, Ring};
    /// let ring = Ring::with_capacity(2);
    /// let mut c = ring.cursor();
    /// for head in 1..=5 {
    ///     ring.publish(head);
    /// }
    /// assert_eq!(ring.recv_latest(&mut c), Recv::Value(5));
    /// assert_eq!(ring.recv_latest(&mut c), Recv::Empty);
    /// ```
    pub fn recv_latest(&self, cursor: &mut Cursor) -> Recv {
        // A2.
        let tail = self.tail.load(Acquire);
        assert!(cursor.next <= tail, "a cursor never runs ahead of the ring");
        if cursor.next == tail {
            return Recv::Empty;
        }
        match self.read_slot(tail - 1) {
            Some(value) => {
                cursor.next = tail;
                Recv::Value(value)
            }
            None => self.lagged(cursor),
        }
    }

    /// Moves a cursor that lost its slot to the present and says how much it missed.
    fn lagged(&self, cursor: &mut Cursor) -> Recv {
        // A2: the newest sequence; the subscriber reads the head from the log next.
        let tail = self.tail.load(Acquire);
        debug_assert!(tail > cursor.next);
        let missed = tail - cursor.next;
        cursor.next = tail;
        Recv::Lagged { missed }
    }

    /// The value of sequence `seq`, if its slot still holds it. `seq` must be published (below `tail`).
    fn read_slot(&self, seq: u64) -> Option<u64> {
        let slot = &self.slots[(seq & self.mask) as usize];
        // A1: pairs with R1.
        let stamp = slot.stamp.load(Acquire);
        if stamp != seq + 1 {
            // A2 saw `seq` published, so R1 of `seq` is visible: an older stamp is impossible. 0 or a later
            // sequence means the slot is being or has been overwritten.
            assert!(stamp == 0 || (stamp > seq + 1 && (stamp - seq - 1) & self.mask == 0), "stamp {stamp} for {seq}");
            return None;
        }
        let value = slot.value.load(Relaxed);
        // F4: pairs with F1. If `value` came from a later overwrite, the stamp load below sees that overwrite's
        // stamp 0 (or later) and the read is rejected.
        fence(Acquire);
        (slot.stamp.load(Relaxed) == seq + 1).then_some(value)
    }

    /// Blocks until something is published after `cursor`'s position, the ring is closed, or `deadline`
    /// passes. True if there is news (check with [`Ring::recv_latest`]); false on timeout. Spins briefly,
    /// yields, then parks.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let ring = annals::notify::Ring::with_capacity(2);
    /// let c = ring.cursor();
    /// assert!(!ring.wait(&c, Some(Instant::now() + Duration::from_millis(1))));
    /// ring.publish(1);
    /// assert!(ring.wait(&c, None));
    /// ```
    pub fn wait(&self, cursor: &Cursor, deadline: Option<Instant>) -> bool {
        for round in 0..SPIN_ROUNDS {
            if self.has_news(cursor) {
                return true;
            }
            for _ in 0..1u32 << round {
                crate::sync::spin_loop();
            }
        }
        for _ in 0..YIELD_ROUNDS {
            if self.has_news(cursor) {
                return true;
            }
            crate::sync::yield_now();
        }
        let mut parking = self.lock();
        self.waiting.fetch_add(1, Relaxed);
        // F3: pairs with F2. Either the producer's load of `waiting` sees this waiter (and wakes it, taking
        // `parking` after this thread releases it in `wait`), or the `tail` load below sees the publication.
        fence(SeqCst);
        let news = loop {
            if self.has_news(cursor) {
                break true;
            }
            parking = match deadline {
                None => self.unparked.wait(parking).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break false;
                    }
                    self.unparked.wait_timeout(parking, deadline - now).unwrap_or_else(|e| e.into_inner()).0
                }
            };
        };
        self.waiting.fetch_sub(1, Relaxed);
        drop(parking);
        news
    }

    /// A key that identifies one async waiter across [`Ring::register`] calls.
    ///
    /// ```
    /// let ring = annals::notify::Ring::with_capacity(2);
    /// assert_ne!(ring.waker_key(), ring.waker_key());
    /// ```
    pub fn waker_key(&self) -> u64 {
        let mut parking = self.lock();
        parking.next_key += 1;
        parking.next_key
    }

    /// Registers `waker` (under `key`, replacing an earlier waker of that key) to be woken by the next
    /// publication. Returns true, and leaves nothing registered, if there is news already: the caller polls
    /// again instead of waiting.
    ///
    /// ```
    /// use std::task::Waker;
    /// let ring = annals::notify::Ring::with_capacity(2);
    /// let c = ring.cursor();
    /// let key = ring.waker_key();
    /// assert!(!ring.register(&c, key, Waker::noop()));
    /// ring.publish(1); // wakes (and forgets) the waker
    /// assert!(ring.register(&c, key, Waker::noop()));
    /// ```
    pub fn register(&self, cursor: &Cursor, key: u64, waker: &Waker) -> bool {
        let mut parking = self.lock();
        match parking.wakers.iter_mut().find(|(k, _)| *k == key) {
            Some((_, w)) => {
                if !w.will_wake(waker) {
                    w.clone_from(waker);
                }
            }
            None => {
                parking.wakers.push((key, waker.clone()));
                self.waiting.fetch_add(1, Relaxed);
            }
        }
        // F3, as in `wait`.
        fence(SeqCst);
        if self.has_news(cursor) {
            Self::remove_key(&mut parking, &self.waiting, key);
            return true;
        }
        false
    }

    /// Forgets the waker registered under `key`, if any (a dropped async subscription).
    ///
    /// ```
    /// use std::task::Waker;
    /// let ring = annals::notify::Ring::with_capacity(2);
    /// let key = ring.waker_key();
    /// ring.register(&ring.cursor(), key, Waker::noop());
    /// ring.unregister(key);
    /// ```
    pub fn unregister(&self, key: u64) {
        let mut parking = self.lock();
        Self::remove_key(&mut parking, &self.waiting, key);
    }

    fn remove_key(parking: &mut Parking, waiting: &AtomicUsize, key: u64) {
        if let Some(i) = parking.wakers.iter().position(|(k, _)| *k == key) {
            parking.wakers.swap_remove(i);
            waiting.fetch_sub(1, Relaxed);
        }
    }

    /// Wakes every parked thread and registered waker. Called by the producer when `waiting` was nonzero.
    fn wake_all(&self) {
        let mut parking = self.lock();
        let wakers = std::mem::take(&mut parking.wakers);
        self.waiting.fetch_sub(wakers.len(), Relaxed);
        drop(parking);
        // Parked threads hold `parking` from their F3 until they sleep in `wait`; this thread took it after
        // seeing them in `waiting`, so they are asleep (or rechecking `tail`) now: the notification is not lost.
        self.unparked.notify_all();
        for (_, w) in wakers {
            w.wake();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Parking> {
        // Nothing panics while the lock is held (only Vec operations and wakes); a poisoned lock still holds a
        // consistent list.
        self.parking.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.capacity())
            .field("published", &self.tail.load(Relaxed))
            .field("closed", &self.closed.load(Relaxed))
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! Single- and multi-threaded checks of the ring; no file I/O, so they also run under Miri
    //! (`cargo +nightly miri test --lib notify`).
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;
    use std::time::Duration;

    #[test]
    fn values_arrive_in_order_then_empty() {
        let ring = Ring::with_capacity(4);
        let mut c = ring.cursor();
        for v in 1..=4 {
            ring.publish(v * 10);
        }
        for v in 1..=4 {
            assert_eq!(ring.try_recv(&mut c), Recv::Value(v * 10));
        }
        assert_eq!(ring.try_recv(&mut c), Recv::Empty);
    }

    #[test]
    fn wraparound_keeps_the_newest_capacity_values() {
        let ring = Ring::with_capacity(2);
        for round in 0..5u64 {
            let mut c = ring.cursor();
            ring.publish(round * 2 + 1);
            ring.publish(round * 2 + 2);
            assert_eq!(ring.try_recv(&mut c), Recv::Value(round * 2 + 1));
            assert_eq!(ring.try_recv(&mut c), Recv::Value(round * 2 + 2));
        }
    }

    #[test]
    fn a_lagging_cursor_is_told_and_moved_to_the_present() {
        let ring = Ring::with_capacity(4);
        let mut slow = ring.cursor();
        for v in 1..=9 {
            ring.publish(v);
        }
        assert_eq!(ring.try_recv(&mut slow), Recv::Lagged { missed: 9 });
        assert_eq!(ring.try_recv(&mut slow), Recv::Empty);
        ring.publish(10);
        assert_eq!(ring.try_recv(&mut slow), Recv::Value(10));
        // Exactly at capacity is not a lag.
        let mut c = ring.cursor();
        for v in 11..=14 {
            ring.publish(v);
        }
        assert_eq!(ring.try_recv(&mut c), Recv::Value(11));
        assert_eq!(ring.recv_latest(&mut c), Recv::Value(14));
    }

    #[test]
    fn wait_times_out_and_close_wakes() {
        let ring = Ring::with_capacity(2);
        let c = ring.cursor();
        assert!(!ring.wait(&c, Some(Instant::now() + Duration::from_millis(2))));
        ring.close();
        assert!(ring.wait(&c, None));
        assert!(ring.has_news(&c));
    }

    #[test]
    fn parked_subscribers_are_woken_by_publish() {
        // As in the store: the producer stores the head before it publishes it, and a subscriber told it lagged
        // reads the head itself (the ring then has no value for it: its cursor was moved to the present).
        let ring = Arc::new(Ring::with_capacity(2));
        let head = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let subscribers: Vec<_> = (0..3)
            .map(|_| {
                let (ring, head) = (ring.clone(), head.clone());
                let mut c = ring.cursor();
                std::thread::spawn(move || {
                    // `last`: the newest head this subscriber knows; `last_value`: the newest the ring gave it.
                    let (mut last, mut last_value) = (0, 0);
                    while last < 50 {
                        ring.wait(&c, None);
                        match ring.recv_latest(&mut c) {
                            Recv::Value(v) => {
                                assert!(v >= last_value, "values come in order");
                                last_value = v;
                                last = last.max(v);
                            }
                            // The head read here may be ahead of what the ring has published yet.
                            Recv::Lagged { .. } => last = last.max(head.load(std::sync::atomic::Ordering::Acquire)),
                            Recv::Empty => unreachable!("wait returned without news"),
                        }
                    }
                })
            })
            .collect();
        for v in 1..=50 {
            head.store(v, std::sync::atomic::Ordering::Release);
            ring.publish(v);
            if v % 8 == 0 {
                std::thread::yield_now();
            }
        }
        for s in subscribers {
            s.join().expect("subscriber");
        }
        assert_eq!(ring.waiting.load(Relaxed), 0);
    }

    struct Count(std::sync::atomic::AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    #[test]
    fn registered_wakers_are_woken_once_and_forgotten() {
        let ring = Ring::with_capacity(2);
        let count = Arc::new(Count(std::sync::atomic::AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut c = ring.cursor();
        let key = ring.waker_key();
        assert!(!ring.register(&c, key, &waker));
        assert!(!ring.register(&c, key, &waker)); // the same key again: still one registration
        assert_eq!(ring.waiting.load(Relaxed), 1);
        ring.publish(1);
        assert_eq!(count.0.load(SeqCst), 1);
        assert_eq!(ring.waiting.load(Relaxed), 0);
        assert!(ring.register(&c, key, &waker)); // news already: not registered
        assert_eq!(ring.recv_latest(&mut c), Recv::Value(1));
        assert!(!ring.register(&c, key, &waker));
        ring.unregister(key);
        assert_eq!(ring.waiting.load(Relaxed), 0);
        ring.publish(2);
        assert_eq!(count.0.load(SeqCst), 1);
    }
}
