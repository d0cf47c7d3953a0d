//! The async `Stream` form of a subscription (feature `async`): under tokio's multi-threaded runtime while
//! another task appends, and under a minimal hand-written executor (it is executor-agnostic).
#![cfg(feature = "async")]

mod subscription_support;

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use annals::{Durability, ExpectedVersion, NewEvent, Position, SubscriptionStream};
use futures_core::Stream;
use subscription_support::open;

async fn next(stream: &mut Pin<&mut SubscriptionStream>) -> Option<annals::Result<annals::RecordedEvent>> {
    poll_fn(|cx| stream.as_mut().poll_next(cx)).await
}

#[test]
fn a_stream_under_tokio_gets_every_event_in_order() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), Durability::Sync);
    store.append("s", ExpectedVersion::Any, &[NewEvent::new("E", "0")]).expect("append");
    let positions = rt.block_on(async {
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 1..200 {
                    store
                        .append_async("s", ExpectedVersion::Any, &[NewEvent::new("E", format!("{i}"))])
                        .await
                        .expect("append");
                }
            })
        };
        let mut stream = pin!(store.subscribe_all(Position::START).into_stream());
        let mut positions = Vec::new();
        while positions.len() < 200 {
            let e = tokio::time::timeout(std::time::Duration::from_secs(60), next(&mut stream))
                .await
                .expect("an event in time")
                .expect("the stream goes on")
                .expect("no error");
            positions.push(e.position().as_u64());
        }
        writer.await.expect("writer");
        positions
    });
    assert_eq!(positions, (0..200).collect::<Vec<_>>());
}

struct Unpark(std::thread::Thread);
impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn block_on<F: Future>(f: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(&waker)) {
            return v;
        }
        std::thread::park();
    }
}

#[test]
fn a_stream_under_a_minimal_executor_is_woken_by_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), Durability::Buffered);
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 0..300 {
                store.append("s", ExpectedVersion::Any, &[NewEvent::new("E", format!("{i}"))]).expect("append");
                if i % 50 == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        })
    };
    let positions = block_on(async {
        let mut stream = pin!(store.subscribe_all(Position::START).into_stream());
        let mut positions = Vec::new();
        while positions.len() < 300 {
            positions.push(next(&mut stream).await.expect("goes on").expect("no error").position().as_u64());
        }
        positions
    });
    writer.join().expect("writer");
    assert_eq!(positions, (0..300).collect::<Vec<_>>());
}
