//! Dropping a store and opening the folder again keeps everything: events (every field), stream versions, the
//! head, positions; appends continue where they left off; idempotent retries still recognise earlier appends.

mod api_helpers;

use annals::{Durability, Error, ExpectedVersion, NewEvent, Options, Position, Store, StreamAppend};
use api_helpers::*;

/// Writes 39 events in 20 appends of 1 to 3 events over streams s0..s3.
fn write_some(store: &Store, round: u64) {
    for i in 0..20u64 {
        let stream = format!("s{}", i % 4);
        let batch: Vec<NewEvent> = (0..(i % 3 + 1))
            .map(|j| NewEvent::new(format!("T{j}"), format!("r{round}-i{i}-j{j}")).with_metadata(format!("m{i}")))
            .collect();
        store.append(&stream, ExpectedVersion::Any, &batch).unwrap();
    }
}

fn versions(store: &Store) -> Vec<Option<u64>> {
    (0..5).map(|i| store.stream_version(&format!("s{i}"))).collect()
}

#[test]
fn an_empty_store_reopens_empty() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..3 {
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.head(), Position::START);
        assert_eq!(store.read_all(Position::START).count(), 0);
        assert_eq!(store.stream_version("s"), None);
    }
    let store = Store::open(dir.path()).unwrap();
    assert_usable(&store);
}

#[test]
fn everything_survives_a_reopen() {
    for durability in [Durability::Sync, Durability::Buffered] {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options::new().durability(durability);
        let store = opts.open(dir.path()).unwrap();
        write_some(&store, 0);
        let before = all(&store);
        let (head, vs) = (store.head(), versions(&store));
        assert_eq!(head.as_u64(), 39);
        drop(store);

        let store = opts.open(dir.path()).unwrap();
        assert_eq!(all(&store), before, "{durability:?}: every field of every event");
        assert_eq!(store.head(), head);
        assert_eq!(versions(&store), vs);
        for s in 0..4 {
            let name = format!("s{s}");
            let expect: Vec<Rec> = before.iter().filter(|e| e.stream == name).cloned().collect();
            assert_eq!(stream(&store, &name), expect);
        }
    }
}

#[test]
fn appends_continue_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected: Vec<Rec> = Vec::new();
    for round in 0..4u64 {
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(all(&store), expected, "round {round}");
        let head = store.head().as_u64();
        assert_eq!(head, 41 * round);
        write_some(&store, round);
        // Versions and positions continue from the recovered ones.
        let last = store.stream_version("s0").unwrap();
        let r = store.append("s0", ExpectedVersion::Exact(last), &evs(2)).unwrap();
        assert_eq!((r.first_version, r.last_version, r.position.as_u64()), (last + 1, last + 2, head + 40));
        expected = all(&store);
        assert_eq!(expected.len() as u64, head + 41);
        assert!(expected.iter().enumerate().all(|(i, e)| e.position == i as u64));
        drop(store);
    }
}

#[test]
fn read_all_spans_the_reopens() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let store = small_buffered(dir.path());
        write_some(&store, round);
        drop(store);
    }
    let store = small_buffered(dir.path());
    assert_eq!(store.head().as_u64(), 117);
    let everything = all(&store);
    assert!(everything.iter().enumerate().all(|(i, e)| e.position == i as u64));
    for from in 0..=117u64 {
        assert_eq!(all_from(&store, from), everything[from as usize..], "read_all from {from}");
    }
    let payloads: Vec<String> =
        everything.iter().filter(|e| e.stream == "s1").map(|e| String::from_utf8(e.payload.clone()).unwrap()).collect();
    assert_eq!(payloads.first().map(String::as_str), Some("r0-i1-j0"));
    assert_eq!(payloads.last().map(String::as_str), Some("r2-i17-j2"));
}

#[test]
fn idempotent_retries_are_recognised_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (a, b, c) = (evs(2), evs(3), evs(1));
    let (d, e) = (evs(2), evs(1));
    let ra = store.append("a", ExpectedVersion::NoStream, &a).unwrap();
    let rb = store.append("a", ExpectedVersion::Exact(1), &b).unwrap();
    let rc = store.append("c", ExpectedVersion::Any, &c).unwrap();
    let rm = store
        .append_many(&[
            StreamAppend::new("d", ExpectedVersion::NoStream, &d),
            StreamAppend::new("e", ExpectedVersion::Any, &e),
        ])
        .unwrap();
    drop(store);

    let store = Store::open(dir.path()).unwrap();
    let before = observe(&store, &["a", "c", "d", "e"]);
    assert_eq!(store.append("a", ExpectedVersion::NoStream, &a).unwrap(), ra);
    assert_eq!(store.append("a", ExpectedVersion::Exact(1), &b).unwrap(), rb);
    assert_eq!(store.append("a", ExpectedVersion::Any, &b).unwrap(), rb);
    assert_eq!(store.append("c", ExpectedVersion::StreamExists, &c).unwrap(), rc);
    let again = store
        .append_many(&[
            StreamAppend::new("d", ExpectedVersion::NoStream, &d),
            StreamAppend::new("e", ExpectedVersion::Any, &e),
        ])
        .unwrap();
    assert_eq!(again, rm);
    assert_eq!(observe(&store, &["a", "c", "d", "e"]), before);
}

#[test]
fn conflicts_after_a_reopen_use_the_recovered_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("a", ExpectedVersion::NoStream, &evs(5)).unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    match store.append("a", ExpectedVersion::NoStream, &evs(1)) {
        Err(Error::WrongExpectedVersion { stream, expected, actual }) => {
            assert_eq!((stream.as_str(), expected, actual), ("a", ExpectedVersion::NoStream, Some(4)));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    match store.append("missing", ExpectedVersion::StreamExists, &evs(1)) {
        Err(Error::WrongExpectedVersion { actual: None, .. }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    let r = store.append("a", ExpectedVersion::Exact(4), &evs(1)).unwrap();
    assert_eq!((r.first_version, r.position.as_u64()), (5, 5));
}

#[test]
fn reopen_with_another_durability() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new().durability(Durability::Buffered).open(dir.path()).unwrap();
    write_some(&store, 0);
    let before = all(&store);
    drop(store);
    let store = Options::new().durability(Durability::Sync).open(dir.path()).unwrap();
    assert_eq!(all(&store), before);
    write_some(&store, 1);
    let before = all(&store);
    drop(store);
    let store = Options::new().durability(Durability::Buffered).open(dir.path()).unwrap();
    assert_eq!(all(&store), before);
    assert_eq!(store.head().as_u64(), 78);
}
