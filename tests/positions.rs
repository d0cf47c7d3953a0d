//! Positions: assigned in commit order, gapless, starting at 0; `head()` is the position the next event gets;
//! an `AppendResult` carries the position of the append's last event. `Position` is Copy + Ord + Hash + Debug.

mod api_helpers;

use std::collections::{HashMap, HashSet};

use annals::{ExpectedVersion, Position, Store, StreamAppend};
use api_helpers::*;

#[test]
fn position_value_type() {
    fn assert_traits<T: Copy + Ord + std::hash::Hash + std::fmt::Debug>() {}
    assert_traits::<Position>();
    assert_eq!(Position::START, Position::from_u64(0));
    assert_eq!(Position::START.as_u64(), 0);
    for n in [0u64, 1, 41, u64::MAX] {
        assert_eq!(Position::from_u64(n).as_u64(), n);
    }
    let mut v: Vec<Position> = [5u64, 1, 3, 0, u64::MAX].into_iter().map(Position::from_u64).collect();
    v.sort();
    assert_eq!(v.iter().map(|p| p.as_u64()).collect::<Vec<_>>(), [0, 1, 3, 5, u64::MAX]);
    assert!(Position::from_u64(1) > Position::START);
    let set: HashSet<Position> = [1u64, 1, 2].into_iter().map(Position::from_u64).collect();
    assert_eq!(set.len(), 2);
    assert!(!format!("{:?}", Position::from_u64(7)).is_empty());
}

#[test]
fn positions_are_gapless_from_zero_in_commit_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.head(), Position::START);
    let mut next = 0u64;
    for i in 0..30u64 {
        let n = (i % 4 + 1) as usize;
        let r = store.append(&format!("s{}", i % 3), ExpectedVersion::Any, &evs(n)).unwrap();
        next += n as u64;
        assert_eq!(r.position.as_u64(), next - 1, "the position of the append's last event");
        assert_eq!(store.head().as_u64(), next, "head is just past the last event");
    }
    let events = all(&store);
    assert_eq!(events.len() as u64, next);
    assert!(events.iter().enumerate().all(|(i, e)| e.position == i as u64));
}

#[test]
fn the_first_event_of_an_append_is_at_the_head_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for n in [1usize, 5, 2, 9] {
        let head = store.head();
        let r = store.append("s", ExpectedVersion::Any, &evs(n)).unwrap();
        let written = all_from(&store, head.as_u64());
        assert_eq!(written.len(), n);
        assert_eq!(written[0].position, head.as_u64());
        assert_eq!(written.last().unwrap().position, r.position.as_u64());
        assert_eq!(written.last().unwrap().version, r.last_version);
        assert_eq!(written[0].version, r.first_version);
    }
}

#[test]
fn append_many_positions_follow_the_part_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("x", ExpectedVersion::Any, &evs(3)).unwrap();
    let (a, b, c) = (evs(2), evs(1), evs(3));
    let rs = store
        .append_many(&[
            StreamAppend::new("c", ExpectedVersion::Any, &c),
            StreamAppend::new("a", ExpectedVersion::Any, &a),
            StreamAppend::new("b", ExpectedVersion::Any, &b),
        ])
        .unwrap();
    assert_eq!(rs.iter().map(|r| r.position.as_u64()).collect::<Vec<_>>(), [5, 7, 8]);
    assert_eq!(store.head().as_u64(), 9);
    let streams: Vec<String> = all_from(&store, 3).into_iter().map(|e| e.stream).collect();
    assert_eq!(streams, ["c", "c", "c", "a", "a", "b"]);
}

#[test]
fn failed_appends_and_retries_take_no_position() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let batch = evs(2);
    store.append("s", ExpectedVersion::NoStream, &batch).unwrap();
    assert!(store.append("s", ExpectedVersion::Exact(7), &evs(1)).is_err());
    assert!(store.append("", ExpectedVersion::Any, &evs(1)).is_err());
    assert!(store.append("t", ExpectedVersion::StreamExists, &evs(1)).is_err());
    store.append("s", ExpectedVersion::NoStream, &batch).unwrap(); // retry
    assert_eq!(store.head().as_u64(), 2);
    let r = store.append("t", ExpectedVersion::Any, &evs(1)).unwrap();
    assert_eq!(r.position.as_u64(), 2, "the next event takes the next position, no gap");
}

#[test]
fn concurrent_appends_get_gapless_unique_positions() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_buffered(dir.path());
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut results = Vec::new();
                for i in 0..150u64 {
                    let n = (i % 3 + 1) as usize;
                    let stream = format!("s{}", (t + i) % 6);
                    let r = store.append(&stream, ExpectedVersion::Any, &evs(n)).unwrap();
                    results.push((stream, n as u64, r));
                }
                results
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let total: u64 = results.iter().map(|(_, n, _)| n).sum();
    assert_eq!(store.head().as_u64(), total);

    // Every append owns the positions [position - n + 1, position]; together they cover 0..total once.
    let mut covered = vec![false; total as usize];
    for (_, n, r) in &results {
        for p in r.position.as_u64() + 1 - n..=r.position.as_u64() {
            assert!(!covered[p as usize], "position {p} given twice");
            covered[p as usize] = true;
        }
    }
    assert!(covered.iter().all(|c| *c));

    // Commit order: read_all is in position order, and each stream's versions grow with its positions.
    let events = all(&store);
    assert!(events.iter().enumerate().all(|(i, e)| e.position == i as u64));
    let mut next_version: HashMap<&str, u64> = HashMap::new();
    for e in &events {
        let v = next_version.entry(e.stream.as_str()).or_insert(0);
        assert_eq!(e.version, *v, "stream {} out of order at position {}", e.stream, e.position);
        *v += 1;
    }
    for (stream, n, r) in &results {
        let e = &events[r.position.as_u64() as usize];
        assert_eq!((&e.stream, e.version), (stream, r.last_version));
        assert_eq!(r.last_version + 1 - r.first_version, *n);
    }
}
