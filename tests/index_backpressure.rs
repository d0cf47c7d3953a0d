//! Backpressure from the indexer: appends that outrun it wait once the memtables cover three index checkpoints
//! of log, so the heap they hold stays bounded (docs/DESIGN.md, "Backpressure"). The indexer is made slow
//! deterministically by holding the simulated file system's operations on chunk index files (`.idx`).
//!
//! - blocking appends (Buffered and Sync) stop at the bound while the indexer is held, and every event is there
//!   once it is released;
//! - an async append past the bound stays pending, and is woken when the indexer catches up;
//! - while writing index files fails (a full disk), appends do not wait: the memtables grow instead.

mod sim_support;

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use annals::format::frame::event_frame_bytes;
use annals::fs::sim::{Errno, Fault, Op, SimFs};
use annals::{Durability, ExpectedVersion, NewEvent, Position, Store};
use sim_support::{dir, new_sim, options};

/// The simulated stores' index checkpoint (sim_support's options).
const CHECKPOINT: u64 = 8 << 10;
/// The memtables' bound, in checkpoints (annals' `STALL_CHECKPOINTS`).
const STALL_CHECKPOINTS: u64 = 3;
const PAYLOAD: usize = 200;
const EVENTS: u64 = 1_000;

fn stream(i: u64) -> String {
    format!("s-{:03}", i % 50)
}

fn event(i: u64) -> NewEvent {
    NewEvent::new("T", vec![(i % 251) as u8; PAYLOAD])
}

/// Events the memtables hold at most while appends wait: the bound, plus the append that crossed it in each
/// writing thread.
fn bound_events(writers: u64) -> u64 {
    let frame = event_frame_bytes(stream(0).len(), 1, 0, PAYLOAD) as u64;
    (STALL_CHECKPOINTS * CHECKPOINT).div_ceil(frame) + writers
}

/// Holds the simulated file system's operations on chunk index files until dropped (also when the test fails:
/// the store's close waits for its indexer).
struct HeldIndexer<'a>(&'a SimFs);

impl<'a> HeldIndexer<'a> {
    fn hold(sim: &'a SimFs) -> HeldIndexer<'a> {
        sim.hold(".idx");
        HeldIndexer(sim)
    }
}

impl Drop for HeldIndexer<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Polls `cond` until it holds; panics after a minute (the condition is reached in milliseconds).
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Every event appended, in order, once.
fn check_all_there(store: &Store, what: &str) {
    let events: Vec<_> = store.read_all(Position::START).collect::<Result<_, _>>().unwrap();
    assert_eq!(events.len() as u64, EVENTS, "{what}: every event is there");
    for (i, e) in events.iter().enumerate() {
        let i = i as u64;
        assert_eq!((e.position().as_u64(), e.stream(), e.payload()), (i, &*stream(i), event(i).payload()), "{what}");
    }
}

fn held_indexer_bounds_blocking_appends(durability: Durability) {
    let sim = new_sim();
    let store = options(&sim, durability).open(dir()).unwrap();
    let held = HeldIndexer::hold(&sim);
    let done = Arc::new(AtomicU64::new(0));
    let writer = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            for i in 0..EVENTS {
                store.append(&stream(i), ExpectedVersion::Any, &[event(i)]).unwrap();
                done.store(i + 1, Ordering::Release);
            }
        })
    };
    let bound = bound_events(1);
    wait_for("the indexer to be held", || sim.held() > 0);
    wait_for("the memtables to reach their bound", || store.stats().index_memtable_events + 1 >= bound);
    // Without backpressure the writer would be done in a few milliseconds, with every event in the memtables.
    for _ in 0..200 {
        let held = store.stats().index_memtable_events;
        assert!(held <= bound, "{durability:?}: the memtables hold {held} events, over the bound of {bound}");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(done.load(Ordering::Acquire) < EVENTS, "{durability:?}: appends went on past the bound");
    drop(held);
    writer.join().unwrap();
    check_all_there(&store, &format!("{durability:?}, after the release"));
    wait_for("the indexer to catch up", || store.stats().index_pending_events == 0);
    assert!(store.stats().index_memtable_events <= bound);
    drop(store);
    let store = options(&sim, durability).open(dir()).unwrap();
    check_all_there(&store, &format!("{durability:?}, reopened"));
}

#[test]
fn buffered_appends_wait_for_a_held_indexer_at_the_bound() {
    held_indexer_bounds_blocking_appends(Durability::Buffered);
}

#[test]
fn sync_appends_wait_for_a_held_indexer_at_the_bound() {
    held_indexer_bounds_blocking_appends(Durability::Sync);
}

/// Counts its wake-ups.
struct CountingWaker(AtomicU64);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

#[test]
fn an_async_append_past_the_bound_is_pending_until_the_indexer_catches_up() {
    let sim = new_sim();
    let store = options(&sim, Durability::Buffered).open(dir()).unwrap();
    let held = HeldIndexer::hold(&sim);
    let counter = Arc::new(CountingWaker(AtomicU64::new(0)));
    let waker = Waker::from(counter.clone());
    let mut cx = Context::from_waker(&waker);
    let mut appended = 0;
    let mut pending = None;
    while appended < EVENTS {
        let mut future = Box::pin(store.append_async(&stream(appended), ExpectedVersion::Any, &[event(appended)]));
        appended += 1;
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(r) => {
                r.unwrap();
            }
            Poll::Pending => {
                pending = Some(future);
                break;
            }
        }
    }
    let mut future = pending.expect("an async append past the bound waits for the indexer");
    assert!(appended <= bound_events(1), "{appended} appends went through before one waited");
    assert!(future.as_mut().poll(&mut cx).is_pending(), "still pending while the indexer is held");
    drop(held);
    wait_for("the pending append to be woken", || counter.0.load(Ordering::Acquire) > 0);
    let mut future = pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(r) => {
                r.unwrap();
                break;
            }
            // Woken by progress that did not yet bring the memtables under the bound: wait for the next.
            Poll::Pending => {
                let seen = counter.0.load(Ordering::Acquire);
                wait_for("the next wake-up", || counter.0.load(Ordering::Acquire) > seen);
            }
        }
    }
    for i in appended..EVENTS {
        store.append(&stream(i), ExpectedVersion::Any, &[event(i)]).unwrap();
    }
    check_all_there(&store, "async");
}

#[test]
fn appends_do_not_wait_while_index_files_cannot_be_written() {
    let sim: SimFs = new_sim();
    let store = options(&sim, Durability::Buffered).open(dir()).unwrap();
    sim.fail(Fault::persistent(Op::Create, 0, Errno::Enospc).on_paths(".idx"));
    for i in 0..EVENTS {
        store.append(&stream(i), ExpectedVersion::Any, &[event(i)]).unwrap();
    }
    assert!(
        store.stats().index_memtable_events > bound_events(1),
        "the memtables grew past the bound instead of appends waiting"
    );
    check_all_there(&store, "while the disk is full");
    sim.clear_faults();
    // The indexer tries again every second; once it is through, the memtables shrink back.
    wait_for("the indexer to recover", || store.stats().index_memtable_events <= bound_events(1));
    drop(store);
    let store = options(&sim, Durability::Buffered).open(dir()).unwrap();
    check_all_there(&store, "reopened");
}
