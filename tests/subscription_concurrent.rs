//! Subscribers under concurrent appends from several threads: each gets every event exactly once, in commit
//! order, and every stream's versions in order; the same sequence `read_all` gives afterwards. Randomised
//! (which streams, how many events per append); the seed is printed.

mod subscription_support;

use std::collections::HashMap;

use annals::{Durability, ExpectedVersion, NewEvent, Position};
use subscription_support::{all, assert_gapless, open, seed, take, Rng};

fn concurrent(durability: Durability, threads: u64, appends: u64) {
    let seed = seed();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), durability);
    let early = store.subscribe_all(Position::START);
    let writers: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed ^ (t + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let mut written = 0;
                for _ in 0..appends {
                    let n = 1 + rng.below(3) as usize;
                    let events: Vec<NewEvent> = (0..n).map(|_| NewEvent::new("E", format!("{t}"))).collect();
                    store.append(&format!("s-{}", rng.below(8)), ExpectedVersion::Any, &events).expect("append");
                    written += n;
                }
                written
            })
        })
        .collect();
    // A second subscriber starts while the writers run.
    let late = store.subscribe_all(Position::START);
    let readers: Vec<_> =
        [early, late].into_iter().map(|mut sub| std::thread::spawn(move || (sub.by_ref().count(), sub))).collect();
    let total: usize = writers.into_iter().map(|w| w.join().expect("writer")).sum();
    drop(readers); // (the threads above never end on their own: they only show subscribers run alongside)
    let expected = all(&store);
    assert_eq!(expected.len(), total);
    for from in [0, total as u64 / 2] {
        let mut sub = store.subscribe_all(Position::from_u64(from));
        let got = take(&mut sub, total - from as usize);
        assert_gapless(&got, from);
        assert!(got == expected[from as usize..], "the same events as read_all");
    }
    let mut versions: HashMap<String, u64> = HashMap::new();
    for g in &expected {
        let next = versions.entry(g.stream.clone()).or_insert(0);
        assert_eq!(g.version, *next, "versions of {} in order", g.stream);
        *next += 1;
    }
}

fn live(durability: Durability, threads: u64, appends: u64) {
    let seed = seed();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), durability);
    let subs: Vec<_> = (0..2).map(|_| store.subscribe_all(Position::START)).collect();
    let writers: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed ^ (t + 7));
                for _ in 0..appends {
                    store
                        .append(&format!("s-{}", rng.below(8)), ExpectedVersion::Any, &[NewEvent::new("E", "")])
                        .expect("append");
                }
            })
        })
        .collect();
    let total = (threads * appends) as usize;
    let readers: Vec<_> = subs.into_iter().map(|mut sub| std::thread::spawn(move || take(&mut sub, total))).collect();
    for w in writers {
        w.join().expect("writer");
    }
    let expected = all(&store);
    for r in readers {
        let got = r.join().expect("reader");
        assert_gapless(&got, 0);
        assert!(got == expected, "the same events as read_all");
    }
}

#[test]
fn live_subscribers_under_concurrent_sync_appends() {
    live(Durability::Sync, 4, 300);
}

#[test]
fn live_subscribers_under_concurrent_buffered_appends() {
    live(Durability::Buffered, 4, 3_000);
}

#[test]
fn subscriptions_from_anywhere_after_concurrent_appends_of_several_events() {
    concurrent(Durability::Buffered, 3, 1_000);
}
