//! The workloads W1-W8 of BENCHMARKS.md, each run against one peer in a fresh folder.
//!
//! Events are made before the timed loop where the workload is a load generator (W1-W4), and inside it where
//! making the event is part of the work (W5's command handler). Every timed read touches every payload.

use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use annals::Bytes;
use hdrhistogram::Histogram;
use uuid::Uuid;

use crate::peers::{self, Appended, Durability, Event, Expected, Kind, LoadRow, Peer, Res};

/// Bytes of every payload.
pub const PAYLOAD_BYTES: usize = 128;

pub struct Config {
    pub scale: f64,
    pub base: PathBuf,
    pub w8_large: bool,
    pub seed: u64,
}

impl Config {
    /// `n` scaled, at least 1.
    pub fn count(&self, n: u64) -> u64 {
        ((n as f64 * self.scale).round() as u64).max(1)
    }
}

/// The figures of one row of the table for one peer: (name, value), the first is the headline.
pub type Figures = Vec<(&'static str, f64)>;

pub struct Measured {
    pub row: &'static str,
    pub figures: Figures,
}

fn measured(row: &'static str, figures: Figures) -> Measured {
    Measured { row, figures }
}

/// A small, fast generator (SplitMix64): payload bytes and random stream choices.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// A fresh event: a new UUIDv7 and 128 random bytes (incompressible, so no peer gains from compression).
    pub fn event(&mut self) -> Event {
        let mut p = Vec::with_capacity(PAYLOAD_BYTES);
        for _ in 0..PAYLOAD_BYTES / 8 {
            p.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        Event { id: Uuid::now_v7(), payload: Bytes::from(p) }
    }
}

pub fn stream_names(n: u64) -> Vec<String> {
    (0..n).map(|i| format!("account-{i}")).collect()
}

fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is valid")
}

/// A percentile of a histogram of nanoseconds, in microseconds.
fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Writes back every dirty page of the machine (`sync(1)`) and pauses briefly, so a measurement does not pay
/// for the write-back of what came before it (a build, the previous peer's files and their deletion).
pub fn settle() {
    let _ = std::process::Command::new("sync").status();
    std::thread::sleep(Duration::from_millis(500));
}

fn fresh(cfg: &Config, name: &str) -> Res<tempfile::TempDir> {
    std::fs::create_dir_all(&cfg.base)?;
    Ok(tempfile::Builder::new().prefix(&format!("{name}-")).tempdir_in(&cfg.base)?)
}

fn per_s(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Total bytes of the files under `dir`.
pub fn disk_bytes(dir: &Path) -> Res<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        total += if m.is_dir() { disk_bytes(&e.path())? } else { m.len() };
    }
    Ok(total)
}

/// Copies the folder `from` into `to` (a new folder) and makes the copy durable, so opening it pays for no
/// write-back of the copy. The store may still be writing (annals' indexer renames its temporary files): a file
/// that is gone by the time it is copied is left out, as in a crash a moment before it was listed.
fn copy_durable(from: &Path, to: &Path) -> Res<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_durable(&e.path(), &target)?;
        } else {
            match std::fs::copy(e.path(), &target) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                r => r?,
            };
            std::fs::OpenOptions::new().read(true).write(true).open(&target)?.sync_all()?;
        }
    }
    std::fs::File::open(to)?.sync_all()?;
    Ok(())
}

/// `n` events for random streams of `streams`, made before timing.
fn prepared(rng: &mut Rng, n: u64, streams: u64) -> Vec<(u32, Event)> {
    (0..n).map(|_| (rng.below(streams) as u32, rng.event())).collect()
}

/// Per-append latencies (ns), and the first append's on its own: it pays for whatever a fresh store creates
/// lazily.
struct Latencies {
    all: Histogram<u64>,
    first_ns: u64,
}

fn first_ms(l: &Latencies) -> f64 {
    l.first_ns as f64 / 1e6
}

/// Appends each event alone with `Any`; returns the per-append latencies.
fn append_each(peer: &dyn Peer, names: &[String], work: &[(u32, Event)]) -> Res<Latencies> {
    let mut s = peer.session()?;
    let mut l = Latencies { all: histogram(), first_ns: 0 };
    for (i, (stream, e)) in work.iter().enumerate() {
        let t = Instant::now();
        let r = s.append(&names[*stream as usize], Expected::Any, std::slice::from_ref(e))?;
        let ns = t.elapsed().as_nanos() as u64;
        l.all.record(ns)?;
        if i == 0 {
            l.first_ns = ns;
        }
        if r == Appended::Conflict {
            return Err("a conflict with ExpectedVersion::Any".into());
        }
    }
    Ok(l)
}

const STREAMS: u64 = 10_000;

/// W1 durable-1: 1 thread, 20k single-event appends, random stream of 10,000, Any, Sync.
pub fn w1(kind: Kind, cfg: &Config) -> Res<Vec<Measured>> {
    let dir = fresh(cfg, &format!("w1-{}", kind.key()))?;
    let names = stream_names(STREAMS);
    let work = prepared(&mut Rng::new(cfg.seed), cfg.count(20_000), STREAMS);
    let peer = peers::open(kind, dir.path(), Durability::Sync)?;
    settle();
    let t = Instant::now();
    let h = append_each(&*peer, &names, &work)?;
    let d = t.elapsed();
    Ok(vec![measured(
        "W1",
        vec![
            ("events_per_s", per_s(work.len() as u64, d)),
            ("first_append_ms", first_ms(&h)),
            ("p50_us", us(&h.all, 0.5)),
            ("p99_us", us(&h.all, 0.99)),
            ("p999_us", us(&h.all, 0.999)),
        ],
    )])
}

/// W2 durable-16: 16 threads, each as W1.
pub fn w2(kind: Kind, cfg: &Config) -> Res<Vec<Measured>> {
    const THREADS: usize = 16;
    let dir = fresh(cfg, &format!("w2-{}", kind.key()))?;
    let names = stream_names(STREAMS);
    let work: Vec<Vec<(u32, Event)>> = (0..THREADS)
        .map(|t| prepared(&mut Rng::new(cfg.seed ^ ((t as u64 + 1) << 32)), cfg.count(20_000), STREAMS))
        .collect();
    let peer = peers::open(kind, dir.path(), Durability::Sync)?;
    settle();
    let barrier = Barrier::new(THREADS + 1);
    let (d, hists) = std::thread::scope(|scope| -> Res<(Duration, Vec<Histogram<u64>>)> {
        let handles: Vec<_> = work
            .iter()
            .map(|w| {
                let (peer, names, barrier) = (&*peer, &names, &barrier);
                scope.spawn(move || -> Res<Histogram<u64>> {
                    let session = peer.session();
                    barrier.wait();
                    let mut s = session?;
                    let mut h = histogram();
                    for (stream, e) in w {
                        let t = Instant::now();
                        s.append(&names[*stream as usize], Expected::Any, std::slice::from_ref(e))?;
                        h.record(t.elapsed().as_nanos() as u64)?;
                    }
                    Ok(h)
                })
            })
            .collect();
        barrier.wait();
        let t = Instant::now();
        let hists =
            handles.into_iter().map(|h| h.join().map_err(|_| "a writer thread panicked")?).collect::<Res<Vec<_>>>()?;
        Ok((t.elapsed(), hists))
    })?;
    let mut h = histogram();
    for x in &hists {
        h.add(x)?;
    }
    let n: u64 = work.iter().map(|w| w.len() as u64).sum();
    Ok(vec![measured("W2", vec![("events_per_s", per_s(n, d)), ("p99_us", us(&h, 0.99))])])
}

/// W3 durable-batch: 1 thread, 200 appends of 100 events each to one (random) stream, Sync.
pub fn w3(kind: Kind, cfg: &Config) -> Res<Vec<Measured>> {
    let dir = fresh(cfg, &format!("w3-{}", kind.key()))?;
    let names = stream_names(STREAMS);
    let mut rng = Rng::new(cfg.seed);
    let batches: Vec<(usize, Vec<Event>)> =
        (0..cfg.count(200)).map(|_| (rng.below(STREAMS) as usize, (0..100).map(|_| rng.event()).collect())).collect();
    let peer = peers::open(kind, dir.path(), Durability::Sync)?;
    let mut s = peer.session()?;
    let mut first_ns = 0;
    settle();
    let t = Instant::now();
    for (stream, events) in &batches {
        let ta = Instant::now();
        s.append(&names[*stream], Expected::Any, events)?;
        if first_ns == 0 {
            first_ns = ta.elapsed().as_nanos() as u64;
        }
    }
    let d = t.elapsed();
    let n = batches.len() as u64 * 100;
    // The same, without the first append (what a store that already exists sustains).
    let rest = (batches.len() > 1).then(|| per_s(n - 100, d.saturating_sub(Duration::from_nanos(first_ns))));
    Ok(vec![measured(
        "W3",
        vec![
            ("events_per_s", per_s(n, d)),
            ("events_per_s_after_first", rest.unwrap_or(f64::NAN)),
            ("first_append_ms", first_ns as f64 / 1e6),
        ],
    )])
}

/// W4 buffered: 1 thread, 1M single-event appends, Buffered, one sync at the end (timed).
pub fn w4(kind: Kind, cfg: &Config) -> Res<Vec<Measured>> {
    let dir = fresh(cfg, &format!("w4-{}", kind.key()))?;
    let names = stream_names(STREAMS);
    let work = prepared(&mut Rng::new(cfg.seed), cfg.count(1_000_000), STREAMS);
    let peer = peers::open(kind, dir.path(), Durability::Buffered)?;
    settle();
    let t = Instant::now();
    append_each(&*peer, &names, &work)?;
    peer.sync()?;
    let d = t.elapsed();
    drop(peer);
    let n = work.len() as u64;
    Ok(vec![measured(
        "W4",
        vec![
            ("events_per_s", per_s(n, d)),
            ("payload_mb_per_s", (n * PAYLOAD_BYTES as u64) as f64 / d.as_secs_f64() / 1e6),
            ("disk_mb", disk_bytes(dir.path())? as f64 / 1e6),
        ],
    )])
}

/// Loads `per_stream` events into each of `names`, interleaved (version 0 of every stream, then version 1,
/// ...), in appends of up to 1,000 events of distinct streams. Untimed.
fn load_interleaved(peer: &dyn Peer, names: &[String], per_stream: u64, rng: &mut Rng) -> Res<()> {
    let mut s = peer.session()?;
    for version in 0..per_stream {
        for chunk in names.chunks(1000) {
            let rows: Vec<LoadRow<'_>> =
                chunk.iter().map(|n| LoadRow { stream: n, version, event: rng.event() }).collect();
            s.bulk_load(&rows)?;
        }
    }
    Ok(())
}

/// W5 command: 8 threads; each command picks one of 10,000 accounts preloaded with 100 events, reads its
/// stream whole, appends 1 event with Exact(last), Sync; retries on a conflict.
pub fn w5(kind: Kind, cfg: &Config) -> Res<Vec<Measured>> {
    const THREADS: usize = 8;
    let dir = fresh(cfg, &format!("w5-{}", kind.key()))?;
    let accounts = cfg.count(STREAMS);
    let names = stream_names(accounts);
    let mut rng = Rng::new(cfg.seed);
    {
        // Preload (untimed) with Buffered appends of 10 accounts x 100 events, then a sync and a clean close.
        let peer = peers::open(kind, dir.path(), Durability::Buffered)?;
        let mut s = peer.session()?;
        for chunk in names.chunks(10) {
            let rows: Vec<LoadRow<'_>> = chunk
                .iter()
                .flat_map(|n| (0..100).map(move |version| (n, version)))
                .map(|(n, version)| LoadRow { stream: n, version, event: rng.event() })
                .collect();
            s.bulk_load(&rows)?;
        }
        peer.sync()?;
    }
    let peer = peers::open(kind, dir.path(), Durability::Sync)?;
    let commands = cfg.count(20_000).div_ceil(THREADS as u64);
    settle();
    let barrier = Barrier::new(THREADS + 1);
    type PerThread = (Histogram<u64>, u64);
    let (d, results) = std::thread::scope(|scope| -> Res<(Duration, Vec<PerThread>)> {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (peer, names, barrier) = (&*peer, &names, &barrier);
                let seed = cfg.seed ^ ((t as u64 + 1) << 40);
                scope.spawn(move || -> Res<(Histogram<u64>, u64)> {
                    let session = peer.session();
                    barrier.wait();
                    let mut s = session?;
                    let mut rng = Rng::new(seed);
                    let mut h = histogram();
                    let mut conflicts = 0u64;
                    for _ in 0..commands {
                        let t = Instant::now();
                        let stream = &names[rng.below(names.len() as u64) as usize];
                        loop {
                            let state = s.read_stream(stream)?;
                            let last = state.last_version.ok_or("a preloaded account has no events")?;
                            if state.events != last + 1 {
                                return Err(
                                    format!("{stream}: read {} events, last version {last}", state.events).into()
                                );
                            }
                            let e = rng.event();
                            match s.append(stream, Expected::Exact(last), std::slice::from_ref(&e))? {
                                Appended::Ok { .. } => break,
                                Appended::Conflict => conflicts += 1,
                            }
                        }
                        h.record(t.elapsed().as_nanos() as u64)?;
                    }
                    Ok((h, conflicts))
                })
            })
            .collect();
        barrier.wait();
        let t = Instant::now();
        let results =
            handles.into_iter().map(|h| h.join().map_err(|_| "a command thread panicked")?).collect::<Res<Vec<_>>>()?;
        Ok((t.elapsed(), results))
    })?;
    let mut h = histogram();
    let mut conflicts = 0;
    for (x, c) in &results {
        h.add(x)?;
        conflicts += c;
    }
    Ok(vec![measured(
        "W5",
        vec![
            ("commands_per_s", per_s(commands * THREADS as u64, d)),
            ("conflicts", conflicts as f64),
            ("p99_us", us(&h, 0.99)),
        ],
    )])
}

/// Which of the workloads on the read store to run.
#[derive(Clone, Copy, Default)]
pub struct ReadSet {
    pub w6: bool,
    pub w7: bool,
    pub w8: bool,
}

/// W6, W7 and W8 on one store of 1M events over 10,000 streams (100 each, interleaved), loaded once:
/// - W8 crash: a copy of the folder taken while the loaded store is still open (no clean close), opened;
/// - W8 clean: the store closed cleanly (handle dropped), then opened again;
/// - W6 read-stream: 10,000 random streams read whole from that reopened store;
/// - W7 scan-all: `read_all` from the start, touching every payload.
pub fn read_store(kind: Kind, cfg: &Config, want: ReadSet) -> Res<Vec<Measured>> {
    let streams = cfg.count(STREAMS);
    let names = stream_names(streams);
    let per_stream = 100;
    let dir = fresh(cfg, &format!("w6-{}", kind.key()))?;
    let crash = fresh(cfg, &format!("w8-crash-{}", kind.key()))?;
    let mut rng = Rng::new(cfg.seed);
    let mut out = Vec::new();
    let peer = peers::open(kind, dir.path(), Durability::Buffered)?;
    load_interleaved(&*peer, &names, per_stream, &mut rng)?;
    peer.sync()?;
    // Let an LSM finish its flushes and compactions: reads then see the store as it settles in use.
    peer.quiesce()?;
    if want.w8 {
        copy_durable(dir.path(), &crash.path().join("store"))?;
    }
    drop(peer);

    settle();
    let t = Instant::now();
    let peer = peers::open(kind, dir.path(), Durability::Sync)?;
    let clean_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut s = peer.session()?;
    if want.w6 {
        let reads = cfg.count(STREAMS);
        let mut h = histogram();
        let mut events = 0;
        let t = Instant::now();
        for _ in 0..reads {
            let stream = &names[rng.below(streams) as usize];
            let ts = Instant::now();
            let r = s.read_stream(stream)?;
            h.record(ts.elapsed().as_nanos() as u64)?;
            if r.events != per_stream {
                return Err(format!("{stream}: read {} events, expected {per_stream}", r.events).into());
            }
            events += r.events;
        }
        let d = t.elapsed();
        out.push(measured("W6", vec![("events_per_s", per_s(events, d)), ("p99_us", us(&h, 0.99))]));
    }
    if want.w7 {
        let t = Instant::now();
        let r = s.scan_all()?;
        let d = t.elapsed();
        if r.events != streams * per_stream {
            return Err(format!("read_all returned {} events, expected {}", r.events, streams * per_stream).into());
        }
        out.push(measured(
            "W7",
            vec![
                ("events_per_s", per_s(r.events, d)),
                ("payload_gb_per_s", (r.events * PAYLOAD_BYTES as u64) as f64 / d.as_secs_f64() / 1e9),
            ],
        ));
    }
    drop(s);
    drop(peer);
    if want.w8 {
        out.push(measured("W8 clean", vec![("ms", clean_ms)]));
        settle();
        let t = Instant::now();
        let peer = peers::open(kind, &crash.path().join("store"), Durability::Sync)?;
        let crash_ms = t.elapsed().as_secs_f64() * 1e3;
        check_head(&*peer, &names, per_stream)?;
        drop(peer);
        out.push(measured("W8 crash", vec![("ms", crash_ms)]));
    }
    Ok(out)
}

/// After an open, the last stream holds all its events (recovery lost nothing acknowledged and synced).
fn check_head(peer: &dyn Peer, names: &[String], per_stream: u64) -> Res<()> {
    let last = names.last().ok_or("no streams")?;
    let r = peer.session()?.read_stream(last)?;
    if r.events != per_stream {
        return Err(format!("after reopening, {last} has {} events, expected {per_stream}", r.events).into());
    }
    Ok(())
}

/// W8 at 10M events over 1M streams (10 each, interleaved): open after a clean close and after a crash.
pub fn open_large(kind: Kind, cfg: &Config) -> Res<Vec<Measured>> {
    let streams = cfg.count(1_000_000);
    let names = stream_names(streams);
    let per_stream = 10;
    let dir = fresh(cfg, &format!("w8-large-{}", kind.key()))?;
    let crash = fresh(cfg, &format!("w8-large-crash-{}", kind.key()))?;
    let mut rng = Rng::new(cfg.seed);
    let peer = peers::open(kind, dir.path(), Durability::Buffered)?;
    let t = Instant::now();
    load_interleaved(&*peer, &names, per_stream, &mut rng)?;
    peer.sync()?;
    eprintln!("    loaded {} events in {:.1} s", streams * per_stream, t.elapsed().as_secs_f64());
    peer.quiesce()?;
    copy_durable(dir.path(), &crash.path().join("store"))?;
    drop(peer);
    settle();
    let t = Instant::now();
    let peer = peers::open(kind, dir.path(), Durability::Sync)?;
    let clean_ms = t.elapsed().as_secs_f64() * 1e3;
    check_head(&*peer, &names, per_stream)?;
    drop(peer);
    drop(dir);
    settle();
    let t = Instant::now();
    let peer = peers::open(kind, &crash.path().join("store"), Durability::Sync)?;
    let crash_ms = t.elapsed().as_secs_f64() * 1e3;
    check_head(&*peer, &names, per_stream)?;
    drop(peer);
    Ok(vec![measured("W8 clean 10M", vec![("ms", clean_ms)]), measured("W8 crash 10M", vec![("ms", crash_ms)])])
}
