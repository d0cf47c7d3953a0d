//! With 1 MiB segments, the log rolls over many segment files: every event stays readable by stream and in
//! commit order, from any position, before and after a reopen; an append bigger than the segment size is
//! accepted and followed by ordinary appends.

mod api_helpers;

use annals::{Durability, ExpectedVersion, NewEvent, Options, Position, Store};
use api_helpers::*;

const MIB: usize = 1 << 20;

fn payload(i: u64) -> Vec<u8> {
    // 1 to 3 KiB, content depending on i.
    let len = 1024 + (i as usize * 37) % 2048;
    (0..len).map(|j| (i as usize + j) as u8).collect()
}

/// About 8 MiB in 4000 events over 5 streams, in batches of 1 to 7.
fn fill(store: &Store, start: u64) -> u64 {
    let mut i = start;
    let mut batch_no = 0u64;
    while i < start + 4000 {
        let n = (batch_no % 7 + 1).min(start + 4000 - i);
        let batch: Vec<NewEvent> = (i..i + n).map(|k| NewEvent::new("E", payload(k))).collect();
        store.append(&format!("s{}", batch_no % 5), ExpectedVersion::Any, &batch).unwrap();
        i += n;
        batch_no += 1;
    }
    i
}

fn check(store: &Store, count: u64) {
    assert_eq!(store.head().as_u64(), count);
    let mut n = 0;
    for (k, e) in store.read_all(Position::START).enumerate() {
        let e = e.unwrap();
        assert_eq!(e.position().as_u64(), k as u64);
        assert!(e.payload() == payload(k as u64), "payload at position {k}");
        assert_eq!(e.payload().as_ptr() as usize % 16, 0);
        n += 1;
    }
    assert_eq!(n, count);
    // Every stream is gapless, its events in position order.
    let mut total = 0;
    for s in 0..5 {
        let events = stream(store, &format!("s{s}"));
        assert!(events.iter().enumerate().all(|(v, e)| e.version == v as u64));
        assert!(events.windows(2).all(|w| w[0].position < w[1].position));
        assert!(events.iter().all(|e| e.payload == payload(e.position)));
        total += events.len() as u64;
    }
    assert_eq!(total, count);
    // read_all from positions all over the log, including segment starts and the sparse-index steps.
    for from in (0..count).step_by(397).chain([1, 63, 64, 65, count - 1, count]) {
        let got: Vec<u64> = store.read_all(Position::from_u64(from)).map(|e| e.unwrap().position().as_u64()).collect();
        assert_eq!(got, (from..count).collect::<Vec<_>>(), "read_all from {from}");
    }
}

#[test]
fn many_events_over_many_segments_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_buffered(dir.path());
    let n = fill(&store, 0);
    check(&store, n);
    drop(store);
    let store = small_buffered(dir.path());
    check(&store, n);
    let n = fill(&store, n);
    check(&store, n);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    check(&store, n);
}

#[test]
fn many_events_over_many_segments_sync() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new().segment_size(1 << 20).durability(Durability::Sync).open(dir.path()).unwrap();
    // Fewer, larger batches: each Sync append waits for the disk.
    for i in 0..40u64 {
        let batch: Vec<NewEvent> = (i * 100..(i + 1) * 100).map(|k| NewEvent::new("E", payload(k))).collect();
        store.append(&format!("s{}", i % 5), ExpectedVersion::Any, &batch).unwrap();
    }
    check(&store, 4000);
    drop(store);
    let store = Options::new().segment_size(1 << 20).open(dir.path()).unwrap();
    check(&store, 4000);
}

#[test]
fn an_append_bigger_than_the_segment_size_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_buffered(dir.path());
    store.append("s0", ExpectedVersion::Any, &[NewEvent::new("E", payload(0))]).unwrap();
    // 3 MiB in one batch of small events.
    let batch: Vec<NewEvent> = (1..1501).map(|k| NewEvent::new("E", payload(k))).collect();
    assert!(batch.iter().map(|e| e.payload().len()).sum::<usize>() > 2 * MIB);
    let r = store.append("s1", ExpectedVersion::NoStream, &batch).unwrap();
    assert_eq!((r.first_version, r.last_version, r.position.as_u64()), (0, 1499, 1500));
    // One 2.5 MiB event, then small ones again.
    let big = NewEvent::new("Big", vec![0xAB; 5 * MIB / 2]);
    let r = store.append("big", ExpectedVersion::NoStream, &[big]).unwrap();
    assert_eq!(r.position.as_u64(), 1501);
    for k in 1502..1600 {
        store.append(&format!("s{}", k % 5), ExpectedVersion::Any, &[NewEvent::new("E", payload(k))]).unwrap();
    }
    let verify = |store: &Store| {
        assert_eq!(store.head().as_u64(), 1600);
        let events = all(store);
        assert_eq!(events.len(), 1600);
        for (k, e) in events.iter().enumerate() {
            assert_eq!(e.position, k as u64);
            if k == 1501 {
                assert_eq!((e.stream.as_str(), e.payload.len()), ("big", 5 * MIB / 2));
                assert!(e.payload.iter().all(|b| *b == 0xAB));
            } else {
                assert!(e.payload == payload(k as u64), "payload at {k}");
            }
        }
        assert_eq!(store.stream_version("s1"), Some(1499 + 19));
    };
    verify(&store);
    drop(store);
    let store = small_buffered(dir.path());
    verify(&store);
    assert_usable(&store);
}

#[test]
fn an_event_that_does_not_fit_the_rest_of_a_segment_goes_to_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_buffered(dir.path());
    // Fill most of the first segment, then append events of 600 KiB: each one needs a new segment.
    store.append("fill", ExpectedVersion::NoStream, &[NewEvent::new("E", vec![1u8; 900 * 1024])]).unwrap();
    for i in 0..6u8 {
        store.append("big", ExpectedVersion::Any, &[NewEvent::new("E", vec![i + 2; 600 * 1024])]).unwrap();
    }
    let verify = |store: &Store| {
        let events = all(store);
        assert_eq!(events.len(), 7);
        assert!(events[0].payload.iter().all(|b| *b == 1));
        for (i, e) in events[1..].iter().enumerate() {
            assert_eq!((e.stream.as_str(), e.version, e.payload.len()), ("big", i as u64, 600 * 1024));
            assert!(e.payload.iter().all(|b| *b == i as u8 + 2));
        }
    };
    verify(&store);
    drop(store);
    let store = small_buffered(dir.path());
    verify(&store);
}

#[test]
fn reopening_with_another_segment_size_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_buffered(dir.path());
    let n = fill(&store, 0);
    drop(store);
    let store = Options::new().segment_size(3 << 20).durability(Durability::Buffered).open(dir.path()).unwrap();
    check(&store, n);
    let n = fill(&store, n);
    check(&store, n);
    drop(store);
    let store = small_buffered(dir.path());
    check(&store, n);
}
