//! `Store` is a cheap `Send + Sync + Clone` handle. The store stays open while any handle or iterator made from
//! it lives, and closes as soon as the last one is dropped, so the folder can be opened again at once.

mod api_helpers;

use annals::{Durability, Error, ExpectedVersion, Options, Position, Store};
use api_helpers::*;

#[track_caller]
fn assert_locked(path: &std::path::Path) {
    match Store::open(path) {
        Err(Error::Locked { .. }) => {}
        other => panic!("expected the folder to be still open (Error::Locked), got {other:?}"),
    }
}

#[test]
fn store_is_send_sync_clone() {
    fn assert_traits<T: Send + Sync + Clone + 'static>() {}
    assert_traits::<Store>();
}

#[test]
fn clones_share_one_store() {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(dir.path()).unwrap();
    let b = a.clone();
    a.append("s", ExpectedVersion::NoStream, &evs(1)).unwrap();
    assert_eq!(b.stream_version("s"), Some(0));
    let r = b.append("s", ExpectedVersion::Exact(0), &evs(1)).unwrap();
    assert_eq!(r.position.as_u64(), 1);
    assert_eq!(a.head().as_u64(), 2);
    assert_eq!(all(&a), all(&b));
}

#[test]
fn the_store_closes_when_the_last_handle_drops() {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(dir.path()).unwrap();
    a.append("s", ExpectedVersion::NoStream, &evs(2)).unwrap();
    let b = a.clone();
    let c = b.clone();
    drop(a);
    assert_locked(dir.path());
    drop(c);
    assert_locked(dir.path());
    b.append("s", ExpectedVersion::Exact(1), &evs(1)).unwrap();
    drop(b);
    let store = Store::open(dir.path()).expect("the folder opens right after the last handle is dropped");
    assert_eq!(store.stream_version("s"), Some(2));
}

#[test]
fn a_buffered_store_closes_when_the_last_handle_drops() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::new().durability(Durability::Buffered);
    for round in 0..5u64 {
        let store = opts.open(dir.path()).expect("reopen at once");
        assert_eq!(store.head().as_u64(), 10 * round);
        let clone = store.clone();
        store.append("s", ExpectedVersion::Any, &evs(5)).unwrap();
        drop(store);
        clone.append("s", ExpectedVersion::Any, &evs(5)).unwrap();
        drop(clone);
    }
}

#[test]
fn handles_dropped_on_other_threads_close_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for _ in 0..25 {
                    store.append(&format!("t{t}"), ExpectedVersion::Any, &evs(2)).unwrap();
                }
                // `store` is dropped here, on this thread.
            })
        })
        .collect();
    drop(store); // the threads now hold the only handles
    for t in threads {
        t.join().unwrap();
    }
    let store = Store::open(dir.path()).expect("closed by the last thread's drop");
    assert_eq!(store.head().as_u64(), 200);
    for t in 0..4 {
        assert_eq!(store.stream_version(&format!("t{t}")), Some(49));
    }
}

#[test]
fn concurrent_appends_through_clones_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_buffered(dir.path());
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut positions = Vec::new();
                for i in 0..100u8 {
                    let r = store.append("shared", ExpectedVersion::Any, &[ev("E", vec![t, i])]).unwrap();
                    positions.push((r.position.as_u64(), r.first_version, t, i));
                }
                positions
            })
        })
        .collect();
    let mut results: Vec<(u64, u64, u8, u8)> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    results.sort();
    let events = stream(&store, "shared");
    assert_eq!(events.len(), 400);
    for (e, (position, version, t, i)) in events.iter().zip(&results) {
        assert_eq!((e.position, e.version, &e.payload[..]), (*position, *version, &[*t, *i][..]));
    }
}

#[test]
fn a_read_all_iterator_keeps_the_store_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("s", ExpectedVersion::NoStream, &evs(5)).unwrap();
    let mut it = store.read_all(Position::START);
    drop(store);
    assert_locked(dir.path());
    assert_eq!(it.next().unwrap().unwrap().payload(), b"0");
    assert_locked(dir.path());
    let rest: Vec<Vec<u8>> = it.by_ref().map(|e| e.unwrap().payload().to_vec()).collect();
    assert_eq!(rest, [b"1", b"2", b"3", b"4"]);
    // Exhausted but not dropped: still open.
    assert_locked(dir.path());
    drop(it);
    let store = Store::open(dir.path()).expect("the folder opens right after the iterator is dropped");
    assert_eq!(store.head().as_u64(), 5);
}

#[test]
fn a_read_stream_iterator_keeps_the_store_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_buffered(dir.path());
    store.append("s", ExpectedVersion::NoStream, &evs(3)).unwrap();
    let it = store.read_stream("s", 1).unwrap();
    let unknown = store.read_stream("unknown", 0).unwrap();
    drop(store);
    assert_locked(dir.path());
    let payloads: Vec<Vec<u8>> = it.map(|e| e.unwrap().payload().to_vec()).collect();
    assert_eq!(payloads, [b"1", b"2"]);
    // The iterator was consumed (and so dropped) by `map(..).collect()`; `unknown` still holds the store.
    assert_locked(dir.path());
    drop(unknown);
    let store = Store::open(dir.path()).expect("the folder opens right after the last iterator is dropped");
    assert_eq!(store.stream_version("s"), Some(2));
}

#[test]
fn iterators_on_other_threads_keep_the_store_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("s", ExpectedVersion::NoStream, &evs(10)).unwrap();
    let it = store.read_all(Position::START);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        rx.recv().unwrap();
        it.map(|e| e.unwrap().version()).collect::<Vec<_>>()
    });
    drop(store);
    assert_locked(dir.path());
    tx.send(()).unwrap();
    assert_eq!(reader.join().unwrap(), (0..10).collect::<Vec<_>>());
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.head().as_u64(), 10);
}

#[test]
fn events_read_before_the_close_keep_their_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_buffered(dir.path());
    for i in 0..20u8 {
        store.append("s", ExpectedVersion::Any, &[ev("E", vec![i; 100_000])]).unwrap();
    }
    let events: Vec<_> = store.read_all(Position::START).map(|e| e.unwrap()).collect();
    drop(store);
    // Reopen and append more: the events read earlier still hold their own bytes.
    let store = small_buffered(dir.path());
    for i in 0..20u8 {
        store.append("s", ExpectedVersion::Any, &[ev("F", vec![255 - i; 100_000])]).unwrap();
    }
    drop(store);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.event_type(), "E");
        assert_eq!(e.version(), i as u64);
        assert!(e.payload().iter().all(|b| *b == i as u8));
    }
}
