//! A lagging subscriber: stopped while thousands of appends happen (many times the notification ring's
//! capacity), it then catches up with every event, in order, exactly once. The writer is never blocked by it:
//! the appends below complete while the subscriber's thread is held at a barrier, which would deadlock if a
//! writer waited for subscribers.

mod subscription_support;

use std::sync::{Arc, Barrier};

use annals::{Durability, ExpectedVersion, NewEvent, Position};
use subscription_support::{all, assert_gapless, open, take};

fn lag(durability: Durability, appends: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), durability);
    store.append("account-0", ExpectedVersion::Any, &[NewEvent::new("Opened", "")]).expect("append");
    let stopped = Arc::new(Barrier::new(2));
    let resume = Arc::new(Barrier::new(2));
    let subscriber = {
        let mut sub = store.subscribe_all(Position::START);
        let (stopped, resume) = (stopped.clone(), resume.clone());
        std::thread::spawn(move || {
            let first = take(&mut sub, 1);
            stopped.wait(); // the subscriber stops here...
            resume.wait(); // ...until every append below is done
            let rest = take(&mut sub, appends);
            (first, rest)
        })
    };
    stopped.wait();
    for i in 0..appends {
        store
            .append(
                &format!("account-{}", i % 100),
                ExpectedVersion::Any,
                &[NewEvent::new("Deposited", format!("{i}"))],
            )
            .expect("append while the subscriber is stopped");
    }
    resume.wait();
    let (first, rest) = subscriber.join().expect("subscriber");
    let got: Vec<_> = first.into_iter().chain(rest).collect();
    assert_gapless(&got, 0);
    assert!(got == all(&store), "the same events as read_all");
}

#[test]
fn a_stopped_buffered_subscriber_catches_up_with_every_event_in_order() {
    lag(Durability::Buffered, 20_000);
}

#[test]
fn a_stopped_sync_subscriber_catches_up_with_every_event_in_order() {
    // 2,500 single-event appends: more than twice the ring's 1,024 slots of head notifications.
    lag(Durability::Sync, 2_500);
}

#[test]
fn a_subscriber_that_never_reads_does_not_hold_writers_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), Durability::Buffered);
    let idle: Vec<_> = (0..8).map(|_| store.subscribe_all(Position::START)).collect();
    for i in 0..10_000 {
        store.append("s", ExpectedVersion::Any, &[NewEvent::new("E", format!("{i}"))]).expect("append");
    }
    assert_eq!(store.head(), Position::from_u64(10_000));
    for mut sub in idle {
        let got = take(&mut sub, 10_000);
        assert_gapless(&got, 0);
    }
}
