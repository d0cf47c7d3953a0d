//! Helpers shared by the API integration tests (append_*, read_*, limits_*, reopen, positions, ...). Each test
//! file uses only some of them.
#![allow(dead_code)]

use annals::{Durability, Error, NewEvent, Options, Position, RecordedEvent, Store, Uuid};

/// An owned copy of everything a recorded event exposes, so events can be compared and kept after the store
/// is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub stream: String,
    pub version: u64,
    pub position: u64,
    pub id: Uuid,
    pub event_type: String,
    pub payload: Vec<u8>,
    pub metadata: Vec<u8>,
    pub timestamp: u64,
}

impl Rec {
    pub fn of(e: &RecordedEvent) -> Rec {
        Rec {
            stream: e.stream().to_owned(),
            version: e.version(),
            position: e.position().as_u64(),
            id: e.id(),
            event_type: e.event_type().to_owned(),
            payload: e.payload().to_vec(),
            metadata: e.metadata().to_vec(),
            timestamp: e.timestamp(),
        }
    }
}

/// Every event from `from`, copied out; panics on a read error.
pub fn all_from(store: &Store, from: u64) -> Vec<Rec> {
    store.read_all(Position::from_u64(from)).map(|e| Rec::of(&e.expect("read_all item"))).collect()
}

/// Every event of the store, copied out.
pub fn all(store: &Store) -> Vec<Rec> {
    all_from(store, 0)
}

/// The events of `stream` from `from`, copied out; panics on a read error.
pub fn stream_from(store: &Store, stream: &str, from: u64) -> Vec<Rec> {
    store.read_stream(stream, from).expect("read_stream").map(|e| Rec::of(&e.expect("read_stream item"))).collect()
}

/// The events of `stream`, copied out.
pub fn stream(store: &Store, stream: &str) -> Vec<Rec> {
    stream_from(store, stream, 0)
}

/// An event with the given type and payload (and a fresh id).
pub fn ev(event_type: &str, payload: impl Into<Vec<u8>>) -> NewEvent {
    NewEvent::new(event_type, payload.into())
}

/// `n` events of type "E" with payloads "0", "1", ...
pub fn evs(n: usize) -> Vec<NewEvent> {
    (0..n).map(|i| ev("E", i.to_string())).collect()
}

/// A store with 1 MiB segments and buffered durability.
pub fn small_buffered(path: &std::path::Path) -> Store {
    Options::new().segment_size(1 << 20).durability(Durability::Buffered).open(path).expect("open store")
}

/// Panics unless `r` is `Err(Error::InvalidInput { .. })`.
#[track_caller]
pub fn assert_invalid<T: std::fmt::Debug>(r: Result<T, Error>) {
    match r {
        Err(Error::InvalidInput { reason }) => assert!(!reason.is_empty(), "InvalidInput without a reason"),
        other => panic!("expected Error::InvalidInput, got {other:?}"),
    }
}

/// Everything observable about a store, to check that a failed call changed nothing.
#[derive(Debug, PartialEq, Eq)]
pub struct Observed {
    pub head: u64,
    pub events: Vec<Rec>,
    pub versions: Vec<(String, Option<u64>)>,
}

pub fn observe(store: &Store, streams: &[&str]) -> Observed {
    Observed {
        head: store.head().as_u64(),
        events: all(store),
        versions: streams.iter().map(|s| (s.to_string(), store.stream_version(s))).collect(),
    }
}

/// Checks that the store still accepts an append, and that the append lands right at the head.
#[track_caller]
pub fn assert_usable(store: &Store) {
    let head = store.head().as_u64();
    let stream = format!("usable-check-{}", Uuid::new_v4());
    let r = store.append(&stream, annals::ExpectedVersion::NoStream, &[ev("Check", "ok")]).expect("store usable");
    assert_eq!((r.first_version, r.last_version, r.position.as_u64()), (0, 0, head));
    assert_eq!(store.head().as_u64(), head + 1);
    assert_eq!(stream_from(store, &stream, 0).len(), 1);
}
