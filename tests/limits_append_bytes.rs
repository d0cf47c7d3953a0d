//! API.md: "an event's payload + metadata up to 16 MiB ... 10,000 events and 32 MiB per append" are accepted
//! at least. Two events at the per-event maximum hold exactly 32 MiB of event data (payload + metadata), so one
//! append of both must be accepted; one byte more must not.

mod api_helpers;

use annals::{ExpectedVersion, NewEvent, StreamAppend};
use api_helpers::*;

const MIB: usize = 1 << 20;

#[test]
fn two_events_at_the_16_mib_maximum_fit_in_one_append() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_buffered(dir.path());
    let batch = [
        NewEvent::new("Big", vec![1u8; 16 * MIB]),
        NewEvent::new("Big", vec![2u8; 12 * MIB]).with_metadata(vec![3u8; 4 * MIB]),
    ];
    let r = store.append("big", ExpectedVersion::NoStream, &batch).expect("32 MiB of event data in one append");
    assert_eq!((r.first_version, r.last_version, r.position.as_u64()), (0, 1, 1));
    let read = stream(&store, "big");
    assert_eq!(read.len(), 2);
    assert!(read[0].payload == batch[0].payload() && read[1].payload == batch[1].payload());
    assert!(read[1].metadata == batch[1].metadata());
}

#[test]
fn two_parts_at_the_16_mib_maximum_fit_in_one_append_many() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_buffered(dir.path());
    let a = [NewEvent::new("Big", vec![1u8; 16 * MIB])];
    let b = [NewEvent::new("Big", vec![2u8; 16 * MIB])];
    let rs = store
        .append_many(&[
            StreamAppend::new("a", ExpectedVersion::NoStream, &a),
            StreamAppend::new("b", ExpectedVersion::NoStream, &b),
        ])
        .expect("32 MiB of event data in one append_many");
    assert_eq!(rs[1].position.as_u64(), 1);
    assert_eq!(stream(&store, "a")[0].payload.len(), 16 * MIB);
    assert_eq!(stream(&store, "b")[0].payload.len(), 16 * MIB);
}

#[test]
fn one_byte_over_32_mib_of_event_data_is_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_buffered(dir.path());
    let batch = [
        NewEvent::new("Big", vec![1u8; 16 * MIB]),
        NewEvent::new("Big", vec![2u8; 16 * MIB]),
        NewEvent::new("Small", "x"),
    ];
    assert_invalid(store.append("big", ExpectedVersion::NoStream, &batch));
    assert_eq!(store.head().as_u64(), 0);
    assert_eq!(store.stream_version("big"), None);
    assert_usable(&store);
}
