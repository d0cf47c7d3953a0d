//! Async appends under a real executor (tokio, multi-threaded): many tasks append concurrently, each future
//! completes once its events are durable, and no runtime thread blocks on a sync.

use annals::{ExpectedVersion, NewEvent, Position, Store, StreamAppend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_append_async_and_every_result_is_durable_and_visible() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut tasks = Vec::new();
    for t in 0..32u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let stream = format!("task-{t}");
            let mut last = None;
            for i in 0..20u64 {
                let expected = match last {
                    None => ExpectedVersion::NoStream,
                    Some(v) => ExpectedVersion::Exact(v),
                };
                let e = NewEvent::new("Ticked", i.to_le_bytes().to_vec());
                let r = store.append_async(&stream, expected, &[e]).await.unwrap();
                assert_eq!(r.first_version, i);
                assert!(store.head().as_u64() > r.position.as_u64(), "acknowledged means visible");
                last = Some(r.last_version);
            }
            let other = [NewEvent::new("Paired", "x")];
            let mine = [NewEvent::new("Paired", "y")];
            let rs = store
                .append_many_async(&[
                    StreamAppend::new("pairs", ExpectedVersion::Any, &other),
                    StreamAppend::new(&stream, ExpectedVersion::Exact(19), &mine),
                ])
                .await
                .unwrap();
            assert_eq!(rs[1].last_version, 20);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.head().as_u64(), 32 * 22);
    let events: Vec<_> = store.read_all(Position::START).collect::<Result<_, _>>().unwrap();
    assert_eq!(events.len(), 32 * 22);
    drop(events);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.head().as_u64(), 32 * 22);
    for t in 0..32 {
        assert_eq!(store.stream_version(&format!("task-{t}")), Some(20));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_conflict_is_reported_by_the_future() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append_async("s", ExpectedVersion::NoStream, &[NewEvent::new("A", "")]).await.unwrap();
    let err = store.append_async("s", ExpectedVersion::NoStream, &[NewEvent::new("A", "")]).await.unwrap_err();
    assert!(matches!(err, annals::Error::WrongExpectedVersion { actual: Some(0), .. }), "{err:?}");
}
