//! A conflict reports a version that readers can see: right after `WrongExpectedVersion { actual }`,
//! `stream_version` and `read_stream` show at least `actual`, even when the conflicting append was still
//! waiting for its group commit's sync. Without that, read-then-append loops spin until the sync completes.

use std::sync::{Arc, Barrier};

use annals::{Error, ExpectedVersion, NewEvent, Store};

#[test]
fn after_a_conflict_the_reported_version_is_visible() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let streams: Vec<String> = (0..4).map(|i| format!("account-{i}")).collect();
    for s in &streams {
        store.append(s, ExpectedVersion::NoStream, &[NewEvent::new("Opened", "")]).unwrap();
    }
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let (store, streams, barrier) = (store.clone(), streams.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut conflicts = 0u64;
                for i in 0..150usize {
                    let s = &streams[(t + i) % streams.len()];
                    loop {
                        let last = store.read_stream(s, 0).unwrap().map(|e| e.unwrap().version()).last().unwrap();
                        match store.append(s, ExpectedVersion::Exact(last), &[NewEvent::new("Deposited", "1")]) {
                            Ok(_) => break,
                            Err(Error::WrongExpectedVersion { actual: Some(actual), .. }) => {
                                conflicts += 1;
                                let seen = store.stream_version(s).unwrap();
                                assert!(seen >= actual, "conflict says {actual}, readers see {seen}");
                                let read = store.read_stream(s, 0).unwrap().count() as u64;
                                assert!(read > actual, "conflict says {actual}, read_stream returns {read} events");
                            }
                            Err(e) => panic!("unexpected error {e}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    let conflicts: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    println!("{conflicts} conflicts, each visible when reported");
    let total: u64 = streams.iter().map(|s| store.stream_version(s).unwrap() + 1).sum();
    assert_eq!(total, 4 + 8 * 150, "every command appended exactly one event");
}
