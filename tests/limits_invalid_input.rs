//! Every documented limit of an append: at the limit it is accepted; beyond it the append fails with
//! `Error::InvalidInput`, nothing is written (head, stream versions and events unchanged), and the store stays
//! usable. Limits: stream names 1..=255 bytes of UTF-8 ('$' prefix reserved), event types 1..=255 bytes,
//! payload + metadata of one event up to 16 MiB, 10,000 events per append, 32 MiB per append, no empty event
//! list, no empty `append_many`, no stream named twice, no id twice.

mod api_helpers;

use annals::{limits, ExpectedVersion, NewEvent, Store, StreamAppend};
use api_helpers::*;

const MIB: usize = 1 << 20;

/// A store holding one event in "existing" (so "nothing written" is checked against a non-empty store).
fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("existing", ExpectedVersion::NoStream, &evs(1)).unwrap();
    (dir, store)
}

/// Runs `f`, which must fail with InvalidInput, and checks that nothing changed and the store is usable.
#[track_caller]
fn rejected<T: std::fmt::Debug>(store: &Store, streams: &[&str], f: impl FnOnce() -> annals::Result<T>) {
    let mut names = vec!["existing"];
    names.extend_from_slice(streams);
    let before = observe(store, &names);
    assert_invalid(f());
    assert_eq!(observe(store, &names), before, "a rejected append changed the store");
}

#[test]
fn documented_constants() {
    assert_eq!(limits::STREAM_NAME_BYTES_MAX, 255);
    assert_eq!(limits::EVENT_TYPE_BYTES_MAX, 255);
    assert_eq!(limits::EVENT_BODY_BYTES_MAX, 16 * MIB);
    assert_eq!(limits::BATCH_EVENTS_MAX, 10_000);
    assert_eq!(limits::BATCH_BODY_BYTES_MAX, 32 * MIB);
}

#[test]
fn stream_names_of_1_to_255_bytes_are_accepted() {
    let (_dir, store) = open();
    let ascii = "a".repeat(255);
    let multibyte = "€".repeat(85); // 3 bytes each: 255 bytes
    let mixed = format!("{}é", "x".repeat(253)); // 255 bytes, ends in a 2-byte char
    assert_eq!((ascii.len(), multibyte.len(), mixed.len()), (255, 255, 255));
    for name in ["a", "€", ascii.as_str(), multibyte.as_str(), mixed.as_str()] {
        let r = store.append(name, ExpectedVersion::NoStream, &evs(1)).unwrap();
        assert_eq!(r.first_version, 0);
        assert_eq!(store.stream_version(name), Some(0));
        assert_eq!(stream(&store, name)[0].stream, name);
    }
}

#[test]
fn an_empty_stream_name_is_invalid_input() {
    let (_dir, store) = open();
    rejected(&store, &[""], || store.append("", ExpectedVersion::Any, &evs(1)));
    rejected(&store, &[""], || store.append("", ExpectedVersion::NoStream, &evs(1)));
    assert_usable(&store);
}

#[test]
fn a_stream_name_over_255_bytes_is_invalid_input() {
    let (_dir, store) = open();
    let ascii = "a".repeat(256);
    let multibyte = "é".repeat(128); // 256 bytes, 128 chars
    let long = "b".repeat(10_000);
    for name in [&ascii, &multibyte, &long] {
        rejected(&store, &[name.as_str()], || store.append(name, ExpectedVersion::Any, &evs(1)));
    }
    assert_usable(&store);
}

#[test]
fn stream_names_starting_with_a_dollar_are_invalid_input() {
    let (_dir, store) = open();
    for name in ["$", "$all", "$streams-x", "$existing"] {
        rejected(&store, &[name], || store.append(name, ExpectedVersion::Any, &evs(1)));
        rejected(&store, &[name], || store.append(name, ExpectedVersion::NoStream, &evs(1)));
    }
    // '$' elsewhere is fine.
    store.append("price-$5", ExpectedVersion::NoStream, &evs(1)).unwrap();
    assert_eq!(store.stream_version("price-$5"), Some(0));
    assert_usable(&store);
}

#[test]
fn event_types_of_1_to_255_bytes_are_accepted() {
    let (_dir, store) = open();
    let ascii = "T".repeat(255);
    let multibyte = "ü".repeat(127) + "x"; // 255 bytes
    for t in ["T", ascii.as_str(), multibyte.as_str()] {
        store.append("s", ExpectedVersion::Any, &[ev(t, "x")]).unwrap();
    }
    let types: Vec<String> = stream(&store, "s").into_iter().map(|e| e.event_type).collect();
    assert_eq!(types, ["T".to_owned(), ascii, multibyte]);
}

#[test]
fn an_empty_event_type_is_invalid_input() {
    let (_dir, store) = open();
    rejected(&store, &["s"], || store.append("s", ExpectedVersion::Any, &[ev("", "x")]));
    // One bad event among good ones rejects the whole append.
    rejected(&store, &["s"], || store.append("s", ExpectedVersion::Any, &[ev("A", "x"), ev("", "y"), ev("B", "z")]));
    assert_usable(&store);
}

#[test]
fn an_event_type_over_255_bytes_is_invalid_input() {
    let (_dir, store) = open();
    let ascii = "T".repeat(256);
    let multibyte = "ü".repeat(128);
    for t in [&ascii, &multibyte] {
        rejected(&store, &["s"], || store.append("s", ExpectedVersion::Any, &[ev("A", "x"), ev(t, "y")]));
    }
    assert_usable(&store);
}

#[test]
fn payload_plus_metadata_of_16_mib_is_accepted() {
    let (_dir, store) = open();
    let whole = NewEvent::new("Big", vec![1u8; 16 * MIB]);
    let split = NewEvent::new("Big", vec![2u8; 10 * MIB]).with_metadata(vec![3u8; 6 * MIB]);
    let metadata_only = NewEvent::new("Big", "").with_metadata(vec![4u8; 16 * MIB]);
    for e in [whole, split, metadata_only] {
        let r = store.append("big", ExpectedVersion::Any, std::slice::from_ref(&e)).unwrap();
        let got = store.read_stream("big", r.first_version).unwrap().next().unwrap().unwrap();
        assert_eq!(got.payload().len() + got.metadata().len(), 16 * MIB);
        assert!(got.payload() == e.payload() && got.metadata() == e.metadata());
    }
    assert_eq!(store.stream_version("big"), Some(2));
}

#[test]
fn payload_plus_metadata_over_16_mib_is_invalid_input() {
    let (_dir, store) = open();
    let cases = [
        NewEvent::new("Big", vec![1u8; 16 * MIB + 1]),
        NewEvent::new("Big", vec![1u8; 16 * MIB]).with_metadata("m"),
        NewEvent::new("Big", vec![1u8; 8 * MIB]).with_metadata(vec![2u8; 8 * MIB + 1]),
        NewEvent::new("Big", "").with_metadata(vec![2u8; 16 * MIB + 1]),
    ];
    for e in cases {
        rejected(&store, &["big"], || store.append("big", ExpectedVersion::Any, &[ev("Small", "x"), e]));
    }
    assert_usable(&store);
}

#[test]
fn ten_thousand_events_in_one_append_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_buffered(dir.path());
    let r = store.append("many", ExpectedVersion::NoStream, &evs(10_000)).unwrap();
    assert_eq!((r.first_version, r.last_version, r.position.as_u64()), (0, 9_999, 9_999));
    let events = stream(&store, "many");
    assert_eq!(events.len(), 10_000);
    assert!(events.iter().enumerate().all(|(i, e)| e.payload == i.to_string().as_bytes()));
    // Across the parts of an append_many, 10,000 in all.
    let (a, b) = (evs(4_000), evs(6_000));
    let rs = store
        .append_many(&[
            StreamAppend::new("a", ExpectedVersion::NoStream, &a),
            StreamAppend::new("b", ExpectedVersion::NoStream, &b),
        ])
        .unwrap();
    assert_eq!((rs[0].last_version, rs[1].last_version, rs[1].position.as_u64()), (3_999, 5_999, 19_999));
}

#[test]
fn more_than_ten_thousand_events_in_one_append_are_invalid_input() {
    let (_dir, store) = open();
    let too_many = evs(10_001);
    rejected(&store, &["many"], || store.append("many", ExpectedVersion::Any, &too_many));
    rejected(&store, &["existing"], || store.append("existing", ExpectedVersion::Exact(0), &too_many));
    // Across the parts of an append_many (all parts together, as documented in the crate docs).
    let (a, b) = (evs(5_000), evs(5_001));
    rejected(&store, &["a", "b"], || {
        store.append_many(&[
            StreamAppend::new("a", ExpectedVersion::Any, &a),
            StreamAppend::new("b", ExpectedVersion::Any, &b),
        ])
    });
    assert_usable(&store);
}

#[test]
fn more_than_32_mib_in_one_append_is_invalid_input() {
    let (_dir, store) = open();
    // 33 MiB of payload in three events that are each within the per-event limit.
    let batch: Vec<NewEvent> = (0..3).map(|i| NewEvent::new("Chunk", vec![i as u8; 11 * MIB])).collect();
    rejected(&store, &["big"], || store.append("big", ExpectedVersion::Any, &batch));
    // 32 MiB + 1 byte of payload and metadata.
    let batch = [
        NewEvent::new("Chunk", vec![1u8; 16 * MIB]),
        NewEvent::new("Chunk", vec![2u8; 8 * MIB]).with_metadata(vec![3u8; 8 * MIB]),
        NewEvent::new("Chunk", "x"),
    ];
    rejected(&store, &["big"], || store.append("big", ExpectedVersion::Any, &batch));
    // Across the parts of an append_many.
    let a = vec![NewEvent::new("Chunk", vec![1u8; 16 * MIB])];
    let b = vec![NewEvent::new("Chunk", vec![2u8; 16 * MIB]), NewEvent::new("Chunk", vec![3u8; MIB])];
    rejected(&store, &["a", "b"], || {
        store.append_many(&[
            StreamAppend::new("a", ExpectedVersion::Any, &a),
            StreamAppend::new("b", ExpectedVersion::Any, &b),
        ])
    });
    assert_usable(&store);
}

#[test]
fn an_append_just_under_32_mib_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_buffered(dir.path());
    // Leaves 1 KiB of the 32 MiB for names and types, however an implementation counts them.
    let batch: Vec<NewEvent> = (0..4).map(|i| NewEvent::new("Chunk", vec![i as u8; 8 * MIB - 256])).collect();
    let r = store.append("big", ExpectedVersion::NoStream, &batch).unwrap();
    assert_eq!((r.first_version, r.last_version), (0, 3));
    let read = stream(&store, "big");
    assert_eq!(read.len(), 4);
    assert!(read.iter().enumerate().all(|(i, e)| e.payload == vec![i as u8; 8 * MIB - 256]));
}

#[test]
fn an_empty_event_list_is_invalid_input() {
    let (_dir, store) = open();
    rejected(&store, &["s"], || store.append("s", ExpectedVersion::Any, &[]));
    rejected(&store, &["s"], || store.append("s", ExpectedVersion::NoStream, &[]));
    rejected(&store, &[], || store.append("existing", ExpectedVersion::Exact(0), &[]));
    rejected(&store, &[], || store.append("existing", ExpectedVersion::StreamExists, &[]));
    assert_usable(&store);
}

#[test]
fn an_empty_append_many_is_invalid_input() {
    let (_dir, store) = open();
    rejected(&store, &[], || store.append_many(&[]));
    assert_usable(&store);
}

#[test]
fn a_stream_named_twice_in_append_many_is_invalid_input() {
    let (_dir, store) = open();
    let (a, b) = (evs(1), evs(2));
    rejected(&store, &["s"], || {
        store.append_many(&[
            StreamAppend::new("s", ExpectedVersion::NoStream, &a),
            StreamAppend::new("s", ExpectedVersion::Exact(0), &b),
        ])
    });
    rejected(&store, &[], || {
        store.append_many(&[
            StreamAppend::new("existing", ExpectedVersion::Any, &a),
            StreamAppend::new("existing", ExpectedVersion::Any, &b),
        ])
    });
    assert_usable(&store);
}

#[test]
fn the_same_id_twice_in_one_append_is_invalid_input() {
    let (_dir, store) = open();
    let e = ev("E", "x");
    rejected(&store, &["s"], || store.append("s", ExpectedVersion::Any, &[e.clone(), e.clone()]));
    let (a, b) = (vec![e.clone()], vec![e.clone()]);
    rejected(&store, &["s", "t"], || {
        store.append_many(&[
            StreamAppend::new("s", ExpectedVersion::Any, &a),
            StreamAppend::new("t", ExpectedVersion::Any, &b),
        ])
    });
    assert_usable(&store);
}

#[test]
fn invalid_parts_of_append_many_reject_the_whole_append() {
    let (_dir, store) = open();
    let good = evs(1);
    let long = "n".repeat(256);
    let bad_type = vec![ev("", "x")];
    let big = vec![NewEvent::new("Big", vec![0u8; 16 * MIB + 1])];
    let bad_parts: Vec<(&str, &[NewEvent])> =
        vec![("", &good), (long.as_str(), &good), ("$sys", &good), ("t", &bad_type), ("t", &big), ("t", &[])];
    for (name, events) in bad_parts {
        rejected(&store, &["s", "t"], || {
            store.append_many(&[
                StreamAppend::new("s", ExpectedVersion::Any, &good),
                StreamAppend::new(name, ExpectedVersion::Any, events),
            ])
        });
    }
    assert_usable(&store);
}
