//! What a subscriber sees in each durability mode: with `Sync`, never an event before it is durable; with
//! `Buffered`, each event at once, before any sync.

mod subscription_support;

use std::time::Duration;

use annals::{Durability, ExpectedVersion, NewEvent, Position};
use subscription_support::{open, take, PATIENCE};

#[test]
fn in_sync_mode_a_subscriber_never_sees_an_event_before_it_is_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), Durability::Sync);
    let mut sub = store.subscribe_all(Position::START);
    let writers: Vec<_> = (0..3)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    let n = 1 + (i % 2);
                    let events: Vec<NewEvent> = (0..n).map(|_| NewEvent::new("E", format!("{t}"))).collect();
                    store.append(&format!("s-{t}"), ExpectedVersion::Any, &events).expect("append");
                }
            })
        })
        .collect();
    for expected in 0..900u64 {
        let e = sub.next_timeout(PATIENCE).expect("no error").expect("event in time");
        assert_eq!(e.position().as_u64(), expected);
        let durable = store.stats().durable;
        assert!(durable > expected, "event {expected} delivered while only {durable} positions were durable");
    }
    for w in writers {
        w.join().expect("writer");
    }
}

#[test]
fn in_buffered_mode_a_subscriber_sees_each_event_at_once_before_any_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), Durability::Buffered); // no background sync
    let mut sub = store.subscribe_all(Position::START);
    for i in 0..50u64 {
        store.append("s", ExpectedVersion::Any, &[NewEvent::new("E", format!("{i}"))]).expect("append");
        let got = take(&mut sub, 1);
        assert_eq!(got[0].position, i);
    }
    assert_eq!(store.stats().durable, 0, "nothing was synced, yet everything was delivered");
    store.sync().expect("sync");
    assert_eq!(store.stats().durable, 50);
    assert!(sub.next_timeout(Duration::from_millis(5)).expect("no error").is_none());
}
