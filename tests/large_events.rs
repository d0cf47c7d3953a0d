//! Events near the size limits (16 MiB of payload + metadata, 255-byte names and types) are written, read back
//! byte for byte, and survive a reopen, with the default segment size and with 1 MiB segments (a small segment
//! size lowers no limit).

mod api_helpers;

use annals::{ExpectedVersion, NewEvent, Options, Position, Store};
use api_helpers::*;

const MIB: usize = 1 << 20;

/// Bytes that differ from position to position, so a misplaced slice is caught.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + seed as usize * 7) % 251) as u8).collect()
}

fn check_big(store: &Store, stream: &str, version: u64, payload_len: usize, metadata_len: usize, seed: u8) {
    let e = store.read_stream(stream, version).unwrap().next().expect("event present").unwrap();
    assert_eq!(e.version(), version);
    assert_eq!(e.payload().len(), payload_len);
    assert_eq!(e.metadata().len(), metadata_len);
    assert!(e.payload() == pattern(payload_len, seed), "payload of {stream}@{version} differs");
    assert!(e.metadata() == pattern(metadata_len, seed.wrapping_add(1)), "metadata of {stream}@{version} differs");
    assert_eq!(e.payload().as_ptr() as usize % 16, 0);
}

fn write_big_events(store: &Store) {
    store.append("small", ExpectedVersion::Any, &evs(3)).unwrap();
    store.append("big", ExpectedVersion::NoStream, &[NewEvent::new("Big", pattern(16 * MIB, 1))]).unwrap();
    store.append("small", ExpectedVersion::Any, &evs(2)).unwrap();
    let split = NewEvent::new("Big", pattern(16 * MIB - 1000, 2)).with_metadata(pattern(1000, 3));
    store.append("big", ExpectedVersion::Exact(0), &[split]).unwrap();
    let meta_only = NewEvent::new("Big", "").with_metadata(pattern(16 * MIB, 4));
    store.append("big", ExpectedVersion::Exact(1), &[meta_only]).unwrap();
    store.append("small", ExpectedVersion::Any, &evs(1)).unwrap();
}

fn check_big_events(store: &Store) {
    assert_eq!(store.head().as_u64(), 9);
    check_big(store, "big", 0, 16 * MIB, 0, 1);
    check_big(store, "big", 1, 16 * MIB - 1000, 1000, 2);
    let e = store.read_stream("big", 2).unwrap().next().unwrap().unwrap();
    assert!(e.payload().is_empty());
    assert!(e.metadata() == pattern(16 * MIB, 4));
    let small: Vec<Vec<u8>> = stream(store, "small").into_iter().map(|e| e.payload).collect();
    assert_eq!(small, [b"0".to_vec(), b"1".to_vec(), b"2".to_vec(), b"0".to_vec(), b"1".to_vec(), b"0".to_vec()]);
    let order: Vec<(String, u64)> = store
        .read_all(Position::START)
        .map(|e| e.unwrap())
        .map(|e| (e.stream().to_owned(), e.position().as_u64()))
        .collect();
    let streams: Vec<&str> = order.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(streams, ["small", "small", "small", "big", "small", "small", "big", "big", "small"]);
    assert!(order.iter().enumerate().all(|(i, (_, p))| *p == i as u64));
}

#[test]
fn events_of_16_mib_with_the_default_segment_size() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    write_big_events(&store);
    check_big_events(&store);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    check_big_events(&store);
    assert_usable(&store);
}

#[test]
fn events_of_16_mib_with_1_mib_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_buffered(dir.path());
    write_big_events(&store);
    check_big_events(&store);
    drop(store);
    let store = small_buffered(dir.path());
    check_big_events(&store);
    assert_usable(&store);
}

#[test]
fn longest_names_types_and_bodies_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new().segment_size(1 << 20).open(dir.path()).unwrap();
    let name = "n".repeat(254) + "!";
    let event_type = "€".repeat(85);
    let e = NewEvent::new(event_type.clone(), pattern(12 * MIB, 9)).with_metadata(pattern(4 * MIB, 10));
    let r = store.append(&name, ExpectedVersion::NoStream, &[e]).unwrap();
    assert_eq!(r.position, Position::START);
    let check = |store: &Store| {
        let got = store.read_all(Position::START).next().unwrap().unwrap();
        assert_eq!(got.stream(), name);
        assert_eq!(got.event_type(), event_type);
        check_big(store, &name, 0, 12 * MIB, 4 * MIB, 9);
    };
    check(&store);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    check(&store);
}

#[test]
fn many_events_of_255_byte_names_and_types() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_buffered(dir.path());
    let names: Vec<String> = (0..20).map(|i| format!("{i:03}{}", "s".repeat(252))).collect();
    let event_type = "T".repeat(255);
    for round in 0..50 {
        for name in &names {
            store.append(name, ExpectedVersion::Any, &[ev(&event_type, format!("{round}"))]).unwrap();
        }
    }
    for name in &names {
        let events = stream(&store, name);
        assert_eq!(events.len(), 50);
        assert!(events.iter().enumerate().all(|(i, e)| e.payload == i.to_string().as_bytes()));
        assert!(events.iter().all(|e| e.event_type == event_type && &e.stream == name));
    }
}
