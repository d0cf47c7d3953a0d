//! `append` under every `ExpectedVersion`: what is written, the versions returned, and the conflict error with
//! its fields (stream, expected, actual), after which nothing is written.

mod api_helpers;

use annals::{Error, ExpectedVersion, Store};
use api_helpers::*;

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

/// A store holding "a" at version 2 (three events) and "b" at version 0.
fn setup() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("a", ExpectedVersion::NoStream, &evs(3)).unwrap();
    store.append("b", ExpectedVersion::NoStream, &evs(1)).unwrap();
    (dir, store)
}

#[test]
fn no_stream_creates_a_stream_at_version_zero() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let r = store.append("s", ExpectedVersion::NoStream, &evs(1)).unwrap();
    assert_eq!((r.first_version, r.last_version, r.position.as_u64()), (0, 0, 0));
    let r = store.append("t", ExpectedVersion::NoStream, &evs(4)).unwrap();
    assert_eq!((r.first_version, r.last_version, r.position.as_u64()), (0, 3, 4));
    assert_eq!(store.stream_version("s"), Some(0));
    assert_eq!(store.stream_version("t"), Some(3));
    let versions: Vec<u64> = stream(&store, "t").iter().map(|e| e.version).collect();
    assert_eq!(versions, [0, 1, 2, 3]);
}

#[test]
fn no_stream_on_an_existing_stream_is_a_conflict() {
    let (_dir, store) = setup();
    let before = observe(&store, &["a", "b"]);
    assert_conflict(store.append("a", ExpectedVersion::NoStream, &evs(1)), "a", ExpectedVersion::NoStream, Some(2));
    assert_conflict(store.append("b", ExpectedVersion::NoStream, &evs(2)), "b", ExpectedVersion::NoStream, Some(0));
    assert_eq!(observe(&store, &["a", "b"]), before);
    assert_usable(&store);
}

#[test]
fn exact_matching_the_last_version_appends() {
    let (_dir, store) = setup();
    let r = store.append("a", ExpectedVersion::Exact(2), &evs(2)).unwrap();
    assert_eq!((r.first_version, r.last_version, r.position.as_u64()), (3, 4, 5));
    let r = store.append("a", ExpectedVersion::Exact(4), &evs(1)).unwrap();
    assert_eq!((r.first_version, r.last_version, r.position.as_u64()), (5, 5, 6));
    let r = store.append("b", ExpectedVersion::Exact(0), &evs(1)).unwrap();
    assert_eq!((r.first_version, r.last_version, r.position.as_u64()), (1, 1, 7));
    assert_eq!(store.stream_version("a"), Some(5));
    assert_eq!(store.stream_version("b"), Some(1));
}

#[test]
fn exact_below_the_last_version_is_a_conflict() {
    let (_dir, store) = setup();
    let before = observe(&store, &["a", "b"]);
    for n in [0, 1] {
        assert_conflict(store.append("a", ExpectedVersion::Exact(n), &evs(1)), "a", ExpectedVersion::Exact(n), Some(2));
    }
    assert_eq!(observe(&store, &["a", "b"]), before);
    assert_usable(&store);
}

#[test]
fn exact_above_the_last_version_is_a_conflict() {
    let (_dir, store) = setup();
    let before = observe(&store, &["a", "b"]);
    for n in [3, 4, 1000] {
        assert_conflict(store.append("a", ExpectedVersion::Exact(n), &evs(2)), "a", ExpectedVersion::Exact(n), Some(2));
    }
    assert_eq!(observe(&store, &["a", "b"]), before);
    assert_usable(&store);
}

#[test]
fn exact_on_a_missing_stream_is_a_conflict_with_actual_none() {
    let (_dir, store) = setup();
    let before = observe(&store, &["a", "b", "missing"]);
    for n in [0, 1, 7] {
        assert_conflict(
            store.append("missing", ExpectedVersion::Exact(n), &evs(1)),
            "missing",
            ExpectedVersion::Exact(n),
            None,
        );
    }
    assert_eq!(observe(&store, &["a", "b", "missing"]), before);
    assert_eq!(store.read_stream("missing", 0).unwrap().count(), 0);
    assert_usable(&store);
}

#[test]
fn exact_with_a_huge_version_is_an_error_and_writes_nothing() {
    let (_dir, store) = setup();
    let before = observe(&store, &["a", "b", "missing"]);
    for n in [u64::MAX, u64::MAX - 1, u64::MAX / 2] {
        assert!(store.append("a", ExpectedVersion::Exact(n), &evs(1)).is_err());
        assert!(store.append("missing", ExpectedVersion::Exact(n), &evs(1)).is_err());
    }
    assert_eq!(observe(&store, &["a", "b", "missing"]), before);
    assert_usable(&store);
}

#[test]
fn stream_exists_on_a_missing_stream_is_a_conflict() {
    let (_dir, store) = setup();
    let before = observe(&store, &["a", "b", "missing"]);
    assert_conflict(
        store.append("missing", ExpectedVersion::StreamExists, &evs(1)),
        "missing",
        ExpectedVersion::StreamExists,
        None,
    );
    assert_eq!(observe(&store, &["a", "b", "missing"]), before);
    assert_usable(&store);
}

#[test]
fn stream_exists_on_an_existing_stream_appends() {
    let (_dir, store) = setup();
    let r = store.append("a", ExpectedVersion::StreamExists, &evs(2)).unwrap();
    assert_eq!((r.first_version, r.last_version, r.position.as_u64()), (3, 4, 5));
    let r = store.append("b", ExpectedVersion::StreamExists, &evs(1)).unwrap();
    assert_eq!((r.first_version, r.last_version, r.position.as_u64()), (1, 1, 6));
    assert_eq!(store.stream_version("a"), Some(4));
}

#[test]
fn any_creates_or_appends() {
    let (_dir, store) = setup();
    let r = store.append("new", ExpectedVersion::Any, &evs(2)).unwrap();
    assert_eq!((r.first_version, r.last_version, r.position.as_u64()), (0, 1, 5));
    let r = store.append("new", ExpectedVersion::Any, &evs(1)).unwrap();
    assert_eq!((r.first_version, r.last_version, r.position.as_u64()), (2, 2, 6));
    let r = store.append("a", ExpectedVersion::Any, &evs(1)).unwrap();
    assert_eq!((r.first_version, r.last_version, r.position.as_u64()), (3, 3, 7));
    assert_eq!(store.stream_version("new"), Some(2));
    assert_eq!(store.stream_version("a"), Some(3));
}

#[test]
fn versions_are_per_stream_and_conflicts_leave_other_streams_alone() {
    let (_dir, store) = setup();
    assert!(store.append("a", ExpectedVersion::Exact(0), &evs(1)).is_err());
    // "b" is unaffected by the failed append to "a".
    let r = store.append("b", ExpectedVersion::Exact(0), &evs(1)).unwrap();
    assert_eq!((r.first_version, r.position.as_u64()), (1, 4));
    let a: Vec<(u64, u64)> = stream(&store, "a").iter().map(|e| (e.version, e.position)).collect();
    assert_eq!(a, [(0, 0), (1, 1), (2, 2)]);
    let b: Vec<(u64, u64)> = stream(&store, "b").iter().map(|e| (e.version, e.position)).collect();
    assert_eq!(b, [(0, 3), (1, 4)]);
}

#[test]
fn conflict_error_displays_and_is_matchable_after_many_appends() {
    let (_dir, store) = setup();
    for v in 3..20u64 {
        store.append("a", ExpectedVersion::Exact(v - 1), &evs(1)).unwrap();
    }
    let e = store.append("a", ExpectedVersion::Exact(5), &evs(1)).unwrap_err();
    assert!(!e.to_string().is_empty());
    assert_conflict(Err::<(), _>(e), "a", ExpectedVersion::Exact(5), Some(19));
}

#[test]
fn optimistic_concurrency_has_one_winner_among_threads() {
    let (_dir, store) = setup();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || store.append("a", ExpectedVersion::Exact(2), &evs(1)))
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "exactly one append with Exact(2) succeeds: {results:?}");
    for r in results.into_iter().filter(|r| r.is_err()) {
        assert_conflict(r, "a", ExpectedVersion::Exact(2), Some(3));
    }
    assert_eq!(store.stream_version("a"), Some(3));
    assert_eq!(store.head().as_u64(), 5);
}
