//! loom models of the notification ring (src/notify.rs): one producer with two subscribers, wraparound at
//! capacities 2 and 4, a lagging subscriber, parking and async wakers. Every interleaving up to the preemption
//! bound is explored; a lost wake-up shows as a deadlock, a missing happens-before edge as a data race on the
//! modelled log, a wrong value as a failed assertion.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release --test loom_ring`
//! (scripts/test does). Without `--cfg loom` this file is empty.
#![cfg(loom)]

use std::sync::atomic::{AtomicBool as StdAtomicBool, Ordering::SeqCst as StdSeqCst};

use annals::notify::{Recv, Ring};
use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicU64;
use loom::sync::Arc;
use loom::thread;

/// What the committer publishes: a log of `n` entries written without atomics (so loom reports a data race if
/// a subscriber reads one without a happens-before edge), and the head, stored with Release before the ring
/// hears of it, as `Commit` does.
struct Log {
    entries: Vec<UnsafeCell<u64>>,
    head: AtomicU64,
    ring: Ring,
}

impl Log {
    fn new(n: usize, capacity: usize) -> Log {
        Log {
            entries: (0..n).map(|_| UnsafeCell::new(0)).collect(),
            head: AtomicU64::new(0),
            ring: Ring::with_capacity(capacity),
        }
    }

    /// The committer: writes entry i, moves the head to i + 1 and publishes it, for every entry.
    fn produce(&self) {
        for i in 0..self.entries.len() {
            // loom's UnsafeCell checks the accesses: this is the only writer of entry i, and
            // readers touch it only below a head they learned of.
            self.entries[i].with_mut(|p| unsafe_write(p, i as u64 + 100));
            self.head.store(i as u64 + 1, std::sync::atomic::Ordering::Release);
            self.ring.publish(i as u64 + 1);
        }
    }

    /// A subscriber reads the log from `from` up to `to` and checks every entry.
    fn read(&self, from: u64, to: u64) {
        for i in from..to {
            let v = self.entries[i as usize].with(|p| unsafe_read(p));
            assert_eq!(v, i + 100, "entry {i} read before it was published");
        }
    }
}

#[allow(unsafe_code, reason = "loom's UnsafeCell hands out raw pointers; the model checks every access")]
fn unsafe_write(p: *mut u64, v: u64) {
    // SAFETY: the pointer comes from loom's UnsafeCell::with_mut, which tracks and checks exclusive access.
    unsafe { *p = v }
}

#[allow(unsafe_code, reason = "loom's UnsafeCell hands out raw pointers; the model checks every access")]
fn unsafe_read(p: *const u64) -> u64 {
    // SAFETY: the pointer comes from loom's UnsafeCell::with, which tracks and checks shared access.
    unsafe { *p }
}

/// A subscriber that reads every notification in order (`try_recv`), reads the log up to each head, and
/// parks when there is nothing new. Returns true if it was ever told it lagged.
fn in_order_subscriber(log: &Log, n: u64) -> bool {
    let mut cursor = log.ring.cursor();
    let mut seen = 0;
    let mut lagged = false;
    // The cursor was taken before this load: anything published later is news to it.
    let start = log.head.load(std::sync::atomic::Ordering::Acquire);
    log.read(0, start);
    seen = seen.max(start);
    while seen < n {
        match log.ring.try_recv(&mut cursor) {
            Recv::Value(v) => {
                // Values are the sequences + 1: in order, no gaps, unless a Lagged came in between.
                assert_eq!(v, cursor.sequence(), "notifications arrive in order");
                log.read(seen.min(v), v);
                seen = seen.max(v);
            }
            Recv::Lagged { missed } => {
                assert!(missed > 0);
                lagged = true;
                let head = log.head.load(std::sync::atomic::Ordering::Acquire);
                assert!(head >= seen);
                log.read(seen, head);
                seen = head;
            }
            Recv::Empty => {
                log.ring.wait(&cursor, None);
            }
        }
    }
    lagged
}

/// A subscriber that only wants the newest head (`recv_latest`), as subscriptions do.
fn latest_subscriber(log: &Log, n: u64) {
    let mut cursor = log.ring.cursor();
    let mut seen = log.head.load(std::sync::atomic::Ordering::Acquire);
    log.read(0, seen);
    while seen < n {
        match log.ring.recv_latest(&mut cursor) {
            Recv::Value(v) => {
                assert!(v <= cursor.sequence());
                if v > seen {
                    log.read(seen, v);
                    seen = v;
                }
            }
            Recv::Lagged { .. } => {
                let head = log.head.load(std::sync::atomic::Ordering::Acquire);
                log.read(seen, head);
                seen = head;
            }
            Recv::Empty => {
                log.ring.wait(&cursor, None);
            }
        }
    }
}

/// A subscriber that polls without blocking, at most `polls` times, checking what it gets: the shape of a
/// subscriber with several peers, kept small so that three threads stay within minutes for the model checker.
fn polling_subscriber(log: &Log, polls: usize) -> bool {
    let mut cursor = log.ring.cursor();
    let mut seen = log.head.load(std::sync::atomic::Ordering::Acquire);
    log.read(0, seen);
    let mut lagged = false;
    for _ in 0..polls {
        match log.ring.try_recv(&mut cursor) {
            Recv::Value(v) => {
                assert_eq!(v, cursor.sequence(), "notifications arrive in order");
                log.read(seen.min(v), v);
                seen = seen.max(v);
            }
            Recv::Lagged { missed } => {
                assert!(missed > 0);
                lagged = true;
                let head = log.head.load(std::sync::atomic::Ordering::Acquire);
                assert!(head >= seen);
                log.read(seen, head);
                seen = head;
            }
            Recv::Empty => thread::yield_now(),
        }
    }
    lagged
}

#[test]
fn one_producer_two_subscribers_wraparound_at_capacity_2() {
    static LAGGED: StdAtomicBool = StdAtomicBool::new(false);
    loom::model(|| {
        let log = Arc::new(Log::new(3, 2));
        let subscribers: Vec<_> = (0..2)
            .map(|_| {
                let log = log.clone();
                thread::spawn(move || polling_subscriber(&log, 1))
            })
            .collect();
        log.produce();
        for s in subscribers {
            if s.join().expect("subscriber") {
                LAGGED.store(true, StdSeqCst);
            }
        }
    });
    assert!(LAGGED.load(StdSeqCst), "some interleaving made a subscriber lag");
}

#[test]
fn a_parked_subscriber_gets_everything_across_wraparound_at_capacity_2() {
    loom::model(|| {
        let log = Arc::new(Log::new(3, 2));
        let sub = {
            let log = log.clone();
            thread::spawn(move || in_order_subscriber(&log, 3))
        };
        log.produce();
        sub.join().expect("subscriber");
    });
}

#[test]
fn a_latest_subscriber_at_capacity_4() {
    loom::model(|| {
        let log = Arc::new(Log::new(5, 4));
        let sub = {
            let log = log.clone();
            thread::spawn(move || latest_subscriber(&log, 5))
        };
        log.produce();
        sub.join().expect("subscriber");
    });
}

#[test]
fn a_lagging_subscriber_catches_up_from_the_log() {
    // The subscriber takes its cursor, then lets the producer run; whatever it missed, it finds through the
    // sequence check and reads from the log.
    static LAGGED: StdAtomicBool = StdAtomicBool::new(false);
    loom::model(|| {
        let log = Arc::new(Log::new(4, 2));
        let sub = {
            let log = log.clone();
            thread::spawn(move || {
                let mut cursor = log.ring.cursor();
                thread::yield_now();
                // The protocol: cursor first, then the head; whatever was published before is in the log.
                let mut seen = log.head.load(std::sync::atomic::Ordering::Acquire);
                log.read(0, seen);
                while seen < 4 {
                    match log.ring.try_recv(&mut cursor) {
                        Recv::Value(v) => {
                            log.read(seen.min(v), v);
                            seen = seen.max(v);
                        }
                        Recv::Lagged { .. } => {
                            LAGGED.store(true, StdSeqCst);
                            let head = log.head.load(std::sync::atomic::Ordering::Acquire);
                            log.read(seen, head);
                            seen = head;
                        }
                        Recv::Empty => {
                            log.ring.wait(&cursor, None);
                        }
                    }
                }
            })
        };
        log.produce();
        sub.join().expect("subscriber");
    });
    assert!(LAGGED.load(StdSeqCst), "the lagging path was explored");
}

#[test]
fn close_wakes_a_parked_subscriber() {
    loom::model(|| {
        let ring = Arc::new(Ring::with_capacity(2));
        let sub = {
            let ring = ring.clone();
            thread::spawn(move || {
                let c = ring.cursor();
                assert!(ring.wait(&c, None));
            })
        };
        ring.close();
        sub.join().expect("subscriber");
    });
}

#[test]
fn an_async_waker_is_not_lost() {
    use std::task::{Wake, Waker};
    struct Unpark(thread::Thread);
    impl Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    loom::model(|| {
        let log = Arc::new(Log::new(2, 2));
        let sub = {
            let log = log.clone();
            thread::spawn(move || {
                let waker = Waker::from(std::sync::Arc::new(Unpark(thread::current())));
                let key = log.ring.waker_key();
                let mut cursor = log.ring.cursor();
                let mut seen = log.head.load(std::sync::atomic::Ordering::Acquire);
                log.read(0, seen);
                while seen < 2 {
                    match log.ring.recv_latest(&mut cursor) {
                        Recv::Value(v) => {
                            log.read(seen.min(v), v);
                            seen = seen.max(v);
                        }
                        Recv::Lagged { .. } => {
                            let head = log.head.load(std::sync::atomic::Ordering::Acquire);
                            log.read(seen, head);
                            seen = head;
                        }
                        Recv::Empty => {
                            if !log.ring.register(&cursor, key, &waker) {
                                thread::park();
                            }
                        }
                    }
                }
                log.ring.unregister(key);
            })
        };
        log.produce();
        sub.join().expect("subscriber");
    });
}
