//! Many threads appending at once, to distinct and shared streams, with conflicts: no event is lost,
//! duplicated or reordered; positions are gapless and in commit order; every acknowledged append is there
//! after a reopen.

use std::collections::HashMap;
use std::sync::{Arc, Barrier};

use annals::{Durability, Error, ExpectedVersion, NewEvent, Options, Position, Store, StreamAppend};

const THREADS: usize = 8;
const APPENDS_PER_THREAD: usize = 150;

/// What one thread saw acknowledged: (stream, first_version, last_version, position, payloads).
type Ack = (String, u64, u64, u64, Vec<Vec<u8>>);

fn run(durability: Durability) {
    run_with(Options::new().durability(durability));
}

fn run_with(options: Options) {
    let dir = tempfile::tempdir().unwrap();
    let store = options.clone().segment_size(1 << 20).open(dir.path()).unwrap();
    let (acks, conflicts) = on_threads(&store, |store, t| {
        let mut acks: Vec<Ack> = Vec::new();
        let mut conflicts = 0u64;
        for i in 0..APPENDS_PER_THREAD {
            let payload = format!("t{t}-i{i}").into_bytes();
            match i % 3 {
                // A stream of its own, with exact versions.
                0 => {
                    let stream = format!("own-{t}");
                    let expected = match store.stream_version(&stream) {
                        Some(v) => ExpectedVersion::Exact(v),
                        None => ExpectedVersion::NoStream,
                    };
                    let r = store.append(&stream, expected, &[NewEvent::new("Own", payload.clone())]).unwrap();
                    acks.push((stream, r.first_version, r.last_version, r.position.as_u64(), vec![payload]));
                }
                // A shared stream, optimistic: conflicts are expected and retried.
                1 => loop {
                    let expected = match store.stream_version("shared") {
                        Some(v) => ExpectedVersion::Exact(v),
                        None => ExpectedVersion::NoStream,
                    };
                    match store.append("shared", expected, &[NewEvent::new("Shared", payload.clone())]) {
                        Ok(r) => {
                            acks.push((
                                "shared".into(),
                                r.first_version,
                                r.last_version,
                                r.position.as_u64(),
                                vec![payload],
                            ));
                            break;
                        }
                        Err(Error::WrongExpectedVersion { .. }) => conflicts += 1,
                        Err(e) => panic!("unexpected error {e}"),
                    }
                },
                // An atomic pair across a shared stream and its own stream.
                _ => {
                    let a = [NewEvent::new("PairA", payload.clone()), NewEvent::new("PairA", payload.clone())];
                    let b = [NewEvent::new("PairB", payload.clone())];
                    let own = format!("pair-{t}");
                    let rs = store
                        .append_many(&[
                            StreamAppend::new("pairs", ExpectedVersion::Any, &a),
                            StreamAppend::new(&own, ExpectedVersion::Any, &b),
                        ])
                        .unwrap();
                    assert_eq!(
                        rs[0].position.as_u64() + 1,
                        rs[1].position.as_u64(),
                        "one append, consecutive positions"
                    );
                    acks.push((
                        "pairs".into(),
                        rs[0].first_version,
                        rs[0].last_version,
                        rs[0].position.as_u64(),
                        vec![payload.clone(), payload.clone()],
                    ));
                    acks.push((own, rs[1].first_version, rs[1].last_version, rs[1].position.as_u64(), vec![payload]));
                }
            }
        }
        (acks, conflicts)
    });
    println!("{options:?}: {} acknowledged appends, {conflicts} conflicts retried", acks.len());
    check_and_reopen(store, dir.path(), &acks);
}

/// Runs `work(store, t)` on `THREADS` threads started together; returns every thread's acknowledgements and
/// the conflicts they retried.
fn on_threads(store: &Store, work: fn(&Store, u64) -> (Vec<Ack>, u64)) -> (Vec<Ack>, u64) {
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS as u64)
        .map(|t| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                work(&store, t)
            })
        })
        .collect();
    let mut acks = Vec::new();
    let mut conflicts = 0;
    for h in handles {
        let (a, c) = h.join().unwrap();
        acks.extend(a);
        conflicts += c;
    }
    (acks, conflicts)
}

/// [`check`], then again after a reopen.
fn check_and_reopen(store: Store, dir: &std::path::Path, acks: &[Ack]) {
    check(&store, acks);
    drop(store);
    let store = Store::open(dir).unwrap();
    check(&store, acks);
}

fn check(store: &Store, acks: &[Ack]) {
    // Gapless positions, in commit order, each event exactly once.
    let all: Vec<_> = store.read_all(Position::START).collect::<Result<_, _>>().unwrap();
    let total: usize = acks.iter().map(|a| a.4.len()).sum();
    assert_eq!(all.len(), total, "every acknowledged event, and nothing else");
    assert_eq!(store.head().as_u64(), total as u64);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.position().as_u64(), i as u64);
    }
    // Each stream's versions are gapless and in position order.
    let mut next_version: HashMap<&str, u64> = HashMap::new();
    for e in &all {
        let v = next_version.entry(e.stream()).or_insert(0);
        assert_eq!(e.version(), *v, "stream {} out of order at position {}", e.stream(), e.position().as_u64());
        *v += 1;
    }
    // Every acknowledgement points at its events.
    for (stream, first, last, position, payloads) in acks {
        assert_eq!(last - first + 1, payloads.len() as u64);
        let events: Vec<_> =
            store.read_stream(stream, *first).unwrap().take(payloads.len()).collect::<Result<_, _>>().unwrap();
        assert_eq!(events.len(), payloads.len());
        for (e, p) in events.iter().zip(payloads) {
            assert_eq!(e.payload(), &p[..]);
        }
        assert_eq!(events.last().unwrap().position().as_u64(), *position);
        assert_eq!(events.last().unwrap().version(), *last);
    }
}

#[test]
fn concurrent_sync_appends_lose_nothing_and_keep_order() {
    run(Durability::Sync);
}

/// Blocked appenders and gathering leaders sleep at once instead of yielding first: the other way to wait.
#[test]
fn concurrent_sync_appends_that_sleep_without_spinning_lose_nothing_and_keep_order() {
    run_with(Options::new().durability(Durability::Sync).spin_wait(false));
}

#[test]
fn concurrent_buffered_appends_lose_nothing_and_keep_order() {
    run(Durability::Buffered);
}

#[test]
fn async_appends_complete_under_a_plain_executor_and_many_threads() {
    use std::future::Future;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark()
        }
    }
    fn block_on<F: Future>(f: F) -> F::Output {
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut f = std::pin::pin!(f);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(&waker)) {
                return v;
            }
            std::thread::park();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..100u64 {
                    let stream = format!("async-{t}");
                    let r = block_on(store.append_async(
                        &stream,
                        ExpectedVersion::Any,
                        &[NewEvent::new("E", i.to_le_bytes().to_vec())],
                    ))
                    .unwrap();
                    assert_eq!(r.last_version, i);
                    // Acknowledged means visible to readers.
                    assert!(store.head().as_u64() > r.position.as_u64());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(store.head().as_u64(), 400);
}

/// Conflicting appends to streams that keep leaving the memtables: with checkpoints every few KiB, most lookups
/// go to the stream directory, and a contended appender looks its stream up before the writer lock and confirms
/// under it (the directory hint). Every exact-version append that succeeds must be the only one at its version,
/// however the index changed in between, and every conflict must be real.
#[test]
fn exact_version_appends_stay_exact_while_the_index_checkpoints() {
    const STREAMS: u64 = 40;
    const APPENDS: u64 = 1_500;
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new()
        .durability(Durability::Buffered)
        .segment_size(1 << 20)
        .index_checkpoint_bytes(4 << 10)
        .open(dir.path())
        .unwrap();
    let (acks, conflicts) = on_threads(&store, |store, t| {
        let mut acks: Vec<Ack> = Vec::new();
        let mut conflicts = 0u64;
        for i in 0..APPENDS {
            let stream = format!("hot-{}", (i * 7 + t * 13) % STREAMS);
            let payload = format!("t{t}-i{i}").into_bytes();
            loop {
                let expected = match store.stream_version(&stream) {
                    Some(v) => ExpectedVersion::Exact(v),
                    None => ExpectedVersion::NoStream,
                };
                match store.append(&stream, expected, &[NewEvent::new("Hot", payload.clone())]) {
                    Ok(r) => {
                        acks.push((
                            stream.clone(),
                            r.first_version,
                            r.last_version,
                            r.position.as_u64(),
                            vec![payload],
                        ));
                        break;
                    }
                    Err(Error::WrongExpectedVersion { actual, .. }) => {
                        assert_ne!(
                            actual.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact),
                            expected,
                            "a conflict reports the version that conflicts"
                        );
                        conflicts += 1;
                    }
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
        }
        (acks, conflicts)
    });
    println!("{} acknowledged appends, {conflicts} conflicts retried", acks.len());
    assert!(store.stats().index_chunks > 10, "the index checkpointed while the appends ran");
    check_and_reopen(store, dir.path(), &acks);
}
