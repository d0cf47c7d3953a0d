//! Idempotent retries by event id: Exact/NoStream retries, partial overlaps (conflicts), Any/StreamExists
//! retries of the last append, duplicate ids in one append, and retries of a whole `append_many`.
//!
//! Reading of API.md used here: for `Exact(n)` / `NoStream`, a retry is recognised when the events at versions
//! `n+1 ..= n+k` (`0 ..= k-1` for `NoStream`), k being the number of events retried, carry exactly the retried
//! ids in order; for `Any` / `StreamExists`, when the stream's newest k events do.

mod api_helpers;

use annals::{Error, ExpectedVersion, NewEvent, Store, StreamAppend, Uuid};
use api_helpers::*;

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

#[track_caller]
fn assert_conflict<T: std::fmt::Debug>(
    r: Result<T, Error>,
    stream: &str,
    expected: ExpectedVersion,
    actual: Option<u64>,
) {
    match r {
        Err(Error::WrongExpectedVersion { stream: s, expected: e, actual: a }) => {
            assert_eq!((s.as_str(), e, a), (stream, expected, actual), "conflict fields");
        }
        other => panic!("expected WrongExpectedVersion on {stream:?}, got {other:?}"),
    }
}

#[test]
fn exact_retry_returns_the_original_result_and_writes_nothing() {
    let (_dir, store) = open();
    store.append("s", ExpectedVersion::NoStream, &evs(3)).unwrap();
    let batch = evs(2);
    let r = store.append("s", ExpectedVersion::Exact(2), &batch).unwrap();
    assert_eq!((r.first_version, r.last_version, r.position.as_u64()), (3, 4, 4));
    let before = observe(&store, &["s"]);
    for _ in 0..3 {
        assert_eq!(store.append("s", ExpectedVersion::Exact(2), &batch).unwrap(), r);
    }
    assert_eq!(observe(&store, &["s"]), before);
    assert_usable(&store);
}

#[test]
fn no_stream_retry_returns_the_original_result_and_writes_nothing() {
    let (_dir, store) = open();
    store.append("other", ExpectedVersion::NoStream, &evs(2)).unwrap();
    let batch = evs(3);
    let r = store.append("s", ExpectedVersion::NoStream, &batch).unwrap();
    assert_eq!((r.first_version, r.last_version, r.position.as_u64()), (0, 2, 4));
    let before = observe(&store, &["s", "other"]);
    assert_eq!(store.append("s", ExpectedVersion::NoStream, &batch).unwrap(), r);
    assert_eq!(store.append("s", ExpectedVersion::NoStream, &batch.clone()).unwrap(), r);
    assert_eq!(observe(&store, &["s", "other"]), before);
}

#[test]
fn retry_returns_the_original_position_after_other_streams_moved_the_head() {
    let (_dir, store) = open();
    let batch = evs(2);
    let r = store.append("s", ExpectedVersion::NoStream, &batch).unwrap();
    for i in 0..5 {
        store.append(&format!("o{i}"), ExpectedVersion::NoStream, &evs(2)).unwrap();
    }
    assert_eq!(store.head().as_u64(), 12);
    let again = store.append("s", ExpectedVersion::NoStream, &batch).unwrap();
    assert_eq!(again, r);
    assert_eq!(again.position.as_u64(), 1);
    assert_eq!(store.head().as_u64(), 12);
}

#[test]
fn exact_retry_is_recognised_after_the_stream_grew() {
    let (_dir, store) = open();
    store.append("s", ExpectedVersion::NoStream, &evs(1)).unwrap();
    let batch = evs(2);
    let r = store.append("s", ExpectedVersion::Exact(0), &batch).unwrap();
    store.append("s", ExpectedVersion::Exact(2), &evs(3)).unwrap();
    let before = observe(&store, &["s"]);
    assert_eq!(store.append("s", ExpectedVersion::Exact(0), &batch).unwrap(), r);
    assert_eq!(observe(&store, &["s"]), before);
}

#[test]
fn content_is_not_compared_only_ids() {
    let (_dir, store) = open();
    let id = Uuid::new_v4();
    let r = store.append("s", ExpectedVersion::NoStream, &[NewEvent::new("A", "first").with_id(id)]).unwrap();
    let changed = NewEvent::new("B", "second").with_id(id).with_metadata("m");
    assert_eq!(store.append("s", ExpectedVersion::NoStream, std::slice::from_ref(&changed)).unwrap(), r);
    assert_eq!(store.append("s", ExpectedVersion::Any, &[changed]).unwrap(), r);
    let events = stream(&store, "s");
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].event_type.as_str(), &events[0].payload[..]), ("A", &b"first"[..]));
}

#[test]
fn partial_overlap_with_exact_is_a_conflict() {
    let (_dir, store) = open();
    store.append("s", ExpectedVersion::NoStream, &evs(1)).unwrap();
    let batch = evs(2);
    store.append("s", ExpectedVersion::Exact(0), &batch).unwrap();
    let before = observe(&store, &["s"]);
    let extra = ev("E", "new");

    // The original events plus one more.
    let longer = vec![batch[0].clone(), batch[1].clone(), extra.clone()];
    assert_conflict(store.append("s", ExpectedVersion::Exact(0), &longer), "s", ExpectedVersion::Exact(0), Some(2));
    // The second original event followed by a new one.
    let shifted = vec![batch[1].clone(), extra.clone()];
    assert_conflict(store.append("s", ExpectedVersion::Exact(0), &shifted), "s", ExpectedVersion::Exact(0), Some(2));
    // A new event followed by an original one.
    let mixed = vec![extra.clone(), batch[1].clone()];
    assert_conflict(store.append("s", ExpectedVersion::Exact(0), &mixed), "s", ExpectedVersion::Exact(0), Some(2));
    // The originals in the wrong order.
    let swapped = vec![batch[1].clone(), batch[0].clone()];
    assert_conflict(store.append("s", ExpectedVersion::Exact(0), &swapped), "s", ExpectedVersion::Exact(0), Some(2));
    // The right ids at the wrong expected version.
    assert_conflict(store.append("s", ExpectedVersion::Exact(1), &batch), "s", ExpectedVersion::Exact(1), Some(2));
    assert_conflict(store.append("s", ExpectedVersion::NoStream, &batch), "s", ExpectedVersion::NoStream, Some(2));

    assert_eq!(observe(&store, &["s"]), before);
    assert_usable(&store);
}

#[test]
fn partial_overlap_with_no_stream_is_a_conflict() {
    let (_dir, store) = open();
    let batch = evs(2);
    store.append("s", ExpectedVersion::NoStream, &batch).unwrap();
    let before = observe(&store, &["s"]);
    let longer = vec![batch[0].clone(), batch[1].clone(), ev("E", "new")];
    assert_conflict(store.append("s", ExpectedVersion::NoStream, &longer), "s", ExpectedVersion::NoStream, Some(1));
    let fresh = evs(2);
    assert_conflict(store.append("s", ExpectedVersion::NoStream, &fresh), "s", ExpectedVersion::NoStream, Some(1));
    assert_eq!(observe(&store, &["s"]), before);
}

#[test]
fn any_retry_of_the_last_append_returns_the_original_result() {
    let (_dir, store) = open();
    store.append("s", ExpectedVersion::Any, &evs(2)).unwrap();
    let batch = evs(3);
    let r = store.append("s", ExpectedVersion::Any, &batch).unwrap();
    assert_eq!((r.first_version, r.last_version, r.position.as_u64()), (2, 4, 4));
    store.append("other", ExpectedVersion::Any, &evs(1)).unwrap();
    let before = observe(&store, &["s", "other"]);
    assert_eq!(store.append("s", ExpectedVersion::Any, &batch).unwrap(), r);
    assert_eq!(store.append("s", ExpectedVersion::StreamExists, &batch).unwrap(), r);
    assert_eq!(observe(&store, &["s", "other"]), before);
}

#[test]
fn stream_exists_retry_of_the_last_append_returns_the_original_result() {
    let (_dir, store) = open();
    store.append("s", ExpectedVersion::NoStream, &evs(1)).unwrap();
    let batch = evs(2);
    let r = store.append("s", ExpectedVersion::StreamExists, &batch).unwrap();
    assert_eq!((r.first_version, r.last_version, r.position.as_u64()), (1, 2, 2));
    let before = observe(&store, &["s"]);
    assert_eq!(store.append("s", ExpectedVersion::StreamExists, &batch).unwrap(), r);
    assert_eq!(store.append("s", ExpectedVersion::Any, &batch).unwrap(), r);
    assert_eq!(observe(&store, &["s"]), before);
}

#[test]
fn any_retry_of_an_older_append_appends_again() {
    let (_dir, store) = open();
    let first = evs(2);
    store.append("s", ExpectedVersion::Any, &first).unwrap();
    store.append("s", ExpectedVersion::Any, &evs(1)).unwrap();
    // `first` is no longer the newest: appended again (ids need not be unique in the store).
    let r = store.append("s", ExpectedVersion::Any, &first).unwrap();
    assert_eq!((r.first_version, r.last_version, r.position.as_u64()), (3, 4, 4));
    let ids: Vec<Uuid> = stream(&store, "s").iter().map(|e| e.id).collect();
    assert_eq!(ids[0], ids[3]);
    assert_eq!(ids[1], ids[4]);
    // And now it is the newest: a retry again.
    assert_eq!(store.append("s", ExpectedVersion::StreamExists, &first).unwrap(), r);
    assert_eq!(store.head().as_u64(), 5);
}

#[test]
fn any_with_a_partial_overlap_of_the_newest_events_appends() {
    let (_dir, store) = open();
    let batch = evs(2);
    store.append("s", ExpectedVersion::Any, &batch).unwrap();
    let longer = vec![batch[0].clone(), batch[1].clone(), ev("E", "new")];
    let r = store.append("s", ExpectedVersion::Any, &longer).unwrap();
    assert_eq!((r.first_version, r.last_version, r.position.as_u64()), (2, 4, 4));
    assert_eq!(store.stream_version("s"), Some(4));
}

#[test]
fn the_same_ids_in_another_stream_are_not_a_retry() {
    let (_dir, store) = open();
    let batch = evs(2);
    store.append("a", ExpectedVersion::NoStream, &batch).unwrap();
    let r = store.append("b", ExpectedVersion::NoStream, &batch).unwrap();
    assert_eq!((r.first_version, r.last_version, r.position.as_u64()), (0, 1, 3));
    let r = store.append("c", ExpectedVersion::Any, &batch).unwrap();
    assert_eq!(r.position.as_u64(), 5);
}

#[test]
fn duplicate_ids_in_one_append_are_invalid_input() {
    let (_dir, store) = open();
    store.append("s", ExpectedVersion::NoStream, &evs(1)).unwrap();
    let before = observe(&store, &["s", "t"]);
    let e = ev("E", "x");
    let twice = vec![e.clone(), ev("E", "y"), e.clone().with_metadata("different")];
    assert_invalid(store.append("s", ExpectedVersion::Any, &twice));
    assert_invalid(store.append("t", ExpectedVersion::NoStream, &twice));
    assert_invalid(store.append("s", ExpectedVersion::Exact(0), &[e.clone(), e.clone()]));
    // Across the parts of one append_many.
    let a = vec![e.clone()];
    let b = vec![ev("E", "z"), e.clone()];
    assert_invalid(store.append_many(&[
        StreamAppend::new("s", ExpectedVersion::Any, &a),
        StreamAppend::new("t", ExpectedVersion::Any, &b),
    ]));
    assert_eq!(observe(&store, &["s", "t"]), before);
    assert_usable(&store);
}

#[test]
fn append_many_retry_returns_the_original_results_and_writes_nothing() {
    let (_dir, store) = open();
    store.append("a", ExpectedVersion::NoStream, &evs(2)).unwrap();
    let ea = evs(2);
    let eb = evs(1);
    let ec = evs(3);
    let parts = [
        StreamAppend::new("a", ExpectedVersion::Exact(1), &ea),
        StreamAppend::new("b", ExpectedVersion::NoStream, &eb),
        StreamAppend::new("c", ExpectedVersion::Any, &ec),
    ];
    let rs = store.append_many(&parts).unwrap();
    let before = observe(&store, &["a", "b", "c"]);
    assert_eq!(store.append_many(&parts).unwrap(), rs);
    assert_eq!(observe(&store, &["a", "b", "c"]), before);
    // Each part on its own is a retry too, with the same result.
    assert_eq!(store.append("a", ExpectedVersion::Exact(1), &ea).unwrap(), rs[0]);
    assert_eq!(store.append("b", ExpectedVersion::NoStream, &eb).unwrap(), rs[1]);
    assert_eq!(store.append("c", ExpectedVersion::StreamExists, &ec).unwrap(), rs[2]);
    assert_eq!(observe(&store, &["a", "b", "c"]), before);
}

#[test]
fn append_many_retry_with_a_conflicting_part_writes_nothing() {
    let (_dir, store) = open();
    let ea = evs(1);
    let eb = evs(1);
    let parts = [
        StreamAppend::new("a", ExpectedVersion::NoStream, &ea),
        StreamAppend::new("b", ExpectedVersion::NoStream, &eb),
    ];
    store.append_many(&parts).unwrap();
    let before = observe(&store, &["a", "b"]);
    let other = evs(1);
    let parts = [
        StreamAppend::new("a", ExpectedVersion::NoStream, &ea),
        StreamAppend::new("b", ExpectedVersion::NoStream, &other),
    ];
    assert_conflict(store.append_many(&parts), "b", ExpectedVersion::NoStream, Some(0));
    assert_eq!(observe(&store, &["a", "b"]), before);
}

/// A retry of a batch of the largest size is recognised whether its events are still in the memtable, in a
/// later memtable's chain behind newer events, or in the index files after a reopen; a retry that names one
/// event more than the stream has past the expected version is a conflict.
#[test]
fn a_full_batch_retry_is_recognised_wherever_its_events_are_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let batch = evs(annals::limits::BATCH_EVENTS_MAX);
    let (first, before) = {
        let store = Store::open(dir.path()).unwrap();
        store.append("s", ExpectedVersion::NoStream, &evs(3)).unwrap();
        let r = store.append("s", ExpectedVersion::Exact(2), &batch).unwrap();
        assert_eq!((r.first_version, r.last_version), (3, 10_002));
        // Still the newest events: an `Any` retry of the last append, and an exact one.
        assert_eq!(store.append("s", ExpectedVersion::Any, &batch).unwrap(), r);
        assert_eq!(store.append("s", ExpectedVersion::Exact(2), &batch).unwrap(), r);
        store.append("s", ExpectedVersion::Exact(10_002), &evs(5)).unwrap();
        store.append("other", ExpectedVersion::NoStream, &evs(2)).unwrap();
        // Behind newer events of the same stream.
        assert_eq!(store.append("s", ExpectedVersion::Exact(2), &batch).unwrap(), r);
        // Versions 10 ..= 10,002 of the batch and six events more: the stream has only five past them.
        let mut longer = batch[7..].to_vec();
        longer.extend(evs(6));
        let conflict = store.append("s", ExpectedVersion::Exact(9), &longer);
        assert_conflict(conflict, "s", ExpectedVersion::Exact(9), Some(10_007));
        (r, observe(&store, &["s", "other"]))
    };
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.append("s", ExpectedVersion::Exact(2), &batch).unwrap(), first);
    assert_eq!(observe(&store, &["s", "other"]), before);
}
