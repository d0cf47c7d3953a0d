//! `annals`: the command-line tool. Subcommands:
//!
//! - `annals bench [--workload W1,...] [--scale F] [--dir PATH] [--json]`: runs the workloads of
//!   BENCHMARKS.md against annals alone and prints throughput and latency percentiles (the peer comparison
//!   with SQLite and fjall is `scripts/bench-peers`).
//!
//! Build with `cargo build --release --features cli`; run `annals help` for the list.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use annals::{Durability, Error, ExpectedVersion, NewEvent, Options, Position, Store};
use hdrhistogram::Histogram;

const USAGE: &str = "usage: annals <command> [options]

commands:
  bench [--workload W1,W2,...] [--scale F] [--streams N] [--dir PATH] [--json]
        Run BENCHMARKS.md workloads (W1-W8) against annals: events/s and latency percentiles.
        --scale multiplies event counts (default 1.0); --streams sets how many distinct streams
        W1/W2 append to (default 10000; that many are created and indexed first); --dir is where
        temporary stores go (default: the system temp folder; use a folder on the disk you want
        to measure).
  help  Show this text.";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("bench") => bench(&args[1..]),
        Some("help") | Some("--help") | Some("-h") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}\n\n{USAGE}")),
    };
    if let Err(e) = result {
        eprintln!("annals: {e}");
        std::process::exit(2);
    }
}

struct BenchArgs {
    workloads: Vec<String>,
    scale: f64,
    streams: u64,
    dir: Option<PathBuf>,
    json: bool,
}

fn parse_bench(args: &[String]) -> Result<BenchArgs, String> {
    let mut out = BenchArgs { workloads: vec![], scale: 1.0, streams: 10_000, dir: None, json: false };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--workload" | "--workloads" => {
                out.workloads = value(a)?.split(',').map(|w| w.trim().to_uppercase()).collect();
            }
            "--scale" => {
                out.scale = value(a)?.parse().map_err(|e| format!("--scale: {e}"))?;
                if !(out.scale > 0.0 && out.scale <= 1000.0) {
                    return Err("--scale must be in (0, 1000]".into());
                }
            }
            "--streams" => {
                out.streams = value(a)?.parse().map_err(|e| format!("--streams: {e}"))?;
                if !(1..=100_000_000).contains(&out.streams) {
                    return Err("--streams must be 1 to 100000000".into());
                }
            }
            "--dir" => out.dir = Some(PathBuf::from(value(a)?)),
            "--json" => out.json = true,
            other => return Err(format!("unknown option {other:?}\n\n{USAGE}")),
        }
    }
    if out.workloads.is_empty() {
        out.workloads = ["W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8"].map(String::from).to_vec();
    }
    for w in &out.workloads {
        if !matches!(w.as_str(), "W1" | "W2" | "W3" | "W4" | "W5" | "W6" | "W7" | "W8") {
            return Err(format!("unknown workload {w:?} (W1-W8)"));
        }
    }
    Ok(out)
}

/// One measured workload: its headline figure and the rest, in order.
struct Report {
    workload: String,
    figures: Vec<(&'static str, f64)>,
}

fn bench(args: &[String]) -> Result<(), String> {
    let args = parse_bench(args)?;
    let base = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir(),
    };
    std::fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
    let mut reports = Vec::new();
    for w in &args.workloads {
        let dir = tempfile::Builder::new().prefix("annals-bench-").tempdir_in(&base).map_err(|e| e.to_string())?;
        let figures = run_workload(w, dir.path(), args.scale, args.streams).map_err(|e| format!("{w}: {e}"))?;
        let report = Report { workload: w.clone(), figures };
        if !args.json {
            print_report(&report);
        }
        reports.push(report);
    }
    if args.json {
        print_json(&reports);
    }
    Ok(())
}

fn print_report(r: &Report) {
    let figures: Vec<String> = r.figures.iter().map(|(k, v)| format!("{k} {}", human(*v))).collect();
    println!("{:<3} {}", r.workload, figures.join(", "));
}

fn human(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn print_json(reports: &[Report]) {
    let rows: Vec<String> = reports
        .iter()
        .map(|r| {
            let fields: Vec<String> = r.figures.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
            format!("  {{\"workload\": \"{}\", {}}}", r.workload, fields.join(", "))
        })
        .collect();
    println!("[\n{}\n]", rows.join(",\n"));
}

const PAYLOAD_BYTES: usize = 128;

/// SplitMix64: random stream choices and incompressible payloads.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }

    fn event(&mut self) -> NewEvent {
        let payload: Vec<u8> = (0..PAYLOAD_BYTES / 8).flat_map(|_| self.next().to_le_bytes()).collect();
        NewEvent::new("Deposited", payload)
    }
}

fn scaled(n: u64, scale: f64) -> u64 {
    ((n as f64 * scale).round() as u64).max(1)
}

/// W7's loop: every event from the start, every payload read. Returns (events, payload bytes). Not inlined, so
/// that a profiler can select it (`valgrind --tool=callgrind --toggle-collect='annals::scan_all'`).
#[inline(never)]
fn scan_all(store: &Store) -> annals::Result<(u64, u64)> {
    let (mut events, mut bytes, mut sum) = (0u64, 0u64, 0u64);
    for e in store.read_all(Position::START) {
        let e = e?;
        let p = e.payload();
        sum = sum.wrapping_add(touch(p));
        bytes += p.len() as u64;
        events += 1;
    }
    std::hint::black_box(sum);
    Ok((events, bytes))
}

/// Reads every byte of a payload (a wrapping sum of its 8-byte words, then the bytes left), the same work per
/// event as the peer comparison in `bench/` does, so the figures of both tools compare.
#[inline]
fn touch(payload: &[u8]) -> u64 {
    let mut words = payload.chunks_exact(8);
    let mut sum = (&mut words).map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes"))).fold(0, u64::wrapping_add);
    for &b in words.remainder() {
        sum = sum.wrapping_add(b as u64);
    }
    sum
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// The calling thread's CPU time so far, user and system, in seconds, and how often it gave up the CPU to wait
/// (voluntary context switches). Linux only (`RUSAGE_THREAD`); `None` elsewhere or if the call fails.
fn thread_cpu() -> Option<(f64, f64, u64)> {
    #[cfg(target_os = "linux")]
    {
        let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: `u` is a valid, writable `rusage` for the call to fill; it is read only if the call succeeded.
        let u = unsafe {
            if libc::getrusage(libc::RUSAGE_THREAD, u.as_mut_ptr()) != 0 {
                return None;
            }
            u.assume_init()
        };
        let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        Some((secs(u.ru_utime), secs(u.ru_stime), u.ru_nvcsw as u64))
    }
    #[cfg(not(target_os = "linux"))]
    None
}

fn latency_figures(h: &Histogram<u64>) -> [(&'static str, f64); 3] {
    [
        ("p50_us", h.value_at_quantile(0.50) as f64),
        ("p99_us", h.value_at_quantile(0.99) as f64),
        ("p999_us", h.value_at_quantile(0.999) as f64),
    ]
}

fn run_workload(w: &str, dir: &Path, scale: f64, streams: u64) -> annals::Result<Vec<(&'static str, f64)>> {
    match w {
        "W1" => durable_appends(dir, 1, scaled(20_000, scale), streams),
        "W2" => durable_appends(dir, 16, scaled(20_000, scale), streams),
        "W3" => {
            let store = Options::new().durability(Durability::Sync).open(dir)?;
            let appends = scaled(200, scale);
            let mut rng = Rng(3);
            let batches: Vec<Vec<NewEvent>> = (0..appends).map(|_| (0..100).map(|_| rng.event()).collect()).collect();
            let mut h = histogram();
            let cpu_before = thread_cpu();
            let started = Instant::now();
            for b in &batches {
                let t = Instant::now();
                store.append("account-0", ExpectedVersion::Any, b)?;
                h.saturating_record(t.elapsed().as_micros() as u64);
            }
            let secs = started.elapsed().as_secs_f64();
            let cpu_after = thread_cpu();
            let mut figures = vec![("events_per_s", (appends * 100) as f64 / secs)];
            figures.extend(latency_figures(&h));
            figures.push(("max_us", h.max() as f64));
            // The appending thread's CPU per append (encoding, indexing, and the kernel's side of its write and
            // sync), user and system together: over a run this short the kernel splits the two by timer ticks.
            // The rest of each append is the device. A mean well above `p50_us` is the log's growth: the appends
            // that meet a segment roll or the zero-filling of the next segment file (docs/PERFORMANCE.md).
            if let (Some(b), Some(a)) = (cpu_before, cpu_after) {
                figures.push(("cpu_us", (a.0 + a.1 - b.0 - b.1) * 1e6 / appends as f64));
            }
            Ok(figures)
        }
        "W4" => {
            let store = Options::new().durability(Durability::Buffered).open(dir)?;
            let n = scaled(1_000_000, scale);
            let mut rng = Rng(4);
            let streams = stream_names(10_000);
            let events: Vec<(usize, NewEvent)> = (0..n).map(|_| (rng.below(10_000) as usize, rng.event())).collect();
            let cpu_before = thread_cpu();
            let started = Instant::now();
            for (s, e) in &events {
                store.append(&streams[*s], ExpectedVersion::Any, std::slice::from_ref(e))?;
            }
            let appended = started.elapsed().as_secs_f64();
            let cpu_after = thread_cpu();
            store.sync()?;
            let secs = started.elapsed().as_secs_f64();
            let mut figures = vec![
                ("events_per_s", n as f64 / secs),
                ("payload_mb_per_s", (n as usize * PAYLOAD_BYTES) as f64 / secs / 1e6),
                ("append_ns", appended * 1e9 / n as f64),
                ("final_sync_ms", (secs - appended) * 1e3),
            ];
            // Where the appending thread's time went: its own code, the kernel on its behalf (page faults, the
            // syncs of segment rolls), and the rest of `append_ns` off the CPU (waiting, or runnable behind the
            // store's other threads on a busy machine). Noise in `append_ns` is mostly the last part.
            if let (Some(b), Some(a)) = (cpu_before, cpu_after) {
                figures.push(("user_ns", (a.0 - b.0) * 1e9 / n as f64));
                figures.push(("sys_ns", (a.1 - b.1) * 1e9 / n as f64));
                figures.push(("waits", (a.2 - b.2) as f64));
            }
            Ok(figures)
        }
        "W5" => commands(dir, scale),
        "W6" => {
            let (store, streams) = preload(dir, scale)?;
            let reads = scaled(10_000, scale).min(streams.len() as u64);
            let mut rng = Rng(6);
            let mut h = histogram();
            let mut events = 0u64;
            let mut sum = 0u64;
            let started = Instant::now();
            for _ in 0..reads {
                let s = &streams[rng.below(streams.len() as u64) as usize];
                let t = Instant::now();
                for e in store.read_stream(s, 0)? {
                    sum = sum.wrapping_add(touch(e?.payload()));
                    events += 1;
                }
                h.saturating_record(t.elapsed().as_micros() as u64);
            }
            let secs = started.elapsed().as_secs_f64();
            std::hint::black_box(sum);
            Ok(vec![("events_per_s", events as f64 / secs), ("p99_us_per_stream", h.value_at_quantile(0.99) as f64)])
        }
        "W7" => {
            let (store, _) = preload(dir, scale)?;
            let started = Instant::now();
            let (events, bytes) = scan_all(&store)?;
            let secs = started.elapsed().as_secs_f64();
            Ok(vec![("events_per_s", events as f64 / secs), ("payload_gb_per_s", bytes as f64 / secs / 1e9)])
        }
        "W8" => {
            let (store, streams) = preload(dir, scale)?;
            drop(store);
            let started = Instant::now();
            let store = Store::open(dir)?;
            let first = store.read_stream(&streams[0], 0)?.next().transpose()?;
            let clean_ms = started.elapsed().as_secs_f64() * 1e3;
            assert!(first.is_some());
            Ok(vec![("open_after_clean_close_ms", clean_ms)])
        }
        _ => unreachable!("checked by the parser"),
    }
}

fn stream_names(n: u64) -> Vec<String> {
    (0..n).map(|i| format!("account-{i}")).collect()
}

/// W1 and W2: `threads` threads, each `n` single-event Sync appends to a random one of `streams` streams, which
/// exist beforehand (one event each, written and indexed before the timed part).
fn durable_appends(dir: &Path, threads: usize, n: u64, streams: u64) -> annals::Result<Vec<(&'static str, f64)>> {
    let names = stream_names(streams);
    {
        let store = Options::new().durability(Durability::Buffered).open(dir)?;
        let mut rng = Rng(99);
        for s in &names {
            store.append(s, ExpectedVersion::NoStream, &[rng.event()])?;
        }
    }
    drop(names);
    let store = Options::new().durability(Durability::Sync).open(dir)?;
    // The clock starts when every thread has made its events and waits at the barrier (as in `bench/`).
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || -> annals::Result<Histogram<u64>> {
                let mut rng = Rng(t as u64 + 1);
                let events: Vec<(u64, NewEvent)> = (0..n).map(|_| (rng.below(streams), rng.event())).collect();
                let mut h = histogram();
                // Each append's stream name is made into this buffer, as an application makes it from its
                // command, rather than looked up in a table of every name: at a million streams such a table
                // takes over 50 MB, and its cache misses (about 0.2 us per append) would be charged to the store
                // in the comparison with 10,000 streams (docs/PERFORMANCE.md, "The stream index at scale").
                let mut name = String::with_capacity(32);
                barrier.wait();
                for (s, e) in &events {
                    name.clear();
                    write!(name, "account-{s}").expect("writing to a String cannot fail");
                    let t = Instant::now();
                    store.append(&name, ExpectedVersion::Any, std::slice::from_ref(e))?;
                    h.saturating_record(t.elapsed().as_micros() as u64);
                }
                Ok(h)
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    let mut all = histogram();
    for h in handles {
        all.add(h.join().expect("a bench thread panicked")?).expect("same bounds");
    }
    let secs = started.elapsed().as_secs_f64();
    let mut figures = vec![("events_per_s", (threads as u64 * n) as f64 / secs)];
    figures.extend(latency_figures(&all));
    figures.extend(group_figures(&store, secs));
    Ok(figures)
}

/// How the group commit went over a timed part of `secs` seconds: appends per sync, and the cycle (one sync
/// plus the time until the next one starts) against the sync's own recent average.
fn group_figures(store: &Store, secs: f64) -> [(&'static str, f64); 3] {
    let stats = store.stats();
    let syncs = stats.syncs.max(1) as f64;
    [
        ("appends_per_sync", stats.synced_appends as f64 / syncs),
        ("cycle_us", secs * 1e6 / syncs),
        ("sync_us", stats.sync_average_us as f64),
    ]
}

/// The W6/W7/W8 store: 1M events over 10,000 streams (100 each, interleaved), Buffered, then synced.
fn preload(dir: &Path, scale: f64) -> annals::Result<(Store, Vec<String>)> {
    let streams = stream_names(scaled(10_000, scale));
    let store = Options::new().durability(Durability::Buffered).open(dir)?;
    let mut rng = Rng(7);
    for _ in 0..100 {
        for s in &streams {
            store.append(s, ExpectedVersion::Any, &[rng.event()])?;
        }
    }
    store.sync()?;
    drop(store);
    Ok((Store::open(dir)?, streams))
}

/// W5's accounts: 10,000 streams (scaled) of 100 events, each account's events appended at once, so that each
/// stream lies in one run of the log, as `bench/` preloads them. Buffered, then closed (which syncs).
fn preload_accounts(dir: &Path, scale: f64) -> annals::Result<Vec<String>> {
    let streams = stream_names(scaled(10_000, scale));
    let store = Options::new().durability(Durability::Buffered).open(dir)?;
    let mut rng = Rng(5);
    for s in &streams {
        let events: Vec<NewEvent> = (0..100).map(|_| rng.event()).collect();
        store.append(s, ExpectedVersion::NoStream, &events)?;
    }
    Ok(streams)
}

/// W5: 8 threads handle commands against 10,000 accounts preloaded with 100 events each: read the stream,
/// append one event expecting the version read, retry on conflict.
fn commands(dir: &Path, scale: f64) -> annals::Result<Vec<(&'static str, f64)>> {
    let streams = preload_accounts(dir, scale)?;
    let store = Options::new().durability(Durability::Sync).open(dir)?;
    let streams = Arc::new(streams);
    let per_thread = scaled(2_500, scale);
    // The clock starts when every thread is ready (as in `bench/`).
    let barrier = Arc::new(Barrier::new(8 + 1));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let (store, streams, barrier) = (store.clone(), streams.clone(), barrier.clone());
            std::thread::spawn(move || -> annals::Result<(Histogram<u64>, u64)> {
                let mut rng = Rng(100 + t);
                let mut h = histogram();
                let mut conflicts = 0u64;
                barrier.wait();
                for _ in 0..per_thread {
                    let s = &streams[rng.below(streams.len() as u64) as usize];
                    let t = Instant::now();
                    loop {
                        let mut balance = 0u64;
                        let mut last = None;
                        for e in store.read_stream(s, 0)? {
                            let e = e?;
                            balance = balance.wrapping_add(e.payload()[0] as u64);
                            last = Some(e.version());
                        }
                        let expected = last.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                        std::hint::black_box(balance);
                        match store.append(s, expected, &[rng.event()]) {
                            Ok(_) => break,
                            Err(Error::WrongExpectedVersion { .. }) => conflicts += 1,
                            Err(e) => return Err(e),
                        }
                    }
                    h.saturating_record(t.elapsed().as_micros() as u64);
                }
                Ok((h, conflicts))
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    let mut all = histogram();
    let mut conflicts = 0;
    for h in handles {
        let (h, c) = h.join().expect("a bench thread panicked")?;
        all.add(h).expect("same bounds");
        conflicts += c;
    }
    let secs = started.elapsed().as_secs_f64();
    let mut figures = vec![
        ("commands_per_s", (8 * per_thread) as f64 / secs),
        ("conflicts", conflicts as f64),
        ("p99_us", all.value_at_quantile(0.99) as f64),
    ];
    figures.extend(group_figures(&store, secs));
    Ok(figures)
}
