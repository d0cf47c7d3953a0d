//! Filtered subscriptions: by stream-name prefix (a category), by event type, both; and the checkpoints that
//! move a consumer's position through stretches where the filter matches nothing.

mod subscription_support;

use std::time::Duration;

use annals::{Durability, ExpectedVersion, NewEvent, Position, SubscriptionItem, SubscriptionOptions};
use subscription_support::{all, open, take, Got, PATIENCE};

/// 300 events over accounts, orders and a stream named like a prefix but not in the category.
fn fill(store: &annals::Store) {
    for i in 0..300 {
        let (stream, ty) = match i % 4 {
            0 => (format!("account-{}", i % 7), "Deposited"),
            1 => (format!("account-{}", i % 7), "Withdrawn"),
            2 => (format!("order-{}", i % 5), "Deposited"),
            _ => ("accounting".to_owned(), "Deposited"),
        };
        store.append(&stream, ExpectedVersion::Any, &[NewEvent::new(ty, format!("{i}"))]).expect("append");
    }
}

fn expected(store: &annals::Store, keep: impl Fn(&Got) -> bool) -> Vec<Got> {
    all(store).into_iter().filter(|g| keep(g)).collect()
}

#[test]
fn a_prefix_delivers_the_category_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), Durability::Buffered);
    let mut sub = store.subscribe(SubscriptionOptions::new().stream_prefix("account-"));
    fill(&store);
    let want = expected(&store, |g| g.stream.starts_with("account-"));
    assert_eq!(want.len(), 150);
    assert!(take(&mut sub, want.len()) == want, "the matching events, in order");
    assert!(sub.next_timeout(Duration::from_millis(10)).expect("no error").is_none());
}

#[test]
fn event_types_deliver_those_types_only_and_combine_with_a_prefix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), Durability::Buffered);
    fill(&store);
    let mut by_type = store.subscribe(SubscriptionOptions::new().event_types(["Withdrawn"]));
    let want = expected(&store, |g| g.event_type == "Withdrawn");
    assert!(take(&mut by_type, want.len()) == want, "the matching events, in order");
    let mut both = store.subscribe(SubscriptionOptions::new().stream_prefix("account-").event_types(["Deposited"]));
    let want = expected(&store, |g| g.event_type == "Deposited" && g.stream.starts_with("account-"));
    assert_eq!(want.len(), 75);
    assert!(take(&mut both, want.len()) == want, "the matching events, in order");
    let mut none = store.subscribe(SubscriptionOptions::new().event_types(Vec::<String>::new()));
    assert!(none.next_timeout(Duration::from_millis(5)).expect("no error").is_none());
    assert_eq!(none.checkpoint(), Position::from_u64(300));
}

#[test]
fn checkpoints_come_every_n_skipped_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), Durability::Buffered);
    fill(&store);
    store.append("account-9", ExpectedVersion::Any, &[NewEvent::new("Closed", "")]).expect("append");
    let mut sub = store.subscribe(
        SubscriptionOptions::new().event_types(["Closed"]).checkpoint_every(64).checkpoint_interval(PATIENCE * 10),
    );
    let mut checkpoints = Vec::new();
    let event = loop {
        match sub.next_item_timeout(PATIENCE).expect("no error").expect("an item") {
            SubscriptionItem::Checkpoint(p) => checkpoints.push(p.as_u64()),
            SubscriptionItem::Event(e) => break e,
        }
    };
    assert_eq!(checkpoints, [64, 128, 192, 256]);
    assert_eq!(event.position(), Position::from_u64(300));
    assert_eq!(sub.checkpoint(), Position::from_u64(301));
}

#[test]
fn a_checkpoint_comes_after_the_interval_while_nothing_matches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), Durability::Buffered);
    let mut sub = store
        .subscribe(SubscriptionOptions::new().stream_prefix("nothing-").checkpoint_interval(Duration::from_millis(20)));
    fill(&store);
    // Live: the subscriber skips all 300 events and, once the interval passed, reports where it is.
    let mut last = 0;
    while last < 300 {
        match sub.next_item_timeout(PATIENCE).expect("no error").expect("a checkpoint in time") {
            SubscriptionItem::Checkpoint(p) => {
                assert!(p.as_u64() > last, "checkpoints move forward");
                last = p.as_u64();
            }
            SubscriptionItem::Event(e) => panic!("nothing matches, got {e:?}"),
        }
    }
    assert_eq!(last, 300);
    // Nothing skipped since: no further checkpoint.
    assert!(sub.next_item_timeout(Duration::from_millis(50)).expect("no error").is_none());
}
