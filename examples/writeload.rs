//! A quick write-path load generator for development: W1-W4 shapes of BENCHMARKS.md against annals alone.
//! The peer comparison lives in `bench/`. Usage: cargo run --release --example writeload -- [W1|W2|W3|W4] [threads]

use std::time::Instant;

use annals::{Durability, ExpectedVersion, NewEvent, Options};

fn main() {
    let w = std::env::args().nth(1).unwrap_or_else(|| "W1".into());
    let threads: usize = std::env::args().nth(2).and_then(|t| t.parse().ok()).unwrap_or(16);
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    let payload = vec![7u8; 128];
    let (durability, n_threads, appends, batch) = match w.as_str() {
        "W1" => (Durability::Sync, 1, 20_000, 1),
        "W2" => (Durability::Sync, threads, 20_000, 1),
        "W3" => (Durability::Sync, 1, 200, 100),
        "W4" => {
            (Durability::Buffered, 1, std::env::var("W4_N").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000_000), 1)
        }
        _ => panic!("unknown workload"),
    };
    let store = Options::new().durability(durability).open(dir.path()).unwrap();
    let started = Instant::now();
    let hs: Vec<_> = (0..n_threads)
        .map(|t| {
            let store = store.clone();
            let payload = payload.clone();
            std::thread::spawn(move || {
                let mut x = t as u64 * 7919 + 1;
                for _ in 0..appends {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let stream = if batch == 1 { format!("account-{}", x % 10_000) } else { "account-1".to_string() };
                    let events: Vec<NewEvent> =
                        (0..batch).map(|_| NewEvent::new("Deposited", payload.clone())).collect();
                    store.append(&stream, ExpectedVersion::Any, &events).unwrap();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let appended = started.elapsed().as_secs_f64();
    store.sync().unwrap();
    let secs = started.elapsed().as_secs_f64();
    let stats = store.stats();
    eprintln!(
        "appends took {appended:.3} s, the final sync {:.3} s; {} syncs for {} appends ({:.1} per sync), average sync {} us",
        secs - appended,
        stats.syncs,
        stats.synced_appends,
        stats.synced_appends as f64 / stats.syncs.max(1) as f64,
        stats.sync_average_us
    );
    let events = (n_threads * appends * batch) as f64;
    println!("{w}: {:.0} events/s ({} threads, {:.3} s)", events / secs, n_threads, secs);
}
