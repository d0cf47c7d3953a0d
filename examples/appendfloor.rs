//! The floor under W4 (1M single-event `Buffered` appends from one thread, one sync at the end): the work every
//! such append must do, with nothing of annals around it. For each event it looks the stream up in a hash map
//! (the expected-version check needs the stream's last version), encodes the event's 240-byte frame with its
//! CRC-32 straight into a writable shared mapping of a pre-zeroed file (the bytes must be in the page cache when
//! the append returns: a `Buffered` append survives a crash of the process), and records the frame's location
//! for the stream (a read must find it). The mapping is a window moved forward as the loop goes, 1 MiB as
//! annals' writer's by default. A background thread starts the write-back of every 8 MiB written, and the run
//! ends with one `fdatasync` per file. No locks, no segment rolls, no index files, no checks of the caller's
//! input.
//!
//! ```text
//! cargo run --release --example appendfloor -- [DIR] [EVENTS] [WINDOW_MIB]
//! ```
//!
//! `DIR` is where the scratch files go (default: the system temp folder; use the disk you benchmark on);
//! `EVENTS` defaults to 1,000,000, W4's count; `WINDOW_MIB` is the window's size (default 1; 64 maps each file
//! whole). It runs five times and prints each run and the median, for the whole loop and for the loop with one
//! part left out (the CRC, the stream map, the write-back while the loop runs), so that the share of each is
//! visible. Compare with `annals bench --workload W4` in the same hour.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use annals::format::frame::{self, EventFields, FrameHasher};

/// Each scratch file, as large as annals' largest segment.
const FILE_BYTES: u64 = 64 << 20;
const PAYLOAD_BYTES: usize = 128;
const STREAMS: usize = 10_000;
const RUNS: usize = 5;
/// How much is written between two background syncs (annals' checkpoint interval).
const SYNC_EVERY_BYTES: usize = 8 << 20;

/// What a run leaves out.
#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Whole,
    NoCrc,
    NoStreamMap,
    /// The whole append, with all the write-back left to the final syncs.
    NoWriteBack,
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().map_or_else(std::env::temp_dir, Into::into);
    let events: usize = match args.next() {
        Some(n) => n.parse().map_err(|_| std::io::Error::other(format!("EVENTS must be a number, got {n:?}")))?,
        None => 1_000_000,
    };
    if events == 0 {
        return Err(std::io::Error::other("EVENTS must be at least 1"));
    }
    let window_mib: usize = match args.next() {
        Some(n) => n.parse().map_err(|_| std::io::Error::other(format!("WINDOW_MIB must be a number, got {n:?}")))?,
        None => 1,
    };
    if !(1..=FILE_BYTES as usize >> 20).contains(&window_mib) {
        return Err(std::io::Error::other(format!("WINDOW_MIB must be 1 to {}", FILE_BYTES >> 20)));
    }
    let window_bytes = window_mib << 20;
    let streams: Vec<String> = (0..STREAMS).map(|i| format!("account-{i}")).collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let input: Vec<(usize, [u8; 16], Vec<u8>)> = (0..events)
        .map(|_| {
            let stream = (next() % STREAMS as u64) as usize;
            let id = u128::from(next()) << 64 | u128::from(next());
            let payload = (0..PAYLOAD_BYTES).map(|_| next() as u8).collect();
            (stream, id.to_le_bytes(), payload)
        })
        .collect();
    println!(
        "appendfloor: {events} single-event appends of {PAYLOAD_BYTES}-byte payloads over {STREAMS} streams, \
         {window_mib} MiB windows"
    );
    for variant in [Variant::Whole, Variant::NoCrc, Variant::NoStreamMap, Variant::NoWriteBack] {
        let mut loops = Vec::new();
        let mut totals = Vec::new();
        for run in 0..RUNS {
            let path = dir.join(format!("annals-appendfloor-{}-{run}", std::process::id()));
            let result = measure(&path, &streams, &input, variant, window_bytes);
            for f in 0..files_for(events) {
                let _ = std::fs::remove_file(file_path(&path, f));
            }
            let (loop_secs, total_secs) = result?;
            loops.push(events as f64 / loop_secs);
            totals.push(events as f64 / total_secs);
        }
        let name = match variant {
            Variant::Whole => "whole append",
            Variant::NoCrc => "without the CRC",
            Variant::NoStreamMap => "without the stream map",
            Variant::NoWriteBack => "write-back only at end",
        };
        let show = |v: &[f64]| v.iter().map(|x| format!("{:.2}M", x / 1e6)).collect::<Vec<_>>().join(" / ");
        println!(
            "{name:<24} loop {:>6.2}M ev/s ({:.0} ns/event), with the final syncs {:>6.2}M ev/s; runs: {} (with syncs {})",
            median(&mut loops.clone()) / 1e6,
            1e9 / median(&mut loops.clone()),
            median(&mut totals.clone()) / 1e6,
            show(&loops),
            show(&totals),
        );
    }
    Ok(())
}

/// How many files the run needs: the frames of the longest stream name, plus one file for the room a file's end
/// leaves when the next frame does not fit.
fn files_for(events: usize) -> usize {
    let longest = format!("account-{}", STREAMS - 1).len();
    let bytes = events as u64 * frame::event_frame_bytes(longest, 9, 0, PAYLOAD_BYTES) as u64;
    bytes.div_ceil(FILE_BYTES - 4096) as usize + 1
}

fn file_path(base: &std::path::Path, i: usize) -> std::path::PathBuf {
    base.with_extension(format!("{i}.tmp"))
}

/// One run: returns the seconds of the append loop, and of the loop plus the final syncs.
fn measure(
    base: &std::path::Path,
    streams: &[String],
    input: &[(usize, [u8; 16], Vec<u8>)],
    variant: Variant,
    window_bytes: usize,
) -> std::io::Result<(f64, f64)> {
    // Pre-zeroed and synced files, as annals prepares its segments ahead of the appends (untimed).
    let zeros = vec![0u8; 1 << 20];
    let mut files = Vec::new();
    for i in 0..files_for(input.len()) {
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(file_path(base, i))?;
        for at in (0..FILE_BYTES).step_by(zeros.len()) {
            file.write_all_at(&zeros, at)?;
        }
        file.sync_all()?;
        files.push(std::sync::Arc::new(file));
    }
    // A background thread starts the write-back of each 8 MiB the loop has written (`sync_file_range`, which
    // neither waits nor flushes the device's cache), so that the final syncs are left with little to write.
    let (to_syncer, syncs) = std::sync::mpsc::channel::<(usize, usize)>();
    let syncer = {
        let files = files.clone();
        std::thread::spawn(move || -> std::io::Result<()> {
            for (f, end) in syncs {
                let start = end.saturating_sub(SYNC_EVERY_BYTES);
                write_back(&files[f], start as u64, (end - start) as u64)?;
            }
            Ok(())
        })
    };
    let hasher = FrameHasher::new(0x5eed);
    // Per stream: last version, and the locations of its events (what an index must keep to serve reads).
    let mut by_stream: HashMap<&str, (u64, Vec<u64>), foldhash::fast::RandomState> = HashMap::default();
    let mut no_map_versions = vec![0u64; streams.len()];
    let mut no_map_locations: Vec<u64> = Vec::with_capacity(input.len());
    let (mut file, mut offset) = (0usize, 4096usize);
    let mut window: Option<(usize, usize, memmap2::MmapMut)> = None;
    let started = Instant::now();
    for (position, (stream, id, payload)) in input.iter().enumerate() {
        let name = streams[*stream].as_str();
        let len = frame::event_frame_bytes(name.len(), 9, 0, payload.len());
        if variant != Variant::NoWriteBack && (offset + len) / SYNC_EVERY_BYTES != offset / SYNC_EVERY_BYTES {
            let _ = to_syncer.send((file, offset / SYNC_EVERY_BYTES * SYNC_EVERY_BYTES));
        }
        if offset + len > FILE_BYTES as usize {
            (file, offset) = (file + 1, 4096);
        }
        let location = (file as u64) << 32 | offset as u64;
        let version = if variant == Variant::NoStreamMap {
            let v = &mut no_map_versions[*stream];
            *v += 1;
            no_map_locations.push(location);
            *v - 1
        } else {
            let entry = by_stream.entry(name).or_default();
            entry.0 += 1;
            entry.1.push(location);
            entry.0 - 1
        };
        let timestamp_us = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
        let fields = EventFields {
            position: position as u64,
            batch_end: position as u64 + 1,
            durable: 0,
            version,
            timestamp_us,
            id: *id,
            stream: name.as_bytes(),
            event_type: b"Deposited",
            metadata: &[],
            payload,
        };
        if !window.as_ref().is_some_and(|w| w.0 == file && w.1 <= offset && offset + len <= w.1 + w.2.len()) {
            // As annals' writer: a writable mapping of the window around the tail, moved forward (the pages left
            // behind are unmapped, so their write-back has no mapping to write-protect).
            drop(window.take());
            let at = offset / window_bytes * window_bytes;
            let span = ((offset + len - at).div_ceil(window_bytes) * window_bytes).min(FILE_BYTES as usize - at);
            // SAFETY: the file was created by this run and nothing else maps or truncates it while the map lives.
            let map = unsafe { memmap2::MmapOptions::new().offset(at as u64).len(span).map_mut(&*files[file])? };
            window = Some((file, at, map));
        }
        let Some((_, at, map)) = window.as_mut() else { unreachable!("mapped above") };
        let out = &mut map[offset - *at..offset - *at + len];
        if variant == Variant::NoCrc {
            encode_without_crc(out, &fields);
        } else {
            frame::encode_event_with(out, &hasher, &fields);
        }
        offset += len;
    }
    drop(window);
    let looped = started.elapsed().as_secs_f64();
    drop(to_syncer);
    syncer.join().map_err(|_| std::io::Error::other("the sync thread panicked"))??;
    for f in &files {
        f.sync_data()?;
    }
    let total = started.elapsed().as_secs_f64();
    std::hint::black_box((&by_stream, &no_map_locations));
    Ok((looped, total))
}

/// The frame's bytes as `frame::encode_event_with` lays them out (docs/FORMAT.md), with the checksum left zero:
/// the same stores, without the CRC.
fn encode_without_crc(out: &mut [u8], e: &EventFields<'_>) {
    let names = frame::HEADER_BYTES + e.stream.len() + e.event_type.len();
    let payload_at = names.next_multiple_of(16);
    out[..4].fill(0);
    let len = out.len() as u32;
    out[4..8].copy_from_slice(&len.to_le_bytes());
    out[8..12].copy_from_slice(&[1, e.stream.len() as u8, e.event_type.len() as u8, 0]);
    out[12..16].copy_from_slice(&0u32.to_le_bytes());
    out[16..20].copy_from_slice(&(e.payload.len() as u32).to_le_bytes());
    out[20..24].fill(0);
    for (at, v) in [(24, e.position), (32, e.batch_end), (40, e.durable), (48, e.version), (56, e.timestamp_us)] {
        out[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
    out[64..80].copy_from_slice(&e.id);
    out[80..80 + e.stream.len()].copy_from_slice(e.stream);
    out[80 + e.stream.len()..names].copy_from_slice(e.event_type);
    out[names..payload_at].fill(0);
    out[payload_at..payload_at + e.payload.len()].copy_from_slice(e.payload);
    out[payload_at + e.payload.len()..].fill(0);
}

/// Starts the write-back of `len` bytes of `file` from `start`, without waiting for it.
fn write_back(file: &std::fs::File, start: u64, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain system call on a file descriptor this function borrows for its duration.
    let r = unsafe { libc::sync_file_range(file.as_raw_fd(), start as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
