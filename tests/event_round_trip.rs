//! What goes in comes back out: id, type, payload, metadata, stream, version, position and timestamp of every
//! event, through `read_stream` and `read_all`; payloads start at 16-byte aligned addresses.

mod api_helpers;

use std::time::{SystemTime, UNIX_EPOCH};

use annals::{Bytes, ExpectedVersion, NewEvent, Position, Store, Uuid};
use api_helpers::*;

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

#[test]
fn every_field_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("other", ExpectedVersion::NoStream, &evs(2)).unwrap();
    let id = Uuid::new_v4();
    let binary: Vec<u8> = (0..=255u8).collect();
    let events = [
        NewEvent::new("Deposited", &b"{\"amount\":5}"[..]).with_id(id).with_metadata("trace=abc"),
        NewEvent::new("Binary", binary.clone()).with_metadata(vec![0u8, 255, 0]),
        NewEvent::new("Empty", ""),
    ];
    let before = now_us();
    let r = store.append("account-42", ExpectedVersion::NoStream, &events).unwrap();
    let after = now_us();
    assert_eq!((r.first_version, r.last_version, r.position.as_u64()), (0, 2, 4));

    let read = stream(&store, "account-42");
    assert_eq!(read.len(), 3);
    for (i, (got, sent)) in read.iter().zip(&events).enumerate() {
        assert_eq!(got.stream, "account-42");
        assert_eq!(got.version, i as u64);
        assert_eq!(got.position, 2 + i as u64);
        assert_eq!(got.id, sent.id());
        assert_eq!(got.event_type, sent.event_type());
        assert_eq!(got.payload, sent.payload());
        assert_eq!(got.metadata, sent.metadata());
        assert!(
            (before..=after).contains(&got.timestamp),
            "timestamp {} should be set at append, between {before} and {after}",
            got.timestamp
        );
    }
    assert_eq!(read[0].id, id);
    assert_eq!(read[1].payload, binary);
    assert!(read[2].payload.is_empty() && read[2].metadata.is_empty());
    // read_all gives the very same events.
    assert_eq!(all_from(&store, 2), read);
}

#[test]
fn new_event_defaults_to_a_fresh_v7_id_and_empty_metadata() {
    let a = NewEvent::new("A", "x");
    let b = NewEvent::new("A", "x");
    assert_ne!(a.id(), b.id());
    assert_eq!(a.id().get_version_num(), 7);
    assert!(a.metadata().is_empty());
    assert_eq!(a.payload(), b"x");
    assert_eq!(a.event_type(), "A");

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("s", ExpectedVersion::Any, &[a.clone(), b.clone()]).unwrap();
    let read = stream(&store, "s");
    assert_eq!((read[0].id, read[1].id), (a.id(), b.id()));
    assert!(read.iter().all(|e| e.metadata.is_empty()));
}

#[test]
fn payloads_of_every_kind_of_into_bytes_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let events = [
        NewEvent::new("Str", "a str"),
        NewEvent::new("String", String::from("a String")),
        NewEvent::new("Vec", vec![1u8, 2, 3]),
        NewEvent::new("Slice", &b"a static slice"[..]),
        NewEvent::new("Bytes", Bytes::from_static(b"bytes")).with_metadata(Bytes::from(vec![9u8; 7])),
    ];
    store.append("s", ExpectedVersion::NoStream, &events).unwrap();
    let read = stream(&store, "s");
    let got: Vec<(&str, &[u8], &[u8])> =
        read.iter().map(|e| (e.event_type.as_str(), &e.payload[..], &e.metadata[..])).collect();
    let sent: Vec<(&str, &[u8], &[u8])> = events.iter().map(|e| (e.event_type(), e.payload(), e.metadata())).collect();
    assert_eq!(got, sent);
}

#[test]
fn unicode_stream_names_and_types_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let names = ["компания-1", "注文/7", "emoji-🦀-stream", "tab\tand space", "a$b"];
    for (i, name) in names.iter().enumerate() {
        let t = format!("Événement-{i}-✓");
        store.append(name, ExpectedVersion::NoStream, &[ev(&t, name.as_bytes())]).unwrap();
    }
    for (i, name) in names.iter().enumerate() {
        let read = stream(&store, name);
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].stream, *name);
        assert_eq!(read[0].event_type, format!("Événement-{i}-✓"));
        assert_eq!(read[0].payload, name.as_bytes());
        assert_eq!(store.stream_version(name), Some(0));
    }
}

#[test]
fn payloads_are_16_byte_aligned() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_buffered(dir.path());
    let mut n = 0;
    for stream_len in [1usize, 2, 7, 15, 16, 17, 31, 100, 255] {
        let stream = "s".repeat(stream_len);
        for (k, type_len) in [1usize, 3, 16, 33, 255].into_iter().enumerate() {
            let t = "t".repeat(type_len);
            let batch: Vec<NewEvent> = (0..5usize)
                .map(|j| {
                    let payload = vec![j as u8 + 1; 1 + (j * 7 + k * 13 + stream_len) % 50];
                    NewEvent::new(t.clone(), payload).with_metadata(vec![7u8; (j + k + stream_len) % 19])
                })
                .collect();
            store.append(&stream, ExpectedVersion::Any, &batch).unwrap();
            n += batch.len();
        }
    }
    let mut checked = 0;
    for e in store.read_all(Position::START) {
        let e = e.unwrap();
        assert!(!e.payload().is_empty());
        assert_eq!(e.payload().as_ptr() as usize % 16, 0, "payload of event {} is not 16-byte aligned", e.position());
        checked += 1;
    }
    assert_eq!(checked, n);
    // The same through read_stream.
    for e in store.read_stream(&"s".repeat(17), 0).unwrap() {
        let e = e.unwrap();
        assert_eq!(e.payload().as_ptr() as usize % 16, 0);
    }
}
