//! Per-stream subscriptions: one stream's events, in version order, from a version on; catch-up through the
//! stream index, then live while other streams are written too.

mod subscription_support;

use std::time::Duration;

use annals::{Durability, ExpectedVersion, NewEvent};
use subscription_support::{all, open, take};

#[test]
fn a_stream_subscription_gets_that_stream_only_in_version_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), Durability::Sync);
    for i in 0..40 {
        store
            .append(&format!("account-{}", i % 4), ExpectedVersion::Any, &[NewEvent::new("Deposited", "")])
            .expect("append");
    }
    let mut sub = store.subscribe_stream("account-1", 3).expect("subscribe_stream");
    let first = take(&mut sub, 7);
    assert_eq!(first.iter().map(|g| g.version).collect::<Vec<_>>(), (3..10).collect::<Vec<_>>());
    assert!(first.iter().all(|g| g.stream == "account-1"));
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 0..40 {
                store
                    .append(&format!("account-{}", i % 4), ExpectedVersion::Any, &[NewEvent::new("Deposited", "")])
                    .expect("append");
            }
        })
    };
    let live = take(&mut sub, 10);
    writer.join().expect("writer");
    assert_eq!(live.iter().map(|g| g.version).collect::<Vec<_>>(), (10..20).collect::<Vec<_>>());
    let want: Vec<_> = all(&store).into_iter().filter(|g| g.stream == "account-1" && g.version >= 3).collect();
    assert_eq!(first.into_iter().chain(live).collect::<Vec<_>>(), want);
    assert!(sub.next_timeout(Duration::from_millis(10)).expect("no error").is_none());
    assert!(sub.checkpoint().as_u64() > want.last().expect("some").position);
}

#[test]
fn a_subscription_to_a_stream_that_does_not_exist_yet_waits_for_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), Durability::Buffered);
    let mut sub = store.subscribe_stream("order-1", 0).expect("subscribe_stream");
    assert!(sub.next_timeout(Duration::from_millis(5)).expect("no error").is_none());
    store.append("order-2", ExpectedVersion::Any, &[NewEvent::new("Placed", "")]).expect("append");
    store.append("order-1", ExpectedVersion::NoStream, &[NewEvent::new("Placed", "")]).expect("append");
    let got = take(&mut sub, 1);
    assert_eq!((got[0].stream.as_str(), got[0].version, got[0].position), ("order-1", 0, 1));
    assert!(store.subscribe_stream("", 0).is_err());
}
