//! `read_all`: every event from a position (inclusive) in commit order, ending at the head as of the
//! iterator's creation.

mod api_helpers;

use annals::{ExpectedVersion, Position, Store};
use api_helpers::*;

/// 300 events over three streams in batches of 1 to 4 (more than a few sparse-index steps).
fn setup(store: &Store) -> Vec<(String, Vec<u8>)> {
    let mut written = Vec::new();
    let mut i = 0u64;
    while written.len() < 300 {
        let stream = ["a", "b", "c"][(i % 3) as usize];
        let n = ((i % 4) + 1).min(300 - written.len() as u64);
        let batch: Vec<_> = (0..n).map(|j| ev("E", format!("{stream}-{i}-{j}"))).collect();
        store.append(stream, ExpectedVersion::Any, &batch).unwrap();
        written.extend(batch.iter().map(|e| (stream.to_owned(), e.payload().to_vec())));
        i += 1;
    }
    written
}

#[test]
fn reads_everything_in_commit_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let written = setup(&store);
    let events = all(&store);
    assert_eq!(events.len(), 300);
    let got: Vec<(String, Vec<u8>)> = events.iter().map(|e| (e.stream.clone(), e.payload.clone())).collect();
    assert_eq!(got, written);
    assert!(events.iter().enumerate().all(|(i, e)| e.position == i as u64));
    assert_eq!(store.read_all(Position::START).count(), 300);
}

#[test]
fn reads_from_every_position() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_buffered(dir.path());
    setup(&store);
    let everything = all(&store);
    for from in 0..=300u64 {
        let events = all_from(&store, from);
        assert_eq!(events, everything[from as usize..], "read_all from {from}");
    }
}

#[test]
fn reading_at_or_past_the_head_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.read_all(Position::START).count(), 0, "an empty store");
    setup(&store);
    for from in [300, 301, 10_000, u64::MAX] {
        assert_eq!(store.read_all(Position::from_u64(from)).count(), 0, "from {from}");
    }
}

#[test]
fn the_iterator_ends_at_the_head_as_of_its_creation() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    setup(&store);
    let fresh = store.read_all(Position::START);
    let mut started = store.read_all(Position::from_u64(250));
    assert_eq!(started.next().unwrap().unwrap().position().as_u64(), 250);
    let at_head = store.read_all(store.head());
    for _ in 0..5 {
        store.append("a", ExpectedVersion::Any, &evs(3)).unwrap();
    }
    assert_eq!(store.head().as_u64(), 315);
    assert_eq!(fresh.count(), 300);
    let rest: Vec<u64> = started.map(|e| e.unwrap().position().as_u64()).collect();
    assert_eq!(rest, (251..300).collect::<Vec<_>>());
    assert_eq!(at_head.count(), 0);
    // A new iterator sees everything.
    assert_eq!(all(&store).len(), 315);
}

#[test]
fn a_finished_iterator_stays_finished() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("a", ExpectedVersion::Any, &evs(2)).unwrap();
    let mut it = store.read_all(Position::from_u64(1));
    assert_eq!(it.next().unwrap().unwrap().position().as_u64(), 1);
    assert!(it.next().is_none());
    store.append("a", ExpectedVersion::Any, &evs(2)).unwrap();
    assert!(it.next().is_none());
}

#[test]
fn concurrent_readers_see_a_gapless_prefix_while_a_writer_appends() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_buffered(dir.path());
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 0..400u64 {
                let stream = if i % 2 == 0 { "even" } else { "odd" };
                let e = [ev("E", vec![i as u8; 3000]), ev("E", i.to_le_bytes().to_vec())];
                store.append(stream, ExpectedVersion::Any, &e).unwrap();
            }
        })
    };
    let mut rounds = 0;
    while !writer.is_finished() || rounds == 0 {
        let from = (rounds * 37) % 800;
        let head = store.head().as_u64();
        let mut next = from;
        for e in store.read_all(Position::from_u64(from)) {
            let e = e.unwrap();
            assert_eq!(e.position().as_u64(), next);
            let batch = next / 2;
            if next % 2 == 1 {
                assert_eq!(e.payload(), batch.to_le_bytes());
            } else {
                assert_eq!(e.payload(), vec![batch as u8; 3000]);
            }
            next += 1;
        }
        assert!(next >= head.max(from), "read up to {next}, head was {head} before the read");
        rounds += 1;
    }
    writer.join().unwrap();
    assert_eq!(all(&store).len(), 800);
}
