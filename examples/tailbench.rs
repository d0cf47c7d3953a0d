//! Subscription figures (docs/PERFORMANCE.md, "Subscriptions (W9 and friends)"): W9 tail latency, the
//! catch-up read rate of a subscriber, W2 with 16 idle-waiting subscribers against none, and W2 while a
//! subscriber is stopped for 10 s (which then must get every event, in order).
//!
//! ```text
//! cargo run --release --example tailbench -- [w9|catchup|w2idle|w2stopped|all]
//! ```
//! Environment: `BENCH_DIR` (where the temporary stores go, default `.`), `W9_N` (events, default 20,000),
//! `CATCHUP_N` (default 1,000,000), `W2_N` (appends per thread, default 20,000), `W2_ROUNDS` (default 2),
//! `STOP_S` (how long the stopped subscriber sleeps, default 10).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::{Durability, ExpectedVersion, NewEvent, Options, Position, Store, SubscriptionOptions};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into())).expect("tempdir")
}

/// p-th percentile of sorted microsecond samples.
fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(name: &str, mut us: Vec<f64>) {
    us.sort_by(f64::total_cmp);
    println!(
        "{name}: n={} p50={:.1} us p99={:.1} us p999={:.1} us max={:.1} us",
        us.len(),
        pct(&us, 0.50),
        pct(&us, 0.99),
        pct(&us, 0.999),
        us[us.len() - 1]
    );
}

/// W9: one writer, Sync single events paced at 2,000/s; one subscriber; from the append call to the
/// subscriber holding the event. The append's start time travels in the payload.
fn w9() {
    let n = env("W9_N", 20_000);
    let dir = tempdir();
    let store = Store::open(dir.path()).expect("open");
    let epoch = Instant::now();
    let mut sub = store.subscribe_all(Position::START);
    let subscriber = std::thread::spawn(move || {
        let mut lat = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let e = sub.next().expect("live").expect("event");
            let held = epoch.elapsed().as_nanos() as u64;
            let sent = u64::from_le_bytes(e.payload()[..8].try_into().expect("8 bytes"));
            lat.push((held - sent) as f64 / 1_000.0);
        }
        lat
    });
    let mut append_us = Vec::with_capacity(n as usize);
    let mut payload = vec![7u8; 128];
    for i in 0..n {
        let due = Duration::from_micros(500 * i);
        if let Some(wait) = due.checked_sub(epoch.elapsed()) {
            std::thread::sleep(wait);
        }
        let start = epoch.elapsed();
        payload[..8].copy_from_slice(&(start.as_nanos() as u64).to_le_bytes());
        store
            .append(
                &format!("account-{}", i % 10_000),
                ExpectedVersion::Any,
                &[NewEvent::new("Deposited", payload.clone())],
            )
            .expect("append");
        append_us.push((epoch.elapsed() - start).as_nanos() as f64 / 1_000.0);
    }
    let lat = subscriber.join().expect("subscriber");
    let stats = store.stats();
    println!("W9 ({n} events at 2,000/s, Sync; average fdatasync {} us)", stats.sync_average_us);
    summary("  append call to durable (append latency)", append_us);
    summary("  append call to subscriber holding the event", lat);
}

/// The catch-up read rate: a store of `CATCHUP_N` events, read by a subscription from the start (and, for
/// comparison, by `read_all`), touching each payload.
/// Reads every byte of a payload (a wrapping sum of its 8-byte words, then the bytes left), as the peer
/// comparison and `annals bench` do.
fn touch(payload: &[u8]) -> u64 {
    let mut words = payload.chunks_exact(8);
    let mut sum = (&mut words).map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes"))).fold(0, u64::wrapping_add);
    for &b in words.remainder() {
        sum = sum.wrapping_add(b as u64);
    }
    sum
}

fn catchup() {
    let n = env("CATCHUP_N", 1_000_000);
    let dir = tempdir();
    let store = Options::new().durability(Durability::Buffered).open(dir.path()).expect("open");
    let payload = vec![7u8; 128];
    let batch: Vec<NewEvent> = (0..100).map(|_| NewEvent::new("Deposited", payload.clone())).collect();
    for i in 0..n / 100 {
        let events: Vec<NewEvent> = batch.iter().map(|e| e.clone().with_id(annals::Uuid::now_v7())).collect();
        store.append(&format!("account-{}", i % 10_000), ExpectedVersion::Any, &events).expect("append");
    }
    store.sync().expect("sync");
    for round in 0..3 {
        let started = Instant::now();
        let mut sub = store.subscribe_all(Position::START);
        let mut bytes = 0u64;
        for _ in 0..n {
            bytes = bytes.wrapping_add(touch(sub.next().expect("live").expect("event").payload()));
        }
        let sub_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut bytes2 = 0u64;
        for e in store.read_all(Position::START) {
            bytes2 = bytes2.wrapping_add(touch(e.expect("event").payload()));
        }
        let read_s = started.elapsed().as_secs_f64();
        assert_eq!(bytes, bytes2);
        println!(
            "catch-up round {round}: subscription {:.1}M events/s, read_all {:.1}M events/s ({n} events of 128 bytes)",
            n as f64 / sub_s / 1e6,
            n as f64 / read_s / 1e6
        );
    }
}

/// W2 (16 threads, each `W2_N` Sync single-event appends to random accounts of 10,000): events/s.
fn w2(store: &Store) -> f64 {
    let per_thread = env("W2_N", 20_000);
    let started = Instant::now();
    let threads: Vec<_> = (0..16u64)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let payload = vec![7u8; 128];
                let mut x = t * 7919 + 1;
                for _ in 0..per_thread {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let e = NewEvent::new("Deposited", payload.clone());
                    store.append(&format!("account-{}", x % 10_000), ExpectedVersion::Any, &[e]).expect("append");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer");
    }
    (16 * per_thread) as f64 / started.elapsed().as_secs_f64()
}

/// W2 alone and with 16 subscribers that wait for events no one writes (a filter that matches nothing: they
/// are woken by each commit, skip its events and wait again), alternating, `W2_ROUNDS` times each.
fn w2idle() {
    for round in 0..env("W2_ROUNDS", 2) {
        let baseline = || {
            let dir = tempdir();
            let store = Store::open(dir.path()).expect("open");
            w2(&store)
        };
        // Alternate which goes first, so that drift on a shared machine does not favour one side.
        let none_first = round % 2 == 0;
        let mut none = if none_first { baseline() } else { 0.0 };
        let dir = tempdir();
        let store = Store::open(dir.path()).expect("open");
        let stop = Arc::new(AtomicBool::new(false));
        let subs: Vec<_> = (0..16)
            .map(|_| {
                let mut sub = store.subscribe(SubscriptionOptions::new().stream_prefix("idle-"));
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let _ = sub.next_timeout(Duration::from_millis(50)).expect("subscription");
                    }
                    sub.checkpoint()
                })
            })
            .collect();
        let with = w2(&store);
        stop.store(true, Ordering::Relaxed);
        let head = store.head();
        for s in subs {
            // Each idle subscriber scanned through the whole log.
            let checkpoint = s.join().expect("subscriber");
            assert!(checkpoint <= head);
        }
        drop(store);
        let dir = tempdir();
        let store = Store::open(dir.path()).expect("open");
        let stop = Arc::new(AtomicBool::new(false));
        let busy: Vec<_> = (0..16)
            .map(|_| {
                let mut sub = store.subscribe_all(Position::START);
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        if sub.next_timeout(Duration::from_millis(50)).expect("subscription").is_some() {
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        let with_busy = w2(&store);
        stop.store(true, Ordering::Relaxed);
        for s in busy {
            s.join().expect("subscriber");
        }
        drop((store, dir));
        if !none_first {
            none = baseline();
        }
        println!(
            "W2 round {round}: no subscriber {none:.0} events/s; 16 idle-waiting subscribers {with:.0} events/s ({:+.1}%); 16 subscribers reading every event {with_busy:.0} events/s ({:+.1}%)",
            (with / none - 1.0) * 100.0,
            (with_busy / none - 1.0) * 100.0
        );
    }
}

/// W2 alone, then W2 while a subscriber is stopped for `STOP_S` seconds; then that subscriber reads on and
/// must get every event, in order.
fn w2stopped() {
    let stop_s = env("STOP_S", 10);
    for round in 0..env("W2_ROUNDS", 2) {
        // Alternate which goes first, so that drift on a shared machine does not favour one side.
        let baseline = || {
            let dir = tempdir();
            let store = Store::open(dir.path()).expect("open");
            w2(&store)
        };
        let none_first = round % 2 == 0;
        let mut none = if none_first { baseline() } else { 0.0 };
        let dir = tempdir();
        let store = Store::open(dir.path()).expect("open");
        let mut sub = store.subscribe_all(Position::START);
        let started = Instant::now();
        let with = w2(&store);
        let w2_s = started.elapsed().as_secs_f64();
        if let Some(rest) = Duration::from_secs(stop_s).checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
        let head = store.head().as_u64();
        let caught = Instant::now();
        for expected in 0..head {
            let e = sub.next().expect("live").expect("event");
            assert_eq!(e.position().as_u64(), expected, "every event, in order");
        }
        let caught_ms = caught.elapsed().as_secs_f64() * 1e3;
        drop((sub, store, dir));
        if !none_first {
            none = baseline();
        }
        println!(
            "W2 round {round}: no subscriber {none:.0} events/s; a subscriber stopped for {stop_s} s {with:.0} events/s ({:+.1}%, W2 took {w2_s:.1} s); it then read all {head} events in order in {:.0} ms",
            (with / none - 1.0) * 100.0,
            caught_ms
        );
    }
}

fn main() {
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    match what.as_str() {
        "w9" => w9(),
        "catchup" => catchup(),
        "w2idle" => w2idle(),
        "w2stopped" => w2stopped(),
        "all" => {
            w9();
            catchup();
            w2idle();
            w2stopped();
        }
        other => panic!("unknown figure {other:?}: w9, catchup, w2idle, w2stopped or all"),
    }
}
