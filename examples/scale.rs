//! The scale run of the stream index (docs/PERFORMANCE.md, "The stream index at scale"): builds a large store,
//! then measures open time after a clean close and after a SIGKILL during writes, the heap memory an open store
//! holds, and stream reads. Not part of CI; `scripts/scale` runs it at 10M events / 1M streams and 100M / 10M.
//!
//! ```text
//! cargo run --release --example scale -- build DIR EVENTS STREAMS   # 128-byte payloads, plus 1,000 streams of 100
//! cargo run --release --example scale -- open DIR [RUNS]            # clean-close open + first read, heap
//! cargo run --release --example scale -- kill DIR [RUNS]            # SIGKILL a writer, time the open after it
//! cargo run --release --example scale -- burst DIR                  # add 1,000 streams of 100 consecutive events
//! cargo run --release --example scale -- read DIR [READS]           # 100-event stream reads, warm cache
//! cargo run --release --example scale -- upgrade DIR                # open once; if the index is of an older
//!                                                                   # version, time its rebuild from the log
//! ```
//!
//! Heap memory is counted by a global allocator that tracks live bytes: the figure is what the open store holds
//! on the heap, not the page cache of its mapped files.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use annals::{Durability, ExpectedVersion, NewEvent, Options, Store};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is updated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: as the caller's contract for `GlobalAlloc::alloc`.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as the caller's contract for `GlobalAlloc::dealloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as the caller's contract for `GlobalAlloc::realloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const LONG_STREAMS: u64 = 1_000;
const LONG_EVENTS: u64 = 100;

fn stream_name(i: u64) -> String {
    format!("account-{i:08}")
}

fn long_name(i: u64) -> String {
    format!("long-{i:04}")
}

fn burst_name(i: u64) -> String {
    format!("burst-{i:04}")
}

/// 1,000 streams of 100 events each, each written in one run of 100 appends (the way an import, or a busy
/// aggregate, writes): their events sit together in the log, unlike the `long-` streams spread over all of it.
fn burst(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let store = Options::new().durability(Durability::Buffered).open(dir)?;
    let payload = vec![5u8; 128];
    for i in 0..LONG_STREAMS {
        for _ in 0..LONG_EVENTS {
            store.append(&burst_name(i), ExpectedVersion::Any, &[NewEvent::new("Deposited", payload.clone())])?;
        }
    }
    store.sync()?;
    println!("added {LONG_STREAMS} streams of {LONG_EVENTS} consecutive events");
    Ok(())
}

/// splitmix64, for a reproducible choice of streams.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().ok_or("missing argument: see the module docs");
    match args.first().map(String::as_str) {
        Some("build") => build(Path::new(&arg(1)?), arg(2)?.parse()?, arg(3)?.parse()?),
        Some("open") => open(Path::new(&arg(1)?), args.get(2).map_or(Ok(5), |s| s.parse())?),
        Some("kill") => kill(Path::new(&arg(1)?), args.get(2).map_or(Ok(5), |s| s.parse())?),
        Some("burst") => burst(Path::new(&arg(1)?)),
        Some("upgrade") => upgrade(Path::new(&arg(1)?)),
        Some("read") => read(Path::new(&arg(1)?), args.get(2).map_or(Ok(100_000), |s| s.parse())?),
        Some("write-until-killed") => write_until_killed(Path::new(&arg(1)?), arg(2)?.parse()?),
        _ => Err("usage: scale build|open|kill|burst|read|upgrade DIR ...".into()),
    }
}

/// `events` events over `streams` streams, round robin (so each stream's events spread over the whole log), plus
/// 1,000 streams of 100 events each interleaved through it; 128-byte payloads; Buffered with a sync at the end.
fn build(dir: &Path, events: u64, streams: u64) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let store = Options::new().durability(Durability::Buffered).open(dir)?;
    let payload = vec![7u8; 128];
    let long_every = events / (LONG_STREAMS * LONG_EVENTS);
    let mut long_written = 0u64;
    let mut batch = Vec::with_capacity(1);
    for i in 0..events {
        batch.clear();
        batch.push(NewEvent::new("Deposited", payload.clone()));
        store.append(&stream_name(i % streams), ExpectedVersion::Any, &batch)?;
        if long_every > 0 && i % long_every == 0 && long_written < LONG_STREAMS * LONG_EVENTS {
            let name = long_name(long_written % LONG_STREAMS);
            store.append(&name, ExpectedVersion::Any, &batch)?;
            long_written += 1;
        }
        if i % 10_000_000 == 0 && i > 0 {
            eprintln!("{i} events, {:.0} s", started.elapsed().as_secs_f64());
        }
    }
    store.sync()?;
    let stats = store.stats();
    drop(store);
    println!(
        "built {} events ({} streams + {LONG_STREAMS} of {LONG_EVENTS}) in {:.1} s: {} segments, {} index chunks",
        stats.head,
        streams,
        started.elapsed().as_secs_f64(),
        stats.segments,
        stats.index_chunks
    );
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Opens the store once and closes it. A stream directory of another version than this build's (or none) makes
/// the open rebuild the index from the log (docs/FORMAT.md, "Versioning"): that open is timed, with the close
/// that indexes what the rebuild left in the memtable.
fn upgrade(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let version = std::fs::read(dir.join("streams.dir"))
        .ok()
        .and_then(|b| Some(u32::from_le_bytes(b.get(12..16)?.try_into().ok()?)));
    let current = annals::format::index::DIRECTORY_VERSION;
    let t = Instant::now();
    let store = Store::open(dir)?;
    let opened = t.elapsed();
    let stats = store.stats();
    drop(store);
    let closed = t.elapsed();
    match version {
        Some(v) if v == current => println!("index of version {v}: nothing to upgrade (open {opened:.2?})"),
        _ => println!(
            "index rebuilt from the log (directory version {version:?} -> {current}): open {:.1} s, then close {:.1} s; {} segments, {} index files",
            opened.as_secs_f64(),
            (closed - opened).as_secs_f64(),
            stats.segments,
            stats.index_chunks
        ),
    }
    Ok(())
}

/// Open after a clean close, plus the first stream read; the heap the open store holds.
fn open(dir: &Path, runs: usize) -> Result<(), Box<dyn std::error::Error>> {
    let mut times = Vec::new();
    let mut heap = 0;
    for _ in 0..runs {
        let before = LIVE.load(Ordering::Relaxed);
        let t = Instant::now();
        let store = Store::open(dir)?;
        let first = store.read_stream(&stream_name(12_345), 0)?.next().transpose()?;
        let took = t.elapsed();
        assert!(first.is_some(), "the store has stream {}", stream_name(12_345));
        heap = LIVE.load(Ordering::Relaxed) - before;
        times.push(took.as_secs_f64() * 1e3);
        let stats = store.stats();
        assert_eq!(stats.index_memtable_events, 0, "a clean close leaves nothing to replay");
        drop(store);
    }
    println!(
        "open after a clean close + first read: median {:.2} ms of {runs} (all: {:?}); heap held by the open store: {:.1} MiB",
        median(times.clone()),
        times.iter().map(|t| format!("{t:.2}")).collect::<Vec<_>>(),
        heap as f64 / (1 << 20) as f64
    );
    Ok(())
}

/// Child process: appends Sync events to random streams until killed, printing each acknowledged position.
fn write_until_killed(dir: &Path, streams: u64) -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::open(dir)?;
    let payload = vec![9u8; 128];
    let mut rng = Rng(std::process::id() as u64);
    let mut threads = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let payload = payload.clone();
        let seed = rng.next();
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng(seed);
            loop {
                let e = NewEvent::new("Withdrawn", payload.clone());
                if store.append(&stream_name(rng.next() % streams), ExpectedVersion::Any, &[e]).is_err() {
                    return;
                }
            }
        }));
    }
    println!("writing");
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// SIGKILL a writer after a few seconds of Sync appends, then time the open (which reads the log past the last
/// index checkpoint) plus a first read.
fn kill(dir: &Path, runs: usize) -> Result<(), Box<dyn std::error::Error>> {
    let streams = {
        let store = Store::open(dir)?;
        let n = store.stats().head;
        n.clamp(1, 1_000_000)
    };
    let exe = std::env::current_exe()?;
    let mut times = Vec::new();
    let mut replayed = Vec::new();
    for run in 0..runs {
        let mut child = std::process::Command::new(&exe)
            .args(["write-until-killed", &dir.to_string_lossy(), &streams.to_string()])
            .stdout(std::process::Stdio::null())
            .spawn()?;
        std::thread::sleep(Duration::from_millis(2_000 + 700 * run as u64));
        child.kill()?;
        child.wait()?;
        let t = Instant::now();
        let store = Store::open(dir)?;
        let first = store.read_stream(&stream_name(12_345), 0)?.next().transpose()?;
        let took = t.elapsed();
        assert!(first.is_some());
        times.push(took.as_secs_f64() * 1e3);
        replayed.push(store.stats().index_memtable_events);
        drop(store);
    }
    println!(
        "open after SIGKILL during Sync appends + first read: median {:.2} ms of {runs} (all: {:?}; events re-read from the log: {:?})",
        median(times.clone()),
        times.iter().map(|t| format!("{t:.2}")).collect::<Vec<_>>(),
        replayed
    );
    Ok(())
}

/// Reads of whole 100-event streams, page cache warm: latency percentiles, for the streams spread over the whole
/// log and (if `burst` was run) for those written in one run.
fn read(dir: &Path, reads: usize) -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::open(dir)?;
    read_kind(&store, reads, "spread over the whole log", long_name)?;
    if store.stream_version(&burst_name(0)).is_some() {
        read_kind(&store, reads, "written in one run", burst_name)?;
    }
    Ok(())
}

fn read_kind(
    store: &Store,
    reads: usize,
    kind: &str,
    name_of: fn(u64) -> String,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = Rng(42);
    // Warm the cache: every stream of the kind once.
    for i in 0..LONG_STREAMS {
        let n = store.read_stream(&name_of(i), 0)?.count();
        assert_eq!(n as u64, LONG_EVENTS, "stream {} has {n} events", name_of(i));
    }
    let mut ns = Vec::with_capacity(reads);
    let mut lookup_ns = 0u128;
    let mut bytes = 0usize;
    for _ in 0..reads {
        let name = name_of(rng.next() % LONG_STREAMS);
        let t = Instant::now();
        let events = store.read_stream(&name, 0)?;
        lookup_ns += t.elapsed().as_nanos();
        for e in events {
            bytes += e?.payload().len();
        }
        ns.push(t.elapsed().as_nanos() as u64);
    }
    ns.sort_unstable();
    let pct = |p: f64| ns[((ns.len() as f64 * p) as usize).min(ns.len() - 1)] as f64 / 1e3;
    println!(
        "read a {LONG_EVENTS}-event stream {kind} ({reads} reads, warm): p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us; of which the index lookup (read_stream) {:.1} us on average ({bytes} payload bytes)",
        pct(0.5),
        pct(0.99),
        pct(0.999),
        lookup_ns as f64 / reads as f64 / 1e3,
    );
    Ok(())
}
