//! `append_many`: atomic appends across streams, results in part order, consecutive positions, the conflict
//! report (first conflicting part), invalid part lists, and all-or-nothing visibility to concurrent readers.

mod api_helpers;

use annals::{Error, ExpectedVersion, NewEvent, Position, Store, StreamAppend};
use api_helpers::*;

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

#[track_caller]
fn assert_conflict<T: std::fmt::Debug>(
    r: Result<T, Error>,
    stream: &str,
    expected: ExpectedVersion,
    actual: Option<u64>,
) {
    match r {
        Err(Error::WrongExpectedVersion { stream: s, expected: e, actual: a }) => {
            assert_eq!((s.as_str(), e, a), (stream, expected, actual), "conflict fields");
        }
        other => panic!("expected WrongExpectedVersion on {stream:?}, got {other:?}"),
    }
}

#[test]
fn parts_are_written_in_order_with_consecutive_positions() {
    let (_dir, store) = open();
    store.append("order-7", ExpectedVersion::NoStream, &evs(4)).unwrap();
    let a = vec![ev("Paid", "a0"), ev("Shipped", "a1")];
    let b = vec![ev("Reserved", "b0")];
    let c = vec![ev("X", "c0"), ev("Y", "c1"), ev("Z", "c2")];
    let rs = store
        .append_many(&[
            StreamAppend::new("order-7", ExpectedVersion::Exact(3), &a),
            StreamAppend::new("stock-9", ExpectedVersion::Any, &b),
            StreamAppend::new("c", ExpectedVersion::NoStream, &c),
        ])
        .unwrap();
    let got: Vec<(u64, u64, u64)> = rs.iter().map(|r| (r.first_version, r.last_version, r.position.as_u64())).collect();
    assert_eq!(got, [(4, 5, 5), (0, 0, 6), (0, 2, 9)]);
    assert_eq!(store.head().as_u64(), 10);

    let tail: Vec<(String, u64, u64, Vec<u8>)> =
        all_from(&store, 4).into_iter().map(|e| (e.stream, e.version, e.position, e.payload)).collect();
    let expect: Vec<(String, u64, u64, Vec<u8>)> = [
        ("order-7", 4, 4, "a0"),
        ("order-7", 5, 5, "a1"),
        ("stock-9", 0, 6, "b0"),
        ("c", 0, 7, "c0"),
        ("c", 1, 8, "c1"),
        ("c", 2, 9, "c2"),
    ]
    .into_iter()
    .map(|(s, v, p, x)| (s.to_owned(), v, p, x.as_bytes().to_vec()))
    .collect();
    assert_eq!(tail, expect);
    assert_eq!(store.stream_version("order-7"), Some(5));
    assert_eq!(store.stream_version("stock-9"), Some(0));
    assert_eq!(store.stream_version("c"), Some(2));
}

#[test]
fn a_single_part_behaves_like_append() {
    let (_dir, store) = open();
    let e = evs(2);
    let rs = store.append_many(&[StreamAppend::new("s", ExpectedVersion::NoStream, &e)]).unwrap();
    assert_eq!(rs.len(), 1);
    assert_eq!((rs[0].first_version, rs[0].last_version, rs[0].position.as_u64()), (0, 1, 1));
    // A retry through plain append sees the same result.
    assert_eq!(store.append("s", ExpectedVersion::NoStream, &e).unwrap(), rs[0]);
}

#[test]
fn a_conflict_in_any_part_writes_nothing() {
    let (_dir, store) = open();
    store.append("a", ExpectedVersion::NoStream, &evs(2)).unwrap();
    store.append("b", ExpectedVersion::NoStream, &evs(1)).unwrap();
    let streams = ["a", "b", "c"];
    let before = observe(&store, &streams);
    let (ea, eb, ec) = (evs(1), evs(2), evs(1));

    // First part conflicts.
    assert_conflict(
        store.append_many(&[
            StreamAppend::new("a", ExpectedVersion::Exact(0), &ea),
            StreamAppend::new("b", ExpectedVersion::Exact(0), &eb),
            StreamAppend::new("c", ExpectedVersion::NoStream, &ec),
        ]),
        "a",
        ExpectedVersion::Exact(0),
        Some(1),
    );
    // Middle part conflicts.
    assert_conflict(
        store.append_many(&[
            StreamAppend::new("a", ExpectedVersion::Exact(1), &ea),
            StreamAppend::new("b", ExpectedVersion::NoStream, &eb),
            StreamAppend::new("c", ExpectedVersion::NoStream, &ec),
        ]),
        "b",
        ExpectedVersion::NoStream,
        Some(0),
    );
    // Last part conflicts.
    assert_conflict(
        store.append_many(&[
            StreamAppend::new("a", ExpectedVersion::Any, &ea),
            StreamAppend::new("b", ExpectedVersion::StreamExists, &eb),
            StreamAppend::new("c", ExpectedVersion::StreamExists, &ec),
        ]),
        "c",
        ExpectedVersion::StreamExists,
        None,
    );
    assert_eq!(observe(&store, &streams), before);
    assert_usable(&store);
}

#[test]
fn several_conflicts_report_the_first_conflicting_part() {
    let (_dir, store) = open();
    store.append("a", ExpectedVersion::NoStream, &evs(1)).unwrap();
    store.append("b", ExpectedVersion::NoStream, &evs(3)).unwrap();
    let before = observe(&store, &["a", "b", "c"]);
    let (ea, eb, ec) = (evs(1), evs(1), evs(1));
    assert_conflict(
        store.append_many(&[
            StreamAppend::new("c", ExpectedVersion::Any, &ec),
            StreamAppend::new("b", ExpectedVersion::Exact(7), &eb),
            StreamAppend::new("a", ExpectedVersion::NoStream, &ea),
        ]),
        "b",
        ExpectedVersion::Exact(7),
        Some(2),
    );
    assert_conflict(
        store.append_many(&[
            StreamAppend::new("a", ExpectedVersion::NoStream, &ea),
            StreamAppend::new("b", ExpectedVersion::Exact(7), &eb),
        ]),
        "a",
        ExpectedVersion::NoStream,
        Some(0),
    );
    assert_eq!(observe(&store, &["a", "b", "c"]), before);
}

#[test]
fn an_empty_list_is_invalid_input() {
    let (_dir, store) = open();
    store.append("a", ExpectedVersion::NoStream, &evs(1)).unwrap();
    let before = observe(&store, &["a"]);
    assert_invalid(store.append_many(&[]));
    assert_eq!(observe(&store, &["a"]), before);
    assert_usable(&store);
}

#[test]
fn a_stream_named_twice_is_invalid_input() {
    let (_dir, store) = open();
    store.append("a", ExpectedVersion::NoStream, &evs(1)).unwrap();
    let before = observe(&store, &["a", "b"]);
    let (e1, e2, e3) = (evs(1), evs(1), evs(1));
    assert_invalid(store.append_many(&[
        StreamAppend::new("a", ExpectedVersion::Any, &e1),
        StreamAppend::new("a", ExpectedVersion::Any, &e2),
    ]));
    assert_invalid(store.append_many(&[
        StreamAppend::new("b", ExpectedVersion::NoStream, &e1),
        StreamAppend::new("a", ExpectedVersion::Exact(0), &e2),
        StreamAppend::new("b", ExpectedVersion::Any, &e3),
    ]));
    assert_eq!(observe(&store, &["a", "b"]), before);
    assert_usable(&store);
}

#[test]
fn a_part_without_events_is_invalid_input() {
    let (_dir, store) = open();
    let before = observe(&store, &["a", "b"]);
    let e = evs(1);
    let none: Vec<NewEvent> = Vec::new();
    assert_invalid(store.append_many(&[
        StreamAppend::new("a", ExpectedVersion::Any, &e),
        StreamAppend::new("b", ExpectedVersion::Any, &none),
    ]));
    assert_eq!(observe(&store, &["a", "b"]), before);
    assert_usable(&store);
}

#[test]
fn an_invalid_part_writes_nothing_for_the_valid_parts() {
    let (_dir, store) = open();
    let before = observe(&store, &["ok", ""]);
    let e = evs(1);
    let bad_type = vec![ev("", "x")];
    assert_invalid(store.append_many(&[
        StreamAppend::new("ok", ExpectedVersion::Any, &e),
        StreamAppend::new("", ExpectedVersion::Any, &e),
    ]));
    assert_invalid(store.append_many(&[
        StreamAppend::new("ok", ExpectedVersion::Any, &e),
        StreamAppend::new("other", ExpectedVersion::Any, &bad_type),
    ]));
    assert_eq!(observe(&store, &["ok", ""]), before);
    assert_usable(&store);
}

#[test]
fn readers_never_see_part_of_an_append_many() {
    let (_dir, store) = open();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for _ in 0..200 {
                let (a, b) = (evs(2), evs(3));
                store
                    .append_many(&[
                        StreamAppend::new("a", ExpectedVersion::Any, &a),
                        StreamAppend::new("b", ExpectedVersion::Any, &b),
                    ])
                    .unwrap();
            }
        })
    };
    let mut checks = 0;
    while !writer.is_finished() || checks == 0 {
        let head = store.head().as_u64();
        assert_eq!(head % 5, 0, "head {head} splits an append_many");
        let events = all(&store);
        assert_eq!(events.len() % 5, 0, "read_all saw {} events", events.len());
        for chunk in events.chunks(5) {
            let streams: Vec<&str> = chunk.iter().map(|e| e.stream.as_str()).collect();
            assert_eq!(streams, ["a", "a", "b", "b", "b"]);
        }
        checks += 1;
    }
    writer.join().unwrap();
    assert_eq!(store.head(), Position::from_u64(1000));
    assert_eq!(store.stream_version("a"), Some(399));
    assert_eq!(store.stream_version("b"), Some(599));
}
