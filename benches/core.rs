//! Micro-benchmarks of annals' inner paths: frame encoding and checking (through the doc-hidden
//! `annals::format` module), buffered appends, stream reads and the `read_all` scan (through the public API).
//!
//! `cargo bench --bench core` runs them all in a couple of minutes. The machines are shared and noisy: read
//! medians and compare within one run; the side-by-side comparison with SQLite and fjall is `scripts/bench-peers`.
//!
//! Every event looks like the workloads' (BENCHMARKS.md): stream `account-{n}`, type `Deposited`, a 128-byte
//! payload, so one frame is 240 bytes.

use std::hint::black_box;
use std::time::Duration;

use annals::format::frame::{self, EventFields};
use annals::{Durability, ExpectedVersion, NewEvent, Options, Position, Store};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const PAYLOAD_BYTES: usize = 128;
const SALT: u64 = 0x0123_4567_89ab_cdef;

fn payload(seed: u64) -> Vec<u8> {
    (0..PAYLOAD_BYTES as u64).map(|i| (seed.wrapping_mul(31).wrapping_add(i * 7) % 251) as u8).collect()
}

fn events(n: usize) -> Vec<NewEvent> {
    (0..n).map(|i| NewEvent::new("Deposited", payload(i as u64))).collect()
}

/// Reads every byte of a payload, as the peer workloads do.
#[inline]
fn touch(p: &[u8]) -> u64 {
    p.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).fold(0, u64::wrapping_add)
}

fn fields<'a>(stream: &'a [u8], payload: &'a [u8], position: u64, batch_end: u64) -> EventFields<'a> {
    EventFields {
        position,
        batch_end,
        durable: 0,
        version: position,
        timestamp_us: 1_700_000_000_000_000 + position,
        id: [0x5a; 16],
        stream,
        event_type: b"Deposited",
        metadata: b"",
        payload,
    }
}

/// Encoding a 100-event batch into a reused buffer, as the writer does for one append.
fn encode_batch(c: &mut Criterion) {
    let payloads: Vec<Vec<u8>> = (0..100).map(payload).collect();
    let mut out = Vec::with_capacity(100 * 256);
    let mut g = c.benchmark_group("format");
    g.throughput(Throughput::Elements(100));
    g.bench_function("encode_event x100 (240-byte frames)", |b| {
        b.iter(|| {
            out.clear();
            for (i, p) in payloads.iter().enumerate() {
                frame::encode_event(&mut out, SALT, &fields(b"account-1234", p, i as u64, 100));
            }
            black_box(out.len())
        })
    });
    g.finish();
}

/// Decoding one 240-byte frame: the bounds checks and the CRC32 over its bytes (what every read pays).
fn decode_frame(c: &mut Criterion) {
    let mut bytes = Vec::new();
    let p = payload(1);
    frame::encode_event(&mut bytes, SALT, &fields(b"account-1234", &p, 0, 1));
    assert_eq!(bytes.len(), 240, "the workloads' frame is 240 bytes");
    let mut g = c.benchmark_group("format");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("decode 240-byte frame (crc32)", |b| {
        b.iter(|| frame::decode(black_box(&bytes), SALT).expect("valid frame"))
    });
    g.finish();
}

/// Buffered appends of 1 and of 100 events to random streams of 10,000 (Any). The store grows during the
/// measurement, so a new segment is created (and zero-filled) every 64 MiB: that cost is included, amortized.
fn append_buffered(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let store = Options::new().durability(Durability::Buffered).open(dir.path()).expect("open");
    let streams: Vec<String> = (0..10_000).map(|i| format!("account-{i}")).collect();
    let mut next = 0usize;
    let mut g = c.benchmark_group("append (Buffered)");
    for n in [1usize, 100] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("{n} event(s)"), |b| {
            b.iter_batched(
                || events(n),
                |evs| {
                    next = (next + 7919) % streams.len();
                    store.append(&streams[next], ExpectedVersion::Any, &evs).expect("append")
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
    drop(store);
}

/// A store of `streams` x `per_stream` events, interleaved (version 0 of every stream, then version 1, ...).
fn interleaved_store(dir: &std::path::Path, streams: usize, per_stream: usize) -> Store {
    let store = Options::new().durability(Durability::Buffered).open(dir).expect("open");
    let names: Vec<String> = (0..streams).map(|i| format!("account-{i}")).collect();
    for _ in 0..per_stream {
        for chunk in names.chunks(1000) {
            let evs = events(chunk.len());
            let parts: Vec<annals::StreamAppend<'_>> = chunk
                .iter()
                .zip(&evs)
                .map(|(s, e)| annals::StreamAppend::new(s, ExpectedVersion::Any, std::slice::from_ref(e)))
                .collect();
            store.append_many(&parts).expect("load");
        }
    }
    store.sync().expect("sync");
    store
}

/// Reading one 100-event stream whole (its events interleaved with 999 other streams'), touching every payload.
fn read_stream(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let store = interleaved_store(dir.path(), 1000, 100);
    let mut i = 0usize;
    let mut g = c.benchmark_group("read");
    g.throughput(Throughput::Elements(100));
    g.bench_function("read_stream 100 events", |b| {
        b.iter(|| {
            i = (i + 389) % 1000;
            let mut sum = 0u64;
            let mut n = 0;
            for ev in store.read_stream(&format!("account-{i}"), 0).expect("read") {
                sum = sum.wrapping_add(touch(ev.expect("event").payload()));
                n += 1;
            }
            assert_eq!(n, 100);
            black_box(sum)
        })
    });
    g.finish();
}

/// `read_all` over 100k events from the start, touching every payload.
fn scan_all(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let store = interleaved_store(dir.path(), 1000, 100);
    let mut g = c.benchmark_group("read");
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("read_all 100k events", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            let mut n = 0;
            for ev in store.read_all(Position::START) {
                sum = sum.wrapping_add(touch(ev.expect("event").payload()));
                n += 1;
            }
            assert_eq!(n, 100_000);
            black_box(sum)
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = encode_batch, decode_frame, append_buffered, read_stream, scan_all
}
criterion_main!(benches);
