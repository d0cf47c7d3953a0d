//! Creates a store, appends, reads, reopens, and prints what it did.
//!
//! Run with `cargo run --release --example quickstart [FOLDER]` (default: a fresh folder under the system's
//! temporary directory).

use std::time::Instant;

use annals::{ExpectedVersion, NewEvent, Position, Store, StreamAppend};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = match std::env::args().nth(1) {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join(format!("annals-quickstart-{}", std::process::id())),
    };
    println!("store folder: {}", dir.display());

    let store = Store::open(&dir)?;
    let head = store.head();
    println!("opened; head is {head}");

    // One account: open it, then deposit, each append checked against the version we last saw.
    let account = format!("account-{}", head.as_u64());
    let r = store.append(&account, ExpectedVersion::NoStream, &[NewEvent::new("Opened", "{\"owner\":\"ada\"}")])?;
    println!("appended Opened to {account}: version {}, position {}", r.last_version, r.position);
    let mut version = r.last_version;
    for amount in [10, 25, 7] {
        let e = NewEvent::new("Deposited", format!("{{\"amount\":{amount}}}"));
        let r = store.append(&account, ExpectedVersion::Exact(version), &[e])?;
        version = r.last_version;
    }
    println!("appended 3 deposits; {account} is at version {version}");

    // A stale expected version is refused.
    match store.append(&account, ExpectedVersion::Exact(0), &[NewEvent::new("Deposited", "{\"amount\":1}")]) {
        Err(annals::Error::WrongExpectedVersion { actual, .. }) => {
            println!("stale append refused: stream is at {actual:?}")
        }
        other => return Err(format!("expected a conflict, got {other:?}").into()),
    }

    // An atomic transfer across two streams.
    let out = [NewEvent::new("Withdrawn", "{\"amount\":5}")];
    let into = [NewEvent::new("Deposited", "{\"amount\":5}")];
    let savings = format!("savings-{}", head.as_u64());
    store.append_many(&[
        StreamAppend::new(&account, ExpectedVersion::Exact(version), &out),
        StreamAppend::new(&savings, ExpectedVersion::Any, &into),
    ])?;
    println!("transferred 5 from {account} to {savings} in one atomic append");

    // A bulk load, to show throughput.
    let started = Instant::now();
    let batch: Vec<NewEvent> = (0..100).map(|i| NewEvent::new("Ticked", vec![i as u8; 128])).collect();
    for _ in 0..100 {
        store.append("ticks", ExpectedVersion::Any, &batch)?;
    }
    let elapsed = started.elapsed();
    println!("appended 10,000 events in 100 durable appends in {:.1} ms", elapsed.as_secs_f64() * 1e3);

    println!("{account}:");
    for ev in store.read_stream(&account, 0)? {
        let ev = ev?;
        println!(
            "  v{} @{} {} {}",
            ev.version(),
            ev.position(),
            ev.event_type(),
            String::from_utf8_lossy(ev.payload())
        );
    }
    let started = Instant::now();
    let mut bytes = 0usize;
    let mut count = 0u64;
    for ev in store.read_all(Position::START) {
        bytes += ev?.payload().len();
        count += 1;
    }
    println!("read_all: {count} events, {bytes} payload bytes, in {:.2} ms", started.elapsed().as_secs_f64() * 1e3);
    let head = store.head();
    drop(store);

    let started = Instant::now();
    let store = Store::open(&dir)?;
    println!(
        "reopened in {:.2} ms: head {} (was {head}), {account} at version {:?}",
        started.elapsed().as_secs_f64() * 1e3,
        store.head(),
        store.stream_version(&account)
    );
    assert_eq!(store.head(), head);
    Ok(())
}
