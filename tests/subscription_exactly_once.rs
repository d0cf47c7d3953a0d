//! Every event exactly once, in commit order, with no gaps: for a subscriber that starts before the appends,
//! one that starts after them (catch-up, then live), and one that starts in the middle.

mod subscription_support;

use annals::{Durability, ExpectedVersion, NewEvent, Position, StreamAppend};
use std::time::Duration;
use subscription_support::{all, assert_gapless, open, take, Got};

/// Appends `n` events in appends of 1 to 3 events (and now and then across two streams), returning their ids in
/// position order.
fn append_mixed(store: &annals::Store, n: usize, tag: usize) -> Vec<annals::Uuid> {
    let mut ids = Vec::new();
    let mut i = 0;
    while ids.len() < n {
        let k = (i % 3 + 1).min(n - ids.len());
        let events: Vec<NewEvent> = (0..k).map(|j| NewEvent::new("Deposited", format!("{tag}-{i}-{j}"))).collect();
        ids.extend(events.iter().map(|e| e.id()));
        if i % 7 == 6 && k == 1 {
            let other = [NewEvent::new("Noted", "x")];
            ids.push(other[0].id());
            store
                .append_many(&[
                    StreamAppend::new(&format!("account-{}", i % 5), ExpectedVersion::Any, &events),
                    StreamAppend::new("audit", ExpectedVersion::Any, &other),
                ])
                .expect("append_many");
        } else {
            store.append(&format!("account-{}", i % 5), ExpectedVersion::Any, &events).expect("append");
        }
        i += 1;
    }
    ids
}

#[test]
fn a_subscriber_started_before_the_appends_gets_each_once_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), Durability::Sync);
    let mut sub = store.subscribe_all(Position::START);
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || append_mixed(&store, 300, 0))
    };
    let ids = writer.join().expect("writer");
    let got = take(&mut sub, ids.len());
    assert_gapless(&got, 0);
    assert!(got.iter().map(|g| g.id).eq(ids.iter().copied()), "the appended events, in order");
    assert!(got == all(&store), "what read_all gives");
    assert!(sub.next_timeout(Duration::from_millis(20)).expect("no error").is_none(), "nothing more");
}

#[test]
fn a_subscriber_started_after_the_appends_catches_up_then_follows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), Durability::Sync);
    let mut ids = append_mixed(&store, 200, 1);
    let mut sub = store.subscribe_all(Position::START);
    let first = take(&mut sub, 100);
    ids.extend(append_mixed(&store, 150, 2));
    let rest = take(&mut sub, ids.len() - 100);
    let got: Vec<Got> = first.into_iter().chain(rest).collect();
    assert_gapless(&got, 0);
    assert!(got.iter().map(|g| g.id).eq(ids.iter().copied()), "the appended events, in order");
    assert!(sub.next_timeout(Duration::from_millis(20)).expect("no error").is_none());
}

#[test]
fn a_subscriber_from_the_middle_starts_exactly_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), Durability::Buffered);
    let ids = append_mixed(&store, 500, 3);
    let mut sub = store.subscribe_all(Position::from_u64(123));
    let got = take(&mut sub, ids.len() - 123);
    assert_gapless(&got, 123);
    assert!(got.iter().map(|g| g.id).eq(ids[123..].iter().copied()));
    // A subscription from past the head waits until events get there.
    let ahead_of_head = ids.len() as u64 + 2;
    let mut ahead = store.subscribe_all(Position::from_u64(ahead_of_head));
    assert!(ahead.next_timeout(Duration::from_millis(10)).expect("no error").is_none());
    append_mixed(&store, 3, 4);
    let got = take(&mut ahead, 1);
    assert_eq!(got[0].position, ahead_of_head);
}

#[test]
fn the_iterator_blocks_until_the_next_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), Durability::Sync);
    let sub = store.subscribe_all(Position::START);
    let reader = std::thread::spawn(move || {
        sub.take(50).map(|e| e.map(|e| e.position().as_u64())).collect::<Result<Vec<_>, _>>()
    });
    for i in 0..50 {
        store.append("s", ExpectedVersion::Any, &[NewEvent::new("E", format!("{i}"))]).expect("append");
    }
    assert_eq!(reader.join().expect("reader").expect("events"), (0..50).collect::<Vec<_>>());
}

#[test]
fn a_subscription_keeps_the_store_open_and_closing_releases_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), Durability::Buffered);
    store.append("s", ExpectedVersion::Any, &[NewEvent::new("E", "1")]).expect("append");
    let mut sub = store.subscribe_all(Position::START);
    drop(store);
    assert_eq!(take(&mut sub, 1)[0].position, 0);
    assert!(matches!(annals::Store::open(dir.path()), Err(annals::Error::Locked { .. })));
    drop(sub);
    let store = annals::Store::open(dir.path()).expect("reopen once the subscription is gone");
    assert_eq!(store.head(), Position::from_u64(1));
}
