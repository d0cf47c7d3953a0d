//! `next_timeout` returns `Ok(None)` when nothing arrives in time, on an empty store, after catching up, and
//! with a filter that matches nothing; and still delivers what arrives later.

mod subscription_support;

use std::time::Duration;

use annals::{Durability, ExpectedVersion, NewEvent, Position, SubscriptionOptions};
use subscription_support::{open, take};

#[test]
fn next_timeout_returns_none_when_nothing_arrives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), Durability::Sync);
    let mut sub = store.subscribe_all(Position::START);
    assert!(sub.next_timeout(Duration::from_millis(5)).expect("no error").is_none());
    assert!(sub.next_timeout(Duration::ZERO).expect("no error").is_none());
    store.append("s", ExpectedVersion::Any, &[NewEvent::new("E", "")]).expect("append");
    assert_eq!(take(&mut sub, 1)[0].position, 0);
    assert!(sub.next_timeout(Duration::from_millis(5)).expect("no error").is_none());
    store.append("s", ExpectedVersion::Any, &[NewEvent::new("E", "")]).expect("append");
    assert_eq!(take(&mut sub, 1)[0].position, 1);
}

#[test]
fn next_timeout_returns_none_when_the_filter_skips_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), Durability::Buffered);
    for _ in 0..10 {
        store.append("order-1", ExpectedVersion::Any, &[NewEvent::new("Placed", "")]).expect("append");
    }
    let mut sub = store.subscribe(SubscriptionOptions::new().stream_prefix("account-"));
    assert!(sub.next_timeout(Duration::from_millis(5)).expect("no error").is_none());
    assert_eq!(sub.checkpoint(), Position::from_u64(10), "the skipped events are behind it");
    let mut stream = store.subscribe_stream("account-9", 0).expect("subscribe_stream");
    assert!(stream.next_timeout(Duration::from_millis(5)).expect("no error").is_none());
}
