//! Corruption injected into acknowledged data that something later vouches for, on the simulated disk, over
//! the workloads of the crash tests (single and multi-event appends, `append_many`, both durability modes,
//! segment rolls, clean reopens) which `recovery_corruption.rs` (one stream, real files) does not build.
//!
//! Each case runs a random workload ending in a clean close (so every event frame is vouched for: by a footer in
//! a sealed segment, by the clean-close marker or a later `Sync` append in the newest one), picks an event
//! frame, and damages it without touching the frame that vouches for it: a bit flip, a zeroed 512-byte sector,
//! or a misplaced copy of another valid frame. Opening must fail with `Error::Corrupt` every time, never
//! silently truncate and never panic, and the failed open must change no file. `ANNALS_CORRUPTION_CASES`
//! (default 600) scales it; `ANNALS_SEED` replays.

mod sim_support;

use std::path::PathBuf;

use annals::format::frame::{self, FrameKind};
use annals::format::segment_header::{self, SegmentHeader};
use annals::fs::sim::{CrashMode, Rng, SimFs, SECTOR_BYTES};
use annals::{Durability, Error};
use sim_support::*;

/// A valid frame of a segment file.
#[derive(Debug, Clone, Copy)]
struct At {
    offset: usize,
    len: usize,
    kind: FrameKind,
}

/// The valid frames of a segment, in order up to the first invalid one.
fn frames(bytes: &[u8]) -> Vec<At> {
    let salt = SegmentHeader::decode(bytes).expect("segment header").salt;
    let mut out = Vec::new();
    let mut at = segment_header::SIZE_BYTES;
    while let Ok(f) = frame::decode(&bytes[at..], salt) {
        out.push(At { offset: at, len: f.frame_bytes as usize, kind: f.kind });
        at += f.frame_bytes as usize;
    }
    out
}

fn segment_files(sim: &SimFs) -> Vec<PathBuf> {
    sim.paths().into_iter().filter(|(p, _)| p.extension().is_some_and(|e| e == "seg")).map(|(p, _)| p).collect()
}

/// Every file but temporary ones (a crash can leave a segment being prepared, which every open removes).
fn all_files(sim: &SimFs) -> Vec<(PathBuf, Vec<u8>)> {
    sim.paths()
        .into_iter()
        .filter(|(p, dir)| !dir && p.extension().is_none_or(|e| e != "tmp"))
        .map(|(p, _)| (p.clone(), sim.read_file(&p).unwrap()))
        .collect()
}

#[derive(Debug, Default)]
struct Tally {
    cases: u64,
    bit_flips: u64,
    zeroed_sectors: u64,
    misplaced_copies: u64,
    in_sealed_segments: u64,
    vouched_by_a_later_append: u64,
}

#[test]
fn vouched_damage_on_the_simulated_disk_is_always_corruption() {
    let seed = seed("vouched_damage_on_the_simulated_disk_is_always_corruption");
    let mut rng = Rng::new(seed);
    let target = count("ANNALS_CORRUPTION_CASES", 600);
    let mut tally = Tally::default();
    while tally.cases < target {
        let run_seed = rng.next_u64();
        let durability = if rng.chance(1, 2) { Durability::Sync } else { Durability::Buffered };
        let sim = new_sim();
        let mut w = Workload::open(sim.clone(), run_seed, durability).unwrap();
        w.shape.large_pct = 10;
        for _ in 0..10 + rng.below(40) {
            w.step().unwrap_or_else(|e| panic!("workload {run_seed}: {e:?}"));
        }
        // Either a clean close, or (Sync) a crash of the process: then in the newest segment only the durable
        // watermark of the last append's frames vouches for the appends before it.
        let crashed = durability == Durability::Sync && rng.chance(1, 3);
        let last_append = w.log.batches.last().map_or(0, |b| b.end - b.start);
        let sim = if crashed {
            let image = sim.crash(CrashMode::PROCESS, 0);
            drop(w.store.take());
            image
        } else {
            assert!(w.close());
            sim
        };
        // Several damages of the same store, each undone after its check.
        for _ in 0..6 {
            let segs = segment_files(&sim);
            let seg = segs[rng.below(segs.len() as u64) as usize].clone();
            let sealed = seg != *segs.last().expect("a segment");
            let orig = sim.read_file(&seg).unwrap();
            let all = frames(&orig);
            // The vouching frame (the footer, the last marker, or the last append's first frame) stays intact;
            // events before it are targets.
            let keep = if crashed && !sealed {
                all.len().checked_sub(last_append)
            } else {
                all.iter().rposition(|f| f.kind != FrameKind::Event)
            };
            let Some(keep) = keep else { continue };
            let keep_from = all[keep].offset;
            let targets: Vec<At> = all[..keep].iter().copied().filter(|f| f.kind == FrameKind::Event).collect();
            if targets.is_empty() {
                continue;
            }
            let t = targets[rng.below(targets.len() as u64) as usize];
            let mut bytes = orig.clone();
            let kind = rng.below(3);
            let what = match kind {
                0 => {
                    let at = t.offset + rng.below(t.len as u64) as usize;
                    let bit = rng.below(8);
                    bytes[at] ^= 1 << bit;
                    tally.bit_flips += 1;
                    format!("bit {bit} of byte {at} flipped")
                }
                1 => {
                    // A sector that starts inside the target frame, or the one holding its start, and ends
                    // before the vouching frame.
                    let first = t.offset / SECTOR_BYTES;
                    let last = (t.offset + t.len - 1) / SECTOR_BYTES;
                    let s = first + rng.below((last - first + 1) as u64) as usize;
                    let (a, b) = (s * SECTOR_BYTES, (s + 1) * SECTOR_BYTES);
                    if b > keep_from || orig[a..b].iter().all(|&x| x == 0) {
                        continue;
                    }
                    bytes[a..b].fill(0);
                    tally.zeroed_sectors += 1;
                    format!("sector at {a} zeroed")
                }
                _ => {
                    let src_seg = &segs[rng.below(segs.len() as u64) as usize];
                    let src_bytes = sim.read_file(src_seg).unwrap();
                    let src_frames = frames(&src_bytes);
                    let src = src_frames[rng.below(src_frames.len() as u64) as usize];
                    if (src_seg == &seg && src.offset == t.offset) || t.offset + src.len > keep_from {
                        continue;
                    }
                    bytes[t.offset..t.offset + src.len].copy_from_slice(&src_bytes[src.offset..src.offset + src.len]);
                    if bytes == orig {
                        continue;
                    }
                    tally.misplaced_copies += 1;
                    format!("frame at {} of {} copied over the frame at {}", src.offset, src_seg.display(), t.offset)
                }
            };
            let what = format!(
                "workload {run_seed} ({durability:?}{}), {} ({}), {what}",
                if crashed { ", crashed" } else { "" },
                seg.display(),
                if sealed { "sealed" } else { "newest" }
            );
            tally.in_sealed_segments += u64::from(sealed);
            tally.vouched_by_a_later_append += u64::from(crashed && !sealed);
            tally.cases += 1;
            sim.damage_file(&seg, 0, &bytes);
            let before = all_files(&sim);
            let events = w.log.events.len() as u64;
            // Open reports damage in the part of the log it reads (past the stream index); damage in indexed
            // segments is for `verify` to find, and open must then keep every event (no silent truncation).
            let opened = std::panic::catch_unwind(|| {
                let store = options(&sim, Durability::Sync).open(dir())?;
                let head = store.head().as_u64();
                store.verify().map(|_| head)
            });
            match opened {
                Err(_) => panic!("{what}: open or verify panicked"),
                Ok(Err(Error::Corrupt { file, reason, .. })) => assert_eq!(file, seg, "{what}: Corrupt names the wrong file ({reason})"),
                Ok(Err(e)) => panic!("{what}: expected Error::Corrupt, got {e:?}"),
                Ok(Ok(head)) => panic!(
                    "{what}: the store opened with head {head} of {events} events and verify found nothing (silent truncation or damage missed)"
                ),
            }
            if all_files(&sim) != before {
                // Only an open that succeeded (damage left to verify) may write: its close marker and index.
                let reopened = options(&sim, Durability::Sync).open(dir());
                assert!(
                    matches!(reopened, Err(Error::Corrupt { .. }))
                        || reopened.is_ok_and(|s| s.head().as_u64() == events),
                    "{what}: reopening lost events"
                );
            }
            sim.damage_file(&seg, 0, &orig);
        }
        // Undamaged, it opens with everything.
        let store = options(&sim, Durability::Sync).open(dir()).unwrap();
        check_recovered(&store, &w.log, w.log.batches.len(), w.log.batches.len(), "undamaged");
    }
    println!("{tally:?}: 100% reported as corruption, 0 silent truncations, 0 panics");
}
