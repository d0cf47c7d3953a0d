//! `read_stream`: events of one stream from a version (inclusive), oldest first; unknown streams read as empty;
//! an iterator ends at the stream's end as of its creation, whatever is appended later.

mod api_helpers;

use annals::{Error, ExpectedVersion, Store};
use api_helpers::*;

/// "s" gets 10 events with payloads "s0".."s9", interleaved with events of "t" and "u".
fn setup() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..10 {
        store.append("s", ExpectedVersion::Any, &[ev("S", format!("s{i}"))]).unwrap();
        if i % 3 == 0 {
            store.append("t", ExpectedVersion::Any, &[ev("T", format!("t{i}")), ev("T", "x")]).unwrap();
        }
        store.append("u", ExpectedVersion::Any, &[ev("U", "u")]).unwrap();
    }
    (dir, store)
}

fn payloads(events: &[Rec]) -> Vec<String> {
    events.iter().map(|e| String::from_utf8(e.payload.clone()).unwrap()).collect()
}

#[test]
fn reads_the_whole_stream_oldest_first() {
    let (_dir, store) = setup();
    let events = stream(&store, "s");
    assert_eq!(payloads(&events), (0..10).map(|i| format!("s{i}")).collect::<Vec<_>>());
    assert!(events.iter().all(|e| e.stream == "s" && e.event_type == "S"));
    assert_eq!(events.iter().map(|e| e.version).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    assert!(events.windows(2).all(|w| w[0].position < w[1].position), "positions increase");
    assert_eq!(stream(&store, "t").len(), 8);
    assert_eq!(stream(&store, "u").len(), 10);
}

#[test]
fn reads_from_a_version_inclusive() {
    let (_dir, store) = setup();
    for from in 0..10u64 {
        let events = stream_from(&store, "s", from);
        assert_eq!(events.len() as u64, 10 - from);
        assert_eq!(events[0].version, from);
        assert_eq!(payloads(&events)[0], format!("s{from}"));
        assert_eq!(events, stream(&store, "s")[from as usize..]);
    }
}

#[test]
fn reading_past_the_end_is_empty() {
    let (_dir, store) = setup();
    for from in [10, 11, 1000, u64::MAX] {
        assert_eq!(store.read_stream("s", from).unwrap().count(), 0, "from {from}");
    }
}

#[test]
fn an_unknown_stream_reads_as_empty() {
    let (_dir, store) = setup();
    for name in ["nope", "S", "s ", " s", "ß", "s\0"] {
        assert_eq!(store.read_stream(name, 0).unwrap().count(), 0, "stream {name:?}");
        assert_eq!(store.stream_version(name), None);
    }
    let dir = tempfile::tempdir().unwrap();
    let empty = Store::open(dir.path()).unwrap();
    assert_eq!(empty.read_stream("s", 0).unwrap().count(), 0);
}

#[test]
fn an_invalid_stream_name_gives_no_events() {
    let (_dir, store) = setup();
    let long = "x".repeat(256);
    for name in ["", long.as_str()] {
        match store.read_stream(name, 0) {
            Ok(it) => assert_eq!(it.count(), 0),
            Err(Error::InvalidInput { .. }) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
}

#[test]
fn the_iterator_ends_at_the_stream_end_as_of_its_creation() {
    let (_dir, store) = setup();
    let fresh = store.read_stream("s", 0).unwrap();
    let mut started = store.read_stream("s", 0).unwrap();
    let first = started.next().unwrap().unwrap();
    assert_eq!(first.payload(), b"s0");
    let past_end = store.read_stream("s", 10).unwrap();
    let unknown = store.read_stream("new", 0).unwrap();

    store.append("s", ExpectedVersion::Exact(9), &[ev("S", "s10"), ev("S", "s11")]).unwrap();
    store.append("new", ExpectedVersion::NoStream, &[ev("N", "n")]).unwrap();

    assert_eq!(fresh.map(|e| e.unwrap().version()).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    assert_eq!(started.map(|e| e.unwrap().version()).collect::<Vec<_>>(), (1..10).collect::<Vec<_>>());
    assert_eq!(past_end.count(), 0);
    assert_eq!(unknown.count(), 0);
    // A new iterator sees the new events.
    assert_eq!(stream(&store, "s").len(), 12);
    assert_eq!(stream(&store, "new").len(), 1);
}

#[test]
fn a_finished_iterator_stays_finished() {
    let (_dir, store) = setup();
    let mut it = store.read_stream("s", 8).unwrap();
    assert_eq!(it.next().unwrap().unwrap().version(), 8);
    assert_eq!(it.next().unwrap().unwrap().version(), 9);
    assert!(it.next().is_none());
    store.append("s", ExpectedVersion::Any, &[ev("S", "later")]).unwrap();
    assert!(it.next().is_none());
    assert!(it.next().is_none());
}

#[test]
fn events_outlive_their_iterator() {
    let (_dir, store) = setup();
    let events: Vec<_> = store.read_stream("s", 0).unwrap().map(|e| e.unwrap()).collect();
    store.append("s", ExpectedVersion::Any, &evs(3)).unwrap();
    assert_eq!(events.len(), 10);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.payload(), format!("s{i}").as_bytes());
        assert_eq!(e.version(), i as u64);
    }
}

#[test]
fn concurrent_readers_see_a_gapless_prefix_while_a_writer_appends() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 0..300u64 {
                let e = [ev("E", i.to_le_bytes().to_vec())];
                store.append("s", ExpectedVersion::Any, &e).unwrap();
                store.append("other", ExpectedVersion::Any, &e).unwrap();
            }
        })
    };
    let mut rounds = 0;
    while !writer.is_finished() || rounds == 0 {
        for (i, e) in store.read_stream("s", 0).unwrap().enumerate() {
            let e = e.unwrap();
            assert_eq!(e.version(), i as u64);
            assert_eq!(e.payload(), (i as u64).to_le_bytes());
            assert_eq!(e.stream(), "s");
        }
        rounds += 1;
    }
    writer.join().unwrap();
    assert_eq!(stream(&store, "s").len(), 300);
}
