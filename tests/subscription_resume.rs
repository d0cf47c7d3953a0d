//! Resuming from a checkpoint: a consumer persists `Subscription::checkpoint()` (or a `Checkpoint` item), the
//! store is closed and reopened, and a new subscription from that position delivers exactly the rest.

mod subscription_support;

use annals::{Durability, ExpectedVersion, NewEvent, Position, SubscriptionItem, SubscriptionOptions};
use subscription_support::{all, assert_gapless, open, take, PATIENCE};

#[test]
fn a_subscription_resumed_from_its_checkpoint_gets_exactly_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let saved;
    let mut first;
    {
        let store = open(dir.path(), Durability::Sync);
        for i in 0..100 {
            store
                .append(&format!("s-{}", i % 3), ExpectedVersion::Any, &[NewEvent::new("E", format!("{i}"))])
                .expect("append");
        }
        let mut sub = store.subscribe_all(Position::START);
        first = take(&mut sub, 60);
        saved = sub.checkpoint();
        assert_eq!(saved, Position::from_u64(60));
    }
    let store = open(dir.path(), Durability::Sync);
    for i in 100..150 {
        store
            .append(&format!("s-{}", i % 3), ExpectedVersion::Any, &[NewEvent::new("E", format!("{i}"))])
            .expect("append");
    }
    let mut sub = store.subscribe_all(saved);
    first.extend(take(&mut sub, 90));
    assert_gapless(&first, 0);
    assert_eq!(first, all(&store));
}

#[test]
fn a_filtered_subscription_resumes_from_a_checkpoint_item() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), Durability::Buffered);
    for i in 0..500 {
        let stream = if i % 100 == 99 { "account-1" } else { "order-1" };
        store.append(stream, ExpectedVersion::Any, &[NewEvent::new("E", format!("{i}"))]).expect("append");
    }
    let options = || SubscriptionOptions::new().stream_prefix("account-").checkpoint_every(30);
    let mut sub = store.subscribe(options());
    // Consume until the second event, remembering the last checkpoint reported.
    let mut saved = Position::START;
    let mut events = Vec::new();
    while events.len() < 2 {
        match sub.next_item_timeout(PATIENCE).expect("no error").expect("an item") {
            SubscriptionItem::Event(e) => {
                events.push(e.position().as_u64());
                saved = sub.checkpoint();
            }
            SubscriptionItem::Checkpoint(p) => saved = p,
        }
    }
    // Keep going past some checkpoints, then "crash": resume from the last one saved.
    for _ in 0..3 {
        if let SubscriptionItem::Checkpoint(p) = sub.next_item_timeout(PATIENCE).expect("no error").expect("an item") {
            saved = p;
        }
    }
    drop(sub);
    let mut resumed = store.subscribe(options().from(saved));
    let rest: Vec<u64> = take(&mut resumed, 5 - events.len()).iter().map(|g| g.position).collect();
    events.extend(rest);
    assert_eq!(events, [99, 199, 299, 399, 499]);
}
